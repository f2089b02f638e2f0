//! From events to a timeline: the tracks, spans, instants, flows and counters
//! that both the Chrome JSON and the SVG draw.
//!
//! Events are points in time; a trace viewer draws intervals. This module
//! pairs each begin event with its end (on CPU tracks in `cpu.rs`, on the
//! tracks of waiting threads in `waits.rs`) and connects senders to receivers
//! (`flows.rs`). The tracks:
//!
//! | `tid`     | track                        | built in   |
//! |-----------|------------------------------|------------|
//! | n         | `CPU n`                      | `cpu.rs`   |
//! | 1000 + n  | `CPU n preempt-off`          | `cpu.rs`   |
//! | 2^20 + T  | `waits of NAME (thread T)`   | `waits.rs` |
//!
//! A viewer wants the spans of one track to nest (Perfetto drops a span that
//! crosses another). Two things in a real trace break that, and are mended
//! here on purpose:
//!
//! - A span the run stopped in the middle of (QEMU killed, the panic's NMI
//!   never returning) has no end: it is closed at the trace's end, with
//!   `unfinished: true` in its args.
//! - A span that begins inside another and outlasts it (a bring-up that goes
//!   on after the thread that ran it is switched out, say) is cut in two at
//!   the end of the one it began in; the second piece has `continued: true`.
//!   See [`nest`].

mod cpu;
mod flows;
mod instants;
mod waits;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use serde_json::{Map, Value};

use super::Trace;
use super::names::Threads;

/// The `tid` of the first preempt-off track: CPU n's is
/// `PREEMPT_OFF_TRACK_BASE + n` (the kernel has at most 512 CPUs).
pub const PREEMPT_OFF_TRACK_BASE: u64 = 1000;
/// The `tid` of the first wait track: thread T's is `WAIT_TRACK_BASE + T`,
/// above every CPU's tracks whatever the thread's id (a long run creates
/// thousands of threads).
pub const WAIT_TRACK_BASE: u64 = 1 << 20;

/// Thread `thread`'s wait track (saturating: a torn id must not overflow).
pub fn wait_track(thread: u64) -> u64 {
    WAIT_TRACK_BASE.saturating_add(thread)
}

/// The bring-up phases of an AP, each a span on the AP's track.
pub const PHASE_START: &str = "start: INIT/SIPI to first code";
pub const PHASE_CALL_IN: &str = "call in: tables, APIC, timer";
pub const PHASE_WAIT_FOR_RELEASE: &str = "wait for release";
pub const PHASE_TSC_CHECK: &str = "TSC check";

/// What a span is, for its colour in the SVG and its legend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Look {
    Running,
    Idle,
    Interrupt,
    Tick,
    Nmi,
    Call,
    BringUp,
    Shootdown,
    Wait,
    OffCpu,
    PreemptOff,
    Panic,
}

/// A row in the viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Track {
    pub tid: u64,
    pub name: String,
    /// Where the viewer puts it, smallest first.
    pub sort: u64,
}

#[derive(Clone, Debug)]
pub struct Span {
    pub tid: u64,
    pub start: u64,
    pub end: u64,
    pub name: String,
    /// The kernel's category (`smp`, `ipi`, ...), as `trace=` names it.
    pub cat: &'static str,
    pub look: Look,
    pub args: Map<String, Value>,
    /// How many spans of its track it lies inside (set by [`nest`]).
    pub depth: usize,
}

#[derive(Clone, Debug)]
pub struct Instant {
    pub tid: u64,
    pub ns: u64,
    pub name: String,
    pub cat: &'static str,
    pub args: Map<String, Value>,
}

/// An arrow from a sender's track to the span that handled it.
#[derive(Clone, Debug)]
pub struct Flow {
    pub id: u64,
    pub name: String,
    pub cat: &'static str,
    pub from: (u64, u64),
    /// (tid, ns) of the receiving span's start.
    pub to: (u64, u64),
}

/// One sample of a counter (a run queue's length).
#[derive(Clone, Debug)]
pub struct Counter {
    pub tid: u64,
    pub ns: u64,
    pub name: String,
    pub value: u64,
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// In the viewer's order.
    pub tracks: Vec<Track>,
    /// Every track's spans nested (see [`nest`]), by track then start.
    pub spans: Vec<Span>,
    pub instants: Vec<Instant>,
    pub flows: Vec<Flow>,
    pub counters: Vec<Counter>,
    /// The trace's start (its first event, or the first span's start if
    /// earlier) and its end (the last event or dump).
    pub start_ns: u64,
    pub end_ns: u64,
    /// What had to be mended, for the JSON's `otherData`.
    pub mended: Mended,
}

/// Counts of what [`Timeline::build`] closed, cut or dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mended {
    /// Spans still open at the trace's end, closed there.
    pub unfinished: usize,
    /// Spans cut in two to keep their track nested.
    pub split: usize,
    /// End events whose begin the trace does not have.
    pub unpaired_ends: usize,
}

impl Timeline {
    pub fn build(trace: &Trace) -> Timeline {
        let first = trace.events.first().map_or(0, |e| e.ns);
        let last_event = trace.events.last().map_or(0, |e| e.ns);
        let last_dump = trace.dumps.iter().map(|d| d.ns).max().unwrap_or(0);
        let mut timeline =
            Timeline { start_ns: first, end_ns: last_event.max(last_dump), ..Timeline::default() };
        let threads = Threads::learn(&trace.events);
        let mut tracks = BTreeMap::new();
        for totals in &trace.cpus {
            let cpu = u64::from(totals.cpu);
            tracks.insert(cpu, Track { tid: cpu, name: format!("CPU {cpu}"), sort: cpu });
        }
        cpu::build(trace, &threads, &mut timeline, &mut tracks);
        waits::build(trace, &threads, &mut timeline, &mut tracks);
        flows::build(trace, &mut timeline);
        let (spans, split) = nest(std::mem::take(&mut timeline.spans));
        // A preempt-off span begins before the event that records it.
        let earliest = spans.iter().map(|span| span.start).min();
        timeline.start_ns = timeline.start_ns.min(earliest.unwrap_or(first));
        timeline.spans = spans;
        timeline.mended.split = split;
        timeline.tracks = tracks.into_values().collect();
        timeline.tracks.sort_by_key(|track| (track.sort, track.tid));
        timeline
    }

    /// The name of the track `tid`, if it has one.
    pub fn track_name(&self, tid: u64) -> Option<&str> {
        self.tracks.iter().find(|t| t.tid == tid).map(|t| t.name.as_str())
    }

    /// Adds a span whose end was never recorded, ending at `end` (the
    /// trace's end if None), marked unfinished.
    fn close_unfinished(&mut self, mut span: Span, end: Option<u64>) {
        span.end = end.unwrap_or(self.end_ns).max(span.start);
        span.args.insert("unfinished".into(), Value::Bool(true));
        self.mended.unfinished += 1;
        self.spans.push(span);
    }
}

/// A span's args from pairs, the way the builders write them.
fn args<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(key, value)| (key.to_string(), value)).collect()
}

/// An address as the kernel's log prints it. Also a call's id, which is
/// the address of its descriptor: a number over 2^53 would lose digits in a
/// JavaScript viewer, and one over 2^63 is refused by some JSON readers.
fn hex(value: u64) -> Value {
    Value::String(format!("{value:#x}"))
}

/// Makes the spans of every track nest, and gives each its depth.
///
/// Spans are taken by start, the longer first when two start together, so
/// that an enclosing span comes before what it encloses. A stack holds the
/// spans that enclose the current time. A span that begins inside the top of
/// the stack but ends after it is cut at that end: the first piece nests,
/// the second (`continued: true`) goes back into the queue, to nest where it
/// falls. Returns the spans and how many cuts were made.
pub fn nest(spans: Vec<Span>) -> (Vec<Span>, usize) {
    // A min-heap of (tid, start, longest first, arrival): the order to take them in.
    let mut queue = BinaryHeap::new();
    let mut pool: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        queue.push(Reverse((span.tid, span.start, Reverse(span.end), pool.len())));
        pool.push(span);
    }
    let mut nested = Vec::with_capacity(pool.len());
    let mut open: Vec<(u64, u64)> = Vec::new(); // (tid, end) of the enclosing spans
    let mut splits = 0;
    while let Some(Reverse((tid, start, _, index))) = queue.pop() {
        open.retain(|&(open_tid, end)| open_tid == tid && end > start);
        let mut span = pool[index].clone();
        if let Some(&(_, outer_end)) = open.last()
            && span.end > outer_end
        {
            let mut rest = span.clone();
            rest.start = outer_end;
            rest.args.insert("continued".into(), Value::Bool(true));
            queue.push(Reverse((rest.tid, rest.start, Reverse(rest.end), pool.len())));
            pool.push(rest);
            span.end = outer_end;
            splits += 1;
        }
        span.depth = open.len();
        open.push((tid, span.end));
        nested.push(span);
    }
    (nested, splits)
}
