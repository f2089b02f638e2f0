//! Tests of bring-up: every CPU online and reachable, its per-CPU data its
//! own, parking and starting again, and the order a parallel bring-up keeps.

use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::{ApState, Cpu, bring_up, cpus, park_all};
use crate::arch::x86::lapic::{self, Ipi};
use crate::args::{self, SmpMode};
use crate::percpu;
use crate::testing::{KernelTest, TestResult};
use crate::time;

fn expect_all_online() -> TestResult {
    let wanted = cpus().len();
    crate::ensure!(
        percpu::online_count() == wanted,
        "{} of {wanted} CPUs online",
        percpu::online_count()
    );
    for cpu in cpus() {
        crate::ensure!(cpu.state() == ApState::Online, "CPU {} is {:?}", cpu.number, cpu.state());
    }
    Ok(())
}

/// Sends a test IPI to every CPU (itself included) and checks each answers,
/// and that the handler, running on that CPU, found per-CPU data whose APIC id
/// is the hardware's.
fn every_cpu_answers_an_ipi() -> TestResult {
    crate::irq::tests::claim_self_test_vector();
    for cpu in cpus() {
        let answered = crate::irq::tests::ipis_answered_on(cpu.number);
        let before = answered.load(Ordering::Acquire);
        lapic::get().send_ipi(cpu.apic_id, Ipi::Fixed(crate::arch::x86::vectors::SELF_TEST_VECTOR));
        let deadline = time::now_ns() + 500_000_000;
        while answered.load(Ordering::Acquire) == before && time::now_ns() < deadline {
            core::hint::spin_loop();
        }
        crate::ensure!(
            answered.load(Ordering::Acquire) == before + 1,
            "CPU {} (APIC id {}) did not answer an IPI",
            cpu.number,
            cpu.apic_id
        );
        let seen = crate::irq::tests::apic_id_seen_on(cpu.number);
        crate::ensure!(
            seen == cpu.apic_id,
            "CPU {}'s handler ran on APIC id {seen}, expected {}",
            cpu.number,
            cpu.apic_id
        );
    }
    Ok(())
}

fn all_cpus_online() -> TestResult {
    expect_all_online()?;
    if let (Some(qemu), None) = (crate::arch::x86::fw_cfg::cpu_count(), args::get().max_cpus) {
        crate::ensure!(
            cpus().len() == qemu as usize,
            "{} CPUs managed, QEMU has {qemu}",
            cpus().len()
        );
    }
    Ok(())
}

/// On each CPU itself, the per-CPU data reached through GS must be that
/// CPU's own: the right number, the right structure, and the APIC id the
/// hardware reports there.
fn percpu_holds_own_apic_id() -> TestResult {
    use alloc::string::String;
    let problems = crate::sync::SpinLock::new(Vec::<String>::new());
    for cpu in cpus().iter().filter(|c| c.state() == ApState::Online) {
        let check = || {
            // Through GS, on the CPU being checked.
            let (area, number, apic_id) =
                (percpu::Area::this(), percpu::cpu_number(), percpu::apic_id());
            let hardware = lapic::get().id();
            let expected = &cpus()[cpu.number];
            if area != percpu::Area::of(cpu.number) || number != cpu.number {
                problems.lock().push(alloc::format!(
                    "on CPU {}, GS points at CPU {number}'s per-CPU data",
                    cpu.number,
                ));
            }
            if apic_id != hardware || expected.apic_id != hardware {
                problems.lock().push(alloc::format!(
                    "on CPU {}, the hardware APIC id is {hardware}, per-CPU data says {}, MADT {}",
                    cpu.number,
                    apic_id,
                    expected.apic_id
                ));
            }
        };
        crate::smp::call::call_on(cpu.number, "check_percpu", &check)
            .map_err(|e| alloc::format!("{e:?}"))?;
    }
    let problems = problems.lock();
    crate::ensure!(problems.is_empty(), "{}", problems.join("; "));
    every_cpu_answers_an_ipi()
}

/// Whether every AP of `aps` was kicked before any of them came online: the
/// mark of a parallel bring-up (the INIT waits overlap), which a serial one
/// cannot have with two APs or more.
fn kicked_all_before_any_online(aps: &[&Cpu]) -> bool {
    let last_kick = aps.iter().map(|c| c.times.kicked.load(Ordering::Relaxed)).max();
    let first_online = aps.iter().map(|c| c.times.online.load(Ordering::Relaxed)).min();
    last_kick < first_online
}

/// Orders, not times: a parallel bring-up kicks every AP before any is
/// online; a serial one does not. (A bring-up that only prints "parallel"
/// but starts APs one by one fails here.)
fn parallel_bring_up_kicks_every_ap_first() -> TestResult {
    let aps: Vec<&Cpu> = cpus()[1..].iter().collect();
    if aps.len() < 2 {
        return crate::testing::skip("needs 3 CPUs");
    }
    for mode in [SmpMode::Serial, SmpMode::Parallel] {
        park_all();
        let result = bring_up(mode);
        crate::ensure!(
            result.online == result.wanted,
            "{} of {} online after {mode:?} bring-up",
            result.online,
            result.wanted
        );
        let overlapped = kicked_all_before_any_online(&aps);
        crate::ensure!(
            overlapped == (mode == SmpMode::Parallel),
            "{mode:?} bring-up: every AP kicked before any online: {overlapped}"
        );
    }
    Ok(())
}

fn park_and_bring_up_again() -> TestResult {
    for mode in [SmpMode::Parallel, SmpMode::Serial, SmpMode::Parallel] {
        park_all();
        crate::ensure!(
            percpu::online_count() == 1,
            "{} CPUs still online after parking",
            percpu::online_count()
        );
        let result = bring_up(mode);
        crate::ensure!(
            result.online == result.wanted,
            "{} of {} online after {:?} bring-up",
            result.online,
            result.wanted,
            mode
        );
        expect_all_online()?;
        every_cpu_answers_an_ipi()?;
    }
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("smp_all_cpus_online", all_cpus_online),
    KernelTest::new("smp_percpu_holds_own_apic_id", percpu_holds_own_apic_id),
    KernelTest::new("smp_every_cpu_answers_an_ipi", every_cpu_answers_an_ipi),
    KernelTest::new("smp_park_and_bring_up_again", park_and_bring_up_again),
    KernelTest::new(
        "smp_parallel_bring_up_kicks_every_ap_first",
        parallel_bring_up_kicks_every_ap_first,
    ),
];
