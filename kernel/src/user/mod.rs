//! User mode: processes that run in ring 3 and ask the kernel for services
//! with the `syscall` instruction, using Linux's x86_64 system-call numbers
//! and error values, so the same static binary can run here and on Linux.
//!
//! This is the first step (issue 15 lists the rest): the system-call table
//! with `getpid`, `exit` and `exit_group`, every other number answered with
//! `-ENOSYS` (its number logged once), and an in-kernel test that runs a few
//! instructions in ring 3 on every CPU. The entry itself (`syscall`,
//! `swapgs`, the stack switch, `sysretq`) is the architecture's:
//! `arch::x86::syscall`.

use alloc::vec::Vec;

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::syscall;
use crate::sync::SpinLock;

mod tests;

/// Linux's error numbers (include/uapi/asm-generic/errno-base.h, errno.h),
/// returned negated in RAX.
const ENOSYS: i64 = 38;

/// Linux's x86_64 system-call numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_GETPID: u64 = 39;
const SYS_EXIT: u64 = 60;
const SYS_EXIT_GROUP: u64 = 231;

/// Connects the system-call table and the user-fault handler to the
/// architecture's entry.
pub fn init() {
    syscall::set_handler(dispatch);
    crate::arch::x86::idt::set_user_fault_handler(kill_on_fault);
}

/// An exception in user mode ends the thread that took it, not the kernel:
/// the report names the fault, the address and the RIP, and the status is
/// what a shell shows for a process killed by the signal Linux would send
/// (128 + SIGSEGV, SIGILL, SIGFPE or SIGTRAP).
fn kill_on_fault(frame: &TrapFrame, what: &str, address: Option<u64>) -> ! {
    let signal = match frame.vector {
        6 => 4,           // #UD: SIGILL
        0 | 16 | 19 => 8, // #DE, #MF, #XM: SIGFPE
        1 | 3 => 5,       // #DB, #BP: SIGTRAP
        _ => 11,          // #PF, #GP and the rest: SIGSEGV
    };
    let id = crate::sched::current_id();
    match address {
        Some(address) => log::warn!(
            "user: thread {id} killed: {what} at address {address:#x}, RIP {:#x}",
            frame.rip
        ),
        None => log::warn!("user: thread {id} killed: {what}, RIP {:#x}", frame.rip),
    }
    exit(128 + signal)
}

/// How each thread that left user mode through `exit` ended: (thread id,
/// status). A stand-in for processes, which come next.
static EXITS: SpinLock<Vec<(u64, i32)>> = SpinLock::new(Vec::new());

/// The exit status thread `id` gave, if it has exited through `exit`.
pub fn exit_status(id: u64) -> Option<i32> {
    EXITS.lock().iter().find(|(thread, _)| *thread == id).map(|&(_, status)| status)
}

fn dispatch(frame: &mut TrapFrame) {
    let result: i64 = match frame.rax {
        SYS_GETPID => crate::sched::current_id() as i64,
        SYS_EXIT | SYS_EXIT_GROUP => exit(frame.rdi as i32),
        number => {
            not_implemented(number);
            -ENOSYS
        }
    };
    frame.rax = result as u64;
}

fn exit(status: i32) -> ! {
    EXITS.lock().push((crate::sched::current_id(), status));
    crate::sched::exit()
}

/// Logs an unimplemented call once per number.
fn not_implemented(number: u64) {
    static SEEN: SpinLock<Vec<u64>> = SpinLock::new(Vec::new());
    let mut seen = SEEN.lock();
    if !seen.contains(&number) {
        seen.push(number);
        log::warn!("user: system call {number} is not implemented (-ENOSYS)");
    }
}
