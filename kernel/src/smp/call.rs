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

mod descriptor;
mod queue;
mod wait;

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::arch::x86::interrupts;

use crate::percpu;
use crate::percpu::CpuSet;
use crate::sched::{self, Thread};
use crate::sync::preempt;
use descriptor::CallDescriptor;
use queue::enqueue_all;
pub use queue::{close_queue_of_failed, close_this_cpu, on_call_interrupt, open_this_cpu};
use wait::PendingCall;
pub use wait::{STUCK_AFTER_MS, stuck_reports};

/// Defined with the other kernel-argument values, which name nothing above them.
pub use crate::args::WaitMode;

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
        let sleeps = mode == WaitMode::Sleep && !remote.is_empty() && preempt::count() == 1;
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
    if !remote.is_empty() {
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
