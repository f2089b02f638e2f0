//! Kernel stacks with guard pages.
//!
//! Each stack gets its own stretch of the stacks region: one unmapped guard
//! page, then the stack's pages. A stack that overflows runs into the guard page
//! and faults (a double fault, reported from its IST stack) instead of silently
//! overwriting whatever lies below it.

use core::sync::atomic::{AtomicU64, Ordering};

use alloc::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::PhysFrame;

use super::frame::FRAME_SIZE;
use super::layout::{STACKS_END, STACKS_START};
use crate::sync::SpinLock;

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
        purge_retired();
        let size = size.next_multiple_of(FRAME_SIZE);
        let guard = NEXT_STACK.fetch_add(size + FRAME_SIZE, Ordering::Relaxed);
        assert!(guard + FRAME_SIZE + size <= STACKS_END, "the kernel stack region is full");
        let bottom = VirtAddr::new(guard + FRAME_SIZE);
        super::paging::map_fresh_memory(bottom, size);
        KernelStack { bottom, top: bottom + size }
    }
}

/// Frames of freed stacks that another CPU's TLB may still map: unmapped,
/// flushed here, not yet everywhere.
static RETIRED: SpinLock<Vec<PhysFrame>> = SpinLock::new(Vec::new());

impl KernelStack {
    /// Unmaps the stack, flushing only this CPU's TLB, and retires its frames.
    /// Another CPU that ran the thread may still hold a translation to them,
    /// so they are not free yet: `purge_retired` frees them after a flush on
    /// every CPU. (Stacks are freed where no shootdown can be waited for: with
    /// interrupts off, in the context switch.) Linux's vmalloc, which holds
    /// its kernel stacks, batches the flush of freed areas the same way
    /// (mm/vmalloc.c, lazy purging).
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
                RETIRED.lock_irqsave().push(frame);
            }
            page += FRAME_SIZE;
        }
    }
}

/// How many frames of freed stacks wait for the flush that frees them.
pub fn retired_frames() -> usize {
    RETIRED.lock_irqsave().len()
}

/// How many retired frames wait for a flush before a stack allocation
/// flushes: 1 MiB, the stacks of 32 threads. Batching keeps the cost (one
/// flush of every CPU, waiting for the slowest) off most thread creations.
const PURGE_AT_FRAMES: usize = 256;

/// Flushes every CPU's TLB of kernel translations, or returns false if this
/// CPU cannot wait for that now. Registered by `tlb::init`: the flush is a
/// round of cross-CPU calls, which sit above memory management (they wait
/// through the scheduler), so mm reaches it through this one function.
static FLUSH_EVERY_CPU: spin::Once<fn() -> bool> = spin::Once::new();

/// Registers the kernel-wide TLB flush `purge_retired` needs (see FLUSH_EVERY_CPU).
pub fn set_flush_every_cpu(flush: fn() -> bool) {
    // Registered once, at boot, on the boot CPU.
    assert!(FLUSH_EVERY_CPU.get().is_none(), "stack: the flush is registered twice");
    FLUSH_EVERY_CPU.call_once(|| flush);
}

/// Frees the frames of retired stacks once every CPU has flushed its TLB, if
/// enough are waiting. Runs where a cross-CPU call may be waited for
/// (interrupts on, preemption allowed); elsewhere it leaves them for later.
pub fn purge_retired() {
    let can_wait =
        crate::arch::x86::interrupts::are_enabled() && crate::sync::preempt::count() == 0;
    let Some(flush_every_cpu) = FLUSH_EVERY_CPU.get() else { return };
    if !can_wait || RETIRED.lock_irqsave().len() < PURGE_AT_FRAMES {
        return;
    }
    // Taken before the flush: a frame retired after it began may still be cached.
    let frames = core::mem::take(&mut *RETIRED.lock_irqsave());
    if !flush_every_cpu() {
        RETIRED.lock_irqsave().extend(frames);
        return;
    }
    for frame in frames {
        // SAFETY: unmapped, and now flushed from every CPU's TLB.
        unsafe { super::frame::free(frame) };
    }
}
