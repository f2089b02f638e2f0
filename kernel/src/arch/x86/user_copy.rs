//! Copying between kernel and user memory, where a bad user address is an
//! error to return, not a kernel page fault to die of.
//!
//! A system call's pointer arguments come from user mode and may point
//! anywhere: at nothing, at a page the process may not read, at the kernel.
//! The user layer first refuses ranges outside the user half (so the copy
//! below never touches a kernel address on a user's behalf); the copy itself
//! is one `rep movsb` whose address is known. When it faults, the page-fault
//! handler sees the RIP is that instruction and, instead of panicking, asks
//! the user layer to resolve the fault (a demand-zero page, say) and retries,
//! or moves RIP to the routine's fixup, which returns the number of bytes
//! not copied: RCX, which `rep movsb` counts down as it goes (SDM Vol. 2B,
//! REP prefix: "the count register is decremented ... after each
//! iteration", and a fault leaves it at the failing iteration). Linux does
//! the same with its exception table (`copy_user_generic`, `ex_handler_*`).
//!
//! With SMAP the copy is bracketed by setting and clearing RFLAGS.AC (what
//! `stac`/`clac` do), the only place the kernel lets itself touch user pages
//! (see `fpu`).

use core::arch::global_asm;

use super::entry::TrapFrame;

// rdi = destination, rsi = source, rdx = length; returns in rax the bytes
// not copied. Two copies of the routine: faults in the first may be resolved
// (the caller may sleep), in the second never (the caller holds a spin lock:
// Linux's `pagefault_disable`, as futex uses).
global_asm!(
    r#"
    .section .text.user_copy, "ax"
    .global user_copy_resolvable
    .hidden user_copy_resolvable
    user_copy_resolvable:
        mov rcx, rdx
    .global user_copy_resolvable_insn
    .hidden user_copy_resolvable_insn
    user_copy_resolvable_insn:
        rep movsb
        mov rax, rcx
        ret

    .global user_copy_nofault
    .hidden user_copy_nofault
    user_copy_nofault:
        mov rcx, rdx
    .global user_copy_nofault_insn
    .hidden user_copy_nofault_insn
    user_copy_nofault_insn:
        rep movsb
    .global user_copy_fixup
    .hidden user_copy_fixup
    user_copy_fixup:
        mov rax, rcx
        ret
    .text
    "#
);

unsafe extern "C" {
    fn user_copy_resolvable(to: *mut u8, from: *const u8, length: usize) -> usize;
    fn user_copy_nofault(to: *mut u8, from: *const u8, length: usize) -> usize;
    static user_copy_resolvable_insn: u8;
    static user_copy_nofault_insn: u8;
    static user_copy_fixup: u8;
}

/// Whether a fault during a copy may be resolved by the user layer (which
/// may sleep) or must only end the copy.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnFault {
    Resolve,
    Fail,
}

/// Copies `length` bytes from `from` to `to`, one or both in user memory;
/// returns how many were *not* copied (0 on success).
///
/// # Safety
/// The kernel side of the copy is valid for `length` bytes; the user side
/// lies wholly below the user half's end (checked by the caller, so the
/// copy cannot touch kernel memory on a user's behalf).
pub unsafe fn copy(to: *mut u8, from: *const u8, length: usize, on_fault: OnFault) -> usize {
    // SAFETY: setting AC only permits ring-0 access to user pages (under
    // SMAP; without it AC means nothing in ring 0) until it is cleared below.
    // The routine touches exactly the two ranges the caller vouched for,
    // and a fault in it returns here. AC is changed through the flags
    // rather than with `stac`/`clac` (see `entry`'s CLEAR_AC: KVM's emulator
    // does not know them, and they are #UD without SMAP).
    unsafe {
        core::arch::asm!("pushfq", "or dword ptr [rsp], 1 << 18", "popfq");
        let left = match on_fault {
            OnFault::Resolve => user_copy_resolvable(to, from, length),
            OnFault::Fail => user_copy_nofault(to, from, length),
        };
        core::arch::asm!("pushfq", "and dword ptr [rsp], ~(1 << 18)", "popfq");
        left
    }
}

/// For the page-fault handler: if the kernel faulted inside a user copy,
/// whether the fault may be resolved (Some(OnFault)); None otherwise.
pub fn faulted_in_copy(frame: &TrapFrame) -> Option<OnFault> {
    if frame.rip == &raw const user_copy_resolvable_insn as u64 {
        Some(OnFault::Resolve)
    } else if frame.rip == &raw const user_copy_nofault_insn as u64 {
        Some(OnFault::Fail)
    } else {
        None
    }
}

/// Ends the copy that faulted: it returns the bytes it had left (RCX).
pub fn fail_copy(frame: &mut TrapFrame) {
    frame.rip = &raw const user_copy_fixup as u64;
}
