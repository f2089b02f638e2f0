//! The events drawn as instants (marks at one time on their CPU's track),
//! with their fields spelled out as args.

use serde_json::{Map, Value, json};

use super::{args, hex};
use crate::trace::Event;
use crate::trace::format::{self, name_of};
use crate::trace::names::{self, Threads};

/// The name and args of `event` if it is drawn as an instant. The name is
/// the format's own (`name_of`), so a test can look an instant up by it.
pub(super) fn describe(event: &Event, threads: &Threads) -> Option<(String, Map<String, Value>)> {
    let args = match event.kind {
        format::IPI_SEND => {
            args([("vector", json!(names::vector(event.small))), ("target_cpu", json!(event.a))])
        }
        format::CALL_QUEUED => {
            args([("call_id", hex(event.a)), ("target_cpu", json!(event.small))])
        }
        format::CALL_ACKED => args([
            ("call_id", hex(event.a)),
            ("target_cpu", json!(event.small)),
            ("pending_including_this", json!(event.b)),
        ]),
        format::TLB_FLUSH => args([
            ("flushed", json!(names::flush(event.small))),
            ("first_page", hex(event.a)),
            ("pages", json!(event.b)),
        ]),
        format::WAKE => args([
            ("thread", json!(threads.name(event.a))),
            ("thread_id", json!(event.a)),
            ("chosen_cpu", json!(event.small)),
        ]),
        format::SWITCH => args([
            ("from", json!(threads.name(event.a))),
            ("from_id", json!(event.a)),
            ("from_rank", json!(names::rank(event.c as u16))),
            ("to", json!(threads.name(event.b))),
            ("to_id", json!(event.b)),
            ("to_rank", json!(names::rank(event.small))),
        ]),
        format::AP_KICK => args([("cpu", json!(event.small)), ("apic_id", json!(event.a))]),
        format::AP_GIVEN_UP => {
            args([("cpu", json!(event.small)), ("stuck_in_state", json!(event.a))])
        }
        // The stop NMIs are not recorded one by one (at 255 CPUs they would
        // fill a ring): the owner says how many it sends.
        format::PANIC_BEGIN => args([("stop_nmis_sent", json!(event.a))]),
        format::PANIC_HALT => args([("then", json!(names::panic_end(event.small)))]),
        format::LAZY_CATCH_UP
        | format::AP_ONLINE
        | format::PANIC_STOP
        | format::PANIC_REPORT_DONE => Map::new(),
        _ => return None,
    };
    Some((name_of(event.kind).to_string(), args))
}
