//! The context switch: the only place where one thread's registers are put
//! away and another's taken up.
//!
//! `switch_stacks(save, load, prev)` is called like a function by the thread
//! that gives up the CPU. It pushes the registers the System V ABI says a
//! called function must preserve (rbx, rbp, r12-r15), stores the stack pointer
//! in `*save`, loads `load` as the new stack pointer, pops the other thread's
//! registers and returns: into the other thread, at the point where that one
//! called `switch_stacks` earlier. Everything else a thread needs (its
//! instruction pointer, the caller-saved registers) is already on its stack,
//! saved by the ordinary call. `prev` is handed through in rax so the thread
//! that resumes knows whom it replaced and can finish that thread's switch.
//!
//! The kernel is built without SSE or x87 code (target x86_64-unknown-none,
//! soft float; CR0.EM is set at boot so any such instruction faults), so there
//! is no floating-point state to save. What a thread is, is the scheduler's
//! business (`sched::switch`): here it is an opaque pointer.

use core::arch::global_asm;

global_asm!(
    r#"
.global arch_switch_stacks
arch_switch_stacks:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    mov [rdi], rsp          /* save: the old thread's stack pointer */
    mov rsp, rsi            /* load: the new thread's */
    mov rax, rdx            /* prev, returned to the new thread */
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

/* A new thread's first return from arch_switch_stacks lands here, with
   rax = the thread it replaced, r12 = the new thread, r13 = its entry. */
.global arch_thread_start
arch_thread_start:
    mov rdi, rax
    mov rsi, r12
    call r13
    ud2
"#
);

unsafe extern "C" {
    fn arch_switch_stacks(save: *mut u64, load: u64, prev: *const ()) -> *const ();
    fn arch_thread_start();
}

/// Switches from the calling thread (`prev`, whose stack pointer goes to
/// `save`) to the thread whose saved stack pointer is `load`. Returns, when
/// some CPU switches back to the caller, the thread that CPU was running.
///
/// # Safety
/// Interrupts are disabled; `load` is a stack pointer saved by this function
/// (or built by [`initial_stack`]) whose thread is not running anywhere.
pub unsafe fn switch_stacks<T>(save: *mut u64, load: u64, prev: *const T) -> *const T {
    // SAFETY: the caller's contract.
    unsafe { arch_switch_stacks(save, load, prev.cast()).cast() }
}

/// Lays out a new thread's stack as if it had called `arch_switch_stacks`
/// from `arch_thread_start`: six saved registers (r12 = `thread`, r13 =
/// `entry`), then the return address. Returns the stack pointer to save. The
/// first switch to it calls `entry(prev, thread)`.
pub fn initial_stack<T>(
    top: u64,
    thread: *const T,
    entry: extern "C" fn(prev: *const T, me: *const T) -> !,
) -> u64 {
    // After the six pops and `ret`, rsp = top - 16: 16-byte aligned at the
    // `call` in arch_thread_start, as the ABI requires.
    let frame = (top - 72) as *mut u64;
    let words =
        [0, 0, entry as usize as u64, thread as u64, 0, 0, arch_thread_start as *const () as u64];
    // (r15, r14, r13, r12, rbx, rbp, return address), lowest address first.
    // SAFETY: the 72 bytes below `top` are the fresh, mapped stack of a thread
    // that does not run yet.
    unsafe {
        for (i, word) in words.iter().enumerate() {
            frame.add(i).write(*word);
        }
    }
    frame as u64
}
