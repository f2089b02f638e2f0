//! Markers that let the host runner report what the host did to QEMU's
//! threads during a measured phase.
//!
//! Under TCG each virtual CPU is a thread on the host. When that thread waits
//! for a host core, the virtual CPU stops, but its TSC (the host's) keeps
//! counting: a benchmark sees a late wake-up or a long preempt-off span that
//! no kernel code caused. Nothing inside the guest can tell the two apart.
//! The host can: Linux counts, per thread, the time spent running and the time
//! spent runnable but waiting for a core.
//!
//! The protocol is two console lines around the phase:
//!
//! ```text
//! HOSTSTAT begin tlb.spin
//! HOSTSTAT end tlb.spin
//! ```
//!
//! The label is one word. The runner (boot/src/host_stats.rs) reads the
//! serial output as it arrives, snapshots QEMU's threads at each line, and
//! prints a `HOST tlb.spin ...` block after the `end` line: each thread's run
//! and wait time over the phase. See docs/runner.md. Outside the runner the
//! lines are just printed.

/// Marks the start of the phase `label`.
pub fn begin(label: &str) {
    crate::println!("HOSTSTAT begin {label}");
}

/// Marks the end of the phase `label`, begun with [`begin`].
pub fn end(label: &str) {
    crate::println!("HOSTSTAT end {label}");
}
