//! Decoding: dumps, sections, TEXT joining, cut and foreign streams.

use super::*;
use crate::trace::format::{
    CALL_RUN_BEGIN, IPI_SEND, RUN_QUEUE, SWITCH, THREAD_NAME, WAKE, reason,
};
use crate::trace::names;

#[test]
fn events_of_all_cpus_merge_by_time_then_cpu_then_record_order() {
    let events = [
        E::new(1, 50, WAKE).a(3),
        E::new(0, 50, RUN_QUEUE).small(1),
        E::new(0, 50, RUN_QUEUE).small(2),
        E::new(0, 10, IPI_SEND).small(0xfc).a(1),
    ];
    // Records of one CPU in the order given, not sorted: the decoder sorts.
    let trace = decode(&stream(2, &events)).unwrap();
    let order: Vec<(u16, u64, u16, u16)> =
        trace.events.iter().map(|e| (e.cpu, e.ns, e.kind, e.small)).collect();
    assert_eq!(
        order,
        [(0, 10, IPI_SEND, 0xfc), (0, 50, RUN_QUEUE, 1), (0, 50, RUN_QUEUE, 2), (1, 50, WAKE, 0)]
    );
    assert_eq!(trace.events[0].a, 1);
    assert_eq!(trace.cpus.iter().map(|c| c.events).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(trace.dumps.len(), 1);
    assert!(trace.dumps[0].complete && trace.cuts.is_empty());
}

#[test]
fn text_records_join_the_event_before_them() {
    // 27 bytes: two TEXT records, with 'é' (two bytes) across their border.
    let name = "fifteen bytes..é and more!";
    assert_eq!(name.find('é'), Some(15));
    let events = [
        E::new(0, 1, THREAD_NAME).small(1).a(5).text(name),
        E::new(0, 2, CALL_RUN_BEGIN).a(9).text("flush"),
        E::new(0, 3, SWITCH).a(1).b(5),
    ];
    let trace = decode(&stream(1, &events)).unwrap();
    let texts: Vec<Option<&str>> = trace.events.iter().map(|e| e.text.as_deref()).collect();
    assert_eq!(texts, [Some(name), Some("flush"), None]);
    assert_eq!(trace.cpus[0].events, 3, "TEXT records are not events");
}

#[test]
fn text_whose_event_was_lost_is_dropped() {
    let mut records = text_records(1, b"orphan");
    records.extend(record(2, WAKE, 0, 4, 0, 0));
    let mut bytes = header(VERSION, 1, reason::END_OF_RUN, 3);
    bytes.extend(section(0, 7, 1, &records));
    bytes.extend(trailer());
    let trace = decode(&bytes).unwrap();
    assert_eq!(trace.events.len(), 1);
    assert_eq!(trace.events[0].text, None);
    assert_eq!((trace.cpus[0].lost, trace.cpus[0].torn), (7, 1));
}

#[test]
fn dumps_back_to_back_add_up() {
    let mut bytes = header(VERSION, 2, reason::REQUEST, 100);
    bytes.extend(section(0, 5, 0, &record(10, WAKE, 0, 1, 0, 0)));
    bytes.extend(section(1, 0, 2, &record(20, WAKE, 0, 2, 0, 0)));
    bytes.extend(trailer());
    bytes.extend(header(VERSION, 2, reason::PANIC, 300));
    bytes.extend(section(0, 1, 0, &record(200, WAKE, 0, 3, 0, 0)));
    bytes.extend(section(1, 0, 0, &[]));
    bytes.extend(trailer());
    let trace = decode(&bytes).unwrap();
    let reasons: Vec<String> = trace.dumps.iter().map(|d| names::reason(d.reason)).collect();
    assert_eq!(reasons, ["request", "panic"]);
    assert_eq!(trace.dumps.iter().map(|d| d.ns).collect::<Vec<_>>(), [100, 300]);
    assert_eq!(trace.events.iter().map(|e| e.a).collect::<Vec<_>>(), [1, 2, 3]);
    let totals: Vec<(u64, u64, u64)> =
        trace.cpus.iter().map(|c| (c.events, c.lost, c.torn)).collect();
    assert_eq!(totals, [(2, 6, 0), (1, 0, 2)]);
}

#[test]
fn a_cut_stream_keeps_every_whole_record_and_says_where_it_was_cut() {
    let events: Vec<E> = (0..3).map(|n| E::new(0, n * 10, WAKE).a(n)).collect();
    let whole = stream(1, &events);
    // Half of the third record is missing.
    let cut_at = HEADER_SIZE + CPU_SECTION_SIZE + 2 * RECORD_SIZE + RECORD_SIZE / 2;
    let trace = decode(&whole[..cut_at]).unwrap();
    assert_eq!(trace.events.len(), 2);
    assert_eq!(trace.cuts.len(), 1);
    assert!(trace.cuts[0].contains("CPU 0's section after 2 records"), "{:?}", trace.cuts);
    assert!(!trace.dumps[0].complete);
    // Cut inside the next dump's header: the first dump is whole.
    let mut two = whole.clone();
    two.extend(&whole[..HEADER_SIZE - 5]);
    let trace = decode(&two).unwrap();
    assert_eq!((trace.events.len(), trace.dumps.len()), (3, 1));
    assert!(trace.cuts[0].contains("inside a dump's header"), "{:?}", trace.cuts);
    // Cut before the trailer.
    let trace = decode(&whole[..whole.len() - 8]).unwrap();
    assert_eq!(trace.events.len(), 3);
    assert!(trace.cuts[0].contains("before its trailer"), "{:?}", trace.cuts);
}

#[test]
fn a_dump_interrupted_by_the_next_keeps_both() {
    // The first dump stops after one record and half of the next: the CPU
    // writing it stopped there, and the panic's dump went ahead.
    for kept in [0, RECORD_SIZE / 2, RECORD_SIZE - 1] {
        let mut bytes = header(VERSION, 2, reason::END_OF_RUN, 100);
        bytes.extend(section_start(0, 0));
        bytes.extend(record(10, WAKE, 0, 1, 0, 0));
        bytes.extend(&record(20, WAKE, 0, 9, 0, 0)[..kept]);
        bytes.extend(dump(reason::PANIC, 2, 200, &[E::new(1, 150, WAKE).a(2)]));
        let trace = decode(&bytes).unwrap();
        assert_eq!(trace.events.iter().map(|e| e.a).collect::<Vec<_>>(), [1, 2], "{kept}");
        assert_eq!(trace.dumps.len(), 2);
        assert!(!trace.dumps[0].complete && trace.dumps[1].complete);
        let cut = "CPU 0's section stops after 1 record; a new dump begins";
        assert!(trace.cuts[0].contains(cut), "{:?}", trace.cuts);
    }
    // Between two sections.
    let mut bytes = header(VERSION, 2, reason::END_OF_RUN, 100);
    bytes.extend(section(0, 0, 0, &record(10, WAKE, 0, 1, 0, 0)));
    bytes.extend(&section_start(1, 0)[..7]);
    bytes.extend(dump(reason::PANIC, 2, 200, &[]));
    let trace = decode(&bytes).unwrap();
    assert_eq!((trace.events.len(), trace.dumps.len()), (1, 2));
    assert!(trace.cuts[0].contains("stops before its trailer"), "{:?}", trace.cuts);
}

#[test]
fn a_section_whose_count_disagrees_is_reported() {
    let mut records = record(10, WAKE, 0, 1, 0, 0);
    records.extend(record(0, SECTION_END, 0, 3, 5, 2));
    let mut bytes = header(VERSION, 1, reason::END_OF_RUN, 100);
    bytes.extend(section_start(0, 0));
    bytes.extend(records);
    bytes.extend(trailer());
    let trace = decode(&bytes).unwrap();
    assert_eq!((trace.cpus[0].torn, trace.cpus[0].pending), (3, 2));
    assert!(trace.cuts[0].contains("ends saying 5 records, 1 came"), "{:?}", trace.cuts);
}

#[test]
fn an_empty_stream_is_an_empty_trace() {
    let trace = decode(&[]).unwrap();
    assert!(trace.dumps.is_empty() && trace.events.is_empty() && trace.cuts.is_empty());
}

#[test]
fn foreign_bytes_and_other_versions_are_refused_and_garbage_after_a_dump_ends_it() {
    let error = decode(b"hello, world, this is no trace at all").unwrap_err();
    assert!(error.to_string().starts_with("bad magic at byte 0"), "{error}");
    // After a good dump, garbage only ends the trace: what came before stays.
    let mut bytes = stream(1, &[E::new(0, 1, WAKE)]);
    let second = bytes.len();
    bytes.extend(b"garbage!");
    let trace = decode(&bytes).unwrap();
    assert_eq!(trace.events.len(), 1, "{:?}", trace.events);
    assert!(trace.cuts[0].starts_with(&format!("bad magic at byte {second}")), "{:?}", trace.cuts);
    let other = VERSION + 1;
    let error = decode(&header(other, 1, reason::END_OF_RUN, 0)).unwrap_err();
    let expected = format!("version {other}, this runner reads {VERSION}");
    assert!(error.to_string().starts_with(&expected), "{error}");
    let mut bytes = header(VERSION, 1, reason::END_OF_RUN, 0);
    bytes.extend(section(1, 0, 0, &[]));
    let trace = decode(&bytes).unwrap();
    assert!(trace.cuts.iter().any(|c| c.contains("CPU 1 of 1")), "{:?}", trace.cuts);
}

#[test]
fn a_dump_cut_short_and_written_again_keeps_each_event_once() {
    // The first dump stops inside its header: its CPU was stopped, and the
    // panic's dump follows with the same events.
    let whole = stream(1, &[E::new(0, 10, WAKE), E::new(0, 20, WAKE)]);
    let mut bytes = whole[..12].to_vec();
    bytes.extend(&whole);
    let trace = decode(&bytes).unwrap();
    assert_eq!(trace.events.len(), 2, "{:?}", trace.events);
    assert!(
        trace.cuts.iter().any(|c| c.contains("cut short by the next dump")),
        "{:?}",
        trace.cuts
    );
    // The same dump written twice in full: every event once.
    let mut twice = whole.clone();
    twice.extend(&whole);
    let trace = decode(&twice).unwrap();
    assert_eq!(trace.events.len(), 2, "{:?}", trace.events);
    assert_eq!(trace.cpus[0].events, 2);
}
