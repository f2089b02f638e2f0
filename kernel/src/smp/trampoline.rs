//! Placing the AP trampoline (trampoline.S) below 1 MiB and filling in its
//! parameter block.
//!
//! Four pages of low memory, taken from the bootloader's memory map (the frame
//! allocator never hands out memory below 1 MiB):
//! - the trampoline page: code at offset 0, parameters at [`PARAMS_OFFSET`];
//! - a level-4, a level-3 and a level-2 page table. The level-4 table copies
//!   the kernel's, so the kernel half is mapped as usual, and replaces entry 0
//!   with an identity mapping of the first 2 MiB, so the trampoline keeps
//!   running at its physical address the moment paging comes on. CR3 is only
//!   32 bits wide before long mode, hence a table below 4 GiB; the AP moves to
//!   the kernel's own CR3 in its first Rust code.

use core::arch::global_asm;
use core::mem::offset_of;

use x86_64::registers::control::Cr3;
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::paging::{PageTable, PageTableFlags, PhysFrame};
use x86_64::{PhysAddr, VirtAddr};

use crate::mm;

/// Where the parameter block sits in the trampoline page.
const PARAMS_OFFSET: usize = 0xe00;
const CODE32_SELECTOR: u16 = 0x08;
const DATA_SELECTOR: u16 = 0x10;
const CODE64_SELECTOR: u16 = 0x18;

/// One entry of the table the APs search for their APIC id.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ApStartEntry {
    pub apic_id: u32,
    _pad: u32,
    pub stack_top: u64,
    pub percpu: u64,
}

impl ApStartEntry {
    pub fn new(apic_id: u32, stack_top: VirtAddr, percpu: u64) -> ApStartEntry {
        ApStartEntry { apic_id, _pad: 0, stack_top: stack_top.as_u64(), percpu }
    }
}

/// A far pointer as `ljmpl *mem` reads it: 32-bit offset, then selector.
#[repr(C)]
struct FarPointer {
    offset: u32,
    selector: u16,
    _pad: u16,
}

/// The block the trampoline reads; offsets are handed to the assembly below.
#[repr(C)]
struct TrampolineParams {
    gdt: [u64; 4],
    _gdt_pointer_pad: [u16; 3],
    gdt_limit: u16,
    gdt_base: u32,
    protected_mode_jump: FarPointer,
    long_mode_jump: FarPointer,
    cr3: u32,
    efer: u32,
    cpu_table: u64,
    cpu_count: u64,
    rust_entry: u64,
}

global_asm!(
    include_str!("trampoline.S"),
    PARAMS = const PARAMS_OFFSET,
    GDT_POINTER = const PARAMS_OFFSET + offset_of!(TrampolineParams, gdt_limit),
    PROTECTED_MODE_JUMP = const PARAMS_OFFSET + offset_of!(TrampolineParams, protected_mode_jump),
    LONG_MODE_JUMP = const PARAMS_OFFSET + offset_of!(TrampolineParams, long_mode_jump),
    CR3 = const PARAMS_OFFSET + offset_of!(TrampolineParams, cr3),
    EFER = const PARAMS_OFFSET + offset_of!(TrampolineParams, efer),
    CPU_TABLE = const PARAMS_OFFSET + offset_of!(TrampolineParams, cpu_table),
    CPU_COUNT = const PARAMS_OFFSET + offset_of!(TrampolineParams, cpu_count),
    RUST_ENTRY = const PARAMS_OFFSET + offset_of!(TrampolineParams, rust_entry),
    DATA_SELECTOR = const DATA_SELECTOR,
    CPU_ENTRY_SIZE = const size_of::<ApStartEntry>(),
    options(att_syntax)
);

unsafe extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_protected_mode: u8;
    static ap_trampoline_long_mode: u8;
    static ap_trampoline_end: u8;
}

/// Where a label of the trampoline lands once the code is copied to `page`.
fn label_address(page: PhysAddr, label: *const u8) -> u32 {
    let start = &raw const ap_trampoline_start;
    (page.as_u64() + (label as u64 - start as u64)) as u32
}

/// The trampoline, installed in low memory.
pub struct Trampoline {
    page: PhysFrame,
}

/// Segment descriptors (SDM Vol. 3A 3.4.5 "Segment Descriptors"): flat 4 GiB
/// 32-bit code (0x9a, G+D) and data (0x92, G+B), and 64-bit code (0x9a, G+L).
const GDT: [u64; 4] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0x00af_9a00_0000_ffff];

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

        let start = &raw const ap_trampoline_start;
        let code_length = &raw const ap_trampoline_end as usize - start as usize;
        assert!(code_length <= PARAMS_OFFSET, "the trampoline code overlaps its parameters");
        let page_virtual = mm::phys_to_virt(page.start_address());
        // SAFETY: the page is usable RAM below 1 MiB that nothing else uses (the
        // frame allocator never hands it out); the code is `code_length` bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(start, page_virtual.as_mut_ptr::<u8>(), code_length)
        };

        build_identity_tables(level4, level3, level2);
        let efer = Efer::read() & !EferFlags::LONG_MODE_ACTIVE;
        let params = TrampolineParams {
            gdt: GDT,
            _gdt_pointer_pad: [0; 3],
            gdt_limit: (size_of_val(&GDT) - 1) as u16,
            gdt_base: page.start_address().as_u64() as u32
                + (PARAMS_OFFSET + offset_of!(TrampolineParams, gdt)) as u32,
            protected_mode_jump: FarPointer {
                offset: label_address(
                    page.start_address(),
                    &raw const ap_trampoline_protected_mode,
                ),
                selector: CODE32_SELECTOR,
                _pad: 0,
            },
            long_mode_jump: FarPointer {
                offset: label_address(page.start_address(), &raw const ap_trampoline_long_mode),
                selector: CODE64_SELECTOR,
                _pad: 0,
            },
            cr3: level4.start_address().as_u64() as u32,
            efer: efer.bits() as u32,
            cpu_table: cpu_table.as_ptr() as u64,
            cpu_count: cpu_table.len() as u64,
            rust_entry: rust_entry as *const () as u64,
        };
        // SAFETY: PARAMS_OFFSET + size_of::<TrampolineParams>() fits in the page,
        // which we own (see above); the offset is 8-aligned.
        unsafe {
            (page_virtual + PARAMS_OFFSET as u64).as_mut_ptr::<TrampolineParams>().write(params)
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
    let (kernel_level4, _) = Cr3::read();
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
    assert!(level4.start_address().as_u64() < 1 << 32);
}
