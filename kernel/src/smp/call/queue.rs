//! Each CPU's queue of calls to run, and the CALL_FUNCTION IPI that drains
//! it. A caller queues a descriptor and kicks the CPU only if its queue was
//! empty (a kick already on its way runs everything queued). A parked CPU
//! closes its queue: a caller that finds it closed acknowledges the call for
//! it, as offline.

use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicBool, Ordering};

use super::descriptor::CallDescriptor;
use crate::arch::x86::vectors::CALL_FUNCTION_VECTOR;
use crate::percpu::CpuSet;
use crate::percpu::cpu_local;
use crate::sync::SpinLock;
use crate::trace::{self, format};

/// One CPU's queue of calls to run.
pub(super) struct CallQueue {
    calls: SpinLock<VecDeque<*const CallDescriptor>>,
    /// Set while the CPU is not online (before it first comes up, and from
    /// the moment it drains its queue to park until it is back): it takes no
    /// calls. Set under the lock (so no call slips in after the last drain),
    /// cleared without it: a CPU coming up must not take a lock, since the
    /// boot CPU may give up on it and INIT it at any instruction.
    closed: AtomicBool,
}

// SAFETY: the pointers are only dereferenced under the protocol described at
// the top: a descriptor outlives every queue entry that points to it.
unsafe impl Sync for CallQueue {}

impl CallQueue {
    const fn new() -> CallQueue {
        CallQueue { calls: SpinLock::new(VecDeque::new()), closed: AtomicBool::new(true) }
    }

    /// Closes the queue (under its lock, so no call slips in after) and hands
    /// back the calls it held.
    fn close_and_take(&self) -> VecDeque<*const CallDescriptor> {
        let mut calls = self.calls.lock_irqsave();
        self.closed.store(true, Ordering::Relaxed);
        core::mem::take(&mut *calls)
    }

    pub(super) fn holds(&self, descriptor: *const CallDescriptor) -> bool {
        self.calls.lock_irqsave().iter().any(|&d| core::ptr::eq(d, descriptor))
    }
}

cpu_local! {
    static CALL_QUEUE: CallQueue = CallQueue::new();
}

pub(super) fn queue_of(cpu: usize) -> &'static CallQueue {
    CALL_QUEUE.on(cpu)
}

/// The call IPI's handler: run everything queued for this CPU.
pub fn on_call_interrupt() {
    let queue = CALL_QUEUE.get();
    loop {
        let next = queue.calls.lock_irqsave().pop_front();
        match next {
            Some(descriptor) => CallDescriptor::run(descriptor),
            None => break,
        }
    }
}

/// For a CPU about to park: close its queue to new calls and run the ones
/// already queued. A caller that finds the queue closed acknowledges the call
/// itself (see `enqueue`), so no caller ever waits for a parked CPU.
pub fn close_this_cpu() {
    for descriptor in CALL_QUEUE.get().close_and_take() {
        CallDescriptor::run(descriptor);
    }
}

/// For an AP the boot CPU gave up on (and INITed) after it opened its queue:
/// close it again, and acknowledge whatever was queued meanwhile, as offline.
pub fn close_queue_of_failed(cpu: usize) {
    for descriptor in queue_of(cpu).close_and_take() {
        CallDescriptor::acknowledge_offline(descriptor, cpu);
    }
}

/// For a CPU coming (back) online: take calls again.
pub fn open_this_cpu() {
    CALL_QUEUE.get().closed.store(false, Ordering::Release);
}

/// Queues `descriptor` on `cpu` and kicks it unless a kick is already on its
/// way. False if the CPU is parked: the call is not queued.
fn enqueue(cpu: usize, descriptor: *const CallDescriptor) -> bool {
    let queue = queue_of(cpu);
    let was_empty = {
        let mut calls = queue.calls.lock_irqsave();
        if queue.closed.load(Ordering::Acquire) {
            return false;
        }
        let was_empty = calls.is_empty();
        // Recorded before the target can see the call (it takes this lock).
        trace::record(format::CALL_QUEUED, cpu as u16, descriptor as u64, 0, 0);
        calls.push_back(descriptor);
        was_empty
    };
    if was_empty {
        crate::irq::send_ipi(cpu, CALL_FUNCTION_VECTOR);
    }
    true
}

/// Queues the call on every CPU of `remote`; a parked CPU's share is
/// acknowledged here, as offline.
pub(super) fn enqueue_all(remote: CpuSet, descriptor: *const CallDescriptor) {
    for cpu in remote.iter() {
        if !enqueue(cpu, descriptor) {
            CallDescriptor::acknowledge_offline(descriptor, cpu);
        }
    }
}
