//! The paging instructions the kernel uses: loading a page-table root (CR3)
//! and invalidating TLB entries (SDM Vol. 3A "Invalidation of TLBs and
//! Paging-Structure Caches"). Which entries to invalidate, on which CPUs and
//! when is `mm`'s business (`mm::tlb`, `mm::lazy_tlb`); this module only
//! executes the instructions.

use x86_64::VirtAddr;
use x86_64::instructions::tlb;
use x86_64::registers::control::{Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::{PageSize, PhysFrame, Size4KiB};

/// The size of a page INVLPG invalidates (the kernel maps 4 KiB pages).
const PAGE_SIZE: u64 = Size4KiB::SIZE;

/// The level-4 table this CPU translates through.
pub fn current_root() -> PhysFrame {
    Cr3::read().0
}

/// Makes `level4` this CPU's page-table root. Writing CR3 also drops every
/// non-global TLB entry.
///
/// # Safety
/// `level4` maps the code, stack and data the caller runs on, at the same
/// addresses as the current tables.
pub unsafe fn load_root(level4: PhysFrame) {
    // SAFETY: the caller's contract.
    unsafe { Cr3::write(level4, Cr3Flags::empty()) };
}

/// Invalidates `pages` pages from `start` on this CPU, one INVLPG each; it
/// drops the page's TLB entry, global or not, and the paging-structure cache
/// entries used to reach it.
pub fn flush_pages(start: VirtAddr, pages: usize) {
    for page in 0..pages as u64 {
        tlb::flush(start + page * PAGE_SIZE);
    }
}

/// Drops every non-global TLB entry on this CPU (a CR3 reload).
pub fn flush_all() {
    tlb::flush_all();
}

/// Drops every TLB entry on this CPU, global ones included: toggling CR4.PGE
/// does that (SDM Vol. 3A "Operations that Invalidate TLBs and
/// Paging-Structure Caches"); without global pages a CR3 reload is enough.
pub fn flush_all_including_global() {
    // Interrupts off between the read and the two writes: a handler that
    // wrote CR4 in between would have its change undone by the stale `flags`
    // (Linux: native_flush_tlb_global() under raw_local_irq_save()).
    super::interrupts::without_interrupts(|| {
        let flags = Cr4::read();
        if flags.contains(Cr4Flags::PAGE_GLOBAL) {
            // SAFETY: clearing and restoring PGE only flushes the TLB.
            unsafe {
                Cr4::write(flags - Cr4Flags::PAGE_GLOBAL);
                Cr4::write(flags);
            }
        } else {
            tlb::flush_all();
        }
    })
}
