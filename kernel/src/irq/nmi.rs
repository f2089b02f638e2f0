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

use spin::Once;

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
    trace::record(trace::format::NMI_BEGIN, trace::format::NMI, interrupted_rip, 0, 0);
    let claimed =
        CHAIN.iter().filter_map(|slot| slot.get()).any(|handler| handler(interrupted_rip));
    trace::record(trace::format::NMI_END, trace::format::NMI, 0, 0, 0);
    claimed
}
