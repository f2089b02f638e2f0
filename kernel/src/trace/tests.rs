//! Tests of the trace's ring, on rings of their own (the CPUs' rings belong
//! to the trace being recorded): events come back whole and in order, a ring
//! that wraps reports what it lost, and a slot being written reads as torn.

use super::format;
use super::ring::{Event, MIN_SLOTS_PER_CPU, Ring};

/// The test rings' size: small, the wrap-around is the same at any size.
const SLOTS: usize = MIN_SLOTS_PER_CPU;
use crate::testing::{KernelTest, TestResult};

fn event(n: u64) -> Event {
    Event { tsc: 1000 + n, kind: format::WAKE, small: n as u16, a: n, b: !n, c: n << 32 }
}

/// Everything still in `ring` since the last read, marked read.
fn read_all(ring: &Ring) -> (alloc::vec::Vec<Option<Event>>, u64) {
    let (indices, lost) = ring.undumped();
    let end = indices.end;
    let events = indices.map(|index| ring.read(index)).collect();
    ring.mark_dumped(end);
    (events, lost)
}

fn trace_ring_returns_events_in_order() -> TestResult {
    let ring = Ring::new_for_test(SLOTS);
    ring.push(&[event(1)]);
    ring.push(&[event(2), event(3)]);
    let (events, lost) = read_all(&ring);
    crate::ensure!(lost == 0, "{lost} events lost from a ring with room");
    let expected = [Some(event(1)), Some(event(2)), Some(event(3))];
    crate::ensure!(events == expected, "read back {events:?}, expected {expected:?}");
    // A second read starts where the first ended.
    ring.push(&[event(4)]);
    let (events, _) = read_all(&ring);
    ring.free_for_test();
    crate::ensure!(events == [Some(event(4))], "second read gave {events:?}");
    Ok(())
}

fn trace_ring_overwrites_the_oldest() -> TestResult {
    let ring = Ring::new_for_test(SLOTS);
    let extra = 10;
    for n in 0..(SLOTS as u64 + extra) {
        ring.push(&[event(n)]);
    }
    let (events, lost) = read_all(&ring);
    ring.free_for_test();
    crate::ensure!(lost == extra, "lost {lost}, expected {extra}");
    crate::ensure!(events.len() == SLOTS, "{} events kept", events.len());
    crate::ensure!(
        events.first() == Some(&Some(event(extra))),
        "the oldest kept is {:?}, expected event {extra}",
        events.first()
    );
    crate::ensure!(events.iter().all(Option::is_some), "a slot read as torn");
    Ok(())
}

fn trace_rings_fit_the_budget() -> TestResult {
    use super::ring::{BUDGET_BYTES, MAX_SLOTS_PER_CPU, slots_for};
    for cpus in [1, 2, 4, 12, 13, 64, 255, 512] {
        let slots = slots_for(cpus);
        crate::ensure!(slots.is_power_of_two(), "{cpus} CPUs: {slots} slots, not a power of two");
        let bytes = slots * format::RECORD_SIZE * cpus;
        crate::ensure!(
            bytes <= BUDGET_BYTES || slots == MIN_SLOTS_PER_CPU,
            "{cpus} CPUs: {bytes} bytes of rings, over the budget"
        );
    }
    crate::ensure!(slots_for(4) == MAX_SLOTS_PER_CPU, "4 CPUs get {} slots", slots_for(4));
    Ok(())
}

fn trace_ring_reads_a_slot_being_written_as_torn() -> TestResult {
    let ring = Ring::new_for_test(SLOTS);
    ring.push(&[event(1)]);
    // The writer of index 0 + SLOTS has reserved the slot that index
    // 0 lives in and marked it "being written" (its commit word) but not
    // yet stored its data: index 0 is gone, and the new one is not there yet.
    ring.mark_being_written_for_test(0);
    if let Some(event) = ring.read(0) {
        ring.free_for_test();
        return Err(alloc::format!("a slot being written was read as whole: {event:?}"));
    }
    ring.push(&[event(2)]);
    let next = ring.read(1);
    ring.free_for_test();
    crate::ensure!(next == Some(event(2)), "the next slot was not whole: {next:?}");
    Ok(())
}

/// A dump stops before slots reserved but not yet written at the tail (the
/// next dump gets them), and before an event whose text is not all written;
/// a slot not written in the middle is torn, and the dump goes past it.
fn trace_dump_leaves_a_record_in_progress_to_the_next() -> TestResult {
    use super::dump::whole_records_end;
    let ring = Ring::new_for_test(SLOTS);
    ring.push(&[event(0), event(1)]);
    ring.reserve_for_test(1); // index 2: its writer has not written it yet
    let (indices, _) = ring.undumped();
    let tail_end = whole_records_end(&ring, &indices);
    // A thread's name: the event says two text slots follow, one is written.
    let name = Event { kind: format::THREAD_NAME, c: 2, ..event(3) };
    let text = Event { kind: format::TEXT, small: 16, ..event(4) };
    ring.mark_dumped(3);
    ring.push(&[name, text]);
    ring.reserve_for_test(1);
    let (indices, _) = ring.undumped();
    let name_end = whole_records_end(&ring, &indices);
    // Later records behind the unwritten slot: it is torn, not a tail.
    ring.mark_dumped(3);
    ring.push(&[event(6)]);
    let (indices, _) = ring.undumped();
    let past_end = whole_records_end(&ring, &indices);
    let middle = ring.read(5);
    ring.free_for_test();
    crate::ensure!(tail_end == 2, "with slot 2 unwritten the dump ends at {tail_end}, not 2");
    crate::ensure!(name_end == 3, "a name missing its text: the dump ends at {name_end}, not 3");
    crate::ensure!(
        past_end == 7,
        "an unwritten slot before a written one: the dump ends at {past_end}"
    );
    crate::ensure!(middle.is_none(), "the unwritten slot 5 read as {middle:?}");
    Ok(())
}

crate::kernel_tests![
    KernelTest::new(
        "trace_dump_leaves_a_record_in_progress_to_the_next",
        trace_dump_leaves_a_record_in_progress_to_the_next
    ),
    KernelTest::new("trace_rings_fit_the_budget", trace_rings_fit_the_budget),
    KernelTest::new("trace_ring_returns_events_in_order", trace_ring_returns_events_in_order),
    KernelTest::new("trace_ring_overwrites_the_oldest", trace_ring_overwrites_the_oldest),
    KernelTest::new(
        "trace_ring_reads_a_slot_being_written_as_torn",
        trace_ring_reads_a_slot_being_written_as_torn
    ),
];
