//! The panic path: stop the other CPUs, print one whole report, then rest
//! quietly in `sti; hlt` (or reboot, or exit QEMU).
//!
//! Linux's `panic()` stops the other CPUs, prints, and then, unless asked to
//! reboot, busy-waits forever in `mdelay()` blinking the keyboard LEDs: in a
//! virtual machine that keeps one host core busy for as long as the guest is
//! left alone. This kernel halts instead (`panic=halt`, the default);
//! `panic=spin` keeps the busy loop for comparison.
//!
//! The rules, in order:
//! 1. The first CPU to claim `PANIC_OWNER` owns the panic. Any other CPU that
//!    panics meanwhile records where it was and stops without printing. A panic
//!    inside the panic path itself prints one line and stops: no recursion.
//! 2. The owner stops every other online CPU with an NMI, which arrives even
//!    when the target has interrupts disabled (SDM Vol. 3A 11.6.1, delivery
//!    mode NMI). Each stopped CPU records its RIP and halts with interrupts off.
//! 3. The report goes out through the console's emergency writer, which does
//!    not wait for the console lock: a stopped CPU may have held it.
//! 4. What happens next follows `panic=`: halt (timers stopped first), spin,
//!    exit QEMU, or reboot after N seconds.
//! 5. From the moment a CPU owns the panic, nothing but the panic path runs
//!    on it: its preempt count is raised for good (no thread switch), and
//!    every APIC interrupt is acknowledged and dropped (see `idt`), so a
//!    reschedule or cross-CPU call IPI that was pending cannot run a thread
//!    or someone's function after the report.
//! 6. A CPU may panic before it has per-CPU data (an AP in its first
//!    instructions): it is then named by its APIC id, and everything the
//!    report would read from per-CPU data is left out.

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::arch::x86::cpu::{self, rdtsc};
use crate::arch::x86::exception::{self, ExceptionRecord};
use crate::arch::x86::lapic::{self, Ipi};
use crate::console::emergency_write;
use crate::irq::{self, nmi::NmiStage};
use crate::percpu::{self, cpu_local};
use crate::{smp, time, trace};

mod crash_tests;
mod exception_crash_tests;
mod halt;
mod report;

use halt::finish;
use report::{report, report_stopped_cpus};

const NO_OWNER: usize = usize::MAX;
/// The CPU that owns the panic, or NO_OWNER.
static PANIC_OWNER: AtomicUsize = AtomicUsize::new(NO_OWNER);
/// Set once the owner panicked inside the panic path.
static NESTED_PANIC: AtomicU8 = AtomicU8::new(0);
/// How long the owner waits for the other CPUs to stop.
const STOP_TIMEOUT_MS: u64 = 200;

pub fn in_progress() -> bool {
    PANIC_OWNER.load(Ordering::Acquire) != NO_OWNER
}

/// Why and where the panic path stopped a CPU.
struct StopRecord {
    /// 0: running; 1: stopped by the NMI; 2: panicked too and stopped itself.
    how: AtomicU8,
    rip: AtomicU64,
}

cpu_local! {
    /// The exception being turned into a panic, for the report's registers
    /// (arch's record: the exception handlers find it through `init`'s lookup).
    static EXCEPTION: ExceptionRecord = ExceptionRecord::new();
    /// Where the panic path stopped this CPU.
    static STOPPED: StopRecord = StopRecord::new();
}

const STOPPED_BY_NMI: u8 = 1;
const STOPPED_AFTER_OWN_PANIC: u8 = 2;

impl StopRecord {
    const fn new() -> StopRecord {
        StopRecord { how: AtomicU8::new(0), rip: AtomicU64::new(0) }
    }
}

/// Stops this CPU for good on the owner's behalf: record, silence, halt. The
/// first record wins: a CPU that stopped after its own panic and then takes
/// the owner's NMI keeps saying why it stopped.
fn stop_this_cpu(how: u8, rip: u64) -> ! {
    crate::arch::x86::interrupts::disable();
    // Without per-CPU data this CPU is not online: nobody waits for its record.
    if percpu::is_installed() {
        let record = STOPPED.get();
        if record.how.load(Ordering::Acquire) == 0 {
            // Once: a CPU stopped after its own panic keeps that as its stop.
            trace::record(trace::format::PANIC_STOP, how as u16, rip, 0, 0);
            record.rip.store(rip, Ordering::Relaxed);
            record.how.store(how, Ordering::Release);
        }
        if lapic::is_initialised() {
            crate::time::timer::stop();
        }
    }
    cpu::halt_forever()
}

/// Who panics: a CPU number, or for a CPU without per-CPU data yet, a number
/// above every CPU number made from its APIC id (so owners never collide).
pub(super) const EARLY_CPU_BASE: usize = 1 << 32;

fn panicking_cpu() -> usize {
    if percpu::is_installed() {
        percpu::cpu_number()
    } else {
        EARLY_CPU_BASE + cpu::initial_apic_id() as usize
    }
}

/// Connects the panic path to the interrupt layer: once a panic owns the
/// machine every APIC interrupt is dropped, and the first question an NMI
/// answers is whether it is the owner's stop signal. Also tells the exception
/// handlers where this CPU's exception record is.
pub fn init() {
    irq::set_drop_check(in_progress);
    irq::nmi::register(NmiStage::Stop, nmi_stops_this_cpu);
    exception::set_record_lookup(|| percpu::is_installed().then(|| EXCEPTION.get()));
}

/// The NMI chain's first stage: is this the panic path's stop signal? If so,
/// it never returns.
fn nmi_stops_this_cpu(interrupted_rip: u64) -> bool {
    let owner = PANIC_OWNER.load(Ordering::Acquire);
    if owner == NO_OWNER {
        return false;
    }
    if owner != panicking_cpu() {
        stop_this_cpu(STOPPED_BY_NMI, interrupted_rip);
    }
    // The owner takes every NMI and ignores it: one from outside (a host's
    // inject-nmi, a CPU sampling where others are) must neither cut the
    // report short nor, unclaimed, become a second panic.
    true
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::arch::x86::interrupts::disable();
    let frame = cpu::frame_pointer();
    let me = panicking_cpu();
    // The timer is the panic path's now (it may wait on it): the scheduler's
    // tick must not wake or switch threads any more, on any CPU. Said before
    // the claim below, so a tick that starts after another CPU has seen the
    // panic owned sees this too (one already past its check finishes, and the
    // stop NMI ends it); a CPU that loses the claim stops anyway.
    crate::sched::stop_for_panic();
    if let Err(owner) =
        PANIC_OWNER.compare_exchange(NO_OWNER, me, Ordering::AcqRel, Ordering::Acquire)
    {
        if owner != me {
            // Someone else is reporting: do not print over them.
            stop_this_cpu(STOPPED_AFTER_OWN_PANIC, cpu::return_address());
        }
        // A panic while reporting one: say so once, then stop.
        if NESTED_PANIC.swap(1, Ordering::AcqRel) == 0 {
            emergency_write(format_args!(
                "\npanic: panicked again while reporting: {}\n",
                info.message()
            ));
            // `finish` tells the host even when the report broke (once:
            // the first panic may have told it already).
            finish();
        }
        cpu::halt_forever();
    }
    // The panic owns this CPU for good: no thread switch from here on (a
    // pending reschedule must not run another thread after the report).
    let preempt_count = percpu::is_installed().then(crate::sync::preempt::count);
    let traced = percpu::is_installed(); // without per-CPU data there is no trace buffer
    if traced {
        // What stop_other_cpus will send: nothing without a local APIC.
        let others = if lapic::is_initialised() { smp::online_except(me).count() } else { 0 };
        let others = others as u64;
        trace::record(trace::format::PANIC_BEGIN, 0, others, 0, 0);
    }
    if preempt_count.is_some() {
        crate::sync::preempt::disable();
    }
    if lapic::is_initialised() {
        if !lapic::in_common_mode_here() {
            // An AP in its first instructions: its APIC is still in the
            // reset (xAPIC) mode, and the NMIs below must use the others'.
            lapic::enter_mode_on_this_cpu();
        }
        lapic::get().end_all_in_service();
    }
    let stopped = stop_other_cpus(me);
    report(info, me, frame, preempt_count.unwrap_or(0));
    report_stopped_cpus(me, stopped);
    if traced {
        trace::record(trace::format::PANIC_REPORT_DONE, 0, 0, 0, 0);
        trace::record(trace::format::PANIC_HALT, halt::action_code(), 0, 0, 0);
    }
    // The report first, whole: a dump cut short still leaves it readable.
    // (A CPU without per-CPU data records nothing, but it can still dump the
    // others' rings: the dump reaches them through `percpu`'s table, not GS.)
    trace::dump_after_panic();
    finish()
}

/// Sends an NMI to every other online CPU and waits (bounded) until each has
/// recorded that it stopped. Returns how many did.
fn stop_other_cpus(me: usize) -> usize {
    let others = || smp::online_except(me);
    if !lapic::is_initialised() {
        return 0;
    }
    // Sent directly, not through irq::send_nmi, which records each one: this
    // CPU may have no per-CPU data yet (an AP in its first instructions,
    // where GS still reads 0), and at 255 CPUs the records would fill its
    // trace buffer. PANIC_BEGIN says how many went out.
    for cpu in others() {
        lapic::get().send_ipi(cpu.apic_id, Ipi::Nmi);
    }
    let deadline = rdtsc() + time::ns_to_tsc(STOP_TIMEOUT_MS * 1_000_000);
    let all_stopped = || others().all(|c| STOPPED.on(c.number).how.load(Ordering::Acquire) != 0);
    while !all_stopped() && rdtsc() < deadline {
        core::hint::spin_loop();
    }
    others().filter(|c| STOPPED.on(c.number).how.load(Ordering::Acquire) != 0).count()
}
