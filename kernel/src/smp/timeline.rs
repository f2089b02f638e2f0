//! What a bring-up reports: the summary line, the TSC check's result, where
//! the time went phase by phase, and the timeline, when each CPU reached each
//! phase, printed at `log=debug` as a table of microseconds since the
//! bring-up began.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{ApState, BringUp, Cpu, PhaseTimes, cpus, tsc_sync};
use crate::time;

/// Where a bring-up's time went, in nanoseconds. The boot CPU starts a group
/// of APs together (all of them in parallel mode, one in serial mode), and
/// each phase of a group ends when the last of its APs reaches the next
/// timestamp, so a group's phases add up to its whole time; serial mode adds
/// up its groups. Only APs that came online count: one that failed would
/// stretch a phase by the timeout, which the warning already reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct Phases {
    /// INIT to every AP, the INIT wait, and SIPIs up to the last AP's first.
    pub kick: u64,
    /// From there until the last AP runs Rust code (`alive`).
    pub alive: u64,
    /// Until the last AP has its tables, APIC and timer set up (`called in`).
    pub call_in: u64,
    /// Release and the TSC check, until the last AP is online.
    pub tsc_check: u64,
    /// Until the boot CPU sees every scheduler running (the end of the group).
    pub online: u64,
}

impl Phases {
    /// The phases of the group `aps`, started at `begin` and done at `end` (TSC).
    pub fn of(aps: &[&Cpu], begin: u64, end: u64) -> Phases {
        let online: Vec<&Cpu> =
            aps.iter().copied().filter(|c| c.state() == ApState::Online).collect();
        let last = |stamp: fn(&PhaseTimes) -> &AtomicU64| {
            online.iter().map(|c| stamp(&c.times).load(Ordering::Relaxed)).max().unwrap_or(begin)
        };
        // Each boundary at or after the one before: a phase is never negative.
        let mut at = begin;
        let mut until = |tsc: u64| {
            let from = at;
            at = tsc.max(from);
            time::tsc_to_ns(at - from)
        };
        Phases {
            kick: until(last(|t| &t.kicked)),
            alive: until(last(|t| &t.alive)),
            call_in: until(last(|t| &t.called_in)),
            tsc_check: until(last(|t| &t.online)),
            online: until(end),
        }
    }

    pub fn add(&mut self, other: &Phases) {
        self.kick += other.kick;
        self.alive += other.alive;
        self.call_in += other.call_in;
        self.tsc_check += other.tsc_check;
        self.online += other.online;
    }

    /// `kick_us=... alive_us=...`, for the log and `bench=smp`.
    pub fn in_us(&self) -> alloc::string::String {
        alloc::format!(
            "kick_us={} alive_us={} call_in_us={} tsc_check_us={} online_us={}",
            self.kick / 1000,
            self.alive / 1000,
            self.call_in / 1000,
            self.tsc_check / 1000,
            self.online / 1000
        )
    }
}

/// Prints the summary line (always), the TSC check, and the timeline (debug).
pub fn report(result: &BringUp) {
    log::info!(
        "smp: {} of {} CPUs online in {} us ({})",
        result.online,
        result.wanted,
        result.elapsed_ns / 1000,
        result.mode.name()
    );
    match result.tsc_warp {
        Some(warp) => {
            let message = alloc::format!(
                "smp: TSC check: worst warp between CPUs {} cycles ({} ns) over {} us",
                warp,
                time::tsc_to_ns(warp),
                tsc_sync::CHECK_DURATION_US
            );
            if warp == 0 {
                log::info!("{message}")
            } else {
                log::warn!("{message}: the TSCs are not synchronised")
            }
        }
        None => log::info!("smp: TSC check skipped (tsc=reliable)"),
    }
    print(result.start_tsc, &result.phases);
}

fn print(start_tsc: u64, phases: &Phases) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let us = |tsc: u64| if tsc < start_tsc { 0 } else { time::tsc_to_ns(tsc - start_tsc) / 1000 };
    log::debug!("smp: phases: {}", phases.in_us());
    log::debug!("smp: timeline (us since the bring-up began)");
    log::debug!("smp:   cpu  apic-id   kicked    alive  called-in   online   state");
    for cpu in cpus().iter().skip(1) {
        let t = &cpu.times;
        log::debug!(
            "smp: {:>5}  {:>7}  {:>7}  {:>7}  {:>9}  {:>7}   {:?}",
            cpu.number,
            cpu.apic_id,
            us(t.kicked.load(Ordering::Relaxed)),
            us(t.alive.load(Ordering::Relaxed)),
            us(t.called_in.load(Ordering::Relaxed)),
            us(t.online.load(Ordering::Relaxed)),
            cpu.state()
        );
    }
}
