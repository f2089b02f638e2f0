//! The MADT ("APIC" table, ACPI 6.5 section 5.2.12 "Multiple APIC Description
//! Table"): one entry per processor and per I/O APIC.
//!
//! Processors appear as Processor Local APIC entries (type 0, 5.2.12.2) with an
//! 8-bit APIC id, or Processor Local x2APIC entries (type 9, 5.2.12.12) with a
//! 32-bit id; firmware uses the latter for ids of 255 and up. Both carry flags
//! (Table 5.23 "Local APIC Flags"): bit 0 Enabled (usable now), bit 1
//! Online Capable (disabled now but may be brought up later; ACPI 6.3+).
//! A CPU with neither bit must not be started.
//!
//! Logical CPU numbers are given here: 0 to the boot CPU, then 1, 2, ... to the
//! other enabled CPUs in MADT order. Online-capable CPUs are listed but get no
//! number: this kernel does not hot-add CPUs.

use alloc::vec::Vec;
use core::pin::Pin;

use acpi::madt::{Madt, MadtEntry};

use crate::testing::{KernelTest, TestResult};

const FLAG_ENABLED: u32 = 1 << 0;
const FLAG_ONLINE_CAPABLE: u32 = 1 << 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicKind {
    XApic,
    X2Apic,
}

#[derive(Clone, Debug)]
pub struct CpuEntry {
    /// Logical CPU number, if the CPU may be started.
    pub cpu: Option<usize>,
    pub apic_id: u32,
    /// ACPI processor UID (links to the processor's object in the namespace).
    pub acpi_uid: u32,
    pub kind: ApicKind,
    pub enabled: bool,
    pub online_capable: bool,
    pub is_boot_cpu: bool,
}

#[derive(Clone, Debug)]
pub struct IoApic {
    pub id: u8,
    pub address: u32,
    pub gsi_base: u32,
}

pub struct Platform {
    /// Every CPU MADT lists, startable or not, in MADT order (boot CPU as listed).
    pub cpus: Vec<CpuEntry>,
    pub io_apics: Vec<IoApic>,
    pub local_apic_address: u64,
    pub has_legacy_pics: bool,
    /// False when there was no usable MADT and the list holds only the boot CPU.
    pub from_madt: bool,
}

impl Platform {
    pub fn boot_cpu_only(boot_apic_id: u32) -> Platform {
        Platform {
            cpus: alloc::vec![CpuEntry {
                cpu: Some(0),
                apic_id: boot_apic_id,
                acpi_uid: 0,
                kind: ApicKind::XApic,
                enabled: true,
                online_capable: false,
                is_boot_cpu: true,
            }],
            io_apics: Vec::new(),
            local_apic_address: 0xfee0_0000,
            has_legacy_pics: true,
            from_madt: false,
        }
    }

    /// CPUs that may be started (enabled), by logical number (the boot CPU first).
    pub fn startable_cpus(&self) -> impl Iterator<Item = &CpuEntry> {
        let mut cpus: Vec<&CpuEntry> = self.cpus.iter().filter(|c| c.cpu.is_some()).collect();
        cpus.sort_by_key(|c| c.cpu);
        cpus.into_iter()
    }

    pub fn print(&self) {
        if !self.from_madt {
            return;
        }
        let startable = self.cpus.iter().filter(|c| c.cpu.is_some()).count();
        log::info!(
            "acpi: MADT lists {} CPU{} ({} enabled), {} I/O APIC{}, local APIC at {:#x}{}",
            self.cpus.len(),
            if self.cpus.len() == 1 { "" } else { "s" },
            startable,
            self.io_apics.len(),
            if self.io_apics.len() == 1 { "" } else { "s" },
            self.local_apic_address,
            if self.has_legacy_pics { ", legacy PICs present" } else { "" }
        );
        log::info!("acpi:    cpu  apic-id  acpi-uid  entry   flags");
        for entry in &self.cpus {
            let number = match entry.cpu {
                Some(n) => alloc::format!("{n:>6}"),
                None => alloc::format!("{:>6}", "-"),
            };
            let flags = match (entry.enabled, entry.online_capable) {
                (true, _) => "enabled",
                (false, true) => "online-capable",
                (false, false) => "disabled",
            };
            log::info!(
                "acpi: {number}  {:>7}  {:>8}  {:<6}  {flags}{}",
                entry.apic_id,
                entry.acpi_uid,
                match entry.kind {
                    ApicKind::XApic => "xAPIC",
                    ApicKind::X2Apic => "x2APIC",
                },
                if entry.is_boot_cpu { ", boot CPU" } else { "" }
            );
        }
        for io_apic in &self.io_apics {
            log::info!(
                "acpi: I/O APIC id {} at {:#x}, interrupts from GSI {}",
                io_apic.id,
                io_apic.address,
                io_apic.gsi_base
            );
        }
    }
}

/// Reads the processor and I/O APIC entries of a MADT.
pub fn parse(madt: Pin<&Madt>, boot_apic_id: u32) -> Platform {
    let mut cpus: Vec<CpuEntry> = Vec::new();
    let mut io_apics = Vec::new();
    let mut local_apic_address = madt.local_apic_address as u64;
    let mut add_cpu = |apic_id: u32, acpi_uid: u32, flags: u32, kind: ApicKind| {
        // An id listed twice (an x2APIC entry beside an xAPIC one) is one CPU.
        if cpus.iter().any(|c| c.apic_id == apic_id) {
            return;
        }
        cpus.push(CpuEntry {
            cpu: None,
            apic_id,
            acpi_uid,
            kind,
            enabled: flags & FLAG_ENABLED != 0,
            online_capable: flags & FLAG_ONLINE_CAPABLE != 0,
            is_boot_cpu: apic_id == boot_apic_id,
        });
    };
    for entry in madt.entries() {
        match entry {
            MadtEntry::LocalApic(e) => {
                add_cpu(e.apic_id as u32, e.processor_id as u32, e.flags, ApicKind::XApic);
            }
            MadtEntry::LocalX2Apic(e) => {
                add_cpu(e.x2apic_id, e.processor_uid, e.flags, ApicKind::X2Apic)
            }
            MadtEntry::IoApic(e) => io_apics.push(IoApic {
                id: e.io_apic_id,
                address: e.io_apic_address,
                gsi_base: e.global_system_interrupt_base,
            }),
            MadtEntry::LocalApicAddressOverride(e) => local_apic_address = e.local_apic_address,
            _ => {}
        }
    }
    number_cpus(&mut cpus);
    Platform {
        cpus,
        io_apics,
        local_apic_address,
        has_legacy_pics: madt.supports_8259(),
        from_madt: true,
    }
}

/// Boot CPU is 0; other enabled CPUs follow in MADT order.
fn number_cpus(cpus: &mut [CpuEntry]) {
    let mut next = 1;
    for entry in cpus.iter_mut() {
        if entry.is_boot_cpu {
            entry.cpu = Some(0);
        } else if entry.enabled {
            entry.cpu = Some(next);
            next += 1;
        }
    }
}

// Tests.

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
    let platform = parse(madt, 300);

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
