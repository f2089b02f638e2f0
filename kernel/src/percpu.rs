//! Per-CPU data, reached through the GS segment base.
//!
//! Every CPU owns one [`PerCpu`]. Its GS base (the `IA32_GS_BASE` MSR, SDM Vol. 3A
//! 3.4.4 "Segment Loading Instructions in IA-32e Mode") points at it, and the
//! first field holds the structure's own address, so `mov reg, gs:[0]` yields a
//! plain pointer. Fields a CPU changes for itself while preemptible (the preempt
//! count) are changed with one gs-relative instruction, which an interrupt cannot
//! split and a migration cannot separate from the CPU that executes it. This is
//! how Linux's `this_cpu_add()` works on x86.

use core::mem::offset_of;
use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::arch::x86::exception::ExceptionRecord;
use crate::arch::x86::gdt::{GdtSlot, TssSlot};
use crate::arch::x86::gs;
use crate::panic::StopRecord;

/// What one CPU keeps for itself.
#[repr(C)]
pub struct PerCpu {
    /// This structure's own address; must stay the first field (read as `gs:[0]`).
    self_ptr: AtomicPtr<PerCpu>,
    /// Logical CPU number: 0 is the boot CPU, the others follow MADT order.
    pub cpu: usize,
    /// Local APIC id, as the CPU reports it (CPUID / the x2APIC id register).
    pub apic_id: AtomicU32,
    /// Nesting depth of `preempt_disable()`; see `sched::preempt`.
    pub preempt_count: AtomicU32,
    /// Preempt-off tracer: when (TSC) and from where the current span began,
    /// and the longest span so far (TSC cycles) with where it began.
    pub preempt_off_since: AtomicU64,
    pub preempt_off_caller: AtomicU64,
    pub preempt_off_max: AtomicU64,
    pub preempt_off_max_caller: AtomicU64,
    /// This CPU's scheduler state (run queue, current thread); see `sched`.
    pub sched: crate::sched::CpuScheduler,
    /// Cross-CPU calls waiting to run here; see `smp::call`.
    pub calls: crate::smp::call::CallQueue,
    pub tlb: crate::mm::lazy_tlb::CpuTlbState,
    /// Where this CPU was when a waiter last asked (by NMI); see `smp::stuck_cpu`.
    pub rip_sample: crate::smp::stuck_cpu::RipSample,
    /// Local APIC timer interrupts taken on this CPU.
    pub timer_ticks: AtomicU64,
    /// The local timer is set up for one-shot mode (see time::timer).
    pub timer_one_shot_ready: core::sync::atomic::AtomicBool,
    /// How many interrupt handlers are running on this CPU (nested).
    pub interrupt_depth: AtomicU32,
    /// The exception being turned into a panic, for the report's registers.
    pub exception: ExceptionRecord,
    /// Where the panic path stopped this CPU.
    pub stopped: StopRecord,
    /// Test IPIs this CPU answered, and the APIC id its handler read from the
    /// hardware (see `smp` tests).
    pub test_ipis_answered: AtomicU64,
    pub apic_id_seen_in_handler: AtomicU32,
    /// Task state segment: the IST stacks used for double faults and NMIs.
    pub tss: TssSlot,
    /// This CPU's GDT (it holds a descriptor of this CPU's own TSS).
    pub gdt: GdtSlot,
}

impl PerCpu {
    pub const fn new(cpu: usize) -> PerCpu {
        PerCpu {
            self_ptr: AtomicPtr::new(core::ptr::null_mut()),
            cpu,
            apic_id: AtomicU32::new(0),
            preempt_count: AtomicU32::new(0),
            preempt_off_since: AtomicU64::new(0),
            preempt_off_caller: AtomicU64::new(0),
            preempt_off_max: AtomicU64::new(0),
            preempt_off_max_caller: AtomicU64::new(0),
            sched: crate::sched::CpuScheduler::new(),
            calls: crate::smp::call::CallQueue::new(),
            tlb: crate::mm::lazy_tlb::CpuTlbState::new(),
            rip_sample: crate::smp::stuck_cpu::RipSample::new(),
            timer_ticks: AtomicU64::new(0),
            timer_one_shot_ready: core::sync::atomic::AtomicBool::new(false),
            interrupt_depth: AtomicU32::new(0),
            exception: ExceptionRecord::new(),
            stopped: StopRecord::new(),
            test_ipis_answered: AtomicU64::new(0),
            apic_id_seen_in_handler: AtomicU32::new(u32::MAX),
            tss: TssSlot::new(),
            gdt: GdtSlot::new(),
        }
    }
}

/// The boot CPU's data lives in the kernel image: it is needed before the heap exists.
static BOOT_CPU: PerCpu = PerCpu::new(0);

/// How many CPUs have come online (the boot CPU counts from the start).
static ONLINE_CPUS: AtomicUsize = AtomicUsize::new(1);

/// Points this CPU's GS base at `percpu`. Must run before anything calls [`this`].
pub fn install(percpu: &'static PerCpu) {
    let address = percpu as *const PerCpu as *mut PerCpu;
    percpu.self_ptr.store(address, Ordering::Relaxed);
    // `percpu` is 'static, so GS keeps pointing at live memory, and its first
    // field now holds its own address, which is what `this()` reads.
    gs::set_base(address as *const u8);
}

/// For a CPU that starts again after INIT: forgets the soft state it had when
/// it was stopped. INIT resets the CPU, not this memory, and the CPU may have
/// been stopped anywhere (given up on during bring-up, inside a spinlock's
/// preempt-disabled section, say): its preempt count and interrupt depth
/// start from zero again.
pub fn reset_soft_state(percpu: &PerCpu) {
    percpu.preempt_count.store(0, Ordering::Relaxed);
    percpu.interrupt_depth.store(0, Ordering::Relaxed);
    percpu.rip_sample.forget_requests();
}

/// Installs the boot CPU's static per-CPU data.
pub fn install_boot_cpu() -> &'static PerCpu {
    install(&BOOT_CPU);
    &BOOT_CPU
}

/// This CPU's data.
///
/// Once threads can migrate, the answer is only stable while preemption is
/// disabled: a thread moved to another CPU keeps the reference it took here.
#[inline]
pub fn this() -> &'static PerCpu {
    // SAFETY: `install()` ran on this CPU first (the boot path and the AP entry both
    // do it before anything else), so gs:[0] holds a pointer to a 'static PerCpu.
    let ptr = unsafe { gs::read_u64(0) } as *const PerCpu;
    // SAFETY: see above; PerCpu is only ever shared (&), its mutable parts are atomics.
    unsafe { &*ptr }
}

/// This CPU's data, or None on a CPU that has not installed it yet (an AP
/// in its first instructions: INIT leaves the GS base at 0, SDM Vol. 3A 9.1.1
/// Table 9-1). Reads the GS base MSR, which is slow: for the panic and
/// exception paths, which may run that early.
pub fn try_this() -> Option<&'static PerCpu> {
    if gs::base() == 0 { None } else { Some(this()) }
}

/// This CPU's logical number.
pub fn cpu_number() -> usize {
    this().cpu
}

/// Adds `delta` to this CPU's preempt count in one instruction (`add gs:[offset], delta`).
#[inline]
pub fn add_to_preempt_count(delta: i32) {
    // SAFETY: the offset names the `preempt_count` field of the PerCpu that GS points
    // at; a single add is atomic with respect to interrupts on this CPU.
    unsafe { gs::add_u32(offset_of!(PerCpu, preempt_count), delta) };
}

pub fn online_count() -> usize {
    ONLINE_CPUS.load(Ordering::Acquire)
}

/// Records that one more CPU is online.
pub fn mark_online() {
    ONLINE_CPUS.fetch_add(1, Ordering::AcqRel);
}

/// Records that a CPU went offline (parked).
pub fn mark_offline() {
    ONLINE_CPUS.fetch_sub(1, Ordering::AcqRel);
}
