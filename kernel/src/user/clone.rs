//! `clone(2)` for threads: the flags musl's `pthread_create` passes, and no
//! other combination (there is no `fork`: one process per address space).
//!
//! The new thread starts where its parent's `syscall` returns, with the
//! parent's registers except RAX = 0 (so `clone` returns 0 in the child),
//! RSP = the new stack, and FS = the new thread-local area (CLONE_SETTLS).

use alloc::sync::Arc;

use super::access;
use super::errno::{EAGAIN, EINVAL, ENOSYS, EPERM, Errno};
use super::process::Process;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::fpu::{self, UserRegisters};
use crate::mm::address_space::USER_END;

const CLONE_VM: u64 = 0x100;
const CLONE_FS: u64 = 0x200;
const CLONE_FILES: u64 = 0x400;
const CLONE_SIGHAND: u64 = 0x800;
const CLONE_THREAD: u64 = 0x10000;
const CLONE_SYSVSEM: u64 = 0x40000;
const CLONE_SETTLS: u64 = 0x80000;
const CLONE_PARENT_SETTID: u64 = 0x100000;
const CLONE_CHILD_CLEARTID: u64 = 0x200000;
/// Ignored by Linux since 2.6 (musl still passes it).
const CLONE_DETACHED: u64 = 0x400000;

/// What makes a thread: one address space, one set of files and signal
/// handlers, one thread group.
const THREAD: u64 = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
const ACCEPTED: u64 = THREAD
    | CLONE_SYSVSEM
    | CLONE_SETTLS
    | CLONE_PARENT_SETTID
    | CLONE_CHILD_CLEARTID
    | CLONE_DETACHED;

/// `clone(flags, stack, parent_tid, child_tid, tls)` (x86_64 order).
pub fn clone(
    process: &Arc<Process>,
    frame: &TrapFrame,
    flags: u64,
    stack: u64,
    parent_tid: u64,
    child_tid: u64,
    tls: u64,
) -> Result<u64, Errno> {
    // The low byte is the signal sent to the parent at exit: none here.
    let flags = flags & !0xff;
    if flags & THREAD != THREAD {
        log::warn!("user: clone({flags:#x}) without the thread flags (fork) is not implemented");
        return Err(ENOSYS);
    }
    if flags & !ACCEPTED != 0 {
        return Err(EINVAL);
    }
    if process.is_exiting() {
        return Err(EAGAIN);
    }
    if flags & CLONE_SETTLS != 0 && tls >= USER_END {
        return Err(EPERM); // as ARCH_SET_FS: FS must point into the user half
    }
    let fs_base = if flags & CLONE_SETTLS != 0 { tls } else { fpu::fs_base() };
    let registers = UserRegisters::copy_of_live(fs_base);
    let mut child = *frame;
    child.rax = 0;
    if stack != 0 {
        child.rsp = stack;
    }
    let clear_child_tid = if flags & CLONE_CHILD_CLEARTID != 0 { child_tid } else { 0 };
    let tid = process.start_thread(registers, true, clear_child_tid, move |_| Ok(child));
    if flags & CLONE_PARENT_SETTID != 0 {
        // Linux writes it before the child runs; musl reads it only in the
        // parent, after clone returns, so writing it here is as good.
        let _ = access::write_value(parent_tid, &(tid as u32));
    }
    Ok(tid)
}
