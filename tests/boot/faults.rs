//! Faults off the common paths.

use super::*;

#[test]
fn a_panic_with_ipis_pending_runs_nothing_after_the_report() {
    let config = RunConfig {
        cpus: 2,
        kernel_args: vec!["test=crash_panic_with_pending_ipis".into(), "panic=halt".into()],
        ..RunConfig::default()
    };
    let run = boot_until(config, "panic: halting (sti; hlt)");
    // Still halted when stopped: the canary would have exited QEMU with success.
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("panic: panicking with a reschedule IPI and a call IPI pending");
    run.expect_count("canary: a thread ran after the panic", 0)
        .expect_count("xcall: a cross-CPU call ran after the panic", 0);
    // The kernel's last line (the runner may add its own after it).
    let last = run.serial.lines().rfind(|l| !l.starts_with("runner: ")).unwrap_or("");
    assert_eq!(
        last,
        "panic: halting (sti; hlt)",
        "something printed after the halt line; {}",
        run.explain()
    );
}

#[test]
fn a_cpu_panicking_before_its_percpu_data_is_reported() {
    let config =
        RunConfig { cpus: 4, kernel_args: vec!["fault=ap_panic:2".into()], ..RunConfig::default() };
    let run = boot_until(config, "panic: halting (cli; hlt: this CPU has no interrupt table yet)");
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("---- kernel panic on the CPU with APIC id 2 (no per-CPU data yet) ----")
        .expect_line(
            "panic: fault=ap_panic:2: panicking before this CPU's per-CPU data is installed",
        )
        .expect_line("panic: context: an AP starting up, before its per-CPU data was installed")
        .expect_count("---- kernel panic", 1);
}

/// The same with every CPU recording a trace: the panicking CPU has no
/// trace buffer (no per-CPU data), so it must record nothing, yet the others'
/// stops are still recorded and dumped.
#[test]
fn a_cpu_panicking_before_its_percpu_data_is_reported_with_tracing_on() {
    let json = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("early-ap-panic.json");
    let config = RunConfig {
        cpus: 4,
        kernel_args: vec!["fault=ap_panic:2".into(), "trace=all".into()],
        trace: Some(json.clone()),
        ..RunConfig::default()
    };
    let run = boot_until(config, "panic: halting (cli; hlt: this CPU has no interrupt table yet)");
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("---- kernel panic on the CPU with APIC id 2 (no per-CPU data yet) ----")
        // Only the boot CPU is online yet (it waits for the APs to call in).
        .expect_line("panic: other CPUs (1 stopped):")
        .expect_count("---- kernel panic", 1);
    let trace = boot::trace::read::load(&json).unwrap_or_else(|e| panic!("no trace: {e}"));
    let boot_cpu = boot::trace::read::track(&trace, "CPU 0").expect("no track for CPU 0");
    let marks = boot::trace::read::instants(&trace, boot_cpu);
    let stops = marks.iter().filter(|mark| mark.name == "stopped for panic").count();
    assert_eq!(stops, 1, "the boot CPU recorded {stops} stops");
    assert!(
        !marks.iter().any(|mark| mark.name == "panic"),
        "a panic mark, from a CPU without a buffer?"
    );
}

/// QEMU 7.2's TCG has no x2APIC; under KVM the kernel uses it, and the IPI
/// and bring-up tests must pass there too (the ICR write needs its fence).
#[test]
fn under_kvm_ipis_and_bring_up_work_with_x2apic() {
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok();
    if !usable {
        eprintln!("skipped: /dev/kvm is not usable here");
        return;
    }
    let run = boot_with(RunConfig {
        cpus: 4,
        accelerator: boot::Accelerator::Kvm,
        kernel_args: vec![
            "test=lapic_self_ipi_is_delivered,smp_all_cpus_online,smp_percpu_holds_own_apic_id,smp_every_cpu_answers_an_ipi,\
smp_park_and_bring_up_again,smp_parallel_bring_up_kicks_every_ap_first,smp_park_moves_work_away_and_restart_is_clean,\
xcall_to_self_runs_locally,tlb_kernel_shootdown_reaches_every_cpu"
                .into(),
        ],
        ..RunConfig::default()
    });
    run.expect(Outcome::KernelSuccess).expect_line("x2APIC mode").expect_line("9 passed, 0 failed");
}
