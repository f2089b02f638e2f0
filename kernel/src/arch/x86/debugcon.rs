//! QEMU's ISA debug console: an I/O port that stores every byte written to it
//! in a file on the host (`-debugcon file:PATH`) and does nothing else.
//!
//! The trace's dumps go here rather than to the serial port: the console's
//! text is never interleaved with binary data, and there is no UART to poll
//! (a 16550 must be asked whether it can take each byte). On a machine
//! without the device the writes go nowhere.
//!
//! A whole buffer goes out with one `rep outsb` (SDM Vol. 2B, OUTS): under
//! KVM a string I/O instruction exits to the host once per batch of bytes, not
//! once per byte, which matters for a dump of megabytes.

use core::arch::asm;

/// Writes `bytes` to I/O port `port` in order.
pub fn write(port: u16, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    // SAFETY: OUTSB reads `rcx` bytes from [rsi] upwards (the direction flag
    // is clear, as the ABI guarantees at every call) and writes them to the
    // port; `bytes` is that many readable bytes. Writing to the debug console
    // port has no effect on memory or on any device the kernel drives.
    unsafe {
        asm!("rep outsb",
             in("dx") port,
             inout("rsi") bytes.as_ptr() => _,
             inout("rcx") bytes.len() => _,
             options(nostack, preserves_flags, readonly))
    };
}
