//! The local APIC timer: each CPU's own timer, periodic or one-shot.
//!
//! The timer counts down from an initial count at the bus (or core crystal)
//! clock divided by a chosen divisor and raises the vector in its LVT entry at
//! zero (SDM Vol. 3A 11.5.4 "APIC Timer"). Its rate is not architectural, so it
//! is measured at boot against the TSC, which is already calibrated.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86::idt::TIMER_VECTOR;
use crate::arch::x86::lapic::{self, Register};
use crate::percpu;
use crate::testing::{KernelTest, TestResult};

/// Divide configuration 0b0011: divide by 16 (Figure 11-10 "Divide Configuration Register").
const DIVIDE_BY_16: u32 = 0b0011;
const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 0b01 << 17;

/// Timer ticks (after the divisor) per millisecond, measured at boot.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

pub fn ticks_per_ms() -> u64 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Lets the timer count down from its maximum for about 10 ms, three times, and
/// keeps the median rate. Each window's length is measured with the TSC from
/// just before the count starts to just after it is read, so a window that the
/// host stretches (an emulator thread descheduled) still yields the right rate.
pub fn calibrate() -> u64 {
    let apic = lapic::get();
    apic.write(Register::TimerDivide, DIVIDE_BY_16);
    apic.write(Register::LvtTimer, LVT_MASKED | TIMER_VECTOR as u32);
    let mut rates = [0u64; 3];
    for rate in rates.iter_mut() {
        let start = crate::arch::x86::cpu::rdtsc();
        apic.write(Register::TimerInitialCount, u32::MAX);
        super::udelay(10_000);
        let counted = u32::MAX - apic.read(Register::TimerCurrentCount);
        let elapsed_ns = super::tsc_to_ns(crate::arch::x86::cpu::rdtsc() - start).max(1);
        *rate = (counted as u64 * 1_000_000 / elapsed_ns).max(1);
    }
    apic.write(Register::TimerInitialCount, 0);
    percpu::this().timer_one_shot_ready.store(false, Ordering::Relaxed);
    rates.sort_unstable();
    TICKS_PER_MS.store(rates[1], Ordering::Relaxed);
    rates[1]
}

/// The initial count for a timer `ns` nanoseconds long, between 1 and the
/// 32-bit register's maximum (about 68 s at 62.5 MHz). The product is taken in
/// 128 bits: in 64 bits, `ns * ticks_per_ms()` overflows once `ns` passes
/// about 2^64 / 62500, some 82 hours, and the scheduler asks for far longer
/// (a sleeper whose deadline is `u64::MAX`, "no deadline"). A deadline beyond
/// the maximum is not lost: the timer fires early, finds nothing due, and the
/// scheduler arms it again for what is left.
fn ticks_for_ns(ns: u64) -> u32 {
    (ns as u128 * ticks_per_ms() as u128 / 1_000_000).clamp(1, u32::MAX as u128) as u32
}

/// Interrupts this CPU `hz` times a second until `stop()`.
pub fn start_periodic(hz: u64) {
    let apic = lapic::get();
    percpu::this().timer_one_shot_ready.store(false, Ordering::Relaxed);
    apic.write(Register::TimerDivide, DIVIDE_BY_16);
    apic.write(Register::LvtTimer, LVT_PERIODIC | TIMER_VECTOR as u32);
    apic.write(Register::TimerInitialCount, ticks_for_ns(1_000_000_000 / hz));
}

/// Interrupts this CPU once, `ns` nanoseconds from now. The divisor and the
/// LVT entry are written only when the timer was in another mode: the
/// scheduler rearms the timer at every switch, and under a hypervisor each
/// APIC register write can cost a VM exit.
pub fn start_one_shot(ns: u64) {
    let apic = lapic::get();
    let this = percpu::this();
    if !this.timer_one_shot_ready.swap(true, Ordering::Relaxed) {
        apic.write(Register::TimerDivide, DIVIDE_BY_16);
        apic.write(Register::LvtTimer, TIMER_VECTOR as u32);
    }
    apic.write(Register::TimerInitialCount, ticks_for_ns(ns));
}

/// Stops this CPU's timer: a zero initial count stops it (11.5.4), the mask
/// keeps a pending expiry from being delivered.
pub fn stop() {
    let apic = lapic::get();
    percpu::this().timer_one_shot_ready.store(false, Ordering::Relaxed);
    apic.write(Register::LvtTimer, LVT_MASKED | TIMER_VECTOR as u32);
    apic.write(Register::TimerInitialCount, 0);
}

/// Called by the timer's interrupt handler.
pub fn on_interrupt() {
    percpu::this().timer_ticks.fetch_add(1, Ordering::Relaxed);
}

fn local_ticks() -> u64 {
    percpu::this().timer_ticks.load(Ordering::Relaxed)
}

/// Spins until the clock passes `deadline_ns` (timer interrupts still arrive).
fn wait_until(deadline_ns: u64) {
    while super::now_ns() < deadline_ns {
        core::hint::spin_loop();
    }
}

fn periodic_timer_ticks_at_its_rate() -> TestResult {
    crate::sched::with_timer_lent(periodic_rate)
}

fn periodic_rate() -> TestResult {
    stop(); // whatever the scheduler had armed must not count
    let before = local_ticks();
    start_periodic(100);
    wait_until(super::now_ns() + 200_000_000);
    stop();
    let ticks = local_ticks() - before;
    // 100 Hz for 200 ms is 20 ticks. More than 21 means the timer runs fast (a
    // calibration error). Fewer is allowed down to half: an emulator whose thread
    // the host deschedules drops late ticks instead of delivering them in a burst.
    crate::ensure!((10..=21).contains(&ticks), "expected about 20 ticks in 200 ms at 100 Hz, got {ticks}");
    Ok(())
}

fn one_shot_timer_fires_once_and_not_early() -> TestResult {
    crate::sched::with_timer_lent(one_shot_once)
}

fn one_shot_once() -> TestResult {
    stop();
    let before = local_ticks();
    let start = super::now_ns();
    start_one_shot(5_000_000);
    while local_ticks() == before && super::now_ns() - start < 1_000_000_000 {
        core::hint::spin_loop();
    }
    let fired_after = super::now_ns() - start;
    crate::ensure!(local_ticks() == before + 1, "the one-shot timer did not fire within 1 s");
    // Measured to within the calibration's error: allow it to be 5% early.
    crate::ensure!(fired_after >= 4_750_000, "a 5 ms one-shot fired after {fired_after} ns");
    wait_until(super::now_ns() + 30_000_000);
    crate::ensure!(local_ticks() == before + 1, "the one-shot timer fired again");
    Ok(())
}

pub static TESTS: &[KernelTest] = &[
    KernelTest::new("lapic_timer_periodic_rate", periodic_timer_ticks_at_its_rate),
    KernelTest::new("lapic_timer_one_shot", one_shot_timer_fires_once_and_not_early),
];
