//! The per-CPU preempt count (Linux: `preempt_count()`).
//!
//! Code that must stay on its CPU, or that holds a spinlock, raises the count;
//! the scheduler may switch threads only while it is zero. Calls nest.

use core::sync::atomic::Ordering;

use crate::percpu;

pub fn disable() {
    percpu::add_to_preempt_count(1);
    // The compiler must not move memory accesses of the critical section above this point.
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

pub fn enable() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
    percpu::add_to_preempt_count(-1);
}

/// The current CPU's preempt count.
pub fn count() -> u32 {
    percpu::this().preempt_count.load(Ordering::Relaxed)
}
