//! Hearing the guest's panic from QEMU: the QMP event `GUEST_PANICKED`.
//!
//! A kernel that panics writes to the pvpanic device (see the kernel's
//! `arch::x86::pvpanic`) once its report is out; QEMU then emits
//! `GUEST_PANICKED` on its QMP socket (QEMU's qapi/run-state.json) and does
//! what `-action panic=` says, which the runner sets to `none`, so a halted
//! kernel stays halted for inspection. The runner listens on the socket and
//! says when it heard the event, counted from the report's first line; with
//! `--exit-on-panic` it then ends the run (on GUEST_PANICKED only: with
//! GUEST_CRASHLOADED the guest is handling its panic itself).
//!
//! The QMP protocol (QEMU docs/interop/qmp-spec.rst): the server greets,
//! the client must send `qmp_capabilities` before anything else, and then
//! events arrive as one JSON object per line.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// When something happened, shared between the threads that see it.
pub type Moment = Arc<Mutex<Option<Instant>>>;

/// A socket path of this run's own: QEMU creates it, the listener connects.
pub fn socket_path() -> PathBuf {
    use std::sync::atomic::AtomicU32;
    static RUNS: AtomicU32 = AtomicU32::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("kernel-qmp-{}-{run}.sock", std::process::id()))
}

/// The `-qmp` option for `path`: QEMU listens there and does not wait for
/// the runner before starting the guest (`wait=off`; `wait=on` would also
/// print "QEMU waiting for connection" on every run). QEMU sends events only
/// to a client that has finished the handshake: the listener connects within
/// 25 ms of the socket's creation and then needs one round trip, while the
/// guest's firmware alone takes seconds, so no panic can come first unless
/// the host starves the listener for that long.
pub fn qemu_option(path: &Path) -> String {
    format!("unix:{},server=on,wait=off", path.display())
}

/// Listens on `path` in a thread of its own and records the moment
/// `GUEST_PANICKED` (or `GUEST_CRASHLOADED`) arrives in `heard`, with which. With `say_now`, also says so on
/// stderr at once (see [`heard_line`]); otherwise the caller adds the line
/// to the output it keeps, after the kernel's, so it never lands inside one
/// of the kernel's lines.
pub fn listen(
    path: PathBuf,
    heard: Heard,
    report_began: Moment,
    say_now: bool,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(stream) = connect(&path, &stop) else { return };
        let _ = std::fs::remove_file(&path); // connected: the name is no longer needed
        let mut writer = match stream.try_clone() {
            Ok(writer) => writer,
            Err(_) => return,
        };
        let mut lines = BufReader::new(stream).lines();
        let _greeting = lines.next();
        if writer.write_all(b"{\"execute\": \"qmp_capabilities\"}\n").is_err() {
            return;
        }
        for line in lines.map_while(Result::ok) {
            let Some(event) = EVENTS.into_iter().find(|name| is_event(&line, name)) else {
                continue;
            };
            *heard.lock().unwrap() = Some((Instant::now(), event));
            if say_now {
                eprintln!("{}", heard_line(&heard, &report_began).unwrap_or_default());
            }
        }
    })
}

/// The events a pvpanic write raises: the host is to handle the panic, or
/// the guest handles it itself.
const EVENTS: [&str; 2] = ["GUEST_PANICKED", "GUEST_CRASHLOADED"];

/// When the panic was heard, and which event said so.
pub type Heard = Arc<Mutex<Option<(Instant, &'static str)>>>;

/// `runner: guest panicked (QMP event GUEST_PANICKED, N ms after the report
/// began)`, if an event was heard.
pub fn heard_line(heard: &Heard, report_began: &Moment) -> Option<String> {
    let (at, event) = (*heard.lock().unwrap())?;
    let after = report_began
        .lock()
        .unwrap()
        .and_then(|began| at.checked_duration_since(began))
        .map(|since| format!(", {} ms after the report began", since.as_millis()))
        .unwrap_or_default();
    Some(format!("runner: guest panicked (QMP event {event}{after})"))
}

/// Connects once QEMU has created the socket (it does so before it starts
/// the guest, but after the runner has spawned it, and a loaded host may
/// take a while); gives up when `stop` says QEMU has ended.
fn connect(path: &Path, stop: &AtomicBool) -> Option<UnixStream> {
    while !stop.load(Ordering::Acquire) {
        if let Ok(stream) = UnixStream::connect(path) {
            return Some(stream);
        }
        thread::sleep(Duration::from_millis(25));
    }
    None
}

/// Whether `line` is the QMP event `name`.
fn is_event(line: &str, name: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|message| message["event"].as_str() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_event_counts() {
        let panicked = r#"{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "GUEST_PANICKED", "data": {"action": "run"}}"#;
        assert!(is_event(panicked, "GUEST_PANICKED"));
        assert!(!is_event(r#"{"return": {}}"#, "GUEST_PANICKED"));
        assert!(!is_event(r#"{"event": "GUEST_CRASHLOADED"}"#, "GUEST_PANICKED"));
        assert!(!is_event("not json", "GUEST_PANICKED"));
    }
}
