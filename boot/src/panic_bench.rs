//! `cargo run -- bench-panic`: how much host CPU a panicked kernel burns.
//!
//! Boots `--smp 4 -- then=panic` in three modes, one after the other in each
//! round: `panic=halt panic_blink=off` (sti; hlt and nothing else),
//! `panic=halt` with the keyboard LEDs blinking (the default: a one-shot
//! timer wakes the CPU twice a second), and `panic=spin` (Linux's busy loop).
//! Each boot waits for the end of the report, then measures QEMU's own CPU
//! time over the next N seconds. Two readings of /proc are given: utime+stime
//! from /proc/PID/stat (clock ticks, usually 10 ms), and the nanosecond run
//! time the scheduler keeps per thread in /proc/PID/task/*/schedstat, which
//! resolves the halted cases.

use std::time::{Duration, Instant};

use crate::{Accelerator, RunConfig, RunningQemu, SetupError, host_stats};

struct CpuTime {
    ticks: u64,
    /// Every thread's schedstat (see `host_stats`).
    threads: host_stats::Snapshot,
}

impl CpuTime {
    /// Nanoseconds run between `earlier` and `self`: threads present in both are
    /// compared, threads that appeared since count in full (QEMU starts and
    /// ends worker threads, so plain sums could even go down).
    fn nanoseconds_since(&self, earlier: &CpuTime) -> u64 {
        let interval = host_stats::interval(&earlier.threads, &self.threads);
        interval.threads.iter().map(|thread| thread.run_ns).sum()
    }
}

fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100)
}

fn cpu_time(pid: u32) -> Result<CpuTime, SetupError> {
    let path = format!("/proc/{pid}/stat");
    let stat =
        std::fs::read_to_string(&path).map_err(|e| SetupError(format!("reading {path}: {e}")))?;
    // /proc/PID/stat: the command name (field 2) may contain spaces; fields
    // after its closing parenthesis start at field 3. utime and stime are 14, 15.
    let after_name = &stat[stat.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(14) + field(15);
    let threads = host_stats::snapshot(pid).map_err(SetupError)?;
    Ok(CpuTime { ticks, threads })
}

/// How much CPU a process used over a stretch of wall time, as percentages of
/// one host core, read in the two ways described at the top of this file.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// From utime+stime: coarse, in clock ticks (usually 10 ms).
    pub from_ticks: f64,
    /// From the per-thread schedstat run times: nanoseconds, so precise
    /// enough for a process that is almost idle.
    pub from_schedstat: f64,
}

/// Watches process `pid` (QEMU) for `duration` and returns its CPU use over
/// that time. Also used by the host test that checks a halted panic is quiet.
pub fn cpu_use(pid: u32, duration: Duration) -> Result<CpuUse, SetupError> {
    let before = cpu_time(pid)?;
    let started = Instant::now();
    std::thread::sleep(duration);
    let after = cpu_time(pid)?;
    let wall = started.elapsed().as_secs_f64();
    Ok(CpuUse {
        from_ticks: after.ticks.saturating_sub(before.ticks) as f64
            / clock_ticks_per_second() as f64
            / wall
            * 100.0,
        from_schedstat: after.nanoseconds_since(&before) as f64 / 1e9 / wall * 100.0,
    })
}

/// A way of resting after the panic, as `bench-panic` compares them.
struct Mode {
    /// The name in the BENCH lines.
    name: &'static str,
    kernel_args: &'static [&'static str],
    /// The kernel's last line in this mode: the report is out, the rest begins.
    last_line: &'static str,
}

const MODES: [Mode; 3] = [
    Mode {
        name: "halt",
        kernel_args: &["panic=halt", "panic_blink=off"],
        last_line: "panic: halting (sti; hlt)",
    },
    Mode {
        name: "halt+blink",
        kernel_args: &["panic=halt", "panic_blink=on"],
        last_line: "panic: halting (sti; hlt)",
    },
    Mode { name: "spin", kernel_args: &["panic=spin"], last_line: "panic: spinning" },
];

/// One boot: CPU use of QEMU over `seconds` after the report.
fn measure(config: &RunConfig, mode: &Mode, seconds: u64) -> Result<CpuUse, SetupError> {
    let mut config = config.clone();
    config.kernel_args = std::iter::once("then=panic")
        .chain(mode.kernel_args.iter().copied())
        .map(String::from)
        .collect();
    let mut qemu = RunningQemu::start(&config, true)?;
    let waited = qemu.wait_for_output(mode.last_line, Duration::from_secs(300));
    // The blink says so before halting: a kernel without a keyboard
    // controller would not blink, and its figure would not be the blink's.
    let blinks = qemu.serial_text().contains("panic: blinking the keyboard LEDs");
    if !waited || blinks != (mode.name == "halt+blink") {
        let output = qemu.serial_text();
        qemu.kill();
        let expected = if waited { "the blink line as its mode says" } else { mode.last_line };
        return Err(SetupError(format!(
            "the kernel did not print {expected:?}; its output:\n{output}"
        )));
    }
    let measured = cpu_use(qemu.pid(), Duration::from_secs(seconds));
    qemu.kill();
    measured
}

/// The middle value (the mean of the two middle ones for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

pub fn run(accelerator: Accelerator, seconds: u64, rounds: u32) -> Result<(), SetupError> {
    let config = RunConfig { cpus: 4, accelerator, ..RunConfig::default() };
    let name = accelerator.name();
    // schedstat percentages, per mode, one per round.
    let mut precise: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
    for round in 1..=rounds {
        for (mode, results) in MODES.iter().zip(&mut precise) {
            eprintln!(
                "bench-panic: round {round}/{rounds}: booting --smp 4 -- then=panic {}, \
                 then measuring QEMU for {seconds} s",
                mode.kernel_args.join(" ")
            );
            let used = measure(&config, mode, seconds)?;
            println!(
                "BENCH panic mode={} round={round} cpus=4 seconds={seconds} \
                 qemu_cpu_percent_of_one_core={:.2} (utime+stime) {:.3} (schedstat) accel={name}",
                mode.name, used.from_ticks, used.from_schedstat
            );
            results.push(used.from_schedstat);
        }
    }
    let medians: Vec<f64> = precise.iter().map(|results| median(results)).collect();
    for (mode, median) in MODES.iter().zip(&medians) {
        println!(
            "BENCH panic mode={} median of {rounds} rounds qemu_cpu_percent_of_one_core={median:.3} \
             (schedstat) accel={name}",
            mode.name
        );
    }
    let spin = medians[2];
    println!(
        "BENCH panic ratio spin/halt={:.0} spin/halt+blink={:.0} (medians, schedstat) accel={name}",
        spin / medians[0].max(1e-9),
        spin / medians[1].max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[0.25]), 0.25);
    }

    #[test]
    fn every_mode_rests_after_the_panic_in_its_own_way() {
        let names: Vec<&str> = MODES.iter().map(|m| m.name).collect();
        assert_eq!(names, ["halt", "halt+blink", "spin"]);
        assert!(MODES[0].kernel_args.contains(&"panic_blink=off"));
        assert!(MODES[1].kernel_args.contains(&"panic_blink=on"));
    }
}
