//! Ending a QEMU run through the `isa-debug-exit` device.
//!
//! The runner adds `-device isa-debug-exit,iobase=0xf4,iosize=0x04`; writing a
//! value V to port 0xf4 makes QEMU exit with status (V << 1) | 1. The codes
//! below map to 33, 35 and 37, which QEMU itself never uses, so the runner can
//! tell the kernel's verdict from QEMU's own exits (0 for a shutdown, 1 for an
//! error).

use x86_64::instructions::port::Port;

const DEBUG_EXIT_PORT: u16 = 0xf4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// QEMU exits with 33.
    Success = 0x10,
    /// QEMU exits with 35.
    Failure = 0x11,
    /// QEMU exits with 37: a panic's report is out (`panic=exit`).
    Panicked = 0x12,
}

/// Exits QEMU; on a machine without the device, halts instead.
pub fn exit(code: ExitCode) -> ! {
    // SAFETY: writing to the debug-exit port has no effect other than ending the
    // run; without the device the write goes nowhere.
    unsafe { Port::new(DEBUG_EXIT_PORT).write(code as u32) };
    super::cpu::halt_forever()
}
