//! Turning a CPU exception into a panic, and keeping the exception's
//! registers for the panic report.
//!
//! The exception's frame (SDM Vol. 3A "Exception and Interrupt Handling in
//! 64-bit Mode") lives on the handler's stack and is gone once `panic!` runs,
//! so the handler copies it into this CPU's [`ExceptionRecord`] first, and the
//! report reads it back with [`this_cpu_record`]. The record lives in the
//! per-CPU data, which is not arch's: whoever owns that storage registers how
//! to find this CPU's record ([`set_record_lookup`]). Likewise the double
//! fault handler asks a registered [`StackGuard`] whether the fault is a
//! kernel stack overflow, and whose stack it was.

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::entry::TrapFrame;
use spin::Once;

/// An exception's saved state, handed from the exception handler to the report.
pub struct ExceptionRecord {
    /// Vector + 1 (0: none).
    vector_plus_one: AtomicU32,
    error_code: AtomicU64,
    rip: AtomicU64,
    rsp: AtomicU64,
    rflags: AtomicU64,
    cs: AtomicU64,
    ss: AtomicU64,
}

/// What the report prints of an exception.
pub struct SavedException {
    pub vector: u8,
    pub error_code: u64,
    pub rip: u64,
    pub rsp: u64,
    pub rflags: u64,
    pub cs: u64,
    pub ss: u64,
}

impl ExceptionRecord {
    pub const fn new() -> ExceptionRecord {
        ExceptionRecord {
            vector_plus_one: AtomicU32::new(0),
            error_code: AtomicU64::new(0),
            rip: AtomicU64::new(0),
            rsp: AtomicU64::new(0),
            rflags: AtomicU64::new(0),
            cs: AtomicU64::new(0),
            ss: AtomicU64::new(0),
        }
    }

    /// Called by an exception handler just before it panics.
    fn save(&self, vector: u8, error_code: Option<u64>, frame: &TrapFrame) {
        self.error_code.store(error_code.unwrap_or(0), Ordering::Relaxed);
        self.rip.store(frame.rip, Ordering::Relaxed);
        self.rsp.store(frame.rsp, Ordering::Relaxed);
        self.rflags.store(frame.rflags, Ordering::Relaxed);
        self.cs.store(frame.cs, Ordering::Relaxed);
        self.ss.store(frame.ss, Ordering::Relaxed);
        self.vector_plus_one.store(vector as u32 + 1, Ordering::Release);
    }

    /// The saved exception, if a handler saved one.
    pub fn saved(&self) -> Option<SavedException> {
        let vector = self.vector_plus_one.load(Ordering::Acquire).checked_sub(1)? as u8;
        Some(SavedException {
            vector,
            error_code: self.error_code.load(Ordering::Relaxed),
            rip: self.rip.load(Ordering::Relaxed),
            rsp: self.rsp.load(Ordering::Relaxed),
            rflags: self.rflags.load(Ordering::Relaxed),
            cs: self.cs.load(Ordering::Relaxed),
            ss: self.ss.load(Ordering::Relaxed),
        })
    }
}

impl Default for ExceptionRecord {
    fn default() -> ExceptionRecord {
        ExceptionRecord::new()
    }
}

static RECORD_LOOKUP: Once<fn() -> Option<&'static ExceptionRecord>> = Once::new();

/// Registers how to find this CPU's record; the lookup returns None on a CPU
/// without per-CPU data yet (an AP in its first instructions).
pub fn set_record_lookup(lookup: fn() -> Option<&'static ExceptionRecord>) {
    // Registered once, at boot: a second lookup would be silently ignored.
    assert!(RECORD_LOOKUP.get().is_none(), "exception: the record lookup is registered twice");
    RECORD_LOOKUP.call_once(|| lookup);
}

/// This CPU's exception record, if it has one yet.
pub fn this_cpu_record() -> Option<&'static ExceptionRecord> {
    RECORD_LOOKUP.get().and_then(|lookup| lookup())
}

/// Tells a kernel stack overflow from other double faults.
pub struct StackGuard {
    /// Whether `address` is the guard page below the running thread's stack.
    pub is_guard_page: fn(address: u64) -> bool,
    /// Names the running thread, for the message.
    pub describe_owner: fn(&mut fmt::Formatter) -> fmt::Result,
}

static STACK_GUARD: Once<StackGuard> = Once::new();

pub fn set_stack_guard(guard: StackGuard) {
    assert!(STACK_GUARD.get().is_none(), "exception: the stack guard is registered twice");
    STACK_GUARD.call_once(|| guard);
}

/// The registered guard, when `address` is its guard page.
pub(super) fn overflowed_stack(address: u64) -> Option<&'static StackGuard> {
    STACK_GUARD.get().filter(|guard| (guard.is_guard_page)(address))
}

/// Formats with a `describe_owner` function.
pub(super) struct Described(pub fn(&mut fmt::Formatter) -> fmt::Result);

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        (self.0)(f)
    }
}

/// Keeps the exception's registers for the panic report, if this CPU has its
/// per-CPU data yet (an AP can fault in its first instructions).
pub(super) fn save(vector: u8, error_code: Option<u64>, frame: &TrapFrame) {
    if let Some(record) = this_cpu_record() {
        record.save(vector, error_code, frame);
    }
}

pub(super) fn panic_with(
    vector: u8,
    mnemonic: &str,
    description: &str,
    error_code: Option<u64>,
    frame: &TrapFrame,
) -> ! {
    save(vector, error_code, frame);
    match error_code {
        Some(code) => panic!(
            "{description} ({mnemonic}, vector {vector}), error code {code:#x}, at RIP {:#x}, RSP {:#x}",
            frame.rip, frame.rsp
        ),
        None => panic!(
            "{description} ({mnemonic}, vector {vector}), no error code, at RIP {:#x}, RSP {:#x}",
            frame.rip, frame.rsp
        ),
    }
}
