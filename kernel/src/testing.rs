//! The in-kernel test registry and runner.
//!
//! Tests live next to the code they test: each module exports a
//! `TESTS: &[KernelTest]` slice, and [`REGISTRY`] lists those slices. One
//! kernel image carries them all; `test=NAME` runs one, `test=a,b` several,
//! `test=all` every test that is not a crash test. Each prints
//! `test NAME ... ok` or `test NAME ... FAILED (reason)`, then a closing line
//! `N passed, N failed`, and the kernel exits QEMU with success only if all passed.
//!
//! Crash tests (`KernelTest::crash`) end in a panic on purpose; the host tests
//! boot them one at a time and read the panic report.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::x86::qemu_exit::{self, ExitCode};

pub type TestResult = Result<(), String>;

pub struct KernelTest {
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Whether `test=all` includes it (crash tests and the harness's own
    /// failing test are run only by name).
    pub in_all: bool,
}

impl KernelTest {
    pub const fn new(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: true }
    }

    /// A test that is run only by name: it crashes, or fails, on purpose.
    pub const fn crash(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: false }
    }

    /// A test that takes minutes: run only by name (the host tests do).
    pub const fn long(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: false }
    }
}

/// Returns `Err(message)` from the enclosing test unless `condition` holds.
#[macro_export]
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(alloc::format!($($message)+));
        }
    };
}

/// Every module's tests.
static REGISTRY: &[&[KernelTest]] = &[
    crate::mm::frame::TESTS,
    crate::mm::heap::TESTS,
    crate::time::TESTS,
    crate::time::timer::TESTS,
    crate::acpi::madt::TESTS,
    crate::arch::x86::lapic::TESTS,
    crate::smp::TESTS,
    crate::smp::park::TESTS,
    crate::sched::tests::TESTS,
    crate::smp::call_tests::TESTS,
    crate::mm::address_space::TESTS,
    crate::mm::tlb_tests::TESTS,
    crate::symbols::TESTS,
    crate::panic::TESTS,
    crate::arch::x86::idt::TESTS,
    HARNESS_TESTS,
];

static SKIP_REASON: crate::sync::SpinLock<Option<&'static str>> = crate::sync::SpinLock::new(None);

/// Ends a test that cannot run on this machine (too few CPUs): it is reported
/// as skipped, not passed.
pub fn skip(reason: &'static str) -> TestResult {
    *SKIP_REASON.lock() = Some(reason);
    Ok(())
}

fn all_tests() -> impl Iterator<Item = &'static KernelTest> {
    REGISTRY.iter().flat_map(|tests| tests.iter())
}

/// Runs the tests named by `selection` and exits QEMU with the verdict.
pub fn run(selection: &str) -> ! {
    let selected: Vec<&KernelTest> = if selection == "all" {
        all_tests().filter(|t| t.in_all).collect()
    } else {
        let mut selected = Vec::new();
        for name in selection.split(',') {
            match all_tests().find(|t| t.name == name) {
                Some(test) => selected.push(test),
                None => unknown_test(name),
            }
        }
        selected
    };

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for test in selected {
        log::debug!("test: running {}", test.name);
        let result = (test.run)();
        let skip_reason = SKIP_REASON.lock().take();
        match result {
            Ok(()) if skip_reason.is_some() => {
                skipped += 1;
                crate::println!("test {} ... skipped ({})", test.name, skip_reason.unwrap());
            }
            Ok(()) => {
                passed += 1;
                crate::println!("test {} ... ok", test.name);
            }
            Err(reason) => {
                failed += 1;
                crate::println!("test {} ... FAILED ({reason})", test.name);
            }
        }
    }
    if skipped > 0 {
        crate::println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        crate::println!("{passed} passed, {failed} failed");
    }
    qemu_exit::exit(if failed == 0 { ExitCode::Success } else { ExitCode::Failure })
}

fn unknown_test(name: &str) -> ! {
    crate::println!("test: no test named '{name}'; available tests:");
    for test in all_tests() {
        crate::println!("    {}{}", test.name, if test.in_all { "" } else { "  (run by name only)" });
    }
    crate::println!("0 passed, 1 failed");
    qemu_exit::exit(ExitCode::Failure)
}

/// The harness's own check: this test must be reported as FAILED.
fn harness_reports_failure() -> TestResult {
    Err("this test fails on purpose, to show that failures are reported".into())
}

static HARNESS_TESTS: &[KernelTest] = &[KernelTest::crash("harness_reports_failure", harness_reports_failure)];

/// Recurses until the stack runs out: for the stack-overflow crash tests.
#[allow(unconditional_recursion)]
pub fn overflow_the_stack(depth: u64) -> u64 {
    let frame = [depth; 64];
    // black_box keeps the frame (and the recursion) from being optimised away.
    core::hint::black_box(&frame);
    overflow_the_stack(depth + 1) + frame[3]
}
