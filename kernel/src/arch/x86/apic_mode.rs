//! xAPIC or x2APIC: the two ways of naming a local APIC, as the CPU runs it
//! (`lapic`) and as the firmware lists it (the MADT's Processor Local APIC
//! and Processor Local x2APIC entries, `acpi::madt`).
//!
//! An xAPIC id is 8 bits, an x2APIC id 32 (SDM Vol. 3A "Extended XAPIC
//! (x2APIC)"). This file names nothing else of the kernel's, so the host unit
//! tests (kernel-logic/) compile it with the MADT reader.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApicMode {
    XApic,
    X2Apic,
}

/// The highest APIC id an xAPIC IPI can name: the destination field is 8
/// bits (ICR bits 56-63, SDM Vol. 3A "Interrupt Command Register (ICR)"), and
/// 0xff means "all CPUs" (broadcast).
pub const MAX_XAPIC_DESTINATION: u32 = 0xfe;

impl ApicMode {
    /// Whether an IPI in this mode can name `apic_id` as its destination.
    pub fn can_address(self, apic_id: u32) -> bool {
        match self {
            ApicMode::XApic => apic_id <= MAX_XAPIC_DESTINATION,
            ApicMode::X2Apic => apic_id != u32::MAX, // 0xffffffff is x2APIC's broadcast
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ApicMode::XApic => "xAPIC",
            ApicMode::X2Apic => "x2APIC",
        }
    }
}
