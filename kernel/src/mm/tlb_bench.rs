//! `bench=tlb`: what a slow CPU does to a high-priority thread on a CPU that
//! is waiting for TLB shootdowns, with spinning and with preemptible waits; and
//! what a shootdown costs by number of target CPUs and of pages.
//!
//! Setup (4 CPUs or more): one address space, loaded on CPUs 1..=3 (and left
//! loaded there by their idle threads). CPU 3 is the slow CPU (`irqoff_us=`, default 20 ms of
//! interrupts off at a time). On CPU 1 a Normal thread flushes a page of the
//! space in a loop, and a real-time thread sleeps on a timer and measures how
//! late it runs. Both wait modes run in the same boot, one after the other.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use x86_64::VirtAddr;
use x86_64::structures::paging::Page;

use super::address_space::AddressSpace;
use super::{frame, tlb};
use crate::arch::x86::cpu;
use crate::fault::IrqOffInjector;
use crate::sched::bench::percentile;
use crate::sched::{Builder, JoinHandle, Priority, preempt, sleep_ns};
use crate::smp::CpuSet;
use crate::smp::call::{self, WaitMode};
use crate::symbols::Demangled;
use crate::{smp, time};

const BASE: u64 = 0x0000_0050_0000_0000;
const PAGES: usize = 64;
const WAKE_SAMPLES: usize = 300;
const DEFAULT_IRQOFF_US: u64 = 20_000;

fn page(i: usize) -> VirtAddr {
    VirtAddr::new(BASE + i as u64 * 4096)
}

/// Loads `space` on each of `cpus`: a thread in the space runs there, reads
/// it once and exits. The CPU keeps the space loaded afterwards (its idle
/// thread borrows it: lazy TLB), so it stays a shootdown target while it
/// sleeps in `hlt`, costing the host no CPU time.
fn load_on(space: &Arc<AddressSpace>, cpus: impl Iterator<Item = usize>) {
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
    let _ = call::call_on_many(CpuSet::all_online(), "unload_address_space", &crate::sched::unload_address_space);
}

struct ModeResult {
    latencies_us: Vec<u64>,
    shootdowns: u64,
    longest_preempt_off_us: u64,
    longest_from: u64,
}

fn measure_mode(space: &Arc<AddressSpace>, initiator: usize, mode: WaitMode) -> ModeResult {
    call::set_wait_mode(mode);
    preempt::reset_tracer();
    let stop = Arc::new(AtomicBool::new(false));
    let shootdowns = Arc::new(AtomicU64::new(0));
    let flusher = {
        let (stop, shootdowns, space2) = (stop.clone(), shootdowns.clone(), space.clone());
        Builder::new("flusher").pin(initiator).address_space(space.clone()).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                tlb::shootdown(&space2, page(0), 1);
                shootdowns.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let latencies = Arc::new(crate::sync::SpinLock::new(Vec::with_capacity(WAKE_SAMPLES)));
    let latencies2 = latencies.clone();
    Builder::new("timer-woken").priority(Priority::RealTime(3)).pin(initiator).spawn(move || {
        for i in 0..WAKE_SAMPLES {
            let delay = 2_000_000 + (i as u64 % 5) * 300_000;
            let deadline = time::now_ns() + delay;
            sleep_ns(delay);
            latencies2.lock().push((time::now_ns() - deadline) / 1000);
        }
    })
    .join();
    let span = preempt::longest_spans()[initiator];
    stop.store(true, Ordering::Release);
    flusher.join();
    let mut latencies_us = core::mem::take(&mut *latencies.lock());
    latencies_us.sort_unstable();
    ModeResult {
        latencies_us,
        shootdowns: shootdowns.load(Ordering::Relaxed),
        longest_preempt_off_us: span.nanoseconds / 1000,
        longest_from: span.from,
    }
}

/// Average cost of a shootdown from CPU 0 to `targets` remote CPUs, `pages` pages.
fn shootdown_cost_us(space: &Arc<AddressSpace>, targets: usize, pages: usize) -> u64 {
    unload_everywhere();
    load_on(space, 1..=targets);
    let rounds = 200u64;
    let elapsed = Arc::new(AtomicU64::new(0));
    let (elapsed2, space2) = (elapsed.clone(), space.clone());
    Builder::new("measure").pin(0).address_space(space.clone()).spawn(move || {
        let start = time::now_ns();
        for _ in 0..rounds {
            tlb::shootdown(&space2, page(0), pages);
        }
        elapsed2.store(time::now_ns() - start, Ordering::Release);
    })
    .join();
    elapsed.load(Ordering::Acquire) / rounds / 1000
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
    let (initiator, slow) = (1, 3);
    let irqoff_us = match crate::args::get().irqoff_us {
        0 => DEFAULT_IRQOFF_US,
        us => us,
    };
    load_on(&space, [2, slow].into_iter());
    let injector = IrqOffInjector::start(slow, irqoff_us);
    let mut p99 = [0u64; 2];
    for (i, mode) in [WaitMode::Spin, WaitMode::Preempt].into_iter().enumerate() {
        let result = measure_mode(&space, initiator, mode);
        let name = if mode == WaitMode::Spin { "spin" } else { "preempt" };
        let samples = &result.latencies_us;
        p99[i] = percentile(samples, 99);
        crate::println!(
            "BENCH tlb wake mode={name} samples={} p50_us={} p99_us={} max_us={} shootdowns={} irqoff_us={irqoff_us} accel={accelerator}",
            samples.len(),
            percentile(samples, 50),
            p99[i],
            samples[samples.len() - 1],
            result.shootdowns
        );
        let from = crate::symbols::lookup(result.longest_from).map(|(n, _)| n).unwrap_or("?");
        crate::println!(
            "BENCH tlb preempt_off mode={name} cpu={initiator} max_us={} from={} accel={accelerator}",
            result.longest_preempt_off_us,
            Demangled(from)
        );
    }
    let ratio_x10 = p99[0] * 10 / p99[1].max(1);
    crate::println!("BENCH tlb wake p99 ratio spin/preempt={}.{} accel={accelerator}", ratio_x10 / 10, ratio_x10 % 10);
    injector.stop();
    call::set_wait_mode(crate::args::get().ipi_wait);
    // 1, 2, 4, ... and every other CPU: each size costs 200 shootdowns to that
    // many CPUs, so every size from 1 up would be quadratic in the CPUs
    // (some 6 million IPIs with 255 CPUs).
    let sizes = (0..).map(|i| 1usize << i).take_while(|&n| n < cpus - 1).chain([cpus - 1]);
    for targets in sizes {
        let cost = shootdown_cost_us(&space, targets, 1);
        crate::println!("BENCH tlb cost targets={targets} pages=1 avg_us={cost} accel={accelerator}");
    }
    for pages in [1, tlb::FLUSH_CEILING, tlb::FLUSH_CEILING + 1, PAGES] {
        let cost = shootdown_cost_us(&space, cpus - 1, pages);
        let how = if pages > tlb::FLUSH_CEILING { "full flush" } else { "invlpg per page" };
        crate::println!("BENCH tlb cost targets={} pages={pages} ({how}) avg_us={cost} accel={accelerator}", cpus - 1);
    }
}
