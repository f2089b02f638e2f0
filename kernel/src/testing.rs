//! The in-kernel test registry and runner.
//!
//! Tests live next to the code they test: each module lists its tests with
//! [`kernel_tests!`], which places them in the `kernel_tests` linker section,
//! and the runner walks that section. No module is public for the runner's
//! sake, and no list here names every module. One kernel image carries them
//! all; `test=NAME` runs one, `test=a,b` several, `test=all` every test that
//! is not a crash test. Each prints `test NAME ... ok` or
//! `test NAME ... FAILED (reason)`, then a closing line `N passed, N failed`,
//! and the kernel exits QEMU with success only if all passed.
//!
//! Tests run in the order of their module paths, and within a module in the
//! order of its list: the linker concatenates the section's pieces in
//! whatever order its input arrives in, so the runner sorts them.
//!
//! Crash tests (`KernelTest::crash`) end in a panic on purpose; the host tests
//! boot them one at a time and read the panic report.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch::x86::qemu_exit::{self, ExitCode};

mod registry;

pub use registry::TestGroup;

pub type TestResult = Result<(), String>;

pub struct KernelTest {
    pub name: &'static str,
    pub run: fn() -> TestResult,
    /// Whether `test=all` includes it (crash tests and the harness's own
    /// failing test are run only by name).
    pub in_all: bool,
    /// How long it may run before the harness calls it hung; 0 for crash
    /// tests, which run on the main thread itself so that their reports
    /// show the same context as a real crash there.
    pub limit_s: u64,
}

/// Far above what any test takes on a loaded 2-core host under TCG, far
/// below the runner's 240 s: a hung test is named, not just timed out.
const LIMIT_S: u64 = 120;

impl KernelTest {
    pub const fn new(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: true, limit_s: LIMIT_S }
    }

    /// A test that is run only by name: it crashes, or fails, on purpose.
    pub const fn crash(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: false, limit_s: 0 }
    }

    /// A test that takes minutes: run only by name (the host tests do).
    pub const fn long(name: &'static str, run: fn() -> TestResult) -> KernelTest {
        KernelTest { name, run, in_all: false, limit_s: 1500 }
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

static SKIP_REASON: crate::sync::SpinLock<Option<&'static str>> = crate::sync::SpinLock::new(None);

/// Ends a test that cannot run on this machine (too few CPUs): it is reported
/// as skipped, not passed.
pub fn skip(reason: &'static str) -> TestResult {
    *SKIP_REASON.lock() = Some(reason);
    Ok(())
}

fn all_tests() -> impl Iterator<Item = &'static KernelTest> {
    registry::groups().flat_map(|group| group.tests.iter())
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
        let started = crate::time::now_ns();
        let Some(result) = run_with_limit(test) else {
            failed += 1;
            crate::println!(
                "test {} ... FAILED (still running after {} s: hung?)",
                test.name,
                test.limit_s
            );
            print_where_each_cpu_is();
            crate::println!("{passed} passed, {failed} failed (the run stopped at the hung test)");
            end_run(ExitCode::Failure);
        };
        let took = Seconds(crate::time::now_ns() - started);
        let skip_reason = SKIP_REASON.lock().take();
        match result {
            Ok(()) if skip_reason.is_some() => {
                skipped += 1;
                crate::println!("test {} ... skipped ({})", test.name, skip_reason.unwrap());
            }
            Ok(()) => {
                passed += 1;
                crate::println!("test {} ... ok ({took})", test.name);
            }
            Err(reason) => {
                failed += 1;
                crate::println!("test {} ... FAILED ({reason}) ({took})", test.name);
            }
        }
    }
    if skipped > 0 {
        crate::println!("{passed} passed, {failed} failed, {skipped} skipped");
    } else {
        crate::println!("{passed} passed, {failed} failed");
    }
    end_run(if failed == 0 { ExitCode::Success } else { ExitCode::Failure })
}

/// Runs the test on its own thread on the boot CPU (where tests always ran),
/// waiting at most its limit: None if it is still running then. A hung test
/// cannot be killed, but it is named and the run ends, instead of hanging
/// until the runner's timeout.
fn run_with_limit(test: &'static KernelTest) -> Option<TestResult> {
    use alloc::sync::Arc;
    if test.limit_s == 0 {
        return Some((test.run)());
    }
    let outcome = Arc::new(crate::sync::SpinLock::new(None));
    let slot = outcome.clone();
    let thread = crate::sched::Builder::new(test.name)
        .pin(0)
        .spawn(move || *slot.lock() = Some((test.run)()));
    let deadline = crate::time::now_ns() + test.limit_s * 1_000_000_000;
    if !thread.join_until(deadline) {
        return None;
    }
    outcome.lock().take()
}

/// For a hung test: where every other CPU is (sampled by NMI).
fn print_where_each_cpu_is() {
    let me = crate::percpu::cpu_number();
    for cpu in crate::smp::online_except(me) {
        crate::println!("test: cpu{}: {}", cpu.number, crate::smp::stuck_cpu::locate(cpu.number));
    }
}

/// A duration in seconds with milliseconds, e.g. `1.234 s`.
struct Seconds(u64);

impl core::fmt::Display for Seconds {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        write!(f, "{}.{:03} s", self.0 / 1_000_000_000, self.0 / 1_000_000 % 1000)
    }
}

fn unknown_test(name: &str) -> ! {
    crate::println!("test: no test named '{name}'; available tests:");
    for test in all_tests() {
        crate::println!(
            "    {}{}",
            test.name,
            if test.in_all { "" } else { "  (run by name only)" }
        );
    }
    crate::println!("0 passed, 1 failed");
    end_run(ExitCode::Failure)
}

/// The harness's own check: this test must be reported as FAILED.
fn harness_reports_failure() -> TestResult {
    Err("this test fails on purpose, to show that failures are reported".into())
}

crate::kernel_tests![KernelTest::crash("harness_reports_failure", harness_reports_failure)];

/// Recurses until the stack runs out: for the stack-overflow crash tests.
#[allow(unconditional_recursion)]
pub fn overflow_the_stack(depth: u64) -> u64 {
    let frame = [depth; 64];
    // black_box keeps the frame (and the recursion) from being optimised away.
    core::hint::black_box(&frame);
    overflow_the_stack(depth + 1) + frame[3]
}

/// A simple xorshift generator, seeded per thread: the torture tests' random
/// choices, reproducible from the seed.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Ends the run with `code`: the trace's last dump first (it is lost once
/// QEMU exits), then isa-debug-exit.
pub fn end_run(code: ExitCode) -> ! {
    crate::trace::dump_at_end();
    qemu_exit::exit(code)
}
