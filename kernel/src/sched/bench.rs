//! `bench=sched`: what a context switch costs, how fast a high-priority thread
//! on another CPU gets going after a wake-up, and the longest preempt-off spans.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{Builder, Completion, Priority, sleep_ns};
use crate::arch::x86::cpu::{self, rdtsc};
use crate::symbols::Demangled;
use crate::time;

const PING_PONGS: u64 = 2000;
const WAKE_SAMPLES: usize = 400;

/// Nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[u64], percent: usize) -> u64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Two threads on one CPU hand a token back and forth through completions:
/// each round trip is two wake-ups and two context switches.
fn same_cpu_switch_ns(cpu: usize, round_trips: u64) -> u64 {
    let (ping, pong) = (Arc::new(Completion::new()), Arc::new(Completion::new()));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let partner = Builder::new("pong").pin(cpu).spawn(move || {
        for _ in 0..round_trips {
            ping2.wait();
            pong2.complete();
        }
    });
    let elapsed = Arc::new(AtomicU64::new(0));
    let elapsed2 = elapsed.clone();
    Builder::new("ping")
        .pin(cpu)
        .spawn(move || {
            let start = time::now_ns();
            for _ in 0..round_trips {
                ping.complete();
                pong.wait();
            }
            elapsed2.store(time::now_ns() - start, Ordering::Release);
        })
        .join();
    partner.join();
    elapsed.load(Ordering::Acquire) / (2 * round_trips)
}

/// A real-time thread pinned to `target` waits on a completion; a thread on
/// `waker_cpu` stamps the TSC and completes it; the woken thread stamps again
/// when it runs. With `busy`, a Normal thread spins on `target` meanwhile.
fn wake_latencies_us(waker_cpu: usize, target: usize, busy: bool) -> Vec<u64> {
    let stop = Arc::new(AtomicBool::new(false));
    let hog = busy.then(|| {
        let stop = stop.clone();
        Builder::new("hog").pin(target).spawn(move || {
            while !stop.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
        })
    });
    let event = Arc::new(Completion::new());
    let woken = Arc::new(Completion::new());
    let stamp = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(crate::sync::SpinLock::new(Vec::with_capacity(WAKE_SAMPLES)));
    let sleeper = {
        let (event, woken, stamp, samples) =
            (event.clone(), woken.clone(), stamp.clone(), samples.clone());
        Builder::new("woken").priority(Priority::RealTime(3)).pin(target).spawn(move || {
            for _ in 0..WAKE_SAMPLES {
                event.wait();
                let latency = rdtsc().saturating_sub(stamp.load(Ordering::Acquire));
                samples.lock().push(time::tsc_to_ns(latency) / 1000);
                woken.complete();
            }
        })
    };
    Builder::new("waker")
        .pin(waker_cpu)
        .spawn(move || {
            for i in 0..WAKE_SAMPLES {
                // Let the target settle into its idle or busy state between samples.
                sleep_ns(200_000 + (i as u64 % 7) * 50_000);
                stamp.store(rdtsc(), Ordering::Release);
                event.complete();
                woken.wait();
            }
        })
        .join();
    sleeper.join();
    stop.store(true, Ordering::Release);
    if let Some(hog) = hog {
        hog.join();
    }
    let mut samples = core::mem::take(&mut *samples.lock());
    samples.sort_unstable();
    samples
}

/// What recording the trace adds to a context switch: the ping-pong in short
/// blocks, recording off and on (see `trace::compare_recording`).
fn trace_overhead(accelerator: &str) {
    let (blocks, trips) = (TRACE_OVERHEAD_BLOCKS, TRACE_OVERHEAD_ROUND_TRIPS);
    match crate::trace::compare_recording(blocks, || same_cpu_switch_ns(1, trips)) {
        Ok(figures) => crate::println!(
            "BENCH trace sched context_switch blocks={blocks}x{trips} {figures} accel={accelerator}"
        ),
        Err(why) => crate::println!("BENCH trace sched skipped: {why}"),
    }
}

/// Blocks of each mode, and round trips per block, in `trace_overhead`.
const TRACE_OVERHEAD_BLOCKS: usize = 15;
const TRACE_OVERHEAD_ROUND_TRIPS: u64 = 400;

pub fn run() {
    let cpus = crate::percpu::cpus_with_area().len();
    let accelerator = cpu::accelerator_name();
    if cpus < 3 {
        crate::println!("BENCH sched needs at least 3 CPUs (has {cpus})");
        return;
    }
    crate::sync::preempt::reset_tracer();
    let switch_ns = same_cpu_switch_ns(1, PING_PONGS);
    crate::println!(
        "BENCH sched context_switch_ns={switch_ns} (same CPU, completion ping-pong, {PING_PONGS} round trips) cpus={cpus} accel={accelerator}"
    );
    trace_overhead(accelerator);
    for busy in [false, true] {
        let samples = wake_latencies_us(1, 2, busy);
        crate::println!(
            "BENCH sched wake target={} samples={} p50_us={} p99_us={} max_us={} cpus={cpus} accel={accelerator}",
            if busy { "busy" } else { "idle" },
            samples.len(),
            percentile(&samples, 50),
            percentile(&samples, 99),
            samples[samples.len() - 1]
        );
    }
    for span in crate::sync::preempt::longest_spans() {
        let name =
            crate::symbols::lookup_return_address(span.from).map(|(name, _)| name).unwrap_or("?");
        crate::println!(
            "BENCH sched preempt_off cpu={} max_us={} from={} accel={accelerator}",
            span.cpu,
            span.nanoseconds / 1000,
            Demangled(name)
        );
    }
}
