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

use crate::arch::x86::interrupts;

use crate::mm::address_space::AddressSpace;
use crate::sched::wait::Completion;
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
/// The slow thread completes `WINDOW_OPENED` as it opens a window and
/// `WINDOW_CLOSED` once it has closed it, so the timer thread sleeps until
/// there is something to do. (It used to poll every 100 us: 10,000 wake-ups a
/// second that kept CPU 0's vCPU, and a host core, busy during every benchmark.)
static WINDOW_OPENED: Completion = Completion::new();
static WINDOW_CLOSED: Completion = Completion::new();
/// Set by the slow thread when it has stopped for good: the timer thread's
/// cue to stop too.
static SLOW_THREAD_DONE: AtomicBool = AtomicBool::new(false);

/// How long the timer thread waits for a window to close before it sends
/// another NMI (the first may have arrived before the slow CPU's `hlt`): a
/// quarter of the window, from 50 us to 1 ms, so a lost NMI stretches a short
/// window by little.
fn nmi_retry_ns(irqoff_us: u64) -> u64 {
    (irqoff_us * 1000 / 4).clamp(50_000, 1_000_000)
}

/// The NMI chain's last stage: true if the NMI is the injector's. Its only job
/// is to end the `hlt`; the slow CPU then looks at CLOSE_REQUESTED itself. On the
/// slow CPU every NMI is taken as the injector's: it repeats them until the
/// window is closed, so one may arrive after another already ended it.
fn nmi_ends_irqoff_window(_interrupted_rip: u64) -> bool {
    crate::percpu::cpu_number() == SLOW_CPU.load(Ordering::Acquire)
}

/// A running irqs-off injector; `stop()` ends it.
pub struct IrqOffInjector {
    stop: Arc<AtomicBool>,
    threads: [JoinHandle; 2],
}

impl IrqOffInjector {
    /// Starts the injector on `cpu`. With `space`, the slow thread runs in
    /// that address space, so the slow CPU is a busy CPU of the space (a
    /// shootdown target) while its window is open; between windows it sleeps
    /// and the CPU goes lazy, as a real one would.
    pub fn start(cpu: usize, irqoff_us: u64, space: Option<Arc<AddressSpace>>) -> IrqOffInjector {
        SLOW_CPU.store(cpu, Ordering::Release);
        SLOW_THREAD_DONE.store(false, Ordering::Release);
        let stop = Arc::new(AtomicBool::new(false));
        let mut slow = Builder::new("irqoff").priority(Priority::RealTime(3)).pin(cpu);
        if let Some(space) = space {
            slow = slow.address_space(space);
        }
        let stop2 = stop.clone();
        let slow = slow.spawn(move || run_windows(cpu, &stop2));
        let target = cpu;
        let timer = Builder::new("irqoff-timer")
            .priority(Priority::RealTime(3))
            .pin(0)
            .spawn(move || end_windows(target, irqoff_us));
        log::info!("fault: cpu{cpu} runs with interrupts off for {irqoff_us} us at a time");
        IrqOffInjector { stop, threads: [slow, timer] }
    }

    /// Asks the slow thread to stop; it finishes its window first, and the
    /// timer thread leaves only after it (see `end_windows`).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads {
            thread.join();
        }
        SLOW_CPU.store(usize::MAX, Ordering::Release);
    }
}

/// The slow thread: open a window (interrupts off, `hlt` until asked to
/// close), close it, run normally for 1 ms, again.
fn run_windows(cpu: usize, stop: &AtomicBool) {
    open_and_close_windows(cpu, stop);
    // The timer thread may now leave: no window of ours will open again.
    SLOW_THREAD_DONE.store(true, Ordering::Release);
    WINDOW_OPENED.complete();
}

fn open_and_close_windows(cpu: usize, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        let window = OPENED.load(Ordering::Relaxed) + 1;
        interrupts::disable();
        if crate::percpu::cpu_number() != cpu {
            // Its CPU was parked and the thread moved: the NMIs that end
            // a window go to `cpu`, so a window here would never end.
            // (Checked with interrupts off: no move after the check.)
            interrupts::enable();
            log::warn!("fault: the irqoff thread left CPU {cpu}; the injector stops");
            CLOSED.store(OPENED.load(Ordering::Relaxed), Ordering::Release);
            WINDOW_CLOSED.complete();
            return;
        }
        OPENED.store(window, Ordering::Release);
        // Waking a thread on another CPU is fine with interrupts off (an
        // interrupt handler does the same).
        WINDOW_OPENED.complete();
        // Halt until the timer thread asks for this window to close. An NMI
        // that lands between the check and the hlt is lost, but the timer
        // thread repeats it until CLOSED says so: the window runs long by
        // one retry interval (nmi_retry_ns), no more.
        while CLOSE_REQUESTED.load(Ordering::Acquire) < window {
            crate::arch::x86::cpu::halt();
        }
        CLOSED.store(window, Ordering::Release);
        interrupts::enable();
        WINDOW_CLOSED.complete();
        crate::sched::sleep_ns(1_000_000);
    }
}

/// The timer thread: for each window, sleep for its length, then end it with
/// NMIs until the slow thread says it is closed.
fn end_windows(slow_cpu: usize, irqoff_us: u64) {
    loop {
        WINDOW_OPENED.wait();
        // Only once the slow thread has finished may this one leave: a
        // window it opened just before it saw `stop` must still be ended,
        // or the slow CPU would stay deaf for good.
        if OPENED.load(Ordering::Acquire) == CLOSED.load(Ordering::Acquire) {
            if SLOW_THREAD_DONE.load(Ordering::Acquire) {
                return;
            }
            continue; // not open after all (the thread moved away, or a stale count)
        }
        crate::sched::sleep_ns(irqoff_us * 1000);
        let window = OPENED.load(Ordering::Acquire);
        CLOSE_REQUESTED.store(window, Ordering::Release);
        while CLOSED.load(Ordering::Acquire) < window {
            crate::irq::send_nmi(slow_cpu);
            WINDOW_CLOSED.wait_until(crate::time::now_ns() + nmi_retry_ns(irqoff_us));
        }
    }
}

/// Registers the injector's NMI handler; on the boot CPU, at boot.
pub fn register_nmi() {
    crate::irq::nmi::register(crate::irq::nmi::NmiStage::EndWait, nmi_ends_irqoff_window);
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
        log::warn!(
            "fault: irqoff_cpu={cpu} is not a CPU other than 0 here ({cpus} CPUs); no injector"
        );
        return;
    }
    core::mem::forget(IrqOffInjector::start(cpu, args.irqoff_us, None));
}
