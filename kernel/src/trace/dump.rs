//! Writing the rings out: every event recorded since the last dump, CPU by
//! CPU, to the debug console port in the wire format of `format.rs`.
//!
//! The dumper reads each ring while its owner may still be recording (a dump
//! on request runs on a live machine), which the ring's seqlock makes safe.
//! Times leave the kernel in nanoseconds of its clock, converted here rather
//! than at record time: a record costs one RDTSC, not a multiply.
//!
//! Two things the rings do not hold are added here: the name of a cross-CPU
//! call (recorded as a pointer to its `&'static str`) and the function a
//! preempt-off span began in (recorded as an address, named through the
//! symbol table's lookup, which `symbols` registers at boot).

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::Once;

use super::format;
use super::ring::{self, Event};
use crate::arch::x86::cpu::rdtsc;
use crate::arch::x86::debugcon;
use crate::percpu;

/// The clock the dump converts TSC values with: (TSC Hz, TSC at time zero).
static CLOCK_HZ: AtomicU64 = AtomicU64::new(0);
static CLOCK_ZERO: AtomicU64 = AtomicU64::new(0);

/// Names a code address (`symbol+0xoffset`), registered by `symbols`.
type CodeNamer = fn(u64, &mut dyn Write) -> fmt::Result;
static CODE_NAMER: Once<CodeNamer> = Once::new();

/// One dump at a time: the rings' `dumped` marks have one writer, and two
/// dumps' bytes must not interleave on the port.
static DUMPING: AtomicBool = AtomicBool::new(false);

/// How long a dump waits for another to finish. A request or the end of a
/// run then gives up (the events stay in the rings, and the other dump is
/// writing them anyway); a panic writes regardless, since the other may
/// never finish: a CPU stopped for the panic in the middle of a dump.
const LOCK_PATIENCE_MS: u64 = 10_000;
const LOCK_PATIENCE_AT_PANIC_MS: u64 = 100;

/// Longest text the dump adds to an event (a call's name, a code location).
const MAX_TEXT_BYTES: usize = 96;

pub fn set_clock(tsc_hz: u64, tsc_at_zero: u64) {
    CLOCK_ZERO.store(tsc_at_zero, Ordering::Relaxed);
    CLOCK_HZ.store(tsc_hz, Ordering::Relaxed);
}

pub fn set_code_namer(namer: CodeNamer) {
    assert!(CODE_NAMER.get().is_none(), "trace: the code namer is registered twice");
    CODE_NAMER.call_once(|| namer);
}

fn tsc_to_ns(tsc: u64) -> u64 {
    let hz = CLOCK_HZ.load(Ordering::Relaxed).max(1);
    let cycles = tsc.saturating_sub(CLOCK_ZERO.load(Ordering::Relaxed));
    (cycles as u128 * 1_000_000_000 / hz as u128) as u64
}

/// Takes the dump lock within `patience_ms`; false if it could not.
fn lock(patience_ms: u64) -> bool {
    let hz = CLOCK_HZ.load(Ordering::Relaxed);
    let deadline = rdtsc() + patience_ms * (hz / 1000);
    while DUMPING.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        if rdtsc() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Writes one dump. `panicking`: the other CPUs are stopped, and one of them
/// may hold the lock for good.
pub fn dump(why: u16, panicking: bool) {
    let locked = lock(if panicking { LOCK_PATIENCE_AT_PANIC_MS } else { LOCK_PATIENCE_MS });
    if !locked && !panicking {
        log::warn!("trace: another dump is still being written after 10 s; not dumping");
        return;
    }
    let mut out = Output::new();
    let cpus = percpu::cpus_with_area();
    let mut header = [0u8; format::HEADER_SIZE];
    header[0..4].copy_from_slice(&format::MAGIC);
    put_u16(&mut header, 4, format::VERSION);
    put_u16(&mut header, 6, cpus.len() as u16);
    put_u16(&mut header, 8, why);
    put_u64(&mut header, 16, CLOCK_HZ.load(Ordering::Relaxed));
    put_u64(&mut header, 24, tsc_to_ns(rdtsc()));
    out.write(&header);
    for cpu in cpus {
        dump_cpu(cpu, &mut out);
    }
    let mut trailer = [0u8; format::TRAILER_SIZE];
    trailer[0..4].copy_from_slice(&format::TRAILER_MAGIC);
    out.write(&trailer);
    out.flush();
    if locked {
        DUMPING.store(false, Ordering::Release);
    }
}

/// Where the whole records among `indices` end: before a tail of slots
/// reserved but not yet written (`Ring::committed_end`), and before an event
/// whose text slots are not all written yet, so that the next dump gets the
/// event with its whole text instead of this one getting it without.
pub(super) fn whole_records_end(ring: &ring::Ring, indices: &core::ops::Range<u64>) -> u64 {
    let end = ring.committed_end(indices);
    if end == indices.end {
        return end;
    }
    let lookback = end.saturating_sub(1 + super::MAX_TEXT_SLOTS as u64).max(indices.start);
    for index in lookback..end {
        let owns_past_end = ring.read(index).is_some_and(|event| {
            event.kind != format::TEXT && index + 1 + text_slots(&event) > end
        });
        if owns_past_end {
            return index;
        }
    }
    end
}

/// How many TEXT slots follow `event` in its ring.
fn text_slots(event: &Event) -> u64 {
    if event.kind == format::THREAD_NAME { event.c } else { 0 }
}

fn dump_cpu(cpu: usize, out: &mut Output) {
    let ring = ring::ring_of(cpu);
    let (indices, lost) = ring.undumped();
    let end = whole_records_end(ring, &indices);
    section_header(cpu, lost, indices.start, out);
    let mut section = Section { records: 0, torn: 0, last_kept: false };
    for index in indices.start..end {
        section.take(index, ring.read(index), out);
    }
    let end_of_section = Event {
        tsc: 0,
        kind: format::SECTION_END,
        small: 0,
        a: section.torn,
        b: section.records,
        c: indices.end - end,
    };
    write_record(&end_of_section, end, 0, out);
    // Only once its bytes are out: a dump stopped before this point (a
    // panic) leaves the events to the next, which the host deduplicates by
    // index, rather than marking events dumped that never left.
    out.flush();
    ring.mark_dumped(end);
}

fn section_header(cpu: usize, lost: u64, first_index: u64, out: &mut Output) {
    let mut bytes = [0u8; format::CPU_SECTION_SIZE];
    put_u16(&mut bytes, 0, cpu as u16);
    put_u64(&mut bytes, 8, lost);
    put_u64(&mut bytes, 16, first_index);
    out.write(&bytes);
}

struct Section {
    records: u64,
    torn: u64,
    /// Whether the last slot read was written out: a TEXT slot belongs to it.
    last_kept: bool,
}

impl Section {
    fn take(&mut self, index: u64, event: Option<Event>, out: &mut Output) {
        let Some(event) = event else {
            self.torn += 1;
            self.last_kept = false;
            return;
        };
        if event.kind == format::TEXT && !self.last_kept {
            self.torn += 1; // the text of an event that was torn
            return;
        }
        self.last_kept = true;
        self.records += 1 + self.write_event(index, &event, out);
    }

    /// Writes the event and the text the dump adds to it; returns how many
    /// text records it added.
    fn write_event(&self, index: u64, event: &Event, out: &mut Output) -> u64 {
        let ns = tsc_to_ns(event.tsc);
        match event.kind {
            format::CALL_RUN_BEGIN => {
                // `b` and `small` hold a `&'static str`'s address and length.
                write_record(&Event { b: 0, small: 0, ..*event }, index, ns, out);
                // SAFETY: `record_static_name` is the only writer of this
                // kind and stored a `&'static str`'s pointer and length; the
                // seqlock handed us all fields of one write.
                let name = unsafe {
                    core::slice::from_raw_parts(event.b as *const u8, event.small as usize)
                };
                // A name cut at u16::MAX bytes may end inside a character.
                let name = core::str::from_utf8(name).unwrap_or("?");
                let mut text = TextOut::new(index, ns, out);
                let _ = text.write_str(name);
                text.finish()
            }
            format::PREEMPT_OFF => {
                write_record(event, index, ns, out);
                let mut text = TextOut::new(index, ns, out);
                match CODE_NAMER.get() {
                    Some(namer) => {
                        let _ = namer(event.a, &mut text);
                    }
                    None => {
                        let _ = write!(text, "{:#x}", event.a);
                    }
                }
                text.finish()
            }
            _ => {
                write_record(event, index, ns, out);
                0
            }
        }
    }
}

/// Turns text into TEXT records of 16 bytes, cut at MAX_TEXT_BYTES (at a
/// character boundary: the host reads UTF-8).
struct TextOut<'o> {
    /// The ring index of the event the text belongs to.
    index: u64,
    ns: u64,
    out: &'o mut Output,
    buffer: [u8; 16],
    used: usize,
    total: usize,
    records: u64,
}

impl<'o> TextOut<'o> {
    fn new(index: u64, ns: u64, out: &'o mut Output) -> TextOut<'o> {
        TextOut { index, ns, out, buffer: [0; 16], used: 0, total: 0, records: 0 }
    }

    fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        write_record(&Event::text(&self.buffer[..self.used]), self.index, self.ns, self.out);
        self.records += 1;
        self.buffer = [0; 16];
        self.used = 0;
    }

    fn finish(mut self) -> u64 {
        self.flush();
        self.records
    }
}

impl Write for TextOut<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for character in text.chars() {
            let mut bytes = [0u8; 4];
            let bytes = character.encode_utf8(&mut bytes).as_bytes();
            if self.total + bytes.len() > MAX_TEXT_BYTES {
                return Ok(());
            }
            for &byte in bytes {
                self.buffer[self.used] = byte;
                self.used += 1;
                self.total += 1;
                if self.used == 16 {
                    self.flush();
                }
            }
        }
        Ok(())
    }
}

/// Writes one record; `index` is the ring slot it came from (its low 32
/// bits go out, so the host can drop a record two dumps both wrote).
fn write_record(event: &Event, index: u64, ns: u64, out: &mut Output) {
    let mut bytes = [0u8; format::RECORD_SIZE];
    put_u64(&mut bytes, 0, ns);
    put_u16(&mut bytes, 8, event.kind);
    put_u16(&mut bytes, 10, event.small);
    bytes[12..16].copy_from_slice(&(index as u32).to_le_bytes());
    put_u64(&mut bytes, 16, event.a);
    put_u64(&mut bytes, 24, event.b);
    put_u64(&mut bytes, 32, event.c);
    out.write(&bytes);
}

/// Collects bytes and writes them to the port a buffer at a time: under KVM
/// each `rep outsb` is one exit to the host, not one per byte or per record.
/// On the stack (1 KiB): the panic path may run on a small one.
struct Output {
    buffer: [u8; 1024],
    used: usize,
}

impl Output {
    fn new() -> Output {
        Output { buffer: [0; 1024], used: 0 }
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.used + bytes.len() > self.buffer.len() {
            self.flush();
        }
        self.buffer[self.used..self.used + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
    }

    fn flush(&mut self) {
        debugcon::write(format::DEBUGCON_PORT, &self.buffer[..self.used]);
        self.used = 0;
    }
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
