//! The NMI chain: who an NMI was for.
//!
//! An NMI carries no vector of its own to say who sent it, and two sent close
//! together may arrive as one (SDM Vol. 3A "NMI Handling": while one is being
//! handled a second is held, a third is lost). So, as Linux's
//! `register_nmi_handler()`, the handlers are asked in turn, and the first
//! that claims the NMI ends the chain. They are asked in the order of
//! [`NmiStage`], whenever each was registered; an NMI that nobody claims is
//! reported by `idt` as an unexpected exception, as before the chain existed.
//!
//! NMI handlers run on their own IST stack, even inside a spinlock's critical
//! section with interrupts off: they may not take locks or allocate.

use core::sync::atomic::{AtomicBool, Ordering};

use spin::Once;

use crate::percpu::cpu_local;
use crate::trace;

/// Where a handler runs in the chain; earlier stages first.
#[derive(Clone, Copy)]
pub enum NmiStage {
    /// Stops this CPU for good (the panic path's stop signal): it must run
    /// before anything else takes the NMI as its own.
    Stop,
    /// Answers a question another CPU asked with the NMI (where are you?).
    Sample,
    /// Ends a wait that only an NMI can end (a `hlt` with interrupts off).
    EndWait,
}

const STAGES: usize = 3;

/// A handler: gets the interrupted instruction pointer, returns whether the
/// NMI was for it.
pub type NmiHandler = fn(interrupted_rip: u64) -> bool;

static CHAIN: [Once<NmiHandler>; STAGES] = [const { Once::new() }; STAGES];

cpu_local! {
    /// Set while this CPU runs its NMI handler, on the NMI's own IST stack.
    /// An NMI nobody claims leaves it set: `idt` turns it into a panic, which
    /// then runs on that stack for good.
    static IN_NMI: AtomicBool = AtomicBool::new(false);
}

/// Whether this CPU is inside its NMI handler (or a panic that began there).
/// Such a CPU must not enable interrupts: the `iret` of any interrupt would
/// unblock NMIs (SDM Vol. 3A, "Handling Multiple NMIs"), and the next NMI
/// would start again at the top of the IST stack this CPU is still using.
/// Only with per-CPU data installed (every CPU that can receive an NMI).
pub fn running_here() -> bool {
    IN_NMI.get().load(Ordering::Relaxed)
}

/// For a CPU that starts again after INIT, which may have caught it inside
/// its NMI handler (a parked CPU asked where it is).
pub(super) fn reset_after_restart() {
    IN_NMI.get().store(false, Ordering::Relaxed);
}

/// Puts `handler` at `stage` of the chain. One handler per stage.
pub fn register(stage: NmiStage, handler: NmiHandler) {
    let mut won = false;
    CHAIN[stage as usize].call_once(|| {
        won = true;
        handler
    });
    assert!(won, "irq: a second NMI handler for one stage");
}

/// Asks each registered handler in stage order; false if none claimed it.
pub(super) fn dispatch(interrupted_rip: u64) -> bool {
    // Only online CPUs are sent NMIs, and their per-CPU data (the ring) is
    // installed: recording is safe here.
    IN_NMI.get().store(true, Ordering::Relaxed);
    trace::record(trace::format::NMI_BEGIN, trace::format::NMI, interrupted_rip, 0, 0);
    let claimed =
        CHAIN.iter().filter_map(|slot| slot.get()).any(|handler| handler(interrupted_rip));
    trace::record(trace::format::NMI_END, trace::format::NMI, 0, 0, 0);
    if claimed {
        // Unclaimed, it goes on to a panic, still on the NMI stack.
        IN_NMI.get().store(false, Ordering::Relaxed);
    }
    claimed
}
