//! The interrupt layer: the one shape every local APIC interrupt runs in, and
//! the table through which subsystems claim their vectors.
//!
//! `arch::x86::idt` owns the IDT and the vector numbers; each APIC vector's
//! entry stub only calls [`dispatch`] with its number. Subsystems register a
//! handler for a vector at init with [`register`] (as Linux's `request_irq()`
//! or Asterinas's `IrqLine::on_active()`), so the IDT knows no subsystem, and
//! two policies from above are registered the same way: how to tell that a
//! panic owns the machine ([`set_drop_check`], by `panic`) and what to do on
//! the way out ([`set_return_hook`], by `sched`: the preemption check).
//!
//! Every interrupt, whatever its vector, runs the same steps in this order:
//! 1. **EOI**, first. With the interrupt gate's IF = 0 nothing can nest while
//!    the handler runs, so keeping the vector in service longer protects
//!    nothing; sent first, it is also sent by a handler that never returns
//!    (one that panics, the crash tests'), and a second interrupt of the same
//!    vector raised meanwhile waits in the IRR until IF is next set on this
//!    CPU (the IRET, or the thread the return hook switches to), it is not
//!    lost; a third merges with it into the one IRR bit, which is why the
//!    handlers drain work until none is left
//!    (SDM Vol. 3A "End-of-Interrupt (EOI)", "Interrupt, Task, and Processor
//!    Priority"). Linux's system-vector handlers also acknowledge first.
//! 2. **Drop after a panic**: once a panic owns the machine, nothing else
//!    runs. A reschedule would switch to another thread, a cross-CPU call
//!    would run someone's function (which may spin on a lock a stopped CPU
//!    holds); the panic path's own waits only need the interrupt to end
//!    their `hlt`, which it has.
//! 3. **The handler**, inside an [`InterruptScope`], which counts this CPU's
//!    nesting depth ([`depth`]) for the scheduler and the panic report. A vector nobody
//!    registered runs nothing (the wake vector registers a handler that does
//!    nothing: its IPI only ends a `hlt`).
//! 4. **The return hook** (the preemption check), after the scope has ended,
//!    so that a switch to another thread never happens inside a handler. It
//!    runs for every vector: wherever an interrupt can arrive, the timer could
//!    have arrived, so the check changes how soon a pending reschedule is
//!    honoured, never whether.
//!
//! The spurious vector never gets here: it must not be acknowledged (SDM Vol.
//! 3A "Spurious Interrupt"), so its stub in `idt` returns at once. NMIs have
//! their own chain, in [`nmi`].

pub mod nmi;
pub mod tests;

use core::sync::atomic::{AtomicU32, Ordering};

use spin::Once;

use crate::arch::x86::idt;
use crate::arch::x86::lapic::{self, Ipi};
use crate::arch::x86::vectors::TIMER_VECTOR;
use crate::percpu::{self, cpu_local};
use crate::trace::{self, format};

/// A registered handler for one vector.
struct Line {
    /// Who registered it, for the message of a second registration.
    owner: &'static str,
    handler: fn(),
}

cpu_local! {
    /// How many interrupt handlers are running on this CPU (nested).
    static DEPTH: AtomicU32 = AtomicU32::new(0);
}

static LINES: [Once<Line>; 256] = [const { Once::new() }; 256];
static DROP_CHECK: Once<fn() -> bool> = Once::new();
static RETURN_HOOK: Once<fn()> = Once::new();

/// Connects the IDT's APIC and NMI stubs to this layer. Runs on the boot CPU
/// before its IDT is loaded; the tables are shared by every CPU.
pub fn init() {
    idt::set_interrupt_entry(dispatch);
    idt::set_nmi_entry(nmi::dispatch);
}

/// Makes `handler` run for every interrupt on `vector` (on any CPU), in the
/// shape the module doc describes. One handler per vector: a second
/// registration is a bug and panics.
pub fn register(vector: u8, owner: &'static str, handler: fn()) {
    let line = &LINES[vector as usize];
    let mut won = false;
    line.call_once(|| {
        won = true;
        Line { owner, handler }
    });
    if !won {
        let taken_by = line.get().map_or("?", |line| line.owner);
        panic!("irq: vector {vector:#x} is {taken_by}'s, {owner} cannot have it too");
    }
}

/// Registers how to tell that a panic owns the machine: from then on every
/// interrupt is acknowledged and dropped.
pub fn set_drop_check(panic_in_progress: fn() -> bool) {
    set_once(&DROP_CHECK, panic_in_progress, "the panic drop check");
}

/// Registers what runs after every handler, outside its interrupt scope.
pub fn set_return_hook(hook: fn()) {
    set_once(&RETURN_HOOK, hook, "the return hook");
}

/// A policy is registered once: a second registration is a bug, said loudly
/// (as a second claim on a vector is), not silently ignored.
fn set_once<T>(slot: &spin::Once<T>, value: T, what: &str) {
    let mut won = false;
    slot.call_once(|| {
        won = true;
        value
    });
    assert!(won, "irq: {what} is registered twice");
}

/// The one shape (see the module doc). Called by the IDT stub of `vector`
/// with interrupts disabled.
fn dispatch(vector: u8) {
    lapic::end_of_interrupt();
    if DROP_CHECK.get().is_some_and(|panic_in_progress| panic_in_progress()) {
        return;
    }
    if let Some(line) = LINES[vector as usize].get() {
        let (begin, end) = if vector == TIMER_VECTOR {
            (format::TICK_BEGIN, format::TICK_END)
        } else {
            (format::IRQ_BEGIN, format::IRQ_END)
        };
        trace::record(begin, vector as u16, 0, 0, 0);
        let _scope = InterruptScope::enter();
        (line.handler)();
        trace::record(end, vector as u16, 0, 0, 0);
    }
    // Again: a panic that began while the handler ran must not see this
    // CPU switch threads on its way out.
    if DROP_CHECK.get().is_some_and(|panic_in_progress| panic_in_progress()) {
        return;
    }
    if let Some(hook) = RETURN_HOOK.get() {
        hook();
    }
}

/// Sends CPU `cpu` an IPI on `vector` (SDM Vol. 3A "Issuing Interprocessor
/// Interrupts"), recorded in the trace: every IPI the kernel sends to run
/// something goes through here, so the trace can draw each one from sender to
/// handler.
pub fn send_ipi(cpu: usize, vector: u8) {
    trace::record(format::IPI_SEND, vector as u16, cpu as u64, 0, 0);
    lapic::get().send_ipi(percpu::apic_id_of(cpu), Ipi::Fixed(vector));
}

/// Sends CPU `cpu` an NMI, recorded as [`send_ipi`] records its IPIs.
pub fn send_nmi(cpu: usize) {
    trace::record(format::IPI_SEND, format::NMI, cpu as u64, 0, 0);
    lapic::get().send_ipi(percpu::apic_id_of(cpu), Ipi::Nmi);
}

/// How many interrupt handlers run on this CPU (0: thread context).
pub fn depth() -> u32 {
    // One instruction: the caller may be preemptible (see preempt::count).
    DEPTH.load_on_this_cpu()
}

/// For a CPU that starts again after INIT, which may have stopped it inside
/// a handler (an NMI's too): its depth starts from zero again.
pub fn reset_after_restart() {
    DEPTH.get().store(0, Ordering::Relaxed);
    nmi::reset_after_restart();
}

/// Counts this CPU's running interrupt handlers for as long as it lives, so
/// the scheduler and the panic report can tell interrupt context apart.
struct InterruptScope;

impl InterruptScope {
    fn enter() -> InterruptScope {
        DEPTH.get().fetch_add(1, Ordering::Relaxed);
        InterruptScope
    }
}

impl Drop for InterruptScope {
    fn drop(&mut self) {
        DEPTH.get().fetch_sub(1, Ordering::Relaxed);
    }
}
