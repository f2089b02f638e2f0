//! Words for the numbers in a trace: interrupt vectors, wait modes, flush
//! kinds, dump reasons, priority ranks, and the threads' names, which the
//! trace itself carries (`THREAD_NAME` events).
//!
//! The vectors come from the kernel's own list, included by path like the
//! wire format, so a renumbered vector is named right without an edit here.

use std::collections::HashMap;

use super::Event;
use super::format::{self, NMI};

#[path = "../../../kernel/src/arch/x86/vectors.rs"]
mod vectors;

/// The kernel's vectors, with what the trace viewer calls them. Those that
/// one CPU sends another are inter-processor interrupts (IPIs).
const VECTORS: [(u8, &str, bool); 7] = [
    (vectors::CALL_FUNCTION_VECTOR, "call-function", true),
    (vectors::RESCHEDULE_VECTOR, "reschedule", true),
    (vectors::WAKE_VECTOR, "wake", true),
    (vectors::SELF_TEST_VECTOR, "self-test", true),
    (vectors::CRASH_TEST_VECTOR, "crash-test", true),
    (vectors::TIMER_VECTOR, "timer", false),
    (vectors::SPURIOUS_VECTOR, "spurious", false),
];

/// An interrupt as `IRQ_BEGIN`, `IPI_SEND` and the like give it (`small`):
/// "IPI 0xfc call-function", "interrupt 0xec timer", "interrupt 0x41", "NMI".
pub fn vector(small: u16) -> String {
    if small == NMI {
        return "NMI".into();
    }
    match VECTORS.iter().find(|(v, _, _)| u16::from(*v) == small) {
        Some((_, name, true)) => format!("IPI {small:#04x} {name}"),
        Some((_, name, false)) => format!("interrupt {small:#04x} {name}"),
        None => format!("interrupt {small:#04x}"),
    }
}

/// How a thread waits for the targets of its cross-CPU call, in the words of
/// the kernel's `ipi_wait=`: `preempt` a preemptible spin, `spin` a spin
/// with preemption off, `sleep`. `SHOOTDOWN_BEGIN`'s `small` is the mode
/// asked for, `CALL_WAIT_BEGIN`'s the one used (a spin when preemption was
/// already off).
pub fn wait_mode(small: u16) -> String {
    match small {
        0 => "preempt".into(),
        1 => "spin".into(),
        2 => "sleep".into(),
        other => format!("mode {other}"),
    }
}

/// Whether a wait in this mode gives the CPU up on purpose (a thread that
/// sleeps is not preempted).
pub fn wait_sleeps(small: u16) -> bool {
    small == 2
}

/// What a `TLB_FLUSH` did.
pub fn flush(small: u16) -> String {
    match small {
        format::FLUSH_NOTHING => "nothing (already current)".into(),
        format::FLUSH_RANGE => "the range".into(),
        format::FLUSH_ALL => "all (CR3 reload)".into(),
        other => format!("flush kind {other}"),
    }
}

/// Why a dump was written.
pub fn reason(reason: u16) -> String {
    match reason {
        format::reason::END_OF_RUN => "end of run".into(),
        format::reason::PANIC => "panic".into(),
        format::reason::REQUEST => "request".into(),
        other => format!("reason {other}"),
    }
}

/// What the panicking CPU does last (`PANIC_HALT`'s `small`).
pub fn panic_end(small: u16) -> String {
    match small {
        0 => "halt".into(),
        1 => "spin".into(),
        2 => "exit".into(),
        3 => "reboot".into(),
        other => format!("end {other}"),
    }
}

/// A scheduler priority rank: 0 idle, 1 normal, 2.. real-time levels 1...
pub fn rank(rank: u16) -> String {
    match rank {
        0 => "idle".into(),
        1 => "normal".into(),
        level => format!("real-time {}", level - 1),
    }
}

/// `BRING_UP_BEGIN`'s `small`.
pub fn bring_up_mode(small: u16) -> &'static str {
    if small == 0 { "parallel" } else { "serial" }
}

/// The short name of a kernel category (`trace=` takes these), for the
/// JSON's `cat` field.
pub fn category(kind: u16) -> &'static str {
    let bits = format::category_of(kind);
    format::category::NAMES.iter().find(|(_, b)| *b == bits).map_or("other", |(name, _)| name)
}

/// The threads a trace names: from `THREAD_NAME` events (id in `a`, rank in
/// `small`, name in the text) and the ranks `SWITCH` events report.
#[derive(Default)]
pub struct Threads {
    names: HashMap<u64, String>,
    ranks: HashMap<u64, u16>,
}

impl Threads {
    /// Learns every name and rank in `events` (all of them first, so that a
    /// thread is named even in the events before its `THREAD_NAME`).
    pub fn learn(events: &[Event]) -> Threads {
        let mut threads = Threads::default();
        for event in events {
            match event.kind {
                format::THREAD_NAME => {
                    threads.ranks.insert(event.a, event.small);
                    if let Some(name) = &event.text {
                        threads.names.insert(event.a, name.clone());
                    }
                }
                format::SWITCH => {
                    threads.ranks.entry(event.a).or_insert(event.c as u16);
                    threads.ranks.entry(event.b).or_insert(event.small);
                }
                _ => {}
            }
        }
        threads
    }

    /// The thread's name; "idle" for an unnamed idle thread, "thread T" for
    /// one the trace never named.
    pub fn name(&self, id: u64) -> String {
        match self.names.get(&id) {
            Some(name) => name.clone(),
            None if self.ranks.get(&id) == Some(&0) => "idle".into(),
            None => format!("thread {id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_named_from_the_kernel_list() {
        assert_eq!(vector(0xfc), "IPI 0xfc call-function");
        assert_eq!(vector(0xfd), "IPI 0xfd reschedule");
        assert_eq!(vector(0xec), "interrupt 0xec timer");
        assert_eq!(vector(0x41), "interrupt 0x41");
        assert_eq!(vector(NMI), "NMI");
    }

    #[test]
    fn categories_are_the_trace_argument_names() {
        assert_eq!(category(format::IPI_SEND), "ipi");
        assert_eq!(category(format::SHOOTDOWN_BEGIN), "tlb");
        assert_eq!(category(format::PANIC_STOP), "panic");
        assert_eq!(category(0x7777), "other");
    }
}
