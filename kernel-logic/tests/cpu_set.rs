//! CPU sets (kernel/src/percpu/cpu_set.rs): membership across words, set
//! operations, the walk, the printed form, and CPU numbers out of range.

use std::sync::atomic::Ordering;

use kernel_logic::cpu_set::{AtomicCpuSet, CpuSet, MAX_CPUS};

/// CPU numbers in several words, at both ends of a word and the set's last.
const SAMPLE: [usize; 8] = [0, 5, 63, 64, 65, 200, 254, MAX_CPUS - 1];

#[test]
fn members_in_every_word_are_kept_once_and_walked_in_order() {
    let mut set = CpuSet::new();
    assert!(set.is_empty() && set.first().is_none());
    assert_eq!(set.len(), 0);
    for (n, &cpu) in SAMPLE.iter().enumerate() {
        set.insert(cpu);
        set.insert(cpu);
        assert!(set.contains(cpu) && set.len() == n + 1, "after {cpu}: {set:?}");
    }
    assert_eq!(set.iter().collect::<Vec<_>>(), SAMPLE);
    for cpu in [1, 62, 66, 127, 128, 253, 255, MAX_CPUS - 2] {
        assert!(!set.contains(cpu), "{cpu} is in {set:?}");
    }
    for cpu in [64, 0, MAX_CPUS - 1, 7] {
        set.remove(cpu);
        assert!(!set.contains(cpu));
    }
    assert_eq!(set.len(), SAMPLE.len() - 3);
    assert_eq!(set.first(), Some(5));
}

#[test]
fn numbers_beyond_max_cpus_are_in_no_set() {
    let full = CpuSet::from_words([u64::MAX; MAX_CPUS / 64]);
    assert_eq!(full.len(), MAX_CPUS);
    for cpu in [MAX_CPUS, MAX_CPUS + 1, MAX_CPUS + 64, usize::MAX] {
        assert!(!full.contains(cpu), "{cpu}");
        let atomic = AtomicCpuSet::new();
        assert!(!atomic.contains(cpu, Ordering::Relaxed), "{cpu}");
    }
    assert_eq!(full.iter().last(), Some(MAX_CPUS - 1));
}

#[test]
#[should_panic(expected = "beyond this kernel's")]
fn inserting_a_cpu_beyond_max_cpus_panics_rather_than_setting_another_bit() {
    CpuSet::new().insert(MAX_CPUS);
}

#[test]
#[should_panic(expected = "beyond this kernel's")]
fn an_atomic_set_refuses_a_cpu_beyond_max_cpus_too() {
    AtomicCpuSet::new().insert(MAX_CPUS + 3, Ordering::Relaxed);
}

#[test]
fn intersection_union_and_difference_cross_words() {
    let evens: CpuSet = (0..300).step_by(2).collect();
    let middle: CpuSet = (60..140).collect();
    let both = evens.intersection(&middle);
    assert_eq!(both.iter().collect::<Vec<_>>(), (60..140).step_by(2).collect::<Vec<_>>());
    assert_eq!(evens.union(&middle).len(), 150 + 40);
    let odd_middle = middle.difference(&evens);
    assert_eq!(odd_middle.len(), 40);
    assert!(odd_middle.iter().all(|cpu| cpu % 2 == 1 && (60..140).contains(&cpu)));
    assert!(evens.difference(&evens).is_empty());
}

#[test]
fn raw_words_map_to_cpu_numbers() {
    let mut words = [0u64; MAX_CPUS / 64];
    words[2] = 1 << 7 | 1 << 63;
    words[0] = 1;
    let set = CpuSet::from_words(words);
    assert_eq!(set.iter().collect::<Vec<_>>(), [0, 135, 191]);
    assert_eq!(set, [191, 0, 135].into_iter().collect());
}

#[test]
fn printed_as_ranges_like_linux_cpumask_lists() {
    let set: CpuSet = [0, 1, 2, 3, 63, 64, 65, 200, 202].into_iter().collect();
    assert_eq!(format!("{set:?}"), "{0-3,63-65,200,202}");
    assert_eq!(format!("{:?}", CpuSet::new()), "{}");
    assert_eq!(format!("{:?}", CpuSet::single(MAX_CPUS - 1)), format!("{{{}}}", MAX_CPUS - 1));
}

#[test]
fn atomic_sets_load_what_was_stored() {
    let set = AtomicCpuSet::new();
    SAMPLE.iter().for_each(|&cpu| set.insert(cpu, Ordering::Relaxed));
    assert!(set.load(Ordering::Relaxed).iter().eq(SAMPLE));
    set.remove(65, Ordering::Relaxed);
    set.remove(66, Ordering::Relaxed); // not a member: no change
    assert!(!set.contains(65, Ordering::Relaxed) && set.contains(64, Ordering::Relaxed));
    assert_eq!(set.load(Ordering::Relaxed).len(), SAMPLE.len() - 1);
    set.clear(Ordering::Relaxed);
    assert!(set.load(Ordering::Relaxed).is_empty());
}

#[test]
fn concurrent_updates_of_one_word_lose_no_bit() {
    // Threads flip their own bits, all in word 0 and word 1: a set whose
    // insert were a plain load and store would lose some of them.
    let set = AtomicCpuSet::new();
    std::thread::scope(|scope| {
        for owner in 0..8 {
            let set = &set;
            scope.spawn(move || {
                for round in 0..2000 {
                    for cpu in [owner, owner + 8, owner + 64] {
                        if round % 2 == 0 {
                            set.insert(cpu, Ordering::Relaxed)
                        } else {
                            set.remove(cpu, Ordering::Relaxed)
                        }
                    }
                }
                set.insert(owner, Ordering::Relaxed);
            });
        }
    });
    assert_eq!(set.load(Ordering::Relaxed), (0..8).collect());
}
