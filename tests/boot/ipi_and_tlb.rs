//! Cross-CPU calls and TLB shootdowns.

use super::*;

const XCALL_TESTS: &str = "test=xcall_to_self_runs_locally,xcall_torture,xcall_unresponsive_cpu_is_reported_and_waited_for,\
xcall_preempt_wait_lets_higher_priority_run,tlb_torture_short,tlb_shootdown_waits_for_a_deaf_cpu,\
tlb_kernel_shootdown_reaches_every_cpu";

#[test]
fn cross_cpu_calls_and_shootdowns_work_on_four_cpus() {
    boot(Firmware::Bios, 4, &[XCALL_TESTS])
        .expect(Outcome::KernelSuccess)
        // A CPU with interrupts off is reported, with where it is, and waited for.
        .expect_line("warning: xcall: CPU 3 has not acknowledged 'probe' from cpu")
        .expect_line("warning: xcall: CPU 3 has not acknowledged 'tlb_flush_range' from cpu1 after")
        .expect_line("(not started: interrupts off?); it is at RIP 0xffff")
        .expect_line("warning: xcall: 'tlb_flush_range' from cpu1 completed after")
        .expect_line("7 passed, 0 failed");
}

#[test]
fn the_tlb_torture_runs_100000_shootdowns_per_mode_on_sixteen_cpus() {
    boot_with(RunConfig {
        cpus: 16,
        timeout: Some(Duration::from_secs(1800)),
        kernel_args: vec!["test=tlb_torture".into()],
        ..RunConfig::default()
    })
    .expect(Outcome::KernelSuccess)
    .expect_line("test: tlb_torture: 100000 shootdowns in Spin mode, no stale read")
    .expect_line("test: tlb_torture: 100000 shootdowns in Preempt mode, no stale read")
    .expect_line("test: tlb_torture: 100000 shootdowns in Sleep mode, no stale read")
    .expect_line("1 passed, 0 failed");
}

#[test]
fn the_tlb_torture_catches_a_missing_shootdown() {
    // A stale read needs another CPU to hold the old translation when a page is
    // read: if the host runs the torture's vCPUs one after another, a short run
    // can miss it (seen once in a full suite run: 4000 shootdowns, 36 ms, no
    // stale read). A torture that never catches it fails all three boots.
    let mut run = boot(Firmware::Bios, 4, &["test=tlb_torture_short", "fault=skip_shootdown"]);
    for _ in 1..3 {
        if run.outcome == Outcome::KernelFailure {
            break;
        }
        run = boot(Firmware::Bios, 4, &["test=tlb_torture_short", "fault=skip_shootdown"]);
    }
    run.expect(Outcome::KernelFailure).expect_line("test tlb_torture_short ... FAILED (");
    assert!(
        run.serial.contains("after the shootdown for generation")
            || run.serial.contains("read the frame of page"),
        "the failure is not a stale read; {}",
        run.explain()
    );
}

/// The runner's `HOST LABEL` lines that follow `HOSTSTAT end LABEL` (see
/// boot/src/host_stats.rs): the block must come right after the kernel's line.
fn host_block<'a>(run: &'a Run, label: &str) -> Vec<&'a str> {
    let end = format!("HOSTSTAT end {label}");
    let mut lines = run.serial.lines().skip_while(|l| *l != end);
    assert!(lines.next().is_some(), "no line {end:?}; {}", run.explain());
    let prefix = format!("HOST {label} ");
    lines.take_while(|l| l.starts_with(&prefix)).collect()
}

#[test]
fn bench_tlb_shows_what_the_host_did_to_each_vcpu_thread() {
    // About 30 s on a 2-core host: the four measured phases take about 6 s, the cost table the rest.
    let run = boot(Firmware::Bios, 4, &["bench=tlb"]);
    run.expect(Outcome::KernelSuccess).expect_line("BENCH tlb wake p99 ratio spin/preempt=");
    for label in ["tlb.limit", "tlb.spin", "tlb.preempt", "tlb.sleep"] {
        let block = host_block(&run, label);
        let explain = || format!("HOST block for {label}: {block:#?}; {}", run.explain());
        assert!(block.len() >= 6, "too short; {}", explain());
        assert!(
            block[0].contains(" wall_ms=") && block[0].contains(" host_busy="),
            "{}",
            explain()
        );
        assert!(block[0].ends_with("threads: multi-threaded TCG, 4 vCPU threads"), "{}", explain());
        for cpu in 0..4 {
            let lines = block
                .iter()
                .filter(|l| l.contains(&format!("thread=\"CPU {cpu}/TCG\" run_ms=")))
                .count();
            assert_eq!(lines, 1, "CPU {cpu}/TCG is not on exactly one line; {}", explain());
        }
        assert!(block.iter().any(|l| l.contains("(main loop) run_ms=")), "{}", explain());
        let summary = block
            .iter()
            .find(|l| l.starts_with(&format!("HOST {label} vcpus: busiest run=")))
            .copied()
            .unwrap_or_default();
        assert!(
            summary.contains(", others run<=") && summary.contains("; main loop run="),
            "no vCPU summary; {}",
            explain()
        );
        let probe = block.last().unwrap();
        let expected = format!(
            "HOST {label} host thread wake-up (the floor under any guest wake-up): samples="
        );
        assert!(
            probe.starts_with(&expected) && probe.contains(" p99_us="),
            "no host wake-up line last; {}",
            explain()
        );
    }
}

#[test]
fn the_tlb_torture_catches_a_lazy_cpu_that_does_not_catch_up() {
    // As above: a lazy CPU that skips its catch-up keeps a stale translation,
    // and the torture reads it when the CPU comes back into the space.
    let run = (0..3)
        .map(|_| boot(Firmware::Bios, 4, &["test=tlb_torture_short", "fault=skip_lazy_catch_up"]))
        .find(|run| run.outcome == Outcome::KernelFailure)
        .expect("three boots with fault=skip_lazy_catch_up passed the torture");
    run.expect_line("test tlb_torture_short ... FAILED (");
    assert!(
        run.serial.contains("after the shootdown for generation")
            || run.serial.contains("read the frame of page"),
        "the failure is not a stale read; {}",
        run.explain()
    );
}

#[test]
fn bad_ipi_and_fault_arguments_are_warned_about() {
    boot(Firmware::Bios, 2, &["ipi_wait=sometimes", "irqoff_us=0", "then=exit"])
        .expect(Outcome::KernelSuccess)
        .expect_line("warning: kernel argument ipi_wait=sometimes is not valid (accepted: preempt, sleep, spin)")
        .expect_line("warning: kernel argument irqoff_us=0 is not valid (accepted: microseconds from 1 to 10000000)");
}
