//! `bench=smp`: bring every AP up many times in one boot, alternating serial
//! and parallel mode, and print the distribution of the total bring-up time
//! and where it went, phase by phase. Then time parallel bring-ups of a
//! quarter, a half, three quarters and all of the APs, and fit a line through
//! them: its slope is what each added CPU costs, its intercept the fixed part
//! (the INIT wait and the TSC check).

use alloc::vec::Vec;

use super::{BringUp, Phases, bring_up_first, park_all};
use crate::arch::x86::cpu;
use crate::args::SmpMode;
use crate::sched::bench::percentile;

const ROUNDS_PER_MODE: usize = 12;
/// Bring-ups of each size for the per-CPU fit.
const FIT_ROUNDS: usize = 5;

pub fn run() {
    let cpus = super::cpus().len();
    let accelerator = cpu::accelerator_name();
    let mut serial = Vec::new();
    let mut parallel = Vec::new();
    for round in 0..2 * ROUNDS_PER_MODE {
        let mode = if round % 2 == 0 { SmpMode::Serial } else { SmpMode::Parallel };
        let result = park_and_bring_up(mode, usize::MAX, round);
        if mode == SmpMode::Serial { serial.push(result) } else { parallel.push(result) }
    }
    let mut medians = [0; 2];
    for (i, (mode, results)) in
        [(SmpMode::Serial, &serial), (SmpMode::Parallel, &parallel)].into_iter().enumerate()
    {
        let mut samples: Vec<u64> = results.iter().map(|r| r.elapsed_ns / 1000).collect();
        samples.sort_unstable();
        medians[i] = percentile(&samples, 50);
        crate::println!(
            "BENCH smp mode={} cpus={} runs={} median_us={} p90_us={} min_us={} max_us={} accel={}",
            mode.name(),
            cpus,
            samples.len(),
            medians[i],
            percentile(&samples, 90),
            samples[0],
            samples[samples.len() - 1],
            accelerator
        );
        let phases = median_phases(results);
        crate::println!(
            "BENCH smp phases mode={} cpus={} {} accel={}",
            mode.name(),
            cpus,
            phases.in_us(),
            accelerator
        );
    }
    // The kernel is built without floating point: a ratio in hundredths.
    let ratio_x100 = medians[0] * 100 / medians[1].max(1);
    crate::println!(
        "BENCH smp ratio serial/parallel={}.{:02} cpus={} accel={}",
        ratio_x100 / 100,
        ratio_x100 % 100,
        cpus,
        accelerator
    );
    per_cpu_fit(cpus, accelerator);
}

/// Parks every AP, then brings the first `count` up again in `mode`.
fn park_and_bring_up(mode: SmpMode, count: usize, round: usize) -> BringUp {
    park_all();
    let result = bring_up_first(mode, count);
    if result.online != result.wanted {
        log::warn!(
            "bench: round {round} ({}) brought up {} of {} CPUs",
            mode.name(),
            result.online,
            result.wanted
        );
    }
    log::debug!(
        "bench: round {round} {} aps={} {} us: {}",
        mode.name(),
        result.wanted - 1,
        result.elapsed_ns / 1000,
        result.phases.in_us()
    );
    result
}

/// Each phase's median over `results` (so they need not add up to the median total).
fn median_phases(results: &[BringUp]) -> Phases {
    let median = |phase: fn(&Phases) -> u64| {
        let mut samples: Vec<u64> = results.iter().map(|r| phase(&r.phases)).collect();
        samples.sort_unstable();
        percentile(&samples, 50)
    };
    Phases {
        kick: median(|p| p.kick),
        alive: median(|p| p.alive),
        call_in: median(|p| p.call_in),
        tsc_check: median(|p| p.tsc_check),
        online: median(|p| p.online),
    }
}

/// Parallel bring-ups of 1/4, 2/4, 3/4 and all of the APs, `FIT_ROUNDS`
/// each (sizes interleaved, so a slow spell of the host spreads over all),
/// and a least-squares line time = fixed + per_cpu x APs through each size's
/// median, and one through each size's fastest run (under an emulator on
/// fewer host cores than CPUs, one run in four can take twice as long). The
/// last bring-up is of every AP, so all are online afterwards.
fn per_cpu_fit(cpus: usize, accelerator: &str) {
    let aps = cpus - 1;
    let mut sizes: Vec<usize> = (1..=4).map(|quarter| (aps * quarter / 4).max(1)).collect();
    sizes.dedup();
    if sizes.len() < 2 {
        crate::println!(
            "BENCH smp per_cpu_us=- cpus={cpus} (needs 3 CPUs: two sizes of bring-up) accel={accelerator}"
        );
        return;
    }
    let mut runs: Vec<Vec<u64>> = sizes.iter().map(|_| Vec::new()).collect(); // us, per size
    for round in 0..FIT_ROUNDS {
        for (i, &size) in sizes.iter().enumerate() {
            runs[i].push(park_and_bring_up(SmpMode::Parallel, size, round).elapsed_ns / 1000);
        }
    }
    let (mut medians, mut minimums) = (Vec::new(), Vec::new()); // (APs, us)
    for (runs, &size) in runs.iter_mut().zip(&sizes) {
        runs.sort_unstable();
        medians.push((size as i64, percentile(runs, 50) as i64));
        minimums.push((size as i64, runs[0] as i64));
        crate::println!(
            "BENCH smp grow mode=parallel aps={size} runs={} median_us={} min_us={} max_us={} accel={accelerator}",
            runs.len(),
            percentile(runs, 50),
            runs[0],
            runs[runs.len() - 1]
        );
    }
    let sizes: Vec<alloc::string::String> = sizes.iter().map(|s| alloc::format!("{s}")).collect();
    // Through the medians, and through the fastest runs: the least the host's
    // scheduling added, closer to the kernel's own cost.
    for (fit, points) in [("median", &medians), ("min", &minimums)] {
        // In hundredths of a microsecond, for two decimals without floating point.
        let scaled: Vec<(i64, i64)> = points.iter().map(|&(aps, us)| (aps, us * 100)).collect();
        let (slope, intercept) = least_squares(&scaled);
        crate::println!(
            "BENCH smp per_cpu_us={} fixed_us={} fit={fit} cpus={cpus} mode=parallel aps={} runs_per_size={FIT_ROUNDS} accel={accelerator}",
            hundredths(slope),
            intercept / 100,
            sizes.join(",")
        );
    }
}

/// Slope and intercept of the least-squares line through `points`, in
/// integers (the kernel has no floating point): slope = Sxy / Sxx.
fn least_squares(points: &[(i64, i64)]) -> (i64, i64) {
    let n = points.len() as i128;
    let (sum_x, sum_y) =
        points.iter().fold((0i128, 0i128), |(x, y), p| (x + p.0 as i128, y + p.1 as i128));
    let sxx: i128 = points.iter().map(|p| (n * p.0 as i128 - sum_x).pow(2)).sum();
    let sxy: i128 =
        points.iter().map(|p| (n * p.0 as i128 - sum_x) * (n * p.1 as i128 - sum_y)).sum();
    // Deviations scaled by n (to stay in integers): the n^2 cancels.
    let slope = sxy / sxx.max(1);
    let intercept = (sum_y - slope * sum_x) / n;
    (slope as i64, intercept as i64)
}

/// `value` hundredths as a decimal: -123 -> "-1.23".
fn hundredths(value: i64) -> alloc::string::String {
    let sign = if value < 0 { "-" } else { "" };
    alloc::format!("{sign}{}.{:02}", value.unsigned_abs() / 100, value.unsigned_abs() % 100)
}
