//! The kernel's own test run, kernel arguments, and the runner's errors.

use super::*;

#[test]
fn bios_one_cpu_passes_every_kernel_test() {
    expect_all_kernel_tests_pass(&boot(Firmware::Bios, 1, &["test=all"]));
}

#[test]
fn uefi_four_cpus_passes_every_kernel_test() {
    expect_all_kernel_tests_pass(&boot(Firmware::Uefi, 4, &["test=all"]));
}

#[test]
fn bios_four_cpus_lists_them_from_madt() {
    let run = boot(Firmware::Bios, 4, &["then=exit", "log=debug"]);
    run.expect(Outcome::KernelSuccess).expect_line("acpi: MADT lists 4 CPUs (4 enabled)");
    for apic_id in 0..4 {
        run.expect_line(&format!("acpi: {apic_id:>6}  {apic_id:>7}"));
    }
}

#[test]
fn uefi_four_cpus_lists_them_and_exits() {
    boot(Firmware::Uefi, 4, &["then=exit"])
        .expect(Outcome::KernelSuccess)
        .expect_line("acpi: MADT lists 4 CPUs (4 enabled)")
        .expect_line("boot: done in");
}

#[test]
fn a_failing_kernel_test_is_reported_as_failing() {
    boot(Firmware::Bios, 1, &["test=heap_box_and_vec,harness_reports_failure"])
        .expect(Outcome::KernelFailure)
        .expect_line("test heap_box_and_vec ... ok")
        .expect_line("test harness_reports_failure ... FAILED (this test fails on purpose")
        .expect_line("1 passed, 1 failed");
}

/// The listing is also the check that the kernel's test registry (a linker
/// section, see kernel/src/testing/registry.rs) lost no test: it must name
/// exactly the tests declared in the kernel's source, each with its kind.
#[test]
fn an_unknown_test_name_lists_the_available_tests() {
    let run = boot(Firmware::Bios, 1, &["test=no_such_test"]);
    run.expect(Outcome::KernelFailure)
        .expect_line("test: no test named 'no_such_test'; available tests:")
        .expect_line("    clock_is_monotonic")
        .expect_line("    crash_page_fault  (run by name only)");
    let mut listed: Vec<&str> = run
        .serial
        .lines()
        .skip_while(|line| !line.ends_with("available tests:"))
        .skip(1)
        .take_while(|line| line.starts_with("    "))
        .collect();
    listed.sort_unstable();
    let mut declared: Vec<String> = declared_kernel_tests()
        .into_iter()
        .map(|(name, by_name_only)| {
            format!("    {name}{}", if by_name_only { "  (run by name only)" } else { "" })
        })
        .collect();
    declared.sort_unstable();
    assert!(declared.len() >= 40, "found only {} tests in the kernel's source", declared.len());
    assert_eq!(listed, declared, "the kernel lists other tests than its source declares");
}

/// Every test the kernel's source declares (`KernelTest::new`, `::crash` or
/// `::long`, outside comments), with whether it is run by name only.
fn declared_kernel_tests() -> Vec<(String, bool)> {
    const CONSTRUCTORS: [(&str, bool); 3] =
        [("KernelTest::new(", false), ("KernelTest::crash(", true), ("KernelTest::long(", true)];
    let mut tests = Vec::new();
    for path in crate::source_tree::rust_files_under(&crate::source_tree::kernel_src()) {
        let source: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .flat_map(|line| [line, "\n"])
            .collect();
        for (constructor, by_name_only) in CONSTRUCTORS {
            for (at, _) in source.match_indices(constructor) {
                let arguments = source[at + constructor.len()..].trim_start();
                let name = arguments.strip_prefix('"').and_then(|rest| rest.split('"').next());
                let name = name.unwrap_or_else(|| {
                    panic!("{}: a {constructor}..) whose name is no string literal", path.display())
                });
                tests.push((name.to_string(), by_name_only));
            }
        }
    }
    tests
}

#[test]
fn unknown_and_malformed_arguments_are_ignored_with_a_warning() {
    boot(Firmware::Bios, 1, &["frobnicate=7", "quiet", "then=exit"])
        .expect(Outcome::KernelSuccess)
        .expect_line("warning: ignoring kernel argument 'frobnicate=7'")
        .expect_line("warning: ignoring kernel argument 'quiet': expected key=value");
}

#[test]
fn a_bad_value_is_warned_about_and_the_default_used() {
    let run = boot(Firmware::Bios, 1, &["log=loud", "apic=sideways", "then=exit"]);
    run.expect(Outcome::KernelSuccess)
        .expect_line(
            "warning: kernel argument log=loud is not valid (accepted: off, error, warn, info, debug, trace); \
             using the default (info)",
        )
        .expect_line("warning: kernel argument apic=sideways is not valid (accepted: auto, xapic)")
        // The default level (info) is in force: info lines still appear.
        .expect_line("boot: done in");
}

#[test]
fn without_acpi_the_kernel_runs_on_the_boot_cpu() {
    boot_with(RunConfig {
        cpus: 2,
        qemu_args: vec!["-machine".into(), "acpi=off".into()],
        kernel_args: vec!["then=exit".into()],
        ..RunConfig::default()
    })
    .expect(Outcome::KernelSuccess)
    .expect_line("warning: acpi: the bootloader found no RSDP (is ACPI disabled?); continuing with the boot CPU only");
}

#[test]
fn a_page_fault_is_reported_readably() {
    let run = boot(Firmware::Bios, 1, &["test=crash_page_fault"]);
    run.expect(PANIC_EXITED)
        .expect_line("---- kernel panic on cpu0 ----")
        .expect_line("page fault (#PF, vector 14) accessing 0x7fffdeadb000 (read from a page that is not present), error code 0x0, at RIP 0xffff")
        .expect_line("panic: context: cpu0, exception handler (vector 14)")
        .expect_line("panic: registers at the exception: RIP 0xffff")
        .expect_line("kernel::panic::exception_crash_tests::crash_page_fault+0x")
        .expect_line("CR2 0x7fffdeadb000")
        .expect_line("panic: backtrace (newest first):")
        .expect_line("kernel::testing::run+0x")
        .expect_count("kernel panic", 1);
}

#[test]
fn a_double_fault_from_stack_overflow_is_reported_from_its_ist_stack() {
    boot(Firmware::Bios, 1, &["test=crash_double_fault"])
        .expect(PANIC_EXITED)
        .expect_line(
            "double fault (on its IST stack) (#DF, vector 8), error code 0x0, at RIP 0xffff",
        )
        .expect_line("panic: context: cpu0, exception handler (vector 8)")
        // The faulting RIP is in the recursion, and CR2 is just below the stack pointer: the guard page.
        .expect_line("RIP 0xffff")
        .expect_line("kernel::testing::overflow_the_stack+0x")
        .expect_line("(the frame above repeats");
}

#[test]
fn a_breakpoint_is_reported_with_its_vector() {
    boot(Firmware::Bios, 1, &["test=crash_breakpoint"])
        .expect(PANIC_EXITED)
        .expect_line("breakpoint (#BP, vector 3), no error code, at RIP 0xffff");
}

#[test]
fn running_out_of_heap_is_a_clear_panic() {
    boot(Firmware::Bios, 1, &["test=crash_out_of_memory"])
        .expect(PANIC_EXITED)
        .expect_line("panic: memory allocation of 33554432 bytes failed");
}

#[test]
fn then_halt_idles_until_stopped() {
    boot_until(RunConfig { cpus: 1, ..RunConfig::default() }, "boot: halting (then=halt)")
        .expect(Outcome::TimedOut);
}

#[test]
fn the_runner_timeout_kills_qemu_with_status_124() {
    let run = boot_with(RunConfig {
        cpus: 1,
        timeout: Some(Duration::from_secs(3)),
        ..RunConfig::default()
    });
    run.expect(Outcome::TimedOut);
    assert_eq!(Outcome::TimedOut.exit_code(), 124);
}

#[test]
fn qemu_failing_is_reported_with_its_own_message() {
    let run =
        boot_with(RunConfig { qemu_args: vec!["-no-such-option".into()], ..RunConfig::default() });
    match run.outcome {
        Outcome::QemuFailed { message, .. } => {
            assert!(message.contains("no-such-option"), "{message}")
        }
        other => panic!("expected QEMU to fail, got {other:?}"),
    }
}

#[test]
fn a_missing_qemu_says_what_to_install() {
    let config =
        RunConfig { qemu_binary: "/nonexistent/qemu-system-x86_64".into(), ..RunConfig::default() };
    let error = boot::run(&config, true).expect_err("a missing QEMU must be a setup error");
    assert!(error.0.contains("apt-get install qemu-system-x86"), "{error}");
}

#[test]
fn a_missing_ovmf_says_what_to_install() {
    let config = RunConfig {
        firmware: Firmware::Uefi,
        ovmf_candidates: vec![PathBuf::from("/nonexistent/OVMF.fd")],
        ..RunConfig::default()
    };
    let error = boot::run(&config, true).expect_err("a missing OVMF must be a setup error");
    assert!(error.0.contains("apt-get install ovmf"), "{error}");
}
