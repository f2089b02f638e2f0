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
//!
//! The helper thread runs on CPU 0. A cross-CPU call made from CPU 0 in
//! `ipi_wait=spin` mode to the slow CPU therefore never returns: CPU 0 spins
//! with preemption off, waiting for a CPU whose window only CPU 0's helper can
//! end. That is spin mode's hazard in miniature; with the injector, make
//! spin-mode calls from other CPUs (as `bench=tlb` does).

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

use crate::sched::{Builder, JoinHandle, Priority};

/// Windows are numbered. The slow thread opens window n (OPENED = n) and
/// closes it (CLOSED = n); the timer thread asks for window n to close
/// (CLOSE_REQUESTED = n). Numbers, not flags: a timer thread that runs late
/// (its CPU busy for longer than the 1 ms between windows) must not mistake
/// the next window for the one it was closing, and leave it open for good.
static OPENED: AtomicU64 = AtomicU64::new(0);
static CLOSED: AtomicU64 = AtomicU64::new(0);
static CLOSE_REQUESTED: AtomicU64 = AtomicU64::new(0);
/// The CPU that runs the injector (NMIs elsewhere are not ours).
static SLOW_CPU: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by the NMI handler: true if the NMI is the injector's. Its only job
/// is to end the `hlt`; the slow CPU then looks at CLOSE_REQUESTED itself. On the
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
                interrupts::disable();
                if crate::percpu::cpu_number() != cpu {
                    // Its CPU was parked and the thread moved: the NMIs that end
                    // a window go to `cpu`, so a window here would never end.
                    // (Checked with interrupts off: no move after the check.)
                    interrupts::enable();
                    log::warn!("fault: the irqoff thread left CPU {cpu}; the injector stops");
                    return;
                }
                let window = OPENED.load(Ordering::Relaxed) + 1;
                OPENED.store(window, Ordering::Release);
                // Halt until the timer thread asks for this window to close. An
                // NMI that lands between the check and the hlt is no loss: the
                // timer thread sends one every 100 us until CLOSED says so.
                while CLOSE_REQUESTED.load(Ordering::Acquire) < window {
                    x86_64::instructions::hlt();
                }
                CLOSED.store(window, Ordering::Release);
                interrupts::enable();
                crate::sched::sleep_ns(1_000_000);
            }
        });
        let stop3 = stop.clone();
        let apic_id = crate::smp::cpus()[cpu].apic_id;
        let timer = Builder::new("irqoff-timer").priority(Priority::RealTime(3)).pin(0).spawn(move || {
            loop {
                let window = OPENED.load(Ordering::Acquire);
                if window == CLOSED.load(Ordering::Acquire) {
                    if stop3.load(Ordering::Acquire) {
                        return;
                    }
                    crate::sched::sleep_ns(100_000);
                    continue;
                }
                crate::sched::sleep_ns(irqoff_us * 1000);
                CLOSE_REQUESTED.store(window, Ordering::Release);
                while CLOSED.load(Ordering::Acquire) < window {
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
