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
//!
//! This file uses nothing of the kernel's, so the host unit tests
//! (kernel-logic/) compile it as it is; the in-kernel tests, which read this
//! machine's MADT, are in madt_tests.rs.

use alloc::vec::Vec;
use core::fmt;
use core::mem::size_of;
use core::pin::Pin;

use acpi::madt::{self as entry, Madt, MadtEntry};

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

/// Why a MADT was not read. The `acpi` crate's entry walk trusts every
/// length it finds, so a firmware bug here would send it past the table's
/// end, or round forever on an entry of length 0; `parse` checks first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The table's length does not cover its own fixed fields.
    TooShort { length: usize },
    /// An entry shorter than its type's fields (or than its 2-byte header),
    /// or one that runs past the table's end.
    BadEntry { offset: usize, entry_type: u8, length: u8 },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Malformed::TooShort { length } => {
                write!(f, "the MADT is {length} bytes long, too short for its header")
            }
            Malformed::BadEntry { offset, entry_type, length } => write!(
                f,
                "the MADT entry at offset {offset} (type {entry_type}, length {length}) \
                 does not fit its type or the table"
            ),
        }
    }
}

/// The fields the `acpi` crate reads for an entry type, header included.
fn entry_length(entry_type: u8) -> usize {
    match entry_type {
        0x0 => size_of::<entry::LocalApicEntry>(),
        0x1 => size_of::<entry::IoApicEntry>(),
        0x2 => size_of::<entry::InterruptSourceOverrideEntry>(),
        0x3 => size_of::<entry::NmiSourceEntry>(),
        0x4 => size_of::<entry::LocalApicNmiEntry>(),
        0x5 => size_of::<entry::LocalApicAddressOverrideEntry>(),
        0x6 => size_of::<entry::IoSapicEntry>(),
        0x7 => size_of::<entry::LocalSapicEntry>(),
        0x8 => size_of::<entry::PlatformInterruptSourceEntry>(),
        0x9 => size_of::<entry::LocalX2ApicEntry>(),
        0xa => size_of::<entry::X2ApicNmiEntry>(),
        0xb => size_of::<entry::GiccEntry>(),
        0xc => size_of::<entry::GicdEntry>(),
        0xd => size_of::<entry::GicMsiFrameEntry>(),
        0xe => size_of::<entry::GicRedistributorEntry>(),
        0xf => size_of::<entry::GicInterruptTranslationServiceEntry>(),
        0x10 => size_of::<entry::MultiprocessorWakeupEntry>(),
        // Reserved and OEM types are skipped: only their header is read.
        _ => 2,
    }
}

/// Checks that a MADT, given as its bytes (the header's `length` of them),
/// is a list of entries that each fit their type and the table (ACPI 6.5
/// 5.2.12: each entry starts with its type and length bytes).
pub fn check_entries(table: &[u8]) -> Result<(), Malformed> {
    let mut offset = size_of::<Madt>();
    if table.len() < offset {
        return Err(Malformed::TooShort { length: table.len() });
    }
    while offset < table.len() {
        let entry_type = table[offset];
        let length = table.get(offset + 1).copied().unwrap_or(0);
        let end = offset + length as usize;
        if (length as usize) < entry_length(entry_type).max(2) || end > table.len() {
            return Err(Malformed::BadEntry { offset, entry_type, length });
        }
        offset = end;
    }
    Ok(())
}

/// Reads the processor and I/O APIC entries of a MADT.
pub fn parse(madt: Pin<&Madt>, boot_apic_id: u32) -> Result<Platform, Malformed> {
    let length = { madt.header.length } as usize;
    // SAFETY: a `Madt` reference stands for the whole table, `length` bytes
    // from its header on: `acpi` maps that much, and its own entry walk reads
    // that far. The bytes are only read.
    let table = unsafe { core::slice::from_raw_parts(&*madt as *const Madt as *const u8, length) };
    check_entries(table)?;
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
    Ok(Platform {
        cpus,
        io_apics,
        local_apic_address,
        has_legacy_pics: madt.supports_8259(),
        from_madt: true,
    })
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
