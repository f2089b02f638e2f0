//! The 8254 programmable interval timer, used only as a known clock to measure
//! the TSC against. Its input runs at 1.193182 MHz on every PC.
//!
//! Channel 2 is the one whose gate software controls (bit 0 of port 0x61) and
//! whose output it can read (bit 5 of port 0x61), so the CPU can poll for the end
//! of a count without an interrupt. This is Linux's `pit_calibrate_tsc()` method.

use x86_64::instructions::port::Port;

pub const PIT_HZ: u64 = 1_193_182;

const CHANNEL2_DATA: u16 = 0x42;
const MODE_COMMAND: u16 = 0x43;
const SPEAKER_CONTROL: u16 = 0x61;
const GATE2: u8 = 1 << 0;
const SPEAKER_ENABLE: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;
/// Channel 2, access lobyte/hibyte, mode 0 (interrupt on terminal count), binary.
const CHANNEL2_MODE0: u8 = 0b10_11_000_0;

/// Counts `ticks` PIT periods on channel 2 and returns how many TSC cycles passed.
pub fn tsc_cycles_during(ticks: u16) -> u64 {
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT's channel 2 and its gate on
    // every PC; only this function touches them, with interrupts off (caller).
    unsafe {
        let mut control = Port::<u8>::new(SPEAKER_CONTROL);
        let value = control.read();
        control.write((value & !SPEAKER_ENABLE) | GATE2);
        Port::<u8>::new(MODE_COMMAND).write(CHANNEL2_MODE0);
        let mut data = Port::<u8>::new(CHANNEL2_DATA);
        data.write(ticks as u8);
        data.write((ticks >> 8) as u8);
        // Counting starts with the high byte; OUT2 rises when it reaches zero.
        let start = super::cpu::rdtsc();
        while control.read() & OUT2 == 0 {
            core::hint::spin_loop();
        }
        super::cpu::rdtsc() - start
    }
}
