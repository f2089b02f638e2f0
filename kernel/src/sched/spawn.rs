//! Making threads: a [`Builder`] names the thread, its priority, its CPU and
//! its address space; `spawn` gives it a stack whose first switch lands in
//! `thread_entry` (see `switch`), and queues it. A [`JoinHandle`] waits for
//! it to exit.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;

use super::placement::{enqueue, least_loaded_cpu};
use super::thread::UserContext;
use super::{Priority, State, THREAD_STACK_SIZE, Thread, switch};
use crate::mm::address_space::AddressSpace;
use crate::mm::stack::KernelStack;

pub struct Builder {
    name: String,
    priority: Priority,
    affinity: Option<usize>,
    address_space: Option<Arc<AddressSpace>>,
    user: Option<Box<UserContext>>,
}

impl Builder {
    pub fn new(name: &str) -> Builder {
        Builder {
            name: name.into(),
            priority: Priority::Normal,
            affinity: None,
            address_space: None,
            user: None,
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

    /// Makes it a thread that runs in user mode (see `UserContext`).
    pub fn user(mut self, context: Box<UserContext>) -> Builder {
        self.user = Some(context);
        self
    }

    pub fn spawn(self, f: impl FnOnce() + Send + 'static) -> JoinHandle {
        let thread =
            new_thread(self.name, self.priority, self.affinity, self.address_space, self.user, f);
        let cpu = self.affinity.unwrap_or_else(least_loaded_cpu);
        // (A thread pinned to a CPU that is not running is moved, with a warning: see enqueue.)
        thread.set_state(State::Runnable);
        enqueue(cpu, thread.clone());
        JoinHandle { thread }
    }
}

pub(super) fn new_thread(
    name: String,
    priority: Priority,
    affinity: Option<usize>,
    address_space: Option<Arc<AddressSpace>>,
    user: Option<Box<UserContext>>,
    f: impl FnOnce() + Send + 'static,
) -> Arc<Thread> {
    let stack = KernelStack::new(THREAD_STACK_SIZE);
    let mut thread = Thread::new(name, priority, affinity, Some(stack), State::Blocked);
    thread.address_space = address_space;
    thread.user = user;
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
