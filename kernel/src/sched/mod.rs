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

pub mod bench;
mod runqueue;
mod switch;
pub mod tests;
pub mod thread;
pub mod wait;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, Ordering};

use x86_64::instructions::interrupts;

use crate::arch::x86::cpu;
use crate::arch::x86::idt::RESCHEDULE_VECTOR;
use crate::arch::x86::lapic::{self, Ipi};
use crate::mm::address_space::AddressSpace;
use crate::mm::stack::KernelStack;
use crate::percpu::{self, cpu_local};
use crate::sync::{SpinLock, preempt};
use crate::time;
use runqueue::RunQueue;
pub use thread::{Priority, State, Thread};
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

/// Turns the calling boot context into a thread named `name`, and gives the
/// CPU an idle thread. For the boot CPU (the idle thread is spawned) and for
/// APs, which become their own idle thread with `become_idle()`.
pub fn init_boot_cpu(name: &str) {
    preempt::set_reschedule(preempt_point);
    let me = Arc::new(Thread::new(name.into(), Priority::Normal, None, None, State::Running));
    let idle = new_thread(
        alloc::format!("idle{}", percpu::cpu_number()),
        Priority::Idle,
        Some(percpu::cpu_number()),
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
        cpu.current_rank.store(current.priority.rank(), Ordering::Relaxed);
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

pub struct Builder {
    name: String,
    priority: Priority,
    affinity: Option<usize>,
    address_space: Option<Arc<AddressSpace>>,
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder {
            name: name.into(),
            priority: Priority::Normal,
            affinity: None,
            address_space: None,
        }
    }

    pub fn priority(mut self, priority: Priority) -> Builder {
        self.priority = priority;
        self
    }

    /// Pins the thread to one CPU.
    pub fn pin(mut self, cpu: usize) -> Builder {
        self.affinity = Some(cpu);
        self
    }

    /// Runs the thread in `space` (its lower half); see mm::address_space.
    pub fn address_space(mut self, space: Arc<AddressSpace>) -> Builder {
        self.address_space = Some(space);
        self
    }

    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> JoinHandle {
        let thread = new_thread(self.name, self.priority, self.affinity, self.address_space, f);
        let cpu = self.affinity.unwrap_or_else(least_loaded_cpu);
        // (A thread pinned to a CPU that is not running is moved, with a warning: see enqueue.)
        thread.set_state(State::Runnable);
        enqueue(cpu, thread.clone());
        JoinHandle { thread }
    }
}

fn new_thread(
    name: String,
    priority: Priority,
    affinity: Option<usize>,
    address_space: Option<Arc<AddressSpace>>,
    f: impl FnOnce() + Send + 'static,
) -> Arc<Thread> {
    let stack = KernelStack::new(THREAD_STACK_SIZE);
    let mut thread = Thread::new(name, priority, affinity, Some(stack), State::Blocked);
    thread.address_space = address_space;
    let thread = Arc::new(thread);
    *thread.entry.lock() = Some(Box::new(f));
    let rsp = switch::initial_stack(stack.top.as_u64(), Arc::as_ptr(&thread));
    // SAFETY: the thread does not run yet; nothing else touches saved_rsp.
    unsafe { *thread.saved_rsp.get() = rsp };
    thread
}

/// A started thread, to wait for.
pub struct JoinHandle {
    pub thread: Arc<Thread>,
}

impl JoinHandle {
    pub fn join(self) {
        let thread = &self.thread;
        thread.exit_queue.wait_until(|| thread.has_exited());
    }

    /// Waits until `deadline_ns`; false if the thread has not exited by then.
    pub fn join_until(&self, deadline_ns: u64) -> bool {
        let thread = &self.thread;
        thread.exit_queue.wait_until_or_deadline(&mut || thread.has_exited(), Some(deadline_ns))
    }
}

/// Where a new unpinned thread goes: the CPU with the fewest queued threads,
/// preferring one that is idle (its current thread is the idle thread).
fn least_loaded_cpu() -> usize {
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
fn enqueue(mut cpu: usize, thread: Arc<Thread>) {
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
    let rank = thread.priority.rank();
    queue.push(thread);
    if rank > target.current_rank.load(Ordering::Relaxed) {
        target.need_resched.store(true, Ordering::Release);
        if cpu != percpu::cpu_number() {
            lapic::get().send_ipi(percpu::apic_id_of(cpu), Ipi::Fixed(RESCHEDULE_VECTOR));
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
    enqueue(cpu, thread.clone());
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
    if thread.priority.rank() > cpu_scheduler(last).current_rank.load(Ordering::Relaxed) {
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

/// Gives the CPU to another runnable thread of the same or higher priority.
pub fn yield_now() {
    schedule();
}

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
        interrupts::are_enabled() && preempt::count() == 0 && preempt::interrupt_depth() == 0,
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
fn add_sleeper(deadline: u64, thread: Arc<Thread>) {
    interrupts::without_interrupts(|| {
        this_cpu().sleepers.lock().push((deadline, thread));
        program_timer();
    });
}

/// Ends the calling thread.
pub fn exit() -> ! {
    interrupts::disable();
    let me = current();
    me.set_state(State::Exited);
    me.exit_queue.wake_all();
    drop(me);
    schedule();
    unreachable!("an exited thread was scheduled again");
}

/// The scheduler proper: pick the next thread on this CPU and switch to it.
pub fn schedule() {
    let interrupts_were_on = interrupts::are_enabled();
    interrupts::disable();
    let count = preempt::count();
    assert!(count == 0, "schedule() called with preemption disabled (preempt count {count})");
    preempt::disable();
    let cpu = this_cpu();
    cpu.need_resched.store(false, Ordering::Relaxed);
    let prev = cpu.current.load(Ordering::Relaxed);
    let idle = cpu.idle.load(Ordering::Relaxed);
    // SAFETY: `current` holds a reference to the running thread: us.
    let prev_thread = unsafe { &*prev };
    let next: Arc<Thread> = {
        let mut queue = cpu.run_queue.lock();
        // Only a thread still Running goes back on this queue. One that was
        // woken while it ran here (it had just set itself Blocked) is
        // Runnable and already queued somewhere, maybe on another CPU that
        // waits for it to leave this one: it must not be queued twice.
        if prev != idle && prev_thread.try_transition(State::Running, State::Runnable) {
            // SAFETY: as above; the queue gets its own reference.
            queue.push(unsafe {
                Arc::increment_strong_count(prev);
                Arc::from_raw(prev)
            });
        }
        let next = queue.pop_highest().unwrap_or_else(|| {
            // SAFETY: `idle` holds a reference for the CPU's lifetime.
            unsafe {
                Arc::increment_strong_count(idle);
                Arc::from_raw(idle)
            }
        });
        // Published under the queue's lock, which enqueue() holds while it
        // compares: a wake-up sees either the old thread queued or this rank.
        cpu.current_rank.store(next.priority.rank(), Ordering::Relaxed);
        next
    };
    if Arc::as_ptr(&next) == prev as *const Thread {
        next.set_state(State::Running);
        drop(next); // the queue's reference; `current` keeps its own
    } else {
        switch_to(cpu, prev, next);
    }
    program_timer();
    preempt::enable_no_resched();
    if interrupts_were_on {
        interrupts::enable();
    }
}

fn switch_to(cpu: &CpuScheduler, prev: *mut Thread, next: Arc<Thread>) {
    let me = percpu::cpu_number();
    next.last_cpu.store(me, Ordering::Relaxed);
    if next.priority == Priority::Normal {
        next.slice_end.store(time::now_ns() + TIME_SLICE_NS, Ordering::Relaxed);
    }
    // The thread may still be switching away on another CPU: its registers are
    // not saved until that CPU clears on_cpu.
    while next.on_cpu.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    // Running only now: until that CPU has left the thread, its schedule()
    // must still see the state the wake-up set (Runnable), or it would take
    // the thread for one it preempted and queue it a second time (Linux sets
    // a task running under the same rule, after `on_cpu` clears).
    next.set_state(State::Running);
    next.on_cpu.store(true, Ordering::Relaxed);
    crate::mm::lazy_tlb::switch_to(next.address_space.as_ref());
    // SAFETY: on_cpu was false, so the last switch away from `next` stored its rsp.
    let load = unsafe { *next.saved_rsp.get() };
    cpu.current.store(Arc::into_raw(next) as *mut Thread, Ordering::Relaxed);
    // SAFETY: interrupts are off; `load` belongs to a thread running nowhere
    // (on_cpu was false); `prev` is us, and stays valid (current's reference
    // is released only by finish_switch, after we are off this stack).
    let replaced = unsafe { switch::switch((*prev).saved_rsp.get(), load, prev) };
    finish_switch(replaced);
}

/// For a CPU about to park (interrupts off, on its parker thread): take no
/// more threads, hand every queued thread and every sleeper to other CPUs,
/// leave the loaded address space (so no shootdown waits for this CPU), and
/// stop the timer. A sleeper is simply woken: sleeps and timed waits check
/// their deadline again and go back to sleep on the CPU they now run on.
pub fn evacuate_this_cpu() {
    assert!(!interrupts::are_enabled(), "evacuate_this_cpu() with interrupts enabled");
    let cpu = this_cpu();
    let queued: Vec<Arc<Thread>> = {
        let mut queue = cpu.run_queue.lock();
        cpu.started.store(false, Ordering::Release);
        core::iter::from_fn(|| queue.pop_highest()).collect()
    };
    // Only this CPU adds sleepers to its own list, and it is here.
    let sleepers = core::mem::take(&mut *cpu.sleepers.lock());
    for thread in queued {
        let target = thread.affinity().unwrap_or_else(least_loaded_cpu);
        enqueue(target, thread);
    }
    for (_, thread) in sleepers {
        wake(&thread);
    }
    crate::mm::lazy_tlb::unload();
    time::timer::stop();
}

/// Runs on the thread that was switched to: the previous thread's registers
/// are saved, so it may now run elsewhere; drop the reference `current` held.
fn finish_switch(prev: *const Thread) {
    // SAFETY: `prev` is the pointer `current` held for the previous thread,
    // carrying one strong reference, handed over by switch_stacks.
    let prev = unsafe { Arc::from_raw(prev) };
    prev.on_cpu.store(false, Ordering::Release);
    drop(prev);
}

/// Where a new thread starts (see switch.rs): finish the switch, enable
/// preemption and interrupts, run the thread's function, exit.
extern "C" fn thread_entry(prev: *const Thread, me: *const Thread) -> ! {
    finish_switch(prev);
    program_timer();
    preempt::enable_no_resched();
    interrupts::enable();
    // SAFETY: `current` holds a reference to `me` while it runs.
    let entry = unsafe { &*me }.entry.lock().take();
    if let Some(entry) = entry {
        entry();
    }
    exit()
}

/// The idle thread: run whatever becomes runnable, else sleep in `hlt`.
fn idle_loop() {
    loop {
        interrupts::disable();
        if this_cpu().need_resched.load(Ordering::Acquire)
            || !this_cpu().run_queue.lock().is_empty()
        {
            interrupts::enable();
            schedule();
        } else {
            cpu::enable_interrupts_and_halt();
        }
    }
}

/// A preemption point: `preempt::enable()` calls it when the count reaches 0
/// (registered in `init_boot_cpu`).
fn preempt_point() {
    let cpu = this_cpu();
    if cpu.need_resched.load(Ordering::Acquire)
        && cpu.started.load(Ordering::Acquire)
        && interrupts::are_enabled()
        && preempt::interrupt_depth() == 0
    {
        schedule();
    }
}

/// The other preemption point: at the end of an interrupt handler, once the
/// handler's own work (and EOI) is done. Not inside nested interrupts, not
/// while the interrupted code had preemption disabled.
pub fn preempt_on_interrupt_return() {
    let cpu = this_cpu();
    if cpu.need_resched.load(Ordering::Acquire)
        && cpu.started.load(Ordering::Acquire)
        && preempt::count() == 0
        && preempt::interrupt_depth() == 0
    {
        schedule();
    }
}

/// The local APIC timer's interrupt: wake sleepers whose time has come, end
/// time slices, program the next event.
pub fn on_timer_interrupt() {
    let cpu = this_cpu();
    if !cpu.started.load(Ordering::Acquire)
        || cpu.timer_lent.load(Ordering::Acquire)
        || crate::panic::in_progress()
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
    if current.priority == Priority::Normal && now >= current.slice_end.load(Ordering::Relaxed) {
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
fn program_timer() {
    let cpu = this_cpu();
    if !cpu.started.load(Ordering::Acquire)
        || cpu.timer_lent.load(Ordering::Acquire)
        || crate::panic::in_progress()
    {
        return;
    }
    let mut next = cpu.sleepers.lock().iter().map(|(deadline, _)| *deadline).min();
    let current = cpu.current.load(Ordering::Relaxed);
    // SAFETY: the running thread, referenced by `current`.
    let current = unsafe { &*current };
    if current.priority == Priority::Normal {
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

/// Describes the running thread for a panic report (no allocation).
pub fn describe_current(f: &mut core::fmt::Formatter) -> core::fmt::Result {
    let current = this_cpu().current.load(Ordering::Relaxed);
    if current.is_null() {
        return f.write_str("no thread (scheduler not started)");
    }
    // SAFETY: read-only peek at the running thread for the report.
    let thread = unsafe { &*current };
    write!(f, "thread '{}' (id {}, {:?})", thread.name, thread.id, thread.priority)
}

/// Whether `address` is the guard page of the running thread's stack.
pub fn hit_current_guard_page(address: u64) -> bool {
    let current = this_cpu().current.load(Ordering::Relaxed);
    // SAFETY: read-only peek at the running thread.
    !current.is_null() && unsafe { &*current }.is_guard_page(address)
}
