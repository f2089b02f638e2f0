//! The kernel heap: `linked_list_allocator` over a fixed virtual region.
//!
//! The allocator's lock is taken with interrupts disabled, so an interrupt
//! handler may allocate. When the heap is exhausted `alloc` returns null and
//! Rust's allocation-error path panics with "memory allocation of N bytes
//! failed": a clear report instead of a hang or silent corruption.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;
use x86_64::VirtAddr;

use super::layout::{HEAP_SIZE, HEAP_START};
use crate::sync::SpinLock;

mod tests;

struct KernelHeap(SpinLock<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(SpinLock::new(Heap::empty()));

// SAFETY: the allocator returns blocks that satisfy `layout` and never overlap
// live blocks; linked_list_allocator guarantees that, the lock serialises it.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock_irqsave().allocate_first_fit(layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `block` came from alloc() with `layout`.
        unsafe { self.0.lock_irqsave().deallocate(NonNull::new_unchecked(block), layout) }
    }
}

pub fn init() {
    super::paging::map_fresh_memory(VirtAddr::new(HEAP_START), HEAP_SIZE);
    // SAFETY: the region was just mapped, is used for nothing else, and init
    // runs once.
    unsafe { HEAP.0.lock_irqsave().init(HEAP_START as *mut u8, HEAP_SIZE as usize) };
}

/// Bytes currently allocated.
pub fn used() -> usize {
    HEAP.0.lock_irqsave().used()
}
