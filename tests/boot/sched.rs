//! The scheduler.

use super::*;

const SCHED_TESTS: &str = "test=sched_higher_priority_preempts_busy_thread,sched_priorities_are_strict,\
sched_pinned_threads_all_run,sched_sleep_is_never_early,sched_wait_queue_wakes_every_waiter_once,\
spinlock_counter_under_contention,sched_preempt_tracer_records_longest_span";

#[test]
fn the_scheduler_tests_pass_on_eight_cpus() {
    boot(Firmware::Bios, 8, &[SCHED_TESTS])
        .expect(Outcome::KernelSuccess)
        .expect_line("7 passed, 0 failed");
}

#[test]
fn the_scheduler_tests_pass_on_one_cpu() {
    boot(Firmware::Bios, 1, &[SCHED_TESTS])
        .expect(Outcome::KernelSuccess)
        .expect_line("7 passed, 0 failed");
}

#[test]
fn a_thread_stack_overflow_is_reported() {
    boot(Firmware::Bios, 2, &["test=crash_thread_stack_overflow"])
        .expect(PANIC_EXITED)
        .expect_line("panic: kernel stack overflow in thread 'stack-overflow'")
        .expect_line("after touching the guard page at 0xffffd")
        .expect_line("kernel::testing::overflow_the_stack+0x");
}

#[test]
fn floating_point_instructions_fault() {
    boot(Firmware::Bios, 1, &["test=crash_floating_point"])
        .expect(PANIC_EXITED)
        .expect_line("device not available (#NM, vector 7)");
}
