//! Parking a CPU: taking it offline so that INIT can restart it later.
//!
//! Parking must not lose anything the CPU holds, and must leave nothing that
//! others wait for. Linux's CPU hotplug does this in steps run by a stopper
//! thread on the CPU that goes away (kernel/cpu.c, `take_cpu_down()`,
//! `migrate_tasks()`); here a real-time *parker* thread, pinned to the CPU,
//! does it in one go with interrupts off:
//! 1. threads: the CPU stops taking threads, and every queued thread and
//!    every sleeper moves to another CPU; a thread pinned to this CPU loses
//!    its pinning, with a warning (sched::evacuate_this_cpu);
//! 2. memory: the CPU leaves its loaded address space, so no shootdown
//!    waits for it; it needs no flush while parked, since the INIT that
//!    restarts it empties its TLB (SDM Vol. 3A 9.1.1, Table 9-1);
//! 3. calls: the queue closes and the calls already queued run; a caller that
//!    finds the queue closed does not wait (smp::call::close_this_cpu);
//! 4. time: the local timer stops; a restarted CPU sets its timer up afresh.
//!
//! Then the CPU says it is parked and halts with interrupts off until INIT.
//! A restarted CPU starts with empty queues and a fresh idle thread; its old
//! idle and parker threads are released then (sched::become_idle).

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::x86::interrupts;

use super::bring_up::{on_boot_cpu, wait_until, wake_boot_cpu};
use super::{AP_TIMEOUT_MS, ApState, Cpu, SMP, cpus};
use crate::arch::x86::cpu::{self, rdtsc};
use crate::sched::{Builder, Priority};
use crate::{percpu, time};

mod tests;

/// Parks every online AP.
pub fn park_all() {
    on_boot_cpu(|| park_here(|cpu| cpu.number != 0))
}

/// Parks one AP (not the boot CPU, which drives bring-up and parking).
pub fn park(number: usize) {
    assert!(number != 0, "the boot CPU cannot be parked");
    on_boot_cpu(move || park_here(move |cpu| cpu.number == number))
}

/// A park request's life: the boot CPU posts it, then either the parker
/// claims it (and parks) or the boot CPU withdraws it when it gives up
/// waiting. Whoever moves it first wins, so a parker that only gets to run
/// after the boot CPU gave up (a real-time thread hogged the CPU) does nothing
/// instead of parking the CPU at some later, arbitrary moment.
pub(super) const NO_REQUEST: u8 = 0;
const REQUESTED: u8 = 1;
const PARKING: u8 = 2;

fn move_request(cpu: &Cpu, from: u8, to: u8) -> bool {
    cpu.park_request.compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire).is_ok()
}

fn park_here(chosen: impl Fn(&Cpu) -> bool) {
    let Some(smp) = SMP.get() else { return };
    let targets: Vec<&Cpu> =
        smp.cpus.iter().filter(|c| chosen(c) && c.state() == ApState::Online).collect();
    for cpu in &targets {
        let number = cpu.number;
        cpu.park_request.store(REQUESTED, Ordering::Release);
        // The highest priority: it runs as soon as the CPU can switch threads.
        Builder::new("parker")
            .priority(Priority::RealTime(Priority::HIGHEST_REAL_TIME))
            .pin(number)
            .spawn(move || park_this_cpu(number));
    }
    let deadline = rdtsc() + time::ns_to_tsc(AP_TIMEOUT_MS * 1_000_000);
    wait_until(&targets, |cpu| cpu.state() != ApState::Online, deadline);
    for cpu in &targets {
        if move_request(cpu, REQUESTED, NO_REQUEST) {
            log::warn!(
                "smp: CPU {} did not start parking within {} ms; request withdrawn",
                cpu.number,
                AP_TIMEOUT_MS
            );
        }
    }
    // A parker that claimed its request parks with interrupts off: soon.
    let claimed: Vec<&Cpu> = targets
        .iter()
        .copied()
        .filter(|c| c.park_request.load(Ordering::Acquire) == PARKING)
        .collect();
    wait_until(
        &claimed,
        |cpu| cpu.state() == ApState::Parked,
        rdtsc() + time::ns_to_tsc(AP_TIMEOUT_MS * 1_000_000),
    );
    for cpu in claimed.iter().filter(|c| c.state() != ApState::Parked) {
        log::warn!(
            "smp: CPU {} started parking but did not finish within {} ms",
            cpu.number,
            AP_TIMEOUT_MS
        );
    }
}

/// The parker thread's body, on the CPU that parks.
fn park_this_cpu(number: usize) {
    interrupts::disable();
    let me = &cpus()[number];
    if percpu::cpu_number() != number || !move_request(me, REQUESTED, PARKING) {
        // Withdrawn (the boot CPU gave up waiting), or moved away from its CPU
        // by the scheduler: this parker must not park anything.
        interrupts::enable();
        return;
    }
    crate::sched::evacuate_this_cpu();
    crate::smp::call::close_this_cpu();
    percpu::mark_offline();
    // Parked before the request is cleared: the boot CPU, if it gave up
    // waiting just now, sees either the request still claimed or the CPU parked.
    me.set_state(ApState::Parked);
    me.park_request.store(NO_REQUEST, Ordering::Release);
    wake_boot_cpu();
    cpu::halt_forever()
}
