//! The GS segment base: how a CPU finds its own per-CPU area.
//!
//! In 64-bit mode the GS base is not taken from a descriptor but from the
//! `IA32_GS_BASE` MSR (SDM Vol. 3A, "Segment Loading Instructions in IA-32e
//! Mode", and Vol. 4, "IA-32 Architectural MSRs"), and a memory operand with a
//! `gs:` prefix adds it to the address. Each CPU points its own GS base at its
//! own area (see `percpu`), so one instruction like `add dword ptr gs:[off], 1`
//! reaches this CPU's copy of a variable, whatever CPU runs it.
//!
//! These are the only functions that touch the register; `percpu` builds the
//! per-CPU variables on top of them.

use core::arch::asm;

use x86_64::VirtAddr;
use x86_64::registers::model_specific::GsBase;

/// Points this CPU's GS base at `base`.
pub fn set_base(base: u64) {
    GsBase::write(VirtAddr::new(base));
}

/// This CPU's GS base. Reads the MSR, which is slow (tens of cycles, a VM
/// exit under some hypervisors): for the rare "is there an area yet?" check.
pub fn base() -> u64 {
    GsBase::read().as_u64()
}

/// Reads the 64-bit value at `gs:[offset]`.
///
/// # Safety
/// The GS base points at memory in which `offset..offset + 8` is a readable
/// `u64` (it may be unaligned: x86 allows that, and the TSS's fields are).
#[inline]
pub unsafe fn read_u64(offset: usize) -> u64 {
    let value: u64;
    // SAFETY: the caller vouches for the memory at gs:[offset]; the load has
    // no other effect.
    unsafe {
        asm!("mov {value}, gs:[{offset}]",
             value = out(reg) value,
             offset = in(reg) offset,
             options(nostack, readonly, preserves_flags))
    };
    value
}

/// Writes `value` to `gs:[offset]` in one instruction.
///
/// # Safety
/// The GS base points at memory in which `offset..offset + 8` is a writable
/// `u64` that nothing else holds a reference to (it may be unaligned: x86
/// allows that, and the TSS's fields are).
#[inline]
pub unsafe fn write_u64(offset: usize, value: u64) {
    // SAFETY: the caller vouches for the memory at gs:[offset].
    unsafe {
        asm!("mov gs:[{offset}], {value}",
             value = in(reg) value,
             offset = in(reg) offset,
             options(nostack, preserves_flags))
    };
}

/// Reads the 32-bit value at `gs:[offset]` in one instruction, so a thread
/// that moves to another CPU around the call reads the copy of exactly one
/// CPU, never one CPU's GS base and another's value (Linux: `this_cpu_read()`).
///
/// # Safety
/// The GS base points at memory in which `offset..offset + 4` is a readable,
/// 4-byte aligned `u32`.
#[inline]
pub unsafe fn read_u32(offset: usize) -> u32 {
    let value: u32;
    // SAFETY: the caller vouches for the memory at gs:[offset]; the load has
    // no other effect.
    unsafe {
        asm!("mov {value:e}, gs:[{offset}]",
             value = out(reg) value,
             offset = in(reg) offset,
             options(nostack, readonly, preserves_flags))
    };
    value
}

/// Adds `delta` to the 32-bit value at `gs:[offset]` in one instruction.
///
/// The instruction reads the GS base and changes memory in one go: an
/// interrupt comes before it or after it, never in between, so a thread that
/// is preempted and moved to another CPU around this call changes the count of
/// exactly one CPU, the one that executed the instruction. (It is not `lock`ed:
/// only the owning CPU ever changes its own value this way.)
///
/// # Safety
/// The GS base points at memory in which `offset..offset + 4` is a 4-byte
/// aligned `u32` that only this CPU ever writes (the add is not `lock`ed, so
/// another CPU's write to it could be lost, whatever its Rust type).
#[inline]
pub unsafe fn add_u32(offset: usize, delta: i32) {
    // SAFETY: the caller vouches for the memory at gs:[offset].
    unsafe {
        asm!("add dword ptr gs:[{offset}], {delta:e}",
             offset = in(reg) offset,
             delta = in(reg) delta,
             options(nostack))
    };
}
