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
//! The tracer (Linux: the `preemptoff` tracer) measures, per CPU, every span
//! during which the count was above zero, and keeps the longest one since the
//! last `reset_tracer()` with the address of the code that opened it.

use core::sync::atomic::Ordering;

use crate::arch::x86::cpu::rdtsc;
use crate::percpu;

#[inline]
pub fn disable() {
    percpu::add_to_preempt_count(1);
    // The compiler must not move memory accesses of the critical section above this point.
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    // Count 1 after the add means this call opened the span. Interrupts nest
    // their own disable/enable pairs, so the value read is ours; and with the
    // count above zero this thread cannot move to another CPU any more.
    let this = percpu::this();
    if this.preempt_count.load(Ordering::Relaxed) == 1 {
        this.preempt_off_since.store(rdtsc(), Ordering::Relaxed);
        // The return address of the function disable() is inlined into: for a
        // spinlock, the code that took the lock.
        this.preempt_off_caller.store(crate::arch::x86::cpu::return_address(), Ordering::Relaxed);
    }
}

#[inline]
pub fn enable() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let this = percpu::this();
    if this.preempt_count.load(Ordering::Relaxed) == 1 {
        record_span(this);
        percpu::add_to_preempt_count(-1);
        crate::sched::preempt_point();
    } else {
        percpu::add_to_preempt_count(-1);
    }
}

/// Like `enable()` but never switches threads: for the scheduler itself.
pub fn enable_no_resched() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    let this = percpu::this();
    if this.preempt_count.load(Ordering::Relaxed) == 1 {
        record_span(this);
    }
    percpu::add_to_preempt_count(-1);
}

fn record_span(this: &percpu::PerCpu) {
    let span = rdtsc().saturating_sub(this.preempt_off_since.load(Ordering::Relaxed));
    if span > this.preempt_off_max.load(Ordering::Relaxed) {
        this.preempt_off_max.store(span, Ordering::Relaxed);
        this.preempt_off_max_caller
            .store(this.preempt_off_caller.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// The current CPU's preempt count.
pub fn count() -> u32 {
    percpu::this().preempt_count.load(Ordering::Relaxed)
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
    for cpu in crate::smp::cpus() {
        cpu.percpu.preempt_off_max.store(0, Ordering::Relaxed);
    }
}

/// Each CPU's longest preempt-off span since the last reset.
pub fn longest_spans() -> alloc::vec::Vec<LongestSpan> {
    crate::smp::cpus()
        .iter()
        .map(|cpu| LongestSpan {
            cpu: cpu.number,
            nanoseconds: crate::time::tsc_to_ns(cpu.percpu.preempt_off_max.load(Ordering::Relaxed)),
            from: cpu.percpu.preempt_off_max_caller.load(Ordering::Relaxed),
        })
        .collect()
}
