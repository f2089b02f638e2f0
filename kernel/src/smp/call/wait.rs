//! How a caller waits for its targets (`ipi_wait=`): spinning, spinning
//! preemptibly, or spinning briefly and then sleeping until the last target
//! wakes it; and what it reports about a target that does not answer.

use core::sync::atomic::{AtomicU64, Ordering};

use super::queue::queue_of;
use super::{CrossCall, SPIN_BEFORE_SLEEP_NS, WaitMode};
use crate::percpu::CpuSet;
use crate::sched;
use crate::sync::preempt;
use crate::time;
use crate::trace::{self, format};

/// A started call: its descriptor is queued on other CPUs.
pub(super) struct PendingCall<'c, 'f> {
    pub(super) call: &'c CrossCall<'f>,
    pub(super) remote: CpuSet,
    pub(super) mode: WaitMode,
    pub(super) started_by: usize,
}

static STUCK_REPORTS: AtomicU64 = AtomicU64::new(0);

/// How many times a waiter has reported a target that does not answer.
pub fn stuck_reports() -> u64 {
    STUCK_REPORTS.load(Ordering::Relaxed)
}

impl PendingCall<'_, '_> {
    /// Waits until every remote target has acknowledged: a call is never
    /// abandoned, because a target may still run it (and for a TLB flush,
    /// giving up would leave a stale translation behind while the caller
    /// frees the frame). A target that has not answered after
    /// `STUCK_AFTER_MS` is reported, and again every `REPORT_EVERY_MS`,
    /// as Linux's CSD-lock debugging does (kernel/smp.c, `csd_lock_wait_toolong`).
    pub(super) fn wait(&self) {
        let descriptor = &self.call.descriptor;
        let traced = trace::is_on(format::CALL_WAIT_BEGIN) && !self.remote.is_empty();
        let id = descriptor as *const _ as u64;
        let thread = if traced { sched::current_id() } else { 0 };
        if traced {
            let targets = self.remote.len() as u64;
            trace::record(format::CALL_WAIT_BEGIN, self.mode_used() as u16, id, thread, targets);
        }
        let started = time::now_ns();
        let mut next_report = started + STUCK_AFTER_MS * 1_000_000;
        let mut reported = false;
        let sleep_at = started + SPIN_BEFORE_SLEEP_NS;
        while !self.done() {
            let now = time::now_ns();
            if now >= next_report {
                self.report_stuck((now - started) / 1_000_000);
                reported = true;
                next_report = now + REPORT_EVERY_MS * 1_000_000;
            }
            if self.sleeps() && now >= sleep_at {
                // Until the last target wakes us, or it is time to report.
                sched::block_until(&|| self.done(), next_report);
            } else {
                core::hint::spin_loop();
            }
        }
        if reported {
            log::warn!(
                "xcall: '{}' from cpu{} completed after {} ms",
                descriptor.name,
                self.started_by,
                (time::now_ns() - started) / 1_000_000
            );
        }
        if traced {
            trace::record(format::CALL_WAIT_END, 0, id, thread, 0);
        }
        if self.sleeps() {
            let waiter = descriptor.waiter.swap(core::ptr::null_mut(), Ordering::Relaxed);
            // SAFETY: the reference start() put in the descriptor; every
            // target is done with it (done() held).
            drop(unsafe { alloc::sync::Arc::from_raw(waiter) });
        }
        if self.mode == WaitMode::Spin {
            preempt::enable();
        }
    }

    /// Whether this wait blocks after its first `SPIN_BEFORE_SLEEP_NS`.
    /// How this wait really waits: it sleeps only if `start` found it could,
    /// and with preemption already off around the call, any wait spins.
    fn mode_used(&self) -> WaitMode {
        if self.sleeps() {
            WaitMode::Sleep
        } else if self.mode == WaitMode::Spin || preempt::count() > 0 {
            WaitMode::Spin
        } else {
            WaitMode::Preempt
        }
    }

    fn sleeps(&self) -> bool {
        !self.call.descriptor.waiter.load(Ordering::Relaxed).is_null()
    }

    /// Every target has acknowledged, and (in `sleep` mode) the last one is
    /// done waking us: the descriptor is ours alone again.
    fn done(&self) -> bool {
        let descriptor = &self.call.descriptor;
        if self.sleeps() {
            descriptor.waiter_woken.load(Ordering::Acquire)
        } else {
            descriptor.pending.load(Ordering::Acquire) == 0
        }
    }

    /// Names each target that has not acknowledged, what it is doing with the
    /// call, and where it is (its RIP, sampled with an NMI).
    fn report_stuck(&self, waited_ms: u64) {
        let descriptor = &self.call.descriptor;
        let acknowledged = descriptor.acknowledged.load(Ordering::Relaxed);
        for cpu in self.remote.iter().filter(|&cpu| !acknowledged.contains(cpu)) {
            STUCK_REPORTS.fetch_add(1, Ordering::Relaxed);
            let state = if queue_of(cpu).holds(descriptor) {
                "not started: interrupts off?"
            } else {
                "still running it"
            };
            let location = crate::smp::stuck_cpu::locate(cpu);
            log::warn!(
                "xcall: CPU {cpu} has not acknowledged '{}' from cpu{} after {waited_ms} ms ({state}); {location}; still waiting",
                descriptor.name,
                self.started_by,
            );
        }
    }
}

/// When a waiter first reports a target that does not answer, and how often
/// it repeats the report while it keeps waiting.
pub const STUCK_AFTER_MS: u64 = 1000;
pub const REPORT_EVERY_MS: u64 = 5000;
