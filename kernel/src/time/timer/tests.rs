//! Tests of the local APIC timer: the periodic rate, and a one-shot that fires once and not early.

use super::*;
use crate::testing::{KernelTest, TestResult};

/// Runs the timer at 100 Hz for 200 ms, which gives 19 or 20 ticks (the
/// 20th is due just as the window ends).
///
/// More than 21 means the timer runs fast: its calibrated rate is too low.
/// A host stall cannot cause that: an emulated APIC timer that fires while
/// its CPU is stopped delivers one late interrupt for any number of missed
/// periods, it does not make them up in a burst. Fewer ticks is what a timer
/// that runs slow gives (a calibrated rate too high, as an earlier,
/// stall-prone calibration sometimes measured: about 50% too high, 13 ticks),
/// but also what a host stall longer than a period gives, by dropping ticks.
/// So the attempt is made up to three times, and one result within 17 to 21
/// passes: a stall rarely strikes three times in a row, a wrong rate always
/// does. (The single attempt this test used to make allowed anything down to
/// 10 ticks, so it passed that 50% error.)
fn periodic_timer_ticks_at_its_rate() -> TestResult {
    const ATTEMPTS: usize = 3;
    let mut counts = alloc::vec::Vec::new();
    for _ in 0..ATTEMPTS {
        let ticks = crate::sched::with_timer_lent(periodic_ticks_in_200_ms);
        counts.push(ticks);
        if (17..=21).contains(&ticks) {
            return Ok(());
        }
    }
    Err(alloc::format!(
        "expected 19 or 20 ticks in 200 ms at 100 Hz, got {counts:?} in {ATTEMPTS} attempts"
    ))
}

fn periodic_ticks_in_200_ms() -> u64 {
    stop(); // whatever the scheduler had armed must not count
    let before = local_ticks();
    start_periodic(100);
    wait_until(super::super::now_ns() + 200_000_000);
    stop();
    local_ticks() - before
}

fn one_shot_timer_fires_once_and_not_early() -> TestResult {
    crate::sched::with_timer_lent(one_shot_once)
}

fn one_shot_once() -> TestResult {
    stop();
    let before = local_ticks();
    let start = super::super::now_ns();
    start_one_shot(5_000_000);
    while local_ticks() == before && super::super::now_ns() - start < 1_000_000_000 {
        core::hint::spin_loop();
    }
    let fired_after = super::super::now_ns() - start;
    crate::ensure!(local_ticks() == before + 1, "the one-shot timer did not fire within 1 s");
    // Measured to within the calibration's error: allow it to be 5% early.
    crate::ensure!(fired_after >= 4_750_000, "a 5 ms one-shot fired after {fired_after} ns");
    wait_until(super::super::now_ns() + 30_000_000);
    crate::ensure!(local_ticks() == before + 1, "the one-shot timer fired again");
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("lapic_timer_periodic_rate", periodic_timer_ticks_at_its_rate),
    KernelTest::new("lapic_timer_one_shot", one_shot_timer_fires_once_and_not_early),
];
