//! Run-queue order (kernel/src/sched/runqueue.rs) and the priority levels
//! behind it (kernel/src/sched/priority.rs).

use std::sync::Arc;

use kernel_logic::priority::Priority;
use kernel_logic::runqueue::RunQueue;
use kernel_logic::thread::Thread;

fn thread(name: &'static str, priority: Priority) -> Arc<Thread> {
    Arc::new(Thread { name, priority })
}

/// Pops every thread, in the order the scheduler would run them.
fn drain(queue: &mut RunQueue) -> Vec<&'static str> {
    std::iter::from_fn(|| queue.pop_highest()).map(|t| t.name).collect()
}

#[test]
fn the_highest_level_runs_first() {
    let mut queue = RunQueue::new();
    queue.push(thread("normal", Priority::Normal));
    queue.push(thread("rt1", Priority::RealTime(1)));
    queue.push(thread("rt3", Priority::RealTime(3)));
    queue.push(thread("rt2", Priority::RealTime(2)));
    assert_eq!(drain(&mut queue), ["rt3", "rt2", "rt1", "normal"]);
}

#[test]
fn threads_of_one_level_run_first_in_first_out() {
    let mut queue = RunQueue::new();
    for name in ["a", "b", "c"] {
        queue.push(thread(name, Priority::RealTime(2)));
    }
    queue.push(thread("n1", Priority::Normal));
    queue.push(thread("d", Priority::RealTime(2)));
    queue.push(thread("n2", Priority::Normal));
    assert_eq!(drain(&mut queue), ["a", "b", "c", "d", "n1", "n2"]);
}

#[test]
fn a_thread_pushed_back_goes_behind_its_equals() {
    // What a time slice's end does: the running thread re-queued at its level.
    let mut queue = RunQueue::new();
    queue.push(thread("first", Priority::Normal));
    queue.push(thread("second", Priority::Normal));
    let running = queue.pop_highest().unwrap();
    queue.push(running);
    assert_eq!(drain(&mut queue), ["second", "first"]);
}

#[test]
fn idle_shares_the_normal_level_in_arrival_order() {
    let mut queue = RunQueue::new();
    queue.push(thread("idle", Priority::Idle));
    queue.push(thread("normal", Priority::Normal));
    assert_eq!(drain(&mut queue), ["idle", "normal"]);
}

#[test]
fn out_of_range_real_time_levels_are_clamped_not_out_of_bounds() {
    let mut queue = RunQueue::new();
    queue.push(thread("rt0", Priority::RealTime(0))); // below 1: level 1
    queue.push(thread("rt200", Priority::RealTime(200))); // above 3: level 3
    queue.push(thread("rt2", Priority::RealTime(2)));
    assert!(queue.has_level(1) && queue.has_level(3) && queue.has_level(2));
    assert_eq!(drain(&mut queue), ["rt200", "rt2", "rt0"]);
}

#[test]
fn length_and_levels_follow_pushes_and_pops() {
    let mut queue = RunQueue::new();
    assert!(queue.is_empty() && queue.pop_highest().is_none());
    queue.push(thread("rt3", Priority::RealTime(3)));
    queue.push(thread("normal", Priority::Normal));
    assert_eq!(queue.len(), 2);
    assert!(queue.has_level(3) && queue.has_level(0) && !queue.has_level(1));
    queue.pop_highest();
    assert!(!queue.has_level(3) && queue.len() == 1 && !queue.is_empty());
}

#[test]
fn rank_orders_priorities_as_the_enum_does() {
    let ladder = [
        Priority::Idle,
        Priority::Normal,
        Priority::RealTime(1),
        Priority::RealTime(2),
        Priority::RealTime(3),
    ];
    for pair in ladder.windows(2) {
        assert!(pair[0] < pair[1] && pair[0].rank() < pair[1].rank(), "{pair:?}");
    }
    assert_eq!(Priority::RealTime(9).rank(), Priority::RealTime(3).rank());
    for priority in [Priority::Idle, Priority::Normal, Priority::RealTime(1), Priority::RealTime(3)]
    {
        assert_eq!(Priority::from_rank(priority.rank()), priority);
    }
    let levels: Vec<usize> = ladder.iter().map(|p| p.level()).collect();
    assert_eq!(levels, [0, 0, 1, 2, 3]);
}
