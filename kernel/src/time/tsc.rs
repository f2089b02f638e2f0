//! TSC calibration: how many TSC cycles make a second.
//!
//! In order of preference (as Linux's `native_calibrate_tsc()` /
//! `pit_calibrate_tsc()`):
//! 1. CPUID leaf 15H: TSC = crystal clock * EBX / EAX, when the crystal
//!    frequency (ECX) is enumerated (SDM Vol. 3B, "Determining the Processor
//!    Base Frequency" / "Time Stamp Counter and Core Crystal Clock Information").
//!    Leaf 16H's "base frequency" is not used: it need not be the TSC's rate
//!    (a hypervisor may report the host's nominal speed), and Linux uses it
//!    only to fill in a missing crystal frequency on known models.
//! 2. Counting TSC cycles over a known span of the 8254 PIT (1.193182 MHz):
//!    a TSC/PIT reading pair at each end of a 10 ms countdown, each pair
//!    read close together (the best of a few tries), so that an SMI or a host
//!    preempting the VM between the two ends does not matter; the median of
//!    five such windows.

use crate::arch::x86::interrupts;

use crate::arch::x86::{cpu, pit};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    CpuidLeaf15,
    Pit,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::CpuidLeaf15 => "CPUID leaf 0x15",
            Source::Pit => "PIT",
        }
    }
}

fn from_cpuid() -> Option<(u64, Source)> {
    if cpu::max_basic_leaf() < 0x15 {
        return None;
    }
    let leaf = cpu::cpuid(0x15);
    let (denominator, numerator, crystal_hz) = (leaf.eax as u64, leaf.ebx as u64, leaf.ecx as u64);
    (denominator != 0 && numerator != 0 && crystal_hz != 0)
        .then(|| (crystal_hz * numerator / denominator, Source::CpuidLeaf15))
}

fn from_pit() -> u64 {
    const TICKS_10MS: u16 = (pit::PIT_HZ / 100) as u16;
    let mut rates: [u64; 5] = interrupts::without_interrupts(|| {
        [(); 5].map(|_| {
            let (cycles, ticks) = pit::tsc_cycles_per_pit_ticks(TICKS_10MS);
            cycles * pit::PIT_HZ / ticks.max(1)
        })
    });
    rates.sort_unstable();
    rates[2]
}

/// Measures the TSC frequency, makes the clock use it, and says how it was found.
pub fn calibrate() -> (u64, Source) {
    let (hz, source) = from_cpuid().unwrap_or_else(|| (from_pit(), Source::Pit));
    super::set_tsc_frequency(hz);
    (hz, source)
}
