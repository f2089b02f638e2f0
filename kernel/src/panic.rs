//! The panic path: one report, printed whole, then a quiet stop.
//!
//! - The first CPU to panic owns the panic; any later panic (another CPU, or a
//!   panic inside this path) stops its CPU without printing over the report.
//! - The report goes through the console's emergency writer, which does not
//!   wait for the console lock (its holder may never release it).
//! - Afterwards the CPU either exits QEMU (`panic=exit`, the default while
//!   tests run) or stops its timer and sleeps in `sti; hlt` (`panic=halt`).

use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::x86::{cpu, lapic, qemu_exit};
use crate::args::{self, PanicAction};
use crate::console::emergency_write;
use crate::percpu;

static PANIC_IN_PROGRESS: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    x86_64::instructions::interrupts::disable();
    if PANIC_IN_PROGRESS.swap(true, Ordering::AcqRel) {
        // Someone already owns the panic (perhaps this CPU, panicking again
        // while reporting): say nothing more and stop.
        cpu::halt_forever();
    }
    report(info);
    match args::get().panic_action() {
        PanicAction::Exit => qemu_exit::exit(qemu_exit::ExitCode::Failure),
        PanicAction::Halt => halt_quietly(),
    }
}

fn report(info: &PanicInfo) {
    emergency_write(format_args!("\n---- kernel panic on cpu{} ----\n", percpu::cpu_number()));
    emergency_write(format_args!("panic: {}\n", info.message()));
    if let Some(location) = info.location() {
        emergency_write(format_args!("panic: at {}:{}:{}\n", location.file(), location.line(), location.column()));
    }
    emergency_write(format_args!("panic: backtrace (return addresses, newest first):\n{}", Backtrace));
}

/// The chain of saved frame pointers: the kernel is built with frame pointers,
/// so each frame starts with [saved rbp, return address].
struct Backtrace;

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut frame: u64;
        // SAFETY: reading rbp has no side effects.
        unsafe { core::arch::asm!("mov {}, rbp", out(reg) frame, options(nomem, nostack, preserves_flags)) };
        for depth in 0..32 {
            // Kernel stacks are in the higher half and 16-byte aligned frames are
            // 8-byte aligned at least; anything else ends the walk.
            if frame < 0xffff_8000_0000_0000 || frame % 8 != 0 {
                break;
            }
            // SAFETY: checked above to be an aligned higher-half address; a bogus
            // but mapped value only yields a bogus line, and an unmapped one
            // faults into the nested-panic stop.
            let (next, return_address) = unsafe { (*(frame as *const u64), *((frame + 8) as *const u64)) };
            if return_address == 0 {
                break;
            }
            writeln!(f, "panic:   #{depth:<2} {return_address:#018x}")?;
            if next <= frame {
                break;
            }
            frame = next;
        }
        Ok(())
    }
}

fn halt_quietly() -> ! {
    if lapic::is_initialised() {
        crate::time::timer::stop();
    }
    emergency_write(format_args!("panic: halting (sti; hlt)\n"));
    loop {
        cpu::enable_interrupts_and_halt();
    }
}
