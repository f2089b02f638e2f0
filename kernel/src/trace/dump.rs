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

/// One dump at a time: the rings' `dumped` marks have one writer.
static DUMPING: AtomicBool = AtomicBool::new(false);

/// Longest text a preempt-off span's location gets.
const MAX_LOCATION_BYTES: usize = 96;

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

/// Takes the dump lock. `patient`: give up after about `patience_ms` and go
/// on anyway (the panic path: a CPU stopped in the middle of a dump keeps
/// the lock for ever; its half dump stays in the stream, cut short).
fn lock(patience_ms: Option<u64>) {
    let deadline = patience_ms.map(|ms| {
        let hz = CLOCK_HZ.load(Ordering::Relaxed);
        rdtsc() + ms * (hz / 1000)
    });
    while DUMPING.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
        if deadline.is_some_and(|deadline| rdtsc() > deadline) {
            return;
        }
        core::hint::spin_loop();
    }
}

fn unlock() {
    DUMPING.store(false, Ordering::Release);
}

/// Writes one dump. `panicking`: the other CPUs are stopped, and one of them
/// may hold the lock.
pub fn dump(why: u16, panicking: bool) {
    lock(panicking.then_some(100));
    let cpus = percpu::cpus_with_area();
    let mut header = [0u8; format::HEADER_SIZE];
    header[0..4].copy_from_slice(&format::MAGIC);
    put_u16(&mut header, 4, format::VERSION);
    put_u16(&mut header, 6, cpus.len() as u16);
    put_u16(&mut header, 8, why);
    put_u64(&mut header, 16, CLOCK_HZ.load(Ordering::Relaxed));
    put_u64(&mut header, 24, tsc_to_ns(rdtsc()));
    out(&header);
    for cpu in cpus {
        dump_cpu(cpu);
    }
    let mut trailer = [0u8; format::TRAILER_SIZE];
    trailer[0..4].copy_from_slice(&format::TRAILER_MAGIC);
    out(&trailer);
    unlock();
}

fn dump_cpu(cpu: usize) {
    let ring = ring::ring_of(cpu);
    let (indices, lost) = ring.undumped();
    section_header(cpu, lost);
    let mut section = Section { records: 0, torn: 0, last_kept: false };
    let end = indices.end;
    for index in indices {
        section.take(ring.read(index));
    }
    ring.mark_dumped(end);
    let end_of_section = Event {
        tsc: 0,
        kind: format::SECTION_END,
        small: 0,
        a: section.torn,
        b: section.records,
        c: 0,
    };
    write_record(&end_of_section, 0);
}

fn section_header(cpu: usize, lost: u64) {
    let mut bytes = [0u8; format::CPU_SECTION_SIZE];
    put_u16(&mut bytes, 0, cpu as u16);
    put_u64(&mut bytes, 8, lost);
    out(&bytes);
}

struct Section {
    records: u64,
    torn: u64,
    /// Whether the last slot read was written out: a TEXT slot belongs to it.
    last_kept: bool,
}

impl Section {
    fn take(&mut self, event: Option<Event>) {
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
        self.records += 1 + self.write_event(&event);
    }

    /// Writes the event and the text the dump adds to it; returns how many
    /// text records it added.
    fn write_event(&self, event: &Event) -> u64 {
        let ns = tsc_to_ns(event.tsc);
        match event.kind {
            format::CALL_RUN_BEGIN => {
                // `b` and `small` hold a `&'static str`'s address and length.
                write_record(&Event { b: 0, small: 0, ..*event }, ns);
                // SAFETY: `record_static_name` is the only writer of this
                // kind and stored a `&'static str`'s pointer and length; the
                // seqlock handed us all fields of one write.
                let name = unsafe {
                    core::slice::from_raw_parts(event.b as *const u8, event.small as usize)
                };
                // A name cut at u16::MAX bytes may end inside a character.
                let name = core::str::from_utf8(name).unwrap_or("?");
                let mut text = TextOut::new(ns);
                let _ = text.write_str(name);
                text.finish()
            }
            format::PREEMPT_OFF => {
                write_record(event, ns);
                let mut text = TextOut::new(ns);
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
                write_record(event, ns);
                0
            }
        }
    }
}

/// Turns text into TEXT records of 16 bytes, cut at MAX_LOCATION_BYTES.
struct TextOut {
    ns: u64,
    buffer: [u8; 16],
    used: usize,
    total: usize,
    records: u64,
}

impl TextOut {
    fn new(ns: u64) -> TextOut {
        TextOut { ns, buffer: [0; 16], used: 0, total: 0, records: 0 }
    }

    fn flush(&mut self) {
        if self.used == 0 {
            return;
        }
        let event = Event {
            tsc: 0,
            kind: format::TEXT,
            small: self.used as u16,
            a: u64::from_le_bytes(self.buffer[0..8].try_into().unwrap()),
            b: u64::from_le_bytes(self.buffer[8..16].try_into().unwrap()),
            c: 0,
        };
        write_record(&event, self.ns);
        self.records += 1;
        self.buffer = [0; 16];
        self.used = 0;
    }

    fn finish(mut self) -> u64 {
        self.flush();
        self.records
    }
}

impl Write for TextOut {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.total == MAX_LOCATION_BYTES {
                return Ok(());
            }
            self.buffer[self.used] = byte;
            self.used += 1;
            self.total += 1;
            if self.used == 16 {
                self.flush();
            }
        }
        Ok(())
    }
}

fn write_record(event: &Event, ns: u64) {
    let mut bytes = [0u8; format::RECORD_SIZE];
    put_u64(&mut bytes, 0, ns);
    put_u16(&mut bytes, 8, event.kind);
    put_u16(&mut bytes, 10, event.small);
    put_u64(&mut bytes, 16, event.a);
    put_u64(&mut bytes, 24, event.b);
    put_u64(&mut bytes, 32, event.c);
    out(&bytes);
}

fn out(bytes: &[u8]) {
    debugcon::write(format::DEBUGCON_PORT, bytes);
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}
