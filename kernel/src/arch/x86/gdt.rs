//! Global descriptor table and task state segment, one pair per CPU.
//!
//! In long mode segmentation is mostly gone, but a CPU still needs a GDT with a
//! 64-bit code segment, and a TSS for its Interrupt Stack Table: the IST gives
//! an exception handler a known-good stack even when the current one is broken
//! (SDM Vol. 3A 7.7 "Task Management in 64-bit Mode" and 6.14.5 "Interrupt Stack
//! Table"). A double fault from a kernel stack overflow would otherwise fault
//! again while pushing its frame and reset the machine (a triple fault).

use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

use core::cell::UnsafeCell;

use x86_64::PrivilegeLevel;

/// IST slots (the TSS numbers them 1..7; the x86_64 crate indexes them from 0).
pub const DOUBLE_FAULT_IST_INDEX: u16 = 0;
pub const NMI_IST_INDEX: u16 = 1;
pub const MACHINE_CHECK_IST_INDEX: u16 = 2;

pub const IST_STACK_SIZE: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub tss: SegmentSelector,
}

/// A CPU's GDT, rebuilt each time the CPU starts. It cannot be built once and
/// kept: `ltr` marks the TSS descriptor busy in the table, and loading a busy
/// TSS faults, so a CPU that is parked and started again needs a fresh table.
struct GdtSlot(UnsafeCell<(GlobalDescriptorTable, Selectors)>);

// SAFETY: each slot is written only by its own CPU, in init_this_cpu(), while
// that CPU is starting and nothing else reads it.
unsafe impl Sync for GdtSlot {}

impl GdtSlot {
    const fn new() -> GdtSlot {
        let null = SegmentSelector::new(0, PrivilegeLevel::Ring0);
        GdtSlot(UnsafeCell::new((
            GlobalDescriptorTable::new(),
            Selectors { kernel_code: null, kernel_data: null, tss: null },
        )))
    }
}

/// A CPU's TSS, written each time the CPU starts, before its GDT names it.
/// (Not a `Once`: an AP that is INITed while building it, because the boot
/// CPU gave up on it, would leave a `Once` half-done for good.)
struct TssSlot(UnsafeCell<TaskStateSegment>);

// SAFETY: as for GdtSlot: written only by its own CPU while it starts.
unsafe impl Sync for TssSlot {}

impl TssSlot {
    const fn new() -> TssSlot {
        TssSlot(UnsafeCell::new(TaskStateSegment::new()))
    }
}

/// One CPU's TSS and GDT. The CPU finds them through its TR and GDTR
/// registers, never through GS, so they are not per-CPU variables: the boot
/// CPU's are a static here, each AP's is allocated by `smp` along with its
/// stacks, before the AP starts.
pub struct CpuTables {
    tss: TssSlot,
    gdt: GdtSlot,
}

impl CpuTables {
    pub const fn new() -> CpuTables {
        CpuTables { tss: TssSlot::new(), gdt: GdtSlot::new() }
    }
}

static BOOT_CPU_TABLES: CpuTables = CpuTables::new();

pub fn boot_cpu_tables() -> &'static CpuTables {
    &BOOT_CPU_TABLES
}

/// The tops of a CPU's IST stacks (stacks grow down).
pub struct IstStacks {
    pub double_fault: VirtAddr,
    pub nmi: VirtAddr,
    pub machine_check: VirtAddr,
}

/// Memory for the boot CPU's IST stacks; APs get theirs from `mm::stack`.
#[repr(align(16))]
#[allow(dead_code)] // never read as data: the CPU uses it as stack memory
struct StackMemory([u8; IST_STACK_SIZE]);
static mut BOOT_DOUBLE_FAULT_STACK: StackMemory = StackMemory([0; IST_STACK_SIZE]);
static mut BOOT_NMI_STACK: StackMemory = StackMemory([0; IST_STACK_SIZE]);
static mut BOOT_MACHINE_CHECK_STACK: StackMemory = StackMemory([0; IST_STACK_SIZE]);

fn stack_top(stack: *const StackMemory) -> VirtAddr {
    VirtAddr::from_ptr(stack) + IST_STACK_SIZE as u64
}

pub fn boot_cpu_ist_stacks() -> IstStacks {
    // Only addresses are taken; the memory is used by the CPU as stacks, never
    // through Rust references.
    IstStacks {
        double_fault: stack_top(&raw const BOOT_DOUBLE_FAULT_STACK),
        nmi: stack_top(&raw const BOOT_NMI_STACK),
        machine_check: stack_top(&raw const BOOT_MACHINE_CHECK_STACK),
    }
}

/// Builds this CPU's TSS and GDT in `tables` and loads them.
pub fn init_this_cpu(tables: &'static CpuTables, stacks: IstStacks) {
    let mut new_tss = TaskStateSegment::new();
    new_tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = stacks.double_fault;
    new_tss.interrupt_stack_table[NMI_IST_INDEX as usize] = stacks.nmi;
    new_tss.interrupt_stack_table[MACHINE_CHECK_IST_INDEX as usize] = stacks.machine_check;
    let tss_slot = tables.tss.0.get();
    // SAFETY: see TssSlot: this CPU is starting and alone touches its slot; a
    // TSS loaded before is not in use any more (INIT, then the trampoline).
    let tss: &'static TaskStateSegment = unsafe {
        tss_slot.write(new_tss);
        &*tss_slot
    };
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let tss_selector = gdt.append(Descriptor::tss_segment(tss));
    let selectors = Selectors { kernel_code, kernel_data, tss: tss_selector };
    let slot = tables.gdt.0.get();
    // SAFETY: see GdtSlot: this CPU is starting, so it alone touches its slot,
    // and the table it may have loaded before is no longer in use (a CPU is
    // restarted from INIT, and the trampoline loads a GDT of its own).
    let (gdt, selectors) = unsafe {
        slot.write((gdt, selectors));
        &*slot
    };
    // SAFETY: the table lives in 'static memory and is not changed while loaded.
    unsafe { gdt.load_unsafe() };
    // SAFETY: the selectors index descriptors of the GDT just loaded.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(selectors.kernel_data);
        ES::set_reg(selectors.kernel_data);
        load_tss(selectors.tss);
    }
}
