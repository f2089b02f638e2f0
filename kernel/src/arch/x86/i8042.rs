//! The PC's 8042 keyboard controller: just enough to set the keyboard's
//! LEDs, for the panic's blink (Linux blinks them the same way from
//! `panic()`, through `i8042_panic_blink`).
//!
//! The controller has a data port (0x60) and a status port (0x64). A byte
//! written to the data port goes to the keyboard once the controller's
//! input buffer is empty (status bit 1 clear); the keyboard command 0xED
//! ("set LEDs") takes one data byte: bit 0 Scroll Lock, bit 1 Num Lock, bit 2
//! Caps Lock, and answers each byte with an acknowledgement (0xFA) in the
//! output buffer (status bit 0), which we read and drop: the keyboard's
//! interrupt is masked after a panic, so nobody else would.
//!
//! On a machine without the controller nothing answers port 0x64, and an
//! unclaimed ISA port reads 0xff.

use x86_64::instructions::port::Port;

const DATA_PORT: u16 = 0x60;
const STATUS_PORT: u16 = 0x64;
const OUTPUT_FULL: u8 = 1 << 0;
const INPUT_FULL: u8 = 1 << 1;
const SET_LEDS: u8 = 0xed;
/// How many times to look for a free input buffer before giving up on a
/// byte: a controller that stops answering must not hang the panic's halt
/// loop. Each look is two or more status reads, about a microsecond each on
/// real hardware (a VM exit under KVM): tens of milliseconds in all, once,
/// since a failed toggle ends the blink. A working 8042 takes a byte in well
/// under a millisecond.
const PATIENCE: u32 = 10_000;

fn status() -> u8 {
    // SAFETY: reading the 8042's status register has no side effect.
    unsafe { Port::new(STATUS_PORT).read() }
}

/// Whether a keyboard controller answers.
pub fn is_present() -> bool {
    status() != 0xff
}

/// Reads and drops whatever waits in the output buffer (acknowledgements).
fn drain() {
    for _ in 0..16 {
        if status() & OUTPUT_FULL == 0 {
            return;
        }
        // SAFETY: reading the data port takes the waiting byte; nobody else
        // reads it after a panic.
        let _: u8 = unsafe { Port::new(DATA_PORT).read() };
    }
}

/// Sends `byte` to the keyboard once the input buffer is free; false if it
/// never became free.
fn send(byte: u8) -> bool {
    for _ in 0..PATIENCE {
        drain();
        if status() & INPUT_FULL == 0 {
            // SAFETY: the input buffer is empty; the byte goes to the keyboard.
            unsafe { Port::new(DATA_PORT).write(byte) };
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Sets the keyboard's LEDs (bit 0 Scroll, 1 Num, 2 Caps); false if the
/// controller did not take the command.
pub fn set_leds(leds: u8) -> bool {
    send(SET_LEDS) && send(leds & 0b111)
}
