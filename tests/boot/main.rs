//! Host integration tests: each boots the one kernel image in QEMU (TCG) with
//! different kernel arguments, CPU counts and firmware, and checks the exit
//! status and the serial output.

// One file per subsystem; this file is the harness they share.
mod basics;
mod faults;
mod ipi_and_tlb;
mod panic_path;
mod sched;
mod smp;
#[path = "../source_tree.rs"]
mod source_tree;
mod trace;
mod user;

use std::path::PathBuf;
use std::time::Duration;

use boot::{Firmware, Outcome, RunConfig};

/// Generous: under TCG with both host cores busy a boot can take a while.
const TIMEOUT: Duration = Duration::from_secs(240);

/// At most this many lines of cause are shown before the full serial output.
const SUMMARY_LINES: usize = 40;

struct Run {
    outcome: Outcome,
    serial: String,
}

impl Run {
    fn expect(&self, outcome: Outcome) -> &Self {
        assert_eq!(self.outcome, outcome, "unexpected outcome; {}", self.explain());
        self
    }

    fn expect_line(&self, text: &str) -> &Self {
        assert!(
            self.serial.lines().any(|line| line.contains(text)),
            "no line contains {text:?}; {}",
            self.explain()
        );
        self
    }

    /// Checks that `text` occurs exactly `times` times in the serial output.
    fn expect_count(&self, text: &str, times: usize) -> &Self {
        assert_eq!(
            self.count(text),
            times,
            "{text:?} does not occur {times} times; {}",
            self.explain()
        );
        self
    }

    fn count(&self, text: &str) -> usize {
        self.serial.matches(text).count()
    }

    /// What every failed assertion prints: first the lines that name a cause
    /// (see [`cause_lines`]), then the whole serial output. A boot prints
    /// hundreds of lines, and the one that matters would otherwise be found
    /// only by reading all of them.
    fn explain(&self) -> String {
        let causes = cause_lines(&self.serial);
        let mut text = String::new();
        if causes.is_empty() {
            text.push_str("no failed kernel test and no panic in the serial output.\n");
        } else {
            text.push_str("failed kernel tests and panic lines:\n");
            for line in causes.iter().take(SUMMARY_LINES) {
                text.push_str(&format!("    {line}\n"));
            }
            if causes.len() > SUMMARY_LINES {
                text.push_str(&format!("    ... and {} more\n", causes.len() - SUMMARY_LINES));
            }
        }
        text.push_str(&format!("\nserial output:\n{}", self.serial));
        text
    }
}

/// The lines of a run's serial output that say why it failed: kernel tests
/// that failed (`test NAME ... FAILED (reason)`), the panic report, which
/// the kernel prints without timestamps, each line starting with `panic: `,
/// a user program's own `FAILED: ` lines and the kernel's words on it.
fn cause_lines(serial: &str) -> Vec<&str> {
    serial
        .lines()
        .filter(|line| {
            line.contains(" ... FAILED")
                || line.starts_with("---- kernel panic")
                || line.starts_with("panic: ")
                || line.contains("FAILED: ")
                || line.contains(" user: ")
                    && (line.contains("killed") || line.contains("no program"))
        })
        .collect()
}

#[test]
fn a_failure_names_its_cause_before_the_serial_output() {
    let serial = "[    0.1] boot: done in 100 us\n\
                  test heap_box_and_vec ... ok\n\
                  test clock_is_monotonic ... FAILED (went back 3 ns)\n\
                  \n---- kernel panic on cpu1 ----\n\
                  panic: out of frames\n";
    let run = Run { outcome: Outcome::KernelFailure, serial: serial.into() };
    let explained = run.explain();
    let summary = "failed kernel tests and panic lines:\n    test clock_is_monotonic ... FAILED (went back 3 ns)\n    \
                   ---- kernel panic on cpu1 ----\n    panic: out of frames\n";
    assert!(explained.starts_with(summary), "{explained}");
    assert!(explained.ends_with(&format!("serial output:\n{serial}")), "{explained}");
}

fn boot_with(config: RunConfig) -> Run {
    let config = RunConfig { timeout: Some(config.timeout.unwrap_or(TIMEOUT)), ..config };
    let (outcome, serial) =
        boot::run(&config, true).unwrap_or_else(|error| panic!("cannot boot: {error}"));
    Run { outcome, serial }
}

/// A panic that ended the run itself (`panic=exit`, the default with `test=`).
const PANIC_EXITED: Outcome = Outcome::Panicked { ended_by_runner: false };
/// A panic after which the guest kept running (halted, or spinning) until
/// the test stopped QEMU.
const PANIC_LEFT_RUNNING: Outcome = Outcome::Panicked { ended_by_runner: true };

/// Boots, waits until the serial output contains `text`, lets the kernel run
/// two more seconds, then stops QEMU. The outcome is `TimedOut` if the kernel
/// was still running (as a halted kernel should be), `PANIC_LEFT_RUNNING` if
/// it was and had panicked.
fn boot_until(config: RunConfig, text: &str) -> Run {
    let mut qemu = boot::RunningQemu::start(&config, true)
        .unwrap_or_else(|error| panic!("cannot boot: {error}"));
    let seen = qemu.wait_for_output(text, TIMEOUT);
    std::thread::sleep(Duration::from_secs(2));
    let (outcome, serial) = qemu.finish(Some(Duration::ZERO)).unwrap();
    let run = Run { outcome, serial };
    assert!(seen, "the kernel never printed {text:?}; {}", run.explain());
    run
}

fn boot(firmware: Firmware, cpus: u32, kernel_args: &[&str]) -> Run {
    boot_with(RunConfig {
        firmware,
        cpus,
        kernel_args: kernel_args.iter().map(|a| a.to_string()).collect(),
        ..RunConfig::default()
    })
}

/// Checks a `test=all` run: every test ok, and a closing line with 0 failed.
fn expect_all_kernel_tests_pass(run: &Run) {
    run.expect(Outcome::KernelSuccess).expect_count(" ... FAILED", 0);
    let closing = run
        .serial
        .lines()
        .find(|l| {
            l.ends_with(" passed, 0 failed")
                || (l.contains(" passed, 0 failed, ") && l.ends_with(" skipped"))
        })
        .unwrap_or_else(|| panic!("no closing line; {}", run.explain()));
    let passed: usize = closing.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 10, "only {passed} kernel tests ran; {}", run.explain());
    run.expect_count(" ... ok", passed);
    // Only tests that need more CPUs than the run has may be skipped.
    for line in run.serial.lines().filter(|l| l.contains(" ... skipped")) {
        assert!(line.contains("(needs "), "unexpected skip: {line}; {}", run.explain());
    }
}
