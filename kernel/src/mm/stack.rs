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

impl KernelStack {
    /// Unmaps the stack and frees its frames, flushing only this CPU's TLB.
    /// Another CPU that ran the thread may keep a stale translation for a
    /// while; that is harmless only because nothing ever uses these virtual
    /// addresses again (stacks are handed out upwards, never recycled) and
    /// the thread is gone. A kernel that reused the range would need
    /// `mm::tlb::shootdown_kernel` here (not callable from this context:
    /// stacks are freed with interrupts off, in the context switch).
    ///
    /// # Safety
    /// Nothing runs on the stack or points into it any more.
    pub unsafe fn free(self) {
        let mut page = self.bottom.as_u64();
        while page < self.top.as_u64() {
            let page_of = x86_64::structures::paging::Page::containing_address(VirtAddr::new(page));
            // SAFETY: the caller guarantees the stack is unused; its pages were
            // mapped by new() to frames it allocated.
            if let Some(frame) = unsafe { super::paging::unmap(page_of) } {
                // SAFETY: as above: unmapped, and nothing else refers to the frame.
                unsafe { super::frame::free(frame) };
            }
            page += FRAME_SIZE;
        }
    }
}
