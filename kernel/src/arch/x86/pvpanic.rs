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
//! Without the device nothing answers the port: an ISA read of an
//! unclaimed port returns all ones, 0xff, which no real device reports
//! (bits 2-7 are reserved and read 0).

use x86_64::instructions::port::Port;

/// The device's port (QEMU's default `ioport`).
pub const PORT: u16 = 0x505;
/// The host should handle the panic.
pub const PANICKED: u8 = 1 << 0;
/// The guest handles the panic itself.
pub const CRASH_LOADED: u8 = 1 << 1;

/// The events the device supports, or None when there is no device.
pub fn probe() -> Option<u8> {
    // SAFETY: reading the pvpanic port has no side effect, and an unclaimed
    // ISA port just reads 0xff.
    let events: u8 = unsafe { Port::new(PORT).read() };
    (events != 0xff && events & (PANICKED | CRASH_LOADED) != 0).then_some(events)
}

/// Reports `event` (PANICKED or CRASH_LOADED) to the host.
pub fn signal(event: u8) {
    // SAFETY: the write only reports the event to the device (and goes
    // nowhere without one); QEMU then acts as `-action panic=` says.
    unsafe { Port::new(PORT).write(event) };
}
