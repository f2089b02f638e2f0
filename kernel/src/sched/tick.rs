//! Time on one CPU: its local APIC timer is programmed one-shot for the next
//! thing that needs it (the earliest sleeper's deadline, or the end of the
//! running Normal thread's time slice), and its interrupt wakes sleepers and
//! ends slices. An idle CPU with no sleepers has its timer off.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::x86::interrupts;

use super::placement::wake;
use super::{Priority, TIME_SLICE_NS, Thread, preempt, this_cpu};
use crate::time;

/// Set when a panic begins: from then on the timer belongs to the panic path
/// (which may wait on it), and its interrupts no longer wake or switch threads.
static STOPPED_FOR_PANIC: AtomicBool = AtomicBool::new(false);

/// Called by the panic path as soon as it owns the panic.
pub fn stop_for_panic() {
    STOPPED_FOR_PANIC.store(true, Ordering::Release);
}

/// The local APIC timer's interrupt: wake sleepers whose time has come, end
/// time slices, program the next event.
pub fn on_timer_interrupt() {
    let cpu = this_cpu();
    if !cpu.started.load(Ordering::Acquire)
        || cpu.timer_lent.load(Ordering::Acquire)
        || STOPPED_FOR_PANIC.load(Ordering::Acquire)
    {
        return;
    }
    let now = time::now_ns();
    // The list keeps its storage: a timer tick allocates only when a sleeper is due.
    let mut due: Vec<Arc<Thread>> = Vec::new();
    cpu.sleepers.lock().retain(|(deadline, thread)| {
        let is_due = *deadline <= now;
        if is_due {
            due.push(thread.clone());
        }
        !is_due
    });
    for thread in &due {
        wake(thread);
    }
    let current = cpu.current.load(Ordering::Relaxed);
    // SAFETY: the running thread, referenced by `current`.
    let current = unsafe { &*current };
    if current.priority() == Priority::Normal && now >= current.slice_end.load(Ordering::Relaxed) {
        if cpu.run_queue.lock().has_level(Priority::Normal.level()) {
            cpu.need_resched.store(true, Ordering::Release);
        } else {
            // Nobody to share with: a new slice, so the timer is not rearmed at once.
            current.slice_end.store(now + TIME_SLICE_NS, Ordering::Relaxed);
        }
    }
    program_timer();
}

/// Programs this CPU's timer for its next event, or stops it if there is none.
/// Interrupts must be off (the timer and the state it reads are this CPU's).
pub(super) fn program_timer() {
    let cpu = this_cpu();
    if !cpu.started.load(Ordering::Acquire)
        || cpu.timer_lent.load(Ordering::Acquire)
        || STOPPED_FOR_PANIC.load(Ordering::Acquire)
    {
        return;
    }
    let mut next = cpu.sleepers.lock().iter().map(|(deadline, _)| *deadline).min();
    let current = cpu.current.load(Ordering::Relaxed);
    // SAFETY: the running thread, referenced by `current`.
    let current = unsafe { &*current };
    if current.priority() == Priority::Normal {
        // A slice that already ended (the thread was alone) counts from now.
        let slice_end =
            current.slice_end.load(Ordering::Relaxed).max(time::now_ns() + TIME_SLICE_NS / 10);
        next = Some(next.map_or(slice_end, |n| n.min(slice_end)));
    }
    match next {
        Some(deadline) => {
            time::timer::start_one_shot(deadline.saturating_sub(time::now_ns()).max(1000))
        }
        None => time::timer::stop(),
    }
}

/// Lends this CPU's local timer to `f` (bring-up waits, timer tests), then
/// gives it back to the scheduler.
/// The thread stays on this CPU meanwhile (preemption is off): the timer it
/// borrowed is this CPU's.
pub fn with_timer_lent<R>(f: impl FnOnce() -> R) -> R {
    preempt::disable();
    let cpu = this_cpu();
    let was_lent = cpu.timer_lent.swap(true, Ordering::AcqRel);
    let result = f();
    cpu.timer_lent.store(was_lent, Ordering::Release);
    interrupts::without_interrupts(program_timer);
    preempt::enable();
    result
}
