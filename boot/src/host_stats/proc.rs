//! Reading the host's scheduler figures from Linux's `/proc`: each QEMU
//! thread's `schedstat` and name, the host's `/proc/stat` and load average.

use std::collections::BTreeMap;
use std::time::Instant;

/// One thread's counters, read from `/proc/PID/task/TID/{comm,schedstat}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadStat {
    pub name: String,
    pub run_ns: u64,
    pub wait_ns: u64,
    pub slices: u64,
}

/// Host-wide CPU time from the first line of `/proc/stat`, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCpu {
    pub busy: u64,
    pub total: u64,
    pub steal: u64,
    /// How many `cpuN` lines follow: the host's CPUs.
    pub cpus: usize,
}

/// Everything read at one end of an interval.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub taken: Instant,
    /// QEMU's process id, which is also its main thread's id.
    pub pid: u32,
    pub threads: BTreeMap<u32, ThreadStat>,
    pub host: Option<HostCpu>,
    /// The 1-minute load average.
    pub load: Option<f64>,
}

/// `run wait slices`, three decimal numbers.
pub fn parse_schedstat(text: &str) -> Option<(u64, u64, u64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

/// The thread's name: `comm` ends with a newline and is at most 15 bytes.
pub fn parse_comm(text: &str) -> String {
    text.trim_end_matches('\n').to_string()
}

/// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`,
/// then one `cpuN` line per CPU. Guest time is already inside user and nice.
pub fn parse_proc_stat(text: &str) -> Option<HostCpu> {
    let mut lines = text.lines();
    let first = lines.next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> =
        first.split_whitespace().take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    let cpus = lines.take_while(|l| l.starts_with("cpu")).count();
    Some(HostCpu { busy: total - idle, total, steal: ticks.get(7).copied().unwrap_or(0), cpus })
}

/// The first field of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn read_thread(task: &std::path::Path) -> Option<ThreadStat> {
    let (run_ns, wait_ns, slices) =
        parse_schedstat(&std::fs::read_to_string(task.join("schedstat")).ok()?)?;
    let name = parse_comm(&std::fs::read_to_string(task.join("comm")).ok()?);
    Some(ThreadStat { name, run_ns, wait_ns, slices })
}

/// Reads every thread of process `pid`. A thread that ends while it is being
/// read is left out.
pub fn snapshot(pid: u32) -> Result<Snapshot, String> {
    let taken = Instant::now();
    let dir = format!("/proc/{pid}/task");
    let tasks = std::fs::read_dir(&dir).map_err(|e| format!("cannot read {dir}: {e}"))?;
    let mut threads = BTreeMap::new();
    for task in tasks.flatten() {
        let tid = task.file_name().to_string_lossy().parse::<u32>();
        if let (Ok(tid), Some(stat)) = (tid, read_thread(&task.path())) {
            threads.insert(tid, stat);
        }
    }
    if threads.is_empty() {
        return Err(format!("no thread of {dir} has a readable schedstat"));
    }
    let read = |path| std::fs::read_to_string(path).ok();
    Ok(Snapshot {
        taken,
        pid,
        threads,
        host: read("/proc/stat").as_deref().and_then(parse_proc_stat),
        load: read("/proc/loadavg").as_deref().and_then(parse_loadavg),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_comm_and_proc_files_parse() {
        assert_eq!(
            parse_schedstat("8047713600 1028745138 40332\n"),
            Some((8047713600, 1028745138, 40332))
        );
        assert_eq!(parse_schedstat("12 34\n"), None);
        assert_eq!(parse_schedstat("x 1 2\n"), None);
        assert_eq!(parse_comm("CPU 1/TCG\n"), "CPU 1/TCG");
        let stat = "cpu  100 5 50 800 20 1 2 7 0 0\ncpu0 50 2 25 400 10 0 1 3 0 0\ncpu1 50 3 25 400 10 1 1 4 0 0\nintr 1\n";
        assert_eq!(
            parse_proc_stat(stat),
            Some(HostCpu { busy: 165, total: 985, steal: 7, cpus: 2 })
        );
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
        assert_eq!(parse_loadavg("2.10 2.26 3.29 2/83 4181\n"), Some(2.10));
    }
}
