//! Reading the raw stream the kernel writes to QEMU's debug console: dumps
//! back to back, each a header, one section per CPU (its records, closed by
//! a SECTION_END record that counts them) and a trailer (the layout is in
//! `format.rs`, the kernel's file, included by path).
//!
//! Every complete record is kept, even from a dump the stream ends in the
//! middle of (QEMU was killed) or that the next dump interrupts (a CPU
//! stopped while dumping, and the panic's dump went ahead); what was cut is
//! said in [`Trace::cuts`]. A stream that is not a trace at all (bad
//! magic) or one written for another version of the format is refused with
//! the byte offset, since guessing would draw a wrong picture.

use std::fmt;

use super::format::{
    CPU_SECTION_SIZE, HEADER_SIZE, MAGIC, RECORD_SIZE, SECTION_END, TEXT, TRAILER_MAGIC,
    TRAILER_SIZE, VERSION,
};
use super::names;

/// A decoded stream: every dump's events, merged into one timeline.
#[derive(Debug, Default)]
pub struct Trace {
    pub dumps: Vec<Dump>,
    /// One entry per CPU (the most sections any dump had), in CPU order,
    /// whether or not it recorded anything.
    pub cpus: Vec<CpuTotals>,
    /// All dumps' events sorted by time, then CPU, then the order they were
    /// recorded in.
    pub events: Vec<Event>,
    /// What the stream lost at its end or in its middle, one sentence each.
    pub cuts: Vec<String>,
}

/// One dump's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dump {
    /// Why it was written: `format::reason`.
    pub reason: u16,
    /// How many CPU sections it has: the CPUs that had started.
    pub cpus: u16,
    pub tsc_hz: u64,
    /// When it was written, on the events' clock.
    pub ns: u64,
    /// False when the stream ends (or the next dump starts) before its trailer.
    pub complete: bool,
}

/// A CPU's totals over all dumps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuTotals {
    pub cpu: u16,
    /// Events decoded (TEXT records are not events).
    pub events: u64,
    /// Overwritten in the ring before a dump could read them.
    pub lost: u64,
    /// Skipped because they were being written while a dump read them.
    pub torn: u64,
    /// Reserved but not yet written when the last dump read this CPU's
    /// ring: the next dump would have had them, and there was none.
    pub pending: u64,
}

/// One event: a record with its TEXT continuation, if any, joined on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub cpu: u16,
    pub ns: u64,
    pub kind: u16,
    pub small: u16,
    pub a: u64,
    pub b: u64,
    pub c: u64,
    pub text: Option<String>,
    /// The low 32 bits of the ring slot it came from on its CPU: two dumps
    /// that wrote the same event (the first cut short) give it the same.
    pub index: u32,
}

/// Why a stream cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Decodes a whole stream (zero or more dumps).
pub fn decode(bytes: &[u8]) -> Result<Trace, DecodeError> {
    let mut decoder = Decoder { bytes, pos: 0, trace: Trace::default() };
    while decoder.pos < bytes.len() {
        match decoder.dump() {
            Ok(true) => {}
            Ok(false) => break,
            // The first dump decides whether this is a trace at all; after
            // a good one, a broken one only ends what can be read.
            Err(error) if !decoder.trace.dumps.is_empty() => {
                decoder.cut(format!("{error}; the rest of the stream is not read"));
                break;
            }
            Err(error) => return Err(error),
        }
    }
    let mut trace = decoder.trace;
    drop_repeats(&mut trace);
    // Stable: equal times on one CPU keep the order they were recorded in.
    trace.events.sort_by_key(|event| (event.ns, event.cpu));
    Ok(trace)
}

/// Keeps the first copy of each (CPU, ring index): a dump cut short leaves
/// its events to the next, which writes again those the first had written.
fn drop_repeats(trace: &mut Trace) {
    let mut seen = std::collections::HashSet::new();
    let before = trace.events.len();
    trace.events.retain(|event| seen.insert((event.cpu, event.index)));
    let repeats = before - trace.events.len();
    if repeats > 0 {
        for event_cpu in trace.cpus.iter_mut() {
            event_cpu.events = 0;
        }
        for event in &trace.events {
            trace.cpus[usize::from(event.cpu)].events += 1;
        }
        trace.cuts.push(format!("{repeats} events written by two dumps were kept once"));
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    trace: Trace,
}

/// What ended a CPU section's records.
enum SectionEnd {
    Complete,
    /// The stream ends inside it.
    Cut,
    /// A new dump's header stands where a record should be.
    Interrupted,
}

impl<'a> Decoder<'a> {
    fn remaining(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// Where a dump's header starts within the next `len` bytes, if one
    /// does: a dump cut short by the next (a CPU stopped while dumping, the
    /// panic's dump after it) may stop in the middle of a record. A header
    /// is its magic and this version; a record that spelled both would be
    /// misread, at odds of 2^-48.
    fn dump_header_within(&self, len: usize) -> Option<usize> {
        let rest = self.remaining();
        (0..len.min(rest.len())).find(|&at| {
            let bytes = &rest[at..];
            bytes.len() >= 6 && bytes[..4] == MAGIC && u16_at(bytes, 4) == VERSION
        })
    }

    /// Reads one dump; false when the stream ended inside it.
    fn dump(&mut self) -> Result<bool, DecodeError> {
        let start = self.pos;
        let rest = self.remaining();
        let magic_seen = &rest[..rest.len().min(4)];
        if magic_seen != &MAGIC[..magic_seen.len()] {
            return Err(DecodeError(format!(
                "bad magic at byte {start}: expected \"KTRC\", found {magic_seen:02x?} \
                 (is this a kernel trace?)"
            )));
        }
        // A header cut short by the next dump's (its CPU stopped while writing it).
        if let Some(next) = (1..HEADER_SIZE.min(rest.len())).find(|&at| {
            rest[at..].len() >= 6 && rest[at..at + 4] == MAGIC && u16_at(rest, at + 4) == VERSION
        }) {
            self.pos += next;
            self.cut(format!("a dump's header at byte {start} is cut short by the next dump"));
            return Ok(true);
        }
        if rest.len() < HEADER_SIZE {
            self.cut(format!("the stream ends inside a dump's header (at byte {start})"));
            return Ok(false);
        }
        let version = u16_at(rest, 4);
        if version != VERSION {
            return Err(DecodeError(format!(
                "version {version}, this runner reads {VERSION} (dump at byte {start}): \
                 rebuild the runner and the kernel from the same tree"
            )));
        }
        let cpus = u16_at(rest, 6);
        // The kernel manages at most 512 (percpu::MAX_CPUS).
        if cpus == 0 || cpus > 512 {
            return Err(DecodeError(format!(
                "a dump at byte {start} says it has {cpus} CPU sections (1 to 512 expected)"
            )));
        }
        let dump = Dump {
            cpus,
            reason: u16_at(rest, 8),
            tsc_hz: u64_at(rest, 16),
            ns: u64_at(rest, 24),
            complete: false,
        };
        self.count_cpus(dump.cpus);
        let number = self.trace.dumps.len() + 1;
        let label = format!("dump {number} ({})", names::reason(dump.reason));
        self.trace.dumps.push(dump);
        self.pos += HEADER_SIZE;
        loop {
            let rest = self.remaining();
            if rest.len() >= 4 && rest[..4] == TRAILER_MAGIC {
                if rest.len() < TRAILER_SIZE {
                    self.cut(format!("{label} ends inside its trailer"));
                    return Ok(false);
                }
                self.pos += TRAILER_SIZE;
                self.trace.dumps.last_mut().unwrap().complete = true;
                return Ok(true);
            }
            if let Some(skip) = self.dump_header_within(CPU_SECTION_SIZE) {
                self.pos += skip;
                self.cut(format!("{label} stops before its trailer; a new dump begins"));
                return Ok(true);
            }
            if rest.len() < CPU_SECTION_SIZE {
                self.cut(format!("the stream ends in {label}, before its trailer"));
                return Ok(false);
            }
            match self.section(&label)? {
                SectionEnd::Complete => {}
                SectionEnd::Cut => return Ok(false),
                SectionEnd::Interrupted => return Ok(true),
            }
        }
    }

    /// Reads one CPU's section: its header, its records, its SECTION_END.
    fn section(&mut self, label: &str) -> Result<SectionEnd, DecodeError> {
        let (start, rest) = (self.pos, self.remaining());
        let (cpu, padding) = (u16_at(rest, 0), u16_at(rest, 2));
        let cpus = self.trace.dumps.last().unwrap().cpus;
        if padding != 0 || cpu >= cpus {
            return Err(DecodeError(format!(
                "bad CPU section at byte {start} in {label}: CPU {cpu} of {cpus}, \
                 padding {padding:#x}"
            )));
        }
        let lost = &mut self.trace.cpus[usize::from(cpu)].lost;
        *lost = lost.saturating_add(u64_at(rest, 8));
        self.pos += CPU_SECTION_SIZE;
        let first_event = self.trace.events.len();
        let mut text: Vec<u8> = Vec::new();
        let mut read = 0;
        let end = loop {
            if let Some(skip) = self.dump_header_within(RECORD_SIZE) {
                self.pos += skip;
                self.cut(format!(
                    "{label}: CPU {cpu}'s section stops after {}; a new dump begins",
                    records(read)
                ));
                break SectionEnd::Interrupted;
            }
            let rest = self.remaining();
            if rest.len() < RECORD_SIZE {
                self.cut(format!(
                    "the stream ends in {label}, in CPU {cpu}'s section after {}",
                    records(read)
                ));
                break SectionEnd::Cut;
            }
            let event = record(cpu, &rest[..RECORD_SIZE]);
            self.pos += RECORD_SIZE;
            match event.kind {
                SECTION_END => {
                    let totals = &mut self.trace.cpus[usize::from(cpu)];
                    totals.torn = totals.torn.saturating_add(event.a);
                    totals.pending = event.c;
                    if event.b != read {
                        self.cut(format!(
                            "{label}: CPU {cpu}'s section ends saying {}, {read} came",
                            records(event.b)
                        ));
                    }
                    break SectionEnd::Complete;
                }
                // Text before the section's first event belongs to one lost
                // in the ring: it has nothing to name, and goes.
                TEXT if self.trace.events.len() > first_event => text.extend(text_bytes(&event)),
                TEXT => {}
                _ => {
                    self.attach_text(&mut text);
                    self.trace.events.push(event);
                }
            }
            read += 1;
        };
        self.attach_text(&mut text);
        let decoded = (self.trace.events.len() - first_event) as u64;
        self.trace.cpus[usize::from(cpu)].events += decoded;
        Ok(end)
    }

    /// Gives the last event the text collected for it. Joined before it is
    /// read as UTF-8: one character may straddle two TEXT records.
    fn attach_text(&mut self, text: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let event = self.trace.events.last_mut().unwrap();
        event.text = Some(String::from_utf8_lossy(text).into_owned());
        text.clear();
    }

    fn count_cpus(&mut self, cpus: u16) {
        while self.trace.cpus.len() < usize::from(cpus) {
            let cpu = self.trace.cpus.len() as u16;
            self.trace.cpus.push(CpuTotals { cpu, ..CpuTotals::default() });
        }
    }

    fn cut(&mut self, what: String) {
        self.trace.cuts.push(what);
    }
}

/// "1 record", "2 records".
fn records(count: u64) -> String {
    format!("{count} record{}", if count == 1 { "" } else { "s" })
}

fn record(cpu: u16, bytes: &[u8]) -> Event {
    Event {
        cpu,
        ns: u64_at(bytes, 0),
        kind: u16_at(bytes, 8),
        small: u16_at(bytes, 10),
        a: u64_at(bytes, 16),
        b: u64_at(bytes, 24),
        c: u64_at(bytes, 32),
        text: None,
        index: u32::from_le_bytes(bytes[12..16].try_into().unwrap()),
    }
}

/// A TEXT record's bytes: `small` (at most 16) of `a` then `b`.
fn text_bytes(record: &Event) -> Vec<u8> {
    let mut bytes = record.a.to_le_bytes().to_vec();
    bytes.extend(record.b.to_le_bytes());
    bytes.truncate(usize::from(record.small).min(16));
    bytes
}
