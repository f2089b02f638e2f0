//! TSC calibration: how many TSC cycles make a second.
//!
//! In order of preference (as Linux's `native_calibrate_tsc()` /
//! `pit_calibrate_tsc()`):
//! 1. CPUID leaf 15H: TSC = crystal clock * EBX / EAX, when the crystal
//!    frequency (ECX) is enumerated (SDM Vol. 3B, "Determining the Processor
//!    Base Frequency" / "Time Stamp Counter and Core Crystal Clock Information").
//! 2. CPUID leaf 16H: the processor base frequency in MHz, which is the TSC
//!    frequency on CPUs with an invariant TSC.
//! 3. Counting TSC cycles over a known span of the 8254 PIT (1.193182 MHz).
//!    Five 10 ms windows; the smallest count wins, as a window stretched by an
//!    SMI or a host preempting the VM can only count too many cycles.

use x86_64::instructions::interrupts;

use crate::arch::x86::{cpu, pit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CpuidLeaf15,
    CpuidLeaf16,
    Pit,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::CpuidLeaf15 => "CPUID leaf 0x15",
            Source::CpuidLeaf16 => "CPUID leaf 0x16",
            Source::Pit => "PIT",
        }
    }
}

fn from_cpuid() -> Option<(u64, Source)> {
    let max = cpu::max_basic_leaf();
    if max >= 0x15 {
        let leaf = cpu::cpuid(0x15);
        let (denominator, numerator, crystal_hz) = (leaf.eax as u64, leaf.ebx as u64, leaf.ecx as u64);
        if denominator != 0 && numerator != 0 && crystal_hz != 0 {
            return Some((crystal_hz * numerator / denominator, Source::CpuidLeaf15));
        }
    }
    if max >= 0x16 {
        let base_mhz = cpu::cpuid(0x16).eax as u64 & 0xffff;
        if base_mhz != 0 {
            return Some((base_mhz * 1_000_000, Source::CpuidLeaf16));
        }
    }
    None
}

fn from_pit() -> u64 {
    const TICKS_10MS: u16 = (pit::PIT_HZ / 100) as u16;
    let fewest_cycles = interrupts::without_interrupts(|| {
        (0..5).map(|_| pit::tsc_cycles_during(TICKS_10MS)).min().unwrap()
    });
    fewest_cycles * pit::PIT_HZ / TICKS_10MS as u64
}

/// Measures the TSC frequency, makes the clock use it, and says how it was found.
pub fn calibrate() -> (u64, Source) {
    let (hz, source) = from_cpuid().unwrap_or_else(|| (from_pit(), Source::Pit));
    super::set_tsc_frequency(hz);
    (hz, source)
}
