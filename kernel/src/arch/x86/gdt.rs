//! Global descriptor table and task state segment, one pair per CPU.
//!
//! In long mode segmentation is mostly gone, but a CPU still needs a GDT with a
//! 64-bit code segment, and a TSS for its Interrupt Stack Table: the IST gives
//! an exception handler a known-good stack even when the current one is broken
//! (SDM Vol. 3A 7.7 "Task Management in 64-bit Mode" and 6.14.5 "Interrupt Stack
//! Table"). A double fault from a kernel stack overflow would otherwise fault
//! again while pushing its frame and reset the machine (a triple fault).
//!
//! Each CPU's TSS lives at the very start of its per-CPU area, at `gs:[0]`
//! (the `percpu` layer leaves [`TSS_SPACE`] bytes free there), as Linux's
//! per-CPU `cpu_tss_rw`: the stack the CPU switches to when an interrupt or
//! a system call arrives from user mode (`rsp0`, SDM Vol. 3A 7.7) is then one
//! store away for the scheduler, and at a fixed `gs:` offset for the
//! `syscall` entry code, which has no free register to compute an address
//! with.

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

/// The selectors `syscall`/`sysret` rely on, in the order they require
/// (SDM Vol. 2B, SYSCALL and SYSRET; see `syscall`): kernel code, kernel
/// data right after it; user data, user code right after that. The GDT is
/// built in this order, and checked.
pub const KERNEL_CS: u16 = 0x08;
pub const KERNEL_SS: u16 = 0x10;
/// With requested privilege level 3, as user mode loads them.
pub const USER_SS: u16 = 0x18 | 3;
pub const USER_CS: u16 = 0x20 | 3;

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

/// The bytes every per-CPU area keeps free at its start for the CPU's TSS
/// (104 bytes without an I/O permission bitmap), rounded up to a cache line.
pub const TSS_SPACE: usize = 128;
const _: () = assert!(core::mem::size_of::<TaskStateSegment>() <= TSS_SPACE);

/// Where `rsp0` lies in the TSS (SDM Vol. 3A, Figure 7-11: a reserved
/// doubleword, then RSP0, RSP1, RSP2); `rsp2`, which ring 2 would use and
/// this kernel never does, is the `syscall` entry's scratch slot.
pub const RSP0_OFFSET: usize = 4;
pub const RSP2_OFFSET: usize = RSP0_OFFSET + 16;
const _: () =
    assert!(core::mem::offset_of!(TaskStateSegment, privilege_stack_table) == RSP0_OFFSET);

/// One CPU's GDT. The CPU finds it through its GDTR register, never through
/// GS, so it is not a per-CPU variable: the boot CPU's is a static here, each
/// AP's is allocated by `smp` along with its stacks, before the AP starts.
pub struct CpuTables {
    gdt: GdtSlot,
}

impl CpuTables {
    pub const fn new() -> CpuTables {
        CpuTables { gdt: GdtSlot::new() }
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

/// Builds this CPU's TSS (at the start of its per-CPU area, which must be
/// installed) and its GDT in `tables`, and loads them.
pub fn init_this_cpu(tables: &'static CpuTables, stacks: IstStacks) {
    let mut new_tss = TaskStateSegment::new();
    new_tss.interrupt_stack_table[DOUBLE_FAULT_IST_INDEX as usize] = stacks.double_fault;
    new_tss.interrupt_stack_table[NMI_IST_INDEX as usize] = stacks.nmi;
    new_tss.interrupt_stack_table[MACHINE_CHECK_IST_INDEX as usize] = stacks.machine_check;
    let tss = super::gs::base() as *mut TaskStateSegment;
    assert!(!tss.is_null(), "gdt: the per-CPU area must be installed before the TSS");
    // SAFETY: the first TSS_SPACE bytes of an installed per-CPU area are this
    // CPU's alone and hold nothing else (see TSS_SPACE); a TSS loaded there
    // before is not in use any more (INIT, then the trampoline). The CPU
    // reads the TSS through TR; Rust keeps no reference to it.
    unsafe { tss.write_unaligned(new_tss) };
    let mut gdt = GlobalDescriptorTable::new();
    let kernel_code = gdt.append(Descriptor::kernel_code_segment());
    let kernel_data = gdt.append(Descriptor::kernel_data_segment());
    let user_data = gdt.append(Descriptor::user_data_segment());
    let user_code = gdt.append(Descriptor::user_code_segment());
    assert_eq!(
        [kernel_code.0, kernel_data.0, user_data.0, user_code.0],
        [KERNEL_CS, KERNEL_SS, USER_SS, USER_CS],
        "gdt: the segments are not where syscall/sysret need them"
    );
    // SAFETY: the TSS stays at this address for as long as the CPU runs (the
    // per-CPU area is never freed) and is valid (written just above).
    let tss_selector = gdt.append(unsafe { Descriptor::tss_segment_unchecked(tss) });
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

/// Sets the stack this CPU switches to when an interrupt, exception or
/// system call arrives from user mode: the running thread's kernel stack
/// top. The scheduler calls it at every switch, with interrupts off.
pub fn set_kernel_stack(top: VirtAddr) {
    // SAFETY: the TSS lies at gs:[0] (init_this_cpu); rsp0 is a u64 at
    // RSP0_OFFSET, written only by this CPU, read by the CPU itself.
    unsafe { super::gs::write_u64(RSP0_OFFSET, top.as_u64()) };
}

/// The stack `set_kernel_stack` last set on this CPU.
pub fn kernel_stack() -> VirtAddr {
    // SAFETY: as in set_kernel_stack; the read is unaligned-safe on x86.
    VirtAddr::new(unsafe { super::gs::read_u64(RSP0_OFFSET) })
}

/// The base address of the TSS this CPU has loaded, read from its task
/// register and GDT (for the test that the TSS is where GS says).
pub fn loaded_tss_address() -> u64 {
    use x86_64::instructions::tables::sgdt;
    let selector: u16;
    // SAFETY: `str` only reads the task register.
    unsafe { core::arch::asm!("str {0:x}", out(reg) selector, options(nomem, nostack)) };
    let gdt = sgdt().base.as_u64();
    let entry = gdt + (selector as u64 & !7);
    // SAFETY: TR indexes a 16-byte TSS descriptor in the loaded GDT.
    let (low, high) = unsafe { (*(entry as *const u64), *((entry + 8) as *const u64)) };
    // The base is spread over the descriptor: bits 16..40 and 56..64 of the
    // low half, and the high half's low 32 bits (SDM Vol. 3A, Figure 7-4).
    ((low >> 16) & 0xff_ffff) | (((low >> 56) & 0xff) << 24) | ((high & 0xffff_ffff) << 32)
}
