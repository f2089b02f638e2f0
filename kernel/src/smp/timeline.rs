//! The bring-up timeline: when each CPU reached each phase, printed at
//! `log=debug` as a table of microseconds since the bring-up started.

use core::sync::atomic::Ordering;

use super::cpus;
use crate::time;

pub fn print(start_tsc: u64) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let us = |tsc: u64| if tsc < start_tsc { 0 } else { time::tsc_to_ns(tsc - start_tsc) / 1000 };
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
