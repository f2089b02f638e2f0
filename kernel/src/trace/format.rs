//! The trace's wire format: what the kernel writes to the debug console port
//! when it dumps its buffers, and what every event means.
//!
//! This file is the one place the format is written. The kernel's recorder
//! and dumper (beside it) use it, and the runner includes it by path to
//! decode the stream, so it must stay plain data: no `crate::` paths, no
//! allocation, nothing but `core`. All numbers are little-endian.
//!
//! A stream is a sequence of *dumps* (the kernel dumps at the end of a run,
//! after a panic's report, and whenever code asks for one); each dump holds
//! the events recorded on each CPU since that CPU's previous dump:
//!
//! ```text
//! dump        := header  cpu_section*  trailer
//! header      := "KTRC" version:u16 cpus:u16 reason:u16 0:u16 0:u32
//!                tsc_hz:u64 dump_ns:u64                              (32 bytes)
//! cpu_section := cpu:u16 0:u16 0:u32 lost:u64 first:u64 0:u64           (32 bytes)
//!                record*  (oldest first)
//!                section_end
//! record      := ns:u64 kind:u16 small:u16 index:u32 a:u64 b:u64 c:u64 (40 bytes)
//! section_end := a record of kind SECTION_END: a = torn, b = records before it,
//!                c = pending (reserved at the tail but not yet written:
//!                the next dump has them)
//! trailer     := "KEND" 0:u32                                          (8 bytes)
//! ```
//!
//! - `cpus` is the number of sections that follow.
//! - `index` is the low 32 bits of the ring slot the record came from (text
//!   the dump adds carries its event's), `first` the section's first slot.
//!   A dump cut short (its CPU stopped for a panic) leaves its events to the
//!   next dump, which writes some of them again: the reader keeps the first
//!   copy of each (CPU, index).
//! - `ns` is the time since the kernel's clock started (the same clock as the
//!   console log's), converted from the TSC by the dumper.
//! - `lost` counts this CPU's events overwritten before this dump (the buffer
//!   is a ring: when it is full the oldest events go, as in ftrace's default
//!   overwrite mode), `torn` those skipped because they were being written
//!   while the dump read them. The dumper reads each record once, as it
//!   writes it out, so a section's length is known only at its end.
//! - Text is cut at a character boundary: at 32 bytes for a thread's name,
//!   96 for a call's name or a code location.
//! - A record of kind [`TEXT`] is not an event: it carries `small` (1 to 16)
//!   bytes of UTF-8 in `a` then `b`, and belongs to the last event before it in
//!   the same section. A thread's name, a cross-CPU call's name and a
//!   preempt-off span's code location travel this way.

/// The first bytes of every dump.
pub const MAGIC: [u8; 4] = *b"KTRC";
/// The last bytes of every dump.
pub const TRAILER_MAGIC: [u8; 4] = *b"KEND";
/// Bumped whenever the layout or an event's meaning changes.
pub const VERSION: u16 = 2;

pub const HEADER_SIZE: usize = 32;
pub const CPU_SECTION_SIZE: usize = 32;
pub const RECORD_SIZE: usize = 40;
pub const TRAILER_SIZE: usize = 8;

/// The I/O port the dump is written to: QEMU's ISA debug console
/// (`-debugcon file:PATH`), which stores every byte written to it and has no
/// other effect, so the serial console's text is never interleaved with it.
pub const DEBUGCON_PORT: u16 = 0xe9;

/// Why a dump was written (the header's `reason`).
pub mod reason {
    /// The run ended (a test run, a benchmark, `then=exit`).
    pub const END_OF_RUN: u16 = 0;
    /// After a panic's report.
    pub const PANIC: u16 = 1;
    /// Code asked for one (`trace::dump()`).
    pub const REQUEST: u16 = 2;
}

/// What `trace=` selects: each event kind belongs to one category.
pub mod category {
    pub const SMP: u32 = 1 << 0;
    pub const IPI: u32 = 1 << 1;
    pub const TLB: u32 = 1 << 2;
    pub const SCHED: u32 = 1 << 3;
    pub const PANIC: u32 = 1 << 4;
    pub const ALL: u32 = SMP | IPI | TLB | SCHED | PANIC;

    /// The names `trace=` takes, with their bits.
    pub const NAMES: [(&str, u32); 5] =
        [("smp", SMP), ("ipi", IPI), ("tlb", TLB), ("sched", SCHED), ("panic", PANIC)];
}

/// `small` of an IPI sent or received when it is an NMI (which has no vector).
pub const NMI: u16 = 0x100;

/// Continuation of the event before it: `small` bytes of text in `a`, `b`.
pub const TEXT: u16 = 0x0000;
/// The end of a CPU's section: a = records torn, b = records in the section.
pub const SECTION_END: u16 = 0xffff;

// --- smp: bring-up (docs/smp.md) -------------------------------------------

/// Boot CPU: a bring-up begins. small: 0 parallel, 1 serial; a: APs to start.
pub const BRING_UP_BEGIN: u16 = 0x0101;
/// Boot CPU: the bring-up is over. a: CPUs online, the boot CPU included;
/// b: the TSC check's worst warp between CPUs in cycles (u64::MAX: not
/// checked, `tsc=reliable`), which bounds how wrong the order of two close
/// events on different CPUs can be drawn.
pub const BRING_UP_END: u16 = 0x0102;
/// Boot CPU: the first SIPI went to an AP. small: its CPU number; a: its APIC id.
pub const AP_KICK: u16 = 0x0103;
/// The AP: its first Rust code ran (recorded once its per-CPU data is
/// installed, with the time it was reached).
pub const AP_ALIVE: u16 = 0x0104;
/// The AP: descriptor tables, APIC and timer set up; it calls in.
pub const AP_CALLED_IN: u16 = 0x0105;
/// The AP: released by the boot CPU into the TSC check.
pub const AP_TSC_CHECK: u16 = 0x0106;
/// The AP: online, its call queue open; its scheduler starts next.
pub const AP_ONLINE: u16 = 0x0107;
/// Boot CPU: gave up on an AP. small: its CPU number; a: the state it was
/// stuck in (`smp::ApState` as a number).
pub const AP_GIVEN_UP: u16 = 0x0108;

// --- ipi: interrupts and cross-CPU calls (docs/ipi-and-tlb.md) --------------

/// An IPI was sent. small: the vector, or [`NMI`]; a: the target CPU.
pub const IPI_SEND: u16 = 0x0201;
/// An interrupt handler starts on this CPU. small: the vector. (The local
/// APIC timer's are [`TICK_BEGIN`] instead, in the `sched` category.)
pub const IRQ_BEGIN: u16 = 0x0202;
/// The handler of [`IRQ_BEGIN`] returns. small: the vector.
pub const IRQ_END: u16 = 0x0203;
/// An NMI arrived on this CPU. small: [`NMI`]; a: the interrupted RIP.
pub const NMI_BEGIN: u16 = 0x0204;
/// The NMI handler returns.
pub const NMI_END: u16 = 0x0205;
/// A cross-CPU call was put in a CPU's queue. small: that CPU; a: the call's
/// id (unique while the call is pending).
pub const CALL_QUEUED: u16 = 0x0211;
/// A CPU starts running a queued call. a: its id. Followed by the call's
/// name as [`TEXT`] (its [`CALL_QUEUED`] says who made it).
pub const CALL_RUN_BEGIN: u16 = 0x0212;
/// The call's function returned. a: its id.
pub const CALL_RUN_END: u16 = 0x0213;
/// A target acknowledges a call (it ran it, or was found offline), recorded
/// just before the acknowledgement, so before the waiter can see it. small:
/// the target; a: the id; b: targets still pending, this one included (a
/// snapshot: others may acknowledge at the same moment).
pub const CALL_ACKED: u16 = 0x0214;
/// The thread that made a call starts waiting for its targets. small: how
/// it waits (0 preemptible spin, 1 spin with preemption off, 2 sleep): what
/// it really does, which is a spin when preemption was already off around
/// the call, whatever `ipi_wait=` says; a: the id; b: the thread's id; c: how
/// many targets it waits for.
pub const CALL_WAIT_BEGIN: u16 = 0x0215;
/// The wait is over (on the CPU the thread runs on by then). a: the id;
/// b: the thread's id.
pub const CALL_WAIT_END: u16 = 0x0216;

// --- tlb: shootdowns (docs/ipi-and-tlb.md) ----------------------------------

/// A shootdown begins, after the page-table change. small: `ipi_wait=`'s
/// mode (how it waits is in its [`CALL_WAIT_BEGIN`]);
/// a: the first page's address; b: pages | targets << 32 | lazy CPUs skipped
/// << 48; c: the thread's id.
pub const SHOOTDOWN_BEGIN: u16 = 0x0301;
/// Every target has flushed. a: the first page's address; c: the thread's id.
pub const SHOOTDOWN_END: u16 = 0x0302;
/// This CPU flushed its TLB for a shootdown. small: what it flushed
/// ([`FLUSH_NOTHING`], [`FLUSH_RANGE`], [`FLUSH_ALL`]); a: the first page's
/// address; b: pages.
pub const TLB_FLUSH: u16 = 0x0303;
/// A CPU that was lazy came back to a space that changed meanwhile and
/// flushed everything (its catch-up).
pub const LAZY_CATCH_UP: u16 = 0x0304;

/// [`TLB_FLUSH`]'s `small`: already current, nothing to do.
pub const FLUSH_NOTHING: u16 = 0;
/// [`TLB_FLUSH`]'s `small`: the range the shootdown named (page by page
/// with `invlpg`, or everything for a range over `tlb::FLUSH_CEILING` pages).
pub const FLUSH_RANGE: u16 = 1;
/// [`TLB_FLUSH`]'s `small`: everything (a CR3 reload).
pub const FLUSH_ALL: u16 = 2;

// --- sched: the scheduler (docs/scheduler.md) --------------------------------

/// A context switch. small: the next thread's priority rank (0 idle, 1
/// normal, 2.. real-time levels 1..); a: the previous thread's id; b: the
/// next thread's id; c: the previous thread's rank.
pub const SWITCH: u16 = 0x0401;
/// A thread was woken. small: the CPU chosen for it (if that CPU has
/// stopped taking threads meanwhile, it is queued on another: the
/// [`RUN_QUEUE`] event says where); a: its id.
pub const WAKE: u16 = 0x0402;
/// A thread was created. small: its priority rank; a: its id; c: how many
/// [`TEXT`] records of its name follow (0 to 2).
pub const THREAD_NAME: u16 = 0x0403;
/// A CPU's run queue length changed. small: the new length; a: that CPU
/// (a wake-up on one CPU queues threads on another).
pub const RUN_QUEUE: u16 = 0x0404;
/// A span with preemption off longer than the threshold ended. a: the return
/// address in the code that opened it; b: its length in ns (it began `b` ns
/// before this record). Followed by the code location as [`TEXT`].
pub const PREEMPT_OFF: u16 = 0x0405;
/// The local APIC timer's handler starts.
pub const TICK_BEGIN: u16 = 0x0406;
/// The timer's handler returns.
pub const TICK_END: u16 = 0x0407;

// --- panic (docs/panic.md) ---------------------------------------------------

/// The panicking CPU owns the machine (it won the race to report). a: how
/// many other CPUs it sends the stop NMI to (those NMIs are not recorded one
/// by one: at 255 CPUs they would fill a ring).
pub const PANIC_BEGIN: u16 = 0x0501;
/// A CPU stopped for the panic (in its NMI handler, or on seeing the panic).
pub const PANIC_STOP: u16 = 0x0502;
/// The report is printed whole.
pub const PANIC_REPORT_DONE: u16 = 0x0503;
/// The panicking CPU is about to halt (or spin, exit, reboot). small: 0 halt,
/// 1 spin, 2 exit, 3 reboot.
pub const PANIC_HALT: u16 = 0x0504;

/// The category an event kind belongs to (0 for [`TEXT`] and unknown kinds).
pub const fn category_of(kind: u16) -> u32 {
    match kind >> 8 {
        0x01 => category::SMP,
        0x02 => category::IPI,
        0x03 => category::TLB,
        0x04 => category::SCHED,
        0x05 => category::PANIC,
        _ => 0,
    }
}

/// A short name for every event kind, as the trace viewer shows it.
pub const fn name_of(kind: u16) -> &'static str {
    match kind {
        TEXT => "text",
        SECTION_END => "end of section",
        BRING_UP_BEGIN => "bring-up",
        BRING_UP_END => "bring-up end",
        AP_KICK => "kick",
        AP_ALIVE => "alive",
        AP_CALLED_IN => "called in",
        AP_TSC_CHECK => "TSC check",
        AP_ONLINE => "online",
        AP_GIVEN_UP => "given up",
        IPI_SEND => "IPI sent",
        IRQ_BEGIN => "interrupt",
        IRQ_END => "interrupt end",
        NMI_BEGIN => "NMI",
        NMI_END => "NMI end",
        CALL_QUEUED => "call queued",
        CALL_RUN_BEGIN => "call",
        CALL_RUN_END => "call end",
        CALL_ACKED => "call acked",
        CALL_WAIT_BEGIN => "wait for call",
        CALL_WAIT_END => "wait over",
        SHOOTDOWN_BEGIN => "shootdown",
        SHOOTDOWN_END => "shootdown done",
        TLB_FLUSH => "TLB flush",
        LAZY_CATCH_UP => "lazy catch-up",
        SWITCH => "switch",
        WAKE => "wake",
        THREAD_NAME => "thread",
        RUN_QUEUE => "run queue",
        PREEMPT_OFF => "preempt off",
        TICK_BEGIN => "tick",
        TICK_END => "tick end",
        PANIC_BEGIN => "panic",
        PANIC_STOP => "stopped for panic",
        PANIC_REPORT_DONE => "report printed",
        PANIC_HALT => "halt",
        _ => "unknown",
    }
}
