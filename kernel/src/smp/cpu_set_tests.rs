//! In-kernel tests of `cpu_set`: the host unit tests (kernel-logic/) check the
//! same code without a machine; these also run it where it runs, and one
//! changes a set from every CPU at once.

use core::sync::atomic::Ordering;

use crate::percpu::cpu_set::{AtomicCpuSet, CpuSet, MAX_CPUS};
use crate::testing::{KernelTest, TestResult};

/// CPU numbers in several words, at both ends of a word and the set's last.
const SAMPLE: [usize; 8] = [0, 5, 63, 64, 65, 200, 254, MAX_CPUS - 1];

// len() is one of the things tested, not a way to ask for emptiness.
#[allow(clippy::len_zero)]
fn set_above_64() -> TestResult {
    let mut set = CpuSet::new();
    crate::ensure!(
        set.is_empty() && set.len() == 0 && set.first().is_none(),
        "a new set is not empty: {set:?}"
    );
    for (n, &cpu) in SAMPLE.iter().enumerate() {
        set.insert(cpu);
        set.insert(cpu); // twice: still one member
        crate::ensure!(
            set.contains(cpu) && set.len() == n + 1,
            "after inserting {cpu}: {set:?}, {} members",
            set.len()
        );
    }
    let walked: alloc::vec::Vec<usize> = set.iter().collect();
    crate::ensure!(walked == SAMPLE, "iter gave {walked:?}, expected {SAMPLE:?}");
    for cpu in [1, 62, 66, 127, 128, 253, 255, MAX_CPUS, MAX_CPUS + 64, usize::MAX] {
        crate::ensure!(!set.contains(cpu), "{cpu} is in {set:?}");
    }
    for cpu in [64, 0, MAX_CPUS - 1] {
        set.remove(cpu);
        crate::ensure!(!set.contains(cpu), "{cpu} still in {set:?} after its removal");
    }
    crate::ensure!(
        set.len() == SAMPLE.len() - 3 && set.first() == Some(5),
        "after removals: {set:?}"
    );
    let text = alloc::format!("{:?}", CpuSet::from_iter([0, 1, 2, 3, 63, 64, 65, 200, 202]));
    crate::ensure!(text == "{0-3,63-65,200,202}", "printed as {text}");
    Ok(())
}

fn set_operations_cross_words() -> TestResult {
    let evens: CpuSet = (0..300).step_by(2).collect();
    let low: CpuSet = (60..140).collect();
    let both = evens.intersection(&low);
    crate::ensure!(both.len() == 40 && both.first() == Some(60), "evens and 60..140: {both:?}");
    crate::ensure!(
        both.iter().all(|c| c % 2 == 0 && (60..140).contains(&c)),
        "intersection wrong: {both:?}"
    );
    let either = evens.union(&low);
    crate::ensure!(either.len() == 150 + 40, "union has {} members: {either:?}", either.len());
    let odd_low = low.difference(&evens);
    crate::ensure!(
        odd_low.len() == 40 && odd_low.iter().all(|c| c % 2 == 1),
        "difference wrong: {odd_low:?}"
    );
    let words = CpuSet::from_words(core::array::from_fn(|i| if i == 2 { 1 << 7 } else { 0 }));
    crate::ensure!(words.iter().eq([135]), "word 2, bit 7 read as {words:?}");
    Ok(())
}

fn atomic_set_above_64() -> TestResult {
    let set = AtomicCpuSet::new();
    for &cpu in &SAMPLE {
        set.insert(cpu, Ordering::SeqCst);
    }
    crate::ensure!(
        set.load(Ordering::SeqCst).iter().eq(SAMPLE),
        "loaded {:?}",
        set.load(Ordering::SeqCst)
    );
    set.remove(65, Ordering::SeqCst);
    set.remove(66, Ordering::SeqCst); // not a member: no change
    crate::ensure!(
        !set.contains(65, Ordering::SeqCst) && set.contains(64, Ordering::SeqCst),
        "after removing 65"
    );
    crate::ensure!(
        set.load(Ordering::Relaxed).len() == SAMPLE.len() - 1,
        "{:?}",
        set.load(Ordering::Relaxed)
    );
    set.clear(Ordering::Relaxed);
    crate::ensure!(set.load(Ordering::Relaxed).is_empty(), "not empty after clear");
    Ok(())
}

/// Every online CPU sets and clears its own bit in one shared atomic set,
/// many times at once: no update of one word may lose another CPU's bit.
fn atomic_set_concurrent_updates() -> TestResult {
    use alloc::sync::Arc;
    let shared = Arc::new(AtomicCpuSet::new());
    let online = CpuSet::all_online();
    // Each CPU owns three bits, its number and that number moved up by n and
    // 2n (n CPUs): no two CPUs share a bit (a lost update would be hidden by
    // another writer of the same bit), and with few CPUs the bits still fall
    // in several words. With more than MAX_CPUS / 3 CPUs, one bit each.
    let n = crate::smp::cpus().len();
    let bits =
        move |cpu: usize| if 3 * n <= MAX_CPUS { [cpu, cpu + n, cpu + 2 * n] } else { [cpu; 3] };
    for round in 0..200 {
        let shared2 = shared.clone();
        let flip = move || {
            for bit in bits(crate::percpu::cpu_number()) {
                if round % 2 == 0 {
                    shared2.insert(bit, Ordering::Relaxed)
                } else {
                    shared2.remove(bit, Ordering::Relaxed)
                }
            }
        };
        super::call::call_on_many(online, "cpu_set_flip", &flip)
            .map_err(|e| alloc::format!("{e:?}"))?;
        let expected: CpuSet =
            if round % 2 == 0 { online.iter().flat_map(bits).collect() } else { CpuSet::new() };
        let seen = shared.load(Ordering::Acquire);
        crate::ensure!(seen == expected, "round {round}: {seen:?}, expected {expected:?}");
    }
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("cpu_set_above_64", set_above_64),
    KernelTest::new("cpu_set_operations_cross_words", set_operations_cross_words),
    KernelTest::new("cpu_set_atomic_above_64", atomic_set_above_64),
    KernelTest::new("cpu_set_atomic_concurrent_updates", atomic_set_concurrent_updates),
];
