//! The local APIC timer: each CPU's own timer, periodic or one-shot.
//!
//! The timer counts down from an initial count at the bus (or core crystal)
//! clock divided by a chosen divisor and raises the vector in its LVT entry at
//! zero (SDM Vol. 3A 11.5.4 "APIC Timer"). Its rate is not architectural, so it
//! is measured at boot against the TSC, which is already calibrated.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Once;

use crate::arch::x86::apic_timer;
use crate::arch::x86::cpu::rdtsc_ordered;
use crate::arch::x86::vectors::TIMER_VECTOR;
use crate::irq;
use crate::percpu::cpu_local;

mod tests;

cpu_local! {
    /// Local APIC timer interrupts taken on this CPU.
    static TICKS: AtomicU64 = AtomicU64::new(0);
    /// The timer is set up for one-shot mode: only the count needs writing.
    static ONE_SHOT_READY: AtomicBool = AtomicBool::new(false);
}

/// Timer ticks (after the divisor) per millisecond, measured at boot.
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);

pub fn ticks_per_ms() -> u64 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Lets the timer count down from its maximum for about 10 ms, three times, and
/// keeps the median rate.
///
/// Each window's ends are (TSC, count) pairs, read as the PIT is read for the
/// TSC's own calibration (`pit::paired_reading`): the TSC just before and just
/// after one read of the current count, whose midpoint is when the count was
/// read, give or take half the gap; the best of eight tries, so that an
/// interrupt or a host stall inside one try does not matter. The rate is the
/// count's change over the TSC's change between the two pairs. A host that
/// stops this CPU anywhere between the pairs changes nothing, since both
/// clocks keep running, and the small error left is as likely to be positive
/// as negative.
///
/// The previous version took the TSC before *writing* the initial count and
/// after *reading* the current count. That span contains the one the timer
/// counted plus two register accesses, so it was always too long: the rate
/// came out too low, never too high, and a timer programmed with it is given
/// too few ticks, so a one-shot fired early and the periodic timer ran fast.
/// Under TCG an emulated register access is slow, and that version measured
/// 62284 kHz where QEMU's timer runs at exactly 62500, and 62194 to 62329
/// with the host stalling QEMU now and then (this one: 62499 to 62501). Worse, a host stall between the first TSC read and the
/// write, or between the read and the last TSC read, counted in full: a
/// 10 ms stall halved the rate. The median of three only outvotes one such
/// window; the pairs leave nothing to outvote, and the median is kept as a
/// second line of defence.
pub fn calibrate() -> u64 {
    apic_timer::mask_for_calibration();
    let mut rates = [0u64; 3];
    for rate in rates.iter_mut() {
        apic_timer::set_initial_count(u32::MAX);
        let (start_tsc, start_count) = paired_count();
        super::udelay(10_000);
        let (end_tsc, end_count) = paired_count();
        let elapsed_ns = super::tsc_to_ns(end_tsc - start_tsc).max(1);
        *rate = ((start_count - end_count) as u64 * 1_000_000 / elapsed_ns).max(1);
    }
    apic_timer::set_initial_count(0);
    ONE_SHOT_READY.get().store(false, Ordering::Relaxed);
    rates.sort_unstable();
    TICKS_PER_MS.store(rates[1], Ordering::Relaxed);
    rates[1]
}

/// A (TSC, current count) pair read close together: of eight tries, the one
/// with the shortest TSC bracket around the read, timed at its midpoint.
/// `rdtsc_ordered` (lfence; rdtsc) waits for earlier instructions, so the
/// second TSC read cannot happen before the count has been read.
fn paired_count() -> (u64, u32) {
    (0..8)
        .map(|_| {
            let before = rdtsc_ordered();
            let count = apic_timer::current_count();
            let after = rdtsc_ordered();
            (after - before, before + (after - before) / 2, count)
        })
        .min_by_key(|&(bracket, _, _)| bracket)
        .map(|(_, tsc, count)| (tsc, count))
        .unwrap()
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

/// Puts this CPU's timer in a known state: stopped and masked, with the
/// one-shot setup to be redone. For a CPU that starts, or restarts: INIT
/// resets the local APIC (its LVT entries come back masked, SDM Vol. 3A
/// 11.4.7.1), so nothing the timer knew before still holds.
pub fn init_this_cpu() {
    stop();
}

/// Interrupts this CPU `hz` times a second until `stop()`.
pub fn start_periodic(hz: u64) {
    ONE_SHOT_READY.get().store(false, Ordering::Relaxed);
    apic_timer::start_periodic(ticks_for_ns(1_000_000_000 / hz));
}

/// Interrupts this CPU once, `ns` nanoseconds from now. The divisor and the
/// LVT entry are written only when the timer was in another mode: the
/// scheduler rearms the timer at every switch, and under a hypervisor each
/// APIC register write can cost a VM exit.
pub fn start_one_shot(ns: u64) {
    if !ONE_SHOT_READY.get().swap(true, Ordering::Relaxed) {
        apic_timer::enter_one_shot_mode();
    }
    apic_timer::set_initial_count(ticks_for_ns(ns));
}

/// Stops this CPU's timer: a zero initial count stops it (11.5.4), the mask
/// keeps a pending expiry from being delivered.
pub fn stop() {
    ONE_SHOT_READY.get().store(false, Ordering::Relaxed);
    apic_timer::stop();
}

static TICK_HOOK: Once<fn()> = Once::new();

/// Claims the timer's vector; on the boot CPU, before interrupts are enabled.
pub fn register_interrupt() {
    irq::register(TIMER_VECTOR, "time::timer", on_interrupt);
}

/// Registers what else runs at every tick, after it is counted (the scheduler's tick).
pub fn set_tick_hook(hook: fn()) {
    // Registered once, at boot: a second hook would be silently ignored.
    assert!(TICK_HOOK.get().is_none(), "time: the tick hook is registered twice");
    TICK_HOOK.call_once(|| hook);
}

/// The timer's interrupt handler.
fn on_interrupt() {
    TICKS.get().fetch_add(1, Ordering::Relaxed);
    if let Some(hook) = TICK_HOOK.get() {
        hook();
    }
}

fn local_ticks() -> u64 {
    TICKS.get().load(Ordering::Relaxed)
}

/// CPU `cpu`'s count of timer interrupts.
pub fn ticks_on(cpu: usize) -> &'static AtomicU64 {
    TICKS.on(cpu)
}

/// Spins until the clock passes `deadline_ns` (timer interrupts still arrive).
fn wait_until(deadline_ns: u64) {
    while super::now_ns() < deadline_ns {
        core::hint::spin_loop();
    }
}
