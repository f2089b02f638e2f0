//! The scheduler proper: `schedule()` picks the next thread on this CPU and
//! switches to it; the preemption points call it; the idle thread loops on
//! it; a parking CPU hands its threads away.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::x86::interrupts;

use super::placement::{enqueue, least_loaded_cpu, wake};
use super::tick::program_timer;
use super::{
    CpuScheduler, Priority, State, TIME_SLICE_NS, Thread, current, preempt, switch, this_cpu,
};
use crate::arch::x86::{cpu, fpu};
use crate::{percpu, time, trace};

/// Gives the CPU to another runnable thread of the same or higher priority.
pub fn yield_now() {
    schedule();
}

/// Pins the calling thread to `cpu` (or lets it run anywhere) and, if it
/// runs elsewhere now, moves it there before returning: it leaves this CPU as
/// a thread that blocks and is woken at once, and `wake` queues it where its
/// affinity says. The caller checks that `cpu` is online.
pub fn set_current_affinity(cpu: Option<usize>) {
    let me = current();
    me.set_affinity(cpu);
    if cpu.is_none_or(|cpu| cpu == percpu::cpu_number()) {
        return;
    }
    // Interrupts stay off until this CPU has switched away: the target CPU
    // may pick the thread up at once, and waits with interrupts off until
    // this CPU has let go of it.
    interrupts::disable();
    me.set_state(State::Blocked);
    wake(&me);
    drop(me);
    schedule();
    interrupts::enable();
}

/// Changes the calling thread's priority, and lets a thread that now
/// outranks it run. The running thread is on no run queue, so no queue
/// holds it at the old level.
pub fn set_current_priority(priority: Priority) {
    interrupts::without_interrupts(|| {
        let me = current();
        me.set_priority(priority);
        this_cpu().current_rank.store(priority.rank(), Ordering::Relaxed);
    });
    schedule();
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
        let next = queue.pop_highest();
        if trace::is_on(trace::format::RUN_QUEUE) {
            let (length, me) = (queue.len() as u16, percpu::cpu_number() as u64);
            trace::record(trace::format::RUN_QUEUE, length, me, 0, 0);
        }
        let next = next.unwrap_or_else(|| {
            // SAFETY: `idle` holds a reference for the CPU's lifetime.
            unsafe {
                Arc::increment_strong_count(idle);
                Arc::from_raw(idle)
            }
        });
        // Published under the queue's lock, which enqueue() holds while it
        // compares: a wake-up sees either the old thread queued or this rank.
        cpu.current_rank.store(next.priority().rank(), Ordering::Relaxed);
        next
    };
    if core::ptr::eq(Arc::as_ptr(&next), prev) {
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
    if next.priority() == Priority::Normal {
        next.slice_end.store(time::now_ns() + TIME_SLICE_NS, Ordering::Relaxed);
    }
    // The thread may still be switching away on another CPU: its registers are
    // not saved until that CPU clears on_cpu.
    next.wait_until_off_cpu();
    // Recorded once the other CPU has let go of it: a thread is never drawn
    // running on two CPUs.
    if trace::is_on(trace::format::SWITCH) {
        // SAFETY: `prev` is the running thread (see schedule()).
        let prev = unsafe { &*prev };
        let (from, to) = (prev.priority().rank(), next.priority().rank());
        trace::record(trace::format::SWITCH, to as u16, prev.id, next.id, from as u64);
    }
    // Running only now: until that CPU has left the thread, its schedule()
    // must still see the state the wake-up set (Runnable), or it would take
    // the thread for one it preempted and queue it a second time (Linux sets
    // a task running under the same rule, after `on_cpu` clears).
    next.set_state(State::Running);
    next.on_cpu.store(true, Ordering::Relaxed);
    crate::mm::lazy_tlb::switch_to(next.address_space.as_ref());
    // An interrupt or system call from user mode lands on the running
    // thread's own kernel stack (threads without one never leave the kernel).
    if let Some(stack) = &next.stack {
        crate::arch::x86::gdt::set_kernel_stack(stack.top);
    }
    // The x87/SSE registers and FS base of user threads (see `fpu`).
    // SAFETY: `prev` is us, and its registers are live on this CPU; `next`'s
    // are used by no other CPU (on_cpu was false) until it leaves this one.
    unsafe {
        if let Some(user) = &(*prev).user {
            fpu::switch_out(user.registers.get());
        }
        fpu::switch_in(next.user.as_ref().map(|user| user.registers.get() as *const _));
    }
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
pub(super) extern "C" fn thread_entry(prev: *const Thread, me: *const Thread) -> ! {
    finish_switch(prev);
    program_timer();
    preempt::enable_no_resched();
    interrupts::enable();
    // SAFETY: `current` holds a reference to `me` while it runs.
    let me = unsafe { &*me };
    let entry = me.entry.lock().take();
    if let Some(entry) = entry {
        entry();
    }
    // A user thread's function leaves the context to start it in.
    let first_context = me.user.as_ref().and_then(|user| user.first_context.lock().take());
    if let Some(context) = first_context {
        interrupts::disable();
        // SAFETY: the user layer made the context for this thread's process;
        // nothing on this stack is needed any more (the thread comes back
        // only through traps, which start afresh at the top of the stack).
        unsafe { crate::arch::x86::syscall::enter_user(&context) }
    }
    exit()
}

/// The idle thread: run whatever becomes runnable, else sleep in `hlt`.
pub(super) fn idle_loop() {
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
pub(super) fn preempt_point() {
    let cpu = this_cpu();
    if cpu.need_resched.load(Ordering::Acquire)
        && cpu.started.load(Ordering::Acquire)
        && interrupts::are_enabled()
        && crate::irq::depth() == 0
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
        && crate::irq::depth() == 0
    {
        schedule();
    }
}
