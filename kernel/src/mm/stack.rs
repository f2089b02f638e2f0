//! Kernel stacks with guard pages.
//!
//! Each stack gets its own stretch of the stacks region: one unmapped guard
//! page, then the stack's pages. A stack that overflows runs into the guard page
//! and faults (a double fault, reported from its IST stack) instead of silently
//! overwriting whatever lies below it.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::VirtAddr;

use super::frame::FRAME_SIZE;
use super::layout::{STACKS_END, STACKS_START};

static NEXT_STACK: AtomicU64 = AtomicU64::new(STACKS_START);

#[derive(Clone, Copy, Debug)]
pub struct KernelStack {
    /// Lowest usable address (the guard page lies just below).
    pub bottom: VirtAddr,
    /// One past the highest address: the initial stack pointer.
    pub top: VirtAddr,
}

impl KernelStack {
    /// Maps a new stack of `size` bytes (rounded up to whole pages).
    pub fn new(size: u64) -> KernelStack {
        let size = size.next_multiple_of(FRAME_SIZE);
        let guard = NEXT_STACK.fetch_add(size + FRAME_SIZE, Ordering::Relaxed);
        assert!(guard + FRAME_SIZE + size <= STACKS_END, "the kernel stack region is full");
        let bottom = VirtAddr::new(guard + FRAME_SIZE);
        super::paging::map_fresh_memory(bottom, size);
        KernelStack { bottom, top: bottom + size }
    }
}
