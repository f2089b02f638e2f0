//! Tests of interrupt delivery through the local APIC and this layer: an IPI
//! a CPU sends itself arrives exactly once, and xAPIC destinations that do not
//! fit in 8 bits are refused. The self-test vector's handler is test code, so
//! the tests register it ([`claim_self_test_vector`]) before they send.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use spin::Once;

use crate::arch::x86::lapic::{self, ApicMode, Ipi};
use crate::arch::x86::vectors::SELF_TEST_VECTOR;
use crate::percpu::cpu_local;
use crate::testing::{KernelTest, TestResult};

/// Registers the self-test vector's handler, once, for whichever test sends first.
pub fn claim_self_test_vector() {
    static CLAIMED: Once = Once::new();
    CLAIMED.call_once(|| super::register(SELF_TEST_VECTOR, "tests", on_self_test_interrupt));
}

static SELF_TEST_INTERRUPTS: AtomicU64 = AtomicU64::new(0);

cpu_local! {
    /// Self-test IPIs this CPU answered, and the APIC id its handler read from
    /// the hardware (for smp's tests: every CPU answers, and its per-CPU data
    /// is its own).
    static IPIS_ANSWERED: AtomicU64 = AtomicU64::new(0);
    static APIC_ID_SEEN_IN_HANDLER: AtomicU32 = AtomicU32::new(u32::MAX);
}

/// How many self-test IPIs CPU `cpu` has answered (Release by its handler).
pub fn ipis_answered_on(cpu: usize) -> &'static AtomicU64 {
    IPIS_ANSWERED.on(cpu)
}

/// The APIC id CPU `cpu`'s handler last read from the hardware.
pub fn apic_id_seen_on(cpu: usize) -> u32 {
    APIC_ID_SEEN_IN_HANDLER.on(cpu).load(Ordering::Relaxed)
}

/// The self-test vector's handler: counts, and notes which APIC id the CPU that
/// took it has, so tests can check that per-CPU data matches the hardware.
fn on_self_test_interrupt() {
    APIC_ID_SEEN_IN_HANDLER.get().store(lapic::get().id(), Ordering::Relaxed);
    IPIS_ANSWERED.get().fetch_add(1, Ordering::Release);
    SELF_TEST_INTERRUPTS.fetch_add(1, Ordering::Relaxed);
}

/// Sends fixed IPIs to this CPU's own APIC id through the ICR, as a remote CPU
/// would, and checks that each arrives exactly once.
fn self_ipi_is_delivered() -> TestResult {
    claim_self_test_vector();
    let lapic = lapic::get();
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
        (ApicMode::XApic, 0, true),
        (ApicMode::XApic, 254, true),
        (ApicMode::XApic, 255, false),
        (ApicMode::XApic, 300, false),
        (ApicMode::X2Apic, 300, true),
        (ApicMode::X2Apic, u32::MAX, false),
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
