//! Time: a monotonic clock in nanoseconds from the TSC, and the local APIC timer.
//!
//! The TSC is calibrated once at boot (see `tsc`); afterwards reading the clock
//! costs one RDTSC and a multiply. Times are nanoseconds since the kernel started.

pub mod timer;
pub mod tsc;

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::x86::cpu::rdtsc;

mod tests;

/// TSC value when the kernel started.
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC cycle as a 32.32 fixed-point number (0 = not calibrated).
static NS_PER_CYCLE_FP32: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Marks the start of time; call first thing at boot.
pub fn start() {
    TSC_AT_BOOT.store(rdtsc(), Ordering::Relaxed);
}

fn set_tsc_frequency(hz: u64) {
    TSC_HZ.store(hz, Ordering::Relaxed);
    // The trace's timestamps are raw TSC values, converted when dumped.
    crate::trace::set_clock(hz, TSC_AT_BOOT.load(Ordering::Relaxed));
    NS_PER_CYCLE_FP32
        .store((1_000_000_000u128 << 32).div_ceil(hz as u128) as u64, Ordering::Relaxed);
}

pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Nanoseconds since boot; 0 until the TSC is calibrated.
pub fn now_ns() -> u64 {
    tsc_to_ns(rdtsc().saturating_sub(TSC_AT_BOOT.load(Ordering::Relaxed)))
}

/// Converts a number of TSC cycles to nanoseconds.
pub fn tsc_to_ns(cycles: u64) -> u64 {
    ((cycles as u128 * NS_PER_CYCLE_FP32.load(Ordering::Relaxed) as u128) >> 32) as u64
}

/// Converts nanoseconds to TSC cycles.
pub fn ns_to_tsc(ns: u64) -> u64 {
    (ns as u128 * tsc_hz() as u128 / 1_000_000_000) as u64
}

/// Busy-waits for at least `us` microseconds.
pub fn udelay(us: u64) {
    let end = rdtsc() + ns_to_tsc(us * 1000);
    while rdtsc() < end {
        core::hint::spin_loop();
    }
}
