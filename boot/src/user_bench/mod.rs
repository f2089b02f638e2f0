//! `cargo run -- bench-user`: the same user program on this kernel and on
//! Debian's Linux 6.12, in the same virtual machine.
//!
//! `bench` is a static musl C program that prints `BENCH user METRIC VALUE
//! UNIT` lines and ends with `bench: done`. It sits at the root of the
//! ramdisk, a cpio newc archive whose path `boot/build.rs` exports as
//! `RAMDISK`. This kernel gets it from the bootloader and runs it for the
//! kernel arguments `run=bench then=exit`; Linux gets the same file with
//! QEMU's `-initrd` and runs it as init (`rdinit=/bench`, see
//! [`linux::append`]). Both boot with the same QEMU machine: CPUs, memory,
//! accelerator and CPU model come from the same `RunConfig`, only the kernel
//! differs (`RunConfig::linux`).
//!
//! Each round boots each kernel once, this kernel first. For each boot the
//! runner prints the program's lines and the host's view of QEMU's threads
//! from QEMU's start to `bench: done` (`host_stats`); at the end, a table of
//! medians and ratios ([`results::table`]). docs/runner.md explains the
//! columns.

mod linux;
mod results;

use std::path::Path;
use std::time::{Duration, Instant};

pub use linux::{
    LinuxImage, append as linux_append, cache_dir, fetch as fetch_linux, is_package_name,
    newest_package, short_version,
};
pub use results::{Figure, Run, format_ratio, format_value, parse_bench_lines, table};

use crate::host_stats::{self, Interval};
use crate::{Accelerator, LinuxBoot, Outcome, RunConfig, RunningQemu, SetupError};

/// The ramdisk both kernels get, with `bench` at its root, as `boot/build.rs`
/// exports it. Linux is booted with this file; this kernel gets its copy from
/// the bootloader.
pub const RAMDISK: &str = env!("RAMDISK");
/// The program's last line.
pub const DONE: &str = "bench: done";
/// How long QEMU may take to end after `bench: done` (both kernels end at
/// once: `then=exit`, Linux's reboot) before the runner ends it.
const GRACE: Duration = Duration::from_secs(30);
/// Serial lines shown for a boot that failed.
const TAIL_LINES: usize = 15;

/// Which kernels to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    Both,
    OursOnly,
    LinuxOnly,
}

/// What `bench-user` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub cpus: u32,
    /// QEMU's -m value, the same for both kernels.
    pub memory: String,
    pub accelerator: Accelerator,
    pub rounds: u32,
    /// `bench`'s arguments: one word, commas between arguments.
    pub part: Option<String>,
    pub kernels: Kernels,
    /// A Debian package name; None: the newest plain amd64 one apt knows.
    pub linux_package: Option<String>,
    /// How long one boot may take to reach `bench: done`.
    pub timeout: Duration,
    /// More arguments for this kernel (`irqoff_us=`, `ipi_wait=`): what
    /// Linux cannot be given from user space, a slow CPU.
    pub kernel_args: Vec<String>,
}

/// This kernel's arguments: run `bench` from the ramdisk, then exit, and
/// whatever else was asked for.
pub fn our_kernel_args(part: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut args = vec!["run=bench".to_string(), "then=exit".to_string()];
    args.extend(part.map(|part| format!("run_args={part}")));
    args.extend(extra.iter().cloned());
    args
}

/// One of the two kernels being compared.
struct Kernel {
    /// In the table's header: `this kernel`, `Linux 6.12.117`.
    title: String,
    /// In messages: `our kernel`, `Linux 6.12.117`.
    name: String,
    /// For the `HOST` lines' label: `ours`, `linux`.
    label: &'static str,
    config: RunConfig,
    /// What it was booted with, for the header.
    how: String,
    runs: Vec<Run>,
    failures: Vec<String>,
    /// Not booted again: it failed twice, or hung, without ever succeeding.
    given_up: bool,
}

impl Kernel {
    fn ours(base: &RunConfig, part: Option<&str>, extra: &[String]) -> Kernel {
        let config = RunConfig { kernel_args: our_kernel_args(part, extra), ..base.clone() };
        let how = format!("kernel arguments: {}", config.kernel_args.join(" "));
        Kernel::new("this kernel", "our kernel", "ours", config, how)
    }

    fn linux(base: &RunConfig, image: &LinuxImage, ramdisk: &Path, part: Option<&str>) -> Kernel {
        let linux = LinuxBoot {
            kernel: image.vmlinuz.clone(),
            initrd: ramdisk.into(),
            append: linux::append(part),
        };
        let how = format!(
            "{}: -kernel {} -initrd {} -append \"{}\"",
            image.package,
            image.vmlinuz.display(),
            linux.initrd.display(),
            linux.append
        );
        let config = RunConfig { linux: Some(linux), ..base.clone() };
        let title = format!("Linux {}", short_version(&image.package));
        Kernel::new(&title, &title, "linux", config, how)
    }

    fn new(title: &str, name: &str, label: &'static str, config: RunConfig, how: String) -> Kernel {
        Kernel {
            title: title.into(),
            name: name.into(),
            label,
            config,
            how,
            runs: Vec::new(),
            failures: Vec::new(),
            given_up: false,
        }
    }

    fn is_ours(&self) -> bool {
        self.config.linux.is_none()
    }
}

/// What one boot gave.
struct Boot {
    /// The figures, or why there are none.
    run: Result<Run, String>,
    /// The program's `BENCH user` lines as they came.
    bench_lines: Vec<String>,
    notes: Vec<String>,
    /// Times from QEMU's start: the first serial line, the first BENCH
    /// line, `bench: done`, and QEMU's end.
    first_output: Option<Duration>,
    first_bench: Option<Duration>,
    done: Option<Duration>,
    ended: Duration,
    outcome: Outcome,
    /// QEMU stopped the guest, saying this (see `stopped_guest`).
    qemu_error: Option<String>,
    host: Option<Result<Interval, String>>,
    serial: String,
}

/// Milliseconds, for the table.
fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round()
}

/// The runner's figures for one boot: times from QEMU's start, and its vCPU
/// threads' run and wait times summed from QEMU's start to `bench: done`.
fn host_figures(boot: &Boot) -> Vec<Figure> {
    let mut figures = Vec::new();
    let times = [
        ("start_to_first_output", boot.first_output),
        ("start_to_first_bench", boot.first_bench),
        ("start_to_done", boot.done),
    ];
    for (metric, at) in times {
        figures.extend(at.map(|at| Figure::new(metric, ms(at), "ms")));
    }
    if let Some(Ok(interval)) = &boot.host {
        let vcpus = || interval.threads.iter().filter(|t| host_stats::is_vcpu_thread(&t.name));
        let run: u64 = vcpus().map(|t| t.run_ns).sum();
        let wait: u64 = vcpus().map(|t| t.wait_ns).sum();
        let round = |ns: u64| (ns as f64 / 1e6).round();
        figures.push(Figure::new("vcpu_run_total", round(run), "ms"));
        figures.push(Figure::new("vcpu_wait_total", round(wait), "ms"));
        if run + wait > 0 {
            let share = (wait as f64 * 1000.0 / (run + wait) as f64).round() / 10.0;
            figures.push(Figure::new("vcpu_wait_share", share, "%"));
        }
    }
    figures
}

/// A kernel log line without its `[    0.062734] ` time stamp.
fn unstamped(line: &str) -> &str {
    let line = line.trim();
    match line.strip_prefix('[').and_then(|rest| rest.split_once("] ")) {
        Some((_, rest)) => rest.trim(),
        None => line,
    }
}

/// The kernel's own word on why `run=bench` did nothing: its last line that
/// mentions `run=` or `bench` and sounds like a complaint (`warning: ignoring
/// kernel argument 'run=bench'`), else its last line that mentions them;
/// without the time stamp.
fn complaint(serial: &str) -> Option<&str> {
    let mentions: Vec<&str> = serial
        .lines()
        .map(unstamped)
        .filter(|line| *line != DONE && !line.starts_with("BENCH"))
        .filter(|line| {
            line.contains("run=") || line.contains("run_args=") || line.contains("bench")
        })
        .collect();
    let complains = |line: &&str| {
        let line = line.to_lowercase();
        ["warn", "error", "fail", "ignor", "not found", "cannot", "panic"]
            .iter()
            .any(|word| line.contains(word))
    };
    mentions.iter().copied().rfind(complains).or(mentions.last().copied())
}

/// How QEMU ended, in words. For Linux a reset is the expected end when init
/// has exited; after any other panic, the panic is the news.
fn ending(kernel: &Kernel, outcome: &Outcome, serial: &str) -> String {
    let panic = serial.lines().find(|line| line.contains("Kernel panic - not syncing"));
    match (outcome, panic) {
        (Outcome::GuestReset, Some(line)) if !kernel.is_ours() => {
            if line.contains("Attempted to kill init") {
                "Linux rebooted once init had exited (panic=-1), and QEMU exited (-no-reboot)"
                    .into()
            } else {
                format!("Linux panicked, rebooted (panic=-1), and QEMU exited: {}", unstamped(line))
            }
        }
        (outcome, _) => outcome.describe(),
    }
}

/// Why a boot that did not end with `bench: done` and figures failed (to
/// follow the kernel's name).
fn failure(kernel: &Kernel, boot: &Boot, timeout: Duration) -> String {
    let ending = if let Some(error) = &boot.qemu_error {
        format!("QEMU stopped the guest after {:.1} s: {error}", boot.ended.as_secs_f64())
    } else if boot.outcome == Outcome::TimedOut {
        format!("no `{DONE}` within {} s, QEMU was ended", timeout.as_secs_f64())
    } else if boot.done.is_some() {
        format!("`{DONE}` came, then {}", ending(kernel, &boot.outcome, &boot.serial))
    } else {
        format!(
            "QEMU ended after {:.1} s: {}",
            boot.ended.as_secs_f64(),
            ending(kernel, &boot.outcome, &boot.serial)
        )
    };
    let cause = match complaint(&boot.serial) {
        Some(line) if kernel.is_ours() => format!("run=bench failed: {line}; {ending}"),
        _ if kernel.is_ours() => format!("run=bench failed: {ending}"),
        _ => ending,
    };
    if boot.bench_lines.is_empty() {
        format!("no BENCH lines ({cause})")
    } else {
        format!("no `{DONE}`, so this run is not counted ({cause})")
    }
}

/// The `[   11.132077]` time stamp of Linux's panic when init exited: how
/// long the guest ran by its own clock.
fn linux_uptime_at_exit(serial: &str) -> Option<f64> {
    let line = serial.lines().find(|line| line.contains("Attempted to kill init"))?;
    let stamp = line.trim_start().strip_prefix('[')?.split(']').next()?;
    stamp.trim().parse().ok()
}

/// Whether Linux's panic line (init has exited) came before `bench: done`,
/// or without it: the program's last lines were still in the terminal's
/// buffer, sent by the serial port's interrupt, while the panic writes to
/// the console directly. Lines still buffered at the reboot are lost; a
/// program that calls `tcdrain(1)` before exiting avoids this.
fn panic_overtook_output(serial: &str) -> bool {
    let lines: Vec<&str> = serial.lines().collect();
    let panic = lines.iter().position(|line| line.contains("Attempted to kill init"));
    let done = lines.iter().position(|line| line.trim() == DONE);
    match (panic, done) {
        (Some(panic), Some(done)) => panic < done,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Linux's serial lines up to `bench: done` other than the BENCH lines: the
/// program's other words and whatever the kernel printed despite `quiet`
/// (errors and worse: an RCU stall warning on a starved host, say).
fn other_lines(serial: &str) -> Vec<&str> {
    serial
        .lines()
        .map(str::trim_end)
        .take_while(|line| line.trim() != DONE)
        .filter(|line| !line.trim().is_empty() && !line.trim_start().starts_with("BENCH user"))
        .collect()
}

/// Boots `kernel` once and waits for `bench: done` (at most `timeout`).
fn boot_once(kernel: &Kernel, timeout: Duration) -> Result<Boot, SetupError> {
    let started = Instant::now();
    let mut qemu = RunningQemu::start(&kernel.config, true)?;
    let (mut first_output, mut first_bench, mut done) = (None, None, None);
    let mut qemu_error = None;
    loop {
        let text = qemu.serial_text();
        let now = Some(started.elapsed());
        let mark = |at: &mut Option<Duration>, seen: bool| {
            if at.is_none() && seen {
                *at = now;
            }
        };
        mark(&mut first_output, text.contains('\n'));
        mark(&mut first_bench, text.contains("BENCH user"));
        mark(&mut done, text.contains(DONE));
        if done.is_some() || qemu.has_ended() || started.elapsed() >= timeout {
            break;
        }
        // QEMU stops a guest KVM cannot run, and waits: nothing more will come.
        qemu_error = stopped_guest(&qemu.stderr_text());
        if qemu_error.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let host = qemu.host_interval();
    // finish() counts from QEMU's start, a moment after `started`.
    let limit = done.map_or(Duration::ZERO, |at| at + GRACE);
    let (outcome, serial) = qemu.finish(Some(limit))?;
    let ended = started.elapsed();
    let (figures, notes) = parse_bench_lines(&serial);
    let bench_lines = serial
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("BENCH user"))
        .map(String::from)
        .collect();
    let mut boot = Boot {
        run: Err(String::new()),
        bench_lines,
        notes,
        first_output,
        first_bench,
        done,
        ended,
        outcome,
        qemu_error,
        host,
        serial,
    };
    boot.run = if done.is_some() && !figures.is_empty() {
        Ok(Run { bench: figures, host: host_figures(&boot) })
    } else {
        Err(failure(kernel, &boot, timeout))
    };
    Ok(boot)
}

/// QEMU's message when it stopped a guest that KVM could not run (and then
/// waits forever): e.g. `KVM internal error. Suberror: 1`, an instruction
/// KVM had to emulate and could not, which nested KVM runs into.
fn stopped_guest(stderr: &str) -> Option<String> {
    let line = stderr.lines().find(|line| line.contains("KVM internal error"))?;
    Some(line.trim().to_string())
}

fn seconds(at: Option<Duration>) -> String {
    at.map_or_else(|| "-".into(), |at| format!("{:.2} s", at.as_secs_f64()))
}

/// The raw figures of one boot, as they came, and the host's view of it.
fn print_boot(kernel: &Kernel, round: u32, rounds: u32, boot: &Boot, log: Option<&Path>) {
    println!(
        "== round {round}/{rounds}, {}: first output {}, first BENCH line {}, `{DONE}` {}, \
         QEMU ended {} ({})",
        kernel.title,
        seconds(boot.first_output),
        seconds(boot.first_bench),
        seconds(boot.done),
        seconds(Some(boot.ended)),
        match &boot.qemu_error {
            Some(error) => format!("QEMU stopped the guest: {error}; the runner ended QEMU"),
            None => ending(kernel, &boot.outcome, &boot.serial),
        }
    );
    if !kernel.is_ours()
        && let Some(uptime) = linux_uptime_at_exit(&boot.serial)
    {
        println!("Linux's own clock when init exited: {uptime:.2} s");
    }
    if !kernel.is_ours() && panic_overtook_output(&boot.serial) {
        println!(
            "note: Linux's panic (init exited) came before `{DONE}`: the program's last lines \
             were still being sent by the serial port's interrupt, and lines still buffered at the \
             reboot are lost; `bench` should call tcdrain(1) before it exits"
        );
    }
    if !kernel.is_ours() && boot.done.is_some() {
        let others = other_lines(&boot.serial);
        for line in &others[..others.len().min(TAIL_LINES)] {
            println!("  | {line}");
        }
        if others.len() > TAIL_LINES {
            println!("  | ... {} more lines before `{DONE}`", others.len() - TAIL_LINES);
        }
    }
    for line in &boot.bench_lines {
        println!("{line}");
    }
    for note in &boot.notes {
        println!("note: {note}");
    }
    let label = format!("{}.round{round}", kernel.label);
    match &boot.host {
        Some(Ok(interval)) => {
            host_stats::report(&label, interval).iter().for_each(|l| println!("{l}"))
        }
        Some(Err(why)) => println!("HOST {label} unavailable: {why}"),
        None => {
            println!("HOST {label} unavailable: the runner did not see `{DONE}` while QEMU ran")
        }
    }
    if let Err(why) = &boot.run {
        println!("{}: {why}", kernel.name);
        let lines: Vec<&str> = boot.serial.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            println!("(no serial output)");
            return;
        }
        match log {
            Some(log) => {
                println!("the last lines of its serial output (all of it: {}):", log.display())
            }
            None => println!("the last lines of its serial output:"),
        }
        for line in &lines[lines.len().saturating_sub(TAIL_LINES)..] {
            println!("  | {}", line.trim_end());
        }
    }
}

/// The host's cores: what this process may use, and what /proc/cpuinfo lists.
fn host_cores() -> String {
    let usable = std::thread::available_parallelism().map(|n| n.get()).ok();
    let listed = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .map(|text| text.lines().filter(|l| l.starts_with("processor")).count());
    match (usable, listed) {
        (Some(usable), Some(listed)) if usable == listed => format!("{usable} cores"),
        (Some(usable), Some(listed)) => {
            format!("{usable} cores usable by this process ({listed} in /proc/cpuinfo)")
        }
        (Some(usable), None) => format!("{usable} cores"),
        (None, _) => "an unknown number of cores".into(),
    }
}

/// `-accel ... -cpu ...` as QEMU gets them, read from the command itself.
fn machine_flags(config: &RunConfig) -> Result<String, SetupError> {
    let command = crate::qemu_command(config)?;
    let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    Ok(format!("-accel {} -cpu {}", value("-accel"), value("-cpu")))
}

/// Runs the comparison and prints it. Ok(false) when some boot gave no
/// figures (the rest is printed all the same); Err when nothing could be
/// booted (QEMU, the Linux package or the ramdisk missing).
pub fn run(options: &Options) -> Result<bool, SetupError> {
    let base = RunConfig {
        cpus: options.cpus,
        memory: options.memory.clone(),
        accelerator: options.accelerator,
        host_interval_until: Some(DONE.into()),
        ..RunConfig::default()
    };
    let part = options.part.as_deref();
    let machine = machine_flags(&base)?;
    let mut kernels = Vec::new();
    if options.kernels != Kernels::LinuxOnly {
        kernels.push(Kernel::ours(&base, part, &options.kernel_args));
    }
    let mut linux_title = "Linux".to_string();
    if options.kernels != Kernels::OursOnly {
        let ramdisk = Path::new(RAMDISK);
        if !ramdisk.is_file() {
            return Err(SetupError(format!(
                "the ramdisk {} (made by boot/build.rs) is missing: build the runner again",
                ramdisk.display()
            )));
        }
        let image = linux::fetch(options.linux_package.as_deref())?;
        let kernel = Kernel::linux(&base, &image, ramdisk, part);
        linux_title = kernel.title.clone();
        kernels.push(kernel);
    }
    // Every boot's whole serial output is kept, for a look at what the table sums up.
    let logs = cache_dir().parent().map_or_else(|| "target".into(), |t| t.join("bench-user"));
    std::fs::create_dir_all(&logs)
        .map_err(|e| SetupError(format!("cannot create {}: {e}", logs.display())))?;
    for old in std::fs::read_dir(&logs).into_iter().flatten().flatten() {
        if old.file_name().to_string_lossy().ends_with(".log") {
            let _ = std::fs::remove_file(old.path()); // an earlier run's
        }
    }
    let cores = host_cores();
    println!(
        "bench-user: {} vCPUs, {} memory, {machine} ({}), host: {cores}",
        options.cpus,
        options.memory,
        options.accelerator.name()
    );
    for kernel in &kernels {
        println!("bench-user: {}: {}", kernel.title, kernel.how);
    }
    let host_cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    if options.cpus as usize > host_cores && options.accelerator == Accelerator::Tcg {
        println!(
            "note: {} vCPUs on {host_cores} host cores: while more vCPUs are busy than there are \
             host cores, some vCPU thread waits for a core (vcpu_wait below), and an IPI to a \
             busy vCPU waits until the host runs its thread",
            options.cpus
        );
    }
    for round in 1..=options.rounds {
        for kernel in kernels.iter_mut().filter(|k| !k.given_up) {
            eprintln!(
                "bench-user: round {round}/{}: booting {} ({} s at most)",
                options.rounds,
                kernel.title,
                options.timeout.as_secs_f64()
            );
            let boot = boot_once(kernel, options.timeout)?;
            let log = logs.join(format!("{}-round{round}.log", kernel.label));
            let log = std::fs::write(&log, &boot.serial).is_ok().then_some(log);
            print_boot(kernel, round, options.rounds, &boot, log.as_deref());
            let timed_out = boot.outcome == Outcome::TimedOut;
            match boot.run {
                Ok(run) => kernel.runs.push(run),
                Err(why) => kernel.failures.push(why),
            }
            // A kernel that cannot run the program at all is not tried three
            // times; nor is a hang, which costs the whole timeout each time.
            let hopeless = kernel.failures.len() >= 2 || timed_out;
            if kernel.runs.is_empty() && hopeless && round < options.rounds {
                let failed = kernel.failures.len();
                println!("{}: not booted again after {failed} failed boot(s)", kernel.name);
                kernel.given_up = true;
            }
        }
    }
    println!();
    let column =
        |ours: bool| kernels.iter().find(|k| k.is_ours() == ours).map(|k| k.runs.as_slice());
    for line in table(["this kernel", &linux_title], [column(true), column(false)]) {
        println!("{line}");
    }
    for kernel in &kernels {
        if let Some(first) = kernel.failures.first() {
            let failed = kernel.failures.len();
            let (name, booted) = (&kernel.name, kernel.runs.len() + failed);
            println!("{name}: {failed} of {booted} boots failed, the first with: {first}");
        }
    }
    Ok(kernels.iter().all(|k| k.failures.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_kernel_runs_bench_and_exits() {
        assert_eq!(our_kernel_args(None, &[]), ["run=bench", "then=exit"]);
        assert_eq!(
            our_kernel_args(Some("pipe,4096"), &["ipi_wait=spin".into()]),
            ["run=bench", "then=exit", "run_args=pipe,4096", "ipi_wait=spin"]
        );
    }

    #[test]
    fn both_kernels_get_the_same_machine() {
        let base =
            RunConfig { cpus: 2, host_interval_until: Some(DONE.into()), ..RunConfig::default() };
        let image = LinuxImage {
            package: "linux-image-6.12.117+deb12-amd64-unsigned".into(),
            vmlinuz: "/cache/vmlinuz-6.12.117+deb12-amd64".into(),
        };
        let ours = Kernel::ours(&base, Some("getpid"), &[]);
        let linux = Kernel::linux(&base, &image, Path::new("/r/ramdisk.cpio"), Some("getpid"));
        assert_eq!(linux.title, "Linux 6.12.117");
        assert_eq!((ours.title.as_str(), ours.name.as_str()), ("this kernel", "our kernel"));
        let boot = linux.config.linux.as_ref().unwrap();
        assert_eq!(boot.append, "rdinit=/bench console=ttyS0 panic=-1 quiet -- getpid");
        assert_eq!(boot.initrd, Path::new("/r/ramdisk.cpio"));
        assert_eq!(machine_flags(&ours.config).unwrap(), machine_flags(&linux.config).unwrap());
        assert_eq!(machine_flags(&ours.config).unwrap(), "-accel tcg,thread=multi -cpu max");
        for config in [&ours.config, &linux.config] {
            assert_eq!((config.cpus, config.memory.as_str()), (2, "512M"));
            assert_eq!(config.host_interval_until.as_deref(), Some(DONE));
        }
    }

    #[test]
    fn a_failed_boot_says_why_and_linux_tells_its_uptime() {
        let serial = "boot: hello\r\n[    0.06] warning: ignoring kernel argument 'run=bench'\r\n\
                      [    0.07] args: run=bench then=exit\r\nboot: done\r\n";
        let ours = Kernel::ours(&RunConfig::default(), None, &[]);
        let boot = Boot {
            run: Err(String::new()),
            bench_lines: Vec::new(),
            notes: Vec::new(),
            first_output: Some(Duration::from_millis(300)),
            first_bench: None,
            done: None,
            ended: Duration::from_millis(2500),
            outcome: Outcome::KernelSuccess,
            qemu_error: None,
            host: None,
            serial: serial.into(),
        };
        assert_eq!(
            failure(&ours, &boot, Duration::from_secs(300)),
            "no BENCH lines (run=bench failed: warning: ignoring kernel argument \
             'run=bench'; QEMU ended after 2.5 s: the kernel exited with success)"
        );
        assert_eq!(complaint("[ 1.0] args: run=bench\nbench: done\n"), Some("args: run=bench"));
        assert_eq!(complaint("boot: done\n"), None);
        let image = LinuxImage {
            package: "linux-image-6.12.117+deb12-amd64-unsigned".into(),
            vmlinuz: "/v".into(),
        };
        let linux = Kernel::linux(&RunConfig::default(), &image, Path::new("/r"), None);
        let timed_out = Boot {
            outcome: Outcome::TimedOut,
            bench_lines: vec!["BENCH user getpid_ns 1 ns".into()],
            serial: "bench: starting\n".into(),
            ..boot
        };
        assert_eq!(
            failure(&linux, &timed_out, Duration::from_secs(300)),
            "no `bench: done`, so this run is not counted (no `bench: done` \
             within 300 s, QEMU was ended)"
        );
        let stopped = Boot {
            qemu_error: stopped_guest("KVM internal error. Suberror: 1\nextra data[0]: 0x1\n"),
            ..timed_out
        };
        assert_eq!(
            failure(&linux, &stopped, Duration::from_secs(300)),
            "no `bench: done`, so this run is not counted (QEMU stopped the guest after 2.5 s: \
             KVM internal error. Suberror: 1)"
        );
        assert_eq!(stopped_guest("qemu-system-x86_64: terminating on signal 15\n"), None);
        let panic = "bench: done\r\n[   11.132077] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000\r\n";
        assert_eq!(linux_uptime_at_exit(panic), Some(11.132077));
        assert_eq!(linux_uptime_at_exit("bench: done\n"), None);
        assert!(!panic_overtook_output(panic));
        let overtaken = "bench: pid 1\r\n[    7.96] Kernel panic - not syncing: Attempted to kill init!\r\n\
                         BENCH user getpid_ns 2541 ns\r\nbench: done\r\n";
        assert!(panic_overtook_output(overtaken));
        assert!(panic_overtook_output(
            "[    7.96] Kernel panic - not syncing: Attempted to kill init!\n"
        ));
        assert!(!panic_overtook_output("bench: pid 1\n"));
        let crashed = "[    6.155377] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            ending(&linux, &Outcome::GuestReset, crashed),
            "Linux panicked, rebooted (panic=-1), and QEMU exited: Kernel panic - not syncing: \
             Fatal exception in interrupt"
        );
        assert!(
            ending(&linux, &Outcome::GuestReset, panic).starts_with("Linux rebooted once init")
        );
        assert_eq!(ending(&ours, &Outcome::GuestReset, panic), Outcome::GuestReset.describe());
        assert_eq!(
            other_lines(overtaken),
            ["bench: pid 1", "[    7.96] Kernel panic - not syncing: Attempted to kill init!"]
        );
    }

    #[test]
    fn host_figures_sum_the_vcpu_threads() {
        let thread = |name: &str, run_ms: u64, wait_ms: u64| host_stats::ThreadDelta {
            name: name.into(),
            main: false,
            new: true,
            run_ns: run_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
            slices: 1,
        };
        let interval = Interval {
            wall: Duration::from_secs(10),
            threads: vec![
                thread("CPU 0/TCG", 3000, 1000),
                thread("CPU 1/TCG", 1000, 0),
                thread("worker", 500, 500),
            ],
            ended: 0,
            host: None,
            load: None,
        };
        let boot = Boot {
            run: Err(String::new()),
            bench_lines: Vec::new(),
            notes: Vec::new(),
            first_output: Some(Duration::from_millis(5200)),
            first_bench: Some(Duration::from_millis(5400)),
            done: Some(Duration::from_millis(9999)),
            ended: Duration::from_secs(10),
            outcome: Outcome::GuestReset,
            qemu_error: None,
            host: Some(Ok(interval)),
            serial: String::new(),
        };
        let figures: Vec<(String, f64)> =
            host_figures(&boot).into_iter().map(|f| (f.metric, f.value)).collect();
        let expected = [
            ("start_to_first_output", 5200.0),
            ("start_to_first_bench", 5400.0),
            ("start_to_done", 9999.0),
            ("vcpu_run_total", 4000.0),
            ("vcpu_wait_total", 1000.0),
            ("vcpu_wait_share", 20.0),
        ];
        assert_eq!(figures, expected.map(|(m, v)| (m.to_string(), v)));
    }
}
