//! Cross-CPU function calls (Linux: kernel/smp.c, `smp_call_function_*`).
//!
//! A caller describes the work in a [`CrossCall`] on its own stack, puts a
//! pointer to it on each target CPU's call queue and sends that CPU a
//! CALL_FUNCTION IPI (only if its queue was empty: IPIs coalesce). Each target
//! runs the function in its IPI handler and decrements the call's `pending`
//! count; that decrement is the target's last touch of the descriptor (in
//! `sleep` mode the last target also wakes the waiter and then sets
//! `waiter_woken`, its last touch). The caller waits until `pending` is zero
//! (in `sleep` mode, until `waiter_woken`), and only then may its stack
//! frame, and the descriptor in it, go away.
//!
//! How the caller waits is the point of this module (`ipi_wait=`):
//! - `spin`: preemption stays disabled from the enqueue to the last
//!   acknowledgement, as in Linux before 2026. A slow target (interrupts off)
//!   keeps the caller's CPU from running anything else, even a real-time thread.
//! - `preempt`: only choosing the targets, enqueuing and kicking
//!   happen with preemption disabled. The wait itself is preemptible, as in
//!   Chuyi Zhou's series: a higher-priority thread that wakes on this CPU runs
//!   at once, and the waiter may even continue on another CPU. That is safe
//!   because the waiter touches no per-CPU state while it waits: the target set
//!   and the descriptor are on its own stack, which moves with it, and the
//!   call queues belong to the targets, not to the caller's CPU.
//! - `sleep` (default): as `preempt`, but after spinning for `SPIN_BEFORE_SLEEP_NS` the
//!   waiter blocks, and the target whose acknowledgement is the last wakes it.
//!   Beyond Linux, whose preemptible wait still spins: during a long wait the
//!   CPU runs threads of any priority, or halts (under an emulator, that hands
//!   the host core to the vCPUs that have work).
//!
//! A call is never abandoned. A target with interrupts off for a long time
//! (or a vCPU the host does not run) delays the caller, but giving up on it
//! would be worse: the target may still run the call later, on a descriptor
//! that is gone, and a TLB flush given up on leaves a stale translation while
//! the caller frees the frame. So the caller reports the target after
//! `STUCK_AFTER_MS` (which CPU, what call, how long, and where the target is,
//! sampled with an NMI: see `stuck_cpu`) and keeps waiting, as Linux's
//! CSD-lock debugging does. A parked CPU closes its queue instead: calls to
//! it are acknowledged by the caller and reported as `Offline`.
//!
//! Calls must not be made with interrupts disabled: two CPUs waiting for each
//! other with interrupts off would never run each other's calls.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

use super::cpu_set::{AtomicCpuSet, CpuSet};
use crate::arch::x86::idt::CALL_FUNCTION_VECTOR;
use crate::arch::x86::lapic::{self, Ipi};
use crate::percpu::{self, cpu_local};
use crate::sched::{self, Thread};
use crate::sync::SpinLock;
use crate::sync::preempt;
use crate::time;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitMode {
    Preempt,
    Spin,
    Sleep,
}

impl WaitMode {
    pub const ALL: [WaitMode; 3] = [WaitMode::Spin, WaitMode::Preempt, WaitMode::Sleep];

    /// The name `ipi_wait=` takes.
    pub fn name(self) -> &'static str {
        match self {
            WaitMode::Preempt => "preempt",
            WaitMode::Spin => "spin",
            WaitMode::Sleep => "sleep",
        }
    }
}

static WAIT_MODE: AtomicU8 = AtomicU8::new(WaitMode::Sleep as u8);

pub fn set_wait_mode(mode: WaitMode) {
    WAIT_MODE.store(mode as u8, Ordering::Relaxed);
}

pub fn wait_mode() -> WaitMode {
    match WAIT_MODE.load(Ordering::Relaxed) {
        1 => WaitMode::Spin,
        2 => WaitMode::Sleep,
        _ => WaitMode::Preempt,
    }
}

/// How long a `sleep`-mode waiter spins before it blocks: longer than a call
/// to a halted CPU takes (40-130 us under TCG here, `bench=tlb`'s cost
/// lines), so a call that is answered at once costs no sleep and wake-up,
/// and one that waits for a slow CPU costs only this much spinning. (At
/// 50 us the waiter slept and was woken for most calls to a halted CPU:
/// thousands of vCPU halts and host wake-ups a second, and a worse tail.)
pub const SPIN_BEFORE_SLEEP_NS: u64 = 200_000;

/// One CPU's queue of calls to run.
pub struct CallQueue {
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
unsafe impl Send for CallQueue {}

impl CallQueue {
    pub const fn new() -> CallQueue {
        CallQueue { calls: SpinLock::new(VecDeque::new()), closed: AtomicBool::new(true) }
    }

    /// Closes the queue (under its lock, so no call slips in after) and hands
    /// back the calls it held.
    fn close_and_take(&self) -> VecDeque<*const CallDescriptor> {
        let mut calls = self.calls.lock_irqsave();
        self.closed.store(true, Ordering::Relaxed);
        core::mem::take(&mut *calls)
    }

    fn holds(&self, descriptor: *const CallDescriptor) -> bool {
        self.calls.lock_irqsave().iter().any(|&d| core::ptr::eq(d, descriptor))
    }
}

cpu_local! {
    static CALL_QUEUE: CallQueue = CallQueue::new();
}

fn queue_of(cpu: usize) -> &'static CallQueue {
    CALL_QUEUE.on(cpu)
}

/// The work, as the targets see it.
pub struct CallDescriptor {
    name: &'static str,
    function: *const (dyn Fn() + Sync),
    /// Targets that have not finished the call yet.
    pending: AtomicUsize,
    /// The targets that finished, for reports about the ones that did not.
    acknowledged: AtomicCpuSet,
    /// The targets that were offline: acknowledged without running the call.
    offline: AtomicCpuSet,
    /// Owned by the targets (a call nobody waits for): the last frees it.
    on_heap: bool,
    /// A `sleep`-mode waiter, which the last target wakes (else null). The
    /// pointer carries a reference of its own (`Arc::into_raw`), which the
    /// waiter takes back once the wait is over.
    waiter: AtomicPtr<Thread>,
    /// Set by the last target once it has woken the waiter: its last touch
    /// of the descriptor. A sleeping waiter leaves only after this, not after
    /// `pending` reaches zero, so the descriptor outlives the wake-up.
    waiter_woken: AtomicBool,
}

impl CallDescriptor {
    fn new(
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
    fn run(descriptor: *const CallDescriptor) {
        // SAFETY: the descriptor lives until `pending` reaches zero, which
        // cannot happen before this target's acknowledgement below.
        let call = unsafe { &*descriptor };
        // SAFETY: the function lives as long as the descriptor (see CrossCall).
        unsafe { (*call.function)() };
        Self::acknowledge(descriptor, percpu::cpu_number());
    }

    /// `cpu` is offline and will not run the call: acknowledged on its behalf.
    fn acknowledge_offline(descriptor: *const CallDescriptor, cpu: usize) {
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
        calls.push_back(descriptor);
        was_empty
    };
    if was_empty {
        lapic::get().send_ipi(super::cpus()[cpu].apic_id, Ipi::Fixed(CALL_FUNCTION_VECTOR));
    }
    true
}

/// Queues the call on every CPU of `remote`; a parked CPU's share is
/// acknowledged here, as offline.
fn enqueue_all(remote: CpuSet, descriptor: *const CallDescriptor) {
    for cpu in remote.iter() {
        if !enqueue(cpu, descriptor) {
            CallDescriptor::acknowledge_offline(descriptor, cpu);
        }
    }
}

/// Some targets were parked (offline) and did not run the call. For a TLB
/// flush that is harmless: a parked CPU is restarted with INIT, which empties
/// its TLB (SDM Vol. 3A 9.1.1, Table 9-1), before it runs anything again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offline {
    pub cpus: CpuSet,
}

/// A call that a thread waits for; create it on the stack, then `run` it.
pub struct CrossCall<'f> {
    descriptor: CallDescriptor,
    _function: core::marker::PhantomData<&'f ()>,
}

impl<'f> CrossCall<'f> {
    pub fn new(name: &'static str, function: &'f (dyn Fn() + Sync)) -> CrossCall<'f> {
        let function: *const (dyn Fn() + Sync + 'f) = function;
        // SAFETY: only the lifetime is erased: the descriptor cannot outlive 'f
        // (CrossCall borrows it), and targets use it only until their last
        // touch (see the module comment), which comes before the CrossCall
        // can be dropped (PendingCall waits for it).
        let function: *const (dyn Fn() + Sync) = unsafe { core::mem::transmute(function) };
        CrossCall {
            descriptor: CallDescriptor::new(name, function, 0, false),
            _function: core::marker::PhantomData,
        }
    }

    /// Runs the call: with preemption disabled, picks the targets with
    /// `choose(this_cpu)`, queues the call on each remote one and kicks it,
    /// then runs `local` here (while the remote CPUs work) and the call itself
    /// if this CPU is a target; then waits for the remote targets as
    /// `ipi_wait=` says, however long that takes. Start and wait are one
    /// function, so no caller can leave (or leak) a started call whose
    /// descriptor is on its stack.
    pub fn run(
        &self,
        choose: impl FnOnce(usize) -> CpuSet,
        local: impl FnOnce(usize),
    ) -> Result<(), Offline> {
        self.start(choose, local).wait();
        // Every target has acknowledged: the descriptor is ours alone again.
        let offline = self.descriptor.offline.load(Ordering::Relaxed);
        if offline.is_empty() { Ok(()) } else { Err(Offline { cpus: offline }) }
    }

    fn start(
        &self,
        choose: impl FnOnce(usize) -> CpuSet,
        local: impl FnOnce(usize),
    ) -> PendingCall<'_, 'f> {
        assert!(
            interrupts::are_enabled(),
            "cross-CPU call '{}' with interrupts disabled",
            self.descriptor.name
        );
        preempt::disable();
        let me = percpu::cpu_number();
        let targets = choose(me);
        let mut remote = targets;
        remote.remove(me);
        self.descriptor.pending.store(remote.len(), Ordering::Release);
        self.descriptor.acknowledged.clear(Ordering::Relaxed);
        self.descriptor.offline.clear(Ordering::Relaxed);
        let mode = wait_mode();
        // A caller that holds preemption off itself (a count above our own 1)
        // cannot block: it spins, and names no waiter.
        let sleeps = mode == WaitMode::Sleep && remote.len() > 0 && preempt::count() == 1;
        self.descriptor.waiter_woken.store(false, Ordering::Relaxed);
        // Published to the targets by the enqueue (under their queue's lock).
        let waiter =
            if sleeps { alloc::sync::Arc::into_raw(sched::current()) } else { core::ptr::null() };
        self.descriptor.waiter.store(waiter as *mut Thread, Ordering::Relaxed);
        enqueue_all(remote, &self.descriptor);
        local(me);
        if targets.contains(me) {
            interrupts::without_interrupts(|| {
                // SAFETY: the function outlives this call (see new()).
                unsafe { (*self.descriptor.function)() }
            });
        }
        if mode != WaitMode::Spin {
            preempt::enable();
        }
        PendingCall { call: self, remote, mode, started_by: me }
    }
}

/// A started call: its descriptor is queued on other CPUs.
struct PendingCall<'c, 'f> {
    call: &'c CrossCall<'f>,
    remote: CpuSet,
    mode: WaitMode,
    started_by: usize,
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
    fn wait(&self) {
        let descriptor = &self.call.descriptor;
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
            let location = super::stuck_cpu::locate(cpu);
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

/// Runs `function` on every CPU of `cpus` (this one included, if in the set)
/// and waits for all of them.
pub fn call_on_many(
    cpus: CpuSet,
    name: &'static str,
    function: &(dyn Fn() + Sync),
) -> Result<(), Offline> {
    CrossCall::new(name, function).run(|_| cpus, |_| {})
}

pub fn call_on(
    cpu: usize,
    name: &'static str,
    function: &(dyn Fn() + Sync),
) -> Result<(), Offline> {
    call_on_many(CpuSet::single(cpu), name, function)
}

/// Runs `function` on one CPU of `cpus`: this one if it is in the set, else
/// the lowest-numbered one in the set. Returns the CPU chosen.
pub fn call_on_any(
    cpus: CpuSet,
    name: &'static str,
    function: &(dyn Fn() + Sync),
) -> Result<usize, Offline> {
    let mut chosen = 0;
    CrossCall::new(name, function)
        .run(
            |me| {
                chosen = if cpus.contains(me) { me } else { cpus.iter().next().unwrap_or(me) };
                CpuSet::single(chosen)
            },
            |_| {},
        )
        .map(|()| chosen)
}

/// A call nobody waits for: descriptor and function live on the heap, and the
/// last target to finish frees them.
#[repr(C)]
struct HeapCall {
    descriptor: CallDescriptor,
    function: Box<dyn Fn() + Send + Sync>,
}

/// Runs `function` on every CPU of `cpus` without waiting.
pub fn call_on_many_nowait(
    cpus: CpuSet,
    name: &'static str,
    function: impl Fn() + Send + Sync + 'static,
) {
    assert!(interrupts::are_enabled(), "cross-CPU call '{name}' with interrupts disabled");
    preempt::disable();
    let me = percpu::cpu_number();
    let mut remote = cpus;
    remote.remove(me);
    if cpus.contains(me) {
        interrupts::without_interrupts(&function);
    }
    if remote.len() > 0 {
        let no_function = core::ptr::null::<fn()>() as *const (dyn Fn() + Sync);
        let mut call = Box::new(HeapCall {
            descriptor: CallDescriptor::new(name, no_function, remote.len(), true),
            function: Box::new(function),
        });
        call.descriptor.function =
            &*call.function as &(dyn Fn() + Sync) as *const (dyn Fn() + Sync);
        // repr(C): the descriptor is the first field, so the two pointers agree.
        let descriptor = Box::into_raw(call) as *const CallDescriptor;
        // Parked CPUs are acknowledged for (the last acknowledgement frees it).
        enqueue_all(remote, descriptor);
    }
    preempt::enable();
}
