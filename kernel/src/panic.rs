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

use core::fmt;
use core::panic::PanicInfo;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

use crate::arch::x86::control::ControlRegisters;
use crate::arch::x86::cpu::{self, rdtsc};
use crate::arch::x86::exception::{self, ExceptionRecord, SavedException};
use crate::arch::x86::lapic::{self, Ipi};
use crate::arch::x86::qemu_exit;
use crate::args::{self, PanicAction};
use crate::console::emergency_write;
use crate::irq::{self, nmi::NmiStage};
use crate::percpu::{self, cpu_local};
use crate::symbols::{self, Demangled};
use crate::{smp, time};

mod crash_tests;
mod exception_crash_tests;

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
const EARLY_CPU_BASE: usize = 1 << 32;

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
    // The owner itself keeps going: an NMI from outside must not cut the report short.
    let owner = PANIC_OWNER.load(Ordering::Acquire);
    if owner != NO_OWNER && owner != percpu::cpu_number() {
        stop_this_cpu(STOPPED_BY_NMI, interrupted_rip);
    }
    false
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    crate::arch::x86::interrupts::disable();
    let frame = cpu::frame_pointer();
    let me = panicking_cpu();
    // The timer is the panic path's now (it may wait on it): the scheduler's
    // tick must not wake or switch threads any more, on any CPU. Said before
    // the claim below, so no CPU sees a panic owned while its tick still runs
    // (a CPU that loses the claim stops anyway).
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
            finish();
        }
        cpu::halt_forever();
    }
    // The panic owns this CPU for good: no thread switch from here on (a
    // pending reschedule must not run another thread after the report).
    let preempt_count = percpu::is_installed().then(crate::sync::preempt::count);
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
    finish()
}

/// Sends an NMI to every other online CPU and waits (bounded) until each has
/// recorded that it stopped. Returns how many did.
fn stop_other_cpus(me: usize) -> usize {
    let others = || smp::online_except(me);
    if !lapic::is_initialised() {
        return 0;
    }
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

/// `preempt_count` is the count when the panic began (the panic raised it since).
fn report(info: &PanicInfo, me: usize, frame: u64, preempt_count: u32) {
    if !percpu::is_installed() {
        let apic_id = me - EARLY_CPU_BASE;
        emergency_write(format_args!(
            "\n---- kernel panic on the CPU with APIC id {apic_id} (no per-CPU data yet) ----\n"
        ));
        emergency_write(format_args!("panic: {}\n", info.message()));
        if let Some(location) = info.location() {
            emergency_write(format_args!(
                "panic: at {}:{}:{}\n",
                location.file(),
                location.line(),
                location.column()
            ));
        }
        emergency_write(format_args!(
            "panic: context: an AP starting up, before its per-CPU data was installed\n"
        ));
        emergency_write(format_args!("panic: backtrace (newest first):\n{}", Backtrace(frame)));
        return;
    }
    emergency_write(format_args!("\n---- kernel panic on cpu{me} ----\n"));
    emergency_write(format_args!("panic: {}\n", info.message()));
    if let Some(location) = info.location() {
        emergency_write(format_args!(
            "panic: at {}:{}:{}\n",
            location.file(),
            location.line(),
            location.column()
        ));
    }
    let exception = exception::this_cpu_record().and_then(|record| record.saved());
    let context = match (&exception, irq::depth()) {
        (Some(saved), _) => Context::Exception(saved.vector),
        (None, 0) => Context::Kernel,
        (None, depth) => Context::Interrupt(depth),
    };
    emergency_write(format_args!(
        "panic: context: cpu{me}, {context}, preempt count {preempt_count}, {}\n",
        crate::sched::CurrentThread
    ));
    if let Some(SavedException { rip, rsp, rflags, cs, ss, error_code, .. }) = exception {
        emergency_write(format_args!(
            "panic: registers at the exception: RIP {:#018x} {}\n\
             panic:   RSP {:#018x}  RFLAGS {:#010x}  CS {:#06x}  SS {:#06x}  error code {:#x}\n",
            rip,
            Symbol(rip),
            rsp,
            rflags,
            cs,
            ss,
            error_code,
        ));
    }
    let ControlRegisters { cr0, cr2, cr3, cr4 } = ControlRegisters::read();
    emergency_write(format_args!(
        "panic: control registers: CR0 {cr0:#x}  CR2 {cr2:#x}  CR3 {cr3:#x}  CR4 {cr4:#x}\n"
    ));
    if exception.is_none() {
        emergency_write(format_args!(
            "panic: stack: RSP {:#018x}  RBP {frame:#018x}\n",
            cpu::stack_pointer()
        ));
    }
    emergency_write(format_args!("panic: backtrace (newest first):\n{}", Backtrace(frame)));
}

/// Where the panic happened.
enum Context {
    Exception(u8),
    Interrupt(u32),
    Kernel,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Context::Exception(vector) => write!(f, "exception handler (vector {vector})"),
            Context::Interrupt(depth) => write!(f, "interrupt handler (nesting depth {depth})"),
            Context::Kernel => f.write_str("kernel code outside interrupts"),
        }
    }
}

fn report_stopped_cpus(me: usize, stopped: usize) {
    let others = smp::online_except(me);
    if smp::cpus().len() <= 1 {
        return;
    }
    emergency_write(format_args!("panic: other CPUs ({stopped} stopped):\n"));
    for cpu in others {
        let record = STOPPED.on(cpu.number);
        let rip = record.rip.load(Ordering::Relaxed);
        match record.how.load(Ordering::Acquire) {
            STOPPED_BY_NMI => emergency_write(format_args!(
                "panic:   cpu{} stopped by NMI at RIP {rip:#018x} {}\n",
                cpu.number,
                Symbol(rip)
            )),
            STOPPED_AFTER_OWN_PANIC => emergency_write(format_args!(
                "panic:   cpu{} stopped: it panicked too, called from {rip:#018x} {}\n",
                cpu.number,
                Symbol(rip)
            )),
            _ => emergency_write(format_args!(
                "panic:   cpu{} did not stop within {STOP_TIMEOUT_MS} ms\n",
                cpu.number
            )),
        }
    }
}

/// `name+0xoffset` for a code address, or nothing if it is not in a known function.
struct Symbol(u64);

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match symbols::lookup(self.0) {
            Some((name, offset)) => write!(f, "{}+{:#x}", Demangled(name), offset),
            None => Ok(()),
        }
    }
}

/// The chain of saved frame pointers: with frame pointers each frame starts
/// with [saved rbp, return address]. Every step is checked against the page
/// tables first, so a corrupt chain ends the walk instead of faulting.
struct Backtrace(u64);

impl fmt::Display for Backtrace {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let mut frame = self.0;
        let mut shown = 0;
        let (mut previous, mut repeats) = (0, 0);
        for _ in 0..256 {
            if !frame.is_multiple_of(8)
                || !crate::mm::paging::is_mapped_for_panic(frame)
                || !crate::mm::paging::is_mapped_for_panic(frame + 15)
            {
                break;
            }
            // SAFETY: both words were just found mapped; the memory is only read.
            let (next, return_address) =
                unsafe { (*(frame as *const u64), *((frame + 8) as *const u64)) };
            // Words that are not code addresses (an interrupt frame's error code)
            // are skipped; a recursion is shown once, with a count.
            if let Some((name, offset)) = symbols::lookup(return_address) {
                if return_address == previous {
                    repeats += 1;
                } else {
                    if repeats > 0 {
                        writeln!(f, "panic:       (the frame above repeats {repeats} more times)")?;
                        repeats = 0;
                    }
                    writeln!(
                        f,
                        "panic:   #{shown:<2} {return_address:#018x} {}+{offset:#x}",
                        Demangled(name)
                    )?;
                    shown += 1;
                    previous = return_address;
                }
            }
            if next <= frame {
                break;
            }
            frame = next;
        }
        if repeats > 0 {
            writeln!(
                f,
                "panic:       (the frame above repeats {repeats} more times, then the walk stopped)"
            )?;
        }
        if shown == 0 {
            writeln!(f, "panic:   (no frames found)")?;
        }
        Ok(())
    }
}

/// What happens after the report: `panic=`.
fn finish() -> ! {
    let action = args::get().panic_action();
    let no_interrupts_here = !crate::arch::x86::idt::loaded_here() || !percpu::is_installed();
    if no_interrupts_here && matches!(action, PanicAction::Halt | PanicAction::Spin) {
        // An AP in its first instructions has no IDT yet: with interrupts on,
        // any interrupt would triple-fault. It halts with them off; the other
        // CPUs are stopped, and the report is out.
        emergency_write(format_args!(
            "panic: halting (cli; hlt: this CPU has no interrupt table yet)\n"
        ));
        cpu::halt_forever();
    }
    match action {
        PanicAction::Exit => qemu_exit::exit(qemu_exit::ExitCode::Failure),
        PanicAction::Halt => halt_quietly(),
        PanicAction::Spin => spin_like_linux(),
        PanicAction::RebootAfter(seconds) => reboot_after(seconds),
    }
}

/// Every periodic timer off, then `sti; hlt` forever: the host sees an idle CPU.
fn halt_quietly() -> ! {
    if lapic::is_initialised() && percpu::is_installed() {
        crate::time::timer::stop();
    }
    emergency_write(format_args!("panic: halting (sti; hlt)\n"));
    loop {
        cpu::enable_interrupts_and_halt();
    }
}

/// The old way, kept for comparison: interrupts on, busy-wait forever, as
/// Linux's panic() does in its `mdelay()` loop.
fn spin_like_linux() -> ! {
    emergency_write(format_args!(
        "panic: spinning (panic=spin: a busy loop, as Linux's mdelay() loop)\n"
    ));
    crate::arch::x86::interrupts::enable();
    loop {
        time::udelay(1000);
    }
}

/// Sleeps `seconds` on one-shot timers, then resets the machine.
fn reboot_after(seconds: u64) -> ! {
    emergency_write(format_args!("panic: rebooting in {seconds} s\n"));
    let deadline = time::now_ns().saturating_add(seconds.saturating_mul(1_000_000_000));
    if lapic::is_initialised() && percpu::is_installed() {
        while time::now_ns() < deadline {
            // One-shot counts are 32-bit: sleep in steps of at most a second.
            crate::time::timer::start_one_shot((deadline - time::now_ns()).clamp(1, 1_000_000_000));
            cpu::enable_interrupts_and_halt();
        }
    } else {
        time::udelay(seconds * 1_000_000);
    }
    emergency_write(format_args!("panic: rebooting now\n"));
    crate::arch::x86::reset::reset_machine(|| time::udelay(100_000))
}
