//! ACPI: finding the tables that describe the machine's CPUs and interrupt
//! controllers.
//!
//! The bootloader hands over the RSDP's address; the `acpi` crate walks
//! RSDP -> XSDT/RSDT -> tables (ACPI 6.5, 5.2.5 "Root System Description
//! Pointer" and 5.2.8 "Extended System Description Table"). The kernel reads
//! one table, the MADT (see `madt`). A machine without ACPI, or without a MADT,
//! gets a clear message and runs on the boot CPU alone.

mod madt;
mod madt_tests;

use core::ptr::NonNull;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use spin::Once;
use x86_64::PhysAddr;

pub use madt::Platform;

/// Maps ACPI tables through the bootloader's physical memory window: every
/// physical address is already mapped, so "mapping" is an addition.
#[derive(Clone, Copy)]
struct PhysicalWindow;

impl AcpiHandler for PhysicalWindow {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virtual_address = crate::mm::phys_to_virt(PhysAddr::new(physical_address as u64));
        let pointer =
            NonNull::new(virtual_address.as_mut_ptr::<T>()).expect("ACPI table at a null address");
        // SAFETY: the window maps all physical memory, so `size` bytes at
        // `pointer` are mapped; the ACPI crate only reads them.
        unsafe { PhysicalMapping::new(physical_address, pointer, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

static PLATFORM: Once<Platform> = Once::new();

/// What the machine looks like: from the MADT, or the boot CPU alone.
pub fn platform() -> &'static Platform {
    PLATFORM.get().expect("acpi::platform() before acpi::init()")
}

/// Reads the MADT and prints what it lists.
pub fn init(rsdp: Option<u64>, boot_apic_id: u32) -> &'static Platform {
    PLATFORM.call_once(|| {
        let platform = read_madt(rsdp, boot_apic_id).unwrap_or_else(|reason| {
            log::warn!("acpi: {reason}; continuing with the boot CPU only");
            Platform::boot_cpu_only(boot_apic_id)
        });
        platform.print();
        platform
    })
}

fn read_madt(rsdp: Option<u64>, boot_apic_id: u32) -> Result<Platform, alloc::string::String> {
    let rsdp = rsdp.ok_or("the bootloader found no RSDP (is ACPI disabled?)")?;
    // SAFETY: the bootloader found a valid RSDP at this physical address.
    let tables = unsafe { AcpiTables::from_rsdp(PhysicalWindow, rsdp as usize) }
        .map_err(|error| alloc::format!("the RSDP at {rsdp:#x} is not usable ({error:?})"))?;
    let madt = tables
        .find_table::<acpi::madt::Madt>()
        .map_err(|error| alloc::format!("no MADT (APIC) table ({error:?})"))?;
    madt::parse(madt.get(), boot_apic_id).map_err(|malformed| alloc::format!("{malformed}"))
}
