//! How late a plain host thread wakes from a short sleep: the floor under
//! every wake-up in the guest.
//!
//! Under TCG a guest timer is a QEMU timer: the host must wake QEMU's main
//! loop when it is due, and then wake (or interrupt) the vCPU thread. So a
//! guest thread can never wake more punctually than a host thread does on the
//! same host at the same time. While a `HOSTSTAT` phase runs, a probe thread
//! sleeps in the same pattern as `bench=tlb`'s real-time thread (2.0 to 3.2 ms)
//! and records how late each sleep ended; the runner prints the percentiles
//! beside the per-thread figures.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running probe; `stop()` ends it and hands back its samples.
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<u64>>,
}

impl Probe {
    pub fn start() -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut late_us = Vec::new();
            let mut i = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                let delay = Duration::from_micros(2_000 + (i % 5) * 300);
                let start = Instant::now();
                std::thread::sleep(delay);
                late_us.push(start.elapsed().saturating_sub(delay).as_micros() as u64);
                i += 1;
            }
            late_us
        });
        Probe { stop, thread }
    }

    /// Stops the probe; its samples, sorted.
    pub fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = self.thread.join().unwrap_or_default();
        samples.sort_unstable();
        samples
    }
}

/// Nearest-rank percentile of sorted samples, as the kernel's benchmarks take it.
pub fn percentile(sorted: &[u64], percent: usize) -> u64 {
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted.get(rank - 1).copied().unwrap_or(0)
}

/// The report line for a phase.
pub fn line(label: &str, sorted: &[u64]) -> String {
    if sorted.is_empty() {
        return format!("HOST {label} host thread wake-up: no samples (phase too short)");
    }
    format!(
        "HOST {label} host thread wake-up (the floor under any guest wake-up): samples={} late p50_us={} p99_us={} max_us={}",
        sorted.len(),
        percentile(sorted, 50),
        percentile(sorted, 99),
        sorted[sorted.len() - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&samples, 50), 50);
        assert_eq!(percentile(&samples, 99), 99);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 99), 0);
    }

    #[test]
    fn a_probe_records_sleeps_that_end_late_or_on_time() {
        let probe = Probe::start();
        std::thread::sleep(Duration::from_millis(30));
        let samples = probe.stop();
        assert!(samples.len() >= 3, "only {} samples in 30 ms of 2-3 ms sleeps", samples.len());
        assert!(line("x", &samples).starts_with(
            "HOST x host thread wake-up (the floor under any guest wake-up): samples="
        ));
    }
}
