//! The way into the kernel for every interrupt and exception: one small
//! assembly stub per vector, one common path that saves the registers in a
//! [`TrapFrame`] and calls [`trap_dispatch`](super::idt) in Rust, and one
//! common way back (`iretq`).
//!
//! Why not the compiler's `extern "x86-interrupt"` functions: they end in an
//! `iretq` the compiler writes, so there is no place to put the `swapgs` that
//! a return to user mode needs, and they give neither all the registers nor a
//! frame that can be changed. Linux (`arch/x86/entry/entry_64.S`) and
//! Asterinas (`ostd/src/arch/x86/trap/trap.S`) use stubs of this shape.
//!
//! **What the CPU pushes** (SDM Vol. 3A 6.14.2, "64-Bit Mode Stack Frame"): it
//! aligns RSP down to 16 bytes, pushes SS, RSP, RFLAGS, CS and RIP, and, for
//! the exceptions that have one, an error code. The stub pushes a 0 where
//! there is none, then the vector number, so every frame has the same shape.
//!
//! **GS.** The kernel finds its per-CPU data through the GS base. Code in
//! user mode will have its own GS base, which the kernel's is swapped with
//! (`swapgs`) on the way in and out. The common path decides by the privilege
//! level the CPU was interrupted at, the low two bits of the saved CS. Three
//! vectors cannot trust that: an NMI, a machine check or a double fault can
//! arrive between a `syscall` and the kernel's `swapgs` (or between the last
//! `swapgs` and `sysretq`), in kernel mode with the user's GS. Their
//! "paranoid" path, as Linux's `paranoid_entry`, reads the GS base itself:
//! the kernel's per-CPU areas lie in the upper half, where the sign bit is
//! set, and user mode cannot put its GS base there.
//!
//! **Backtraces.** Before calling into Rust, the path pushes the interrupted
//! RIP and RBP as a frame record and points RBP at it, so the panic report's
//! walk of the RBP chain goes from the handler through the interrupted
//! function to its callers.

use core::arch::global_asm;
use core::sync::atomic::{AtomicUsize, Ordering};

use spin::Once;

/// The registers of an interrupted context, as the entry path saved them:
/// the general-purpose registers, then the vector and error code the stub
/// pushed, then what the CPU pushed. Lowest address first.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// Pushed by the stub.
    pub vector: u64,
    /// Pushed by the CPU for some exceptions, else 0 by the stub.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Offsets in the frame, as the assembly below uses them, counted from the
/// vector (where RSP points once the stub has pushed it).
const _: () = {
    assert!(core::mem::offset_of!(TrapFrame, vector) == 15 * 8);
    assert!(core::mem::offset_of!(TrapFrame, rip) == 17 * 8);
    assert!(core::mem::offset_of!(TrapFrame, cs) == 18 * 8);
    assert!(core::mem::size_of::<TrapFrame>() == 22 * 8);
};

/// The lowest address user mode may not return to: the top page of the
/// lower half stays unmapped, as Linux's TASK_SIZE, so no user RIP is ever
/// near the non-canonical hole (see `syscall` on `sysretq`).
pub const USER_END: u64 = 0x0000_7fff_ffff_f000;

/// Where every stub goes with its frame (`idt::trap_dispatch`), as an
/// address the assembly calls through: this file stays below the code that
/// decides what each vector means.
static TRAP_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Sets where the stubs go; before the IDT is first loaded.
pub fn set_trap_handler(handler: extern "C" fn(&mut TrapFrame)) {
    TRAP_HANDLER.store(handler as *const () as usize, Ordering::Release);
}

static RETURN_TO_USER: Once<fn(&mut TrapFrame)> = Once::new();

/// Registers what runs on every way back to user mode (after an interrupt,
/// an exception or a system call, and at a thread's first entry), with
/// interrupts off, as the last thing before `iretq` or `sysretq`: where a
/// thread whose process is exiting stops instead of going back. Checked
/// with interrupts off, a request made after the check is an interrupt
/// still pending, taken at once in user mode, and checked again there.
pub fn set_return_to_user_hook(hook: fn(&mut TrapFrame)) {
    assert!(RETURN_TO_USER.get().is_none(), "entry: the return-to-user hook is registered twice");
    RETURN_TO_USER.call_once(|| hook);
}

/// Runs the return-to-user hook (interrupts off).
pub fn returning_to_user(frame: &mut TrapFrame) {
    if let Some(hook) = RETURN_TO_USER.get() {
        hook(frame);
    }
}

/// The vectors whose exception pushes an error code (SDM Vol. 3A 6.15):
/// #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX.
pub const HAS_ERROR_CODE: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

/// The vectors that take the paranoid path: NMI, #DF, #MC (see above).
pub const PARANOID: [u8; 3] = [2, 8, 18];

/// The address of vector `vector`'s stub, for the IDT.
pub fn stub_address(vector: u8) -> u64 {
    unsafe extern "C" {
        fn trap_stub_0();
        static trap_stub_offsets: [u32; 256];
    }
    // SAFETY: `trap_stub_offsets` is the table of 256 offsets built below,
    // in read-only data, never written.
    let offset = unsafe { trap_stub_offsets[vector as usize] };
    trap_stub_0 as *const () as u64 + offset as u64
}

// The stubs, the two common paths and the table of where the stubs are.
//
// The common path's stack, from the top: SS RSP RFLAGS CS RIP (the CPU),
// the error code and the vector (the stub), the 15 registers (pushed here):
// 22 words, 176 bytes, on a stack the CPU aligned to 16; the frame record
// adds 16 more, so the `call` happens with RSP 16-byte aligned, as the ABI
// requires.
global_asm!(
    r#"
    .altmacro

    .macro TRAP_STUB vector, has_error_code, paranoid
    trap_stub_\vector:
        .if \has_error_code == 0
            push 0
        .endif
        push \vector
        .if \paranoid
            jmp trap_paranoid
        .else
            jmp trap_common
        .endif
    .endm

    .macro STUB_OFFSET vector
        .long trap_stub_\vector - trap_stub_0
    .endm

    .macro PUSH_REGISTERS
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
    .endm

    .macro POP_REGISTERS
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
    .endm

    // Interrupt gates do not clear RFLAGS.AC, which user mode can set: with
    // SMAP on, a set AC would let the handler touch user memory unchecked.
    // Cleared through the flags on the stack rather than with `clac`: `clac`
    // is #UD without SMAP, and KVM's instruction emulator (which a nested
    // hypervisor may have to run on whatever instruction an interrupt lands
    // on) does not know it; `popfq` it knows.
    .macro CLEAR_AC
        pushfq
        and dword ptr [rsp], ~(1 << 18)
        popfq
    .endm

    // Calls trap_dispatch(frame) with a frame record for the interrupted code.
    .macro CALL_DISPATCH
        mov rdi, rsp
        push qword ptr [rsp + 17 * 8]
        push rbp
        mov rbp, rsp
        call qword ptr [rip + {handler}]
        add rsp, 16
    .endm

    .section .text.trap_entry, "ax"

    trap_common:
        cld
        test byte ptr [rsp + 3 * 8], 3
        jz 1f
        swapgs
    1:
        // Both ways: a CPU that speculates past the branch the wrong way
        // would use the wrong GS base for the loads below (CVE-2019-1125;
        // Linux's FENCE_SWAPGS_USER_ENTRY / _KERNEL_ENTRY).
        lfence
        CLEAR_AC
        PUSH_REGISTERS
        CALL_DISPATCH
    trap_return:
        POP_REGISTERS
        test byte ptr [rsp + 3 * 8], 3
        jz 2f
        swapgs
    2:
        add rsp, 16
        iretq

    // Returns through the frame at rdi (for `syscall::enter_user` and the
    // system call's `iretq` road): the frame becomes the stack.
    .global trap_return_to
    .hidden trap_return_to
    trap_return_to:
        mov rsp, rdi
        jmp trap_return

    // rbx (restored from the frame at the end) remembers whether this path swapped.
    trap_paranoid:
        cld
        CLEAR_AC
        PUSH_REGISTERS
        xor ebx, ebx
        mov ecx, 0xc0000101
        rdmsr
        test edx, edx
        js 1f
        swapgs
        mov ebx, 1
    1:
        lfence
        CALL_DISPATCH
        test ebx, ebx
        jz 2f
        swapgs
    2:
        POP_REGISTERS
        add rsp, 16
        iretq

    .global trap_stub_0
    .hidden trap_stub_0
    .set vector, 0
    .rept 256
        .if vector == 8 || vector == 10 || vector == 11 || vector == 12 || vector == 13 || vector == 14 || vector == 17 || vector == 21 || vector == 29 || vector == 30
            .set has_error_code, 1
        .else
            .set has_error_code, 0
        .endif
        .if vector == 2 || vector == 8 || vector == 18
            .set paranoid, 1
        .else
            .set paranoid, 0
        .endif
        TRAP_STUB %vector, %has_error_code, %paranoid
        .set vector, vector + 1
    .endr

    // Where each stub lies, from the first: differences the assembler works
    // out itself, so the table needs no relocation in this position-
    // independent kernel.
    .section .rodata.trap_stub_offsets, "a"
    .balign 4
    .global trap_stub_offsets
    .hidden trap_stub_offsets
    trap_stub_offsets:
    .set vector, 0
    .rept 256
        STUB_OFFSET %vector
        .set vector, vector + 1
    .endr

    .noaltmacro
    .text
    "#,
    handler = sym TRAP_HANDLER,
);
