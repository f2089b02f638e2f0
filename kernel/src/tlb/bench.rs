//! `bench=tlb`: what a slow CPU does to a high-priority thread on a CPU that
//! is waiting for TLB shootdowns, in each wait mode against the same thread
//! with no shootdown running (the limit); and what a shootdown costs by number
//! of busy and of lazy target CPUs and of pages.
//!
//! Setup (4 CPUs or more): one address space. CPU 3 is the slow CPU: the
//! injector's thread runs there in the space, with interrupts off for
//! `irqoff_us=` (default 20 ms) at a time, then sleeps 1 ms (so the CPU is a
//! busy target during a window, and lazy between windows). On CPU 2 a thread
//! of the space waits in `hlt`: a busy target that answers at once and costs
//! the host nothing. On CPU 1 a Normal thread flushes a page of the space in a
//! loop, and a real-time thread sleeps on a timer and measures how late it
//! runs. CPU 0 runs the injector's timer thread. Each mode is measured in
//! `ROUNDS` rounds; the benchmark prints the pooled percentiles and the median
//! of the per-round p99s. Between modes the runner (if it is ours) prints what
//! the host did to QEMU's threads meanwhile (the `HOSTSTAT` lines).
//!
//! Targets are idle or halted, never spinning: on a 2-core host a spinning
//! vCPU takes a host core, and an IPI to it waits until the host runs it.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::structures::paging::Page;

use crate::arch::x86::cpu;
use crate::fault::IrqOffInjector;
use crate::mm::address_space::AddressSpace;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::{frame, lazy_tlb};
use crate::percpu::CpuSet;
use crate::sched::bench::percentile;
use crate::sched::{Builder, JoinHandle, Priority, sleep_ns};
use crate::smp::call::{self, WaitMode};
use crate::symbols::Demangled;
use crate::sync::preempt;
use crate::tlb;
use crate::{smp, time};

const BASE: u64 = 0x0000_0050_0000_0000;
const PAGES: usize = 64;
const ROUNDS: usize = 5;
const SAMPLES_PER_ROUND: usize = 100;
const DEFAULT_IRQOFF_US: u64 = 20_000;
const INITIATOR: usize = 1;
const HALTED_TARGET: usize = 2;
const SLOW_CPU: usize = 3;

fn page(i: usize) -> VirtAddr {
    VirtAddr::new(BASE + i as u64 * FRAME_SIZE)
}

/// Threads of `space`, one pinned to each of `cpus`, that wait in `hlt` with
/// interrupts on until stopped: each keeps its CPU a busy (not lazy) CPU of
/// the space while its vCPU sleeps in the host.
struct HaltedThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle>,
}

impl HaltedThreads {
    /// Returns once every thread runs (until then its CPU may still be lazy).
    fn start(space: &Arc<AddressSpace>, cpus: impl Iterator<Item = usize>) -> HaltedThreads {
        let stop = Arc::new(AtomicBool::new(false));
        let running = Arc::new(AtomicU64::new(0));
        let threads: Vec<JoinHandle> = cpus
            .map(|cpu| {
                let (stop, running) = (stop.clone(), running.clone());
                Builder::new("halted").pin(cpu).address_space(space.clone()).spawn(move || {
                    running.fetch_add(1, Ordering::AcqRel);
                    while !stop.load(Ordering::Acquire) {
                        crate::arch::x86::cpu::halt();
                    }
                })
            })
            .collect();
        while running.load(Ordering::Acquire) < threads.len() as u64 {
            sleep_ns(100_000);
        }
        HaltedThreads { stop, threads }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads {
            // Any interrupt ends the hlt; a call that does nothing will do.
            let cpu = thread.thread.affinity().unwrap_or(0);
            let _ = call::call_on(cpu, "wake_halted", &|| {});
            thread.join();
        }
    }
}

/// Makes each of `cpus` lazy in `space`: a thread of the space runs there
/// once and exits, and the idle thread keeps the space loaded.
fn make_lazy(space: &Arc<AddressSpace>, cpus: impl Iterator<Item = usize>) {
    let threads: Vec<JoinHandle> = cpus
        .map(|cpu| {
            Builder::new("loader").pin(cpu).address_space(space.clone()).spawn(|| {
                // SAFETY: page 0 is mapped in this thread's address space.
                unsafe { core::hint::black_box(page(0).as_ptr::<u64>().read_volatile()) };
            })
        })
        .collect();
    for thread in threads {
        thread.join();
    }
}

/// Makes every CPU leave `space` (load the kernel's tables).
fn unload_everywhere() {
    let _ = call::call_on_many(CpuSet::all_online(), "unload_address_space", &lazy_tlb::unload);
}

/// What the real-time thread saw in one mode (None: the limit, no shootdowns).
struct ModeResult {
    name: &'static str,
    /// Every sample, sorted.
    latencies_us: Vec<u64>,
    round_p99s_us: Vec<u64>,
    shootdowns: u64,
    longest_preempt_off_us: u64,
    longest_from: u64,
}

impl ModeResult {
    fn p99(&self) -> u64 {
        percentile(&self.latencies_us, 99)
    }

    fn round_p99_median(&self) -> u64 {
        let mut p99s = self.round_p99s_us.clone();
        p99s.sort_unstable();
        p99s[p99s.len() / 2]
    }
}

/// One round: the real-time thread sleeps `SAMPLES_PER_ROUND` times on the
/// initiator and records how late it woke, in microseconds.
fn wake_up_round() -> Vec<u64> {
    let latencies = Arc::new(crate::sync::SpinLock::new(Vec::with_capacity(SAMPLES_PER_ROUND)));
    let latencies2 = latencies.clone();
    Builder::new("timer-woken")
        .priority(Priority::RealTime(3))
        .pin(INITIATOR)
        .spawn(move || {
            for i in 0..SAMPLES_PER_ROUND {
                let delay = 2_000_000 + (i as u64 % 5) * 300_000;
                let deadline = time::now_ns() + delay;
                sleep_ns(delay);
                latencies2.lock().push((time::now_ns() - deadline) / 1000);
            }
        })
        .join();
    core::mem::take(&mut *latencies.lock())
}

fn measure_mode(space: &Arc<AddressSpace>, mode: Option<WaitMode>) -> ModeResult {
    let name = mode.map_or("limit", WaitMode::name);
    if let Some(mode) = mode {
        call::set_wait_mode(mode);
    }
    crate::host_stats::begin(&alloc::format!("tlb.{name}"));
    preempt::reset_tracer();
    let stop = Arc::new(AtomicBool::new(false));
    let shootdowns = Arc::new(AtomicU64::new(0));
    let flusher = mode.map(|_| {
        let (stop, shootdowns, space2) = (stop.clone(), shootdowns.clone(), space.clone());
        Builder::new("flusher").pin(INITIATOR).address_space(space.clone()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                tlb::shootdown(&space2, page(0), 1);
                shootdowns.fetch_add(1, Ordering::Relaxed);
            }
        })
    });
    let mut latencies_us = Vec::new();
    let mut round_p99s_us = Vec::new();
    for _ in 0..ROUNDS {
        let mut round = wake_up_round();
        round.sort_unstable();
        round_p99s_us.push(percentile(&round, 99));
        latencies_us.extend(round);
    }
    let span = preempt::longest_spans()[INITIATOR];
    stop.store(true, Ordering::Release);
    if let Some(flusher) = flusher {
        flusher.join();
    }
    crate::host_stats::end(&alloc::format!("tlb.{name}"));
    // This mode's events, before the next mode's overwrite them.
    crate::trace::dump();
    latencies_us.sort_unstable();
    ModeResult {
        name,
        latencies_us,
        round_p99s_us,
        shootdowns: shootdowns.load(Ordering::Relaxed),
        longest_preempt_off_us: span.nanoseconds / 1000,
        longest_from: span.from,
    }
}

fn print_mode(result: &ModeResult, irqoff_us: u64, accelerator: &str) {
    let samples = &result.latencies_us;
    crate::println!(
        "BENCH tlb wake mode={} samples={} p50_us={} p99_us={} max_us={} round_p99_median_us={} shootdowns={} irqoff_us={irqoff_us} accel={accelerator}",
        result.name,
        samples.len(),
        percentile(samples, 50),
        result.p99(),
        samples[samples.len() - 1],
        result.round_p99_median(),
        result.shootdowns
    );
    let from =
        crate::symbols::lookup_return_address(result.longest_from).map(|(n, _)| n).unwrap_or("?");
    crate::println!(
        "BENCH tlb preempt_off mode={} cpu={INITIATOR} max_us={} from={} accel={accelerator}",
        result.name,
        result.longest_preempt_off_us,
        Demangled(from)
    );
}

/// `a / b` with one decimal, as text.
fn ratio(a: u64, b: u64) -> alloc::string::String {
    let x10 = a * 10 / b.max(1);
    alloc::format!("{}.{}", x10 / 10, x10 % 10)
}

/// The wake-up latency of the real-time thread, in the limit and each mode.
fn wake_up_latencies(space: &Arc<AddressSpace>, accelerator: &str) {
    let irqoff_us = match crate::args::get().irqoff_us {
        0 => DEFAULT_IRQOFF_US,
        us => us,
    };
    let halted = HaltedThreads::start(space, [HALTED_TARGET].into_iter());
    let injector = IrqOffInjector::start(SLOW_CPU, irqoff_us, Some(space.clone()));
    let modes = [None, Some(WaitMode::Spin), Some(WaitMode::Preempt), Some(WaitMode::Sleep)];
    let results: Vec<ModeResult> =
        modes.into_iter().map(|mode| measure_mode(space, mode)).collect();
    injector.stop();
    halted.stop();
    call::set_wait_mode(crate::args::get().ipi_wait);
    for result in &results {
        print_mode(result, irqoff_us, accelerator);
    }
    let [limit, spin, preempt, sleep] = [0, 1, 2, 3].map(|i| results[i].p99());
    crate::println!(
        "BENCH tlb wake p99 ratio spin/preempt={} spin/sleep={} preempt/limit={} sleep/limit={} accel={accelerator}",
        ratio(spin, preempt),
        ratio(spin, sleep),
        ratio(preempt, limit),
        ratio(sleep, limit)
    );
}

/// Average cost of a shootdown from CPU 0 of `pages` pages, with `busy` CPUs
/// running threads of the space (halted) and `lazy` CPUs that ran one before;
/// and how many flush IPIs each shootdown sent and saved.
fn shootdown_cost(
    space: &Arc<AddressSpace>,
    busy: usize,
    lazy: usize,
    pages: usize,
) -> (u64, u64, u64) {
    unload_everywhere();
    make_lazy(space, busy + 1..=busy + lazy);
    let halted = HaltedThreads::start(space, 1..=busy);
    let rounds = 200u64;
    let elapsed = Arc::new(AtomicU64::new(0));
    let (elapsed2, space2) = (elapsed.clone(), space.clone());
    let (sent_before, saved_before) = tlb::flush_ipi_counts();
    Builder::new("measure")
        .pin(0)
        .address_space(space.clone())
        .spawn(move || {
            let start = time::now_ns();
            for _ in 0..rounds {
                tlb::shootdown(&space2, page(0), pages);
            }
            elapsed2.store(time::now_ns() - start, Ordering::Release);
        })
        .join();
    let (sent, saved) = tlb::flush_ipi_counts();
    halted.stop();
    (
        elapsed.load(Ordering::Acquire) / rounds,
        (sent - sent_before) / rounds,
        (saved - saved_before) / rounds,
    )
}

/// What recording the trace adds to a shootdown to two busy targets: 200
/// shootdowns a block, recording off and on (see `trace::compare_recording`).
fn trace_overhead(space: &Arc<AddressSpace>, accelerator: &str) {
    match crate::trace::compare_recording(9, || shootdown_cost(space, 2, 0, 1).0) {
        Ok(figures) => crate::println!(
            "BENCH trace tlb shootdown busy=2 pages=1 blocks=9x200 {figures} accel={accelerator}"
        ),
        Err(why) => crate::println!("BENCH trace tlb skipped: {why}"),
    }
}

/// 1, 2, 4, ... and every other CPU: each count costs 200 shootdowns to that
/// many CPUs, so every count from 1 up would be quadratic in the CPUs (at
/// 255 CPUs, about 32,000 shootdowns to 127 CPUs on average).
fn target_counts(others: usize) -> impl Iterator<Item = usize> {
    let powers =
        core::iter::successors(Some(1usize), |n| n.checked_mul(2)).take_while(move |&n| n < others);
    powers.chain(core::iter::once(others))
}

fn shootdown_costs(space: &Arc<AddressSpace>, cpus: usize, accelerator: &str) {
    for pages in [1, tlb::FLUSH_CEILING + 1] {
        let how = if pages > tlb::FLUSH_CEILING { "full flush" } else { "invlpg per page" };
        let busy = core::iter::once(0).chain(target_counts(cpus - 1)).map(|busy| (busy, 0));
        let lazy = target_counts(cpus - 1).map(|lazy| (0, lazy));
        for (busy, lazy) in busy.chain(lazy) {
            let (cost_ns, sent, saved) = shootdown_cost(space, busy, lazy, pages);
            let cost = cost_ns / 1000;
            crate::println!(
                "BENCH tlb cost busy={busy} lazy={lazy} pages={pages} ({how}) avg_us={cost} ipis_sent={sent} ipis_saved={saved} accel={accelerator}"
            );
        }
    }
}

pub fn run() {
    let cpus = smp::cpus().len();
    let accelerator = cpu::accelerator_name();
    if cpus < 4 {
        crate::println!("BENCH tlb needs at least 4 CPUs (has {cpus})");
        return;
    }
    let space = Arc::new(AddressSpace::new());
    for i in 0..PAGES {
        let frame = frame::allocate().expect("out of frames");
        space.map(Page::containing_address(page(i)), frame).expect("map");
    }
    wake_up_latencies(&space, accelerator);
    shootdown_costs(&space, cpus, accelerator);
    trace_overhead(&space, accelerator);
    let (sent, saved) = tlb::flush_ipi_counts();
    crate::println!(
        "BENCH tlb ipis sent={sent} saved_by_lazy={saved} lazy_catch_up_flushes={} accel={accelerator}",
        lazy_tlb::catch_up_flushes()
    );
    unload_everywhere();
}
