//! The event trace: each test boots with `--trace`, reads the Chrome JSON the
//! runner wrote, and checks that it tells the story docs/tracing.md shows.
//! Every trace must also be one Perfetto accepts (spans nest on each track,
//! flows bind) and come with a well-formed SVG.

use std::path::PathBuf;

use boot::trace::read::{self, ReadSpan};
use boot::trace::{Json, check_flows, check_nesting};

use super::*;

/// Boots with `kernel_args` and tracing to a file named after `name`;
/// returns the run and the trace, checked for what every trace must be.
fn traced_boot(name: &str, cpus: u32, kernel_args: &[&str]) -> (Run, Json) {
    let json_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    let run = boot_with(RunConfig {
        cpus,
        kernel_args: kernel_args.iter().map(|a| a.to_string()).collect(),
        trace: Some(json_path.clone()),
        ..RunConfig::default()
    });
    let json = read::load(&json_path).unwrap_or_else(|error| {
        panic!("no trace at {}: {error}; {}", json_path.display(), run.explain())
    });
    check_nesting(&json).unwrap_or_else(|error| panic!("{name}: spans do not nest: {error}"));
    check_flows(&json).unwrap_or_else(|error| panic!("{name}: flows do not bind: {error}"));
    let svg_path = boot::trace::svg_path(&json_path);
    let svg = std::fs::read_to_string(&svg_path)
        .unwrap_or_else(|error| panic!("no SVG at {}: {error}", svg_path.display()));
    roxmltree::Document::parse(&svg)
        .unwrap_or_else(|error| panic!("{}: not well-formed XML: {error}", svg_path.display()));
    (run, json)
}

fn cpu_track(json: &Json, cpu: usize) -> u64 {
    read::track(json, &format!("CPU {cpu}")).unwrap_or_else(|| panic!("no track for CPU {cpu}"))
}

/// The one span named `name` on `tid`.
fn only_span(json: &Json, tid: u64, name: &str) -> ReadSpan {
    let mut found = read::spans(json, tid).into_iter().filter(|s| s.name == name);
    let span = found.next().unwrap_or_else(|| panic!("no span {name:?} on track {tid}"));
    assert!(found.next().is_none(), "more than one span {name:?} on track {tid}");
    span
}

/// One AP's bring-up phases, in the order they must come.
const AP_PHASES: [&str; 4] = [
    "start: INIT/SIPI to first code",
    "call in: tables, APIC, timer",
    "wait for release",
    "TSC check",
];

/// Each AP's phases as (start, end) in order, checked to follow each other.
fn ap_phases(json: &Json, cpu: usize) -> Vec<(u64, u64)> {
    let tid = cpu_track(json, cpu);
    let phases: Vec<(u64, u64)> = AP_PHASES
        .iter()
        .map(|name| {
            let span = only_span(json, tid, name);
            (span.start, span.end)
        })
        .collect();
    for (pair, names) in phases.windows(2).zip(AP_PHASES.windows(2)) {
        assert!(
            pair[0].0 <= pair[0].1 && pair[0].1 <= pair[1].0,
            "CPU {cpu}: {:?} ({:?}) does not end before {:?} ({:?}) begins",
            names[0],
            pair[0],
            names[1],
            pair[1]
        );
    }
    let online = read::instants(json, tid).into_iter().any(|i| i.name == "online");
    assert!(online, "CPU {cpu} has no 'online' mark");
    phases
}

#[test]
fn trace_of_parallel_bring_up_shows_each_ap_in_order_and_all_at_once() {
    let (run, json) = traced_boot("bring-up-parallel", 4, &["trace=smp,ipi", "then=exit"]);
    run.expect(Outcome::KernelSuccess);
    let phases: Vec<Vec<(u64, u64)>> = (1..4).map(|cpu| ap_phases(&json, cpu)).collect();
    // Every AP kicked before any is released into the TSC check: each AP's
    // bring-up, from its kick to its release, spans the moment of the last
    // kick, so all of them overlap. (Which AP reaches its first code first is
    // up to the host's scheduling; this order is the kernel's.)
    let last_kick = phases.iter().map(|p| p[0].0).max().unwrap();
    let first_release = phases.iter().map(|p| p[3].0).min().unwrap();
    assert!(
        last_kick < first_release,
        "parallel bring-up: the last AP was kicked at {last_kick} ns, after the first was released at {first_release} ns"
    );
}

#[test]
fn trace_of_serial_bring_up_shows_one_ap_after_the_other() {
    let (run, json) =
        traced_boot("bring-up-serial", 4, &["trace=smp,ipi", "smp=serial", "then=exit"]);
    run.expect(Outcome::KernelSuccess);
    let phases: Vec<Vec<(u64, u64)>> = (1..4).map(|cpu| ap_phases(&json, cpu)).collect();
    for (cpu, pair) in (1..).zip(phases.windows(2)) {
        assert!(
            pair[0][3].1 <= pair[1][0].0,
            "serial bring-up: CPU {} was kicked before CPU {cpu} was through its TSC check",
            cpu + 1
        );
    }
}

/// The scene of `tlb_realtime_thread_during_a_slow_shootdown` (CPU 1 shoots
/// down a page CPU 3 caches while CPU 3 is deaf; a real-time thread wakes on
/// CPU 1 meanwhile), traced in `mode`. Checks the shootdown's order and
/// returns (the shootdown's span, the time CPU 3 acknowledged, the real-time
/// thread's first run on CPU 1 after the shootdown began).
fn slow_shootdown(mode: &str) -> (ReadSpan, u64, ReadSpan) {
    let ipi_wait = format!("ipi_wait={mode}");
    let args = ["trace=all", &ipi_wait, "test=tlb_realtime_thread_during_a_slow_shootdown"];
    let (run, json) = traced_boot(&format!("shootdown-{mode}"), 4, &args);
    run.expect(Outcome::KernelSuccess).expect_line("1 passed, 0 failed");

    let waits = read::tracks(&json)
        .into_iter()
        .find(|(_, name)| name.starts_with("waits of initiator"))
        .unwrap_or_else(|| panic!("{mode}: no track of the initiator's waits"))
        .0;
    let shootdown = only_span(&json, waits, &format!("shootdown: 1 page ({mode})"));
    let within = |ns: u64| shootdown.start <= ns && ns <= shootdown.end;
    let (initiator, target) = (cpu_track(&json, 1), cpu_track(&json, 3));

    let ipi = read::instants(&json, initiator)
        .into_iter()
        .find(|i| i.name == "IPI sent" && i.args["target_cpu"] == 3 && within(i.ns))
        .unwrap_or_else(|| panic!("{mode}: no IPI to CPU 3 during the shootdown"));
    let target_marks = read::instants(&json, target);
    let flush = target_marks
        .iter()
        .find(|i| i.name == "TLB flush" && within(i.ns))
        .unwrap_or_else(|| panic!("{mode}: CPU 3 did not flush during the shootdown"));
    let ack = target_marks
        .iter()
        .find(|i| i.name == "call acked" && i.ns >= flush.ns && within(i.ns))
        .unwrap_or_else(|| panic!("{mode}: CPU 3 did not acknowledge after its flush"));
    assert!(
        ipi.ns < flush.ns,
        "{mode}: CPU 3 flushed ({} ns) before the IPI ({} ns)",
        flush.ns,
        ipi.ns
    );
    assert_eq!(flush.args["flushed"], "the range", "{mode}: CPU 3's flush: {}", flush.args);

    // Its run after the timer woke it: the one that does its 5 ms of work
    // (its first run, to go to sleep, is short).
    let urgent = read::spans(&json, initiator)
        .into_iter()
        .find(|s| s.name == "running urgent" && s.end - s.start >= 4_000_000)
        .unwrap_or_else(|| panic!("{mode}: the real-time thread never did its work on CPU 1"));
    (shootdown, ack.ns, urgent)
}

#[test]
fn trace_of_a_preemptible_wait_shows_the_realtime_thread_running_while_it_waits() {
    let (shootdown, acked, urgent) = slow_shootdown("preempt");
    assert!(
        urgent.start < acked,
        "preempt mode: the real-time thread first ran on CPU 1 at {} ns, after CPU 3 acknowledged at {acked} ns \
         (shootdown {}..{} ns)",
        urgent.start,
        shootdown.start,
        shootdown.end
    );
}

#[test]
fn trace_of_a_spinning_wait_shows_the_realtime_thread_kept_out_until_the_end() {
    let (shootdown, acked, urgent) = slow_shootdown("spin");
    assert!(
        urgent.start > acked,
        "spin mode: the real-time thread ran on CPU 1 at {} ns, before CPU 3 acknowledged at {acked} ns \
         (shootdown {}..{} ns)",
        urgent.start,
        shootdown.start,
        shootdown.end
    );
}

#[test]
fn trace_of_a_panic_ends_with_one_stop_per_other_cpu() {
    let (run, json) = traced_boot("panic", 4, &["trace=all", "then=panic", "panic=exit"]);
    run.expect(PANIC_EXITED).expect_count("---- kernel panic", 1);
    let owner = read::instants(&json, cpu_track(&json, 0));
    let panic_at = owner
        .iter()
        .find(|i| i.name == "panic")
        .unwrap_or_else(|| panic!("no panic mark on CPU 0"));
    assert_eq!(panic_at.args["stop_nmis_sent"], 3, "stop NMIs: {}", panic_at.args);
    let last_on_owner = owner.last().map(|i| i.name.as_str());
    assert_eq!(last_on_owner, Some("halt"), "CPU 0's last mark is not the halt");
    for cpu in 1..4 {
        let marks = read::instants(&json, cpu_track(&json, cpu));
        let stops: Vec<u64> =
            marks.iter().filter(|i| i.name == "stopped for panic").map(|i| i.ns).collect();
        assert_eq!(stops.len(), 1, "CPU {cpu} stopped {} times", stops.len());
        assert!(stops[0] > panic_at.ns, "CPU {cpu} stopped before the panic began");
        let last = marks.last().map(|i| i.name.as_str());
        assert_eq!(last, Some("stopped for panic"), "CPU {cpu}'s trace goes on after its stop");
    }
}
