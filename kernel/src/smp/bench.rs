//! `bench=smp`: bring every AP up many times in one boot, alternating serial
//! and parallel mode, and print the distribution of the total bring-up time.

use alloc::vec::Vec;

use super::{bring_up, park_all};
use crate::arch::x86::cpu;
use crate::args::SmpMode;
use crate::sched::bench::percentile;

const ROUNDS_PER_MODE: usize = 12;

pub fn run() {
    let cpus = super::cpus().len();
    let mut serial = Vec::new();
    let mut parallel = Vec::new();
    for round in 0..2 * ROUNDS_PER_MODE {
        let mode = if round % 2 == 0 { SmpMode::Serial } else { SmpMode::Parallel };
        park_all();
        let result = bring_up(mode);
        if result.online != result.wanted {
            log::warn!("bench: round {round} ({}) brought up {} of {} CPUs", mode.name(), result.online, result.wanted);
        }
        let samples = if mode == SmpMode::Serial { &mut serial } else { &mut parallel };
        samples.push(result.elapsed_ns / 1000);
    }
    let accelerator = cpu::accelerator_name();
    let mut medians = [0; 2];
    for (i, (mode, samples)) in [(SmpMode::Serial, &mut serial), (SmpMode::Parallel, &mut parallel)].into_iter().enumerate() {
        samples.sort_unstable();
        medians[i] = percentile(samples, 50);
        crate::println!(
            "BENCH smp mode={} cpus={} runs={} median_us={} p90_us={} min_us={} max_us={} accel={}",
            mode.name(),
            cpus,
            samples.len(),
            medians[i],
            percentile(samples, 90),
            samples[0],
            samples[samples.len() - 1],
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
}
