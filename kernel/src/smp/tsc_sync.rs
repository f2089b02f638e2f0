//! Checking that the CPUs' time-stamp counters agree.
//!
//! The clock (`time::now_ns`) reads the local TSC, so a thread that moves to a
//! CPU whose TSC lags would see time go backwards. Linux checks each new CPU
//! against the boot CPU at bring-up (arch/x86/kernel/tsc_sync.c): for a while
//! both CPUs take turns, under a lock, reading the TSC and comparing it with
//! the last value any CPU read. A value smaller than the last is a "warp":
//! the later reading came from a TSC that is behind.
//!
//! Here the check runs with every CPU of a bring-up at once (one check in
//! parallel mode, one per AP in serial mode), for `CHECK_DURATION_US`: 20 ms,
//! Linux's budget for the first CPU of a socket (about the 60 million cycles
//! of the measurement that motivated parallel bring-up, at 3 GHz).
//! `tsc=reliable` skips it, as Linux's parameter of the same name does.

use core::sync::atomic::{AtomicU64, Ordering};

use super::Cpu;
use crate::arch::x86::cpu::{rdtsc, rdtsc_ordered};
use crate::sync::SpinLock;
use crate::{args, time};

pub const CHECK_DURATION_US: u64 = 20_000;

/// The last TSC value read by any CPU.
static LAST_TSC: SpinLock<u64> = SpinLock::new(0);
static WORST_WARP: AtomicU64 = AtomicU64::new(0);
/// TSC value (boot CPU's) at which the current check ends; 0 = no check.
static DEADLINE: AtomicU64 = AtomicU64::new(0);

fn check_until(deadline: u64) {
    loop {
        let now = {
            let mut last = LAST_TSC.lock_irqsave();
            let now = rdtsc_ordered();
            if now < *last {
                WORST_WARP.fetch_max(*last - now, Ordering::Relaxed);
            }
            *last = now;
            now
        };
        if now >= deadline {
            break;
        }
    }
}

/// Releases `cpus` (with `release`) into a check that the boot CPU joins;
/// returns the worst warp seen, or None if the check is skipped.
pub fn run_with(cpus: &[&Cpu], release: impl Fn(&Cpu)) -> Option<u64> {
    if args::get().tsc_reliable || cpus.is_empty() {
        DEADLINE.store(0, Ordering::Release);
        cpus.iter().for_each(|cpu| release(cpu));
        return None;
    }
    WORST_WARP.store(0, Ordering::Relaxed);
    let deadline = rdtsc() + time::ns_to_tsc(CHECK_DURATION_US * 1000);
    DEADLINE.store(deadline, Ordering::Release);
    cpus.iter().for_each(|cpu| release(cpu));
    check_until(deadline);
    Some(WORST_WARP.load(Ordering::Relaxed))
}

/// Runs `f` while no CPU is inside the check's critical section: for sending
/// INIT to an AP that may be checking (an AP reset while holding the lock
/// would leave it held for good).
pub fn while_no_cpu_checks(f: impl FnOnce()) {
    let _last = LAST_TSC.lock_irqsave();
    f();
    // INIT is taken at the next instruction boundary once delivered; give it
    // time to land before the lock is free again.
    time::udelay(100);
}

/// An AP's part: check until the deadline the boot CPU set.
pub fn take_part() {
    let deadline = DEADLINE.load(Ordering::Acquire);
    if deadline != 0 {
        check_until(deadline);
    }
}
