//! Made-up but plausible traces of what the kernel does, as the tests'
//! input: each is the events the kernel would record, CPU by CPU, in time
//! order, with the story told in its doc comment.

use super::E;
use crate::trace::format::*;

/// The first page of the shootdown.
pub const PAGE: u64 = 0x4000_0000;

/// Thread 7 (`tlb-demo`, on CPU 0) unmaps 4 pages: it queues a flush call for
/// CPUs 1 and 2 (id 42), sends each the call-function IPI, and waits, in
/// preempt mode. A tick preempts it for the real-time thread 9 (`rt-hog`)
/// while the shootdown is pending. CPUs 1 and 2 take the IPI, flush and ack.
/// Thread 7 resumes on CPU 1 at 2000 and finishes. CPU 2 also has a
/// preempt-off span, and (from CPU 0) a run queue of 2.
pub fn shootdown() -> Vec<E> {
    vec![
        E::new(0, 100, THREAD_NAME).small(1).a(7).text("tlb-demo"),
        E::new(0, 110, THREAD_NAME).small(3).a(9).text("rt-hog"),
        E::new(0, 120, SWITCH).small(1).a(1).b(7).c(0),
        E::new(0, 1000, SHOOTDOWN_BEGIN).small(0).a(PAGE).b(4 | 2 << 32 | 1 << 48).c(7),
        E::new(0, 1010, CALL_QUEUED).small(1).a(42),
        E::new(0, 1020, IPI_SEND).small(0xfc).a(1),
        E::new(0, 1030, CALL_QUEUED).small(2).a(42),
        E::new(0, 1040, IPI_SEND).small(0xfc).a(2),
        E::new(0, 1050, CALL_WAIT_BEGIN).small(0).a(42).b(7).c(2),
        E::new(0, 1100, TICK_BEGIN),
        E::new(0, 1105, TICK_END),
        E::new(0, 1110, SWITCH).small(3).a(7).b(9).c(1),
        E::new(0, 3000, SWITCH).small(0).a(9).b(1).c(3),
        E::new(1, 500, SWITCH).small(0).a(2).b(2).c(0),
        E::new(1, 1060, IRQ_BEGIN).small(0xfc),
        E::new(1, 1070, CALL_RUN_BEGIN).a(42).text("tlb flush"),
        E::new(1, 1080, TLB_FLUSH).small(FLUSH_RANGE).a(PAGE).b(4),
        E::new(1, 1090, CALL_RUN_END).a(42),
        E::new(1, 1095, CALL_ACKED).small(1).a(42).b(2),
        E::new(1, 1100, IRQ_END).small(0xfc),
        E::new(1, 2000, SWITCH).small(1).a(2).b(7).c(0),
        E::new(1, 2010, CALL_WAIT_END).a(42).b(7),
        E::new(1, 2020, SHOOTDOWN_END).a(PAGE).c(7),
        E::new(2, 600, SWITCH).small(0).a(3).b(3).c(0),
        E::new(2, 1065, IRQ_BEGIN).small(0xfc),
        E::new(2, 1075, CALL_RUN_BEGIN).a(42).text("tlb flush"),
        E::new(2, 1085, TLB_FLUSH).small(FLUSH_RANGE).a(PAGE).b(4),
        E::new(2, 1093, CALL_RUN_END).a(42),
        E::new(2, 1096, CALL_ACKED).small(2).a(42).b(1),
        E::new(2, 1098, IRQ_END).small(0xfc),
        E::new(2, 1500, PREEMPT_OFF)
            .a(0xffff_8000_0012_3456)
            .b(300)
            .text("kernel/src/mm/map.rs:12"),
        E::new(0, 1600, RUN_QUEUE).small(2).a(2),
    ]
}

/// A parallel bring-up of two APs: CPU 1 goes through every phase, CPU 2
/// stops after calling in and is given up.
pub fn bring_up() -> Vec<E> {
    vec![
        E::new(0, 100, BRING_UP_BEGIN).small(0).a(2),
        E::new(0, 110, AP_KICK).small(1).a(1),
        E::new(0, 115, AP_KICK).small(2).a(2),
        E::new(0, 900, AP_GIVEN_UP).small(2).a(3),
        E::new(0, 950, BRING_UP_END).a(2).b(40),
        E::new(1, 200, AP_ALIVE),
        E::new(1, 300, AP_CALLED_IN),
        E::new(1, 400, AP_TSC_CHECK),
        E::new(1, 500, AP_ONLINE),
        E::new(2, 210, AP_ALIVE),
        E::new(2, 310, AP_CALLED_IN),
    ]
}

/// CPU 0 panics and stops the other two with NMIs, which never return.
/// (The kernel records its stop NMIs as a count in `PANIC_BEGIN`; a test
/// records them as `IPI_SEND`s too, as `irq::send_nmi` does for others.)
pub fn panic() -> Vec<E> {
    vec![
        E::new(0, 100, PANIC_BEGIN).a(2),
        E::new(0, 110, IPI_SEND).small(NMI).a(1),
        E::new(0, 111, IPI_SEND).small(NMI).a(2),
        E::new(0, 200, PANIC_REPORT_DONE),
        E::new(0, 210, PANIC_HALT).small(0),
        E::new(1, 120, NMI_BEGIN).small(NMI).a(0xffff_8000_0006_66bc),
        E::new(1, 121, PANIC_STOP),
        E::new(2, 125, NMI_BEGIN).small(NMI),
        E::new(2, 126, PANIC_STOP),
    ]
}
