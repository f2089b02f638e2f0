//! Wait queues and completions: how a thread blocks until an event.
//!
//! The rule that prevents lost wake-ups: a waiter checks its condition and
//! queues itself under the queue's lock; a waker changes the condition first,
//! then takes the same lock to wake. Either the waiter sees the new condition,
//! or it is on the queue when the waker looks.

use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::thread::{State, Thread};
use crate::sync::SpinLock;

pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Thread>>>,
}

impl WaitQueue {
    pub const fn new() -> WaitQueue {
        WaitQueue { waiters: SpinLock::new(VecDeque::new()) }
    }

    /// Blocks until `condition` holds (it is checked under the queue's lock).
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        self.wait_until_or_deadline(&mut condition, None);
    }

    /// As `wait_until`, but gives up at `deadline_ns` (clock time); returns
    /// whether the condition held.
    pub fn wait_until_or_deadline(
        &self,
        condition: &mut dyn FnMut() -> bool,
        deadline_ns: Option<u64>,
    ) -> bool {
        let me = super::current();
        loop {
            {
                let mut waiters = self.waiters.lock_irqsave();
                if condition() {
                    // Woken by something else (a timeout), we may still be
                    // queued; a stale entry would swallow someone's wake_one.
                    waiters.retain(|t| !Arc::ptr_eq(t, &me));
                    return true;
                }
                if deadline_ns.is_some_and(|d| crate::time::now_ns() >= d) {
                    waiters.retain(|t| !Arc::ptr_eq(t, &me));
                    return false;
                }
                me.set_state(State::Blocked);
                if !waiters.iter().any(|t| Arc::ptr_eq(t, &me)) {
                    waiters.push_back(me.clone());
                }
                if let Some(deadline) = deadline_ns {
                    super::sleep::add_sleeper(deadline, me.clone());
                }
            }
            super::schedule();
        }
    }

    /// Wakes the longest waiter; false if there was none.
    pub fn wake_one(&self) -> bool {
        let waiter = self.waiters.lock_irqsave().pop_front();
        match waiter {
            Some(thread) => {
                super::wake(&thread);
                true
            }
            None => false,
        }
    }

    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock_irqsave());
        for thread in waiters {
            super::wake(&thread);
        }
    }
}

/// An event that happens a number of times; `wait()` consumes one occurrence
/// (Linux: `struct completion`).
pub struct Completion {
    done: AtomicU64,
    queue: WaitQueue,
}

impl Completion {
    pub const fn new() -> Completion {
        Completion { done: AtomicU64::new(0), queue: WaitQueue::new() }
    }

    pub fn complete(&self) {
        self.done.fetch_add(1, Ordering::Release);
        self.queue.wake_one();
    }

    pub fn wait(&self) {
        self.queue.wait_until(|| self.try_take());
    }

    /// Waits until `deadline_ns`; false if it passed first.
    pub fn wait_until(&self, deadline_ns: u64) -> bool {
        self.queue.wait_until_or_deadline(&mut || self.try_take(), Some(deadline_ns))
    }

    fn try_take(&self) -> bool {
        self.done.try_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)).is_ok()
    }
}

/// A lock whose waiters sleep instead of spinning: for what is held across
/// things that may block or be preempted, such as a process's memory map,
/// held across the TLB shootdowns it waits for (a spin lock forbids
/// preemption, and `schedule()` refuses to run under one). Linux: `struct
/// mutex` (here without spinning on the owner, nor handing the lock over).
pub struct Mutex<T> {
    locked: AtomicBool,
    queue: WaitQueue,
    value: UnsafeCell<T>,
}

// SAFETY: the value is reached only through a guard, and one guard exists at
// a time (`locked`, taken with Acquire and released with Release).
unsafe impl<T: Send> Sync for Mutex<T> {}
// SAFETY: as above; moving the mutex moves the value.
unsafe impl<T: Send> Send for Mutex<T> {}

impl<T> Mutex<T> {
    pub const fn new(value: T) -> Mutex<T> {
        Mutex {
            locked: AtomicBool::new(false),
            queue: WaitQueue::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Takes the lock, sleeping while another thread holds it.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        // A released lock is either seen here, or its release's wake-up
        // finds us queued (the wait queue's rule).
        while self.locked.swap(true, Ordering::Acquire) {
            self.queue.wait_until(|| !self.locked.load(Ordering::Relaxed));
        }
        MutexGuard { mutex: self }
    }
}

pub struct MutexGuard<'a, T> {
    mutex: &'a Mutex<T>,
}

impl<T> core::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard is the one holder of the lock.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T> core::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T> Drop for MutexGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.locked.store(false, Ordering::Release);
        self.mutex.queue.wake_one();
    }
}
