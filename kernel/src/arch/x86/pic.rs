//! The legacy 8259A programmable interrupt controllers, which this kernel does
//! not use: the local APIC delivers its interrupts instead.
//!
//! Masking alone is not enough: the PICs power up delivering IRQ 0-7 on vectors
//! 8-15, where the CPU's exceptions live, so a stray interrupt would look like a
//! double fault. They are first remapped to 0x20-0x2f, then fully masked.
//! (Intel 8259A data sheet, ICW1-ICW4; OSDev wiki "8259 PIC".)

use x86_64::instructions::port::Port;

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;

const ICW1_INIT_WITH_ICW4: u8 = 0x11;
const ICW4_8086_MODE: u8 = 0x01;
pub const MASTER_VECTOR_BASE: u8 = 0x20;
pub const SLAVE_VECTOR_BASE: u8 = 0x28;

fn write(port: u16, value: u8) {
    // SAFETY: 0x20/0x21/0xa0/0xa1 are the PICs' ports on every PC; only this
    // module touches them.
    unsafe { Port::new(port).write(value) };
    // A write to the unused port 0x80 gives an old PIC time to settle.
    // SAFETY: port 0x80 is the POST diagnostic port; writes to it have no effect.
    unsafe { Port::<u8>::new(0x80).write(0) };
}

/// Remaps both PICs away from the exception vectors, then masks every IRQ.
pub fn remap_and_mask() {
    write(MASTER_COMMAND, ICW1_INIT_WITH_ICW4);
    write(SLAVE_COMMAND, ICW1_INIT_WITH_ICW4);
    write(MASTER_DATA, MASTER_VECTOR_BASE); // ICW2: vector base
    write(SLAVE_DATA, SLAVE_VECTOR_BASE);
    write(MASTER_DATA, 1 << 2); // ICW3: the slave hangs off IRQ 2
    write(SLAVE_DATA, 2); // ICW3: the slave's cascade identity
    write(MASTER_DATA, ICW4_8086_MODE);
    write(SLAVE_DATA, ICW4_8086_MODE);
    write(MASTER_DATA, 0xff); // OCW1: mask all
    write(SLAVE_DATA, 0xff);
}
