//! The runner's command line: `cargo run -- [RUNNER FLAGS] [-- KERNEL ARGS]`
//! boots the kernel, `cargo run -- bench-panic` measures a panicked kernel,
//! `cargo run -- bench-user` runs the same user program on this kernel and on
//! Linux, `cargo run -- trace-convert` redoes a trace's JSON and SVG from its
//! raw stream.
//!
//! Parsed by `clap`; its errors exit with status 2, as QEMU failing to start
//! does, and `--help` ends with the kernel arguments from the kernel's own
//! table (see [`crate::kernel_args`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::trace::Window;
use crate::user_bench::{self, Kernels};
use crate::{Accelerator, DEFAULT_CPUS, DEFAULT_MEMORY, Firmware, RunConfig, kernel_args};

/// What the command line asks for.
#[derive(Debug)]
pub enum Request {
    /// Boot the kernel.
    Run(RunConfig),
    /// `bench-panic`: see `panic_bench`.
    BenchPanic { accelerator: Accelerator, seconds: u64, rounds: u32 },
    /// `bench-user`: see `user_bench`.
    BenchUser(user_bench::Options),
    /// `trace-convert`: see `trace::convert`.
    TraceConvert { raw: PathBuf, json: PathBuf, window: Option<Window> },
}

/// Boot the kernel in QEMU.
#[derive(Parser, Debug)]
#[command(
    bin_name = "cargo run --",
    args_conflicts_with_subcommands = true,
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunFlags,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure the host CPU a panicked kernel uses: halt, halt+blink, spin
    BenchPanic {
        /// Use KVM instead of TCG
        #[arg(long)]
        kvm: bool,
        /// Seconds to measure each panicked kernel for
        #[arg(long, value_name = "N", default_value_t = 10, value_parser = positive_whole)]
        seconds: u64,
        /// Rounds of the three modes (one boot each per round)
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = positive_rounds)]
        rounds: u32,
    },
    /// Run the user program `bench` on this kernel and on Debian's Linux 6.12, and compare
    BenchUser {
        /// Number of CPUs of both machines, 1 to 255
        #[arg(long, value_name = "N", default_value_t = DEFAULT_CPUS, value_parser = cpu_count)]
        smp: u32,
        /// Guest memory of both machines, as QEMU's -m
        #[arg(long, value_name = "M", default_value = DEFAULT_MEMORY)]
        memory: String,
        /// Use KVM instead of TCG, for both
        #[arg(long)]
        kvm: bool,
        /// Rounds (one boot of each kernel per round)
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = positive_rounds)]
        rounds: u32,
        /// Run only this part of `bench`: its arguments, separated by commas
        #[arg(long, value_name = "PART", value_parser = part_word)]
        part: Option<String>,
        /// Boot only Debian's Linux
        #[arg(long, conflicts_with = "ours_only")]
        linux_only: bool,
        /// Boot only this kernel (no Linux package is fetched)
        #[arg(long)]
        ours_only: bool,
        /// The Linux package [default: the newest linux-image-6.12.*-amd64-unsigned]
        #[arg(long, value_name = "NAME", value_parser = package_name, conflicts_with = "ours_only")]
        linux_package: Option<String>,
        /// Seconds one boot may take to reach `bench: done`
        #[arg(long, value_name = "SECS", default_value = "300", value_parser = positive_seconds)]
        timeout: Duration,
        /// One more kernel argument for this kernel's boots (repeatable), e.g. irqoff_us=20000
        #[arg(long = "kernel-arg", value_name = "KEY=VALUE", value_parser = part_word)]
        kernel_args: Vec<String>,
    },
    /// Write a trace's JSON and SVG again from its raw stream (a .ktrace file)
    TraceConvert {
        /// The raw stream a `--trace` run kept
        #[arg(value_name = "RAW.ktrace")]
        raw: PathBuf,
        /// The JSON to write; the SVG goes beside it
        #[arg(value_name = "OUT.json", value_parser = json_path)]
        json: PathBuf,
        /// Draw only this part of the trace in the SVG (µs)
        #[arg(long, value_name = "FROM_US..TO_US")]
        window: Option<Window>,
    },
}

#[derive(Args, Debug)]
struct RunFlags {
    /// Boot the UEFI image with OVMF
    #[arg(long, overrides_with = "bios")]
    uefi: bool,
    /// Boot the BIOS image (the default)
    #[arg(long, overrides_with = "uefi")]
    bios: bool,
    /// Number of CPUs, 1 to 255
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CPUS, value_parser = cpu_count)]
    smp: u32,
    /// Guest memory, as QEMU's -m
    #[arg(long, value_name = "M", default_value = DEFAULT_MEMORY)]
    memory: String,
    /// Use KVM instead of TCG (the accelerator is printed)
    #[arg(long, overrides_with = "tcg")]
    kvm: bool,
    /// Use QEMU's emulator, TCG (the default)
    #[arg(long, overrides_with = "kvm")]
    tcg: bool,
    /// Start paused; QEMU waits for GDB on localhost:1234
    #[arg(long)]
    gdb: bool,
    /// Leave out the pvpanic device (a panic cannot tell the host)
    #[arg(long)]
    no_pvpanic: bool,
    /// End the run (status 4) when the guest panics
    #[arg(long, conflicts_with = "no_pvpanic")]
    exit_on_panic: bool,
    /// Kill QEMU after SECS seconds: status 124 (4 after a panic)
    #[arg(long, value_name = "SECS", value_parser = positive_seconds)]
    timeout: Option<Duration>,
    /// Trace the run into FILE.json, FILE.svg and raw FILE.ktrace
    #[arg(long, value_name = "FILE.json", value_parser = json_path)]
    trace: Option<PathBuf>,
    /// Draw only this part of the trace in the SVG (µs)
    #[arg(long, value_name = "FROM_US..TO_US", requires = "trace")]
    trace_window: Option<Window>,
    /// Pass ARG to QEMU as it is (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    qemu_arg: Vec<String>,
    /// Kernel arguments may also come before `--`
    #[arg(value_name = "KEY=VALUE", value_parser = kernel_word)]
    words: Vec<String>,
    /// Kernel arguments, key=value words (listed below)
    #[arg(last = true, value_name = "KERNEL ARGS")]
    kernel_args: Vec<String>,
}

fn cpu_count(text: &str) -> Result<u32, String> {
    let cpus = text.parse().ok().filter(|n| (1..=255).contains(n));
    cpus.ok_or_else(|| "expected a number of CPUs from 1 to 255".into())
}

fn positive_seconds(text: &str) -> Result<Duration, String> {
    let seconds = text.parse().ok().filter(|&s: &f64| s > 0.0 && s.is_finite());
    seconds
        .map(Duration::from_secs_f64)
        .ok_or_else(|| "expected a positive number of seconds".into())
}

fn positive_rounds(text: &str) -> Result<u32, String> {
    let rounds = text.parse().ok().filter(|&n| (1..=100).contains(&n));
    rounds.ok_or_else(|| "expected a number of rounds from 1 to 100".into())
}

fn positive_whole(text: &str) -> Result<u64, String> {
    let number = text.parse().ok().filter(|&n| n > 0);
    number.ok_or_else(|| "expected a positive whole number".into())
}

/// `bench`'s arguments travel as one kernel argument word (`run_args=PART`)
/// and as words of Linux's command line: no white space, nothing empty.
fn part_word(text: &str) -> Result<String, String> {
    let fine = |argument: &str| !argument.is_empty() && !argument.contains(char::is_whitespace);
    if text.split(',').all(fine) {
        Ok(text.to_string())
    } else {
        Err("expected arguments separated by commas, without spaces".into())
    }
}

fn package_name(text: &str) -> Result<String, String> {
    if user_bench::is_package_name(text) {
        Ok(text.to_string())
    } else {
        Err("expected a Debian package name such as linux-image-6.12.117+deb12-amd64-unsigned"
            .into())
    }
}

/// The JSON's name fixes the other two (.ktrace, .svg), so it must end in
/// .json: `--trace run.svg` would otherwise have the SVG overwrite the JSON.
fn json_path(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    match path.extension() {
        Some(extension) if extension == "json" && path.file_stem().is_some() => Ok(path),
        _ => Err("expected a file name ending in .json".into()),
    }
}

/// A kernel argument given before `--` must look like one, so that a typo in
/// a runner flag's value is not handed to the kernel.
fn kernel_word(text: &str) -> Result<String, String> {
    if text.contains('=') {
        Ok(text.to_string())
    } else {
        Err("expected a runner flag, or a kernel argument key=value".into())
    }
}

/// What follows the flags in `--help`.
fn after_help() -> String {
    const TRAILER: &str = "\
Serial output goes to stdout as it arrives; after a kernel's `HOSTSTAT end LABEL` line the
runner adds `HOST LABEL` lines: how long each QEMU thread ran and waited for a host core since
`HOSTSTAT begin LABEL` (see docs/runner.md).

--trace FILE.json: the kernel gets trace=all unless a trace= argument chooses what to record;
after the run (whatever its end) the runner writes FILE.json, which ui.perfetto.dev and
chrome://tracing open, and FILE.svg, a picture of the same timeline; FILE.ktrace keeps the raw
stream for `trace-convert`. Times in --trace-window are µs since the kernel's clock started.

After a panic (pvpanic's QMP event) the runner says guest panicked and leaves a halted guest
as it is, for inspection (e.g. with --gdb); Ctrl-C ends the run, --exit-on-panic ends it there.

Exit status: 0 kernel success, 1 kernel failure (a failed or hung test), 2 QEMU failed or a bad
runner flag, 3 guest reset or powered off, 4 the kernel panicked, 124 timeout.

Environment: QEMU=path overrides qemu-system-x86_64, OVMF=path the UEFI firmware.";
    format!(
        "Kernel arguments: key=value words, read by the kernel through QEMU's fw_cfg. A bad one is\n\
         reported by the kernel, and the boot goes on.\n{}\n\n{TRAILER}",
        kernel_args::help()
    )
}

/// The command line's grammar, with the help text.
pub fn command() -> clap::Command {
    Cli::command().after_help(after_help())
}

/// Parses the runner's command line, program name first. The error, when
/// there is one, is also how `--help` is answered: `error.exit()` prints it
/// and exits with the right status.
pub fn parse(
    argv: impl IntoIterator<Item = impl Into<OsString> + Clone>,
) -> Result<Request, clap::Error> {
    let matches = command().try_get_matches_from(argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command {
        Some(Command::BenchPanic { kvm, seconds, rounds }) => {
            let accelerator = if kvm { Accelerator::Kvm } else { Accelerator::Tcg };
            return Ok(Request::BenchPanic { accelerator, seconds, rounds });
        }
        Some(Command::BenchUser {
            smp,
            memory,
            kvm,
            rounds,
            part,
            linux_only,
            ours_only,
            linux_package,
            timeout,
            kernel_args,
        }) => {
            let kernels = match (linux_only, ours_only) {
                (true, _) => Kernels::LinuxOnly,
                (_, true) => Kernels::OursOnly,
                _ => Kernels::Both,
            };
            return Ok(Request::BenchUser(user_bench::Options {
                cpus: smp,
                memory,
                accelerator: if kvm { Accelerator::Kvm } else { Accelerator::Tcg },
                rounds,
                part,
                kernels,
                linux_package,
                timeout,
                kernel_args,
            }));
        }
        Some(Command::TraceConvert { raw, json, window }) => {
            return Ok(Request::TraceConvert { raw, json, window });
        }
        None => {}
    }
    let flags = cli.run;
    let mut kernel_args = flags.words;
    kernel_args.extend(flags.kernel_args);
    Ok(Request::Run(RunConfig {
        firmware: if flags.uefi { Firmware::Uefi } else { Firmware::Bios },
        cpus: flags.smp,
        memory: flags.memory,
        accelerator: if flags.kvm { Accelerator::Kvm } else { Accelerator::Tcg },
        gdb: flags.gdb,
        pvpanic: !flags.no_pvpanic,
        exit_on_panic: flags.exit_on_panic,
        timeout: flags.timeout,
        qemu_args: flags.qemu_arg,
        kernel_args,
        trace: flags.trace,
        trace_window: flags.trace_window,
        ..RunConfig::default()
    }))
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;

    use super::*;

    fn parse_words(words: &[&str]) -> Result<Request, clap::Error> {
        parse(std::iter::once("boot").chain(words.iter().copied()))
    }

    fn run_config(words: &[&str]) -> RunConfig {
        match parse_words(words) {
            Ok(Request::Run(config)) => config,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    fn error(words: &[&str]) -> String {
        parse_words(words).expect_err(&format!("{words:?} must be refused")).to_string()
    }

    #[test]
    fn the_grammar_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn flags_and_kernel_args_are_separated() {
        let config = run_config(&[
            "--uefi",
            "--smp",
            "8",
            "--memory=1G",
            "--kvm",
            "--timeout",
            "2.5",
            "--qemu-arg",
            "-machine",
            "--qemu-arg=acpi=off",
            "--",
            "then=exit",
            "--not-a-flag",
        ]);
        assert_eq!(config.firmware, Firmware::Uefi);
        assert_eq!(config.cpus, 8);
        assert_eq!(config.memory, "1G");
        assert_eq!(config.accelerator, Accelerator::Kvm);
        assert_eq!(config.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(config.qemu_args, ["-machine", "acpi=off"]);
        assert_eq!(config.kernel_args, ["then=exit", "--not-a-flag"]);
    }

    #[test]
    fn defaults_and_the_last_of_two_opposite_flags() {
        let config = run_config(&[]);
        let default = RunConfig::default();
        assert_eq!((config.firmware, config.cpus), (default.firmware, default.cpus));
        assert_eq!((config.memory, config.accelerator), (default.memory, default.accelerator));
        assert_eq!((config.gdb, config.timeout), (false, None));
        assert!(config.kernel_args.is_empty() && config.qemu_args.is_empty());
        let config = run_config(&["--uefi", "--bios", "--kvm", "--tcg", "--gdb"]);
        assert_eq!((config.firmware, config.accelerator), (Firmware::Bios, Accelerator::Tcg));
        assert!(config.gdb);
        assert_eq!(run_config(&["--bios", "--uefi"]).firmware, Firmware::Uefi);
    }

    #[test]
    fn kernel_args_may_come_before_the_separator() {
        let config = run_config(&["log=debug", "--smp", "2", "then=exit", "--", "test=all"]);
        assert_eq!(config.kernel_args, ["log=debug", "then=exit", "test=all"]);
        assert_eq!(config.cpus, 2);
        assert!(error(&["quiet"]).contains("key=value"));
    }

    #[test]
    fn bad_flags_are_explained() {
        assert!(error(&["--smp", "0"]).contains("from 1 to 255"));
        assert!(error(&["--smp", "256"]).contains("from 1 to 255"));
        assert!(error(&["--smp"]).contains("a value is required"));
        assert!(error(&["--timeout", "soon"]).contains("positive number of seconds"));
        assert!(error(&["--timeout", "0"]).contains("positive number of seconds"));
        assert!(error(&["--frobnicate"]).contains("unexpected argument '--frobnicate'"));
        let kind = |words: &[&str]| parse_words(words).unwrap_err().kind();
        assert_eq!(kind(&["--smp", "0"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["--help"]), ErrorKind::DisplayHelp);
        assert_eq!(kind(&["-h"]), ErrorKind::DisplayHelp);
    }

    #[test]
    fn errors_exit_with_status_2_and_help_with_0() {
        assert_eq!(parse_words(&["--frobnicate"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse_words(&["--help"]).unwrap_err().exit_code(), 0);
    }

    #[test]
    fn help_lists_the_flags_the_subcommand_and_every_kernel_argument() {
        let help = command().render_help().to_string();
        for flag in ["--uefi", "--smp <N>", "--memory <M>", "--kvm", "--gdb", "--timeout <SECS>"] {
            assert!(help.contains(flag), "{flag} missing from\n{help}");
        }
        assert!(help.contains("bench-panic") && help.contains("trace-convert"), "{help}");
        assert!(help.contains("bench-user"), "{help}");
        assert!(help.contains("--trace <FILE.json>"), "{help}");
        assert!(help.contains("[default: 4]") && help.contains("[default: 512M]"), "{help}");
        for parameter in kernel_args::table::PARAMETERS {
            assert!(help.contains(&format!("\n  {} ", parameter.key)), "{}", parameter.key);
        }
        assert!(help.contains("4 the kernel panicked, 124 timeout"), "{help}");
        assert!(help.lines().all(|line| line.len() <= 100), "{help}");
    }

    #[test]
    fn a_trace_names_its_json_and_may_narrow_its_picture() {
        let config = run_config(&["--trace", "out/tlb.json", "--trace-window", "10..20.5"]);
        assert_eq!(config.trace, Some(PathBuf::from("out/tlb.json")));
        assert_eq!(config.trace_window, Some(Window { from_ns: 10_000, to_ns: 20_500 }));
        assert_eq!(run_config(&[]).trace, None);
        assert!(error(&["--trace", "out/tlb.svg"]).contains("ending in .json"));
        assert!(error(&["--trace-window", "1..2"]).contains("--trace"));
        assert!(error(&["--trace", "a.json", "--trace-window", "5..1"]).contains("FROM_US..TO_US"));
    }

    #[test]
    fn exit_on_panic_needs_the_pvpanic_device() {
        assert!(run_config(&["--exit-on-panic"]).exit_on_panic);
        assert!(!run_config(&[]).exit_on_panic);
        assert!(error(&["--exit-on-panic", "--no-pvpanic"]).contains("cannot be used with"));
    }

    #[test]
    fn trace_convert_is_a_subcommand() {
        let request = parse_words(&["trace-convert", "a.ktrace", "a.json", "--window", "0..1"]);
        match request.unwrap() {
            Request::TraceConvert { raw, json, window } => {
                assert_eq!((raw, json), (PathBuf::from("a.ktrace"), PathBuf::from("a.json")));
                assert_eq!(window, Some(Window { from_ns: 0, to_ns: 1000 }));
            }
            other => panic!("{other:?}"),
        }
        assert!(error(&["trace-convert", "a.ktrace"]).contains("OUT.json"));
    }

    #[test]
    fn bench_panic_is_a_subcommand() {
        let request =
            parse_words(&["bench-panic", "--kvm", "--seconds", "2", "--rounds", "1"]).unwrap();
        assert!(matches!(
            request,
            Request::BenchPanic { accelerator: Accelerator::Kvm, seconds: 2, rounds: 1 }
        ));
        let request = parse_words(&["bench-panic"]).unwrap();
        assert!(matches!(
            request,
            Request::BenchPanic { accelerator: Accelerator::Tcg, seconds: 10, rounds: 3 }
        ));
        assert!(error(&["bench-panic", "--seconds", "0"]).contains("positive whole number"));
        assert!(error(&["bench-panic", "--rounds", "0"]).contains("rounds from 1 to 100"));
        assert!(error(&["bench-panic", "--smp", "2"]).contains("unexpected argument '--smp'"));
        // Run flags and the subcommand do not mix.
        assert!(parse_words(&["--smp", "2", "bench-panic"]).is_err());
    }

    fn bench_user(words: &[&str]) -> user_bench::Options {
        let words: Vec<&str> = std::iter::once("bench-user").chain(words.iter().copied()).collect();
        match parse_words(&words) {
            Ok(Request::BenchUser(options)) => options,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn bench_user_is_a_subcommand() {
        let defaults = bench_user(&[]);
        assert_eq!(
            defaults,
            user_bench::Options {
                cpus: 4,
                memory: "512M".into(),
                accelerator: Accelerator::Tcg,
                rounds: 3,
                part: None,
                kernels: Kernels::Both,
                linux_package: None,
                timeout: Duration::from_secs(300),
                kernel_args: vec![],
            }
        );
        let options = bench_user(&[
            "--smp",
            "2",
            "--rounds=5",
            "--kvm",
            "--part",
            "pipe,4096",
            "--linux-package",
            "linux-image-6.12.113+deb12-amd64-unsigned",
            "--timeout",
            "60",
            "--memory",
            "1G",
            "--kernel-arg",
            "irqoff_us=20000",
            "--kernel-arg=ipi_wait=spin",
        ]);
        assert_eq!(options.kernel_args, ["irqoff_us=20000", "ipi_wait=spin"]);
        assert_eq!((options.cpus, options.rounds, options.accelerator), (2, 5, Accelerator::Kvm));
        assert_eq!(options.part.as_deref(), Some("pipe,4096"));
        assert_eq!(
            options.linux_package.as_deref(),
            Some("linux-image-6.12.113+deb12-amd64-unsigned")
        );
        assert_eq!((options.timeout, options.memory.as_str()), (Duration::from_secs(60), "1G"));
        assert_eq!(bench_user(&["--linux-only"]).kernels, Kernels::LinuxOnly);
        assert_eq!(bench_user(&["--ours-only"]).kernels, Kernels::OursOnly);
        assert!(
            error(&["bench-user", "--linux-only", "--ours-only"]).contains("cannot be used with")
        );
        assert!(
            error(&["bench-user", "--ours-only", "--linux-package", "linux-image-x"])
                .contains("cannot be used with")
        );
        assert!(error(&["bench-user", "--part", "a b"]).contains("without spaces"));
        assert!(error(&["bench-user", "--part", "a,,b"]).contains("without spaces"));
        assert!(error(&["bench-user", "--linux-package", "bash"]).contains("Debian package name"));
        assert!(error(&["bench-user", "--smp", "0"]).contains("from 1 to 255"));
        assert!(error(&["bench-user", "--rounds", "0"]).contains("rounds from 1 to 100"));
        assert!(error(&["bench-user", "--timeout", "0"]).contains("positive number of seconds"));
        assert!(error(&["bench-user", "--", "then=exit"]).contains("unexpected argument"));
        // Run flags and the subcommand do not mix.
        assert!(parse_words(&["--smp", "2", "bench-user"]).is_err());
    }
}
