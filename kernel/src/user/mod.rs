//! User mode: processes that run in ring 3 and ask the kernel for services
//! with the `syscall` instruction, using Linux's x86_64 system-call numbers,
//! flags and error values, so the same static binary runs here and on Linux.
//!
//! The pieces, in the order a program meets them:
//! - `run` and `archive`: the program comes from the ramdisk (a cpio archive);
//! - `elf_image`, `loader`, `initial_stack`: its file becomes a process with
//!   a stack laid out as Linux lays it out;
//! - `process`: threads, and how they and the process end;
//! - `syscalls`, with `access` (user pointers), `memory` (mmap and friends,
//!   and the page faults that give memory on demand), `clone`, `futex`.
//!
//! The architecture's part (the `syscall` entry, `swapgs`, `sysretq`, the
//! user-copy routine) is in `arch::x86::syscall` and `arch::x86::user_copy`;
//! this layer registers itself with them at boot, as `irq` and `sched` do.
//! See docs/user-mode.md.

mod access;
// `archive`, `elf_image` and `initial_stack` are also compiled for the host
// (their unit tests, and the build script that writes the archive), which
// uses some items the kernel does not.
#[allow(dead_code)]
mod archive;
mod clone;
mod elf_image;
mod errno;
mod futex;
#[allow(dead_code)]
mod initial_stack;
mod loader;
mod memory;
mod process;
pub mod run;
mod syscall_names;
mod syscalls;
mod tests;

use crate::arch::x86::entry;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::idt::{self, UserFault};
use crate::arch::x86::syscall;
use crate::sched;
use memory::FaultAccess;
use syscalls::Outcome;
use x86_64::structures::idt::PageFaultErrorCode;

/// Connects the system-call table, the user-fault handler, the user-copy
/// fault resolver and the return-to-user check to the architecture's entry.
pub fn init() {
    syscall::set_handler(dispatch);
    idt::set_user_fault_handler(on_user_fault);
    idt::set_user_memory_resolver(resolve_copy_fault);
    entry::set_return_to_user_hook(process::on_return_to_user);
}

fn dispatch(frame: &mut TrapFrame) {
    let outcome = match process::current() {
        Some(process) => syscalls::call(&process, frame),
        // A ring-3 thread without a process (the in-kernel tests' few
        // instructions): only getpid and exit.
        None => bare_thread_call(frame),
    };
    match outcome {
        Outcome::Return(value) => frame.rax = value,
        // Every reference this thread held is dropped by now.
        Outcome::ThreadEnded => sched::exit(),
    }
}

/// A page fault from user mode that the memory map can resolve (demand
/// zero) returns, and the instruction runs again; anything else ends the
/// process, with a report naming the fault, the address and the RIP, and
/// status 128 + the signal Linux would send, as a shell shows it.
fn on_user_fault(frame: &mut TrapFrame, fault: UserFault) {
    let process = process::current();
    if let (Some(process), Some((address, code))) = (&process, fault.page_fault) {
        let access = FaultAccess {
            write: code.contains(PageFaultErrorCode::CAUSED_BY_WRITE),
            execute: code.contains(PageFaultErrorCode::INSTRUCTION_FETCH),
        };
        // User mode had interrupts on: the memory map's lock may sleep.
        crate::arch::x86::interrupts::enable();
        let resolved = process.memory.lock().resolve_fault(&process.space, address, access);
        crate::arch::x86::interrupts::disable();
        if resolved {
            return;
        }
    }
    let signal = match frame.vector {
        6 => 4,           // #UD: SIGILL
        0 | 16 | 19 => 8, // #DE, #MF, #XM: SIGFPE
        1 | 3 => 5,       // #DB, #BP: SIGTRAP
        _ => 11,          // #PF, #GP and the rest: SIGSEGV
    };
    let thread = sched::current_id();
    report_kill(frame, &fault, process.as_deref(), thread);
    crate::arch::x86::interrupts::enable();
    match process {
        Some(process) => {
            process.exit_group(128 + signal);
            drop(process);
        }
        None => tests::record_exit(thread, 128 + signal),
    }
    sched::exit()
}

/// The report of a killed thread (its strings freed before the thread ends).
fn report_kill(
    frame: &TrapFrame,
    fault: &UserFault,
    process: Option<&process::Process>,
    thread: u64,
) {
    let who = match process {
        Some(process) => {
            alloc::format!("pid {} '{}' (thread {thread})", process.pid(), process.name)
        }
        None => alloc::format!("thread {thread}"),
    };
    match fault.page_fault {
        Some((address, _)) => log::warn!(
            "user: {who} killed: {} at address {address:#x}, RIP {:#x}",
            fault.what,
            frame.rip
        ),
        None => log::warn!("user: {who} killed: {}, RIP {:#x}", fault.what, frame.rip),
    }
}

/// A page fault inside a user copy: resolvable as from user mode (the copy
/// runs with interrupts on, on the process's behalf).
fn resolve_copy_fault(address: u64, write: bool) -> bool {
    // Resolving may sleep: not where preemption is off (a spin lock held)
    // or inside an interrupt handler. The copy then fails, with EFAULT.
    if crate::sync::preempt::count() != 0 || crate::irq::depth() != 0 {
        return false;
    }
    let Some(process) = process::current() else { return false };
    let access = FaultAccess { write, execute: false };
    process.memory.lock().resolve_fault(&process.space, address, access)
}

/// The two calls the in-kernel tests' bare ring-3 code makes.
fn bare_thread_call(frame: &TrapFrame) -> Outcome {
    match frame.rax {
        39 => Outcome::Return(sched::current_id()),
        60 | 231 => {
            tests::record_exit(sched::current_id(), frame.rdi as i32);
            Outcome::ThreadEnded
        }
        _ => Outcome::Return((-38i64) as u64),
    }
}
