//! Memory management: physical frames, the kernel's page tables, and the heap.
//!
//! The bootloader maps all of physical memory at `physical_memory_offset`, so
//! the kernel reaches any physical address p at virtual p + offset; page tables
//! are edited through that window. The kernel's own virtual regions (heap, MMIO,
//! later stacks) sit in a part of the higher half the bootloader was told to
//! leave alone (see `layout`).

pub mod address_space;
pub mod frame;
pub mod heap;
pub mod layout;
pub mod lazy_tlb;
pub mod paging;
pub mod stack;

use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::info::MemoryRegion;
use x86_64::{PhysAddr, VirtAddr};

static PHYSICAL_MEMORY_OFFSET: AtomicU64 = AtomicU64::new(0);

/// The virtual address at which physical address `phys` can be accessed.
pub fn phys_to_virt(phys: PhysAddr) -> VirtAddr {
    VirtAddr::new(phys.as_u64() + PHYSICAL_MEMORY_OFFSET.load(Ordering::Relaxed))
}

/// Sets up frames, page tables and the heap, in that order (each needs the one before).
pub fn init(physical_memory_offset: u64, memory_regions: &'static [MemoryRegion]) {
    PHYSICAL_MEMORY_OFFSET.store(physical_memory_offset, Ordering::Relaxed);
    frame::init(memory_regions);
    paging::init();
    heap::init();
    let (free, total) = frame::counts();
    log::info!(
        "mm: {} MiB usable, {} KiB heap at {:#x}, {} MiB free",
        total * 4 / 1024,
        layout::HEAP_SIZE / 1024,
        layout::HEAP_START,
        free * 4 / 1024
    );
}
