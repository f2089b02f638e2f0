//! Cross-CPU function calls (Linux: kernel/smp.c, `smp_call_function_*`).
//!
//! A caller describes the work in a [`CrossCall`] on its own stack, puts a
//! pointer to it on each target CPU's call queue and sends that CPU a
//! CALL_FUNCTION IPI (only if its queue was empty: IPIs coalesce). Each target
//! runs the function in its IPI handler and decrements the call's `pending`
//! count; that decrement is the target's last touch of the descriptor. The
//! caller waits until `pending` is zero, and only then may its stack frame,
//! and the descriptor in it, go away.
//!
//! How the caller waits is the point of this module (`ipi_wait=`):
//! - `spin`: preemption stays disabled from the enqueue to the last
//!   acknowledgement, as in Linux before 2026. A slow target (interrupts off)
//!   keeps the caller's CPU from running anything else, even a real-time thread.
//! - `preempt` (default): only choosing the targets, enqueuing and kicking
//!   happen with preemption disabled. The wait itself is preemptible, as in
//!   Chuyi Zhou's series: a higher-priority thread that wakes on this CPU runs
//!   at once, and the waiter may even continue on another CPU. That is safe
//!   because the waiter touches no per-CPU state while it waits: the target set
//!   and the descriptor are on its own stack, which moves with it, and the
//!   call queues belong to the targets, not to the caller's CPU.
//!
//! Calls must not be made with interrupts disabled: two CPUs waiting for each
//! other with interrupts off would never run each other's calls.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use x86_64::instructions::interrupts;

use crate::arch::x86::idt::CALL_FUNCTION_VECTOR;
use crate::arch::x86::lapic::{self, Ipi};
use crate::sched::preempt;
use crate::sync::SpinLock;
use crate::{percpu, time};

/// How long a caller waits for a target before it reports it.
pub const UNRESPONSIVE_AFTER_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    Preempt,
    Spin,
}

static SPIN_MODE: AtomicBool = AtomicBool::new(false);

pub fn set_wait_mode(mode: WaitMode) {
    SPIN_MODE.store(mode == WaitMode::Spin, Ordering::Relaxed);
}

pub fn wait_mode() -> WaitMode {
    if SPIN_MODE.load(Ordering::Relaxed) { WaitMode::Spin } else { WaitMode::Preempt }
}

/// A set of CPUs by number (this kernel manages at most 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(pub u64);

impl CpuSet {
    pub fn single(cpu: usize) -> CpuSet {
        CpuSet(1 << cpu)
    }

    pub fn all_online() -> CpuSet {
        let mut set = CpuSet::default();
        for cpu in super::cpus().iter().filter(|c| c.state() == super::ApState::Online) {
            set.insert(cpu.number);
        }
        set
    }

    pub fn insert(&mut self, cpu: usize) {
        self.0 |= 1 << cpu;
    }

    pub fn remove(&mut self, cpu: usize) {
        self.0 &= !(1 << cpu);
    }

    pub fn contains(self, cpu: usize) -> bool {
        cpu < 64 && self.0 & (1 << cpu) != 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&cpu| self.contains(cpu))
    }
}

/// One CPU's queue of calls to run; lives in its `PerCpu`.
pub struct CallQueue(SpinLock<VecDeque<*const CallDescriptor>>);

// SAFETY: the pointers are only dereferenced under the protocol described at
// the top: a descriptor outlives every queue entry that points to it.
unsafe impl Sync for CallQueue {}
unsafe impl Send for CallQueue {}

impl CallQueue {
    pub const fn new() -> CallQueue {
        CallQueue(SpinLock::new(VecDeque::new()))
    }
}

fn queue_of(cpu: usize) -> &'static CallQueue {
    &super::cpus()[cpu].percpu.calls
}

/// The work, as the targets see it.
pub struct CallDescriptor {
    name: &'static str,
    function: *const (dyn Fn() + Sync),
    /// Targets that have not finished the call yet.
    pending: AtomicUsize,
    /// Owned by the targets (a call nobody waits for): the last frees it.
    on_heap: bool,
}

impl CallDescriptor {
    /// Runs the call on this CPU and acknowledges it.
    fn run(descriptor: *const CallDescriptor) {
        // SAFETY: the descriptor lives until `pending` reaches zero, which
        // cannot happen before this target's acknowledgement below.
        let call = unsafe { &*descriptor };
        // SAFETY: the function lives as long as the descriptor (see CrossCall).
        unsafe { (*call.function)() };
        let on_heap = call.on_heap; // read before the acknowledgement: afterwards it may be gone
        if call.pending.fetch_sub(1, Ordering::AcqRel) == 1 && on_heap {
            // SAFETY: nobody waits for a heap call; we were its last target.
            drop(unsafe { Box::from_raw(descriptor as *mut HeapCall) });
        }
    }
}

/// The call IPI's handler: run everything queued for this CPU.
pub fn on_call_interrupt() {
    let queue = &percpu::this().calls;
    loop {
        let next = queue.0.lock_irqsave().pop_front();
        match next {
            Some(descriptor) => CallDescriptor::run(descriptor),
            None => break,
        }
    }
}

/// Queues `descriptor` on `cpu` and kicks it unless a kick is already on its way.
fn enqueue(cpu: usize, descriptor: *const CallDescriptor) {
    let was_empty = {
        let mut queue = queue_of(cpu).0.lock_irqsave();
        let was_empty = queue.is_empty();
        queue.push_back(descriptor);
        was_empty
    };
    if was_empty {
        lapic::get().send_ipi(super::cpus()[cpu].apic_id, Ipi::Fixed(CALL_FUNCTION_VECTOR));
    }
}

/// Takes `descriptor` off `cpu`'s queue if that CPU has not started it yet.
fn withdraw(cpu: usize, descriptor: *const CallDescriptor) -> bool {
    let mut queue = queue_of(cpu).0.lock_irqsave();
    let before = queue.len();
    queue.retain(|&d| !core::ptr::eq(d, descriptor));
    queue.len() != before
}

/// Why a call did not complete everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unresponsive {
    /// The CPUs that never started the call (it was withdrawn from them).
    pub cpus: CpuSet,
    pub waited_ms: u64,
}

/// A call that a thread waits for; create it on the stack, then `start` it.
pub struct CrossCall<'f> {
    descriptor: CallDescriptor,
    _function: core::marker::PhantomData<&'f ()>,
}

impl<'f> CrossCall<'f> {
    pub fn new(name: &'static str, function: &'f (dyn Fn() + Sync)) -> CrossCall<'f> {
        let function: *const (dyn Fn() + Sync + 'f) = function;
        // SAFETY: only the lifetime is erased: the descriptor cannot outlive 'f
        // (CrossCall borrows it), and targets use it only while it is pending,
        // which ends before the CrossCall can be dropped (PendingCall waits).
        let function: *const (dyn Fn() + Sync) = unsafe { core::mem::transmute(function) };
        CrossCall { descriptor: CallDescriptor { name, function, pending: AtomicUsize::new(0), on_heap: false }, _function: core::marker::PhantomData }
    }

    /// Runs the call: with preemption disabled, picks the targets with
    /// `choose(this_cpu)`, queues the call on each remote one and kicks it,
    /// then runs `local` here (while the remote CPUs work) and the call itself
    /// if this CPU is a target; then waits for the remote targets as
    /// `ipi_wait=` says. Start and wait are one function, so no caller can
    /// leave (or leak) a started call whose descriptor is on its stack.
    pub fn run(&self, choose: impl FnOnce(usize) -> CpuSet, local: impl FnOnce(usize)) -> Result<(), Unresponsive> {
        self.start(choose, local).wait()
    }

    fn start(&self, choose: impl FnOnce(usize) -> CpuSet, local: impl FnOnce(usize)) -> PendingCall<'_, 'f> {
        assert!(interrupts::are_enabled(), "cross-CPU call '{}' with interrupts disabled", self.descriptor.name);
        preempt::disable();
        let me = percpu::cpu_number();
        let targets = choose(me);
        let mut remote = targets;
        remote.remove(me);
        self.descriptor.pending.store(remote.len(), Ordering::Release);
        for cpu in remote.iter() {
            enqueue(cpu, &self.descriptor);
        }
        local(me);
        if targets.contains(me) {
            interrupts::without_interrupts(|| {
                // SAFETY: the function outlives this call (see new()).
                unsafe { (*self.descriptor.function)() }
            });
        }
        let spin = wait_mode() == WaitMode::Spin;
        if !spin {
            preempt::enable();
        }
        PendingCall { call: self, remote, spin, finished: false }
    }
}

struct PendingCall<'c, 'f> {
    call: &'c CrossCall<'f>,
    remote: CpuSet,
    spin: bool,
    finished: bool,
}

static REPORTS: AtomicU64 = AtomicU64::new(0);

impl PendingCall<'_, '_> {
    /// Waits for every remote target. A target that has not even started the
    /// call after `UNRESPONSIVE_AFTER_MS` is reported, the call is withdrawn
    /// from it, and the wait ends with `Err`. A target that started but is
    /// still running the call is waited for (its descriptor is in use).
    fn wait(mut self) -> Result<(), Unresponsive> {
        self.finished = true;
        let result = self.wait_inner();
        if self.spin {
            preempt::enable();
        }
        result
    }

    fn wait_inner(&self) -> Result<(), Unresponsive> {
        let descriptor = &self.call.descriptor;
        let started = time::now_ns();
        let mut withdrawn = CpuSet::default();
        let mut looked_for_unresponsive = false;
        while descriptor.pending.load(Ordering::Acquire) != 0 {
            let waited_ms = (time::now_ns() - started) / 1_000_000;
            if waited_ms >= UNRESPONSIVE_AFTER_MS && !looked_for_unresponsive {
                looked_for_unresponsive = true;
                for cpu in self.remote.iter().filter(|&cpu| withdraw(cpu, descriptor)) {
                    withdrawn.insert(cpu);
                    descriptor.pending.fetch_sub(1, Ordering::AcqRel);
                    if REPORTS.fetch_add(1, Ordering::Relaxed) < 16 {
                        log::warn!("xcall: CPU {cpu} did not start '{}' within {waited_ms} ms; withdrawn", descriptor.name);
                    }
                }
            }
            core::hint::spin_loop();
        }
        if withdrawn.len() == 0 {
            Ok(())
        } else {
            Err(Unresponsive { cpus: withdrawn, waited_ms: (time::now_ns() - started) / 1_000_000 })
        }
    }
}

impl Drop for PendingCall<'_, '_> {
    /// A pending call must be waited for, even on an early return: its
    /// descriptor is on this stack.
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.wait_inner();
            if self.spin {
                preempt::enable();
            }
        }
    }
}

/// Runs `function` on every CPU of `cpus` (this one included, if in the set)
/// and waits for all of them.
pub fn call_on_many(cpus: CpuSet, name: &'static str, function: &(dyn Fn() + Sync)) -> Result<(), Unresponsive> {
    CrossCall::new(name, function).run(|_| cpus, |_| {})
}

pub fn call_on(cpu: usize, name: &'static str, function: &(dyn Fn() + Sync)) -> Result<(), Unresponsive> {
    call_on_many(CpuSet::single(cpu), name, function)
}

/// Runs `function` on one CPU of `cpus`: this one if it is in the set, else
/// the lowest-numbered one in the set. Returns the CPU chosen.
pub fn call_on_any(cpus: CpuSet, name: &'static str, function: &(dyn Fn() + Sync)) -> Result<usize, Unresponsive> {
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
pub fn call_on_many_nowait(cpus: CpuSet, name: &'static str, function: impl Fn() + Send + Sync + 'static) {
    assert!(interrupts::are_enabled(), "cross-CPU call '{name}' with interrupts disabled");
    preempt::disable();
    let me = percpu::cpu_number();
    let mut remote = cpus;
    remote.remove(me);
    if cpus.contains(me) {
        interrupts::without_interrupts(&function);
    }
    if remote.len() > 0 {
        let mut call = Box::new(HeapCall {
            descriptor: CallDescriptor { name, function: core::ptr::null::<fn()>() as *const (dyn Fn() + Sync), pending: AtomicUsize::new(remote.len()), on_heap: true },
            function: Box::new(function),
        });
        call.descriptor.function = &*call.function as &(dyn Fn() + Sync) as *const (dyn Fn() + Sync);
        // repr(C): the descriptor is the first field, so the two pointers agree.
        let descriptor = Box::into_raw(call) as *const CallDescriptor;
        for cpu in remote.iter() {
            enqueue(cpu, descriptor);
        }
    }
    preempt::enable();
}
