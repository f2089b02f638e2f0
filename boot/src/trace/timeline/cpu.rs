//! The CPU tracks: which thread each CPU ran, the handlers it went through,
//! the bring-up phases of each AP, and the preempt-off spans beside them.
//!
//! Spans on a CPU track, from the outside in:
//!
//! - `running NAME` (or `idle`) from one `SWITCH` on that CPU to the next;
//! - `bring-up (parallel|serial)` on the boot CPU, and on each AP its phases
//!   ([`super::PHASE_START`] from the boot CPU's `AP_KICK` to the AP's
//!   `AP_ALIVE`, then call-in, wait for release, TSC check until `AP_ONLINE`);
//! - `panic report` on the panic's owner, from its claim to the report's end;
//! - handlers: `IPI 0xfc call-function` and other interrupts (`IRQ_BEGIN` to
//!   `IRQ_END`), `timer tick`, `NMI`, and `call: NAME` for a cross-CPU call
//!   (its `from_cpu` arg from the `CALL_QUEUED` that put it in the queue).
//!
//! A handler that switches threads (the scheduler preempts on the way out of
//! an interrupt) leaves the CPU mid-span: the thread it ran on stops there.
//! So a `SWITCH` closes the CPU's open handler spans, and an end event whose
//! begin is not open (it belongs to the thread just switched in, which was
//! itself switched out inside that handler) gets a span from the switch to
//! that end, with `resumed: true`. An end with neither is dropped: its begin
//! was lost in the ring.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use super::{
    Counter, Instant, Look, PHASE_CALL_IN, PHASE_START, PHASE_TSC_CHECK, PHASE_WAIT_FOR_RELEASE,
    PREEMPT_OFF_TRACK_BASE, Span, Timeline, Track, args, hex,
};
use crate::trace::format;
use crate::trace::names::{self, Threads};
use crate::trace::{Event, Trace};

/// Which begin an end event closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handler {
    Interrupt(u16),
    Nmi,
    Tick,
    Call(u64),
}

impl Handler {
    fn name(self) -> String {
        match self {
            Handler::Interrupt(vector) => names::vector(vector),
            Handler::Nmi => "NMI".into(),
            Handler::Tick => "timer tick".into(),
            Handler::Call(_) => "call".into(),
        }
    }

    fn look(self) -> Look {
        match self {
            Handler::Interrupt(_) => Look::Interrupt,
            Handler::Nmi => Look::Nmi,
            Handler::Tick => Look::Tick,
            Handler::Call(_) => Look::Call,
        }
    }
}

#[derive(Default)]
struct Cpu {
    /// Handler spans begun and not ended, innermost last.
    open: Vec<(Handler, Span)>,
    /// Since when, and which thread (id, rank), the CPU has been running.
    running: Option<(u64, u64, u16)>,
    last_switch: Option<u64>,
    /// The open bring-up span (boot CPU only).
    bring_up: Option<Span>,
    /// The AP's open phase, begun by the boot CPU's kick.
    phase: Option<Span>,
    /// The panic owner's report, from `PANIC_BEGIN` to `PANIC_REPORT_DONE`.
    panic_report: Option<Span>,
}

struct Builder<'a> {
    threads: &'a Threads,
    timeline: &'a mut Timeline,
    tracks: &'a mut BTreeMap<u64, Track>,
    cpus: HashMap<u16, Cpu>,
    /// (target CPU, call id) -> the CPU that queued it, from `CALL_QUEUED`.
    queued_by: HashMap<(u16, u64), u16>,
}

pub(super) fn build(
    trace: &Trace,
    threads: &Threads,
    timeline: &mut Timeline,
    tracks: &mut BTreeMap<u64, Track>,
) {
    let mut builder =
        Builder { threads, timeline, tracks, cpus: HashMap::new(), queued_by: HashMap::new() };
    for event in &trace.events {
        builder.event(event);
        if let Some((name, args)) = super::instants::describe(event, threads) {
            let (tid, cat) = (u64::from(event.cpu), names::category(event.kind));
            builder.timeline.instants.push(Instant { tid, ns: event.ns, name, cat, args });
        }
    }
    builder.finish();
}

/// A span on CPU `cpu`'s track, starting at `start`; its end is set when it closes.
fn span(cpu: u16, start: u64, name: String, kind: u16, look: Look) -> Span {
    let (tid, cat) = (u64::from(cpu), names::category(kind));
    Span { tid, start, end: start, name, cat, look, args: Default::default(), depth: 0 }
}

impl Builder<'_> {
    fn event(&mut self, event: &Event) {
        let handler = match event.kind {
            format::IRQ_BEGIN | format::IRQ_END => Handler::Interrupt(event.small),
            format::NMI_BEGIN | format::NMI_END => Handler::Nmi,
            format::TICK_BEGIN | format::TICK_END => Handler::Tick,
            format::CALL_RUN_BEGIN | format::CALL_RUN_END => Handler::Call(event.a),
            _ => return self.other(event),
        };
        match event.kind {
            format::IRQ_BEGIN | format::NMI_BEGIN | format::TICK_BEGIN | format::CALL_RUN_BEGIN => {
                self.begin_handler(event, handler)
            }
            _ => self.end_handler(event, handler),
        }
    }

    fn other(&mut self, event: &Event) {
        match event.kind {
            format::SWITCH => self.switch(event),
            format::PREEMPT_OFF => self.preempt_off(event),
            // The queue's CPU is `a`: a wake-up on one CPU queues on another.
            format::RUN_QUEUE => self.timeline.counters.push(Counter {
                tid: event.a,
                ns: event.ns,
                name: format!("run queue CPU {}", event.a),
                value: u64::from(event.small),
            }),
            format::CALL_QUEUED => {
                self.queued_by.insert((event.small, event.a), event.cpu);
            }
            format::BRING_UP_BEGIN => {
                let name = format!("bring-up ({})", names::bring_up_mode(event.small));
                let mut bring_up = span(event.cpu, event.ns, name, event.kind, Look::BringUp);
                bring_up.args = args([("aps", json!(event.a))]);
                self.cpu(event.cpu).bring_up = Some(bring_up);
            }
            format::BRING_UP_END => {
                if let Some(mut bring_up) = self.cpu(event.cpu).bring_up.take() {
                    bring_up.end = event.ns;
                    bring_up.args.insert("online".into(), json!(event.a));
                    // The TSC check's worst warp bounds how wrong the order
                    // of close events on two CPUs can be drawn.
                    let warp = match event.b {
                        u64::MAX => json!("not checked (tsc=reliable)"),
                        cycles => json!(cycles),
                    };
                    bring_up.args.insert("tsc_warp_cycles".into(), warp);
                    self.timeline.spans.push(bring_up);
                }
            }
            format::PANIC_BEGIN => {
                let report =
                    span(event.cpu, event.ns, "panic report".into(), event.kind, Look::Panic);
                self.cpu(event.cpu).panic_report = Some(report);
            }
            format::PANIC_REPORT_DONE => {
                if let Some(mut report) = self.cpu(event.cpu).panic_report.take() {
                    report.end = event.ns;
                    self.timeline.spans.push(report);
                }
            }
            format::AP_KICK => self.next_phase(event.small, event, Some(PHASE_START)),
            format::AP_ALIVE => self.next_phase(event.cpu, event, Some(PHASE_CALL_IN)),
            format::AP_CALLED_IN => self.next_phase(event.cpu, event, Some(PHASE_WAIT_FOR_RELEASE)),
            format::AP_TSC_CHECK => self.next_phase(event.cpu, event, Some(PHASE_TSC_CHECK)),
            format::AP_ONLINE => self.next_phase(event.cpu, event, None),
            format::AP_GIVEN_UP => {
                if let Some(mut phase) = self.cpu(event.small).phase.take() {
                    phase.end = event.ns;
                    phase.args.insert("given_up".into(), Value::Bool(true));
                    phase.args.insert("stuck_in_state".into(), json!(event.a));
                    self.timeline.spans.push(phase);
                }
            }
            _ => {}
        }
    }

    fn cpu(&mut self, cpu: u16) -> &mut Cpu {
        self.cpus.entry(cpu).or_default()
    }

    fn begin_handler(&mut self, event: &Event, handler: Handler) {
        let name = match (handler, &event.text) {
            (Handler::Call(_), Some(text)) => format!("call: {text}"),
            _ => handler.name(),
        };
        let mut span = span(event.cpu, event.ns, name, event.kind, handler.look());
        span.args = match handler {
            Handler::Interrupt(vector) => args([("vector", hex(u64::from(vector)))]),
            Handler::Call(id) => match self.queued_by.get(&(event.cpu, id)) {
                Some(from) => args([("call_id", hex(id)), ("from_cpu", json!(from))]),
                None => args([("call_id", hex(id))]),
            },
            Handler::Nmi => args([("interrupted_rip", hex(event.a))]),
            Handler::Tick => Default::default(),
        };
        self.cpu(event.cpu).open.push((handler, span));
    }

    fn end_handler(&mut self, event: &Event, handler: Handler) {
        let cpu = self.cpu(event.cpu);
        if let Some(index) = cpu.open.iter().rposition(|(open, _)| *open == handler) {
            let (_, mut span) = cpu.open.remove(index);
            span.end = event.ns;
            self.timeline.spans.push(span);
        } else if let Some(switch) = cpu.last_switch {
            let mut span = span(event.cpu, switch, handler.name(), event.kind, handler.look());
            span.end = event.ns;
            span.args.insert("resumed".into(), Value::Bool(true));
            self.timeline.spans.push(span);
        } else {
            self.timeline.mended.unpaired_ends += 1;
        }
    }

    /// A context switch: the CPU leaves the previous thread, and whatever
    /// handler it was in on that thread's stack (see the module docs).
    fn switch(&mut self, event: &Event) {
        let cpu = self.cpus.entry(event.cpu).or_default();
        for (_, mut span) in cpu.open.drain(..) {
            span.end = event.ns;
            span.args.insert("switched_out".into(), Value::Bool(true));
            self.timeline.spans.push(span);
        }
        let previous = cpu.running.replace((event.ns, event.b, event.small));
        cpu.last_switch = Some(event.ns);
        if let Some(running) = previous {
            let span = self.running_span(event.cpu, running, event.ns);
            self.timeline.spans.push(span);
        }
    }

    fn running_span(&self, cpu: u16, (start, thread, rank): (u64, u64, u16), end: u64) -> Span {
        let (name, look) = if rank == 0 {
            ("idle".to_string(), Look::Idle)
        } else {
            (format!("running {}", self.threads.name(thread)), Look::Running)
        };
        let mut span = span(cpu, start, name, format::SWITCH, look);
        span.end = end;
        span.args = args([
            ("thread", json!(self.threads.name(thread))),
            ("thread_id", json!(thread)),
            ("rank", json!(names::rank(rank))),
        ]);
        span
    }

    /// Ends the AP's open bring-up phase at `event` and opens `next`.
    fn next_phase(&mut self, ap: u16, event: &Event, next: Option<&'static str>) {
        let next = next.map(|name| {
            let mut phase = span(ap, event.ns, name.into(), event.kind, Look::BringUp);
            phase.args = args([("cpu", json!(ap))]);
            phase
        });
        let ended = std::mem::replace(&mut self.cpu(ap).phase, next);
        if let Some(mut phase) = ended {
            phase.end = event.ns;
            self.timeline.spans.push(phase);
        }
    }

    /// A span with preemption off, on its CPU's preempt-off track: recorded
    /// at its end, `b` ns long.
    fn preempt_off(&mut self, event: &Event) {
        let tid = PREEMPT_OFF_TRACK_BASE + u64::from(event.cpu);
        let name = format!("CPU {} preempt-off", event.cpu);
        self.tracks.entry(tid).or_insert(Track { tid, name, sort: tid });
        let location = event.text.clone().unwrap_or_else(|| format!("{:#x}", event.a));
        let mut span = span(
            event.cpu,
            event.ns.saturating_sub(event.b),
            location,
            event.kind,
            Look::PreemptOff,
        );
        span.tid = tid;
        span.end = event.ns;
        span.args = args([("return_address", hex(event.a)), ("ns", json!(event.b))]);
        self.timeline.spans.push(span);
    }

    /// Closes what the trace ends inside of.
    fn finish(mut self) {
        let end = self.timeline.end_ns;
        let mut cpus: Vec<(u16, Cpu)> = self.cpus.drain().collect();
        cpus.sort_by_key(|(cpu, _)| *cpu);
        for (number, cpu) in cpus {
            if let Some(running) = cpu.running {
                let span = self.running_span(number, running, end.max(running.0));
                self.timeline.spans.push(span);
            }
            let open = cpu.open.into_iter().map(|(_, span)| span);
            for span in open.chain(cpu.bring_up).chain(cpu.phase) {
                self.timeline.close_unfinished(span, None);
            }
        }
    }
}
