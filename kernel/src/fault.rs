//! Fault injection: misbehaviour on purpose, to reproduce problems.
//!
//! `irqoff_us=N` makes one CPU (`irqoff_cpu=`, default the last) run with
//! interrupts disabled for N microseconds at a time, with 1 ms of normal
//! running in between: a CPU stuck in a long interrupts-off section, the "slow
//! CPU" that every cross-CPU call to it must wait for.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::instructions::interrupts;

use crate::sched::{Builder, JoinHandle, Priority};
use crate::time;

/// A running irqs-off injector; `stop()` ends it.
pub struct IrqOffInjector {
    stop: Arc<AtomicBool>,
    thread: JoinHandle,
}

impl IrqOffInjector {
    pub fn start(cpu: usize, irqoff_us: u64) -> IrqOffInjector {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = Builder::new("irqoff").priority(Priority::RealTime(3)).pin(cpu).spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                interrupts::disable();
                time::udelay(irqoff_us);
                interrupts::enable();
                crate::sched::sleep_ns(1_000_000);
            }
        });
        log::info!("fault: cpu{cpu} runs with interrupts off for {irqoff_us} us at a time");
        IrqOffInjector { stop, thread }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        self.thread.join();
    }
}

/// Starts the injector `irqoff_us=` asks for, if any; it runs until shutdown.
pub fn start_from_args() {
    let args = crate::args::get();
    let cpus = crate::smp::cpus().len();
    if args.irqoff_us == 0 {
        return;
    }
    let cpu = args.irqoff_cpu.unwrap_or(cpus.saturating_sub(1));
    if cpu == 0 || cpu >= cpus {
        log::warn!("fault: irqoff_cpu={cpu} is not a CPU other than 0 here ({cpus} CPUs); no injector");
        return;
    }
    core::mem::forget(IrqOffInjector::start(cpu, args.irqoff_us));
}
