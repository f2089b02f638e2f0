//! The scheduler: kernel threads on per-CPU run queues with strict priorities,
//! preempted on return from interrupt or at `preempt_enable()`.
//!
//! - Every CPU has a run queue with one FIFO per priority level (see
//!   `runqueue`), an idle thread that `hlt`s, and a current thread.
//! - `schedule()` picks the first thread of the highest non-empty level and
//!   switches to it (see `switch` for the switch itself). The thread that gave
//!   up the CPU goes to the back of its level if it is still runnable.
//! - A wake-up puts a thread on a run queue (its pinned CPU, or the CPU it last
//!   ran on); if it outranks what runs there, that CPU is told to reschedule:
//!   a flag if it is this CPU, the flag and a reschedule IPI otherwise (SDM
//!   Vol. 3A 11.6.1, fixed delivery mode). The switch then happens at the next
//!   preemption point on that CPU.
//! - Time: each CPU's local APIC timer is programmed one-shot for the next
//!   thing that needs it: the earliest sleeper's deadline, or the end of the
//!   running Normal thread's time slice. An idle CPU with no sleepers has its
//!   timer off.
//!
//! The files, in the order a thread meets them: `spawn` (making threads),
//! `placement` (which CPU, and queueing there), `schedule` (the switch
//! decision, preemption points, the idle loop), `sleep` (blocking with a
//! deadline), `tick` (the per-CPU timer), with `thread`, `runqueue`, `switch`
//! (the context switch) beneath them; the preempt count is `sync::preempt`.

pub mod bench;
pub mod irq_handlers;
mod placement;
mod priority;
mod runqueue;
mod schedule;
mod sleep;
mod spawn;
mod switch;
mod tests;
pub mod thread;
mod tick;
pub mod wait;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering};

use crate::arch::x86::interrupts;

use crate::percpu::{self, cpu_local};
use crate::sync::{SpinLock, preempt};
use crate::time;
pub use placement::{kick, migrations, wake};
use runqueue::RunQueue;
pub use schedule::{
    evacuate_this_cpu, exit, preempt_on_interrupt_return, schedule, set_current_affinity,
    set_current_priority, yield_now,
};
use schedule::{idle_loop, thread_entry};
pub use sleep::{block_until, sleep_ns};
use spawn::new_thread;
pub use spawn::{Builder, JoinHandle};
pub use thread::{Priority, State, Thread};
pub use tick::{on_timer_interrupt, stop_for_panic, with_timer_lent};
pub use wait::Completion;

const THREAD_STACK_SIZE: u64 = 32 * 1024;
/// How long a Normal thread runs before others of its class get a turn.
const TIME_SLICE_NS: u64 = 10_000_000;

/// One CPU's scheduler state.
pub struct CpuScheduler {
    run_queue: SpinLock<RunQueue>,
    /// The running thread, holding one strong reference (Arc::into_raw).
    current: AtomicPtr<Thread>,
    /// The running thread's priority rank, readable by other CPUs at any time.
    current_rank: AtomicU8,
    idle: AtomicPtr<Thread>,
    need_resched: AtomicBool,
    /// Threads sleeping on this CPU, with their deadlines (clock ns).
    sleepers: SpinLock<Vec<(u64, Arc<Thread>)>>,
    /// Set while something else (bring-up, timer tests) owns the local timer.
    timer_lent: AtomicBool,
    /// The CPU runs threads and takes new ones: set when its scheduler
    /// starts, cleared (under the run-queue lock) when it parks.
    started: AtomicBool,
}

impl CpuScheduler {
    pub const fn new() -> CpuScheduler {
        CpuScheduler {
            run_queue: SpinLock::new(RunQueue::new()),
            current: AtomicPtr::new(core::ptr::null_mut()),
            current_rank: AtomicU8::new(0),
            idle: AtomicPtr::new(core::ptr::null_mut()),
            need_resched: AtomicBool::new(false),
            sleepers: SpinLock::new(Vec::new()),
            timer_lent: AtomicBool::new(false),
            started: AtomicBool::new(false),
        }
    }
}

/// Whether this CPU runs threads yet.
pub fn is_started() -> bool {
    this_cpu().started.load(Ordering::Acquire)
}

/// Whether CPU `cpu` runs threads (and takes new ones).
pub fn is_started_on(cpu: usize) -> bool {
    cpu_scheduler(cpu).started.load(Ordering::Acquire)
}

cpu_local! {
    static CPU_SCHEDULER: CpuScheduler = CpuScheduler::new();
}

fn this_cpu() -> &'static CpuScheduler {
    CPU_SCHEDULER.get()
}

fn cpu_scheduler(cpu: usize) -> &'static CpuScheduler {
    CPU_SCHEDULER.on(cpu)
}

/// The running thread.
pub fn current() -> Arc<Thread> {
    interrupts::without_interrupts(|| {
        let current = this_cpu().current.load(Ordering::Relaxed);
        assert!(!current.is_null(), "sched::current() before the scheduler started on this CPU");
        // SAFETY: `current` holds a strong reference for as long as the thread
        // runs here, and with interrupts off it cannot stop running here.
        unsafe {
            Arc::increment_strong_count(current);
            Arc::from_raw(current)
        }
    })
}

/// The running thread's id (0 before the scheduler runs on this CPU), without
/// taking a reference: for the trace.
pub fn current_id() -> u64 {
    interrupts::without_interrupts(|| {
        let current = this_cpu().current.load(Ordering::Relaxed);
        // SAFETY: as in `current()`: the running thread stays alive while it runs here.
        unsafe { current.as_ref() }.map_or(0, |thread| thread.id)
    })
}

/// Turns the calling boot context into a thread named `name`, and gives the
/// CPU an idle thread. For the boot CPU (the idle thread is spawned) and for
/// APs, which become their own idle thread with `become_idle()`.
pub fn init_boot_cpu(name: &str) {
    preempt::set_reschedule(schedule::preempt_point);
    let me = Arc::new(Thread::new(name.into(), Priority::Normal, None, None, State::Running));
    let idle = new_thread(
        alloc::format!("idle{}", percpu::cpu_number()),
        Priority::Idle,
        Some(percpu::cpu_number()),
        None,
        None,
        idle_loop,
    );
    start_on_this_cpu(me, idle);
}

/// An AP's boot context becomes its idle thread; never returns.
/// `started` runs once the scheduler has started here (to tell the boot CPU).
pub fn become_idle(started: impl FnOnce()) -> ! {
    // A restarted AP runs on the kernel's tables again (ap_entry loaded them):
    // forget the space it had loaded before it was parked, and leave its set.
    crate::mm::lazy_tlb::forget_after_restart();
    let idle = Arc::new(Thread::new(
        alloc::format!("idle{}", percpu::cpu_number()),
        Priority::Idle,
        Some(percpu::cpu_number()),
        None,
        State::Running,
    ));
    this_cpu().need_resched.store(false, Ordering::Relaxed);
    start_on_this_cpu(idle.clone(), idle);
    started();
    idle_loop();
    unreachable!("the idle loop returned")
}

fn start_on_this_cpu(current: Arc<Thread>, idle: Arc<Thread>) {
    current.slice_end.store(time::now_ns() + TIME_SLICE_NS, Ordering::Relaxed);
    interrupts::without_interrupts(|| {
        let cpu = this_cpu();
        current.on_cpu.store(true, Ordering::Relaxed);
        current.last_cpu.store(percpu::cpu_number(), Ordering::Relaxed);
        cpu.current_rank.store(current.priority().rank(), Ordering::Relaxed);
        let old_current = cpu.current.swap(Arc::into_raw(current) as *mut Thread, Ordering::AcqRel);
        let old_idle = cpu.idle.swap(Arc::into_raw(idle) as *mut Thread, Ordering::AcqRel);
        // A restarted CPU: its parker thread and old idle thread are done (the
        // parker halted on its own stack; we run on the AP's boot stack).
        for old in [old_current, old_idle].into_iter().filter(|t| !t.is_null()) {
            // SAFETY: the reference `current`/`idle` held; nothing runs them.
            let thread = unsafe { Arc::from_raw(old) };
            thread.set_state(State::Exited);
            thread.on_cpu.store(false, Ordering::Release);
        }
        let queue = cpu.run_queue.lock();
        cpu.started.store(true, Ordering::Release);
        drop(queue);
    });
}

/// The running thread, as a panic report names it (formatting allocates nothing).
pub struct CurrentThread;

impl core::fmt::Display for CurrentThread {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        let current = this_cpu().current.load(Ordering::Relaxed);
        if current.is_null() {
            return f.write_str("no thread (scheduler not started)");
        }
        // SAFETY: read-only peek at the running thread for the report.
        let thread = unsafe { &*current };
        write!(f, "thread '{}' (id {}, {:?})", thread.name, thread.id, thread.priority())
    }
}

/// Whether `address` is the guard page of the running thread's stack.
pub fn hit_current_guard_page(address: u64) -> bool {
    let current = this_cpu().current.load(Ordering::Relaxed);
    // SAFETY: read-only peek at the running thread.
    !current.is_null() && unsafe { &*current }.is_guard_page(address)
}
