//! Placing the AP trampoline (`arch::x86::trampoline`) below 1 MiB, with the
//! page tables the APs start on.
//!
//! Four pages of low memory, taken from the bootloader's memory map (the frame
//! allocator never hands out memory below 1 MiB):
//! - the trampoline page: code at offset 0, parameters at `PARAMS_OFFSET`;
//! - a level-4, a level-3 and a level-2 page table. The level-4 table copies
//!   the kernel's, so the kernel half is mapped as usual, and replaces entry 0
//!   with an identity mapping of the first 2 MiB, so the trampoline keeps
//!   running at its physical address the moment paging comes on. CR3 is only
//!   32 bits wide before long mode, hence a table below 4 GiB; the AP moves to
//!   the kernel's own CR3 in its first Rust code.

use x86_64::PhysAddr;
use x86_64::structures::paging::{PageTable, PageTableFlags, PhysFrame};

use crate::arch::x86::{mmu, trampoline};
pub use trampoline::ApStartEntry;

use crate::mm;

/// The trampoline, installed in low memory.
pub struct Trampoline {
    page: PhysFrame,
}

impl Trampoline {
    /// Copies the trampoline below 1 MiB and builds its page tables. None if
    /// the memory map has no four usable pages there.
    pub fn install(
        cpu_table: &'static [ApStartEntry],
        rust_entry: extern "C" fn(u64) -> !,
    ) -> Option<Trampoline> {
        // Page 0 holds the real-mode interrupt table and BIOS data; pages from
        // 0xa0 up are not valid SIPI vectors (SDM 9.4.4.1: vectors A0H-BFH are reserved).
        let mut pages = mm::frame::low_memory_pages()
            .filter(|f| (0x1000..0xa0000).contains(&f.start_address().as_u64()));
        let (page, level4, level3, level2) =
            (pages.next()?, pages.next()?, pages.next()?, pages.next()?);

        let code = trampoline::code();
        let page_virtual = mm::phys_to_virt(page.start_address());
        // SAFETY: the page is usable RAM below 1 MiB that nothing else uses (the
        // frame allocator never hands it out); the code is shorter than the page.
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), page_virtual.as_mut_ptr(), code.len())
        };
        build_identity_tables(level4, level3, level2);
        // SAFETY: as above: our page, mapped at `page_virtual`, holding the code.
        unsafe {
            trampoline::write_params(
                page.start_address(),
                page_virtual,
                level4.start_address(),
                cpu_table,
                rust_entry,
            )
        };
        Some(Trampoline { page })
    }

    /// The SIPI vector: the page number of the trampoline.
    pub fn sipi_vector(&self) -> u8 {
        (self.page.start_address().as_u64() >> 12) as u8
    }

    pub fn physical_address(&self) -> PhysAddr {
        self.page.start_address()
    }
}

/// level4 = the kernel's level-4 table, except entry 0 -> level3 -> level2 ->
/// one 2 MiB page at physical 0 (identity).
fn build_identity_tables(level4: PhysFrame, level3: PhysFrame, level2: PhysFrame) {
    let table = |frame: PhysFrame| -> &'static mut PageTable {
        // SAFETY: these low pages are ours alone (see install()); the window maps them.
        unsafe { &mut *mm::phys_to_virt(frame.start_address()).as_mut_ptr::<PageTable>() }
    };
    let kernel_level4 = mmu::current_root();
    // SAFETY: CR3 names the live level-4 table; it is only read here.
    let kernel = unsafe { &*mm::phys_to_virt(kernel_level4.start_address()).as_ptr::<PageTable>() };
    let writable = PageTableFlags::PRESENT | PageTableFlags::WRITABLE;
    let l2 = table(level2);
    l2.zero();
    l2[0].set_addr(PhysAddr::new(0), writable | PageTableFlags::HUGE_PAGE);
    let l3 = table(level3);
    l3.zero();
    l3[0].set_frame(level2, writable);
    let l4 = table(level4);
    for (entry, kernel_entry) in l4.iter_mut().zip(kernel.iter()) {
        *entry = kernel_entry.clone();
    }
    l4[0].set_frame(level3, writable);
}
