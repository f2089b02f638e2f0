//! A CPU's run queue: one FIFO per priority level, highest level first.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::thread::{Priority, Thread};

const LEVELS: usize = Priority::HIGHEST_REAL_TIME as usize + 1;

pub struct RunQueue {
    levels: [VecDeque<Arc<Thread>>; LEVELS],
}

impl RunQueue {
    pub const fn new() -> RunQueue {
        RunQueue { levels: [const { VecDeque::new() }; LEVELS] }
    }

    pub fn push(&mut self, thread: Arc<Thread>) {
        self.levels[thread.priority().level()].push_back(thread);
    }

    /// The first thread of the highest non-empty level.
    pub fn pop_highest(&mut self) -> Option<Arc<Thread>> {
        self.levels.iter_mut().rev().find_map(|level| level.pop_front())
    }

    pub fn has_level(&self, level: usize) -> bool {
        !self.levels[level].is_empty()
    }

    pub fn len(&self) -> usize {
        self.levels.iter().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
