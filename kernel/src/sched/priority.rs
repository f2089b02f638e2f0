//! Thread priorities and the run-queue levels they map to.
//!
//! Pure logic, compiled as it is by the host unit tests (kernel-logic/).

/// Strict priorities: a runnable thread of a higher class always runs before
/// any thread of a lower one (Linux: SCHED_FIFO above SCHED_OTHER).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// Only the per-CPU idle threads.
    Idle,
    /// Time-shared: round-robin with a time slice among threads of this class.
    Normal,
    /// Real-time levels 1 (lowest) to 3: first in, first out, no time slice.
    RealTime(u8),
}

impl Priority {
    pub const HIGHEST_REAL_TIME: u8 = 3;

    /// Run-queue level: 0 for Normal, n for RealTime(n).
    pub fn level(self) -> usize {
        match self {
            Priority::Idle | Priority::Normal => 0,
            Priority::RealTime(n) => n.clamp(1, Self::HIGHEST_REAL_TIME) as usize,
        }
    }

    /// A number that orders priorities, for atomics.
    pub fn rank(self) -> u8 {
        match self {
            Priority::Idle => 0,
            Priority::Normal => 1,
            Priority::RealTime(n) => 1 + n.clamp(1, Self::HIGHEST_REAL_TIME),
        }
    }

    /// The priority whose `rank()` is `rank`.
    pub fn from_rank(rank: u8) -> Priority {
        match rank {
            0 => Priority::Idle,
            1 => Priority::Normal,
            n => Priority::RealTime((n - 1).min(Self::HIGHEST_REAL_TIME)),
        }
    }
}
