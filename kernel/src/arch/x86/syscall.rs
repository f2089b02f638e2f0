//! The `syscall` instruction's way into the kernel, and the ways back to
//! user mode (`sysretq`, or `iretq` when `sysretq` would be unsafe).
//!
//! **What the hardware does** (SDM Vol. 2B, SYSCALL and SYSRET; Vol. 3A
//! 5.8.8, "Fast System Calls in 64-Bit Mode"). `syscall` saves RIP in RCX and
//! RFLAGS in R11, clears the RFLAGS bits set in the IA32_FMASK MSR, loads CS
//! and SS from IA32_STAR[47:32] (SS is that plus 8) and jumps to IA32_LSTAR.
//! It changes nothing else: RSP is still the user's stack, and GS the user's
//! GS. `sysretq` does the reverse: RIP from RCX, RFLAGS from R11, CS from
//! IA32_STAR[63:48] + 16 and SS from IA32_STAR[63:48] + 8, both with RPL 3.
//! Hence the GDT order kernel code, kernel data, user data, user code (`gdt`).
//!
//! **The entry.** With no free register and the user's stack, the stub first
//! swaps GS (the kernel's per-CPU base comes back), parks the user's RSP in
//! the TSS's unused `rsp2` slot and loads the thread's kernel stack from the
//! TSS's `rsp0`, both at fixed `gs:` offsets (the TSS is the first thing in
//! the per-CPU area, see `gdt`), as Linux's `entry_SYSCALL_64`. It then
//! builds the same [`TrapFrame`] an interrupt from user mode would have, so
//! a system call can leave by either road.
//!
//! **The way back.** Intel's `sysretq` raises #GP *in ring 0, on the user's
//! stack* if RCX is not canonical (CVE-2012-0217). The kernel therefore uses
//! it only when the return address is below the top user page and RFLAGS has
//! neither RF nor TF set; otherwise it returns with `iretq`. `iretq` too
//! faults in ring 0 on a non-canonical RIP, so no user page may lie where
//! such a RIP could come from: `map_user` refuses the top page of the lower
//! half, and the frame's selectors and flags are forced back to user ones.

use core::arch::global_asm;

use spin::Once;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, KernelGsBase, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;
use x86_64::structures::gdt::SegmentSelector;

use super::entry::{self, TrapFrame, USER_END};
use super::gdt::{KERNEL_CS, KERNEL_SS, USER_CS, USER_SS};

/// The RFLAGS bits `syscall` clears (Linux's `syscall_init`): CF PF AF ZF SF
/// TF IF DF OF, IOPL, NT, RF, AC, ID. Interrupts stay off until the
/// dispatcher turns them on; DF and AC are clear as the kernel expects.
const SYSCALL_MASK: u64 = 0x0025_7fd5;

static HANDLER: Once<fn(&mut TrapFrame)> = Once::new();

/// Registers what a system call does: the handler reads the call number
/// from `frame.rax` and the arguments from rdi, rsi, rdx, r10, r8, r9, and
/// leaves the result in `frame.rax`. It runs with interrupts on.
pub fn set_handler(handler: fn(&mut TrapFrame)) {
    assert!(HANDLER.get().is_none(), "syscall: the handler is registered twice");
    HANDLER.call_once(|| handler);
}

/// Turns `syscall` on for this CPU (the MSRs are per CPU).
pub fn init_this_cpu() {
    // SAFETY: EFER.SCE only enables the instruction; the MSRs below make it
    // land in `syscall_entry` with the kernel's selectors.
    unsafe { Efer::update(|flags| flags.insert(EferFlags::SYSTEM_CALL_EXTENSIONS)) };
    let selector = |value: u16| SegmentSelector(value);
    Star::write(selector(USER_CS), selector(USER_SS), selector(KERNEL_CS), selector(KERNEL_SS))
        .expect("syscall: the GDT order does not suit STAR");
    unsafe extern "C" {
        fn syscall_entry();
    }
    LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
    SFMask::write(RFlags::from_bits_truncate(SYSCALL_MASK));
    // The value `swapgs` gives GS on the way to user mode: no user GS yet.
    KernelGsBase::write(VirtAddr::new(0));
}

/// Called by `syscall_entry` with the frame it built; returns whether
/// `sysretq` may take the way back (see the module comment).
extern "C" fn syscall_dispatch(frame: &mut TrapFrame) -> bool {
    super::interrupts::enable();
    match HANDLER.get() {
        Some(handler) => handler(frame),
        None => frame.rax = (-38i64) as u64, // -ENOSYS: nothing above is connected
    }
    super::interrupts::disable();
    entry::returning_to_user(frame);
    // Whatever the handler did to the frame, the way back goes to user mode
    // with interrupts on and no I/O privilege, nested task or virtual-8086
    // flag: a frame a later handler edits (a signal return) must not become
    // a way into ring 0.
    frame.cs = USER_CS as u64;
    frame.ss = USER_SS as u64;
    let kept = RFlags::from_bits_truncate(frame.rflags)
        - (RFlags::IOPL_HIGH | RFlags::IOPL_LOW | RFlags::NESTED_TASK | RFlags::VIRTUAL_8086_MODE);
    frame.rflags = (kept | RFlags::INTERRUPT_FLAG).bits() | 0b10;
    frame.rip < USER_END && !kept.intersects(RFlags::RESUME_FLAG | RFlags::TRAP_FLAG)
}

/// Leaves the kernel for the user-mode context in `frame`, by `iretq`.
///
/// # Safety
/// `frame` describes a valid user-mode context (user selectors, a RIP and
/// RSP the process may use), interrupts are off, and nothing on the current
/// kernel stack above the frame is needed any more.
pub unsafe fn enter_user(frame: &TrapFrame) -> ! {
    unsafe extern "C" {
        fn trap_return_to(frame: *const TrapFrame) -> !;
    }
    let mut frame = *frame;
    entry::returning_to_user(&mut frame);
    // SAFETY: as the caller promises; the frame is now a copy on this stack,
    // which `trap_return_to` makes the stack's top.
    unsafe { trap_return_to(&frame) }
}

// The TSS's rsp0 and rsp2, at fixed gs: offsets (gdt: the TSS is at gs:[0]).
global_asm!(
    r#"
    .section .text.syscall_entry, "ax"
    .global syscall_entry
    .hidden syscall_entry
    syscall_entry:
        swapgs
        mov gs:[{rsp2}], rsp
        mov rsp, gs:[{rsp0}]
        push {user_ss}
        push qword ptr gs:[{rsp2}]
        push r11
        push {user_cs}
        push rcx
        push 0
        push rax
        push rdi
        push rsi
        push rdx
        push rcx
        push rax
        push r8
        push r9
        push r10
        push r11
        push rbx
        push rbp
        push r12
        push r13
        push r14
        push r15
        mov rdi, rsp
        push qword ptr [rsp + 17 * 8]
        push rbp
        mov rbp, rsp
        call {dispatch}
        add rsp, 16
        test al, al
        jz 1f
        pop r15
        pop r14
        pop r13
        pop r12
        pop rbp
        pop rbx
        pop r11
        pop r10
        pop r9
        pop r8
        pop rax
        pop rcx
        pop rdx
        pop rsi
        pop rdi
        mov rcx, [rsp + 2 * 8]
        mov r11, [rsp + 4 * 8]
        mov rsp, [rsp + 5 * 8]
        swapgs
        sysretq
    1:
        mov rdi, rsp
        jmp trap_return_to

    .text
    "#,
    rsp0 = const super::gdt::RSP0_OFFSET,
    rsp2 = const super::gdt::RSP2_OFFSET,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
    dispatch = sym syscall_dispatch,
);
