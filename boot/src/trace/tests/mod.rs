//! Tests of the trace's host side on streams made here. [`E`] and
//! [`stream`] are the kernel's dumper in reverse: a test lists events the
//! way the kernel would record them and gets the bytes it would dump.

mod decode_tests;
mod json_tests;
mod stories;
mod svg_tests;

use serde_json::Value;

use super::format::{
    CPU_SECTION_SIZE, HEADER_SIZE, MAGIC, RECORD_SIZE, SECTION_END, TEXT, TRAILER_MAGIC, VERSION,
    reason,
};
use super::{Timeline, Trace, chrome, decode, read};

/// One event as a test writes it: `E::new(cpu, ns, kind).small(..).a(..)`.
#[derive(Clone, Debug)]
pub struct E {
    cpu: u16,
    ns: u64,
    kind: u16,
    small: u16,
    a: u64,
    b: u64,
    c: u64,
    text: Option<String>,
}

impl E {
    pub fn new(cpu: u16, ns: u64, kind: u16) -> E {
        E { cpu, ns, kind, small: 0, a: 0, b: 0, c: 0, text: None }
    }
    pub fn small(self, small: u16) -> E {
        E { small, ..self }
    }
    pub fn a(self, a: u64) -> E {
        E { a, ..self }
    }
    pub fn b(self, b: u64) -> E {
        E { b, ..self }
    }
    pub fn c(self, c: u64) -> E {
        E { c, ..self }
    }
    pub fn text(self, text: &str) -> E {
        E { text: Some(text.into()), ..self }
    }
}

/// One 40-byte record.
pub fn record(ns: u64, kind: u16, small: u16, a: u64, b: u64, c: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(RECORD_SIZE);
    bytes.extend(ns.to_le_bytes());
    bytes.extend(kind.to_le_bytes());
    bytes.extend(small.to_le_bytes());
    // Each record its own ring index, as the kernel's are (the decoder keeps
    // one copy of each (CPU, index)).
    static NEXT_INDEX: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    bytes.extend(NEXT_INDEX.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_le_bytes());
    for value in [a, b, c] {
        bytes.extend(value.to_le_bytes());
    }
    bytes
}

/// The TEXT records that carry `text`, 16 bytes each.
pub fn text_records(ns: u64, text: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for chunk in text.chunks(16) {
        let mut padded = [0u8; 16];
        padded[..chunk.len()].copy_from_slice(chunk);
        let a = u64::from_le_bytes(padded[..8].try_into().unwrap());
        let b = u64::from_le_bytes(padded[8..].try_into().unwrap());
        bytes.extend(record(ns, TEXT, chunk.len() as u16, a, b, 0));
    }
    bytes
}

/// A CPU section: its header, its records as they are, and its end.
pub fn section(cpu: u16, lost: u64, torn: u64, records: &[u8]) -> Vec<u8> {
    assert_eq!(records.len() % RECORD_SIZE, 0);
    let mut bytes = section_start(cpu, lost);
    bytes.extend(records);
    let count = (records.len() / RECORD_SIZE) as u64;
    bytes.extend(record(0, SECTION_END, 0, torn, count, 0));
    bytes
}

/// A section's header alone.
pub fn section_start(cpu: u16, lost: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(CPU_SECTION_SIZE);
    bytes.extend(cpu.to_le_bytes());
    bytes.extend([0; 6]);
    bytes.extend(lost.to_le_bytes());
    bytes.extend([0; 16]);
    bytes
}

/// A dump's header (`version` so a test can write a wrong one).
pub fn header(version: u16, cpus: u16, why: u16, ns: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_SIZE);
    bytes.extend(MAGIC);
    bytes.extend(version.to_le_bytes());
    bytes.extend(cpus.to_le_bytes());
    bytes.extend(why.to_le_bytes());
    bytes.extend(0u16.to_le_bytes());
    bytes.extend(0u32.to_le_bytes());
    bytes.extend(2_000_000_000u64.to_le_bytes());
    bytes.extend(ns.to_le_bytes());
    bytes
}

pub fn trailer() -> Vec<u8> {
    let mut bytes = TRAILER_MAGIC.to_vec();
    bytes.extend(0u32.to_le_bytes());
    bytes
}

/// The records of `events` on `cpu`, in the order given.
pub fn records_of(cpu: u16, events: &[E]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for event in events.iter().filter(|e| e.cpu == cpu) {
        bytes.extend(record(event.ns, event.kind, event.small, event.a, event.b, event.c));
        if let Some(text) = &event.text {
            bytes.extend(text_records(event.ns, text.as_bytes()));
        }
    }
    bytes
}

/// One dump of `events` on a machine of `cpus` CPUs, written at `ns`.
pub fn dump(why: u16, cpus: u16, ns: u64, events: &[E]) -> Vec<u8> {
    let mut bytes = header(VERSION, cpus, why, ns);
    for cpu in 0..cpus {
        bytes.extend(section(cpu, 0, 0, &records_of(cpu, events)));
    }
    bytes.extend(trailer());
    bytes
}

/// A stream of one end-of-run dump, written after the last event.
pub fn stream(cpus: u16, events: &[E]) -> Vec<u8> {
    let end = events.iter().map(|e| e.ns).max().unwrap_or(0);
    dump(reason::END_OF_RUN, cpus, end, events)
}

/// The JSON of a stream, written out and read back as a viewer would.
pub fn json_of(bytes: &[u8]) -> (Trace, Timeline, Value) {
    let trace = decode(bytes).expect("the stream decodes");
    let timeline = Timeline::build(&trace);
    let text = chrome::to_json(&trace, &timeline).to_string();
    (trace, timeline, serde_json::from_str(&text).expect("the JSON parses"))
}

/// The `X` spans of track `tid`: (name, start ns, end ns), by start.
pub fn spans_on(json: &Value, tid: u64) -> Vec<(String, u64, u64)> {
    read::spans(json, tid).into_iter().map(|span| (span.name, span.start, span.end)).collect()
}

/// The instants of track `tid`: (name, ns).
pub fn instants_on(json: &Value, tid: u64) -> Vec<(String, u64)> {
    read::instants(json, tid).into_iter().map(|instant| (instant.name, instant.ns)).collect()
}

/// The first `X` span called `name` on track `tid`, with its args.
pub fn span_named<'a>(json: &'a Value, tid: u64, name: &str) -> &'a Value {
    trace_events(json)
        .find(|e| e["ph"] == "X" && e["tid"] == tid && e["name"] == name)
        .unwrap_or_else(|| panic!("no span {name:?} on tid {tid}: {:?}", spans_on(json, tid)))
}

pub fn trace_events(json: &Value) -> impl Iterator<Item = &Value> {
    json["traceEvents"].as_array().expect("traceEvents").iter()
}
