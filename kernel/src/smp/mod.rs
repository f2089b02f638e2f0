//! Bringing up the application processors (APs), in parallel or one at a time.
//!
//! At reset only the boot CPU runs; the others wait for a start-up IPI (SDM
//! Vol. 3A 9.4 "Multiple-Processor (MP) Initialization"). The boot CPU starts
//! each with INIT, a wait, then two SIPIs naming the trampoline page
//! (9.4.4.1 "Typical BSP Initialization Sequence"):
//!
//! - `smp=serial` kicks one AP and waits until it is online before the next,
//!   as xv6 and Linux before 6.5 do: N APs cost N times (INIT wait + AP start).
//! - `smp=parallel` (the default) kicks every AP first, then waits for all, as
//!   Linux does since 6.5: the waits overlap, and the APs start concurrently.
//!   That only works because no AP needs the boot CPU to hand it anything:
//!   each reads its own APIC id and finds its stack and per-CPU data in a table
//!   prepared before the kick (see trampoline.S).
//!
//! Each AP passes through phases, timestamped with the TSC (as in David
//! Woodhouse's measurements for the Linux series): kicked (by the boot CPU),
//! alive (its first Rust code), called in (descriptor tables, APIC set up),
//! online (after the TSC check). `log=debug` prints the timeline per CPU.

mod ap;
pub mod bench;
pub mod call;
pub mod call_tests;
pub mod cpu_set;
pub mod park;
pub mod stuck_cpu;
pub mod tests;
mod timeline;
mod trampoline;
mod tsc_sync;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::interrupts;

use crate::acpi::Platform;
use crate::arch::x86::cpu::{self, rdtsc};
use crate::arch::x86::gdt::{self, CpuTables, IST_STACK_SIZE, IstStacks};
use crate::arch::x86::idt::WAKE_VECTOR;
use crate::arch::x86::lapic::{self, Ipi};
use crate::args::{self, SmpMode};
use crate::mm::stack::KernelStack;
use crate::percpu::{self, Area};
use crate::time;
pub use cpu_set::{AtomicCpuSet, CpuSet, MAX_CPUS};
pub use park::park_all;
pub use timeline::Phases;
use trampoline::{ApStartEntry, Trampoline};

/// Kernel stack of an AP's boot thread (its idle loop, later the scheduler's).
const AP_STACK_SIZE: u64 = 64 * 1024;
/// How long a kicked AP has to come online before it is given up on.
const AP_TIMEOUT_MS: u64 = 1000;
/// SDM 9.4.4.1: wait 200 us after each SIPI.
const POST_SIPI_DELAY_US: u64 = 200;
/// With `init_udelay=0`, Linux also shortens the post-SIPI waits to 10 us.
const SHORT_POST_SIPI_DELAY_US: u64 = 10;

/// Where an AP is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ApState {
    /// Never started, or back in wait-for-SIPI.
    Offline,
    /// INIT and SIPIs sent.
    Kicked,
    /// Running Rust code on its own stack.
    Alive,
    /// Descriptor tables, per-CPU data and local APIC set up; waiting for the TSC check.
    CalledIn,
    /// Told by the boot CPU to run the TSC check and go online.
    Released,
    Online,
    /// Stopped in `cli; hlt` on request, ready for INIT.
    Parked,
    /// Did not come online in time.
    Failed,
}

/// TSC values (boot CPU's time base) at each bring-up phase of one CPU.
#[derive(Default)]
pub struct PhaseTimes {
    pub kicked: AtomicU64,
    pub alive: AtomicU64,
    pub called_in: AtomicU64,
    pub online: AtomicU64,
}

/// What the kernel knows of one CPU.
pub struct Cpu {
    pub number: usize,
    pub apic_id: u32,
    /// Its per-CPU area, and its TSS and GDT.
    area: Area,
    tables: &'static CpuTables,
    state: AtomicU8,
    /// A park request for this CPU (see `park`).
    park_request: AtomicU8,
    pub times: PhaseTimes,
    ist_stacks: [VirtAddr; 3],
}

impl Cpu {
    pub fn state(&self) -> ApState {
        // SAFETY: only set_state() writes `state`, always from an ApState.
        unsafe { core::mem::transmute::<u8, ApState>(self.state.load(Ordering::Acquire)) }
    }

    fn set_state(&self, state: ApState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if no one moved the CPU elsewhere first. The
    /// AP and the boot CPU race at every step of bring-up (the AP moving on,
    /// the boot CPU giving up on it): whoever moves first wins, and the loser
    /// sees it. An AP that loses stops and waits for the INIT that follows.
    fn advance(&self, from: ApState, to: ApState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Sets the state and wakes the CPU in case it sleeps waiting for it.
    fn set_state_and_wake(&self, state: ApState) {
        self.set_state(state);
        lapic::get().send_ipi(self.apic_id, Ipi::Fixed(WAKE_VECTOR));
    }

    fn ist_stacks(&self) -> IstStacks {
        IstStacks {
            double_fault: self.ist_stacks[0],
            nmi: self.ist_stacks[1],
            machine_check: self.ist_stacks[2],
        }
    }
}

struct Smp {
    /// Index = logical CPU number; 0 is the boot CPU.
    cpus: Vec<Cpu>,
    /// None when there is no AP to start (or no low memory for the trampoline).
    trampoline: Option<Trampoline>,
    /// The boot CPU's control registers, which every AP copies.
    kernel_cr3: u64,
    cr0: u64,
    cr4: u64,
}

static SMP: Once<Smp> = Once::new();

/// Every CPU this kernel manages, online or not; index = CPU number.
pub fn cpus() -> &'static [Cpu] {
    SMP.get().map(|smp| smp.cpus.as_slice()).unwrap_or(&[])
}

/// The result of one bring-up of all APs.
#[derive(Clone, Copy, Debug)]
pub struct BringUp {
    pub mode: SmpMode,
    /// CPUs online afterwards, the boot CPU included.
    pub online: usize,
    /// CPUs that were meant to be online: the boot CPU and the APs chosen.
    pub wanted: usize,
    pub elapsed_ns: u64,
    /// TSC at the start, the base of the timeline.
    pub start_tsc: u64,
    /// Worst TSC warp seen by the synchronisation check, in cycles (None: skipped).
    pub tsc_warp: Option<u64>,
    /// Where the time went.
    pub phases: Phases,
}

/// Prepares every AP's stack and per-CPU data, installs the trampoline, and
/// brings the APs up in the mode `smp=` asks for.
pub fn init(platform: &Platform) {
    let args = args::get();
    // In xAPIC mode an IPI names its target with 8 bits: a CPU whose APIC id
    // does not fit cannot be started or reached (its id cut to 8 bits would
    // name another CPU). It needs x2APIC mode (`apic=auto` on a CPU with it).
    let (enabled, unreachable): (Vec<_>, Vec<_>) =
        platform.startable_cpus().partition(|entry| lapic::get().can_address(entry.apic_id));
    for entry in &unreachable {
        log::warn!(
            "smp: the CPU with APIC id {} cannot be reached in {} mode (8-bit IPI destinations); leaving it out",
            entry.apic_id,
            lapic::get().mode().name()
        );
    }
    // CPU sets have room for MAX_CPUS (see cpu_set.rs for the choice).
    if enabled.len() > MAX_CPUS {
        log::warn!(
            "smp: the firmware lists {} startable CPUs, more than this kernel's MAX_CPUS ({MAX_CPUS}, smp/cpu_set.rs); \
             managing the first {MAX_CPUS} and leaving {} out",
            enabled.len(),
            enabled.len() - MAX_CPUS
        );
    }
    let wanted = args.max_cpus.unwrap_or(usize::MAX).min(enabled.len()).min(MAX_CPUS);
    if wanted < enabled.len().min(MAX_CPUS) {
        log::info!(
            "smp: maxcpus={}: not starting {} of the {} enabled CPUs",
            wanted,
            enabled.len() - wanted,
            enabled.len()
        );
    }
    let memory_before = memory_in_use();
    let mut cpus = Vec::with_capacity(wanted);
    // Numbered in MADT order (the boot CPU first), without the CPUs left out.
    for (number, entry) in enabled[..wanted].iter().enumerate() {
        let (area, tables) = if number == 0 {
            (Area::of(0), gdt::boot_cpu_tables()) // made before the heap existed
        } else {
            (Area::new(number), &*Box::leak(Box::new(CpuTables::new())))
        };
        percpu::set_apic_id(number, entry.apic_id);
        let ist_stacks = if number == 0 {
            [VirtAddr::zero(); 3] // the boot CPU's are static (gdt::boot_cpu_ist_stacks)
        } else {
            [(); 3].map(|_| KernelStack::new(IST_STACK_SIZE as u64).top)
        };
        cpus.push(Cpu {
            number,
            apic_id: entry.apic_id,
            area,
            tables,
            state: AtomicU8::new(if number == 0 { ApState::Online } else { ApState::Offline } as u8),
            park_request: AtomicU8::new(park::NO_REQUEST),
            times: PhaseTimes::default(),
            ist_stacks,
        });
    }
    let trampoline = if cpus.len() > 1 { install_trampoline(&cpus) } else { None };
    let (kernel_cr3, _) = x86_64::registers::control::Cr3::read();
    let smp = SMP.call_once(|| Smp {
        cpus,
        trampoline,
        kernel_cr3: kernel_cr3.start_address().as_u64(),
        cr0: x86_64::registers::control::Cr0::read_raw(),
        cr4: x86_64::registers::control::Cr4::read_raw(),
    });
    if smp.trampoline.is_none() {
        let reason = if smp.cpus.len() > 1 { "no trampoline" } else { "no other CPU to start" };
        log::info!("smp: 1 of {} CPUs online ({reason})", smp.cpus.len());
        return;
    }
    let result = bring_up(args.smp);
    timeline::report(&result);
    let (heap, frames) = memory_in_use();
    log::debug!(
        "smp: {} CPUs took {} KiB of heap and {} KiB of frames (per-CPU data, stacks, idle threads)",
        result.wanted,
        heap.saturating_sub(memory_before.0) / 1024,
        frames.saturating_sub(memory_before.1) * 4
    );
}

/// (heap bytes in use, frames in use): what bring-up costs, for the log.
fn memory_in_use() -> (usize, usize) {
    let (free, total) = crate::mm::frame::counts();
    (crate::mm::heap::used(), total - free)
}

/// Builds the table each AP searches for its APIC id and installs the
/// trampoline. Stacks must exist before the trampoline copies the kernel's
/// top-level page table (see trampoline.rs).
fn install_trampoline(cpus: &[Cpu]) -> Option<Trampoline> {
    let table: Vec<ApStartEntry> = cpus[1..]
        .iter()
        .map(|cpu| {
            ApStartEntry::new(cpu.apic_id, KernelStack::new(AP_STACK_SIZE).top, cpu.area.address())
        })
        .collect();
    let table: &'static [ApStartEntry] = Box::leak(table.into_boxed_slice());
    let trampoline = Trampoline::install(table, ap::ap_entry);
    match &trampoline {
        Some(t) => log::debug!(
            "smp: trampoline at {:#x} (SIPI vector {:#x})",
            t.physical_address(),
            t.sipi_vector()
        ),
        None => log::warn!(
            "smp: no free page below 1 MiB for the AP trampoline; continuing with the boot CPU only"
        ),
    }
    trampoline
}

fn delay_after_sipi() {
    time::udelay(if args::get().init_udelay == 0 {
        SHORT_POST_SIPI_DELAY_US
    } else {
        POST_SIPI_DELAY_US
    });
}

/// INIT, wait, SIPI, wait, SIPI, wait: for every CPU of `targets` at once.
fn kick(trampoline: &Trampoline, targets: &[&Cpu]) {
    let apic = lapic::get();
    for cpu in targets {
        cpu.set_state(ApState::Kicked);
        apic.send_ipi(cpu.apic_id, Ipi::Init);
    }
    time::udelay(args::get().init_udelay);
    for cpu in targets {
        cpu.times.kicked.store(rdtsc(), Ordering::Relaxed);
        apic.send_ipi(cpu.apic_id, Ipi::Startup(trampoline.sipi_vector()));
    }
    delay_after_sipi();
    // A second SIPI in case the first was lost; an AP already running ignores it.
    for cpu in targets {
        apic.send_ipi(cpu.apic_id, Ipi::Startup(trampoline.sipi_vector()));
    }
    delay_after_sipi();
}

/// Sleeps until `done` holds for every target, or until the deadline (a TSC
/// value). APs send the boot CPU a wake IPI at each step, and a one-shot timer
/// covers the deadline, so the boot CPU waits in `hlt` instead of spinning. On
/// real hardware that only saves power; under an emulator with fewer host cores
/// than CPUs it gives the APs' threads the host CPU time they need to start.
fn wait_until(targets: &[&Cpu], done: impl Fn(&Cpu) -> bool, deadline: u64) {
    crate::sched::with_timer_lent(|| sleep_until(targets, &done, deadline));
}

fn sleep_until(targets: &[&Cpu], done: &dyn Fn(&Cpu) -> bool, deadline: u64) {
    let waiting = || !targets.iter().all(|cpu| done(cpu)) && rdtsc() < deadline;
    interrupts::disable();
    while waiting() {
        // Re-armed on every pass: a timer that fires a little early (its rate
        // is only as good as its calibration) must not leave us asleep.
        time::timer::start_one_shot(time::tsc_to_ns(deadline.saturating_sub(rdtsc())).max(1000));
        // sti; hlt: a wake IPI arriving after the check still ends the hlt.
        cpu::enable_interrupts_and_halt();
        interrupts::disable();
    }
    interrupts::enable();
}

/// Gives up on targets still in `Kicked`, `Alive` or `Released` since
/// `waiting_since` (TSC): reports them and puts them back into wait-for-SIPI
/// with an INIT.
fn give_up_on_stragglers(targets: &[&Cpu], waiting_since: u64) {
    for cpu in targets {
        // The AP may move on while we look: retry from the state it is in now.
        let given_up_in = loop {
            let state = cpu.state();
            if !matches!(state, ApState::Kicked | ApState::Alive | ApState::Released) {
                break None;
            }
            if cpu.advance(state, ApState::Failed) {
                break Some(state);
            }
        };
        let Some(state) = given_up_in else { continue };
        let what = match state {
            ApState::Kicked => "did not report alive",
            ApState::Alive => "reported alive but did not call in",
            _ => "did not finish the TSC check",
        };
        log::warn!(
            "smp: CPU {} (APIC id {}) {} within {} ms (gave up after {} ms); continuing without it",
            cpu.number,
            cpu.apic_id,
            what,
            AP_TIMEOUT_MS,
            time::tsc_to_ns(rdtsc() - waiting_since) / 1_000_000
        );
        if state == ApState::Released {
            // It may be inside the TSC check's critical section: INIT it while
            // holding that lock, so it cannot be reset holding it. It may also
            // have opened its call queue already: close it again.
            tsc_sync::while_no_cpu_checks(|| lapic::get().send_ipi(cpu.apic_id, Ipi::Init));
            call::close_queue_of_failed(cpu.number);
        } else {
            lapic::get().send_ipi(cpu.apic_id, Ipi::Init);
        }
    }
}

/// Kicks `targets`, waits for them to call in, runs the TSC check with all
/// that did, and waits for them to go online. Returns the TSC check's worst
/// warp and where the time went.
fn start(trampoline: &Trampoline, targets: &[&Cpu]) -> (Option<u64>, Phases) {
    let timeout = |since: u64| since + time::ns_to_tsc(AP_TIMEOUT_MS * 1_000_000);
    let kicked_at = rdtsc();
    kick(trampoline, targets);
    wait_until(
        targets,
        |cpu| !matches!(cpu.state(), ApState::Kicked | ApState::Alive),
        timeout(kicked_at),
    );
    give_up_on_stragglers(targets, kicked_at);
    let called_in: Vec<&Cpu> =
        targets.iter().copied().filter(|c| c.state() == ApState::CalledIn).collect();
    let warp = tsc_sync::run_with(&called_in, |cpu| cpu.set_state_and_wake(ApState::Released));
    // The timeout counts from the end of the check, not from the release: with
    // far more CPUs than host cores, every CPU spinning in the check must be
    // run by the host once more after its end to leave it, which can take
    // longer than the timeout (docs/smp.md) without any CPU being stuck.
    let checked_at = rdtsc();
    // Done: online with its scheduler running (or failed).
    let running = |cpu: &Cpu| match cpu.state() {
        ApState::Released => false,
        ApState::Online => crate::sched::is_started_on(cpu.number),
        _ => true,
    };
    wait_until(&called_in, running, timeout(checked_at));
    give_up_on_stragglers(&called_in, checked_at);
    for cpu in called_in
        .iter()
        .filter(|c| c.state() == ApState::Online && !crate::sched::is_started_on(c.number))
    {
        // Online (it won the race with the give-up), but its scheduler is not
        // running yet: threads pinned to it until it is will move elsewhere.
        log::warn!(
            "smp: CPU {} is online but its scheduler did not start within {} ms",
            cpu.number,
            AP_TIMEOUT_MS
        );
    }
    (warp, Phases::of(targets, kicked_at, rdtsc()))
}

/// Runs `f` on the boot CPU: bring-up and parking are driven from there (the
/// APs report progress to it, and it must not park itself).
fn on_boot_cpu<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    if !crate::sched::is_started() || percpu::cpu_number() == 0 {
        return f();
    }
    let result = alloc::sync::Arc::new(crate::sync::SpinLock::new(None));
    let slot = result.clone();
    crate::sched::Builder::new("on-boot-cpu").pin(0).spawn(move || *slot.lock() = Some(f())).join();
    result.lock().take().expect("the pinned thread ran")
}

/// Brings every AP that is not online up, in `mode`.
pub fn bring_up(mode: SmpMode) -> BringUp {
    bring_up_first(mode, usize::MAX)
}

/// Brings up those of the APs numbered 1 to `count` that are not online:
/// `bench=smp` times bring-ups of different sizes.
pub fn bring_up_first(mode: SmpMode, count: usize) -> BringUp {
    on_boot_cpu(move || bring_up_here(mode, count))
}

fn bring_up_here(mode: SmpMode, count: usize) -> BringUp {
    let smp = SMP.get().expect("smp::bring_up() before smp::init()");
    let chosen = &smp.cpus[1..smp.cpus.len().min(count.saturating_add(1))];
    let targets: Vec<&Cpu> = chosen.iter().filter(|c| c.state() != ApState::Online).collect();
    let start_tsc = rdtsc();
    let worse = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let (mut worst_warp, mut phases) = (None, Phases::default());
    if let Some(trampoline) = &smp.trampoline {
        // Parallel: one group of every target. Serial: one group per target.
        let groups: Vec<&[&Cpu]> = match mode {
            SmpMode::Parallel => alloc::vec![&targets[..]],
            SmpMode::Serial => targets.iter().map(core::slice::from_ref).collect(),
        };
        for group in groups {
            let (warp, spent) = start(trampoline, group);
            worst_warp = worse(worst_warp, warp);
            phases.add(&spent);
        }
    }
    let elapsed_ns = time::tsc_to_ns(rdtsc() - start_tsc);
    let online = smp.cpus.iter().filter(|c| c.state() == ApState::Online).count();
    BringUp {
        mode,
        online,
        wanted: 1 + chosen.len(),
        elapsed_ns,
        start_tsc,
        tsc_warp: worst_warp,
        phases,
    }
}

/// Wakes the boot CPU, which sleeps until this AP moves on to its next state.
fn wake_boot_cpu() {
    lapic::get().send_ipi(cpus()[0].apic_id, Ipi::Fixed(WAKE_VECTOR));
}
