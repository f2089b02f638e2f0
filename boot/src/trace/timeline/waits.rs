//! The tracks of waiting threads: a thread that makes cross-CPU calls gets
//! a track of its own, `waits of NAME (thread T)` (tid 2^20 + T), with its
//! shootdowns, its waits inside them, and the times it was off CPU meanwhile.
//!
//! Why not on the CPU track? A waiting thread can be preempted, and resume
//! on another CPU: its wait would then begin on one CPU's track and end on
//! another's, across whatever ran in between. On a track of the thread's own
//! the wait is one span, and the preemption shows inside it:
//!
//! ```text
//! waits of tlb-demo (thread 7)
//! [shootdown: 4 pages (preempt)                                       ]
//!    [wait (preempt)                                                ]
//!          [off CPU (preempted on CPU 1)]
//!          ^ preempted on CPU 1         ^ resumed on CPU 2
//! ```
//!
//! The off-CPU span comes from `SWITCH` events: the thread switched out
//! (`a`) while it has a wait or shootdown open, until it is switched in (`b`)
//! again. A thread that waits in `sleep` mode gives the CPU up on purpose, so
//! its span says `went to sleep` instead of `preempted`.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use super::{Instant, Look, Span, Timeline, Track, args, hex, wait_track};
use crate::trace::format;
use crate::trace::names::{self, Threads};
use crate::trace::{Event, Trace};

#[derive(Default)]
struct Waiter {
    shootdown: Option<(Span, u16)>,
    /// Open waits: call id, span, mode.
    waits: Vec<(u64, Span, u16)>,
    /// Since when, from which CPU, and whether it went to sleep.
    off_cpu: Option<(u64, u16, bool)>,
}

impl Waiter {
    /// The mode of the innermost open wait or shootdown, if any is open.
    fn waiting_mode(&self) -> Option<u16> {
        self.waits.last().map(|(_, _, mode)| *mode).or(self.shootdown.as_ref().map(|(_, m)| *m))
    }
}

struct Builder<'a> {
    threads: &'a Threads,
    timeline: &'a mut Timeline,
    tracks: &'a mut BTreeMap<u64, Track>,
    waiters: HashMap<u64, Waiter>,
}

pub(super) fn build(
    trace: &Trace,
    threads: &Threads,
    timeline: &mut Timeline,
    tracks: &mut BTreeMap<u64, Track>,
) {
    let mut builder = Builder { threads, timeline, tracks, waiters: HashMap::new() };
    for event in &trace.events {
        builder.event(event);
    }
    builder.finish();
}

impl Builder<'_> {
    fn event(&mut self, event: &Event) {
        match event.kind {
            format::SHOOTDOWN_BEGIN => self.shootdown_begin(event),
            format::SHOOTDOWN_END => {
                match self.waiter(event.c).shootdown.take() {
                    Some((mut span, _)) => {
                        span.end = event.ns;
                        self.timeline.spans.push(span);
                    }
                    None => self.timeline.mended.unpaired_ends += 1,
                };
            }
            format::CALL_WAIT_BEGIN => {
                let name = format!("wait ({})", names::wait_mode(event.small));
                let mut span = self.span(event.b, event, name, Look::Wait);
                span.args = args([
                    ("call_id", hex(event.a)),
                    ("targets", json!(event.c)),
                    ("mode", json!(names::wait_mode(event.small))),
                ]);
                self.waiter(event.b).waits.push((event.a, span, event.small));
            }
            format::CALL_WAIT_END => {
                let waits = &mut self.waiter(event.b).waits;
                match waits.iter().rposition(|(id, _, _)| *id == event.a) {
                    Some(index) => {
                        let (_, mut span, _) = waits.remove(index);
                        span.end = event.ns;
                        self.timeline.spans.push(span);
                    }
                    None => self.timeline.mended.unpaired_ends += 1,
                }
            }
            format::SWITCH => {
                self.switched_out(event.a, event);
                self.switched_in(event.b, event);
            }
            _ => {}
        }
    }

    fn waiter(&mut self, thread: u64) -> &mut Waiter {
        self.waiters.entry(thread).or_default()
    }

    /// A span on `thread`'s wait track (made on first use), from `event`.
    fn span(&mut self, thread: u64, event: &Event, name: String, look: Look) -> Span {
        let tid = wait_track(thread);
        let track_name = format!("waits of {} (thread {thread})", self.threads.name(thread));
        // Drawn after the CPUs and before the preempt-off tracks (then by tid).
        let sort = super::PREEMPT_OFF_TRACK_BASE - 1;
        self.tracks.entry(tid).or_insert(Track { tid, name: track_name, sort });
        let cat = names::category(event.kind);
        let start = event.ns;
        Span { tid, start, end: start, name, cat, look, args: Default::default(), depth: 0 }
    }

    fn shootdown_begin(&mut self, event: &Event) {
        let pages = event.b & 0xffff_ffff;
        let mode = names::wait_mode(event.small);
        let name = format!("shootdown: {pages} page{} ({mode})", if pages == 1 { "" } else { "s" });
        let mut span = self.span(event.c, event, name, Look::Shootdown);
        span.args = args([
            ("first_page", hex(event.a)),
            ("pages", json!(pages)),
            ("targets", json!((event.b >> 32) & 0xffff)),
            ("lazy_cpus_skipped", json!(event.b >> 48)),
            ("mode", json!(mode)),
            ("cpu", json!(event.cpu)),
        ]);
        // A shootdown whose end was lost is closed where the next begins.
        if let Some((earlier, _)) = self.waiter(event.c).shootdown.replace((span, event.small)) {
            self.timeline.close_unfinished(earlier, Some(event.ns));
        }
    }

    fn switched_out(&mut self, thread: u64, event: &Event) {
        let waiter = self.waiter(thread);
        let Some(mode) = waiter.waiting_mode() else { return };
        if waiter.off_cpu.is_some() {
            return;
        }
        let asleep = names::wait_sleeps(mode);
        waiter.off_cpu = Some((event.ns, event.cpu, asleep));
        let verb = if asleep { "went to sleep" } else { "preempted" };
        self.instant(thread, event, format!("{verb} on CPU {}", event.cpu));
    }

    fn switched_in(&mut self, thread: u64, event: &Event) {
        let Some((since, cpu, asleep)) = self.waiter(thread).off_cpu.take() else { return };
        let verb = if asleep { "went to sleep" } else { "preempted" };
        let mut span =
            self.span(thread, event, format!("off CPU ({verb} on CPU {cpu})"), Look::OffCpu);
        span.start = since;
        span.args = args([("left_cpu", json!(cpu)), ("resumed_on_cpu", json!(event.cpu))]);
        self.timeline.spans.push(span);
        self.instant(thread, event, format!("resumed on CPU {}", event.cpu));
    }

    fn instant(&mut self, thread: u64, event: &Event, name: String) {
        let (tid, cat) = (wait_track(thread), names::category(event.kind));
        let args = args([("cpu", json!(event.cpu))]);
        self.timeline.instants.push(Instant { tid, ns: event.ns, name, cat, args });
    }

    /// Closes what the trace ends inside of.
    fn finish(mut self) {
        let mut waiters: Vec<(u64, Waiter)> = self.waiters.drain().collect();
        waiters.sort_by_key(|(thread, _)| *thread);
        for (thread, waiter) in waiters {
            if let Some((since, cpu, asleep)) = waiter.off_cpu {
                let verb = if asleep { "went to sleep" } else { "preempted" };
                let tid = wait_track(thread);
                self.timeline.close_unfinished(
                    Span {
                        tid,
                        start: since,
                        end: since,
                        name: format!("off CPU ({verb} on CPU {cpu})"),
                        cat: "sched",
                        look: Look::OffCpu,
                        args: args([("left_cpu", json!(cpu))]),
                        depth: 0,
                    },
                    None,
                );
            }
            let waits = waiter.waits.into_iter().map(|(_, span, _)| span);
            for span in waits.chain(waiter.shootdown.map(|(span, _)| span)) {
                self.timeline.close_unfinished(span, None);
            }
        }
    }
}
