//! The host side of the kernel: how to boot its disk images in QEMU.
//!
//! `boot/build.rs` builds the images; this library turns a [`RunConfig`] into
//! a QEMU command line, runs it, and turns QEMU's exit into an [`Outcome`].
//! The `boot` binary (what `cargo run` starts) and the host integration tests
//! in `tests/` both use it.
//!
//! Kernel arguments travel through QEMU's fw_cfg device as the file
//! `opt/kernel/args`, so they change without rebuilding the disk image.
//!
//! The serial output always comes through a pipe, even when it is shown, so
//! that the runner can answer the kernel's `HOSTSTAT` lines with what the host
//! did to QEMU's threads meanwhile (see [`host_stats`]).

pub mod host_stats;
pub mod panic_bench;
pub mod wakeup_probe;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BIOS_IMAGE: &str = env!("BIOS_IMAGE");
pub const UEFI_IMAGE: &str = env!("UEFI_IMAGE");
pub const KERNEL_ELF: &str = env!("KERNEL_ELF");

/// The fw_cfg file the kernel reads its arguments from (kernel/src/args.rs).
const KERNEL_ARGS_FW_CFG: &str = "opt/kernel/args";
/// QEMU's exit status for the kernel's two debug-exit codes (kernel/src/arch/x86/qemu_exit.rs).
const QEMU_STATUS_KERNEL_SUCCESS: i32 = 33;
const QEMU_STATUS_KERNEL_FAILURE: i32 = 35;
/// Where Debian's `ovmf` package puts the UEFI firmware.
const OVMF_CANDIDATES: &[&str] =
    &["/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accelerator {
    /// QEMU's software emulator: slower, available everywhere.
    Tcg,
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
}

impl Accelerator {
    pub fn name(self) -> &'static str {
        match self {
            Accelerator::Tcg => "TCG",
            Accelerator::Kvm => "KVM",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub firmware: Firmware,
    pub cpus: u32,
    /// QEMU's -m value, e.g. "512M".
    pub memory: String,
    pub accelerator: Accelerator,
    /// Start paused and wait for GDB on localhost:1234.
    pub gdb: bool,
    pub timeout: Option<Duration>,
    /// Passed to QEMU as they are, after everything else.
    pub qemu_args: Vec<String>,
    pub kernel_args: Vec<String>,
    /// The QEMU program: $QEMU, else qemu-system-x86_64 from PATH.
    pub qemu_binary: String,
    /// Where to look for the UEFI firmware: $OVMF, else where Debian's `ovmf` puts it.
    pub ovmf_candidates: Vec<PathBuf>,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            firmware: Firmware::Bios,
            cpus: 4,
            memory: "512M".into(),
            accelerator: Accelerator::Tcg,
            gdb: false,
            timeout: None,
            qemu_args: Vec::new(),
            kernel_args: Vec::new(),
            qemu_binary: std::env::var("QEMU").unwrap_or_else(|_| "qemu-system-x86_64".into()),
            ovmf_candidates: match std::env::var_os("OVMF") {
                Some(path) => vec![PathBuf::from(path)],
                None => OVMF_CANDIDATES.iter().map(PathBuf::from).collect(),
            },
        }
    }
}

/// How a run ended. The runner's exit status is [`Outcome::exit_code`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel exited through isa-debug-exit with its success code.
    KernelSuccess,
    /// The kernel exited with its failure code (a failed test, a panic with panic=exit).
    KernelFailure,
    /// The run was killed after --timeout.
    TimedOut,
    /// The guest reset or powered off (QEMU runs with -no-reboot): a triple
    /// fault, a reboot request, or a power-off.
    GuestReset,
    /// QEMU itself failed; `message` is what it printed on stderr.
    QemuFailed { status: Option<i32>, message: String },
}

impl Outcome {
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::KernelSuccess => 0,
            Outcome::KernelFailure => 1,
            Outcome::QemuFailed { .. } => 2,
            Outcome::GuestReset => 3,
            Outcome::TimedOut => 124,
        }
    }

    fn from_status(status: Option<i32>, stderr: String) -> Outcome {
        match status {
            Some(QEMU_STATUS_KERNEL_SUCCESS) => Outcome::KernelSuccess,
            Some(QEMU_STATUS_KERNEL_FAILURE) => Outcome::KernelFailure,
            Some(0) => Outcome::GuestReset,
            status => Outcome::QemuFailed { status, message: stderr },
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::KernelSuccess => "the kernel exited with success".into(),
            Outcome::KernelFailure => "the kernel exited with failure".into(),
            Outcome::TimedOut => "timed out: QEMU was killed".into(),
            Outcome::GuestReset => {
                "the guest reset or powered off without reporting through isa-debug-exit".into()
            }
            Outcome::QemuFailed { status, message } => {
                format!("QEMU failed (exit status {status:?}): {}", message.trim())
            }
        }
    }
}

/// A problem found before QEMU could run, with what to do about it.
#[derive(Debug)]
pub struct SetupError(pub String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn find_ovmf(candidates: &[PathBuf]) -> Result<&Path, SetupError> {
    candidates.iter().map(PathBuf::as_path).find(|p| p.is_file()).ok_or_else(|| {
        let looked_in: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        SetupError(format!(
            "--uefi needs the OVMF firmware, which is not installed (looked for {}).\n\
             Install it with: sudo apt-get install ovmf   (or run ./dev setup), or set OVMF=/path/to/OVMF.fd",
            looked_in.join(", ")
        ))
    })
}

/// Doubles commas: QEMU's option parser reads ",," as a literal comma.
fn escape_qemu_option_value(value: &str) -> String {
    value.replace(',', ",,")
}

/// The QEMU command line for `config`.
pub fn qemu_command(config: &RunConfig) -> Result<Command, SetupError> {
    let mut command = Command::new(&config.qemu_binary);
    let image = match config.firmware {
        Firmware::Bios => Path::new(BIOS_IMAGE),
        Firmware::Uefi => {
            command.arg("-bios").arg(find_ovmf(&config.ovmf_candidates)?);
            Path::new(UEFI_IMAGE)
        }
    };
    // snapshot=on: the image is never written, so runs can share it in parallel.
    command.arg("-drive").arg(format!("format=raw,snapshot=on,file={}", image.display()));
    command.args(["-smp", &config.cpus.to_string(), "-m", &config.memory]);
    // Name QEMU's threads (`CPU 1/TCG`, `worker`...) so host_stats can tell them apart.
    command.args(["-name", "debug-threads=on"]);
    match config.accelerator {
        // One host thread per vCPU (QEMU's default for x86 on x86, made explicit).
        Accelerator::Tcg => command.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        Accelerator::Kvm => {
            if std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_err() {
                return Err(SetupError(
                    "--kvm: /dev/kvm is missing or not accessible to this user".into(),
                ));
            }
            // Nested KVM here rejects MSR 0x10a (IA32_ARCH_CAPABILITIES) with -cpu host.
            command.args(["-accel", "kvm", "-cpu", "host,-arch-capabilities"])
        }
    };
    command.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    command.args(["-serial", "stdio", "-display", "none", "-monitor", "none", "-no-reboot"]);
    let kernel_args = config.kernel_args.join(" ");
    if !kernel_args.is_empty() {
        command.arg("-fw_cfg").arg(format!(
            "name={KERNEL_ARGS_FW_CFG},string={}",
            escape_qemu_option_value(&kernel_args)
        ));
    }
    if config.gdb {
        command.args(["-s", "-S"]);
    }
    command.args(&config.qemu_args);
    Ok(command)
}

/// A one-line description of the run, printed by the runner before it starts.
pub fn describe(config: &RunConfig) -> String {
    format!(
        "{} firmware, {} CPU{}, {} memory, accelerator {}, kernel args: {}",
        match config.firmware {
            Firmware::Bios => "BIOS",
            Firmware::Uefi => "UEFI",
        },
        config.cpus,
        if config.cpus == 1 { "" } else { "s" },
        config.memory,
        config.accelerator.name(),
        if config.kernel_args.is_empty() {
            "(none)".to_string()
        } else {
            config.kernel_args.join(" ")
        }
    )
}

fn spawn(mut command: Command) -> Result<Child, SetupError> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.spawn().map_err(|error| {
        let program = command.get_program().to_string_lossy().into_owned();
        if error.kind() == std::io::ErrorKind::NotFound {
            SetupError(format!(
                "cannot run '{program}': it is not installed.\n\
                 Install QEMU with: sudo apt-get install qemu-system-x86   (or run ./dev setup)"
            ))
        } else {
            SetupError(format!("cannot run '{program}': {error}"))
        }
    })
}

/// Copies everything from `source` into a shared buffer, and also to `echo` if given.
fn collect(
    mut source: impl Read + Send + 'static,
    echo: Option<fn(&[u8])>,
) -> (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>) {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buffer);
    let handle = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = source.read(&mut chunk) {
            if n == 0 {
                break;
            }
            if let Some(echo) = echo {
                echo(&chunk[..n]);
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buffer, handle)
}

fn echo_to_stderr(bytes: &[u8]) {
    let _ = std::io::stderr().write_all(bytes);
}

/// Where the serial output goes: a buffer for the caller to read, or, when it
/// is not captured, this process's stdout as it arrives.
struct SerialSink(Option<Arc<Mutex<Vec<u8>>>>);

impl SerialSink {
    fn write(&self, bytes: &[u8]) {
        match &self.0 {
            Some(buffer) => buffer.lock().unwrap().extend_from_slice(bytes),
            None => {
                let _ = std::io::stdout().write_all(bytes);
            }
        }
    }

    fn flush(&self) {
        if self.0.is_none() {
            let _ = std::io::stdout().flush();
        }
    }
}

/// The start of the current line, enough to recognise a `HOSTSTAT` line.
const LINE_KEPT: usize = 256;

/// Passes the serial output on as it arrives: whole lines one at a time, and
/// the part of a line that has no newline yet at once, so nothing waits. After
/// a `HOSTSTAT end` line it adds the runner's `HOST` lines.
fn pump_serial(mut source: impl Read, sink: SerialSink, mut watcher: host_stats::Watcher) {
    let mut chunk = [0u8; 4096];
    let mut line = Vec::new();
    while let Ok(n) = source.read(&mut chunk) {
        if n == 0 {
            break;
        }
        let mut rest = &chunk[..n];
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(newline + 1);
            keep_line_start(&mut line, head);
            // The snapshot is taken before the line is shown: a slow terminal must not delay it.
            let added = watcher.line(&String::from_utf8_lossy(&line));
            sink.write(head);
            for text in added {
                sink.write(format!("{text}\n").as_bytes());
            }
            line.clear();
            rest = tail;
        }
        keep_line_start(&mut line, rest);
        sink.write(rest);
        sink.flush();
    }
}

fn keep_line_start(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = LINE_KEPT.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// A QEMU process started by [`RunningQemu::start`], with its output being collected.
pub struct RunningQemu {
    child: Child,
    started: Instant,
    /// The captured serial output (None when it is shown instead), and its reader.
    serial: (Option<Arc<Mutex<Vec<u8>>>>, thread::JoinHandle<()>),
    stderr: (Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>),
}

impl RunningQemu {
    /// Starts QEMU. With `capture_serial` the kernel's serial output is
    /// collected instead of shown on stdout; either way the runner's `HOST`
    /// lines are part of it. QEMU's own stderr is always kept (and shown when
    /// the serial output is), for the error report.
    pub fn start(config: &RunConfig, capture_serial: bool) -> Result<RunningQemu, SetupError> {
        let mut child = spawn(qemu_command(config)?)?;
        let echo = (!capture_serial).then_some(echo_to_stderr as fn(&[u8]));
        let stderr = collect(child.stderr.take().unwrap(), echo);
        let buffer = capture_serial.then(|| Arc::new(Mutex::new(Vec::new())));
        let (stdout, sink) = (child.stdout.take().unwrap(), SerialSink(buffer.clone()));
        let watcher = host_stats::Watcher::new(child.id());
        let reader = thread::spawn(move || pump_serial(stdout, sink, watcher));
        Ok(RunningQemu { child, started: Instant::now(), serial: (buffer, reader), stderr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The serial output so far (empty when it is not captured).
    pub fn serial_text(&self) -> String {
        self.serial
            .0
            .as_ref()
            .map(|buffer| String::from_utf8_lossy(&buffer.lock().unwrap()).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the serial output contains `text`; false if QEMU ended or
    /// `timeout` passed first.
    pub fn wait_for_output(&mut self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.serial_text().contains(text) {
                return true;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return self.serial_text().contains(text);
            }
            thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Waits for QEMU to end (killing it once `timeout`, counted from the
    /// start, has passed) and returns how it ended and the serial output.
    pub fn finish(mut self, timeout: Option<Duration>) -> Result<(Outcome, String), SetupError> {
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| SetupError(format!("waiting for QEMU failed: {e}")))?
            {
                break Some(status);
            }
            if timeout.is_some_and(|limit| self.started.elapsed() >= limit) {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            thread::sleep(Duration::from_millis(20));
        };
        let (stderr, stderr_reader) = self.stderr;
        let _ = stderr_reader.join();
        let (buffer, reader) = self.serial;
        let _ = reader.join();
        let serial_text = buffer
            .map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned())
            .unwrap_or_default();
        let stderr_text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        let outcome = match status {
            None => Outcome::TimedOut,
            Some(status) => Outcome::from_status(status.code(), stderr_text),
        };
        Ok((outcome, serial_text))
    }

    /// Ends QEMU now.
    pub fn kill(self) {
        let _ = self.finish(Some(Duration::ZERO));
    }
}

/// Runs QEMU to the end (or to `config.timeout`); see [`RunningQemu::start`].
pub fn run(config: &RunConfig, capture_serial: bool) -> Result<(Outcome, String), SetupError> {
    RunningQemu::start(config, capture_serial)?.finish(config.timeout)
}

pub const USAGE: &str = "\
Boot the kernel in QEMU.

usage: cargo run -- [RUNNER FLAGS] [-- KERNEL ARGS]
       cargo run -- bench-panic [--kvm] [--seconds N]   (see docs/panic.md)

runner flags:
  --uefi             boot the UEFI image with OVMF (default: BIOS)
  --smp N            number of CPUs (default: 4)
  --memory M         guest memory, as QEMU's -m (default: 512M)
  --kvm              use KVM instead of TCG (the default; the accelerator is printed)
  --gdb              start paused; QEMU waits for GDB on localhost:1234
  --timeout SECS     kill QEMU after SECS seconds and exit with status 124
  --qemu-arg ARG     pass ARG to QEMU as it is (repeatable)
  -h, --help         show this text

kernel args (key=value words, read by the kernel through QEMU's fw_cfg):
  log=off|error|warn|info|debug|trace   console log level (default: info)
  then=halt|exit|panic                  what to do after booting (default: halt)
  test=all|NAME[,NAME...]               run in-kernel tests, then exit
  panic=halt|spin|exit|N                after a panic's report: sleep in sti;hlt (default),
                                        busy-wait like Linux, exit QEMU, or reboot after N s
  smp=parallel|serial                   how the other CPUs are started (default: parallel)
  maxcpus=N                             start at most N CPUs, the boot CPU included
  init_udelay=US                        wait after INIT before SIPI (default: 10000, as the SDM asks)
  tsc=check|reliable                    run or skip the TSC synchronisation check at bring-up
  fault=ap_stuck:N|ap_panic:N|skip_shootdown|skip_lazy_catch_up
                                        fault injection: CPU N never reports alive / panics
                                        before its per-CPU data exists / TLB shootdowns skip
                                        remote CPUs / lazy CPUs skip their catch-up
                                        flush (the torture must fail)
  ipi_wait=sleep|preempt|spin           how cross-CPU calls wait (default: sleep)
  irqoff_us=N  irqoff_cpu=C             CPU C (default: the last) runs with interrupts off
                                        N us (up to 10 s) at a time: a slow CPU
  bench=smp|sched|tlb                   bring-up, scheduler, or shootdown benchmarks
  apic=auto|xapic                       force the xAPIC (MMIO) interface

serial output goes to stdout as it arrives; after a kernel's `HOSTSTAT end LABEL`
line the runner adds `HOST LABEL` lines: how long each QEMU thread ran and waited
for a host core since `HOSTSTAT begin LABEL` (see docs/runner.md).

exit status: 0 kernel success, 1 kernel failure (a failed test or a panic that
exits), 2 QEMU failed, 3 guest reset or powered off, 124 timeout.

environment: QEMU=path overrides qemu-system-x86_64, OVMF=path the UEFI firmware.";

/// What the command line asks for.
pub enum Request {
    Run(RunConfig),
    Help,
}

/// Parses the runner's command line (without the program name).
pub fn parse_command_line(args: impl IntoIterator<Item = String>) -> Result<Request, String> {
    let mut config = RunConfig::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline_value
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Request::Help),
            "--uefi" => config.firmware = Firmware::Uefi,
            "--bios" => config.firmware = Firmware::Bios,
            "--kvm" => config.accelerator = Accelerator::Kvm,
            "--tcg" => config.accelerator = Accelerator::Tcg,
            "--gdb" => config.gdb = true,
            "--smp" => {
                let text = value("--smp")?;
                config.cpus =
                    text.parse().ok().filter(|&n| (1..=255).contains(&n)).ok_or_else(|| {
                        format!("--smp {text}: expected a number of CPUs from 1 to 255")
                    })?;
            }
            "--memory" => config.memory = value("--memory")?,
            "--timeout" => {
                let text = value("--timeout")?;
                let seconds: f64 =
                    text.parse().ok().filter(|&s: &f64| s > 0.0).ok_or_else(|| {
                        format!("--timeout {text}: expected a positive number of seconds")
                    })?;
                config.timeout = Some(Duration::from_secs_f64(seconds));
            }
            "--qemu-arg" => config.qemu_args.push(value("--qemu-arg")?),
            "--" => config.kernel_args.extend(args.by_ref()),
            _ if !arg.starts_with('-') && arg.contains('=') => config.kernel_args.push(arg),
            _ => return Err(format!("unknown runner flag '{arg}' (see --help)")),
        }
    }
    Ok(Request::Run(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<RunConfig, String> {
        match parse_command_line(words.iter().map(|w| w.to_string()))? {
            Request::Run(config) => Ok(config),
            Request::Help => Err("help".into()),
        }
    }

    #[test]
    fn flags_and_kernel_args_are_separated() {
        let config = parse(&[
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
            "log=debug",
        ])
        .unwrap();
        assert_eq!(config.firmware, Firmware::Uefi);
        assert_eq!(config.cpus, 8);
        assert_eq!(config.memory, "1G");
        assert_eq!(config.accelerator, Accelerator::Kvm);
        assert_eq!(config.timeout, Some(Duration::from_millis(2500)));
        assert_eq!(config.qemu_args, ["-machine", "acpi=off"]);
        assert_eq!(config.kernel_args, ["then=exit", "log=debug"]);
    }

    #[test]
    fn bad_flags_are_explained() {
        assert!(parse(&["--smp", "0"]).unwrap_err().contains("from 1 to 255"));
        assert!(parse(&["--smp"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["--timeout", "soon"]).unwrap_err().contains("positive number of seconds"));
        assert!(
            parse(&["--frobnicate"]).unwrap_err().contains("unknown runner flag '--frobnicate'")
        );
        assert!(matches!(parse_command_line(["--help".to_string()]), Ok(Request::Help)));
    }

    #[test]
    fn kernel_args_reach_fw_cfg_with_commas_escaped() {
        let config = RunConfig {
            kernel_args: vec!["test=a,b".into(), "log=debug".into()],
            ..RunConfig::default()
        };
        let command = qemu_command(&config).unwrap();
        let args: Vec<String> =
            command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let position = args.iter().position(|a| a == "-fw_cfg").expect("no -fw_cfg");
        assert_eq!(args[position + 1], "name=opt/kernel/args,string=test=a,,b log=debug");
        assert!(args.contains(&"isa-debug-exit,iobase=0xf4,iosize=0x04".to_string()));
    }

    #[test]
    fn tcg_is_multi_threaded_and_threads_are_named() {
        let command = qemu_command(&RunConfig::default()).unwrap();
        let args: Vec<String> =
            command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(
            args.windows(4).any(|w| w == ["-accel", "tcg,thread=multi", "-cpu", "max"]),
            "{args:?}"
        );
        assert!(args.windows(2).any(|w| w == ["-name", "debug-threads=on"]), "{args:?}");
    }

    /// Hands out its chunks one `read` at a time, as a pipe might.
    struct Chunks(Vec<&'static [u8]>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            out[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn serial_passes_through_unchanged_with_host_lines_after_each_end() {
        let chunks = vec![
            &b"boot\r\nHOSTST"[..],
            b"AT begin a\r\nBENCH x=1\r\nHOSTSTAT end a\r",
            b"\nnext\r\npartial",
        ];
        let buffer = Arc::new(Mutex::new(Vec::new()));
        // No such process: the HOST line says the figures are unavailable.
        pump_serial(
            Chunks(chunks),
            SerialSink(Some(buffer.clone())),
            host_stats::Watcher::new(u32::MAX),
        );
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let (before, after) = text.split_once("HOSTSTAT end a\r\n").unwrap();
        assert_eq!(before, "boot\r\nHOSTSTAT begin a\r\nBENCH x=1\r\n");
        let (host, rest) = after.split_once('\n').unwrap();
        assert!(host.starts_with("HOST a unavailable: cannot read /proc/"), "{host}");
        assert_eq!(rest, "next\r\npartial");
    }

    #[test]
    fn qemu_exit_statuses_map_to_outcomes() {
        assert_eq!(Outcome::from_status(Some(33), String::new()).exit_code(), 0);
        assert_eq!(Outcome::from_status(Some(35), String::new()).exit_code(), 1);
        assert_eq!(Outcome::from_status(Some(0), String::new()), Outcome::GuestReset);
        assert_eq!(Outcome::from_status(Some(1), "boom".into()).exit_code(), 2);
        assert_eq!(Outcome::TimedOut.exit_code(), 124);
    }
}
