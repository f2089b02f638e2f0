//! The event trace: what each CPU did and when, recorded as it happens and
//! dumped for the host to draw (`cargo run -- --trace FILE.json`, which opens
//! in ui.perfetto.dev; docs/tracing.md).
//!
//! This is the kernel's small ftrace. The mechanisms the kernel exists to show
//! (parallel bring-up, cross-CPU calls, TLB shootdowns, preemptible waits,
//! the panic stop) record events at the points where they happen: an AP
//! calling in, an IPI sent and received, a call queued, run and acknowledged,
//! a flush, a context switch. `trace=` chooses which categories are recorded
//! (`format::category`); with `trace=off`, the default, a recording site costs
//! one load of a mask and a branch.
//!
//! - **Where events go**: each CPU has its own ring of fixed-size slots
//!   (`ring.rs`), written by that CPU alone without a lock, in interrupt and
//!   NMI context as well. When it is full the oldest events are overwritten.
//! - **Timestamps** are raw TSC values, which the TSC check at bring-up has
//!   shown to agree across CPUs; the dump converts them to nanoseconds.
//! - **Getting them out** (`dump.rs`): at the end of a run, after a panic's
//!   report, and whenever code calls [`dump`], each ring's new events go to
//!   QEMU's debug console port in the binary format of `format.rs`, which the
//!   runner turns into Chrome trace JSON and an SVG.
//!
//! This layer sits just above `percpu` and `args`, below the interrupt layer,
//! so that every layer above, the interrupt dispatch included, can record;
//! the two things it needs from above (the clock's rate and the symbol
//! table) are handed down at boot.

// `name_of`, `category::ALL` and some reasons are read by the runner, not here.
mod dump;
#[allow(dead_code)]
pub mod format;
mod ring;
mod tests;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use crate::args;
pub use dump::{set_clock, set_code_namer};
use ring::Event;

/// The categories being recorded (`format::category` bits; 0: off).
static CATEGORIES: AtomicU32 = AtomicU32::new(0);

// `trace=` names its categories in `args`, whose bits must be the format's.
const _: () = {
    let mut i = 0;
    while i < args::TRACE_CATEGORIES.len() {
        assert!(format::category::NAMES[i].1 == 1 << i);
        assert!(same(format::category::NAMES[i].0, args::TRACE_CATEGORIES[i]));
        i += 1;
    }
};

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Slots in each CPU's ring (0: tracing off).
static SLOTS_PER_CPU: AtomicUsize = AtomicUsize::new(0);

/// Starts recording what `trace=` asks for, on the boot CPU (needs the
/// heap). `cpus`: how many CPUs the firmware lists, which the rings share a
/// memory budget among.
pub fn init(cpus: usize) {
    let categories = args::get().trace;
    if categories == 0 {
        return;
    }
    let slots = ring::slots_for(cpus);
    SLOTS_PER_CPU.store(slots, Ordering::Relaxed);
    ring::install(0, slots);
    CATEGORIES.store(categories, Ordering::Release);
    let names = format::category::NAMES.iter().filter(|(_, bit)| categories & bit != 0);
    let mut list = alloc::string::String::new();
    for (name, _) in names {
        list.push_str(if list.is_empty() { "" } else { "," });
        list.push_str(name);
    }
    log::info!(
        "trace: recording {list} in {} KiB per CPU, dumped to the debug console (port {:#x})",
        slots * format::RECORD_SIZE / 1024,
        format::DEBUGCON_PORT
    );
}

/// Whether `trace=` turned recording on at boot (the buffers exist).
pub fn is_enabled_at_boot() -> bool {
    args::get().trace != 0
}

/// Stops or restarts recording (what `trace=` chose), for benchmarks that
/// compare a run with tracing to one without, in the same boot.
pub fn set_recording(on: bool) {
    let categories = if on { args::get().trace } else { 0 };
    CATEGORIES.store(categories, Ordering::Release);
}

/// What recording costs `measure` (which returns a time): it runs `blocks`
/// times with recording paused and as many with it on, alternating, and
/// alternating which comes first, so a slow spell of the host falls on both.
/// Returns `off_median_ns=... on_median_ns=... on/off=...` with each mode's
/// range, for the benchmarks' `BENCH trace` lines; or why it cannot compare.
pub fn compare_recording(
    blocks: usize,
    mut measure: impl FnMut() -> u64,
) -> Result<alloc::string::String, &'static str> {
    if !is_enabled_at_boot() {
        return Err("boot with trace=all to compare recording on and off");
    }
    let (mut off, mut on) = (Vec::with_capacity(blocks), Vec::with_capacity(blocks));
    for block in 0..blocks.max(1) {
        for recording in [block % 2 == 1, block % 2 == 0] {
            set_recording(recording);
            let result = measure();
            if recording { on.push(result) } else { off.push(result) }
        }
    }
    set_recording(true);
    off.sort_unstable();
    on.sort_unstable();
    let (off_median, on_median) = (off[off.len() / 2], on[on.len() / 2]);
    let x1000 = on_median * 1000 / off_median.max(1);
    Ok(alloc::format!(
        "off_median_ns={off_median} on_median_ns={on_median} on/off={}.{:03} off_range_ns={}-{} on_range_ns={}-{}",
        x1000 / 1000,
        x1000 % 1000,
        off[0],
        off[off.len() - 1],
        on[0],
        on[on.len() - 1]
    ))
}

/// Gives CPU `cpu` its buffer; `smp` calls this before the CPU starts.
pub fn prepare_cpu(cpu: usize) {
    let slots = SLOTS_PER_CPU.load(Ordering::Relaxed);
    if slots != 0 {
        ring::install(cpu, slots);
    }
}

/// Whether events of `kind` are being recorded.
#[inline]
pub fn is_on(kind: u16) -> bool {
    CATEGORIES.load(Ordering::Relaxed) & format::category_of(kind) != 0
}

/// Records an event of `kind` on this CPU, now. What `small`, `a`, `b` and
/// `c` mean is written beside each kind in `format.rs`.
#[inline]
pub fn record(kind: u16, small: u16, a: u64, b: u64, c: u64) {
    if is_on(kind) {
        record_event(None, kind, small, a, b, c);
    }
}

/// Records an event that happened at `tsc` (for a moment taken before this
/// CPU could record: an AP's first instructions).
#[inline]
pub fn record_at(tsc: u64, kind: u16, small: u16, a: u64, b: u64, c: u64) {
    if is_on(kind) {
        record_event(Some(tsc), kind, small, a, b, c);
    }
}

fn record_event(tsc: Option<u64>, kind: u16, small: u16, a: u64, b: u64, c: u64) {
    // The dump reads that kind's `b` as a string's address: only
    // `record_static_name` may write it. (The kind is a constant at every
    // call site, so this costs nothing.)
    assert!(kind != format::CALL_RUN_BEGIN, "trace: CALL_RUN_BEGIN needs record_static_name");
    ring::record(tsc, &mut [Event { tsc: 0, kind, small, a, b, c }]);
}

/// Records an event followed by `text` (at most 32 bytes are kept), copied
/// now: for names that may not outlive the event (a thread's).
#[inline]
pub fn record_with_text(kind: u16, small: u16, a: u64, text: &str) {
    if is_on(kind) {
        record_text_event(kind, small, a, text);
    }
}

fn record_text_event(kind: u16, small: u16, a: u64, text: &str) {
    assert!(kind != format::CALL_RUN_BEGIN, "trace: CALL_RUN_BEGIN needs record_static_name");
    const PIECES: usize = MAX_TEXT_SLOTS;
    let mut events = [Event { tsc: 0, kind, small, a, b: 0, c: 0 }; 1 + PIECES];
    let mut count = 1;
    // Cut at a character boundary: the host reads the text as UTF-8.
    let mut length = text.len().min(16 * PIECES);
    while !text.is_char_boundary(length) {
        length -= 1;
    }
    for piece in text.as_bytes()[..length].chunks(16) {
        events[count] = Event::text(piece);
        count += 1;
    }
    // The event says how many text slots follow it (the dump must not
    // split them from it).
    events[0].c = count as u64 - 1;
    ring::record(None, &mut events[..count]);
}

/// The most TEXT slots an event recorded with its text has (32 bytes).
const MAX_TEXT_SLOTS: usize = 2;

/// Records an event named by a `&'static str` (a cross-CPU call's name): the
/// ring keeps only its address, and the dump copies the text out.
#[inline]
pub fn record_static_name(kind: u16, a: u64, c: u64, name: &'static str) {
    if is_on(kind) {
        let small = name.len().min(u16::MAX as usize) as u16;
        ring::record(None, &mut [Event { tsc: 0, kind, small, a, b: name.as_ptr() as u64, c }]);
    }
}

/// Writes every CPU's events since the last dump to the debug console (a
/// dump "on request": tests and benchmarks call it between phases).
pub fn dump() {
    dump_for(format::reason::REQUEST);
}

/// The dump at the end of a run.
pub fn dump_at_end() {
    dump_for(format::reason::END_OF_RUN);
}

/// The dump after a panic's report: the other CPUs are stopped, and one of
/// them may have been stopped in the middle of a dump.
pub fn dump_after_panic() {
    // The buffers decide, not whether recording is paused at the moment.
    if SLOTS_PER_CPU.load(Ordering::Relaxed) != 0 {
        dump::dump(format::reason::PANIC, true);
    }
}

fn dump_for(reason: u16) {
    if SLOTS_PER_CPU.load(Ordering::Relaxed) != 0 {
        dump::dump(reason, false);
    }
}
