//! Where a thread runs: the CPU a new thread starts on, the CPU a woken
//! thread goes back to, and putting it on that CPU's run queue with a
//! reschedule request (a flag here, the flag and an IPI elsewhere: SDM Vol. 3A
//! "Local APIC", fixed delivery mode) when it outranks what runs there.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{Priority, State, Thread, cpu_scheduler};
use crate::arch::x86::vectors::RESCHEDULE_VECTOR;
use crate::{irq, percpu, trace};

/// Where a new unpinned thread goes: the CPU with the fewest queued threads,
/// preferring one that is idle (its current thread is the idle thread).
pub(super) fn least_loaded_cpu() -> usize {
    // A started CPU is online: its scheduler starts after the CPU goes online
    // and stops before it parks (smp::ap, smp::park).
    percpu::cpus_with_area()
        .filter(|&cpu| cpu_scheduler(cpu).started.load(Ordering::Acquire))
        .min_by_key(|&cpu| {
            let sched = cpu_scheduler(cpu);
            let busy = sched.current_rank.load(Ordering::Relaxed) > Priority::Idle.rank();
            (sched.run_queue.lock_irqsave().len() + busy as usize, cpu)
        })
        .unwrap_or(0)
}

/// Puts a runnable thread on `cpu`'s run queue and asks that CPU to
/// reschedule if the thread outranks what it runs. A CPU that is parked (or
/// parking, or not started) takes no threads: the thread goes to another CPU,
/// and one pinned there loses its pinning, with a warning, as Linux's
/// `select_fallback_rq()` does when the last CPU a task may run on goes away.
pub(super) fn enqueue(mut cpu: usize, thread: Arc<Thread>) {
    let (target, mut queue) = loop {
        let target = cpu_scheduler(cpu);
        let queue = target.run_queue.lock_irqsave();
        if target.started.load(Ordering::Acquire) {
            break (target, queue);
        }
        drop(queue);
        if thread.affinity() == Some(cpu) {
            thread.break_affinity();
            log::warn!(
                "sched: thread '{}' (id {}) was pinned to CPU {cpu}, which is offline; it may now run on any CPU",
                thread.name,
                thread.id
            );
        }
        // The boot CPU never parks, so this ends.
        cpu = least_loaded_cpu();
    };
    let rank = thread.priority().rank();
    queue.push(thread);
    trace::record(trace::format::RUN_QUEUE, queue.len() as u16, cpu as u64, 0, 0);
    if rank > target.current_rank.load(Ordering::Relaxed) {
        target.need_resched.store(true, Ordering::Release);
        if cpu != percpu::cpu_number() {
            irq::send_ipi(cpu, RESCHEDULE_VECTOR);
        }
    }
    // Dropping the lock re-enables preemption: if this CPU was asked to
    // reschedule, it does so right here.
    drop(queue);
}

/// Makes a blocked thread runnable. Waking a thread that is not blocked
/// (already woken, or still running) does nothing.
pub fn wake(thread: &Arc<Thread>) {
    if !thread.try_transition(State::Blocked, State::Runnable) {
        return;
    }
    let cpu = thread.affinity().unwrap_or_else(|| cpu_for_wake(thread));
    trace::record(trace::format::WAKE, cpu as u16, thread.id, 0, 0);
    enqueue(cpu, thread.clone());
}

/// Makes `thread` pass through the kernel soon, to notice something that
/// concerns it (its process is exiting): woken if it sleeps, interrupted if
/// it runs on another CPU (Linux: `signal_wake_up` and `kick_process`).
pub fn kick(thread: &Arc<Thread>) {
    wake(thread);
    // The state first: a thread switched in stores its CPU before it is
    // marked Running (Release), so a Running read here (Acquire) comes with
    // the CPU it runs on now.
    let running = thread.state() == State::Running;
    let cpu = thread.last_cpu();
    if running && cpu != percpu::cpu_number() {
        irq::send_ipi(cpu, RESCHEDULE_VECTOR);
    }
}

static MIGRATIONS: AtomicU64 = AtomicU64::new(0);

/// How many times a woken thread was placed on another CPU than its last.
pub fn migrations() -> u64 {
    MIGRATIONS.load(Ordering::Relaxed)
}

/// An unpinned thread goes back to the CPU it last ran on (its cache is warm
/// there) if it would run there at once; otherwise to an idle CPU if there is
/// one (Linux's select_idle_sibling, much simplified).
fn cpu_for_wake(thread: &Thread) -> usize {
    let last = thread.last_cpu.load(Ordering::Relaxed);
    if thread.priority().rank() > cpu_scheduler(last).current_rank.load(Ordering::Relaxed) {
        return last;
    }
    let idle = percpu::cpus_with_area().find(|&cpu| {
        let sched = cpu_scheduler(cpu);
        // Started implies online (see least_loaded_cpu).
        sched.started.load(Ordering::Acquire)
            && sched.current_rank.load(Ordering::Relaxed) == Priority::Idle.rank()
            && sched.run_queue.lock_irqsave().is_empty()
    });
    match idle {
        Some(cpu) => {
            MIGRATIONS.fetch_add(1, Ordering::Relaxed);
            cpu
        }
        None => last,
    }
}
