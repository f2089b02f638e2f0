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
//! Times are microseconds, as the format wants, written as floats. Perfetto
//! reads a float time by multiplying by 1000 and dropping the fraction, so
//! 1.001 µs (stored as 1.000999...) would come back as 1000 ns and a span
//! ending there could stick out of its parent by 1 ns, which Perfetto
//! refuses. [`micros`] writes the float that comes back as the exact ns.

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

/// The whole JSON document.
pub fn to_json(trace: &Trace, timeline: &Timeline) -> Value {
    let mut events = vec![json!({
        "ph": "M", "pid": PID, "tid": 0, "name": "process_name", "args": {"name": "kernel"}
    })];
    for track in &timeline.tracks {
        let (tid, name, sort) = (track.tid, &track.name, track.sort);
        events.push(json!({
            "ph": "M", "pid": PID, "tid": tid, "name": "thread_name", "args": {"name": name}
        }));
        events.push(json!({
            "ph": "M", "pid": PID, "tid": tid, "name": "thread_sort_index",
            "args": {"sort_index": sort}
        }));
    }
    for span in &timeline.spans {
        events.push(json!({
            "ph": "X", "pid": PID, "tid": span.tid, "name": span.name, "cat": span.cat,
            "ts": micros(span.start), "dur": micros(span.end - span.start), "args": span.args,
        }));
    }
    for instant in &timeline.instants {
        events.push(json!({
            "ph": "i", "s": "t", "pid": PID, "tid": instant.tid, "name": instant.name,
            "cat": instant.cat, "ts": micros(instant.ns), "args": instant.args,
        }));
    }
    for flow in &timeline.flows {
        let (name, cat, id) = (&flow.name, flow.cat, flow.id);
        events.push(json!({
            "ph": "s", "pid": PID, "tid": flow.from.0, "ts": micros(flow.from.1),
            "id": id, "cat": cat, "name": name,
        }));
        events.push(json!({
            "ph": "f", "bp": "e", "pid": PID, "tid": flow.to.0, "ts": micros(flow.to.1),
            "id": id, "cat": cat, "name": name,
        }));
    }
    for counter in &timeline.counters {
        events.push(json!({
            "ph": "C", "pid": PID, "tid": counter.tid, "name": counter.name, "cat": "sched",
            "ts": micros(counter.ns), "args": {"threads": counter.value},
        }));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": other_data(trace, timeline),
    })
}

/// What a viewer shows as the trace's metadata: how complete it is.
fn other_data(trace: &Trace, timeline: &Timeline) -> Map<String, Value> {
    let cpus: Vec<Value> = trace
        .cpus
        .iter()
        .map(|c| json!({"cpu": c.cpu, "events": c.events, "lost": c.lost, "torn": c.torn}))
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
