//! QEMU's pvpanic device: how a guest tells its host that it panicked.
//!
//! The ISA device (`-device pvpanic`, ACPI id QEMU0001) is one I/O port,
//! 0x505 unless configured otherwise (QEMU docs/specs/pvpanic.rst). Reading
//! it returns the events the device supports; writing an event's bit
//! reports it:
//! - bit 0, PANICKED: the guest panicked and the host should handle it
//!   (QEMU raises the QMP event `GUEST_PANICKED` and then does what
//!   `-action panic=` says);
//! - bit 1, CRASH_LOADED: the guest panicked but handles it itself (a crash
//!   kernel, or here a timed reboot): QMP `GUEST_CRASHLOADED`.
//!
//! The device is found at boot, not by reading the port blindly: on a real
//! PC, port 0x505 may belong to something else (on many Intel chipsets the
//! GPIO block starts at 0x500), and writing it would change that. QEMU's
//! device announces itself, with its port, in the fw_cfg file
//! `etc/pvpanic-port`; the port then tells which events it takes. Both are
//! looked up once at boot: the panic path must not take fw_cfg's lock,
//! which a stopped CPU may hold.

use core::sync::atomic::{AtomicU8, AtomicU16, Ordering};

use x86_64::instructions::port::Port;

/// The host should handle the panic.
pub const PANICKED: u8 = 1 << 0;
/// The guest handles the panic itself.
pub const CRASH_LOADED: u8 = 1 << 1;

/// The device's port, 0 when there is none; and the events it supports.
static PORT: AtomicU16 = AtomicU16::new(0);
static EVENTS: AtomicU8 = AtomicU8::new(0);

/// Looks for the device (QEMU's fw_cfg file) and remembers its port and
/// the events it supports. Runs once at boot.
pub fn detect() {
    let mut port = [0u8; 2];
    if super::fw_cfg::read_file("etc/pvpanic-port", &mut port) != Some(2) {
        return;
    }
    let port = u16::from_le_bytes(port);
    // SAFETY: fw_cfg says QEMU's pvpanic device answers this port; reading
    // it only returns the events it supports.
    let events: u8 = unsafe { Port::new(port).read() };
    EVENTS.store(events & (PANICKED | CRASH_LOADED), Ordering::Relaxed);
    PORT.store(port, Ordering::Relaxed);
}

/// The device's port and the events it supports, if there is one.
pub fn device() -> Option<(u16, u8)> {
    let port = PORT.load(Ordering::Relaxed);
    (port != 0).then(|| (port, EVENTS.load(Ordering::Relaxed)))
}

/// Reports `event` (one of the supported bits) to the host.
pub fn signal(event: u8) {
    if let Some((port, events)) = device()
        && events & event != 0
    {
        // SAFETY: `detect` found QEMU's pvpanic device at this port; the
        // write only reports the event, and QEMU acts as `-action panic=` says.
        unsafe { Port::new(port).write(event) };
    }
}
