//! In-kernel tests of `madt`: this machine's table, and one built in memory.

use alloc::vec::Vec;
use core::pin::Pin;

use acpi::madt::Madt;

use super::madt::{ApicKind, parse};
use crate::testing::{KernelTest, TestResult};

fn madt_matches_this_machine() -> TestResult {
    let platform = super::platform();
    crate::ensure!(platform.from_madt, "no MADT was read");
    let boot = platform.cpus.iter().filter(|c| c.is_boot_cpu).count();
    crate::ensure!(boot == 1, "{boot} entries match the boot CPU's APIC id");
    let mut ids: Vec<u32> = platform.cpus.iter().map(|c| c.apic_id).collect();
    ids.sort_unstable();
    ids.dedup();
    crate::ensure!(ids.len() == platform.cpus.len(), "an APIC id is listed twice");
    let numbers: Vec<usize> = platform.startable_cpus().map(|c| c.cpu.unwrap()).collect();
    crate::ensure!(
        numbers.iter().copied().eq(0..numbers.len()),
        "CPU numbers are not 0..n: {numbers:?}"
    );
    if let Some(qemu_cpus) = crate::arch::x86::fw_cfg::cpu_count() {
        crate::ensure!(
            numbers.len() == qemu_cpus as usize,
            "MADT has {} startable CPUs, QEMU says it has {qemu_cpus}",
            numbers.len()
        );
    }
    Ok(())
}

/// Builds a MADT in memory with every kind of processor entry and parses it.
fn madt_parses_xapic_x2apic_and_flags() -> TestResult {
    #[repr(C, align(8))]
    struct Table([u8; 128]);
    let mut table = Table([0; 128]);
    let bytes = &mut table.0;
    let mut length = 44; // SDT header (36) + local APIC address (4) + flags (4)
    let mut push = |entry: &[u8]| {
        bytes[length..length + entry.len()].copy_from_slice(entry);
        length += entry.len();
    };
    // Type 0 (Processor Local APIC): type, length, ACPI uid, APIC id, flags.
    push(&[0, 8, 0, 5, 1, 0, 0, 0]); // uid 0, id 5, enabled
    push(&[0, 8, 1, 6, 2, 0, 0, 0]); // uid 1, id 6, online capable: listed, not started
    push(&[0, 8, 2, 7, 0, 0, 0, 0]); // uid 2, id 7, neither: never start
    // Type 9 (Processor Local x2APIC): type, length, reserved(2), id(4), flags(4), uid(4).
    push(&[9, 16, 0, 0, 0x2c, 0x01, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]); // id 300, enabled, uid 3
    push(&[9, 16, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]); // id 5 again: a duplicate
    // Type 1 (I/O APIC): type, length, id, reserved, address(4), GSI base(4).
    push(&[1, 12, 2, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]);
    bytes[0..4].copy_from_slice(b"APIC");
    bytes[4..8].copy_from_slice(&(length as u32).to_le_bytes());
    bytes[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
    bytes[40..44].copy_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: legacy PICs present
    // SAFETY: the buffer is 8-aligned, at least size_of::<Madt>() long, and starts
    // with a MADT header whose length covers exactly the entries written above.
    let madt = unsafe { Pin::new_unchecked(&*(bytes.as_ptr() as *const Madt)) };
    let platform = parse(madt, 300).map_err(|malformed| alloc::format!("{malformed}"))?;

    let summary: Vec<(u32, Option<usize>, ApicKind, bool, bool)> = platform
        .cpus
        .iter()
        .map(|c| (c.apic_id, c.cpu, c.kind, c.enabled, c.online_capable))
        .collect();
    let expected = [
        (5, Some(1), ApicKind::XApic, true, false),
        (6, None, ApicKind::XApic, false, true),
        (7, None, ApicKind::XApic, false, false),
        (300, Some(0), ApicKind::X2Apic, true, false),
    ];
    crate::ensure!(summary == expected, "parsed {summary:?}, expected {expected:?}");
    crate::ensure!(platform.cpus[3].is_boot_cpu, "the boot CPU (APIC id 300) was not marked");
    crate::ensure!(
        platform.cpus[3].acpi_uid == 3,
        "x2APIC uid read as {}",
        platform.cpus[3].acpi_uid
    );
    crate::ensure!(
        platform.io_apics.len() == 1,
        "expected one I/O APIC, got {}",
        platform.io_apics.len()
    );
    crate::ensure!(platform.io_apics[0].address == 0xfec0_0000, "I/O APIC address wrong");
    crate::ensure!(platform.has_legacy_pics, "PCAT_COMPAT flag not seen");
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("madt_matches_this_machine", madt_matches_this_machine),
    KernelTest::new("madt_parses_xapic_x2apic_and_flags", madt_parses_xapic_x2apic_and_flags),
];
