//! Reading a written trace back: the questions a test asks of a run's JSON
//! (which track is called what, what spans and marks it has, where the
//! arrows go), with times in ns as Perfetto reads them.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::chrome::ns_of;

/// A span as the JSON has it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadSpan {
    pub name: String,
    pub start: u64,
    pub end: u64,
    pub args: Value,
}

/// An instant as the JSON has it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadInstant {
    pub name: String,
    pub ns: u64,
    pub args: Value,
}

/// A flow: its name and its two ends, (tid, ns) each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadFlow {
    pub name: String,
    pub from: (u64, u64),
    pub to: (u64, u64),
}

/// Reads and parses a trace's JSON file.
pub fn load(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

fn events<'a>(json: &'a Value, phase: &'a str) -> impl Iterator<Item = &'a Value> {
    let all = json["traceEvents"].as_array().map(Vec::as_slice).unwrap_or_default();
    all.iter().filter(move |event| event["ph"] == phase)
}

fn name(event: &Value) -> String {
    event["name"].as_str().unwrap_or_default().to_string()
}

/// Every track: (tid, name), in the order the JSON names them.
pub fn tracks(json: &Value) -> Vec<(u64, String)> {
    events(json, "M")
        .filter(|event| event["name"] == "thread_name")
        .filter_map(|e| Some((e["tid"].as_u64()?, e["args"]["name"].as_str()?.to_string())))
        .collect()
}

/// The tid of the track called `name`.
pub fn track(json: &Value, name: &str) -> Option<u64> {
    tracks(json).into_iter().find(|(_, track)| track == name).map(|(tid, _)| tid)
}

/// The spans of track `tid`, by start (the longer first when two start together).
pub fn spans(json: &Value, tid: u64) -> Vec<ReadSpan> {
    let mut spans: Vec<ReadSpan> = events(json, "X")
        .filter(|event| event["tid"] == tid)
        .filter_map(|event| {
            let start = ns_of(&event["ts"])?;
            let end = start + ns_of(&event["dur"])?;
            Some(ReadSpan { name: name(event), start, end, args: event["args"].clone() })
        })
        .collect();
    spans.sort_by_key(|span| (span.start, std::cmp::Reverse(span.end)));
    spans
}

/// The instants of track `tid`, by time.
pub fn instants(json: &Value, tid: u64) -> Vec<ReadInstant> {
    let mut instants: Vec<ReadInstant> = events(json, "i")
        .filter(|event| event["tid"] == tid)
        .filter_map(|event| {
            let ns = ns_of(&event["ts"])?;
            Some(ReadInstant { name: name(event), ns, args: event["args"].clone() })
        })
        .collect();
    instants.sort_by_key(|instant| instant.ns);
    instants
}

/// Every flow whose start and end are both there, by start time.
pub fn flows(json: &Value) -> Vec<ReadFlow> {
    let ends: HashMap<String, (u64, u64)> = events(json, "f")
        .filter_map(|end| Some((end["id"].to_string(), (end["tid"].as_u64()?, ns_of(&end["ts"])?))))
        .collect();
    let mut flows: Vec<ReadFlow> = events(json, "s")
        .filter_map(|start| {
            let from = (start["tid"].as_u64()?, ns_of(&start["ts"])?);
            let to = *ends.get(&start["id"].to_string())?;
            Some(ReadFlow { name: name(start), from, to })
        })
        .collect();
    flows.sort_by_key(|flow| (flow.from.1, flow.from.0));
    flows
}
