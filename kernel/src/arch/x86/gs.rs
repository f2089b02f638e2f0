//! The GS segment base, which points at the running CPU's per-CPU data, and
//! the gs-relative accesses that read and change that data in one instruction
//! (SDM Vol. 3A "Segment Loading Instructions in IA-32e Mode": in 64-bit mode
//! the FS and GS bases are the only segment bases still applied, and the
//! `IA32_GS_BASE` MSR sets GS's). What lives there is `percpu`'s business.

use core::arch::asm;

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Points this CPU's GS base at `base`.
pub fn set_base(base: *const u8) {
    GsBase::write(VirtAddr::from_ptr(base));
}

/// This CPU's GS base: 0 until [`set_base`] runs (INIT clears it, SDM Vol. 3A
/// Table "IA-32 and Intel 64 Processor States Following Power-up, Reset, or
/// INIT"). Reads an MSR, which is slow.
pub fn base() -> u64 {
    GsBase::read().as_u64()
}

/// Reads the 64-bit word at `offset` from the GS base.
///
/// # Safety
/// The GS base points at memory holding an initialised u64 at `offset`.
#[inline(always)]
pub unsafe fn read_u64(offset: usize) -> u64 {
    let value: u64;
    // SAFETY: the caller's contract.
    unsafe {
        asm!("mov {value}, gs:[{offset}]", value = out(reg) value, offset = in(reg) offset,
             options(nostack, readonly, preserves_flags))
    };
    value
}

/// Adds `delta` to the 32-bit word at `offset` from the GS base, in one
/// instruction: an interrupt cannot split it, and a thread that migrates
/// cannot separate it from the CPU that executes it (Linux's `this_cpu_add()`).
///
/// # Safety
/// The GS base points at memory holding a u32 at `offset` that this CPU may
/// change (an atomic one, if others read it).
#[inline(always)]
pub unsafe fn add_u32(offset: usize, delta: i32) {
    // SAFETY: the caller's contract.
    unsafe {
        asm!("add dword ptr gs:[{offset}], {delta:e}", offset = in(reg) offset,
             delta = in(reg) delta, options(nostack))
    };
}
