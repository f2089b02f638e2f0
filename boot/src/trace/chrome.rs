//! The timeline as Chrome Trace Event JSON, the format ui.perfetto.dev and
//! chrome://tracing open (its reference: "Trace Event Format", the Google
//! document that Chrome's trace viewer defines it in).
//!
//! ```text
//! {"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}
//! ```
//!
//! Everything is in process 1, "kernel"; each track is a thread of it (`tid`,
//! named by `M` events, see [`super::timeline`] for the numbering). Spans are
//! `X` events with `dur`, instants `i` with thread scope, arrows a flow start
//! `s` on the sender and a flow end `f` (`bp: "e"`: bound to the span that
//! encloses it) on the receiver, and run-queue lengths `C` counters.
//!
//! Perfetto binds a flow's ends to the innermost slice open on the track
//! when it reads them, taking events of equal time in file order, and reads
//! an instant as a slice of no length. So the file lists spans, then
//! instants, then flows: an arrow starts at the instant of its send (`IPI
//! sent`, `call queued`) and ends at the start of its handler's span.
//! [`super::checks::check_flows`] checks both.
//!
//! Times are microseconds, as the format wants, written as floats. Perfetto
//! reads a float time by multiplying by 1000 and dropping the fraction, so
//! 1.001 µs (stored as 1.000999...) would come back as 1000 ns and a span
//! ending there could stick out of its parent by 1 ns, which Perfetto
//! refuses. [`micros`] writes the float that comes back as the exact ns.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use super::Trace;
use super::names;
use super::timeline::Timeline;

/// The `pid` of every event.
pub const PID: u64 = 1;

/// `ns` in microseconds: the first float at or above ns/1000 that reads back,
/// multiplied by 1000 and truncated, as `ns` (see the module docs).
pub fn micros(ns: u64) -> f64 {
    let mut value = ns as f64 / 1000.0;
    while ((value * 1000.0) as u64) < ns {
        value = value.next_up();
    }
    value
}

/// A time as Perfetto reads it back: microseconds times 1000, truncated.
pub fn ns_of(micros: &Value) -> Option<u64> {
    match micros {
        Value::Number(number) => number.as_u64().map(|n| n * 1000).or_else(|| {
            let value = number.as_f64()?;
            (value >= 0.0).then_some((value * 1000.0) as u64)
        }),
        _ => None,
    }
}

/// The whole JSON document, as a value (for tests; [`write()`] streams it).
pub fn to_json(trace: &Trace, timeline: &Timeline) -> Value {
    json!({
        "traceEvents": events(timeline).collect::<Vec<Value>>(),
        "displayTimeUnit": "ns",
        "otherData": other_data(trace, timeline),
    })
}

/// Writes the document one event at a time, one a line: a long trace's
/// events never have to be in memory as JSON values all at once.
pub fn write(trace: &Trace, timeline: &Timeline, mut out: impl Write) -> io::Result<()> {
    out.write_all(b"{\"traceEvents\":[\n")?;
    for (index, event) in events(timeline).enumerate() {
        if index > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut out, &event)?;
    }
    out.write_all(b"\n],\"displayTimeUnit\":\"ns\",\"otherData\":")?;
    serde_json::to_writer(&mut out, &other_data(trace, timeline))?;
    out.write_all(b"}\n")?;
    out.flush()
}

/// Every event of the document: metadata, spans, instants, flows, counters.
fn events(timeline: &Timeline) -> impl Iterator<Item = Value> + '_ {
    let process = json!({
        "ph": "M", "pid": PID, "tid": 0, "name": "process_name", "args": {"name": "kernel"}
    });
    let tracks = timeline.tracks.iter().flat_map(|track| {
        let (tid, name, sort) = (track.tid, &track.name, track.sort);
        [
            json!({
                "ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}
            }),
            json!({
                "ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index",
                "args": {"sort_index": sort}
            }),
        ]
    });
    let spans = timeline.spans.iter().map(|span| {
        json!({
            "ph": "X", "pid": PID, "tid": span.tid, "name": span.name, "cat": span.cat,
            "ts": micros(span.start), "dur": micros(span.end - span.start), "args": span.args,
        })
    });
    let instants = timeline.instants.iter().map(|instant| {
        json!({
            "ph": "i", "s": "t", "pid": PID, "tid": instant.tid, "name": instant.name,
            "cat": instant.cat, "ts": micros(instant.ns), "args": instant.args,
        })
    });
    let flows = timeline.flows.iter().flat_map(|flow| {
        let (name, cat, id) = (&flow.name, flow.cat, flow.id);
        [
            json!({
                "ph": "s", "pid": PID, "tid": flow.from.0, "ts": micros(flow.from.1),
                "id": id, "cat": cat, "name": name,
            }),
            json!({
                "ph": "f", "bp": "e", "pid": PID, "tid": flow.to.0, "ts": micros(flow.to.1),
                "id": id, "cat": cat, "name": name,
            }),
        ]
    });
    let counters = timeline.counters.iter().map(|counter| {
        json!({
            "ph": "C", "pid": PID, "tid": counter.tid, "name": counter.name, "cat": "sched",
            "ts": micros(counter.ns), "args": {"threads": counter.value},
        })
    });
    std::iter::once(process).chain(tracks).chain(spans).chain(instants).chain(flows).chain(counters)
}

/// What a viewer shows as the trace's metadata: how complete it is.
fn other_data(trace: &Trace, timeline: &Timeline) -> Map<String, Value> {
    let cpus: Vec<Value> = trace
        .cpus
        .iter()
        .map(|c| {
            json!({
                "cpu": c.cpu, "events": c.events, "lost": c.lost, "torn": c.torn,
                "pending_at_last_dump": c.pending,
            })
        })
        .collect();
    let dumps: Vec<Value> = trace
        .dumps
        .iter()
        .map(|d| {
            json!({
                "reason": names::reason(d.reason), "ns": d.ns, "cpus": d.cpus,
                "tsc_hz": d.tsc_hz, "complete": d.complete,
            })
        })
        .collect();
    let mended = &timeline.mended;
    let mut data = Map::new();
    data.insert("source".into(), json!("kernel trace (kernel/src/trace/format.rs)"));
    data.insert("cpus".into(), Value::Array(cpus));
    data.insert("dumps".into(), Value::Array(dumps));
    data.insert("lost".into(), json!(trace.cpus.iter().map(|c| c.lost).sum::<u64>()));
    data.insert("torn".into(), json!(trace.cpus.iter().map(|c| c.torn).sum::<u64>()));
    data.insert("cut".into(), json!(trace.cuts));
    data.insert(
        "mended".into(),
        json!({
            "closed_at_trace_end": mended.unfinished,
            "split_to_nest": mended.split,
            "ends_without_begin": mended.unpaired_ends,
        }),
    );
    data
}
