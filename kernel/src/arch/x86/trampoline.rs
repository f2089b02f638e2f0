//! The AP start-up trampoline's code (trampoline.S: real mode, protected
//! mode, long mode, then Rust) and the parameter block it reads.
//!
//! The code runs from a copy in a page below 1 MiB (a SIPI can only start a
//! CPU there) and takes everything that depends on where things are from the
//! parameter block at [`PARAMS_OFFSET`] of that page, so it needs no
//! relocation. Choosing the page and building the page tables the AP starts
//! on is bring-up logic, in `smp::trampoline`.

use core::arch::global_asm;
use core::mem::offset_of;

use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::{PhysAddr, VirtAddr};

/// Where the parameter block sits in the trampoline page.
pub const PARAMS_OFFSET: usize = 0xe00;
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

/// Segment descriptors (SDM Vol. 3A 3.4.5 "Segment Descriptors"): flat 4 GiB
/// 32-bit code (0x9a, G+D) and data (0x92, G+B), and 64-bit code (0x9a, G+L).
const GDT: [u64; 4] = [0, 0x00cf_9a00_0000_ffff, 0x00cf_9200_0000_ffff, 0x00af_9a00_0000_ffff];

/// The trampoline's code, to be copied to the start of its page.
pub fn code() -> &'static [u8] {
    let start = &raw const ap_trampoline_start;
    let length = &raw const ap_trampoline_end as usize - start as usize;
    assert!(length <= PARAMS_OFFSET, "the trampoline code overlaps its parameters");
    // SAFETY: the linker puts the code between these two labels, in the
    // kernel image, which is mapped and never written.
    unsafe { core::slice::from_raw_parts(start, length) }
}

/// Where a label of the trampoline lands once the code is copied to `page`.
fn label_address(page: PhysAddr, label: *const u8) -> u32 {
    let start = &raw const ap_trampoline_start;
    (page.as_u64() + (label as u64 - start as u64)) as u32
}

/// Fills in the parameter block of the trampoline copied to physical `page`,
/// which is mapped at `page_virtual`: the APs start on the page tables at
/// `level4` (below 4 GiB: CR3 is 32 bits until long mode), find their entry
/// in `cpu_table` and enter `rust_entry` with its `percpu` field.
///
/// # Safety
/// `page_virtual` maps `page`, a page below 1 MiB that the caller owns and
/// that holds a copy of [`code`].
pub unsafe fn write_params(
    page: PhysAddr,
    page_virtual: VirtAddr,
    level4: PhysAddr,
    cpu_table: &'static [ApStartEntry],
    rust_entry: extern "C" fn(u64) -> !,
) {
    assert!(level4.as_u64() < 1 << 32);
    let efer = Efer::read() & !EferFlags::LONG_MODE_ACTIVE;
    let params = TrampolineParams {
        gdt: GDT,
        _gdt_pointer_pad: [0; 3],
        gdt_limit: (size_of_val(&GDT) - 1) as u16,
        gdt_base: page.as_u64() as u32 + (PARAMS_OFFSET + offset_of!(TrampolineParams, gdt)) as u32,
        protected_mode_jump: FarPointer {
            offset: label_address(page, &raw const ap_trampoline_protected_mode),
            selector: CODE32_SELECTOR,
            _pad: 0,
        },
        long_mode_jump: FarPointer {
            offset: label_address(page, &raw const ap_trampoline_long_mode),
            selector: CODE64_SELECTOR,
            _pad: 0,
        },
        cr3: level4.as_u64() as u32,
        efer: efer.bits() as u32,
        cpu_table: cpu_table.as_ptr() as u64,
        cpu_count: cpu_table.len() as u64,
        rust_entry: rust_entry as *const () as u64,
    };
    // SAFETY: PARAMS_OFFSET + size_of::<TrampolineParams>() fits in the page,
    // which the caller owns; the offset is 8-aligned.
    unsafe { (page_virtual + PARAMS_OFFSET as u64).as_mut_ptr::<TrampolineParams>().write(params) };
}
