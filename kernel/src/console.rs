//! The serial console (COM1, a 16550 UART at I/O port 0x3f8).
//!
//! All output goes through one lock, taken with interrupts disabled so that an
//! interrupt handler that prints cannot deadlock against the code it interrupted,
//! and held for a whole line so lines from different CPUs never interleave.
//! The panic path uses [`emergency_write`], which does not wait for that lock.

use core::fmt::{self, Write};

use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550, Uart16550Tty};

use crate::sync::SpinLock;

const COM1: u16 = 0x3f8;

static SERIAL: SpinLock<Option<Uart16550Tty<PioBackend>>> = SpinLock::new(None);

pub fn init() {
    // SAFETY: COM1 is the standard PC serial port and nothing else in the kernel
    // drives these I/O ports (the emergency writer only writes bytes, see below).
    let port = unsafe { Uart16550Tty::new_port(COM1, Config::default()) };
    *SERIAL.lock_irqsave() = port.ok();
}

/// Writes formatted text as one unit.
pub fn print(args: fmt::Arguments) {
    if let Some(serial) = SERIAL.lock_irqsave().as_mut() {
        let _ = serial.write_fmt(args);
    }
}

/// Writes bytes that should be text (a user program's output) as one unit;
/// what is not UTF-8 is shown as U+FFFD.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(serial) = SERIAL.lock_irqsave().as_mut() {
        for chunk in bytes.utf8_chunks() {
            let _ = serial.write_str(chunk.valid());
            if !chunk.invalid().is_empty() {
                let _ = serial.write_str("\u{fffd}");
            }
        }
    }
}

/// Writes without taking the console lock: for the panic report only, when the
/// lock may be held by a CPU that has been stopped and will never release it.
/// It uses a second handle on the UART that init() already configured, and
/// does not configure it again; writing its data register beside a CPU that is
/// still printing at worst interleaves characters.
pub fn emergency_write(args: fmt::Arguments) {
    struct Raw(Uart16550<PioBackend>);
    impl Write for Raw {
        fn write_str(&mut self, text: &str) -> fmt::Result {
            for byte in text.bytes() {
                if byte == b'\n' {
                    self.0.send_bytes_exact(b"\r");
                }
                self.0.send_bytes_exact(&[byte]);
            }
            Ok(())
        }
    }
    // SAFETY: COM1 is the console UART, configured at boot; see above for why a
    // second handle is acceptable here.
    if let Ok(port) = unsafe { Uart16550::new_port(COM1) } {
        let _ = Raw(port).write_fmt(args);
    }
}

/// Waits, at most about `patience` status reads, until the UART has sent
/// every byte it was given (the transmitter, not just its holding register,
/// is empty: LSR bit 6). Under QEMU that means the bytes have left the
/// emulated UART for the host side, so a host that stops the guest next
/// loses none of them. Takes no lock, as `emergency_write`.
pub fn wait_until_sent(patience: u32) {
    use uart_16550::spec::registers::LSR;
    // SAFETY: as in `emergency_write`: a second handle on the configured
    // UART; reading its line status register has no effect on the others.
    if let Ok(mut port) = unsafe { Uart16550::new_port(COM1) } {
        for _ in 0..patience {
            if port.lsr().contains(LSR::TRANSMITTER_EMPTY) {
                return;
            }
            core::hint::spin_loop();
        }
    }
}

pub fn is_locked() -> bool {
    SERIAL.is_locked()
}

/// For a crash test: take the console lock and never give it back, spinning
/// with interrupts disabled, as a CPU stuck inside `print` would.
pub fn hold_lock_forever() -> ! {
    let guard = SERIAL.lock_irqsave();
    core::mem::forget(guard);
    loop {
        core::hint::spin_loop();
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
