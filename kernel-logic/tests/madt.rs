//! MADT parsing (kernel/src/acpi/madt.rs) on tables built here: CPU numbering,
//! xAPIC and x2APIC entries, flags, and tables a firmware bug left malformed.

use std::pin::Pin;

use acpi::madt::Madt;
use kernel_logic::madt::{ApicKind, Malformed, Platform, check_entries, parse};

/// A MADT under construction: header, local APIC address, flags, entries.
struct Table {
    bytes: Vec<u8>,
}

impl Table {
    fn new() -> Table {
        let mut bytes = vec![0; 44];
        bytes[0..4].copy_from_slice(b"APIC");
        bytes[36..40].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        bytes[40..44].copy_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: legacy PICs
        Table { bytes }
    }

    /// Type 0, Processor Local APIC: type, length, ACPI uid, APIC id, flags.
    fn local_apic(self, uid: u8, apic_id: u8, flags: u32) -> Table {
        let mut entry = vec![0, 8, uid, apic_id];
        entry.extend(flags.to_le_bytes());
        self.entry(&entry)
    }

    /// Type 9, Processor Local x2APIC: type, length, reserved(2), id, flags, uid.
    fn local_x2apic(self, uid: u32, apic_id: u32, flags: u32) -> Table {
        let mut entry = vec![9, 16, 0, 0];
        [apic_id, flags, uid].iter().for_each(|field| entry.extend(field.to_le_bytes()));
        self.entry(&entry)
    }

    /// Type 1, I/O APIC: type, length, id, reserved, address, GSI base.
    fn io_apic(self, id: u8, address: u32, gsi_base: u32) -> Table {
        let mut entry = vec![1, 12, id, 0];
        [address, gsi_base].iter().for_each(|field| entry.extend(field.to_le_bytes()));
        self.entry(&entry)
    }

    fn entry(mut self, bytes: &[u8]) -> Table {
        self.bytes.extend(bytes);
        self
    }

    /// The header's length field set to the bytes written, and the table parsed.
    fn parse(mut self, boot_apic_id: u32) -> Result<Platform, Malformed> {
        let length = self.bytes.len() as u32;
        self.bytes[4..8].copy_from_slice(&length.to_le_bytes());
        parse_with_length(&self.bytes, length, boot_apic_id)
    }
}

/// Parses `bytes` as a MADT whose header says it is `length` bytes long.
fn parse_with_length(bytes: &[u8], length: u32, boot_apic_id: u32) -> Result<Platform, Malformed> {
    assert!(length as usize <= bytes.len(), "the test must own every byte the header claims");
    // The acpi crate's Madt is read in place, as the kernel reads firmware
    // memory: copy into 8-aligned storage at least as large as the struct.
    let mut words = vec![0u64; bytes.len().max(size_of::<Madt>()).div_ceil(8)];
    // SAFETY: `words` has room for `bytes` (its length in u64s is rounded up),
    // and u8 has no alignment or validity requirement.
    let storage =
        unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) };
    storage[..bytes.len()].copy_from_slice(bytes);
    storage[4..8].copy_from_slice(&length.to_le_bytes());
    // SAFETY: the storage is 8-aligned, at least size_of::<Madt>() long, and
    // holds `length` bytes of table from its start (asserted above), which is
    // what `parse` and the acpi crate read; Madt is plain old data and is
    // never moved out of the Pin.
    let madt = unsafe { Pin::new_unchecked(&*storage.as_ptr().cast::<Madt>()) };
    parse(madt, boot_apic_id)
}

/// (APIC id, logical CPU number, kind, enabled, online capable) per CPU entry.
fn summary(platform: &Platform) -> Vec<(u32, Option<usize>, ApicKind, bool, bool)> {
    platform.cpus.iter().map(|c| (c.apic_id, c.cpu, c.kind, c.enabled, c.online_capable)).collect()
}

#[test]
fn xapic_and_x2apic_entries_are_read_with_their_flags() {
    let platform = Table::new()
        .local_apic(0, 5, 1) // enabled
        .local_apic(1, 6, 2) // online capable: listed, not numbered
        .local_apic(2, 7, 0) // neither: never started
        .local_x2apic(3, 300, 1) // enabled, the boot CPU
        .local_x2apic(4, 5, 1) // id 5 again, beside its xAPIC entry: the same CPU
        .io_apic(2, 0xfec0_0000, 24)
        .parse(300)
        .expect("a well-formed table");
    assert_eq!(
        summary(&platform),
        [
            (5, Some(1), ApicKind::XApic, true, false),
            (6, None, ApicKind::XApic, false, true),
            (7, None, ApicKind::XApic, false, false),
            (300, Some(0), ApicKind::X2Apic, true, false),
        ]
    );
    let boot = &platform.cpus[3];
    assert!(boot.is_boot_cpu && boot.acpi_uid == 3, "{boot:?}");
    assert_eq!(platform.cpus.iter().filter(|c| c.is_boot_cpu).count(), 1);
    assert_eq!(platform.io_apics.len(), 1);
    assert_eq!((platform.io_apics[0].id, platform.io_apics[0].address), (2, 0xfec0_0000));
    assert_eq!(platform.io_apics[0].gsi_base, 24);
    assert_eq!(platform.local_apic_address, 0xfee0_0000);
    assert!(platform.has_legacy_pics && platform.from_madt);
}

#[test]
fn the_boot_cpu_is_0_and_the_others_follow_in_table_order() {
    let platform = Table::new()
        .local_apic(0, 3, 1)
        .local_apic(1, 1, 1)
        .local_apic(2, 2, 0) // disabled: takes no number
        .local_apic(3, 0, 1) // the boot CPU, listed last
        .local_apic(4, 4, 1)
        .parse(0)
        .expect("a well-formed table");
    let numbers: Vec<(u32, Option<usize>)> =
        platform.cpus.iter().map(|c| (c.apic_id, c.cpu)).collect();
    assert_eq!(numbers, [(3, Some(1)), (1, Some(2)), (2, None), (0, Some(0)), (4, Some(3))]);
    let startable: Vec<u32> = platform.startable_cpus().map(|c| c.apic_id).collect();
    assert_eq!(startable, [0, 3, 1, 4], "startable CPUs in logical-number order");
}

#[test]
fn an_address_override_entry_replaces_the_local_apic_address() {
    // Type 5: type, length, reserved(2), 64-bit address.
    let mut entry = vec![5, 12, 0, 0];
    entry.extend(0x1_fee0_0000u64.to_le_bytes());
    let platform = Table::new().local_apic(0, 0, 1).entry(&entry).parse(0).unwrap();
    assert_eq!(platform.local_apic_address, 0x1_fee0_0000);
}

#[test]
fn a_table_shorter_than_its_fixed_fields_is_refused() {
    let table = Table::new().bytes;
    assert_eq!(parse_with_length(&table, 40, 0).err(), Some(Malformed::TooShort { length: 40 }));
    assert_eq!(check_entries(&table[..43]), Err(Malformed::TooShort { length: 43 }));
    assert_eq!(check_entries(&table), Ok(()), "a table with no entries is well formed");
}

#[test]
fn an_entry_of_length_0_is_refused_instead_of_looping_forever() {
    let result = Table::new().local_apic(0, 0, 1).entry(&[0, 0]).parse(0);
    let expected = Malformed::BadEntry { offset: 52, entry_type: 0, length: 0 };
    assert_eq!(result.err(), Some(expected));
}

#[test]
fn an_entry_shorter_than_its_type_is_refused() {
    // An x2APIC entry cut to the length of an xAPIC one.
    let result = Table::new().entry(&[9, 8, 0, 0, 1, 0, 0, 0]).parse(0);
    let expected = Malformed::BadEntry { offset: 44, entry_type: 9, length: 8 };
    assert_eq!(result.err(), Some(expected));
}

#[test]
fn an_entry_running_past_the_end_of_the_table_is_refused() {
    let full = Table::new().local_apic(0, 0, 1).local_apic(1, 1, 1).bytes;
    // The header claims 4 bytes fewer than the entries take: the last is cut.
    let result = parse_with_length(&full, full.len() as u32 - 4, 0);
    let expected = Malformed::BadEntry { offset: 52, entry_type: 0, length: 8 };
    assert_eq!(result.err(), Some(expected));
    // A lone type byte with no length byte after it.
    let result = Table::new().local_apic(0, 0, 1).entry(&[0x7f]).parse(0);
    let expected = Malformed::BadEntry { offset: 52, entry_type: 0x7f, length: 0 };
    assert_eq!(result.err(), Some(expected));
}

#[test]
fn reserved_and_oem_entries_are_skipped() {
    let platform = Table::new()
        .entry(&[0x80, 6, 1, 2, 3, 4]) // OEM type, any length >= 2
        .local_apic(0, 0, 1)
        .entry(&[0x11, 2]) // reserved type, header only
        .parse(0)
        .expect("well formed");
    assert_eq!(summary(&platform), [(0, Some(0), ApicKind::XApic, true, false)]);
}

#[test]
fn a_malformed_table_says_where() {
    let text = Malformed::BadEntry { offset: 52, entry_type: 9, length: 8 }.to_string();
    assert!(text.contains("offset 52") && text.contains("type 9"), "{text}");
}
