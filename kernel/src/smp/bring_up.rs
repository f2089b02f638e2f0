//! Starting APs: INIT and two SIPIs for each target (SDM Vol. 3A "Typical BSP
//! Initialization Sequence"), then sleeping in `hlt` until each calls in or
//! its time is up, the TSC check, and giving up on stragglers with an INIT.
//! `smp=parallel` does this once for all targets, `smp=serial` once per target.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::x86::interrupts;

use super::trampoline::Trampoline;
use super::{
    AP_TIMEOUT_MS, ApState, BringUp, Cpu, POST_SIPI_DELAY_US, Phases, SHORT_POST_SIPI_DELAY_US,
    SMP, call, tsc_sync,
};
use crate::arch::x86::cpu::{self, rdtsc};
use crate::arch::x86::lapic::{self, Ipi};
use crate::arch::x86::vectors::WAKE_VECTOR;
use crate::args::{self, SmpMode};
use crate::trace::{self, format};
use crate::{percpu, time};

fn delay_after_sipi() {
    time::udelay(if args::get().init_udelay == 0 {
        SHORT_POST_SIPI_DELAY_US
    } else {
        POST_SIPI_DELAY_US
    });
}

/// INIT, wait, SIPI, wait, SIPI, wait: for every CPU of `targets` at once.
fn kick(trampoline: &Trampoline, targets: &[&Cpu]) {
    let apic = lapic::get();
    for cpu in targets {
        cpu.set_state(ApState::Kicked);
        apic.send_ipi(cpu.apic_id, Ipi::Init);
    }
    time::udelay(args::get().init_udelay);
    for cpu in targets {
        let now = rdtsc();
        cpu.times.kicked.store(now, Ordering::Relaxed);
        trace::record_at(now, format::AP_KICK, cpu.number as u16, cpu.apic_id as u64, 0, 0);
        apic.send_ipi(cpu.apic_id, Ipi::Startup(trampoline.sipi_vector()));
    }
    delay_after_sipi();
    // A second SIPI in case the first was lost; an AP already running ignores it.
    for cpu in targets {
        apic.send_ipi(cpu.apic_id, Ipi::Startup(trampoline.sipi_vector()));
    }
    delay_after_sipi();
}

/// Sleeps until `done` holds for every target, or until the deadline (a TSC
/// value). APs send the boot CPU a wake IPI at each step, and a one-shot timer
/// covers the deadline, so the boot CPU waits in `hlt` instead of spinning. On
/// real hardware that only saves power; under an emulator with fewer host cores
/// than CPUs it gives the APs' threads the host CPU time they need to start.
pub(super) fn wait_until(targets: &[&Cpu], done: impl Fn(&Cpu) -> bool, deadline: u64) {
    crate::sched::with_timer_lent(|| sleep_until(targets, &done, deadline));
}

fn sleep_until(targets: &[&Cpu], done: &dyn Fn(&Cpu) -> bool, deadline: u64) {
    let waiting = || !targets.iter().all(|cpu| done(cpu)) && rdtsc() < deadline;
    interrupts::disable();
    while waiting() {
        // Re-armed on every pass: a timer that fires a little early (its rate
        // is only as good as its calibration) must not leave us asleep.
        time::timer::start_one_shot(time::tsc_to_ns(deadline.saturating_sub(rdtsc())).max(1000));
        // sti; hlt: a wake IPI arriving after the check still ends the hlt.
        cpu::enable_interrupts_and_halt();
        interrupts::disable();
    }
    interrupts::enable();
}

/// Gives up on targets still in `Kicked`, `Alive` or `Released` since
/// `waiting_since` (TSC): reports them and puts them back into wait-for-SIPI
/// with an INIT.
fn give_up_on_stragglers(targets: &[&Cpu], waiting_since: u64) {
    for cpu in targets {
        // The AP may move on while we look: retry from the state it is in now.
        let given_up_in = loop {
            let state = cpu.state();
            if !matches!(state, ApState::Kicked | ApState::Alive | ApState::Released) {
                break None;
            }
            if cpu.advance(state, ApState::Failed) {
                break Some(state);
            }
        };
        let Some(state) = given_up_in else { continue };
        trace::record(format::AP_GIVEN_UP, cpu.number as u16, state as u64, 0, 0);
        let what = match state {
            ApState::Kicked => "did not report alive",
            ApState::Alive => "reported alive but did not call in",
            _ => "did not finish the TSC check",
        };
        log::warn!(
            "smp: CPU {} (APIC id {}) {} within {} ms (gave up after {} ms); continuing without it",
            cpu.number,
            cpu.apic_id,
            what,
            AP_TIMEOUT_MS,
            time::tsc_to_ns(rdtsc() - waiting_since) / 1_000_000
        );
        if state == ApState::Released {
            // It may be inside the TSC check's critical section: INIT it while
            // holding that lock, so it cannot be reset holding it. It may also
            // have opened its call queue already: close it again.
            tsc_sync::while_no_cpu_checks(|| lapic::get().send_ipi(cpu.apic_id, Ipi::Init));
            call::close_queue_of_failed(cpu.number);
        } else {
            lapic::get().send_ipi(cpu.apic_id, Ipi::Init);
        }
    }
}

/// Kicks `targets`, waits for them to call in, runs the TSC check with all
/// that did, and waits for them to go online. Returns the TSC check's worst
/// warp and where the time went.
fn start(trampoline: &Trampoline, targets: &[&Cpu]) -> (Option<u64>, Phases) {
    let timeout = |since: u64| since + time::ns_to_tsc(AP_TIMEOUT_MS * 1_000_000);
    let kicked_at = rdtsc();
    kick(trampoline, targets);
    wait_until(
        targets,
        |cpu| !matches!(cpu.state(), ApState::Kicked | ApState::Alive),
        timeout(kicked_at),
    );
    give_up_on_stragglers(targets, kicked_at);
    let called_in: Vec<&Cpu> =
        targets.iter().copied().filter(|c| c.state() == ApState::CalledIn).collect();
    let warp = tsc_sync::run_with(&called_in, |cpu| cpu.set_state_and_wake(ApState::Released));
    // The timeout counts from the end of the check, not from the release: with
    // far more CPUs than host cores, every CPU spinning in the check must be
    // run by the host once more after its end to leave it, which can take
    // longer than the timeout (docs/smp.md) without any CPU being stuck.
    let checked_at = rdtsc();
    // Done: online with its scheduler running (or failed).
    let running = |cpu: &Cpu| match cpu.state() {
        ApState::Released => false,
        ApState::Online => crate::sched::is_started_on(cpu.number),
        _ => true,
    };
    wait_until(&called_in, running, timeout(checked_at));
    give_up_on_stragglers(&called_in, checked_at);
    for cpu in called_in
        .iter()
        .filter(|c| c.state() == ApState::Online && !crate::sched::is_started_on(c.number))
    {
        // Online (it won the race with the give-up), but its scheduler is not
        // running yet: threads pinned to it until it is will move elsewhere.
        log::warn!(
            "smp: CPU {} is online but its scheduler did not start within {} ms",
            cpu.number,
            AP_TIMEOUT_MS
        );
    }
    (warp, Phases::of(targets, kicked_at, rdtsc()))
}

/// Runs `f` on the boot CPU: bring-up and parking are driven from there (the
/// APs report progress to it, and it must not park itself).
pub(super) fn on_boot_cpu<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    if !crate::sched::is_started() || percpu::cpu_number() == 0 {
        return f();
    }
    let result = alloc::sync::Arc::new(crate::sync::SpinLock::new(None));
    let slot = result.clone();
    crate::sched::Builder::new("on-boot-cpu").pin(0).spawn(move || *slot.lock() = Some(f())).join();
    result.lock().take().expect("the pinned thread ran")
}

/// Brings every AP that is not online up, in `mode`.
pub fn bring_up(mode: SmpMode) -> BringUp {
    bring_up_first(mode, usize::MAX)
}

/// Brings up those of the APs numbered 1 to `count` that are not online:
/// `bench=smp` times bring-ups of different sizes.
pub fn bring_up_first(mode: SmpMode, count: usize) -> BringUp {
    on_boot_cpu(move || bring_up_here(mode, count))
}

fn bring_up_here(mode: SmpMode, count: usize) -> BringUp {
    let smp = SMP.get().expect("smp::bring_up() before smp::init()");
    let chosen = &smp.cpus[1..smp.cpus.len().min(count.saturating_add(1))];
    let targets: Vec<&Cpu> = chosen.iter().filter(|c| c.state() != ApState::Online).collect();
    let start_tsc = rdtsc();
    let serial = (mode == SmpMode::Serial) as u16;
    trace::record_at(start_tsc, format::BRING_UP_BEGIN, serial, targets.len() as u64, 0, 0);
    let worse = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (mut worst_warp, mut phases) = (None, Phases::default());
    if let Some(trampoline) = &smp.trampoline {
        // Parallel: one group of every target. Serial: one group per target.
        let groups: Vec<&[&Cpu]> = match mode {
            SmpMode::Parallel => alloc::vec![&targets[..]],
            SmpMode::Serial => targets.iter().map(core::slice::from_ref).collect(),
        };
        for group in groups {
            let (warp, spent) = start(trampoline, group);
            worst_warp = worse(worst_warp, warp);
            phases.add(&spent);
        }
    }
    let elapsed_ns = time::tsc_to_ns(rdtsc() - start_tsc);
    let online = smp.cpus.iter().filter(|c| c.state() == ApState::Online).count();
    let warp = worst_warp.unwrap_or(u64::MAX);
    trace::record(format::BRING_UP_END, 0, online as u64, warp, 0);
    BringUp {
        mode,
        online,
        wanted: 1 + chosen.len(),
        elapsed_ns,
        start_tsc,
        tsc_warp: worst_warp,
        phases,
    }
}

/// Wakes the boot CPU, which sleeps until this AP moves on to its next state.
pub(super) fn wake_boot_cpu() {
    crate::irq::send_ipi(0, WAKE_VECTOR);
}
