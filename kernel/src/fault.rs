//! Fault injection: misbehaviour on purpose, to reproduce problems.
//!
//! `irqoff_us=N` makes one CPU (`irqoff_cpu=`, default the last) run with
//! interrupts disabled for N microseconds at a time, with 1 ms of normal
//! running in between: a CPU stuck in a long interrupts-off section, the "slow
//! CPU" that every cross-CPU call to it must wait for.
//!
//! The slow CPU does not spin through its interrupts-off window: it executes
//! `cli; hlt`, and a helper thread on the boot CPU ends the window with an NMI
//! (which `hlt` with IF=0 still wakes for; SDM Vol. 2A, HLT). To every other
//! CPU that is the same as a CPU spinning with interrupts off, but under an
//! emulator it leaves the host's cores to the CPUs being measured.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

use crate::sched::{Builder, JoinHandle, Priority};

/// Set by the slow CPU while it is in its interrupts-off window.
static WINDOW_OPEN: AtomicBool = AtomicBool::new(false);
/// Set by the timer thread to end the window; the slow CPU clears both.
static CLOSE_WINDOW: AtomicBool = AtomicBool::new(false);
/// The CPU that runs the injector (NMIs elsewhere are not ours).
static SLOW_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by the NMI handler: true if the NMI is the injector's. Its only job
/// is to end the `hlt`; the slow CPU then looks at CLOSE_WINDOW itself. On the
/// slow CPU every NMI is taken as the injector's: it repeats them until the
/// window is closed, so one may arrive after another already ended it.
pub fn nmi_ends_irqoff_window() -> bool {
    crate::percpu::cpu_number() == SLOW_CPU.load(Ordering::Acquire)
}

/// A running irqs-off injector; `stop()` ends it.
pub struct IrqOffInjector {
    stop: Arc<AtomicBool>,
    threads: [JoinHandle; 2],
}

impl IrqOffInjector {
    pub fn start(cpu: usize, irqoff_us: u64) -> IrqOffInjector {
        SLOW_CPU.store(cpu, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let slow = Builder::new("irqoff").priority(Priority::RealTime(3)).pin(cpu).spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                if crate::percpu::cpu_number() != cpu {
                    // Its CPU was parked and the thread moved: the NMIs that end
                    // a window go to `cpu`, so a window here would never end.
                    log::warn!("fault: the irqoff thread left CPU {cpu}; the injector stops");
                    WINDOW_OPEN.store(false, Ordering::Release);
                    return;
                }
                interrupts::disable();
                WINDOW_OPEN.store(true, Ordering::Release);
                // Halt until the timer thread asks to close the window. An NMI
                // that lands between the check and the hlt is no loss: the
                // timer thread sends another every 100 us until WINDOW_OPEN is
                // false, which only this thread makes it.
                while !CLOSE_WINDOW.load(Ordering::Acquire) {
                    x86_64::instructions::hlt();
                }
                CLOSE_WINDOW.store(false, Ordering::Relaxed);
                WINDOW_OPEN.store(false, Ordering::Release);
                interrupts::enable();
                crate::sched::sleep_ns(1_000_000);
            }
        });
        let stop3 = stop.clone();
        let apic_id = crate::smp::cpus()[cpu].apic_id;
        let timer = Builder::new("irqoff-timer").priority(Priority::RealTime(3)).pin(0).spawn(move || {
            while !stop3.load(Ordering::Acquire) || WINDOW_OPEN.load(Ordering::Acquire) {
                if !WINDOW_OPEN.load(Ordering::Acquire) {
                    crate::sched::sleep_ns(100_000);
                    continue;
                }
                crate::sched::sleep_ns(irqoff_us * 1000);
                CLOSE_WINDOW.store(true, Ordering::Release);
                while WINDOW_OPEN.load(Ordering::Acquire) {
                    crate::arch::x86::lapic::get().send_ipi(apic_id, crate::arch::x86::lapic::Ipi::Nmi);
                    crate::sched::sleep_ns(100_000);
                }
            }
        });
        log::info!("fault: cpu{cpu} runs with interrupts off for {irqoff_us} us at a time");
        IrqOffInjector { stop, threads: [slow, timer] }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads {
            thread.join();
        }
        SLOW_CPU.store(usize::MAX, Ordering::Release);
    }
}

/// Starts the injector `irqoff_us=` asks for, if any; it runs until shutdown.
pub fn start_from_args() {
    let args = crate::args::get();
    let cpus = crate::smp::cpus().len();
    // bench=tlb runs an injector of its own with the same setting.
    if args.irqoff_us == 0 || args.bench == Some(crate::args::Bench::Tlb) {
        return;
    }
    let cpu = args.irqoff_cpu.unwrap_or(cpus.saturating_sub(1));
    if cpu == 0 || cpu >= cpus {
        log::warn!("fault: irqoff_cpu={cpu} is not a CPU other than 0 here ({cpus} CPUs); no injector");
        return;
    }
    core::mem::forget(IrqOffInjector::start(cpu, args.irqoff_us));
}
