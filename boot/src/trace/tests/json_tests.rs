//! The Chrome JSON: tracks, spans, instants, flows and counters for the
//! stories, and the rules Perfetto enforces on them.

use serde_json::json;

use super::*;
use crate::trace::format::{IRQ_BEGIN, PREEMPT_OFF, SWITCH, TICK_BEGIN, TICK_END, WAKE, reason};
use crate::trace::timeline::{
    Look, PHASE_CALL_IN, PHASE_START, PHASE_TSC_CHECK, PHASE_WAIT_FOR_RELEASE, Span, nest,
};
use crate::trace::timeline::{PREEMPT_OFF_TRACK_BASE, WAIT_TRACK_BASE};
use crate::trace::{check_flows, check_nesting, chrome};

#[test]
fn tracks_are_named_and_sorted_by_metadata_events() {
    let (_, _, json) = json_of(&stream(4, &stories::shootdown()));
    assert_eq!(json["displayTimeUnit"], "ns");
    let metadata: Vec<&Value> = trace_events(&json).filter(|e| e["ph"] == "M").collect();
    let named = |tid: u64| {
        metadata
            .iter()
            .find(|e| e["name"] == "thread_name" && e["tid"] == tid)
            .map(|e| &e["args"]["name"])
    };
    assert!(metadata.iter().any(|e| e["name"] == "process_name" && e["args"]["name"] == "kernel"));
    for cpu in 0..4 {
        assert_eq!(named(cpu), Some(&json!(format!("CPU {cpu}"))));
        assert!(metadata.iter().any(|e| e["name"] == "thread_sort_index"
            && e["tid"] == cpu
            && e["args"]["sort_index"] == cpu));
    }
    assert_eq!(named(WAIT_TRACK_BASE + 7), Some(&json!("waits of tlb-demo (thread 7)")));
    assert_eq!(named(PREEMPT_OFF_TRACK_BASE + 2), Some(&json!("CPU 2 preempt-off")));
    assert!(trace_events(&json).all(|e| e["pid"] == chrome::PID));
}

#[test]
fn the_shootdown_story_nests_and_its_flows_land_in_handlers() {
    let (_, timeline, json) = json_of(&stream(4, &stories::shootdown()));
    check_nesting(&json).unwrap();
    assert_eq!(check_flows(&json), Ok(4), "two IPIs and two calls");
    assert_eq!(timeline.mended, Default::default(), "nothing to mend in a whole story");
    // The call runs inside the IPI's handler, and the flow ends at their start.
    assert_eq!(
        spans_on(&json, 1)[1..3],
        [
            ("IPI 0xfc call-function".to_string(), 1060, 1100),
            ("call: tlb flush".to_string(), 1070, 1090)
        ]
    );
    let call = span_named(&json, 2, "call: tlb flush");
    assert_eq!((&call["args"]["call_id"], &call["args"]["from_cpu"]), (&json!("0x2a"), &json!(0)));
    let mut flow_ends: Vec<(u64, u64)> = trace_events(&json)
        .filter(|e| e["ph"] == "f")
        .map(|e| (e["tid"].as_u64().unwrap(), chrome::ns_of(&e["ts"]).unwrap()))
        .collect();
    flow_ends.sort();
    assert_eq!(flow_ends, [(1, 1060), (1, 1070), (2, 1065), (2, 1075)]);
    let instants: Vec<String> = instants_on(&json, 2).into_iter().map(|(name, _)| name).collect();
    assert_eq!(instants, ["switch", "TLB flush", "call acked"]);
}

#[test]
fn a_preempted_wait_stays_on_its_own_track() {
    let (_, _, json) = json_of(&stream(4, &stories::shootdown()));
    let waits = spans_on(&json, WAIT_TRACK_BASE + 7);
    assert_eq!(
        waits,
        [
            ("shootdown: 4 pages (preempt)".to_string(), 1000, 2020),
            ("wait (preempt)".to_string(), 1050, 2010),
            ("off CPU (preempted on CPU 0)".to_string(), 1110, 2000),
        ]
    );
    let marks = instants_on(&json, WAIT_TRACK_BASE + 7);
    assert_eq!(
        marks,
        [("preempted on CPU 0".to_string(), 1110), ("resumed on CPU 1".to_string(), 2000)]
    );
    let shootdown = span_named(&json, WAIT_TRACK_BASE + 7, "shootdown: 4 pages (preempt)");
    assert_eq!(shootdown["args"]["targets"], 2);
    assert_eq!(shootdown["args"]["lazy_cpus_skipped"], 1);
    assert_eq!(shootdown["args"]["first_page"], "0x40000000");
    // No CPU track has the wait; the real-time thread runs on CPU 0 meanwhile.
    for cpu in 0..4 {
        assert!(spans_on(&json, cpu).iter().all(|(name, _, _)| !name.starts_with("wait")));
    }
    assert!(spans_on(&json, 0).contains(&("running rt-hog".to_string(), 1110, 3000)));
    assert!(spans_on(&json, 0).contains(&("running tlb-demo".to_string(), 120, 1110)));
    assert!(spans_on(&json, 1).contains(&("idle".to_string(), 500, 2000)));
}

#[test]
fn preempt_off_spans_are_back_dated_and_run_queues_are_counters() {
    let (_, _, json) = json_of(&stream(4, &stories::shootdown()));
    assert_eq!(
        spans_on(&json, PREEMPT_OFF_TRACK_BASE + 2),
        [("kernel/src/mm/map.rs:12".to_string(), 1200, 1500)]
    );
    let counter = trace_events(&json).find(|e| e["ph"] == "C").unwrap();
    assert_eq!(counter["tid"], 2, "the queue's CPU, not the recording one");
    // The trace starts where its earliest span does, even before any event.
    let events = [E::new(0, 500, WAKE).a(1), E::new(0, 1000, PREEMPT_OFF).b(600).text("here")];
    let (_, timeline, _) = json_of(&stream(1, &events));
    assert_eq!((timeline.start_ns, timeline.end_ns), (400, 1000));
    assert_eq!(
        (&counter["name"], &counter["args"]),
        (&json!("run queue CPU 2"), &json!({"threads": 2}))
    );
}

#[test]
fn bring_up_phases_follow_each_other_on_each_ap() {
    let (_, timeline, json) = json_of(&stream(3, &stories::bring_up()));
    check_nesting(&json).unwrap();
    let phases = |tid| -> Vec<(String, u64, u64)> { spans_on(&json, tid) };
    let names = [PHASE_START, PHASE_CALL_IN, PHASE_WAIT_FOR_RELEASE, PHASE_TSC_CHECK];
    let cpu1: Vec<(String, u64, u64)> = names
        .iter()
        .zip([(110, 200), (200, 300), (300, 400), (400, 500)])
        .map(|(name, (start, end))| (name.to_string(), start, end))
        .collect();
    assert_eq!(phases(1), cpu1);
    // CPU 2 was given up while waiting for release: the phase ends there.
    let cpu2 = phases(2);
    assert_eq!(cpu2.last().unwrap(), &(PHASE_WAIT_FOR_RELEASE.to_string(), 310, 900));
    let given_up = &span_named(&json, 2, PHASE_WAIT_FOR_RELEASE)["args"];
    assert_eq!((&given_up["given_up"], &given_up["stuck_in_state"]), (&json!(true), &json!(3)));
    assert_eq!(span_named(&json, 0, "bring-up (parallel)")["args"]["tsc_warp_cycles"], 40);
    assert_eq!(phases(0), [("bring-up (parallel)".to_string(), 100, 950)]);
    // Parallel: the two APs' starts overlap.
    assert!(cpu2[0].1 < phases(1)[0].2);
    let kicks: Vec<(String, u64)> = instants_on(&json, 0);
    assert_eq!(kicks[..2], [("kick".to_string(), 110), ("kick".to_string(), 115)]);
    assert_eq!(instants_on(&json, 1), [("online".to_string(), 500)]);
    assert_eq!(timeline.mended.unfinished, 0);
}

#[test]
fn a_panic_ends_with_one_nmi_stop_per_other_cpu() {
    let events = stories::panic();
    let (trace, timeline, json) = json_of(&dump(reason::PANIC, 3, 220, &events));
    check_nesting(&json).unwrap();
    assert_eq!(check_flows(&json), Ok(2));
    for cpu in [1, 2] {
        let stops = instants_on(&json, cpu).into_iter().filter(|(n, _)| n == "stopped for panic");
        assert_eq!(stops.count(), 1);
        // The NMI never returns: its span is closed at the dump, marked so.
        let nmi = span_named(&json, cpu, "NMI");
        assert_eq!(chrome::ns_of(&nmi["ts"]).unwrap() + chrome::ns_of(&nmi["dur"]).unwrap(), 220);
        assert_eq!(nmi["args"]["unfinished"], true);
    }
    assert_eq!(timeline.mended.unfinished, 2);
    assert_eq!(span_named(&json, 1, "NMI")["args"]["interrupted_rip"], "0xffff8000000666bc");
    assert_eq!(read::instants(&json, 0)[0].args["stop_nmis_sent"], 2);
    let ends: Vec<String> = instants_on(&json, 0).into_iter().map(|(n, _)| n).collect();
    assert_eq!(ends, ["panic", "IPI sent", "IPI sent", "report printed", "halt"]);
    assert_eq!(json["otherData"]["dumps"][0]["reason"], "panic");
    assert_eq!(trace.dumps[0].ns, 220);
}

#[test]
fn a_switch_inside_a_handler_splits_it_between_the_two_threads() {
    let events = [
        E::new(0, 10, SWITCH).small(1).a(1).b(5),
        E::new(0, 100, TICK_BEGIN),
        E::new(0, 110, SWITCH).small(1).a(5).b(6).c(1),
        E::new(0, 120, TICK_END),
        E::new(0, 200, IRQ_BEGIN).small(0xfd),
    ];
    let mut bytes = header(VERSION, 1, reason::END_OF_RUN, 300);
    bytes.extend(section(0, 2, 0, &records_of(0, &events)));
    bytes.extend(trailer());
    let (_, timeline, json) = json_of(&bytes);
    check_nesting(&json).unwrap();
    assert_eq!(
        spans_on(&json, 0),
        [
            ("running thread 5".to_string(), 10, 110),
            ("timer tick".to_string(), 100, 110),
            ("running thread 6".to_string(), 110, 300),
            ("timer tick".to_string(), 110, 120),
            ("IPI 0xfd reschedule".to_string(), 200, 300),
        ]
    );
    assert_eq!(span_named(&json, 0, "timer tick")["args"]["switched_out"], true);
    assert_eq!(span_named(&json, 0, "IPI 0xfd reschedule")["args"]["unfinished"], true);
    assert_eq!(timeline.mended.unfinished, 1);
    assert_eq!(json["otherData"]["cpus"][0]["lost"], 2);
}

fn span(tid: u64, start: u64, end: u64, name: &str) -> Span {
    let (cat, look) = ("sched", Look::Running);
    Span { tid, start, end, name: name.into(), cat, look, args: Default::default(), depth: 0 }
}

#[test]
fn a_span_that_crosses_another_is_cut_in_two() {
    let spans = vec![
        span(0, 0, 100, "outer"),
        span(0, 50, 150, "crossing"),
        span(0, 60, 70, "inside"),
        span(1, 50, 150, "other track"),
    ];
    let (nested, splits) = nest(spans);
    assert_eq!(splits, 1);
    let pieces: Vec<(&str, u64, u64, usize, bool)> = nested
        .iter()
        .map(|s| (s.name.as_str(), s.start, s.end, s.depth, s.args.contains_key("continued")))
        .collect();
    assert_eq!(
        pieces,
        [
            ("outer", 0, 100, 0, false),
            ("crossing", 50, 100, 1, false),
            ("inside", 60, 70, 2, false),
            ("crossing", 100, 150, 0, true),
            ("other track", 50, 150, 0, false),
        ]
    );
}

#[test]
fn the_checkers_catch_what_perfetto_refuses() {
    let x = |tid: u64, ts: f64, dur: f64, name: &str| json!({"ph": "X", "pid": 1, "tid": tid, "ts": ts, "dur": dur, "name": name});
    let crossing = json!({"traceEvents": [x(0, 0.0, 1.0, "a"), x(0, 0.5, 1.0, "b")]});
    let error = check_nesting(&crossing).unwrap_err();
    assert!(error.contains("\"b\" [500..1500 ns] crosses \"a\" [0..1000 ns]"), "{error}");
    let apart =
        json!({"traceEvents": [x(0, 0.0, 1.0, "a"), x(1, 0.5, 1.0, "b"), x(0, 1.0, 1.0, "c")]});
    check_nesting(&apart).unwrap();
    let flow = |ph: &str, tid: u64, ts: f64| json!({"ph": ph, "bp": "e", "pid": 1, "tid": tid, "ts": ts, "id": 1, "cat": "ipi", "name": "n"});
    let mark = json!({"ph": "i", "s": "t", "pid": 1, "tid": 0, "ts": 0.0, "name": "sent"});
    let document = |events: Vec<Value>| json!({ "traceEvents": events });
    let unpaired = document(vec![x(1, 0.0, 1.0, "a"), flow("s", 0, 0.0)]);
    assert!(check_flows(&unpaired).unwrap_err().contains("1 starts and 0 ends"));
    let outside =
        document(vec![x(1, 0.0, 1.0, "a"), mark.clone(), flow("s", 0, 0.0), flow("f", 1, 2.0)]);
    assert!(check_flows(&outside).unwrap_err().contains("in no span of its track"));
    let inside =
        document(vec![x(1, 0.0, 1.0, "a"), mark.clone(), flow("s", 0, 0.0), flow("f", 1, 0.5)]);
    assert_eq!(check_flows(&inside), Ok(1));
    // At one time, what a flow binds to must come first in the file.
    let late =
        document(vec![flow("f", 1, 0.0), x(1, 0.0, 1.0, "a"), mark.clone(), flow("s", 0, 0.0)]);
    assert!(check_flows(&late).unwrap_err().contains("in no span of its track"));
    let unbound = document(vec![x(1, 0.0, 1.0, "a"), flow("s", 0, 0.0), flow("f", 1, 0.5)]);
    assert!(check_flows(&unbound).unwrap_err().contains("no instant or span to bind to"));
    let after = document(vec![x(1, 0.0, 1.0, "a"), flow("s", 0, 0.0), mark, flow("f", 1, 0.5)]);
    assert!(check_flows(&after).unwrap_err().contains("no instant or span to bind to"));
}

#[test]
fn times_read_back_as_the_exact_nanosecond() {
    let mut ns: u64 = 1;
    let mut samples = vec![0, 1, 999, 1000, 1001, 1_000_001, 123_456_789_012, 3_600_000_000_000];
    for _ in 0..20_000 {
        // A simple LCG: varied values of every size up to about an hour.
        ns = ns.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        samples.push(ns % 3_600_000_000_000);
    }
    for ns in samples {
        let text = json!(chrome::micros(ns)).to_string();
        let back = chrome::ns_of(&serde_json::from_str(&text).unwrap());
        assert_eq!(back, Some(ns), "{ns} ns written as {text}");
    }
}

#[test]
fn the_streamed_file_is_the_same_document() {
    let bytes = stream(4, &stories::shootdown());
    let (trace, timeline, json) = json_of(&bytes);
    let mut file = Vec::new();
    chrome::write(&trace, &timeline, &mut file).unwrap();
    let streamed: Value = serde_json::from_slice(&file).unwrap();
    assert_eq!(streamed, json);
    assert!(file.iter().filter(|&&b| b == b'\n').count() > 50, "one event a line");
}

#[test]
fn convert_writes_both_files_and_says_what_is_missing() {
    let dir = std::env::temp_dir().join(format!("boot-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (raw, json_path) = (dir.join("story.ktrace"), dir.join("story.json"));
    let mut bytes = header(VERSION, 1, reason::END_OF_RUN, 300);
    bytes.extend(section(0, 5, 0, &records_of(0, &[E::new(0, 10, SWITCH).small(1).a(1).b(2)])));
    std::fs::write(&raw, &bytes).unwrap(); // no trailer: cut
    let written = crate::trace::convert(&raw, &json_path, None).unwrap();
    assert_eq!(
        written.summary(),
        format!(
            "trace: 1 events on 1 CPUs (5 lost) -> {} (open in ui.perfetto.dev or \
             chrome://tracing), {}",
            json_path.display(),
            dir.join("story.svg").display()
        )
    );
    let warnings = written.warnings().join("\n");
    assert!(warnings.contains("5 events were overwritten"), "{warnings}");
    assert!(warnings.contains("the stream was cut: the stream ends in dump 1"), "{warnings}");
    let json = read::load(&json_path).unwrap();
    assert_eq!(read::track(&json, "CPU 0"), Some(0));
    assert_eq!(json["otherData"]["cut"][0], written.cuts[0].as_str());
    assert!(std::fs::read_to_string(dir.join("story.svg")).unwrap().ends_with("</svg>\n"));
    let error = crate::trace::convert(&dir.join("missing.ktrace"), &json_path, None).unwrap_err();
    assert!(error.starts_with("cannot read"), "{error}");
    std::fs::write(&raw, b"not a trace").unwrap();
    let error = crate::trace::convert(&raw, &json_path, None).unwrap_err();
    assert!(error.contains("bad magic at byte 0"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flows_read_back_from_sender_to_handler() {
    let (_, _, json) = json_of(&stream(4, &stories::shootdown()));
    let flow = |name: &str, from, to| read::ReadFlow { name: name.into(), from, to };
    let ipi = "IPI 0xfc call-function";
    assert_eq!(
        read::flows(&json),
        [
            flow("call", (0, 1010), (1, 1070)),
            flow(ipi, (0, 1020), (1, 1060)),
            flow("call", (0, 1030), (2, 1075)),
            flow(ipi, (0, 1040), (2, 1065)),
        ]
    );
    assert_eq!(read::track(&json, "waits of tlb-demo (thread 7)"), Some(WAIT_TRACK_BASE + 7));
}
