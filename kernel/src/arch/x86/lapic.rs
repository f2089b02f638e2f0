//! The local APIC: one per CPU, it receives interrupts for its CPU, sends
//! inter-processor interrupts (IPIs), and has a timer.
//!
//! Two register interfaces exist (SDM Vol. 3A chapter 11 "Advanced Programmable
//! Interrupt Controller (APIC)"):
//! - xAPIC: registers are memory-mapped at the APIC base (0xfee00000 by default),
//!   each 16 bytes apart (11.4.1, Table 11-1 "Local APIC Register Address Map").
//! - x2APIC: the same registers as MSRs 0x800 + offset/16, with a 32-bit APIC id
//!   and a single 64-bit ICR write to send an IPI (11.12 "Extended XAPIC (x2APIC)",
//!   Table 11-6 "Local APIC Register Address Map Supported by x2APIC").
//!
//! [`LocalApic`] hides the difference; the mode is chosen once from CPUID and is
//! the same on every CPU.

use spin::Once;
use x86_64::instructions::interrupts;
use x86_64::registers::model_specific::Msr;
use x86_64::{PhysAddr, VirtAddr};

pub use super::apic_mode::ApicMode;
use super::cpu;
use super::vectors::SPURIOUS_VECTOR;

/// Register offsets in the xAPIC MMIO page (Table 11-1).
#[derive(Clone, Copy)]
#[repr(u32)]
pub enum Register {
    Id = 0x020,
    TaskPriority = 0x080,
    EndOfInterrupt = 0x0b0,
    SpuriousVector = 0x0f0,
    ErrorStatus = 0x280,
    InterruptCommandLow = 0x300,
    InterruptCommandHigh = 0x310,
    LvtTimer = 0x320,
    LvtLint0 = 0x350,
    LvtLint1 = 0x360,
    LvtError = 0x370,
    TimerInitialCount = 0x380,
    TimerCurrentCount = 0x390,
    TimerDivide = 0x3e0,
}

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;
const APIC_BASE_ADDRESS_MASK: u64 = 0xf_ffff_f000;
const X2APIC_MSR_BASE: u32 = 0x800;

const SVR_APIC_ENABLE: u32 = 1 << 8;
/// The mask bit of every local vector table entry (SDM Vol. 3A "Local Vector Table").
pub const LVT_MASKED: u32 = 1 << 16;
const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

pub struct LocalApic {
    mode: ApicMode,
    /// Where the xAPIC page is mapped (unused in x2APIC mode).
    mmio: VirtAddr,
}

static LAPIC: Once<LocalApic> = Once::new();

/// What an IPI asks the target to do (SDM Vol. 3A 11.6.1 "Interrupt Command
/// Register (ICR)", the delivery mode field).
#[derive(Clone, Copy, Debug)]
pub enum Ipi {
    /// Raise interrupt `vector` on the target.
    Fixed(u8),
    /// Raise a non-maskable interrupt (vector 2).
    Nmi,
    /// Reset the target into wait-for-SIPI (11.6.1, "INIT").
    Init,
    /// Start the target in real mode at physical address `page` * 4 KiB.
    Startup(u8),
}

impl Ipi {
    /// The low 32 bits of the ICR: vector, delivery mode, and level "assert".
    fn icr_low(self) -> u32 {
        const LEVEL_ASSERT: u32 = 1 << 14;
        match self {
            Ipi::Fixed(vector) => vector as u32 | LEVEL_ASSERT,
            Ipi::Nmi => (0b100 << 8) | LEVEL_ASSERT,
            Ipi::Init => (0b101 << 8) | LEVEL_ASSERT,
            Ipi::Startup(page) => page as u32 | (0b110 << 8) | LEVEL_ASSERT,
        }
    }
}

impl LocalApic {
    pub fn mode(&self) -> ApicMode {
        self.mode
    }

    pub fn read(&self, register: Register) -> u32 {
        match self.mode {
            // SAFETY: `mmio` maps the APIC page uncached and `register` is an offset
            // inside it; APIC registers are read with aligned 32-bit loads (11.4.1).
            ApicMode::XApic => unsafe {
                (self.mmio + register as u64).as_ptr::<u32>().read_volatile()
            },
            // SAFETY: x2APIC mode is enabled on this CPU, so this MSR exists.
            ApicMode::X2Apic => unsafe {
                Msr::new(X2APIC_MSR_BASE + (register as u32 >> 4)).read() as u32
            },
        }
    }

    pub fn write(&self, register: Register, value: u32) {
        match self.mode {
            // SAFETY: as in read().
            ApicMode::XApic => unsafe {
                (self.mmio + register as u64).as_mut_ptr::<u32>().write_volatile(value)
            },
            // SAFETY: as in read(); writing a defined APIC register.
            ApicMode::X2Apic => unsafe {
                Msr::new(X2APIC_MSR_BASE + (register as u32 >> 4)).write(value as u64)
            },
        }
    }

    /// This CPU's APIC id: bits 31:24 of the ID register in xAPIC mode, all 32
    /// bits in x2APIC mode (11.4.6 "Local APIC ID", 11.12.5.1).
    pub fn id(&self) -> u32 {
        match self.mode {
            ApicMode::XApic => self.read(Register::Id) >> 24,
            ApicMode::X2Apic => self.read(Register::Id),
        }
    }

    /// Whether this mode can name `apic_id` as an IPI's destination.
    pub fn can_address(&self, apic_id: u32) -> bool {
        self.mode.can_address(apic_id)
    }

    /// Sends `ipi` to the CPU whose APIC id is `destination` (physical destination mode).
    pub fn send_ipi(&self, destination: u32, ipi: Ipi) {
        // A destination cut to 8 bits would reach another CPU: INIT could
        // reset a running one. smp::init leaves such CPUs out.
        assert!(
            self.can_address(destination),
            "APIC id {destination} cannot be addressed in {} mode",
            self.mode.name()
        );
        let low = ipi.icr_low();
        // The xAPIC ICR is two registers; an interrupt handler sending its own IPI
        // between the two writes would change the destination under us.
        let were_enabled = interrupts::are_enabled();
        interrupts::disable();
        match self.mode {
            ApicMode::XApic => {
                self.write(Register::InterruptCommandHigh, destination << 24);
                // Writing the low half sends the IPI.
                self.write(Register::InterruptCommandLow, low);
                while self.read(Register::InterruptCommandLow) & ICR_DELIVERY_PENDING != 0 {
                    core::hint::spin_loop();
                }
            }
            ApicMode::X2Apic => {
                let icr = ((destination as u64) << 32) | low as u64;
                // WRMSR to an x2APIC register is not serializing (11.12.3
                // "MSR Access in x2APIC Mode"): without a fence the IPI can
                // reach the target before this CPU's earlier stores do, and
                // the target wakes to stale data (an AP that still reads
                // `CalledIn` and sleeps again; a reschedule IPI that finds
                // `need_resched` false). MFENCE orders the stores, LFENCE keeps
                // the WRMSR from starting before the MFENCE completes. Linux:
                // weak_wrmsr_fence() in arch/x86/include/asm/barrier.h.
                // SAFETY: fences only order memory accesses.
                unsafe { core::arch::asm!("mfence", "lfence", options(nostack, preserves_flags)) };
                // SAFETY: MSR 0x830 is the x2APIC ICR; one write sends the IPI
                // (11.12.9 "ICR Operation in x2APIC Mode").
                unsafe { Msr::new(X2APIC_MSR_BASE + 0x30).write(icr) };
            }
        }
        if were_enabled {
            interrupts::enable();
        }
    }

    pub fn end_of_interrupt(&self) {
        self.write(Register::EndOfInterrupt, 0);
    }

    /// Ends every interrupt in service on this CPU: one EOI clears the
    /// highest-priority bit of the in-service register (11.8.5), so EOI until
    /// the eight ISR registers (0x100-0x170, Table 11-1) are all clear. For the
    /// panic path, as a guard: the interrupt layer sends EOI before any
    /// handler runs, so a panic inside one leaves nothing in service, but an
    /// exception taken before that EOI (or a vector that bypassed the layer)
    /// would leave its vector blocking every interrupt of its class or lower,
    /// the panic path's own timer included.
    pub fn end_all_in_service(&self) {
        let in_service = |i: u32| match self.mode {
            // SAFETY: as in read(): an ISR register of the mapped APIC page.
            ApicMode::XApic => unsafe {
                (self.mmio + (0x100 + 0x10 * i) as u64).as_ptr::<u32>().read_volatile()
            },
            // SAFETY: MSRs 0x810-0x817 are the ISR in x2APIC mode (Table 11-6).
            ApicMode::X2Apic => unsafe { Msr::new(X2APIC_MSR_BASE + 0x10 + i).read() as u32 },
        };
        for _ in 0..256 {
            if (0..8).all(|i| in_service(i) == 0) {
                return;
            }
            self.end_of_interrupt();
        }
    }
}

/// The local APIC interface. Panics if called before `init_boot_cpu()`.
pub fn get() -> &'static LocalApic {
    LAPIC.get().expect("local APIC used before lapic::init_boot_cpu()")
}

pub fn is_initialised() -> bool {
    LAPIC.is_completed()
}

pub fn end_of_interrupt() {
    get().end_of_interrupt();
}

/// Picks the mode from CPUID, maps the xAPIC page if needed (with `map_mmio`,
/// which maps physical memory uncached), and enables the boot CPU's APIC.
/// `force_xapic` keeps the older interface even where x2APIC exists.
pub fn init_boot_cpu(
    force_xapic: bool,
    map_mmio: impl FnOnce(PhysAddr, u64) -> VirtAddr,
) -> &'static LocalApic {
    let mode = if cpu::has_x2apic() && !force_xapic { ApicMode::X2Apic } else { ApicMode::XApic };
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86_64 CPUs).
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    let mmio = match mode {
        ApicMode::XApic => map_mmio(PhysAddr::new(base & APIC_BASE_ADDRESS_MASK), 4096),
        ApicMode::X2Apic => VirtAddr::zero(),
    };
    let lapic = LAPIC.call_once(|| LocalApic { mode, mmio });
    init_this_cpu();
    // Checked on the boot CPU only: an AP must not log before it is online
    // (it may be INITed at any instruction, and must not hold the console lock).
    let cpuid_id = cpu::initial_apic_id();
    if lapic.id() != cpuid_id {
        log::warn!("lapic: APIC id register says {} but CPUID says {}", lapic.id(), cpuid_id);
    }
    lapic
}

/// Enables this CPU's local APIC in the chosen mode and puts its local vector
/// table in a known state: LINT0 (where the PIC's ExtINT would arrive) masked,
/// LINT1 delivering NMIs, the error and timer interrupts masked until used.
pub fn init_this_cpu() {
    let lapic = get();
    enter_mode_on_this_cpu();
    lapic.write(Register::SpuriousVector, SVR_APIC_ENABLE | SPURIOUS_VECTOR as u32);
    lapic.write(Register::TaskPriority, 0);
    lapic.write(Register::LvtLint0, LVT_MASKED);
    lapic.write(Register::LvtLint1, LVT_DELIVERY_NMI);
    lapic.write(Register::LvtError, LVT_MASKED);
    lapic.write(Register::LvtTimer, LVT_MASKED);
    // Clear any error latched before we took over (write, then read: 11.5.3).
    lapic.write(Register::ErrorStatus, 0);
    let _ = lapic.read(Register::ErrorStatus);
    lapic.end_of_interrupt();
}

/// Whether this CPU's local APIC is in the mode every CPU uses (an AP that
/// has not run `init_this_cpu()` yet is still in the reset xAPIC mode).
pub fn in_common_mode_here() -> bool {
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; reading it has no effect.
    let x2apic_here = unsafe { Msr::new(IA32_APIC_BASE).read() } & APIC_BASE_X2APIC != 0;
    x2apic_here == (get().mode == ApicMode::X2Apic)
}

/// Puts this CPU's local APIC in the mode every CPU uses, enabled. A CPU out
/// of reset or INIT is in xAPIC mode; the others may use x2APIC, whose
/// registers (MSRs) this CPU could not reach before this. Also for the panic
/// path of an AP that panics before `init_this_cpu()`.
pub fn enter_mode_on_this_cpu() {
    let lapic = get();
    let mut msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists; setting EN (and EXTD for x2APIC) follows the
    // legal transition xAPIC -> x2APIC of SDM 11.12.5, Figure 11-27 "Local x2APIC
    // State Transitions"; the base address bits are kept as they are.
    unsafe {
        let mut base = msr.read() | APIC_BASE_ENABLE;
        if lapic.mode == ApicMode::X2Apic {
            base |= APIC_BASE_X2APIC;
        }
        msr.write(base);
    }
}
