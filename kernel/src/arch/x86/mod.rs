//! x86_64: CPU features, descriptor tables, interrupts, the local APIC, the
//! legacy PIC and PIT, and QEMU's fw_cfg, debug-exit, debug console and pvpanic devices.

pub mod apic_mode;
pub mod apic_timer;
pub mod control;
pub mod cpu;
pub mod debugcon;
pub mod entry;
pub mod exception;
pub mod fpu;
pub mod fw_cfg;
pub mod gdt;
pub mod gs;
pub mod i8042;
pub mod idt;
pub mod interrupts;
pub mod lapic;
pub mod mmu;
pub mod pic;
pub mod pit;
pub mod pvpanic;
pub mod qemu_exit;
pub mod reset;
pub mod switch;
pub mod syscall;
pub mod trampoline;
pub mod user_copy;
pub mod vectors;
