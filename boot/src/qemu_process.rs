//! Running QEMU: starting it, collecting its serial output and stderr while
//! it runs, and waiting for (or forcing) its end.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::serial::{SerialSink, pump_serial};
use crate::trace::{self, Window};
use crate::{Outcome, RunConfig, SetupError, host_stats, qemu_command, qmp};

/// Bytes one reader thread collects and others read.
type SharedBuffer = Arc<Mutex<Vec<u8>>>;

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
) -> (SharedBuffer, thread::JoinHandle<()>) {
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

/// A QEMU process started by [`RunningQemu::start`], with its output being collected.
pub struct RunningQemu {
    child: Child,
    started: Instant,
    /// The captured serial output (None when it is shown instead), and its reader.
    serial: (Option<SharedBuffer>, thread::JoinHandle<()>),
    stderr: (SharedBuffer, thread::JoinHandle<()>),
    /// Where the trace goes once QEMU ends, and the part the SVG draws.
    trace: Option<(PathBuf, Option<Window>)>,
    qmp: Qmp,
    /// End the run once QEMU says the guest panicked (`--exit-on-panic`).
    exit_on_panic: bool,
    /// The serial output is collected, not shown (`start`'s `capture_serial`).
    captured: bool,
    /// The figures from QEMU's start to `RunConfig::host_interval_until`.
    host_interval: Option<host_stats::Measured>,
}

/// Hearing a panic from QEMU (see `qmp`).
struct Qmp {
    /// When QEMU said the guest panicked (pvpanic), and with which event.
    heard: qmp::Heard,
    /// When the report's first line arrived.
    report_began: qmp::Moment,
    listener: Option<thread::JoinHandle<()>>,
    /// Set once QEMU has ended: a listener still waiting to connect gives up.
    stop_listening: Arc<std::sync::atomic::AtomicBool>,
    qmp_socket: Option<PathBuf>,
}

impl RunningQemu {
    /// Starts QEMU. With `capture_serial` the kernel's serial output is
    /// collected instead of shown on stdout; either way the runner's `HOST`
    /// lines are part of it. QEMU's own stderr is always kept (and shown when
    /// the serial output is), for the error report.
    pub fn start(config: &RunConfig, capture_serial: bool) -> Result<RunningQemu, SetupError> {
        let mut command = qemu_command(config)?;
        let qmp_socket = config.pvpanic.then(qmp::socket_path);
        if let Some(path) = &qmp_socket {
            command.arg("-qmp").arg(qmp::qemu_option(path));
        }
        if let Some(json) = &config.trace {
            // An earlier run's files must not pass for this one's if QEMU
            // never gets to write the stream, or it cannot be converted.
            for path in [trace::raw_path(json), json.clone(), trace::svg_path(json)] {
                let _ = std::fs::remove_file(path);
            }
        }
        let mut child = spawn(command)?;
        let echo = (!capture_serial).then_some(echo_to_stderr as fn(&[u8]));
        let stderr = collect(child.stderr.take().unwrap(), echo);
        let buffer = capture_serial.then(|| Arc::new(Mutex::new(Vec::new())));
        let report_began = qmp::Moment::default();
        let sink = SerialSink(buffer.clone(), report_began.clone());
        let stdout = child.stdout.take().unwrap();
        let guest_panicked = qmp::Heard::default();
        let stop_listening = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let listener = qmp_socket.clone().map(|path| {
            let (heard, stop) = (guest_panicked.clone(), stop_listening.clone());
            qmp::listen(path, heard, report_began.clone(), !capture_serial, stop)
        });
        let mut watcher = host_stats::Watcher::new(child.id());
        let host_interval = config.host_interval_until.as_deref().map(|l| watcher.measure_until(l));
        let reader = thread::spawn(move || pump_serial(stdout, sink, watcher));
        let trace = config.trace.clone().map(|json| (json, config.trace_window));
        Ok(RunningQemu {
            child,
            started: Instant::now(),
            serial: (buffer, reader),
            stderr,
            trace,
            qmp: Qmp { heard: guest_panicked, report_began, listener, stop_listening, qmp_socket },
            exit_on_panic: config.exit_on_panic,
            captured: capture_serial,
            host_interval,
        })
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

    /// How QEMU's threads ran and waited from its start to the line
    /// `RunConfig::host_interval_until` names (see
    /// `host_stats::Watcher::measure_until`): None until that line has come,
    /// or when none was asked for. The figures are read before the line
    /// reaches `serial_text`, so once it shows there they are here.
    pub fn host_interval(&self) -> Option<Result<host_stats::Interval, String>> {
        self.host_interval.as_ref()?.lock().unwrap().clone()
    }

    /// What QEMU printed on its stderr so far.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.0.lock().unwrap()).into_owned()
    }

    /// Whether QEMU has exited (`finish` still reports how).
    pub fn has_ended(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
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
    /// start, has passed, or once the guest panicked with `--exit-on-panic`)
    /// and returns how it ended and the serial output. A panic the runner
    /// heard is the outcome, however QEMU ended after it. With a trace asked
    /// for, converts it whatever the ending: a killed run's stream keeps every
    /// record written before the kill.
    pub fn finish(mut self, timeout: Option<Duration>) -> Result<(Outcome, String), SetupError> {
        let mut told_how_to_leave = false;
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| SetupError(format!("waiting for QEMU failed: {e}")))?
            {
                break Some(status);
            }
            let heard = *self.qmp.heard.lock().unwrap();
            let heard_at = heard.map(|(at, _)| at);
            // Not on GUEST_CRASHLOADED: that guest handles its panic itself (panic=N reboots).
            let host_to_act = heard.is_some_and(|(_, event)| event == "GUEST_PANICKED");
            let timed_out = timeout.is_some_and(|limit| self.started.elapsed() >= limit);
            if timed_out || (self.exit_on_panic && host_to_act) {
                // The kernel tells the host last, once every line and the
                // trace are out (kernel/src/panic/halt.rs): nothing is lost.
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            if let Some(at) = heard_at
                && !told_how_to_leave
                && !self.captured
                && at.elapsed() >= Duration::from_millis(500)
            {
                // Still running after the panic: halted (or spinning) on purpose.
                told_how_to_leave = true;
                eprintln!(
                    "runner: the guest is left as it is, for inspection (a run with --gdb \
                     can still be attached to); Ctrl-C ends the run, --exit-on-panic ends it \
                     at the panic"
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let (stderr, stderr_reader) = self.stderr;
        let _ = stderr_reader.join();
        // QEMU has ended, so its QMP socket is closed and the listener done.
        let Qmp { heard, report_began, listener, stop_listening, qmp_socket } = self.qmp;
        stop_listening.store(true, std::sync::atomic::Ordering::Release);
        if let Some(listener) = listener {
            let _ = listener.join();
        }
        if let Some(path) = qmp_socket {
            let _ = std::fs::remove_file(path); // QEMU was killed before the listener connected
        }
        let (buffer, reader) = self.serial;
        let _ = reader.join();
        let mut serial_text = buffer
            .map(|b| String::from_utf8_lossy(&b.lock().unwrap()).into_owned())
            .unwrap_or_default();
        if let Some(line) = qmp::heard_line(&heard, &report_began)
            && self.captured
        {
            serial_text.push_str(&format!("{line}\n"));
        }
        let stderr_text = String::from_utf8_lossy(&stderr.lock().unwrap()).into_owned();
        let outcome = match status {
            _ if heard.lock().unwrap().is_some() => {
                Outcome::Panicked { ended_by_runner: status.is_none() }
            }
            None => Outcome::TimedOut,
            Some(status) => Outcome::from_status(status.code(), stderr_text),
        };
        if let Some((json, window)) = &self.trace {
            trace::convert_after_run(json, *window);
        }
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
