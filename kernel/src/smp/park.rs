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

// Tests.

use core::sync::atomic::AtomicU64;

use x86_64::VirtAddr;

use crate::testing::{KernelTest, TestResult};

/// Parks the last CPU while it has an armed sleeper, a pinned thread
/// blocked on a completion, and an address space loaded; then restarts them.
/// Nothing may be lost: the sleeper wakes, the pinned thread runs, a
/// shootdown of the space neither waits for the parked CPU nor misses it once
/// it is back, and the restarted CPU's timer works.
fn park_moves_work_away_and_restart_is_clean() -> TestResult {
    use crate::mm::{address_space::AddressSpace, frame};
    use crate::sched::{Builder, Completion, sleep_ns};
    use crate::tlb;
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicBool;
    use x86_64::structures::paging::Page;
    let parked = cpus().len() - 1;
    if parked < 2 {
        return crate::testing::skip("needs 3 CPUs");
    }
    let page = Page::containing_address(VirtAddr::new(0x0000_0050_0000_0000));
    let space = Arc::new(AddressSpace::new());
    let fresh_frame = |generation: u64| {
        let frame = frame::allocate().expect("out of frames");
        // SAFETY: a fresh frame, not mapped anywhere yet.
        unsafe {
            crate::mm::phys_to_virt(frame.start_address())
                .as_mut_ptr::<u64>()
                .write_volatile(generation)
        };
        frame
    };
    let read = move || {
        // SAFETY: `page` is mapped in the space the calling thread runs in.
        unsafe { page.start_address().as_ptr::<u64>().read_volatile() }
    };
    space.map(page, fresh_frame(0)).map_err(|e| alloc::format!("map: {e:?}"))?;
    let mut retired = Vec::new();
    let mut remap = |generation: u64| -> TestResult {
        let old = space.remap(page, fresh_frame(generation)).ok_or("remap failed")?;
        tlb::shootdown(&space, page.start_address(), 1);
        retired.push(old);
        Ok(())
    };

    // An armed sleeper in the space, pinned to the CPU that will park.
    let sleeping = Arc::new(AtomicBool::new(false));
    let woke_seeing = Arc::new(AtomicU64::new(u64::MAX));
    let (sleeping2, woke2) = (sleeping.clone(), woke_seeing.clone());
    let sleeper =
        Builder::new("sleeper").pin(parked).address_space(space.clone()).spawn(move || {
            read();
            sleeping2.store(true, Ordering::Release);
            sleep_ns(300_000_000);
            woke2.store(read(), Ordering::Release);
        });
    // A pinned thread blocked until after the park.
    let go = Arc::new(Completion::new());
    let go2 = go.clone();
    let blocked = Builder::new("pinned").pin(parked).spawn(move || go2.wait());
    while !sleeping.load(Ordering::Acquire) {
        sleep_ns(1_000_000);
    }
    sleep_ns(5_000_000);

    park(parked);
    crate::ensure!(
        cpus()[parked].state() == ApState::Parked,
        "CPU {parked} is {:?} after parking",
        cpus()[parked].state()
    );
    crate::ensure!(
        !space.active_cpus().contains(parked),
        "the parked CPU {parked} is still in the space's CPU set"
    );
    let started = time::now_ns();
    remap(1)?;
    let waited_ms = (time::now_ns() - started) / 1_000_000;
    crate::ensure!(
        waited_ms < 500,
        "a shootdown of the space waited {waited_ms} ms with CPU {parked} parked"
    );
    go.complete();
    crate::ensure!(
        blocked.join_until(time::now_ns() + 2_000_000_000),
        "the pinned thread never ran after its CPU parked"
    );

    let result = super::bring_up(crate::args::get().smp);
    crate::ensure!(
        result.online == result.wanted,
        "{} of {} online after the restart",
        result.online,
        result.wanted
    );
    crate::ensure!(sleeper.join_until(time::now_ns() + 2_000_000_000), "the sleeper never woke");
    crate::ensure!(
        woke_seeing.load(Ordering::Acquire) == 1,
        "the sleeper read a stale page after waking"
    );

    // On the restarted CPU: a timer sleep, then a read of the space that a
    // shootdown must reach.
    let cached = Arc::new(AtomicBool::new(false));
    let reread = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(u64::MAX));
    let (cached2, reread2, seen2) = (cached.clone(), reread.clone(), seen.clone());
    let back =
        Builder::new("restarted").pin(parked).address_space(space.clone()).spawn(move || {
            sleep_ns(20_000_000);
            read();
            cached2.store(true, Ordering::Release);
            while !reread2.load(Ordering::Acquire) {
                sleep_ns(1_000_000);
            }
            seen2.store(read(), Ordering::Release);
        });
    let deadline = time::now_ns() + 2_000_000_000;
    while !cached.load(Ordering::Acquire) && time::now_ns() < deadline {
        sleep_ns(1_000_000);
    }
    crate::ensure!(
        cached.load(Ordering::Acquire),
        "a 20 ms sleep on the restarted CPU {parked} never ended: its timer is dead"
    );
    remap(2)?;
    reread.store(true, Ordering::Release);
    back.join();
    crate::ensure!(
        seen.load(Ordering::Acquire) == 2,
        "the restarted CPU read generation {} after the shootdown",
        seen.load(Ordering::Acquire)
    );

    crate::smp::call::call_on_many(
        crate::percpu::CpuSet::all_online(),
        "unload_address_space",
        &crate::mm::lazy_tlb::unload,
    )
    .map_err(|e| alloc::format!("{e:?}"))?;
    if let Some(frame) = space.unmap(page) {
        retired.push(frame);
    }
    for frame in retired {
        // SAFETY: unmapped or replaced, and flushed everywhere; only this test used them.
        unsafe { frame::free(frame) };
    }
    Ok(())
}

crate::kernel_tests![KernelTest::new(
    "smp_park_moves_work_away_and_restart_is_clean",
    park_moves_work_away_and_restart_is_clean,
)];
