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
mod bring_up;
pub mod call;
mod call_tests;
mod cpu_set_tests;
pub mod irq_handlers;
mod park;
mod registry;
pub mod stuck_cpu;
mod tests;
mod timeline;
mod trampoline;
mod tsc_sync;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::AtomicU8;

use spin::Once;
use x86_64::VirtAddr;

use crate::acpi::Platform;
use crate::arch::x86::control::ControlRegisters;
use crate::arch::x86::gdt::{self, CpuTables, IST_STACK_SIZE};
use crate::arch::x86::lapic;
use crate::args::{self, SmpMode};
use crate::mm::stack::KernelStack;
use crate::percpu::MAX_CPUS;
use crate::percpu::{self, Area, CpuSet};
pub use bring_up::{bring_up, bring_up_first};
pub use park::park_all;
pub use registry::{ApState, Cpu, PhaseTimes};
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

impl CpuSet {
    /// The CPUs that are online now.
    pub fn all_online() -> CpuSet {
        let mut set = CpuSet::new();
        for cpu in cpus().iter().filter(|c| c.state() == ApState::Online) {
            set.insert(cpu.number);
        }
        set
    }
}

/// The online CPUs other than `me`: whom the panic path stops and the test
/// harness samples.
pub fn online_except(me: usize) -> impl Iterator<Item = &'static Cpu> {
    cpus().iter().filter(move |c| c.number != me && c.state() == ApState::Online)
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
            "smp: the firmware lists {} startable CPUs, more than this kernel's MAX_CPUS ({MAX_CPUS}, percpu/cpu_set.rs); \
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
        crate::trace::prepare_cpu(number);
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
    let boot_cpu = ControlRegisters::read();
    let smp = SMP.call_once(|| Smp {
        cpus,
        trampoline,
        kernel_cr3: boot_cpu.cr3,
        cr0: boot_cpu.cr0,
        cr4: boot_cpu.cr4,
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
