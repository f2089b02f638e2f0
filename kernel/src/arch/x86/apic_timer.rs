//! The local APIC timer's registers (SDM Vol. 3A "APIC Timer"): the LVT timer
//! entry (vector, mode, mask), the divide configuration, the initial and the
//! current count. How fast the timer runs and what it is armed for is
//! `time::timer`'s business.

use super::lapic::{self, LVT_MASKED, Register};
use super::vectors::TIMER_VECTOR;

/// Divide configuration 0b0011: divide by 16 (Figure "Divide Configuration Register").
const DIVIDE_BY_16: u32 = 0b0011;
/// Timer mode bits 18:17 of the LVT timer entry: 00 one-shot, 01 periodic.
const LVT_ONE_SHOT: u32 = 0b00 << 17;
const LVT_PERIODIC: u32 = 0b01 << 17;

/// Masks the timer and sets its divisor, leaving the count alone: for
/// measuring its rate without an interrupt.
pub fn mask_for_calibration() {
    let apic = lapic::get();
    apic.write(Register::TimerDivide, DIVIDE_BY_16);
    apic.write(Register::LvtTimer, LVT_MASKED | TIMER_VECTOR as u32);
}

/// Starts counting down from `count` (0 stops the timer).
pub fn set_initial_count(count: u32) {
    lapic::get().write(Register::TimerInitialCount, count);
}

/// Where the countdown is.
pub fn current_count() -> u32 {
    lapic::get().read(Register::TimerCurrentCount)
}

/// Interrupts every `count` ticks until stopped.
pub fn start_periodic(count: u32) {
    let apic = lapic::get();
    apic.write(Register::TimerDivide, DIVIDE_BY_16);
    apic.write(Register::LvtTimer, LVT_PERIODIC | TIMER_VECTOR as u32);
    apic.write(Register::TimerInitialCount, count);
}

/// Puts the timer in one-shot mode, unmasked; [`set_initial_count`] arms it.
pub fn enter_one_shot_mode() {
    let apic = lapic::get();
    apic.write(Register::TimerDivide, DIVIDE_BY_16);
    apic.write(Register::LvtTimer, LVT_ONE_SHOT | TIMER_VECTOR as u32);
}

/// Stops the timer: a zero initial count stops it, the mask keeps a pending
/// expiry from being delivered.
pub fn stop() {
    let apic = lapic::get();
    apic.write(Register::LvtTimer, LVT_MASKED | TIMER_VECTOR as u32);
    apic.write(Register::TimerInitialCount, 0);
}
