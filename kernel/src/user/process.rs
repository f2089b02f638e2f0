//! Processes: an address space, its memory map, and the threads that run in
//! it; how threads start, and how they and the process end.
//!
//! The process id is its first thread's id (Linux: the thread group id), and
//! every thread is a scheduler thread whose `UserContext` names the process
//! as its owner. A process ends when its last thread does, by `exit` in each
//! thread, by `exit_group` in one, or by a fault: the last thread to leave
//! takes the memory away (one shootdown, then the frames are freed) and
//! completes `done`. Whoever waits for the process (`wait`) then joins every
//! thread and makes CPUs that still borrow the space lazily leave it
//! (`tlb::evict`), so the page tables go too when the last reference does.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering};

use super::access;
use super::futex::Futexes;
use super::memory::MemoryMap;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::fpu::UserRegisters;
use crate::arch::x86::interrupts;
use crate::mm::address_space::AddressSpace;
use crate::sched::thread::UserContext;
use crate::sched::wait::Mutex;
use crate::sched::{self, Builder, Completion, Thread};
use crate::sync::SpinLock;

pub struct Process {
    /// The first thread's id, set when it starts (0 before).
    pid: AtomicU64,
    pub name: String,
    pub space: Arc<AddressSpace>,
    pub memory: Mutex<MemoryMap>,
    pub futexes: Futexes,
    /// The threads that have not exited, by thread id, with the address
    /// `set_tid_address`/CLONE_CHILD_CLEARTID gave (0: none): at exit the
    /// kernel writes 0 there and wakes one futex waiter (`pthread_join`).
    live: SpinLock<BTreeMap<u64, LiveThread>>,
    /// How many threads have not finished exiting (the last one tears down).
    running: AtomicUsize,
    /// Every thread it ever had, for `wait` to join (and to break the
    /// reference cycle thread -> owner -> thread when it is done).
    all_threads: SpinLock<Vec<Arc<Thread>>>,
    exiting: AtomicBool,
    status: AtomicI32,
    done: Completion,
}

struct LiveThread {
    thread: Arc<Thread>,
    clear_child_tid: u64,
}

impl Process {
    pub fn new(name: &str, memory: MemoryMap, space: Arc<AddressSpace>) -> Process {
        Process {
            pid: AtomicU64::new(0),
            name: name.into(),
            space,
            memory: Mutex::new(memory),
            futexes: Futexes::new(),
            live: SpinLock::new(BTreeMap::new()),
            running: AtomicUsize::new(0),
            all_threads: SpinLock::new(Vec::new()),
            exiting: AtomicBool::new(false),
            status: AtomicI32::new(0),
            done: Completion::new(),
        }
    }

    /// Starts a thread that runs `frame` in user mode, with `registers` as
    /// its x87/SSE state and FS base; returns its id. `clear_child_tid` as
    /// for `clone`. `prepare` runs first in the new thread, in its address
    /// space (the loader fills memory there); an error from it ends the
    /// thread with that status. With `inherit`, the new thread gets the
    /// calling thread's priority and CPU affinity, as a Linux thread does.
    pub fn start_thread(
        self: &Arc<Self>,
        registers: UserRegisters,
        inherit: bool,
        clear_child_tid: u64,
        prepare: impl FnOnce(&Arc<Process>) -> Result<TrapFrame, i32> + Send + 'static,
    ) -> u64 {
        self.running.fetch_add(1, Ordering::AcqRel);
        let owner: Arc<dyn core::any::Any + Send + Sync> = self.clone();
        let process = self.clone();
        let mut builder = Builder::new(&self.name);
        if inherit {
            let me = sched::current();
            builder = builder.priority(me.priority());
            if let Some(cpu) = me.affinity() {
                builder = builder.pin(cpu);
            }
        }
        let handle = builder
            .address_space(self.space.clone())
            .user(UserContext::new(registers, owner))
            .spawn(move || run_thread(process, clear_child_tid, prepare));
        let id = handle.thread.id;
        self.all_threads.lock().push(handle.thread);
        id
    }

    /// The process id: its first thread's id.
    pub fn pid(&self) -> u64 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Whether the process is going away (threads stop at their next way
    /// back to user mode).
    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// `exit_group`, or a fatal fault, in the calling thread: the process
    /// ends with `status`, this thread at once, the others as they notice.
    /// The caller then drops its references and calls `sched::exit`.
    pub fn exit_group(&self, status: i32) {
        self.begin_exit(status);
        self.end_thread(status);
    }

    /// The process ends with `status`, and its other threads are made to
    /// notice.
    fn begin_exit(&self, status: i32) {
        if !self.exiting.swap(true, Ordering::AcqRel) {
            self.status.store(status, Ordering::Release);
        }
        let me = sched::current_id();
        let others: Vec<Arc<Thread>> = self
            .live
            .lock_irqsave()
            .values()
            .filter(|entry| entry.thread.id != me)
            .map(|entry| entry.thread.clone())
            .collect();
        for thread in &others {
            sched::kick(thread);
        }
    }

    /// Records `set_tid_address` for the calling thread.
    pub fn set_clear_child_tid(&self, address: u64) {
        if let Some(entry) = self.live.lock_irqsave().get_mut(&sched::current_id()) {
            entry.clear_child_tid = address;
        }
    }

    /// The calling thread's end (its status is the process's if it is the
    /// last and nobody called `exit_group`). The caller then drops its
    /// references and calls `sched::exit`.
    pub fn end_thread(&self, status: i32) {
        let me = sched::current_id();
        let entry = self.live.lock_irqsave().remove(&me);
        if let Some(LiveThread { clear_child_tid, .. }) = entry
            && clear_child_tid != 0
            && access::write_value(clear_child_tid, &0u32).is_ok()
        {
            self.futexes.wake(clear_child_tid, 1);
        }
        if self.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            if !self.exiting.swap(true, Ordering::AcqRel) {
                self.status.store(status, Ordering::Release);
            }
            self.memory.lock().release_everything(&self.space);
            self.done.complete();
        }
    }

    /// Waits until the process has ended, and returns its exit status.
    /// Then every thread has switched away for good, and no CPU keeps the
    /// space loaded: dropping the last `Arc<Process>` frees its page tables.
    pub fn wait(&self) -> i32 {
        self.done.wait();
        let threads = core::mem::take(&mut *self.all_threads.lock());
        for thread in threads {
            // Exited is set before the thread's CPU switches away: wait for
            // the switch too, so that CPU is lazy (or elsewhere) when the
            // eviction below asks (Linux: `wait_task_inactive`).
            sched::JoinHandle { thread: thread.clone() }.join();
            thread.wait_until_off_cpu();
        }
        crate::tlb::evict(&self.space);
        self.status.load(Ordering::Acquire)
    }
}

/// The life of a user thread, in the kernel: register, prepare, run.
fn run_thread(
    process: Arc<Process>,
    clear_child_tid: u64,
    prepare: impl FnOnce(&Arc<Process>) -> Result<TrapFrame, i32>,
) {
    let me = sched::current();
    // The first thread names the process; the others are started by it,
    // after this.
    let _ = process.pid.compare_exchange(0, me.id, Ordering::Relaxed, Ordering::Relaxed);
    process.live.lock_irqsave().insert(me.id, LiveThread { thread: me.clone(), clear_child_tid });
    // After joining `live` (under its lock): an `exit_group` that did not
    // see us has set `exiting` before we look.
    let frame = if process.is_exiting() { Err(0) } else { prepare(&process) };
    match frame {
        // Entered by the scheduler's thread entry once this returns.
        Ok(frame) => {
            let user = me.user.as_ref().expect("a user thread without its user context");
            *user.first_context.lock() = Some(frame);
        }
        Err(status) => {
            process.exit_group(status);
        }
    }
}

/// The process of the running thread, if it is a user thread.
pub fn current() -> Option<Arc<Process>> {
    let thread = sched::current();
    let owner = thread.user.as_ref()?.owner.clone();
    owner.downcast::<Process>().ok()
}

/// On every way back to user mode: a thread whose process is exiting ends
/// here instead.
pub fn on_return_to_user(_frame: &mut TrapFrame) {
    // During a panic nothing may be torn down or switched (the interrupt
    // layer runs no handler then either).
    if crate::panic::in_progress() {
        return;
    }
    let Some(process) = current() else { return };
    if !process.is_exiting() {
        return;
    }
    // Going back to user mode, so interrupts may be on: the teardown waits
    // for shootdowns.
    interrupts::enable();
    process.end_thread(0);
    drop(process);
    sched::exit()
}
