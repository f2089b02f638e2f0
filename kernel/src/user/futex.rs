//! `futex(2)`, the two operations musl's threads need: FUTEX_WAIT (sleep if
//! the word at an address still holds a value) and FUTEX_WAKE (wake up to N
//! sleepers on an address). Mutexes, condition variables and `pthread_join`
//! are built on them.
//!
//! The check and the sleep must be one step with respect to a waker, or a
//! wake-up between them is lost. As in Linux (kernel/futex/), the waiter
//! reads the word *under the lock the waker takes*, and queues itself before
//! dropping it: a waker that changed the word first and then wakes either
//! ran before (the waiter reads the new value and does not sleep) or finds
//! the waiter queued. Reading user memory under a spin lock must not sleep,
//! so the read there does not fault pages in; if it fails, the lock is
//! dropped, the page faulted in with an ordinary read, and the whole thing
//! retried (Linux: `futex_get_value_locked`, then `get_user` and retry).
//!
//! This kernel has one process per address space and no shared memory
//! between processes, so private and shared futexes are the same: keyed by
//! address within the process.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use super::access;
use super::errno::{EAGAIN, EINTR, EINVAL, ENOSYS, ETIMEDOUT, Errno};
use crate::sched::{self, Thread};
use crate::sync::SpinLock;

pub const FUTEX_WAIT: u64 = 0;
pub const FUTEX_WAKE: u64 = 1;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

struct Waiter {
    address: u64,
    thread: Arc<Thread>,
    woken: AtomicBool,
}

/// A process's sleepers, in arrival order.
pub struct Futexes {
    waiters: SpinLock<Vec<Arc<Waiter>>>,
}

impl Futexes {
    pub fn new() -> Futexes {
        Futexes { waiters: SpinLock::new(Vec::new()) }
    }

    /// Wakes up to `count` threads sleeping on `address`; returns how many.
    pub fn wake(&self, address: u64, count: u64) -> u64 {
        let mut woken = Vec::new();
        {
            let mut waiters = self.waiters.lock_irqsave();
            waiters.retain(|waiter| {
                if waiter.address != address || woken.len() as u64 >= count {
                    return true;
                }
                waiter.woken.store(true, Ordering::Release);
                woken.push(waiter.thread.clone());
                false
            });
        }
        for thread in &woken {
            sched::wake(thread);
        }
        woken.len() as u64
    }

    /// Sleeps while the word at `address` is `expected`, until woken,
    /// `deadline_ns`, or `stop()` (the process is exiting).
    fn wait(
        &self,
        address: u64,
        expected: u32,
        deadline_ns: Option<u64>,
        stop: &dyn Fn() -> bool,
    ) -> Result<u64, Errno> {
        if !address.is_multiple_of(4) {
            return Err(EINVAL);
        }
        let waiter =
            Arc::new(Waiter { address, thread: sched::current(), woken: AtomicBool::new(false) });
        loop {
            let mut waiters = self.waiters.lock_irqsave();
            let mut word = [0u8; 4];
            if access::read_without_faulting_in(address, &mut word).is_err() {
                drop(waiters);
                access::read(address, &mut word)?; // fault it in, or EFAULT
                continue;
            }
            if u32::from_ne_bytes(word) != expected {
                return Err(EAGAIN);
            }
            waiters.push(waiter.clone());
            break;
        }
        let woken = || waiter.woken.load(Ordering::Acquire) || stop();
        loop {
            sched::block_until(&woken, deadline_ns.unwrap_or(u64::MAX));
            let timed_out = deadline_ns.is_some_and(|d| crate::time::now_ns() >= d);
            if woken() || timed_out {
                break;
            }
        }
        // Still queued unless a waker took us off.
        self.waiters.lock_irqsave().retain(|w| !Arc::ptr_eq(w, &waiter));
        if waiter.woken.load(Ordering::Acquire) {
            Ok(0)
        } else if stop() {
            Err(EINTR)
        } else {
            Err(ETIMEDOUT)
        }
    }
}

/// `futex(uaddr, op, val, timeout, uaddr2, val3)` on a process's futexes;
/// a wait gives up with EINTR once `stop()` holds.
pub fn futex(
    futexes: &Futexes,
    address: u64,
    op: u64,
    value: u64,
    timeout: u64,
    stop: &dyn Fn() -> bool,
) -> Result<u64, Errno> {
    match op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME) {
        FUTEX_WAIT => {
            // A relative timeout (FUTEX_WAIT's, whatever the clock flag says).
            let deadline = if timeout == 0 {
                None
            } else {
                let timespec = access::read_value::<access::Timespec>(timeout)?;
                let ns = timespec.to_ns().ok_or(EINVAL)?;
                Some(crate::time::now_ns().saturating_add(ns))
            };
            futexes.wait(address, value as u32, deadline, stop)
        }
        FUTEX_WAKE => {
            if !address.is_multiple_of(4) {
                return Err(EINVAL);
            }
            Ok(futexes.wake(address, value.min(i32::MAX as u64)))
        }
        _ => Err(ENOSYS),
    }
}
