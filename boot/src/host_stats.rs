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

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Threads that ran and waited less than this share of the interval are
/// counted on one line, unless they run a vCPU.
const IDLE_PERCENT: f64 = 1.0;

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
    fn is_vcpu(&self) -> bool {
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

/// `97%`, `6.3%`: whole percents from 10 up, one decimal below.
fn percent(part: u64, whole: u64) -> String {
    let value = part as f64 * 100.0 / whole.max(1) as f64;
    if value >= 10.0 { format!("{value:.0}%") } else { format!("{value:.1}%") }
}

fn ms(ns: u64) -> u64 {
    (ns + 500_000) / 1_000_000
}

/// Which threading the vCPU thread names show.
pub fn vcpu_threading(threads: &[ThreadDelta]) -> String {
    let named =
        |t: &&ThreadDelta, suffix: &str| t.name.starts_with("CPU ") && t.name.ends_with(suffix);
    let count = |suffix: &str| threads.iter().filter(|t| named(t, suffix)).count();
    if threads.iter().any(|t| t.name == "ALL CPUs/TCG") {
        "single-threaded TCG (one thread runs every vCPU)".into()
    } else if count("/TCG") > 0 {
        format!("multi-threaded TCG, {}", count_of(count("/TCG"), "vCPU thread"))
    } else if count("/KVM") > 0 {
        format!("KVM, {}", count_of(count("/KVM"), "vCPU thread"))
    } else {
        "vCPU threads not named (QEMU without -name debug-threads=on?)".into()
    }
}

/// `1 vCPU thread`, `4 vCPU threads`.
fn count_of(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// ` host_cpus=2 host_busy=197% qemu_run=99% other=98% steal=0.0%`. `other`
/// is the host's busy time that was not QEMU's: other processes, this runner.
fn host_fields(host: HostCpu, qemu_ns: u64, wall_ns: u64) -> String {
    // Ticks are summed over all CPUs: as a time on one core, 100% is one host core.
    let one_core_ns =
        |ticks: u64| (ticks as f64 * host.cpus as f64 / host.total as f64 * wall_ns as f64) as u64;
    let busy_ns = one_core_ns(host.busy);
    format!(
        " host_cpus={} host_busy={} qemu_run={} other={} steal={}",
        host.cpus,
        percent(busy_ns, wall_ns),
        percent(qemu_ns, wall_ns),
        percent(busy_ns.saturating_sub(qemu_ns), wall_ns),
        percent(one_core_ns(host.steal), wall_ns)
    )
}

fn header(label: &str, iv: &Interval, wall_ns: u64) -> String {
    let mut line = format!("HOST {label} wall_ms={}", ms(wall_ns));
    if let Some(host) = iv.host.filter(|h| h.total > 0) {
        line += &host_fields(host, iv.threads.iter().map(|t| t.run_ns).sum(), wall_ns);
    }
    if let Some(load) = iv.load {
        line += &format!(" load={load:.2}");
    }
    line + &format!(" threads: {}", vcpu_threading(&iv.threads))
}

fn thread_line(label: &str, t: &ThreadDelta, wall_ns: u64) -> String {
    format!(
        "HOST {label} thread=\"{}\"{}{} run_ms={} ({}) wait_ms={} ({}) slices={}",
        t.name,
        if t.main { " (main loop)" } else { "" },
        if t.new { " (new)" } else { "" },
        ms(t.run_ns),
        percent(t.run_ns, wall_ns),
        ms(t.wait_ns),
        percent(t.wait_ns, wall_ns),
        t.slices
    )
}

fn is_idle(t: &ThreadDelta, wall_ns: u64) -> bool {
    let share = |ns: u64| ns as f64 * 100.0 / wall_ns.max(1) as f64;
    !t.is_vcpu() && share(t.run_ns) < IDLE_PERCENT && share(t.wait_ns) < IDLE_PERCENT
}

/// One line for the idle threads: how many, by name, and their total times.
fn idle_line(label: &str, idle: &[&ThreadDelta]) -> String {
    let mut names: Vec<(String, usize)> = Vec::new();
    for t in idle {
        match names.iter_mut().find(|(n, _)| *n == t.name) {
            Some((_, count)) => *count += 1,
            None => names.push((t.name.clone(), 1)),
        }
    }
    let names: Vec<String> = names
        .iter()
        .map(|(n, c)| if *c == 1 { format!("\"{n}\"") } else { format!("{c} \"{n}\"") })
        .collect();
    format!(
        "HOST {label} {} (run and wait <{IDLE_PERCENT}% each: {}) run_ms={} wait_ms={}",
        count_of(idle.len(), "idle thread"),
        names.join(", "),
        ms(idle.iter().map(|t| t.run_ns).sum()),
        ms(idle.iter().map(|t| t.wait_ns).sum())
    )
}

fn summary(label: &str, iv: &Interval, wall_ns: u64) -> String {
    let pct = |ns| percent(ns, wall_ns);
    let vcpus: Vec<&ThreadDelta> = iv.threads.iter().filter(|t| t.is_vcpu()).collect();
    let mut line = format!("HOST {label} vcpus: ");
    match vcpus.split_first() {
        None => line += "none named",
        Some((busiest, others)) => {
            line += &format!("busiest run={} wait={}", pct(busiest.run_ns), pct(busiest.wait_ns));
            if !others.is_empty() {
                let max = |f: fn(&&ThreadDelta) -> u64| others.iter().map(f).max().unwrap_or(0);
                line += &format!(
                    ", others run<={} wait<={}",
                    pct(max(|t| t.run_ns)),
                    pct(max(|t| t.wait_ns))
                );
            }
        }
    }
    if let Some(main) = iv.threads.iter().find(|t| t.main) {
        line += &format!("; main loop run={} wait={}", pct(main.run_ns), pct(main.wait_ns));
    }
    line
}

/// The block printed after `HOSTSTAT end LABEL`: a header, one line per
/// thread (busiest first; idle threads other than vCPUs share one line), and
/// a summary of the vCPU threads and the main loop. Run and wait are shares
/// of the interval's wall time: 100% is one host core for the whole interval.
pub fn report(label: &str, iv: &Interval) -> Vec<String> {
    let wall_ns = iv.wall.as_nanos().max(1) as u64;
    let (idle, busy): (Vec<&ThreadDelta>, Vec<&ThreadDelta>) =
        iv.threads.iter().partition(|t| is_idle(t, wall_ns));
    let mut lines = vec![header(label, iv, wall_ns)];
    lines.extend(busy.iter().map(|t| thread_line(label, t, wall_ns)));
    if !idle.is_empty() {
        lines.push(idle_line(label, &idle));
    }
    if iv.ended > 0 {
        let ended = count_of(iv.ended, "thread");
        lines.push(format!(
            "HOST {label} {ended} ended during the interval; their time is not counted"
        ));
    }
    lines.push(summary(label, iv, wall_ns));
    lines
}

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

/// Follows the markers in one QEMU's serial output.
pub struct Watcher {
    pid: u32,
    /// The `begin` snapshot of each open label, or why it could not be taken.
    open: HashMap<String, Result<Snapshot, String>>,
    /// A host wake-up probe per open label (see `wakeup_probe`).
    probes: HashMap<String, crate::wakeup_probe::Probe>,
}

impl Watcher {
    pub fn new(pid: u32) -> Watcher {
        Watcher { pid, open: HashMap::new(), probes: HashMap::new() }
    }

    /// Takes a serial line; returns the lines to print after it (none unless
    /// it ends a phase).
    pub fn line(&mut self, line: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn thread(name: &str, run_ms: u64, wait_ms: u64, slices: u64) -> ThreadStat {
        ThreadStat {
            name: name.into(),
            run_ns: run_ms * 1_000_000,
            wait_ns: wait_ms * 1_000_000,
            slices,
        }
    }

    fn snap(taken: Instant, threads: &[(u32, ThreadStat)], host: Option<HostCpu>) -> Snapshot {
        Snapshot {
            taken,
            pid: 100,
            threads: threads.iter().cloned().collect(),
            host,
            load: Some(1.5),
        }
    }

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

    #[test]
    fn the_report_is_busiest_first_with_idle_threads_collapsed() {
        let t0 = Instant::now();
        let vcpus = (0..4).map(|n| (101 + n, thread(&format!("CPU {n}/TCG"), 0, 0, 0)));
        let mut first: Vec<(u32, ThreadStat)> = vcpus.collect();
        first.extend([
            (100, thread("qemu-system-x86", 0, 0, 0)),
            (105, thread("worker", 0, 0, 0)),
            (106, thread("worker", 0, 0, 0)),
            (99, thread("qemu-system-x86", 0, 0, 0)),
        ]);
        let second = [
            (100, thread("qemu-system-x86", 20, 1, 40)),
            (101, thread("CPU 0/TCG", 5, 0, 3)),
            (102, thread("CPU 1/TCG", 970, 14, 800)),
            (103, thread("CPU 2/TCG", 60, 2, 50)),
            (104, thread("CPU 3/TCG", 3, 0, 2)),
            (105, thread("worker", 2, 0, 9)),
            (106, thread("worker", 1, 0, 4)),
            (99, thread("qemu-system-x86", 0, 0, 0)),
        ];
        let host = |busy, total| Some(HostCpu { busy, total, steal: 0, cpus: 2 });
        let before = snap(t0, &first, host(100, 200));
        let after = snap(t0 + Duration::from_secs(1), &second, host(250, 400));
        let iv = interval(&before, &after);
        let lines = report("tlb.spin", &iv);
        let expected = [
            "HOST tlb.spin wall_ms=1000 host_cpus=2 host_busy=150% qemu_run=106% other=44% steal=0.0% load=1.50 \
             threads: multi-threaded TCG, 4 vCPU threads",
            "HOST tlb.spin thread=\"CPU 1/TCG\" run_ms=970 (97%) wait_ms=14 (1.4%) slices=800",
            "HOST tlb.spin thread=\"CPU 2/TCG\" run_ms=60 (6.0%) wait_ms=2 (0.2%) slices=50",
            "HOST tlb.spin thread=\"qemu-system-x86\" (main loop) run_ms=20 (2.0%) wait_ms=1 (0.1%) slices=40",
            "HOST tlb.spin thread=\"CPU 0/TCG\" run_ms=5 (0.5%) wait_ms=0 (0.0%) slices=3",
            "HOST tlb.spin thread=\"CPU 3/TCG\" run_ms=3 (0.3%) wait_ms=0 (0.0%) slices=2",
            "HOST tlb.spin 3 idle threads (run and wait <1% each: 2 \"worker\", \"qemu-system-x86\") run_ms=3 wait_ms=0",
            "HOST tlb.spin vcpus: busiest run=97% wait=1.4%, others run<=6.0% wait<=0.2%; main loop run=2.0% wait=0.1%",
        ];
        assert_eq!(lines, expected);
    }

    #[test]
    fn threading_is_read_from_thread_names() {
        let named = |names: &[&str]| -> Vec<ThreadDelta> {
            let zero = |n: &&str| ThreadDelta {
                name: n.to_string(),
                main: false,
                new: false,
                run_ns: 0,
                wait_ns: 0,
                slices: 0,
            };
            names.iter().map(zero).collect()
        };
        assert_eq!(
            vcpu_threading(&named(&["CPU 0/TCG", "CPU 1/TCG", "worker"])),
            "multi-threaded TCG, 2 vCPU threads"
        );
        assert!(vcpu_threading(&named(&["ALL CPUs/TCG"])).starts_with("single-threaded TCG"));
        assert_eq!(vcpu_threading(&named(&["CPU 0/KVM"])), "KVM, 1 vCPU thread");
        assert!(vcpu_threading(&named(&["qemu-system-x86"])).starts_with("vCPU threads not named"));
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
}
