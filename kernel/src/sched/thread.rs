//! Kernel threads: what the scheduler schedules.

use crate::trace;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::any::Any;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};

pub use super::priority::Priority;
use super::wait::WaitQueue;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::fpu::UserRegisters;
use crate::mm::address_space::AddressSpace;
use crate::mm::frame::FRAME_SIZE;
use crate::mm::stack::KernelStack;
use crate::sync::SpinLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// On a CPU now.
    Running,
    /// On a run queue.
    Runnable,
    /// Waiting (wait queue, sleep); `wake()` makes it Runnable.
    Blocked,
    Exited,
}

pub struct Thread {
    pub id: u64,
    pub name: String,
    /// The priority's `rank()`: a user thread may change its own
    /// (`set_current_priority`).
    priority: AtomicU8,
    /// The only CPU it may run on, or NOT_PINNED. Only parking that CPU
    /// changes it (see `sched::enqueue`): Linux breaks affinity the same way.
    affinity: AtomicUsize,
    /// The address space whose lower half it uses; None for kernel-only
    /// threads, which borrow whatever is loaded (lazy TLB).
    pub address_space: Option<Arc<AddressSpace>>,
    state: AtomicU8,
    /// The stack pointer saved by the context switch while the thread is off CPU.
    pub(super) saved_rsp: UnsafeCell<u64>,
    /// True from the moment a CPU picks the thread until another thread runs
    /// on that CPU and the switch away has finished saving this one's
    /// registers. Another CPU must see it false before switching to the thread.
    pub(super) on_cpu: AtomicBool,
    pub(super) last_cpu: AtomicUsize,
    /// None for a CPU's boot context adopted as a thread.
    pub(super) stack: Option<KernelStack>,
    pub(super) entry: SpinLock<Option<Box<dyn FnOnce() + Send>>>,
    pub(super) exit_queue: WaitQueue,
    /// Time-slice end (ns) for Normal threads, set when the thread is switched in.
    pub(super) slice_end: AtomicU64,
    /// Set for threads that run in user mode.
    pub user: Option<Box<UserContext>>,
}

/// What a thread that runs in user mode carries besides its kernel context:
/// the registers the context switch saves for it alone (x87/SSE, FS base),
/// and its owner in the user layer (a process), which the scheduler does not
/// know and only keeps alive.
pub struct UserContext {
    /// Touched only by the CPU that runs the thread: the context switch, and
    /// the thread itself (`arch_prctl`).
    pub registers: UnsafeCell<UserRegisters>,
    pub owner: Arc<dyn Any + Send + Sync>,
    /// Where the thread enters user mode: set by its function, entered once
    /// the function has returned (so nothing it owned is left on the stack
    /// or the heap when the thread leaves the kernel for good).
    pub first_context: SpinLock<Option<TrapFrame>>,
}

impl UserContext {
    pub fn new(registers: UserRegisters, owner: Arc<dyn Any + Send + Sync>) -> Box<UserContext> {
        Box::new(UserContext {
            registers: UnsafeCell::new(registers),
            owner,
            first_context: SpinLock::new(None),
        })
    }
}

// SAFETY: `saved_rsp` is written only by the context switch on the CPU that runs
// the thread and read by the next CPU to run it after `on_cpu` (Release/Acquire)
// says the write is done; every other field is immutable or atomic.
unsafe impl Sync for Thread {}
// SAFETY: a thread is handed between CPUs only through the run queues and the
// context switch, under the `on_cpu` protocol above; it holds no CPU-bound state.
unsafe impl Send for Thread {}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
const NOT_PINNED: usize = usize::MAX;

impl Thread {
    pub(super) fn new(
        name: String,
        priority: Priority,
        affinity: Option<usize>,
        stack: Option<KernelStack>,
        state: State,
    ) -> Thread {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        trace::record_with_text(trace::format::THREAD_NAME, priority.rank() as u16, id, &name);
        Thread {
            id,
            name,
            priority: AtomicU8::new(priority.rank()),
            affinity: AtomicUsize::new(affinity.unwrap_or(NOT_PINNED)),
            address_space: None,
            state: AtomicU8::new(state as u8),
            saved_rsp: UnsafeCell::new(0),
            on_cpu: AtomicBool::new(false),
            last_cpu: AtomicUsize::new(0),
            stack,
            entry: SpinLock::new(None),
            exit_queue: WaitQueue::new(),
            slice_end: AtomicU64::new(0),
            user: None,
        }
    }

    pub fn priority(&self) -> Priority {
        Priority::from_rank(self.priority.load(Ordering::Relaxed))
    }

    /// Only for the running thread, which is on no run queue (see
    /// `set_current_priority`).
    pub(super) fn set_priority(&self, priority: Priority) {
        self.priority.store(priority.rank(), Ordering::Relaxed);
    }

    /// The CPU the thread is pinned to, if any.
    pub fn affinity(&self) -> Option<usize> {
        Some(self.affinity.load(Ordering::Relaxed)).filter(|&cpu| cpu != NOT_PINNED)
    }

    pub(super) fn set_affinity(&self, cpu: Option<usize>) {
        self.affinity.store(cpu.unwrap_or(NOT_PINNED), Ordering::Relaxed);
    }

    /// Lets a thread pinned to a CPU that went away run anywhere.
    pub(super) fn break_affinity(&self) {
        self.affinity.store(NOT_PINNED, Ordering::Relaxed);
    }

    pub fn state(&self) -> State {
        // SAFETY: only set_state()/try_transition() store into `state`, always a State.
        unsafe { core::mem::transmute::<u8, State>(self.state.load(Ordering::Acquire)) }
    }

    pub(super) fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if the thread is in `from`; false otherwise.
    pub(super) fn try_transition(&self, from: State, to: State) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The CPU it runs on, or ran on last.
    pub fn last_cpu(&self) -> usize {
        self.last_cpu.load(Ordering::Relaxed)
    }

    /// Spins until no CPU runs the thread or is still switching away from it.
    pub fn wait_until_off_cpu(&self) {
        while self.on_cpu.load(Ordering::Acquire) {
            core::hint::spin_loop();
        }
    }

    pub fn has_exited(&self) -> bool {
        self.state() == State::Exited
    }

    /// Whether `address` lies in the unmapped guard page below this thread's stack.
    pub fn is_guard_page(&self, address: u64) -> bool {
        self.stack
            .is_some_and(|s| (s.bottom.as_u64() - FRAME_SIZE..s.bottom.as_u64()).contains(&address))
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        if let Some(stack) = self.stack.take() {
            // SAFETY: the last reference is gone, so the thread has exited and
            // finished switching away (finish_switch cleared on_cpu before
            // dropping); nothing uses the stack any more.
            unsafe { stack.free() };
        }
    }
}
