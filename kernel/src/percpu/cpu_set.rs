//! Sets of CPUs as bitmaps (Linux: `struct cpumask`, include/linux/cpumask.h).
//!
//! A [`CpuSet`] holds one bit per CPU number in `MAX_CPUS / 64` words. It is
//! `Copy`: callers build one on the stack, pass it by value and keep it while
//! they wait (a cross-CPU call's targets travel with the waiting thread, see
//! `smp::call`). [`AtomicCpuSet`] is the same bitmap in atomic words, for sets
//! that CPUs change concurrently: an address space's loaded-on set, a call's
//! acknowledgements.
//!
//! **Why 512.** The capacity is fixed at compile time, as Linux's `NR_CPUS`
//! is, so that a set needs no allocation and can be copied. It has to cover
//! the machines this kernel runs on: QEMU 7.2's `pc` machine takes at most 255
//! CPUs (xAPIC ids 0-254; 255 is the broadcast id), `q35` 288 (ids above 254
//! need x2APIC, which TCG lacks). 512 covers both with room, and a set is then
//! 64 bytes, one cache line: cheap to copy, small on a 16 KiB IST stack, and a
//! call descriptor with its two atomic sets still fits in a few lines. Linux's
//! distribution kernels use `NR_CPUS=8192`, which makes a set 1 KiB; they then
//! allocate sets off the stack (`CONFIG_CPUMASK_OFFSTACK`) and bound every
//! walk by the number of CPUs found (`nr_cpu_ids`). This kernel is not there:
//! raising `MAX_CPUS` is a one-line change, and each set grows by 8 bytes per
//! 64 CPUs. A machine with more CPUs than this runs on the first `MAX_CPUS`
//! (`smp::init` says so in the log).
//!
//! **Cost.** Walking a set visits each word once and each member once
//! ([`CpuSet::iter`] takes the lowest set bit with `trailing_zeros`, as
//! Linux's `for_each_cpu` does with `find_next_bit`): an empty word costs one
//! test, so any walk is 8 tests plus one step per member. What "all CPUs"
//! really costs is the work done per member: a cross-CPU call to every CPU
//! takes each target's queue lock and writes the ICR once per target
//! (docs/smp.md measures it).
//!
//! **Atomic sets are not snapshots.** [`AtomicCpuSet::load`] reads the words
//! one after another, so it is not the set as it was at one instant. No user
//! needs that: each CPU's membership lives in exactly one word, changed only by
//! atomic read-modify-writes on that word, so what holds for one CPU with a
//! one-word mask (it joined before or after my read of its bit) still holds
//! for each CPU of the bitmap (see `AddressSpace.active`).
//!
//! This file uses nothing of the kernel's, so the host unit tests
//! (kernel-logic/) compile it as it is; `CpuSet::all_online` is in smp/mod.rs
//! and the in-kernel tests are in smp/cpu_set_tests.rs.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// The most CPUs this kernel manages (see the module comment for the choice).
pub const MAX_CPUS: usize = 512;

const BITS: usize = u64::BITS as usize;
const WORDS: usize = MAX_CPUS / BITS;
const _: () = assert!(MAX_CPUS.is_multiple_of(BITS), "MAX_CPUS must be a multiple of 64");

/// The word holding `cpu`'s bit, and the bit within it.
fn position(cpu: usize) -> (usize, u64) {
    assert!(cpu < MAX_CPUS, "CPU {cpu} is beyond this kernel's {MAX_CPUS} CPUs");
    (cpu / BITS, 1 << (cpu % BITS))
}

/// A set of CPUs by number.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSet {
    words: [u64; WORDS],
}

impl CpuSet {
    pub const fn new() -> CpuSet {
        CpuSet { words: [0; WORDS] }
    }

    /// A set made of raw words: CPU `64 * i + b` is in it if bit `b` of `words[i]` is.
    pub const fn from_words(words: [u64; WORDS]) -> CpuSet {
        CpuSet { words }
    }

    pub fn single(cpu: usize) -> CpuSet {
        let mut set = CpuSet::new();
        set.insert(cpu);
        set
    }

    pub fn insert(&mut self, cpu: usize) {
        let (word, bit) = position(cpu);
        self.words[word] |= bit;
    }

    pub fn remove(&mut self, cpu: usize) {
        let (word, bit) = position(cpu);
        self.words[word] &= !bit;
    }

    /// False for any CPU number beyond `MAX_CPUS`: no such CPU is in any set.
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_CPUS && self.words[cpu / BITS] & (1 << (cpu % BITS)) != 0
    }

    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The lowest-numbered CPU of the set.
    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    /// The CPUs in both sets.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet { words: core::array::from_fn(|i| self.words[i] & other.words[i]) }
    }

    /// The CPUs in either set.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet { words: core::array::from_fn(|i| self.words[i] | other.words[i]) }
    }

    /// The CPUs of this set that are not in `other`.
    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet { words: core::array::from_fn(|i| self.words[i] & !other.words[i]) }
    }

    /// The members in increasing order.
    pub fn iter(&self) -> Iter {
        Iter { words: self.words, word: 0 }
    }
}

/// Walks a set's members: the lowest set bit of the current word each time
/// (`trailing_zeros`, one instruction: TZCNT/BSF), clearing it, and a whole
/// word at a time past empty ones.
pub struct Iter {
    words: [u64; WORDS],
    word: usize,
}

impl Iterator for Iter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.word < WORDS {
            let bits = &mut self.words[self.word];
            if *bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                *bits &= *bits - 1; // clear the lowest set bit
                return Some(self.word * BITS + bit);
            }
            self.word += 1;
        }
        None
    }
}

impl IntoIterator for CpuSet {
    type Item = usize;
    type IntoIter = Iter;

    fn into_iter(self) -> Iter {
        self.iter()
    }
}

impl FromIterator<usize> for CpuSet {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> CpuSet {
        let mut set = CpuSet::new();
        cpus.into_iter().for_each(|cpu| set.insert(cpu));
        set
    }
}

/// As Linux prints a cpumask with `%*pbl`: `{0-3,8,10-11}`.
impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        let mut cpus = self.iter().peekable();
        let mut first = true;
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end = cpus.next().unwrap();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start { write!(f, "{start}")? } else { write!(f, "{start}-{end}")? }
        }
        f.write_str("}")
    }
}

/// A CPU set that CPUs change concurrently: one `AtomicU64` per 64 CPUs.
///
/// `insert` and `remove` are one atomic read-modify-write (`LOCK OR`,
/// `LOCK AND`) on the word that holds the CPU's bit, with the ordering the
/// caller asks for; on x86 a locked instruction is a full barrier whatever
/// the ordering (SDM Vol. 3A 9.2.2 "Memory Ordering in P6 and More Recent
/// Processor Families": "Locked instructions have a total order"). A
/// `load` is a snapshot of each word, not of the whole set (module comment).
pub struct AtomicCpuSet {
    words: [AtomicU64; WORDS],
}

impl AtomicCpuSet {
    pub const fn new() -> AtomicCpuSet {
        AtomicCpuSet { words: [const { AtomicU64::new(0) }; WORDS] }
    }

    pub fn insert(&self, cpu: usize, order: Ordering) {
        let (word, bit) = position(cpu);
        self.words[word].fetch_or(bit, order);
    }

    pub fn remove(&self, cpu: usize, order: Ordering) {
        let (word, bit) = position(cpu);
        self.words[word].fetch_and(!bit, order);
    }

    pub fn contains(&self, cpu: usize, order: Ordering) -> bool {
        cpu < MAX_CPUS && self.words[cpu / BITS].load(order) & (1 << (cpu % BITS)) != 0
    }

    /// Each word read with `order`, lowest first.
    pub fn load(&self, order: Ordering) -> CpuSet {
        CpuSet { words: core::array::from_fn(|i| self.words[i].load(order)) }
    }

    /// Empties the set, word by word.
    pub fn clear(&self, order: Ordering) {
        self.words.iter().for_each(|w| w.store(0, order));
    }
}

impl Default for AtomicCpuSet {
    fn default() -> AtomicCpuSet {
        AtomicCpuSet::new()
    }
}
