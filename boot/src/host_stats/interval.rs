//! What happened between two snapshots: per-thread run and wait times, with
//! threads that started, ended or had their id reused told apart.

use std::time::Duration;

use super::proc::{HostCpu, Snapshot, ThreadStat};

/// One thread over an interval.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadDelta {
    pub name: String,
    pub main: bool,
    /// It appeared during the interval: its counters count from zero.
    pub new: bool,
    pub run_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

impl ThreadDelta {
    pub(super) fn is_vcpu(&self) -> bool {
        is_vcpu_thread(&self.name)
    }
}

/// QEMU names its vCPU threads `CPU N/TCG` (multi-threaded TCG), `CPU N/KVM`,
/// or `ALL CPUs/TCG` (single-threaded TCG: one thread runs every vCPU).
pub fn is_vcpu_thread(name: &str) -> bool {
    name.starts_with("CPU ") && (name.ends_with("/TCG") || name.ends_with("/KVM"))
        || name == "ALL CPUs/TCG"
}

/// What happened between two snapshots.
#[derive(Clone, Debug)]
pub struct Interval {
    pub wall: Duration,
    /// Busiest (most run time) first.
    pub threads: Vec<ThreadDelta>,
    /// Threads that ended during the interval: their last counters are lost.
    pub ended: usize,
    /// Host-wide ticks over the interval.
    pub host: Option<HostCpu>,
    pub load: Option<f64>,
}

/// Whether `now` is the same thread as `before`: a thread id reused by a new
/// thread shows as another name or counters that went back.
fn continues(before: &ThreadStat, now: &ThreadStat) -> bool {
    before.name == now.name && before.run_ns <= now.run_ns && before.wait_ns <= now.wait_ns
}

fn thread_delta(tid: u32, pid: u32, now: &ThreadStat, before: Option<&ThreadStat>) -> ThreadDelta {
    let before = before.filter(|b| continues(b, now));
    let (run, wait, slices) = before.map_or((0, 0, 0), |b| (b.run_ns, b.wait_ns, b.slices));
    ThreadDelta {
        name: now.name.clone(),
        main: tid == pid,
        new: before.is_none(),
        run_ns: now.run_ns - run,
        wait_ns: now.wait_ns - wait,
        slices: now.slices.saturating_sub(slices),
    }
}

fn host_delta(before: Option<HostCpu>, after: Option<HostCpu>) -> Option<HostCpu> {
    let (b, a) = (before?, after?);
    Some(HostCpu {
        busy: a.busy.saturating_sub(b.busy),
        total: a.total.saturating_sub(b.total),
        steal: a.steal.saturating_sub(b.steal),
        cpus: a.cpus,
    })
}

/// The differences between `before` and `after`, threads busiest first.
pub fn interval(before: &Snapshot, after: &Snapshot) -> Interval {
    let mut threads: Vec<ThreadDelta> = after
        .threads
        .iter()
        .map(|(&tid, now)| thread_delta(tid, after.pid, now, before.threads.get(&tid)))
        .collect();
    threads.sort_by(|a, b| b.run_ns.cmp(&a.run_ns).then(b.wait_ns.cmp(&a.wait_ns)));
    let ended = before
        .threads
        .iter()
        .filter(|(tid, b)| !after.threads.get(tid).is_some_and(|now| continues(b, now)));
    Interval {
        wall: after.taken.saturating_duration_since(before.taken),
        threads,
        ended: ended.count(),
        host: host_delta(before.host, after.host),
        load: after.load,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::fixtures::{snap, thread};
    use super::*;

    #[test]
    fn deltas_handle_threads_that_come_go_and_reuse_ids() {
        let t0 = Instant::now();
        let before = snap(
            t0,
            &[
                (100, thread("qemu-system-x86", 10, 1, 5)),
                (101, thread("CPU 0/TCG", 100, 10, 50)),
                (102, thread("worker", 5, 0, 3)),
                (103, thread("worker", 7, 0, 3)),
            ],
            Some(HostCpu { busy: 1000, total: 2000, steal: 0, cpus: 2 }),
        );
        let after = snap(
            t0 + Duration::from_millis(1000),
            &[
                (100, thread("qemu-system-x86", 30, 2, 9)),
                (101, thread("CPU 0/TCG", 900, 60, 90)),
                (103, thread("CPU 1/TCG", 400, 0, 10)),
                (104, thread("worker", 3, 1, 2)),
            ],
            Some(HostCpu { busy: 1190, total: 2200, steal: 4, cpus: 2 }),
        );
        let iv = interval(&before, &after);
        assert_eq!(iv.wall, Duration::from_millis(1000));
        let names: Vec<&str> = iv.threads.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["CPU 0/TCG", "CPU 1/TCG", "qemu-system-x86", "worker"]);
        let cpu0 = &iv.threads[0];
        assert_eq!(
            (cpu0.run_ns, cpu0.wait_ns, cpu0.slices, cpu0.new),
            (800_000_000, 50_000_000, 40, false)
        );
        // Thread 103 was a worker and is now a vCPU thread: a new thread, counted in full.
        assert!(iv.threads[1].new && iv.threads[1].run_ns == 400_000_000);
        assert!(iv.threads[2].main && !iv.threads[2].new);
        assert!(iv.threads[3].new);
        // 102 ended, and 103's worker ended before its id was reused.
        assert_eq!(iv.ended, 2);
        assert_eq!(iv.host, Some(HostCpu { busy: 190, total: 200, steal: 4, cpus: 2 }));
    }
}
