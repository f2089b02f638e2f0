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
//! [`LocalApic`] hides the difference; the mode is chosen once from CPUID and is
//! the same on every CPU.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::instructions::interrupts;
use x86_64::registers::model_specific::Msr;
use x86_64::{PhysAddr, VirtAddr};

use super::cpu;
use super::idt::{SELF_TEST_VECTOR, SPURIOUS_VECTOR};
use crate::mm;
use crate::testing::{KernelTest, TestResult};

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
const LVT_MASKED: u32 = 1 << 16;
const LVT_DELIVERY_NMI: u32 = 0b100 << 8;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    XApic,
    X2Apic,
}

/// The highest APIC id an xAPIC IPI can name: the destination field is 8
/// bits (11.6.1, ICR bits 56-63), and 0xff means "all CPUs" (broadcast).
pub const MAX_XAPIC_DESTINATION: u32 = 0xfe;

impl Mode {
    pub fn can_address(self, apic_id: u32) -> bool {
        match self {
            Mode::XApic => apic_id <= MAX_XAPIC_DESTINATION,
            Mode::X2Apic => apic_id != u32::MAX, // 0xffffffff is x2APIC's broadcast
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::XApic => "xAPIC",
            Mode::X2Apic => "x2APIC",
        }
    }
}

pub struct LocalApic {
    mode: Mode,
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
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn read(&self, register: Register) -> u32 {
        match self.mode {
            // SAFETY: `mmio` maps the APIC page uncached and `register` is an offset
            // inside it; APIC registers are read with aligned 32-bit loads (11.4.1).
            Mode::XApic => unsafe { (self.mmio + register as u64).as_ptr::<u32>().read_volatile() },
            // SAFETY: x2APIC mode is enabled on this CPU, so this MSR exists.
            Mode::X2Apic => unsafe {
                Msr::new(X2APIC_MSR_BASE + (register as u32 >> 4)).read() as u32
            },
        }
    }

    pub fn write(&self, register: Register, value: u32) {
        match self.mode {
            // SAFETY: as in read().
            Mode::XApic => unsafe {
                (self.mmio + register as u64).as_mut_ptr::<u32>().write_volatile(value)
            },
            // SAFETY: as in read(); writing a defined APIC register.
            Mode::X2Apic => unsafe {
                Msr::new(X2APIC_MSR_BASE + (register as u32 >> 4)).write(value as u64)
            },
        }
    }

    /// This CPU's APIC id: bits 31:24 of the ID register in xAPIC mode, all 32
    /// bits in x2APIC mode (11.4.6 "Local APIC ID", 11.12.5.1).
    pub fn id(&self) -> u32 {
        match self.mode {
            Mode::XApic => self.read(Register::Id) >> 24,
            Mode::X2Apic => self.read(Register::Id),
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
            Mode::XApic => {
                self.write(Register::InterruptCommandHigh, destination << 24);
                // Writing the low half sends the IPI.
                self.write(Register::InterruptCommandLow, low);
                while self.read(Register::InterruptCommandLow) & ICR_DELIVERY_PENDING != 0 {
                    core::hint::spin_loop();
                }
            }
            Mode::X2Apic => {
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
    /// panic path: a panic inside an interrupt handler never reaches its EOI,
    /// and the vector in service would block every interrupt of its class or
    /// lower (the panic path's own timer included).
    pub fn end_all_in_service(&self) {
        let in_service = |i: u32| match self.mode {
            // SAFETY: as in read(): an ISR register of the mapped APIC page.
            Mode::XApic => unsafe {
                (self.mmio + (0x100 + 0x10 * i) as u64).as_ptr::<u32>().read_volatile()
            },
            // SAFETY: MSRs 0x810-0x817 are the ISR in x2APIC mode (Table 11-6).
            Mode::X2Apic => unsafe { Msr::new(X2APIC_MSR_BASE + 0x10 + i).read() as u32 },
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

/// Picks the mode from CPUID, maps the xAPIC page if needed, and enables the
/// boot CPU's APIC. `force_xapic` keeps the older interface even where x2APIC exists.
pub fn init_boot_cpu(force_xapic: bool) -> &'static LocalApic {
    let mode = if cpu::has_x2apic() && !force_xapic { Mode::X2Apic } else { Mode::XApic };
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86_64 CPUs).
    let base = unsafe { Msr::new(IA32_APIC_BASE).read() };
    let mmio = match mode {
        Mode::XApic => mm::paging::map_mmio(PhysAddr::new(base & APIC_BASE_ADDRESS_MASK), 4096),
        Mode::X2Apic => VirtAddr::zero(),
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
    x2apic_here == (get().mode == Mode::X2Apic)
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
        if lapic.mode == Mode::X2Apic {
            base |= APIC_BASE_X2APIC;
        }
        msr.write(base);
    }
}

static SELF_TEST_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

/// The test vector's handler: counts, and notes which APIC id the CPU that
/// took it has, so tests can check that per-CPU data matches the hardware.
pub fn on_self_test_interrupt() {
    crate::smp::count_answered_ipi(get().id());
    SELF_TEST_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
}

/// Sends fixed IPIs to this CPU's own APIC id through the ICR, as a remote CPU
/// would, and checks that each arrives exactly once.
fn self_ipi_is_delivered() -> TestResult {
    let lapic = get();
    for round in 1..=10u64 {
        let before = SELF_TEST_INTERRUPTS.load(Ordering::Relaxed);
        lapic.send_ipi(lapic.id(), Ipi::Fixed(SELF_TEST_VECTOR));
        let deadline = crate::time::now_ns() + 100_000_000;
        while SELF_TEST_INTERRUPTS.load(Ordering::Relaxed) == before
            && crate::time::now_ns() < deadline
        {
            core::hint::spin_loop();
        }
        let after = SELF_TEST_INTERRUPTS.load(Ordering::Relaxed);
        crate::ensure!(
            after == before + 1,
            "IPI {round}: {} interrupts arrived instead of 1",
            after - before
        );
    }
    Ok(())
}

/// xAPIC destinations are 8 bits: an id such as 300 must be refused, not
/// cut to 44 (a different CPU).
fn xapic_destinations_are_8_bits() -> TestResult {
    for (mode, id, expected) in [
        (Mode::XApic, 0, true),
        (Mode::XApic, 254, true),
        (Mode::XApic, 255, false),
        (Mode::XApic, 300, false),
        (Mode::X2Apic, 300, true),
        (Mode::X2Apic, u32::MAX, false),
    ] {
        crate::ensure!(
            mode.can_address(id) == expected,
            "{}: APIC id {id} addressable: expected {expected}",
            mode.name()
        );
    }
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("lapic_self_ipi_is_delivered", self_ipi_is_delivered),
    KernelTest::new("lapic_xapic_destinations_are_8_bits", xapic_destinations_are_8_bits),
];
