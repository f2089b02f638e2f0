//! Checks of a Chrome trace JSON against the rules a viewer enforces, for
//! the unit tests here and the host tests that boot the kernel:
//!
//! - [`check_nesting`]: on each track (pid, tid), any two `X` spans either
//!   nest or are disjoint. Perfetto drops a span that crosses another.
//! - [`check_flows`]: every flow start `s` has one flow end `f` with the
//!   same id, cat and name, and the end lies inside a span on its track
//!   (a flow end binds to the span that encloses it, or is not drawn).
//!
//! Times are read back as Perfetto reads them ([`super::chrome::ns_of`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::chrome::ns_of;

/// A span as read back: start, end (ns), name.
type Read = (u64, u64, String);

fn events(json: &Value) -> Result<&Vec<Value>, String> {
    json["traceEvents"].as_array().ok_or_else(|| "no traceEvents array".to_string())
}

fn track(event: &Value) -> (String, String) {
    (event["pid"].to_string(), event["tid"].to_string())
}

/// Every track's `X` spans, by start and the longer first.
fn spans_by_track(json: &Value) -> Result<BTreeMap<(String, String), Vec<Read>>, String> {
    let mut tracks: BTreeMap<_, Vec<Read>> = BTreeMap::new();
    for event in events(json)?.iter().filter(|e| e["ph"] == "X") {
        let name = event["name"].as_str().unwrap_or("(no name)").to_string();
        let (Some(start), Some(length)) = (ns_of(&event["ts"]), ns_of(&event["dur"])) else {
            return Err(format!("span {name:?} has no valid ts and dur: {event}"));
        };
        tracks.entry(track(event)).or_default().push((start, start + length, name));
    }
    for spans in tracks.values_mut() {
        spans.sort_by_key(|&(start, end, _)| (start, std::cmp::Reverse(end)));
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

/// Whether every flow is paired and lands in a span (see the module docs).
/// Returns how many flows there are.
pub fn check_flows(json: &Value) -> Result<usize, String> {
    let tracks = spans_by_track(json)?;
    let mut flows: HashMap<String, (Vec<&Value>, Vec<&Value>)> = HashMap::new();
    for event in events(json)? {
        let (starts, ends) = match event["ph"].as_str() {
            Some("s" | "f") => flows.entry(event["id"].to_string()).or_default(),
            _ => continue,
        };
        if event["ph"] == "s" { starts } else { ends }.push(event);
    }
    for (id, (starts, ends)) in &flows {
        let ([start], [end]) = (starts.as_slice(), ends.as_slice()) else {
            return Err(format!("flow {id}: {} starts and {} ends", starts.len(), ends.len()));
        };
        if start["cat"] != end["cat"] || start["name"] != end["name"] {
            return Err(format!("flow {id}: start {start} and end {end} differ in cat or name"));
        }
        if end["bp"] != "e" {
            return Err(format!("flow {id}: its end does not bind to the enclosing span: {end}"));
        }
        let at = ns_of(&end["ts"]).ok_or_else(|| format!("flow {id}: no valid ts: {end}"))?;
        let spans = tracks.get(&track(end)).map(Vec::as_slice).unwrap_or_default();
        if !spans.iter().any(|&(from, to, _)| from <= at && at <= to) {
            return Err(format!("flow {id}: its end at {at} ns is in no span of its track"));
        }
    }
    Ok(flows.len())
}
