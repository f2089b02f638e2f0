//! The per-CPU preempt count (Linux: `preempt_count()`), and the preempt-off
//! tracer.
//!
//! Code that must stay on its CPU, or that holds a spinlock, raises the count;
//! the scheduler may switch threads only while it is zero. Calls nest. When
//! the count drops back to zero and a reschedule is pending (a wake-up or the
//! timer asked for one while preemption was off), `enable()` switches threads
//! right there: that is one of the two preemption points; the other is the
//! return from an interrupt (see `sched::preempt_on_interrupt_return`).
//!
//! The count lives here, below the scheduler, because spinlocks raise it: the
//! lock must not depend on the scheduler that uses locks. The one thing
//! `enable()` needs from above, "switch threads now if one is due", is a
//! function the scheduler registers at boot ([`set_reschedule`]), as Linux's
//! `preempt_enable()` ends in a call to the scheduler's `preempt_schedule()`.
//!
//! The interrupt depth (how many interrupt handlers run on this CPU) is here
//! too: with the count, it says whether this CPU may switch threads (Linux
//! keeps both in `preempt_count`).
//!
//! The tracer (Linux: the `preemptoff` tracer) measures, per CPU, every span
//! during which the count was above zero, and keeps the longest one since the
//! last `reset_tracer()` with the address of the code that opened it.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::arch::x86::cpu::rdtsc;
use crate::percpu::{self, cpu_local};
use crate::{time, trace};

cpu_local! {
    /// Nesting depth of `disable()`. Changed only with `add_on_this_cpu`.
    static PREEMPT_COUNT: AtomicU32 = AtomicU32::new(0);
    /// Preempt-off tracer: when (TSC) and from where the current span began,
    /// and the longest span so far (TSC cycles) with where it began.
    static OFF_SINCE: AtomicU64 = AtomicU64::new(0);
    static OFF_CALLER: AtomicU64 = AtomicU64::new(0);
    static OFF_MAX: AtomicU64 = AtomicU64::new(0);
    static OFF_MAX_CALLER: AtomicU64 = AtomicU64::new(0);
}

/// What `enable()` calls when the count drops to zero: the scheduler's
/// preemption point, registered once by `set_reschedule()`.
static RESCHEDULE: spin::Once<fn()> = spin::Once::new();

/// Registers the scheduler's preemption point, which `enable()` calls each
/// time the count drops to zero (the scheduler checks whether a switch is due).
pub fn set_reschedule(preempt_point: fn()) {
    // Registered once, at boot, on the boot CPU.
    assert!(RESCHEDULE.get().is_none(), "preempt: the reschedule hook is registered twice");
    RESCHEDULE.call_once(|| preempt_point);
}

fn reschedule() {
    if let Some(preempt_point) = RESCHEDULE.get() {
        preempt_point();
    }
}

#[inline]
pub fn disable() {
    PREEMPT_COUNT.add_on_this_cpu(1);
    // The compiler must not move memory accesses of the critical section above this point.
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    // Count 1 after the add means this call opened the span. Interrupts nest
    // their own disable/enable pairs, so the value read is ours; and with the
    // count above zero this thread cannot move to another CPU any more.
    if PREEMPT_COUNT.get().load(Ordering::Relaxed) == 1 {
        OFF_SINCE.get().store(rdtsc(), Ordering::Relaxed);
        // The return address of the function disable() is inlined into: for a
        // spinlock, the code that took the lock.
        OFF_CALLER.get().store(crate::arch::x86::cpu::return_address(), Ordering::Relaxed);
    }
}

#[inline]
pub fn enable() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    if PREEMPT_COUNT.get().load(Ordering::Relaxed) == 1 {
        record_span();
        PREEMPT_COUNT.add_on_this_cpu(-1);
        reschedule();
    } else {
        PREEMPT_COUNT.add_on_this_cpu(-1);
    }
}

/// Like `enable()` but never switches threads: for the scheduler itself.
pub fn enable_no_resched() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    if PREEMPT_COUNT.get().load(Ordering::Relaxed) == 1 {
        record_span();
    }
    PREEMPT_COUNT.add_on_this_cpu(-1);
}

/// Spans longer than this go into the event trace (`trace=sched`), as
/// Linux's preemptoff tracer reports spans over `tracing_thresh`.
pub const TRACE_THRESHOLD_US: u64 = 100;

/// Called with the count still 1: this CPU's copies are stable.
fn record_span() {
    let span = rdtsc().saturating_sub(OFF_SINCE.get().load(Ordering::Relaxed));
    if span > OFF_MAX.get().load(Ordering::Relaxed) {
        OFF_MAX.get().store(span, Ordering::Relaxed);
        OFF_MAX_CALLER.get().store(OFF_CALLER.get().load(Ordering::Relaxed), Ordering::Relaxed);
    }
    if trace::is_on(trace::format::PREEMPT_OFF) && span > time::ns_to_tsc(TRACE_THRESHOLD_US * 1000)
    {
        let caller = OFF_CALLER.get().load(Ordering::Relaxed);
        trace::record(trace::format::PREEMPT_OFF, 0, caller, time::tsc_to_ns(span), 0);
    }
}

/// The current CPU's preempt count.
pub fn count() -> u32 {
    // One instruction: the caller may be preemptible, and a thread moved
    // between reading GS and reading the count would read the count of the
    // CPU it left, which may by then be running a spinlock holder.
    PREEMPT_COUNT.load_on_this_cpu()
}

/// For a CPU that starts again after INIT: INIT resets the CPU, not its
/// per-CPU memory, and the CPU may have been stopped anywhere (given up on
/// during bring-up, inside a spinlock's preempt-disabled section, say): its
/// preempt count starts from zero again (and `irq` forgets its interrupt depth).
pub fn reset_after_restart() {
    PREEMPT_COUNT.get().store(0, Ordering::Relaxed);
}

/// The longest preempt-off span on one CPU since the last reset.
#[derive(Clone, Copy, Debug)]
pub struct LongestSpan {
    pub cpu: usize,
    pub nanoseconds: u64,
    /// Return address inside the code that disabled preemption.
    pub from: u64,
}

/// Forgets the recorded maxima on every CPU: a new measurement window.
pub fn reset_tracer() {
    for cpu in percpu::cpus_with_area() {
        OFF_MAX.on(cpu).store(0, Ordering::Relaxed);
    }
}

/// Each CPU's longest preempt-off span since the last reset.
pub fn longest_spans() -> alloc::vec::Vec<LongestSpan> {
    percpu::cpus_with_area()
        .map(|cpu| LongestSpan {
            cpu,
            nanoseconds: crate::time::tsc_to_ns(OFF_MAX.on(cpu).load(Ordering::Relaxed)),
            from: OFF_MAX_CALLER.on(cpu).load(Ordering::Relaxed),
        })
        .collect()
}
