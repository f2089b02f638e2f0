//! Checks of a Chrome trace JSON against the rules a viewer enforces, for
//! the unit tests here and the host tests that boot the kernel:
//!
//! - [`check_nesting`]: on each track (pid, tid), any two `X` spans either
//!   nest or are disjoint. Perfetto drops a span that crosses another.
//! - [`check_flows`]: every flow start `s` has one flow end `f` with the
//!   same id, cat and name. Perfetto binds each to the innermost slice open
//!   on its track when it reads it, and drops a flow with nothing to bind
//!   to; so the end must lie inside a span of its track, and the start must
//!   have an instant at its very time on its track (Perfetto reads an
//!   instant as a slice of no length), or a span around it. At equal times
//!   Perfetto reads events in file order, so what a flow binds to must come
//!   before it in the file.
//!
//! Times are read back as Perfetto reads them ([`super::chrome::ns_of`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::chrome::ns_of;

/// A span as read back: start, end (ns), name, place in the file.
type Read = (u64, u64, String, usize);

/// An event and its place in the file.
type Placed<'a> = (usize, &'a Value);

fn events(json: &Value) -> Result<&Vec<Value>, String> {
    json["traceEvents"].as_array().ok_or_else(|| "no traceEvents array".to_string())
}

fn track(event: &Value) -> (String, String) {
    (event["pid"].to_string(), event["tid"].to_string())
}

/// Every track's `X` spans, by start and the longer first.
fn spans_by_track(json: &Value) -> Result<BTreeMap<(String, String), Vec<Read>>, String> {
    let mut tracks: BTreeMap<_, Vec<Read>> = BTreeMap::new();
    for (place, event) in events(json)?.iter().enumerate().filter(|(_, e)| e["ph"] == "X") {
        let name = event["name"].as_str().unwrap_or("(no name)").to_string();
        let (Some(start), Some(length)) = (ns_of(&event["ts"]), ns_of(&event["dur"])) else {
            return Err(format!("span {name:?} has no valid ts and dur: {event}"));
        };
        tracks.entry(track(event)).or_default().push((start, start + length, name, place));
    }
    for spans in tracks.values_mut() {
        spans.sort_by_key(|&(start, end, _, _)| (start, std::cmp::Reverse(end)));
    }
    Ok(tracks)
}

/// Whether the `X` spans of every track nest (see the module docs); the
/// error names the first two that cross.
pub fn check_nesting(json: &Value) -> Result<(), String> {
    for ((pid, tid), spans) in spans_by_track(json)? {
        let mut open: Vec<&Read> = Vec::new();
        for span in &spans {
            while open.last().is_some_and(|outer| outer.1 <= span.0) {
                open.pop();
            }
            if let Some(outer) = open.last()
                && span.1 > outer.1
            {
                return Err(format!(
                    "pid {pid} tid {tid}: {:?} [{}..{} ns] crosses {:?} [{}..{} ns]",
                    span.2, span.0, span.1, outer.2, outer.0, outer.1
                ));
            }
            open.push(span);
        }
    }
    Ok(())
}

/// Whether every flow is paired and binds at both ends (see the module
/// docs). Returns how many flows there are.
pub fn check_flows(json: &Value) -> Result<usize, String> {
    let tracks = spans_by_track(json)?;
    let mut instants: HashMap<(String, String), Vec<(u64, usize)>> = HashMap::new();
    let mut flows: HashMap<String, (Vec<Placed>, Vec<Placed>)> = HashMap::new();
    for (place, event) in events(json)?.iter().enumerate() {
        let (starts, ends) = match event["ph"].as_str() {
            Some("s" | "f") => flows.entry(event["id"].to_string()).or_default(),
            Some("i") => {
                let at = ns_of(&event["ts"]).ok_or_else(|| format!("no valid ts: {event}"))?;
                instants.entry(track(event)).or_default().push((at, place));
                continue;
            }
            _ => continue,
        };
        if event["ph"] == "s" { starts } else { ends }.push((place, event));
    }
    for (id, (starts, ends)) in &flows {
        let ([(start_place, start)], [(end_place, end)]) = (starts.as_slice(), ends.as_slice())
        else {
            return Err(format!("flow {id}: {} starts and {} ends", starts.len(), ends.len()));
        };
        if start["cat"] != end["cat"] || start["name"] != end["name"] {
            return Err(format!("flow {id}: start {start} and end {end} differ in cat or name"));
        }
        if end["bp"] != "e" {
            return Err(format!("flow {id}: its end does not bind to the enclosing span: {end}"));
        }
        let in_span = |event: &Value, place: usize| -> Result<bool, String> {
            let at = ns_of(&event["ts"]).ok_or_else(|| format!("flow {id}: no valid ts"))?;
            let spans = tracks.get(&track(event)).map(Vec::as_slice).unwrap_or_default();
            Ok(spans.iter().any(|&(from, to, _, before)| {
                from <= at && at <= to && (from < at || before < place)
            }))
        };
        if !in_span(end, *end_place)? {
            return Err(format!("flow {id}: its end is in no span of its track: {end}"));
        }
        let at = ns_of(&start["ts"]).ok_or_else(|| format!("flow {id}: no valid ts"))?;
        let marks = instants.get(&track(start)).map(Vec::as_slice).unwrap_or_default();
        let marked = marks.iter().any(|&(ns, before)| ns == at && before < *start_place);
        if !marked && !in_span(start, *start_place)? {
            return Err(format!("flow {id}: its start has no instant or span to bind to: {start}"));
        }
    }
    Ok(flows.len())
}
