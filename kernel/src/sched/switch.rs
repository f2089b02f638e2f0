//! The context switch, as the scheduler sees it: between two `Thread`s. The
//! register save and restore itself, in assembly, is `arch::x86::switch`.

use super::thread::Thread;
use crate::arch::x86::switch as arch_switch;

/// Switches from the calling thread (`prev`, whose stack pointer goes to
/// `save`) to the thread whose saved stack pointer is `load`. Returns, when
/// some CPU switches back to `prev`, the thread that CPU was running.
///
/// # Safety
/// Interrupts are disabled; `load` is a stack pointer saved by this function
/// (or built by `initial_stack`) whose thread is not running anywhere.
pub(super) unsafe fn switch(save: *mut u64, load: u64, prev: *const Thread) -> *const Thread {
    // SAFETY: the caller's contract.
    unsafe { arch_switch::switch_stacks(save, load, prev) }
}

/// A new thread's stack, whose first switch enters `sched::thread_entry`.
pub(super) fn initial_stack(top: u64, thread: *const Thread) -> u64 {
    arch_switch::initial_stack(top, thread, super::thread_entry)
}
