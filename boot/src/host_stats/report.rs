//! The `HOST LABEL ...` lines printed after a phase (their fields are
//! described in docs/runner.md).

use super::interval::{Interval, ThreadDelta};
use super::proc::HostCpu;

/// Threads that ran and waited less than this share of the interval are
/// counted on one line, unless they run a vCPU.
const IDLE_PERCENT: f64 = 1.0;

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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::fixtures::{snap, thread};
    use super::super::interval::interval;
    use super::super::proc::ThreadStat;
    use super::*;

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
}
