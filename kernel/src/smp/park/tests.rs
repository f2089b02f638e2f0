//! Tests of parking: a parked CPU's work moves away, and a restarted CPU starts clean.

use super::*;
use crate::testing::{KernelTest, TestResult};

use core::sync::atomic::AtomicU64;

use x86_64::VirtAddr;

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

    let result = super::super::bring_up(crate::args::get().smp);
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
