//! The 8254 programmable interval timer, used only as a known clock to measure
//! the TSC against. Its input runs at 1.193182 MHz on every PC.
//!
//! Channel 2 is the one whose gate software controls (bit 0 of port 0x61)
//! without an interrupt attached. It counts down from 0xffff while the CPU
//! reads its count (latch command, then two byte reads) next to the TSC, as
//! Linux's `quick_pit_calibrate()` does.

use x86_64::instructions::port::Port;

pub const PIT_HZ: u64 = 1_193_182;

const CHANNEL2_DATA: u16 = 0x42;
const MODE_COMMAND: u16 = 0x43;
const SPEAKER_CONTROL: u16 = 0x61;
const GATE2: u8 = 1 << 0;
const SPEAKER_ENABLE: u8 = 1 << 1;
/// Channel 2, access lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
// The digits are grouped by the mode register's fields: channel, access, mode, BCD.
#[allow(clippy::unusual_byte_groupings)]
const CHANNEL2_MODE0: u8 = 0b10_11_000_0;

/// Latches and reads channel 2's current count.
#[allow(clippy::unusual_byte_groupings)] // the mode register's fields, as above
fn read_channel2() -> u16 {
    // SAFETY: ports 0x42/0x43 are the PIT's channel 2 and mode register on every
    // PC; only this module touches them, with interrupts off (callers).
    unsafe {
        Port::<u8>::new(MODE_COMMAND).write(0b10_00_0000); // latch channel 2
        let mut data = Port::<u8>::new(CHANNEL2_DATA);
        let low = data.read() as u16;
        let high = data.read() as u16;
        (high << 8) | low
    }
}

/// A (TSC, PIT count) pair whose two halves were read close together: of a
/// few tries, the one with the shortest TSC bracket around the PIT read.
fn paired_reading() -> (u64, u16) {
    (0..8)
        .map(|_| {
            let before = super::cpu::rdtsc();
            let count = read_channel2();
            let after = super::cpu::rdtsc();
            (after - before, before + (after - before) / 2, count)
        })
        .min_by_key(|&(bracket, _, _)| bracket)
        .map(|(_, tsc, count)| (tsc, count))
        .unwrap()
}

/// TSC cycles per `ticks` PIT periods, measured between two paired readings
/// of a free-running countdown: a CPU that is held up (an emulator thread
/// descheduled) between the readings changes nothing, since both clocks keep
/// running; only the bracket of each reading adds error.
pub fn tsc_cycles_per_pit_ticks(ticks: u16) -> (u64, u64) {
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2 and its gate on
    // every PC; only this module touches them, with interrupts off (callers).
    unsafe {
        let mut control = Port::<u8>::new(SPEAKER_CONTROL);
        let value = control.read();
        control.write((value & !SPEAKER_ENABLE) | GATE2);
        Port::<u8>::new(MODE_COMMAND).write(CHANNEL2_MODE0);
        let mut data = Port::<u8>::new(CHANNEL2_DATA);
        data.write(0xff);
        data.write(0xff);
    }
    let (start_tsc, start_count) = paired_reading();
    let (mut end_tsc, mut end_count) = paired_reading();
    while start_count.wrapping_sub(end_count) < ticks {
        (end_tsc, end_count) = paired_reading();
    }
    (end_tsc - start_tsc, start_count.wrapping_sub(end_count) as u64)
}
