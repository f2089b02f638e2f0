//! x86_64: CPU features, descriptor tables, interrupts, the local APIC, the
//! legacy PIC and PIT, and QEMU's fw_cfg and debug-exit devices.

pub mod cpu;
pub mod fw_cfg;
pub mod gdt;
pub mod gs;
pub mod idt;
pub mod lapic;
pub mod pic;
pub mod pit;
pub mod qemu_exit;
pub mod reset;
