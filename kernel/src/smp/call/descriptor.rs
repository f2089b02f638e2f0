//! A call as its targets see it: the function, how many targets have yet to
//! run it, and who waits. Each target's acknowledgement is its last touch of
//! the descriptor (in `sleep` mode the last target's last touch is
//! `waiter_woken`, after it has woken the waiter): after that, the frame the
//! descriptor lives in may be gone.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use super::HeapCall;
use crate::percpu;
use crate::percpu::AtomicCpuSet;
use crate::sched::{self, Thread};
use crate::trace::{self, format};

/// The work, as the targets see it.
pub(super) struct CallDescriptor {
    pub(super) name: &'static str,
    pub(super) function: *const (dyn Fn() + Sync),
    /// Targets that have not finished the call yet.
    pub(super) pending: AtomicUsize,
    /// The targets that finished, for reports about the ones that did not.
    pub(super) acknowledged: AtomicCpuSet,
    /// The targets that were offline: acknowledged without running the call.
    pub(super) offline: AtomicCpuSet,
    /// Owned by the targets (a call nobody waits for): the last frees it.
    pub(super) on_heap: bool,
    /// A `sleep`-mode waiter, which the last target wakes (else null). The
    /// pointer carries a reference of its own (`Arc::into_raw`), which the
    /// waiter takes back once the wait is over.
    pub(super) waiter: AtomicPtr<Thread>,
    /// Set by the last target once it has woken the waiter: its last touch
    /// of the descriptor. A sleeping waiter leaves only after this, not after
    /// `pending` reaches zero, so the descriptor outlives the wake-up.
    pub(super) waiter_woken: AtomicBool,
}

impl CallDescriptor {
    pub(super) fn new(
        name: &'static str,
        function: *const (dyn Fn() + Sync),
        pending: usize,
        on_heap: bool,
    ) -> CallDescriptor {
        CallDescriptor {
            name,
            function,
            pending: AtomicUsize::new(pending),
            acknowledged: AtomicCpuSet::new(),
            offline: AtomicCpuSet::new(),
            on_heap,
            waiter: AtomicPtr::new(core::ptr::null_mut()),
            waiter_woken: AtomicBool::new(false),
        }
    }

    /// Runs the call on this CPU and acknowledges it.
    pub(super) fn run(descriptor: *const CallDescriptor) {
        // SAFETY: the descriptor lives until `pending` reaches zero, which
        // cannot happen before this target's acknowledgement below.
        let call = unsafe { &*descriptor };
        trace::record_static_name(format::CALL_RUN_BEGIN, descriptor as u64, 0, call.name);
        // SAFETY: the function lives as long as the descriptor (see CrossCall).
        unsafe { (*call.function)() };
        trace::record(format::CALL_RUN_END, 0, descriptor as u64, 0, 0);
        Self::acknowledge(descriptor, percpu::cpu_number());
    }

    /// `cpu` is offline and will not run the call: acknowledged on its behalf.
    pub(super) fn acknowledge_offline(descriptor: *const CallDescriptor, cpu: usize) {
        // SAFETY: still pending (this acknowledgement is outstanding), so alive.
        unsafe { &*descriptor }.offline.insert(cpu, Ordering::Relaxed);
        Self::acknowledge(descriptor, cpu);
    }

    /// `cpu` is done with the call. After this the descriptor may be gone.
    fn acknowledge(descriptor: *const CallDescriptor, cpu: usize) {
        // SAFETY: as in run(): still pending, so still alive.
        let call = unsafe { &*descriptor };
        // Read before the acknowledgement: afterwards the descriptor may be gone.
        let (on_heap, waiter) = (call.on_heap, call.waiter.load(Ordering::Relaxed));
        if trace::is_on(format::CALL_ACKED) {
            let pending = call.pending.load(Ordering::Relaxed) as u64;
            trace::record(format::CALL_ACKED, cpu as u16, descriptor as u64, pending, 0);
        }
        call.acknowledged.insert(cpu, Ordering::Relaxed);
        if call.pending.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if on_heap {
            // SAFETY: nobody waits for a heap call; we were its last target.
            drop(unsafe { Box::from_raw(descriptor as *mut HeapCall) });
        } else if !waiter.is_null() {
            // SAFETY: a sleeping waiter stays (and so does the descriptor)
            // until `waiter_woken`, which only we set, in wake_waiter.
            unsafe { Self::wake_waiter(descriptor, waiter) };
        }
    }

    /// The last target wakes a `sleep`-mode waiter.
    ///
    /// # Safety
    /// `descriptor` is alive and `waiter` is its waiting thread, still waiting.
    unsafe fn wake_waiter(descriptor: *const CallDescriptor, waiter: *mut Thread) {
        // Our own reference: once `waiter_woken` is set the waiter may return,
        // and its thread exit, before `wake` below has finished with it.
        // SAFETY: `waiter` came from Arc::into_raw, and the reference it
        // carries is only given back after `waiter_woken`, so it is alive.
        let thread = unsafe {
            alloc::sync::Arc::increment_strong_count(waiter);
            alloc::sync::Arc::from_raw(waiter)
        };
        // The last use of the descriptor: afterwards its frame may be gone.
        // (A raw pointer, not a reference, so nothing claims it lives longer.)
        // SAFETY: alive until this store, per the contract above.
        unsafe { (*descriptor).waiter_woken.store(true, Ordering::Release) };
        // The waiter's side of this handshake is in sched::block_until: it
        // marks itself Blocked and then reads this flag, with a fence
        // between; here the flag is stored and then its state read (in wake).
        core::sync::atomic::fence(Ordering::SeqCst);
        sched::wake(&thread);
    }
}
