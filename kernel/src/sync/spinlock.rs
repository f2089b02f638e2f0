//! A spinlock that disables preemption while held, with an interrupt-saving variant.
//!
//! `lock()` is for data never touched from interrupt handlers; `lock_irqsave()`
//! also disables interrupts on this CPU, so a handler that takes the same lock
//! cannot deadlock against the code it interrupted (Linux: `spin_lock_irqsave`).
//! Both disable preemption: a thread that held a spinlock and was switched out
//! would make every other CPU spin for a whole time slice.

use core::cell::UnsafeCell;
use core::hint::spin_loop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::x86::interrupts;

use super::preempt;

pub struct SpinLock<T: ?Sized> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; nothing else is tied to a thread.
unsafe impl<T: ?Sized + Send> Send for SpinLock<T> {}

pub struct SpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
    /// Whether interrupts were enabled before `lock_irqsave()` turned them off.
    restore_interrupts: bool,
}

impl<T> SpinLock<T> {
    pub const fn new(value: T) -> SpinLock<T> {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }
}

impl<T: ?Sized> SpinLock<T> {
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        preempt::disable();
        self.acquire();
        SpinLockGuard { lock: self, restore_interrupts: false }
    }

    pub fn lock_irqsave(&self) -> SpinLockGuard<'_, T> {
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        preempt::disable();
        self.acquire();
        SpinLockGuard { lock: self, restore_interrupts: were_enabled }
    }

    /// Test-and-test-and-set: spin on a plain load so that waiting CPUs share the
    /// cache line instead of bouncing it with failed atomic writes.
    fn acquire(&self) {
        while self.locked.swap(true, Ordering::Acquire) {
            while self.locked.load(Ordering::Relaxed) {
                spin_loop();
            }
        }
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

impl<T: ?Sized> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this CPU holds the lock.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in deref; the &mut guard makes this the only access.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for SpinLockGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        if self.restore_interrupts {
            interrupts::enable();
        }
        preempt::enable();
    }
}
