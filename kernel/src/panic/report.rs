//! The report: what panicked, where, on which CPU and thread, with the
//! registers of the exception that caused it, a symbolised backtrace, and
//! where each stopped CPU was. Everything here writes with
//! `emergency_write`, allocates nothing and takes no lock another CPU may hold.

use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::Ordering;

use super::{EARLY_CPU_BASE, STOP_TIMEOUT_MS, STOPPED, STOPPED_AFTER_OWN_PANIC, STOPPED_BY_NMI};
use crate::arch::x86::control::ControlRegisters;
use crate::arch::x86::cpu;
use crate::arch::x86::exception::{self, SavedException};
use crate::console::emergency_write;
use crate::symbols::{self, Demangled};
use crate::{irq, percpu, smp};

/// The panic's message, and where in the source it was raised.
fn write_message_and_location(info: &PanicInfo) {
    emergency_write(format_args!("panic: {}\n", info.message()));
    if let Some(location) = info.location() {
        emergency_write(format_args!(
            "panic: at {}:{}:{}\n",
            location.file(),
            location.line(),
            location.column()
        ));
    }
}

/// `preempt_count` is the count when the panic began (the panic raised it since).
pub(super) fn report(info: &PanicInfo, me: usize, frame: u64, preempt_count: u32) {
    if !percpu::is_installed() {
        let apic_id = me - EARLY_CPU_BASE;
        emergency_write(format_args!(
            "\n---- kernel panic on the CPU with APIC id {apic_id} (no per-CPU data yet) ----\n"
        ));
        write_message_and_location(info);
        emergency_write(format_args!(
            "panic: context: an AP starting up, before its per-CPU data was installed\n"
        ));
        emergency_write(format_args!("panic: backtrace (newest first):\n{}", Backtrace(frame)));
        return;
    }
    emergency_write(format_args!("\n---- kernel panic on cpu{me} ----\n"));
    write_message_and_location(info);
    let exception = exception::this_cpu_record().and_then(|record| record.saved());
    let context = match (&exception, irq::depth()) {
        (Some(saved), _) => Context::Exception(saved.vector),
        (None, 0) => Context::Kernel,
        (None, depth) => Context::Interrupt(depth),
    };
    emergency_write(format_args!(
        "panic: context: cpu{me}, {context}, preempt count {preempt_count}, {}\n",
        crate::sched::CurrentThread
    ));
    if let Some(SavedException { rip, rsp, rflags, cs, ss, error_code, .. }) = exception {
        emergency_write(format_args!(
            "panic: registers at the exception: RIP {:#018x} {}\n\
             panic:   RSP {:#018x}  RFLAGS {:#010x}  CS {:#06x}  SS {:#06x}  error code {:#x}\n",
            rip,
            Symbol(rip),
            rsp,
            rflags,
            cs,
            ss,
            error_code,
        ));
    }
    let ControlRegisters { cr0, cr2, cr3, cr4 } = ControlRegisters::read();
    emergency_write(format_args!(
        "panic: control registers: CR0 {cr0:#x}  CR2 {cr2:#x}  CR3 {cr3:#x}  CR4 {cr4:#x}\n"
    ));
    if exception.is_none() {
        emergency_write(format_args!(
            "panic: stack: RSP {:#018x}  RBP {frame:#018x}\n",
            cpu::stack_pointer()
        ));
    }
    emergency_write(format_args!("panic: backtrace (newest first):\n{}", Backtrace(frame)));
}

/// Where the panic happened.
enum Context {
    Exception(u8),
    Interrupt(u32),
    Kernel,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Context::Exception(vector) => write!(f, "exception handler (vector {vector})"),
            Context::Interrupt(depth) => write!(f, "interrupt handler (nesting depth {depth})"),
            Context::Kernel => f.write_str("kernel code outside interrupts"),
        }
    }
}

pub(super) fn report_stopped_cpus(me: usize, stopped: usize) {
    let others = smp::online_except(me);
    if smp::cpus().len() <= 1 {
        return;
    }
    emergency_write(format_args!("panic: other CPUs ({stopped} stopped):\n"));
    for cpu in others {
        let record = STOPPED.on(cpu.number);
        let rip = record.rip.load(Ordering::Relaxed);
        match record.how.load(Ordering::Acquire) {
            STOPPED_BY_NMI => emergency_write(format_args!(
                "panic:   cpu{} stopped by NMI at RIP {rip:#018x} {}\n",
                cpu.number,
                Symbol(rip)
            )),
            STOPPED_AFTER_OWN_PANIC => emergency_write(format_args!(
                "panic:   cpu{} stopped: it panicked too, called from {rip:#018x} {}\n",
                cpu.number,
                CallSite(rip)
            )),
            _ => emergency_write(format_args!(
                "panic:   cpu{} did not stop within {STOP_TIMEOUT_MS} ms\n",
                cpu.number
            )),
        }
    }
}

/// `name+0xoffset` for a code address, or nothing if it is not in a known function.
struct Symbol(u64);

/// The same for a return address: named by the call before it.
struct CallSite(u64);

impl fmt::Display for CallSite {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match symbols::lookup_return_address(self.0) {
            Some((name, offset)) => write!(f, "{}+{:#x}", Demangled(name), offset),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match symbols::lookup(self.0) {
            Some((name, offset)) => write!(f, "{}+{:#x}", Demangled(name), offset),
            None => Ok(()),
        }
    }
}

/// The chain of saved frame pointers: with frame pointers each frame starts
/// with [saved rbp, return address]. Every step is checked against the page
/// tables first, so a corrupt chain ends the walk instead of faulting.
struct Backtrace(u64);

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut frame = self.0;
        let mut shown = 0;
        let (mut previous, mut repeats) = (0, 0);
        for _ in 0..256 {
            if !frame.is_multiple_of(8)
                || !crate::mm::paging::is_mapped_for_panic(frame)
                || !crate::mm::paging::is_mapped_for_panic(frame + 15)
            {
                break;
            }
            // SAFETY: both words were just found mapped; the memory is only read.
            let (next, return_address) =
                unsafe { (*(frame as *const u64), *((frame + 8) as *const u64)) };
            // Words that are not code addresses (an interrupt frame's error code)
            // are skipped; a recursion is shown once, with a count.
            if let Some((name, offset)) = symbols::lookup_return_address(return_address) {
                if return_address == previous {
                    repeats += 1;
                } else {
                    if repeats > 0 {
                        writeln!(f, "panic:       (the frame above repeats {repeats} more times)")?;
                        repeats = 0;
                    }
                    writeln!(
                        f,
                        "panic:   #{shown:<2} {return_address:#018x} {}+{offset:#x}",
                        Demangled(name)
                    )?;
                    shown += 1;
                    previous = return_address;
                }
            }
            if next <= frame {
                break;
            }
            frame = next;
        }
        if repeats > 0 {
            writeln!(
                f,
                "panic:       (the frame above repeats {repeats} more times, then the walk stopped)"
            )?;
        }
        if shown == 0 {
            writeln!(f, "panic:   (no frames found)")?;
        }
        Ok(())
    }
}
