//! What the host did to QEMU's threads while the kernel measured something.
//!
//! Under TCG every vCPU is a host thread, and on a small host those threads
//! compete for cores with each other, with QEMU's main loop and with whatever
//! else runs there. A vCPU thread that waits for a host core freezes its
//! virtual CPU, yet the guest's TSC keeps counting, so the kernel sees a long
//! wake-up latency or preempt-off span that no guest code caused. The guest
//! cannot see this; the host can. Linux keeps, for every thread,
//! `/proc/PID/task/TID/schedstat`: nanoseconds run on a CPU, nanoseconds spent
//! runnable but waiting on a run queue, and the number of timeslices.
//!
//! The protocol: the kernel prints `HOSTSTAT begin LABEL` and `HOSTSTAT end
//! LABEL` on its console (kernel/src/host_stats.rs) around a measured phase.
//! The runner reads the serial output as it arrives; on `begin` it snapshots
//! every QEMU thread's schedstat and name (plus `/proc/stat` and the load
//! average), and on `end` it snapshots again and prints a `HOST LABEL ...`
//! block right after the kernel's line (see [`report`] and docs/runner.md).
//! The edges of the interval are when the runner read each line, a fraction
//! of a millisecond after the guest printed it unless the runner itself
//! waited for a core; `wall_ms` is the interval the figures cover.
//!
//! Thread names such as `CPU 1/TCG` exist only because the runner passes
//! `-name debug-threads=on`; without it every thread is `qemu-system-x86`.

mod interval;
mod proc;
mod report;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use interval::{Interval, ThreadDelta, interval, is_vcpu_thread};
pub use proc::{
    HostCpu, Snapshot, ThreadStat, parse_comm, parse_loadavg, parse_proc_stat, parse_schedstat,
    snapshot,
};
pub use report::{report, vcpu_threading};

/// A `HOSTSTAT begin LABEL` or `HOSTSTAT end LABEL` line.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    Begin(&'a str),
    End(&'a str),
}

/// The marker on `line`, if it is one: the whole line, trailing `\r\n` aside.
pub fn parse_marker(line: &str) -> Option<Marker<'_>> {
    let mut words = line.trim_end().strip_prefix("HOSTSTAT ")?.split(' ');
    let (verb, label) = (words.next()?, words.next()?);
    if label.is_empty() || words.next().is_some() {
        return None;
    }
    match verb {
        "begin" => Some(Marker::Begin(label)),
        "end" => Some(Marker::End(label)),
        _ => None,
    }
}

/// Where a [`Watcher`] leaves the interval from QEMU's start to a given
/// line (see [`Watcher::measure_until`]): None until that line came, then
/// the figures or why they could not be read.
pub type Measured = Arc<Mutex<Option<Result<Interval, String>>>>;

/// A measurement from the watcher's creation to a given serial line.
struct Until {
    line: String,
    start: Result<Snapshot, String>,
    result: Measured,
}

/// Follows the markers in one QEMU's serial output.
pub struct Watcher {
    pid: u32,
    /// The `begin` snapshot of each open label, or why it could not be taken.
    open: HashMap<String, Result<Snapshot, String>>,
    /// A host wake-up probe per open label (see `wakeup_probe`).
    probes: HashMap<String, crate::wakeup_probe::Probe>,
    until: Option<Until>,
}

impl Watcher {
    pub fn new(pid: u32) -> Watcher {
        Watcher { pid, open: HashMap::new(), probes: HashMap::new(), until: None }
    }

    /// Also measures from now (QEMU's start, when the watcher is made right
    /// after it) to the first serial line that is `line`, surrounding white
    /// space aside. No `HOST` lines are added for it: the figures land in the
    /// returned slot. The end snapshot is taken as the line is read, before it
    /// is passed on, so a guest that ends right after the line (Linux's init
    /// exiting) is most likely still there to be read.
    pub fn measure_until(&mut self, line: &str) -> Measured {
        let result = Measured::default();
        let start = snapshot(self.pid);
        self.until = Some(Until { line: line.trim().to_string(), start, result: result.clone() });
        result
    }

    /// Takes a serial line; returns the lines to print after it (none unless
    /// it ends a phase).
    pub fn line(&mut self, line: &str) -> Vec<String> {
        if let Some(until) = self.until.take_if(|until| line.trim() == until.line) {
            let measured = match (until.start, snapshot(self.pid)) {
                (Ok(before), Ok(after)) => Ok(interval(&before, &after)),
                (Err(why), _) | (_, Err(why)) => Err(why),
            };
            *until.result.lock().unwrap() = Some(measured);
        }
        match parse_marker(line) {
            Some(Marker::Begin(label)) => {
                let before = snapshot(self.pid);
                // Only where the threads can be read: a host without /proc gets one line, not two.
                if before.is_ok() {
                    self.probes.insert(label.to_string(), crate::wakeup_probe::Probe::start());
                }
                self.open.insert(label.to_string(), before);
                Vec::new()
            }
            Some(Marker::End(label)) => self.end(label),
            None => Vec::new(),
        }
    }

    fn end(&mut self, label: &str) -> Vec<String> {
        let after = snapshot(self.pid);
        let probe =
            self.probes.remove(label).map(|probe| crate::wakeup_probe::line(label, &probe.stop()));
        let mut lines = self.thread_report(label, after);
        lines.extend(probe);
        lines
    }

    fn thread_report(&mut self, label: &str, after: Result<Snapshot, String>) -> Vec<String> {
        match (self.open.remove(label), after) {
            (None, _) => vec![format!(
                "HOST {label} unavailable: no 'HOSTSTAT begin {label}' came before this end"
            )],
            (Some(Ok(before)), Ok(after)) => report(label, &interval(&before, &after)),
            (Some(Err(why)), _) | (Some(Ok(_)), Err(why)) => {
                vec![format!(
                    "HOST {label} unavailable: {why} (per-thread figures need Linux's /proc)"
                )]
            }
        }
    }
}

/// Threads and snapshots for the tests of each part.
#[cfg(test)]
mod fixtures {
    use std::time::Instant;

    use super::{HostCpu, Snapshot, ThreadStat};

    pub fn thread(name: &str, run_ms: u64, wait_ms: u64, slices: u64) -> ThreadStat {
        ThreadStat {
            name: name.into(),
            run_ns: run_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
            slices,
        }
    }

    pub fn snap(taken: Instant, threads: &[(u32, ThreadStat)], host: Option<HostCpu>) -> Snapshot {
        Snapshot {
            taken,
            pid: 100,
            threads: threads.iter().cloned().collect(),
            host,
            load: Some(1.5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_whole_lines() {
        assert_eq!(parse_marker("HOSTSTAT begin tlb.spin\r\n"), Some(Marker::Begin("tlb.spin")));
        assert_eq!(parse_marker("HOSTSTAT end tlb.spin\n"), Some(Marker::End("tlb.spin")));
        assert_eq!(parse_marker("HOSTSTAT end\n"), None);
        assert_eq!(parse_marker("HOSTSTAT end two words\n"), None);
        assert_eq!(parse_marker("HOSTSTAT pause x\n"), None);
        assert_eq!(parse_marker("say HOSTSTAT begin x\n"), None);
    }

    #[test]
    fn without_proc_one_line_says_so() {
        let mut watcher = Watcher::new(u32::MAX);
        assert!(watcher.line("HOSTSTAT begin x\n").is_empty());
        let lines = watcher.line("HOSTSTAT end x\n");
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].starts_with("HOST x unavailable: cannot read /proc/4294967295/task"),
            "{lines:?}"
        );
        assert!(watcher.line("HOSTSTAT end y\n")[0].contains("no 'HOSTSTAT begin y'"));
        assert!(watcher.line("an ordinary line\n").is_empty());
    }

    #[test]
    fn a_run_is_measured_from_the_start_to_its_line() {
        let own_pid = std::process::id();
        let mut watcher = Watcher::new(own_pid);
        let measured = watcher.measure_until("bench: done");
        assert!(watcher.line("bench: done soon\r\n").is_empty());
        assert!(measured.lock().unwrap().is_none());
        assert!(watcher.line("  bench: done\r\n").is_empty());
        let interval = measured.lock().unwrap().take().unwrap().unwrap();
        assert!(interval.threads.iter().any(|t| t.main), "{interval:?}");
        // Only the first such line ends it.
        watcher.line("bench: done\n");
        assert!(measured.lock().unwrap().is_none());
        let mut gone = Watcher::new(u32::MAX);
        let measured = gone.measure_until("bench: done");
        gone.line("bench: done\n");
        let why = measured.lock().unwrap().take().unwrap().unwrap_err();
        assert!(why.starts_with("cannot read /proc/4294967295/task"), "{why}");
    }
}
