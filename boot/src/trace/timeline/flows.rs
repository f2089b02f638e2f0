//! Flows: arrows from the CPU that asked to the CPU that answered.
//!
//! - An `IPI_SEND` (on the sender; `small` the vector or NMI, `a` the target)
//!   points at the first `IRQ_BEGIN` with that vector (or `NMI_BEGIN`) on
//!   the target at or after the send. Two sends of one vector before the
//!   target takes it point at the same handler: the local APIC holds one
//!   pending interrupt per vector, so the second IPI merges into the first
//!   (SDM Vol. 3A "Interrupt Acceptance for Fixed Interrupts").
//! - A `CALL_QUEUED` (`small` the target, `a` the call's id) points at the
//!   `CALL_RUN_BEGIN` with that id on the target.
//!
//! Each arrow ends where the handler's span begins, so it lands inside that
//! span, as a viewer needs to draw it. A send with no handler in the trace
//! (the target was not recording interrupts, or had died) has no arrow.

use std::collections::HashMap;

use super::{Flow, Timeline};
use crate::trace::Trace;
use crate::trace::format::{self, NMI};
use crate::trace::names;

/// What a begin event answers: (CPU, vector or NMI) for an interrupt, (CPU,
/// call id) for a call.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Answer {
    Interrupt(u16, u16),
    Call(u16, u64),
}

pub(super) fn build(trace: &Trace, timeline: &mut Timeline) {
    // The times of every answer, ascending (the events are in time order).
    let mut answers: HashMap<Answer, Vec<u64>> = HashMap::new();
    for event in &trace.events {
        let answer = match event.kind {
            format::IRQ_BEGIN => Answer::Interrupt(event.cpu, event.small),
            format::NMI_BEGIN => Answer::Interrupt(event.cpu, NMI),
            format::CALL_RUN_BEGIN => Answer::Call(event.cpu, event.a),
            _ => continue,
        };
        answers.entry(answer).or_default().push(event.ns);
    }
    // The times each call was queued, by (target, id), ascending.
    let mut queued: HashMap<Answer, Vec<u64>> = HashMap::new();
    for event in trace.events.iter().filter(|event| event.kind == format::CALL_QUEUED) {
        queued.entry(Answer::Call(event.small, event.a)).or_default().push(event.ns);
    }
    for event in &trace.events {
        let (answer, name) = match event.kind {
            format::IPI_SEND => {
                let Ok(target) = u16::try_from(event.a) else { continue };
                (Answer::Interrupt(target, event.small), names::vector(event.small))
            }
            format::CALL_QUEUED => (Answer::Call(event.small, event.a), "call".to_string()),
            _ => continue,
        };
        let Some(times) = answers.get(&answer) else { continue };
        let first = times.partition_point(|&ns| ns < event.ns);
        let Some(&at) = times.get(first) else { continue };
        // A call's id is the address of its descriptor, often on the
        // caller's stack and so the same for the next call: if this call's
        // run was lost, the next queueing of the same id comes first, and
        // the run found belongs to that one.
        if let Answer::Call(..) = answer
            && queued.get(&answer).is_some_and(|times| {
                let next = times.partition_point(|&ns| ns <= event.ns);
                times.get(next).is_some_and(|&requeued| requeued <= at)
            })
        {
            continue;
        }
        let to_cpu = match answer {
            Answer::Interrupt(cpu, _) | Answer::Call(cpu, _) => cpu,
        };
        let id = timeline.flows.len() as u64 + 1;
        timeline.flows.push(Flow {
            id,
            name,
            cat: "ipi",
            from: (u64::from(event.cpu), event.ns),
            to: (u64::from(to_cpu), at),
        });
    }
}
