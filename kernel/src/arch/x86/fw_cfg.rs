//! QEMU's firmware configuration device (fw_cfg), read through I/O ports.
//!
//! The runner hands the kernel its arguments as `-fw_cfg name=opt/kernel/args,...`;
//! the kernel reads them here, so arguments change without rebuilding the disk
//! image. Protocol (QEMU docs/specs/fw_cfg.rst): write a 16-bit selector to port
//! 0x510, then read the item's bytes one at a time from port 0x511. Selector 0
//! reads "QEMU"; selector 0x19 is a directory of named files, all big-endian.

use spin::mutex::SpinMutex;
use x86_64::instructions::port::Port;

use super::interrupts;

const SELECTOR_PORT: u16 = 0x510;
const DATA_PORT: u16 = 0x511;

const SIGNATURE: u16 = 0x0000;
const NUMBER_OF_CPUS: u16 = 0x0005;
const FILE_DIRECTORY: u16 = 0x0019;

/// Selecting an item and reading it must not interleave between CPUs. A plain
/// spin lock taken with interrupts off: no interrupt handler on this CPU can
/// then try to take it again, and no thread switch can happen while it is
/// held (the kernel only switches threads from an interrupt or when
/// preemption is re-enabled), which is what the kernel's own `SpinLock` would
/// add; arch code stays below `sync`.
static DEVICE: SpinMutex<()> = SpinMutex::new(());

/// Selects item `selector` and hands `read` a function that returns its next
/// byte: items are read front to back, one byte per port read.
fn with_item<R>(selector: u16, read: impl FnOnce(&mut dyn FnMut() -> u8) -> R) -> R {
    interrupts::without_interrupts(|| {
        let _guard = DEVICE.lock();
        // SAFETY: 0x510/0x511 are fw_cfg's ports under QEMU; elsewhere reads
        // return 0xff and writes go nowhere, which `is_present()` detects.
        unsafe { Port::<u16>::new(SELECTOR_PORT).write(selector) };
        let mut data = Port::<u8>::new(DATA_PORT);
        // SAFETY: as above.
        read(&mut || unsafe { data.read() })
    })
}

/// Reads `buffer.len()` bytes of item `selector` from its start.
fn read_item(selector: u16, buffer: &mut [u8]) {
    with_item(selector, |next| buffer.iter_mut().for_each(|byte| *byte = next()));
}

pub fn is_present() -> bool {
    let mut signature = [0u8; 4];
    read_item(SIGNATURE, &mut signature);
    &signature == b"QEMU"
}

/// The number of CPUs QEMU was started with (`-smp`): an independent check on MADT.
pub fn cpu_count() -> Option<u16> {
    if !is_present() {
        return None;
    }
    let mut count = [0u8; 2];
    read_item(NUMBER_OF_CPUS, &mut count);
    Some(u16::from_le_bytes(count))
}

/// Reads the named file into `buffer`; returns its full size (which may exceed
/// the buffer: only the first `buffer.len()` bytes are read).
pub fn read_file(name: &str, buffer: &mut [u8]) -> Option<usize> {
    if !is_present() {
        return None;
    }
    let (selector, size) = find_file(name)?;
    let length = buffer.len().min(size);
    read_item(selector, &mut buffer[..length]);
    Some(size)
}

/// Walks the file directory: a u32 count, then 64-byte entries of
/// {u32 size, u16 selector, u16 reserved, [u8; 56] name}.
fn find_file(name: &str) -> Option<(u16, usize)> {
    with_item(FILE_DIRECTORY, |next| {
        let mut read = |bytes: &mut [u8]| bytes.iter_mut().for_each(|b| *b = next());
        let mut count = [0u8; 4];
        read(&mut count);
        let mut entry = [0u8; 64];
        for _ in 0..u32::from_be_bytes(count) {
            read(&mut entry);
            let name_bytes = &entry[8..];
            let name_length = name_bytes.iter().position(|&b| b == 0).unwrap_or(name_bytes.len());
            if &name_bytes[..name_length] == name.as_bytes() {
                let size = u32::from_be_bytes(entry[0..4].try_into().unwrap()) as usize;
                return Some((u16::from_be_bytes(entry[4..6].try_into().unwrap()), size));
            }
        }
        None
    })
}
