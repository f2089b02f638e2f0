//! Sleeping: a thread blocks with a deadline on its CPU's sleeper list, and
//! that CPU's timer (see `tick`) wakes it when the deadline comes, unless a
//! waker came first (`block_until`).

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use crate::arch::x86::interrupts;

use super::schedule::schedule;
use super::tick::program_timer;
use super::{State, Thread, cpu_scheduler, current, preempt, this_cpu};
use crate::{percpu, time};

/// Blocks the calling thread for at least `ns` nanoseconds.
pub fn sleep_ns(ns: u64) {
    let deadline = time::now_ns().saturating_add(ns); // sleep_ns(u64::MAX) must not overflow
    let me = current();
    while time::now_ns() < deadline {
        interrupts::without_interrupts(|| {
            me.set_state(State::Blocked);
            add_sleeper(deadline, me.clone());
        });
        schedule();
    }
}

/// Blocks the calling thread until some CPU calls `wake` on it, or until
/// `deadline_ns`. The waker makes `woken()` true and then calls `wake`; this
/// thread marks itself Blocked and then looks at `woken()`, with a full fence
/// on each side between the store and the load. So a wake-up is never lost:
/// either this thread sees `woken()`, or the waker sees it Blocked and queues
/// it. Returns on a wake-up, at the deadline, or at once if `woken()` already
/// holds; the caller checks its condition again.
pub fn block_until(woken: &dyn Fn() -> bool, deadline_ns: u64) {
    assert!(
        interrupts::are_enabled() && preempt::count() == 0 && crate::irq::depth() == 0,
        "block_until() where the thread may not sleep (interrupts off, preemption off, or in an interrupt)"
    );
    let me = current();
    let sleeper_on = interrupts::without_interrupts(|| {
        me.set_state(State::Blocked);
        core::sync::atomic::fence(Ordering::SeqCst);
        // If the waker got to `wake` first, we are Runnable and queued
        // already: we must go through schedule() as any woken thread does.
        if woken() && me.try_transition(State::Blocked, State::Running) {
            return None;
        }
        add_sleeper(deadline_ns, me.clone());
        Some(percpu::cpu_number())
    });
    if let Some(cpu) = sleeper_on {
        schedule();
        // Woken before the deadline: take the timer entry back (from the CPU
        // it was added on; this thread may have moved since), so it neither
        // wakes this thread later for nothing nor piles up.
        interrupts::without_interrupts(|| {
            cpu_scheduler(cpu).sleepers.lock().retain(|(_, thread)| !Arc::ptr_eq(thread, &me));
            // Still here: the timer need not fire for the entry just taken.
            // (Elsewhere, that CPU's timer fires once for nothing.)
            if cpu == percpu::cpu_number() {
                program_timer();
            }
        });
    }
}

/// Registers `thread` to be woken at `deadline` by this CPU's timer.
pub(super) fn add_sleeper(deadline: u64, thread: Arc<Thread>) {
    interrupts::without_interrupts(|| {
        this_cpu().sleepers.lock().push((deadline, thread));
        program_timer();
    });
}
