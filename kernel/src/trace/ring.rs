//! Each CPU's trace buffer: a ring of fixed-size slots that only its own CPU
//! writes, without a lock, and that a dumper on any CPU may read at any time.
//!
//! **Writing.** The owner reserves slots by advancing its `head` with one
//! `xadd` (no `lock`: no other CPU writes this head, and one instruction is
//! atomic against an interrupt or NMI arriving on this CPU, which may record
//! events of its own in the middle of ours). It writes with interrupts off, so
//! the thread cannot move to another CPU between reserving and writing; an
//! NMI still can nest, and takes slots after ours. A reservation of several
//! slots (an event and its text) is contiguous.
//!
//! **When full**, the head simply runs on and overwrites the oldest slots
//! (ftrace's default "overwrite" mode): at a panic the newest events are the
//! ones that matter. The dumper reports how many were overwritten (`lost`).
//!
//! **Reading while the owner writes** is a seqlock per slot. The writer first
//! stores "being written" (0) into the slot's `commit`, then the data, then
//! `commit` = its index + 1; the reader reads `commit`, the data, and `commit`
//! again, and keeps the slot only if both reads name the index it expects.
//! On x86 stores become visible in program order and loads are not reordered
//! with older loads (SDM Vol. 3A 9.2.2, "Memory Ordering in P6 and More
//! Recent Processor Families"), so the fences below cost nothing but keep the
//! compiler from reordering; Linux's `seqcount_t` is the same protocol.
//! A slot overwritten while it is read fails the check and is counted as
//! `torn`, never dumped half old, half new. (`commit` holds the index's low
//! 32 bits plus one, so the one index in 2^32 whose `commit` would wrap to 0
//! reads as torn: one event lost per four billion, never a wrong one.)

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};

use crate::arch::x86::cpu::{fetch_add_this_cpu_only, rdtsc};
use crate::arch::x86::interrupts;
use crate::percpu::cpu_local;

/// The most slots a CPU's ring has: 8192 of 40 bytes, 320 KiB.
pub const MAX_SLOTS_PER_CPU: usize = 8192;
/// The fewest: 10 KiB.
pub const MIN_SLOTS_PER_CPU: usize = 256;
/// What all the rings together may take of the 16 MiB heap: with many CPUs
/// each ring gets less (at 255 CPUs, 256 slots each).
pub const BUDGET_BYTES: usize = 4 * 1024 * 1024;

/// Slots per ring for `cpus` CPUs: a power of two within the budget.
pub fn slots_for(cpus: usize) -> usize {
    let fit = BUDGET_BYTES / super::format::RECORD_SIZE / cpus.max(1);
    let power_of_two = if fit == 0 { 1 } else { 1 << fit.ilog2() };
    power_of_two.clamp(MIN_SLOTS_PER_CPU, MAX_SLOTS_PER_CPU)
}

/// One event as stored: the wire format's record, with `commit` where the
/// record has its padding.
#[repr(C)]
pub struct Slot {
    commit: AtomicU32,
    kind_and_small: AtomicU32,
    tsc: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
    c: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Slot>() == super::format::RECORD_SIZE);

/// An event read back out of a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub tsc: u64,
    pub kind: u16,
    pub small: u16,
    pub a: u64,
    pub b: u64,
    pub c: u64,
}

impl Event {
    /// A TEXT record carrying `bytes` (at most 16) in `a` then `b`.
    pub fn text(bytes: &[u8]) -> Event {
        let mut padded = [0u8; 16];
        padded[..bytes.len()].copy_from_slice(bytes);
        Event {
            tsc: 0,
            kind: super::format::TEXT,
            small: bytes.len() as u16,
            a: u64::from_le_bytes(padded[..8].try_into().unwrap()),
            b: u64::from_le_bytes(padded[8..].try_into().unwrap()),
            c: 0,
        }
    }
}

/// One CPU's ring.
pub struct Ring {
    /// `capacity` slots, or null until `install` (and for good if tracing is off).
    slots: AtomicPtr<Slot>,
    /// A power of two, set before `slots` is published.
    capacity: AtomicUsize,
    /// The index the next event gets. Only the owner advances it.
    head: AtomicU64,
    /// The first index the next dump reads. Only the dumper (one at a time) moves it.
    dumped: AtomicU64,
}

cpu_local! {
    /// This CPU's trace buffer.
    static RING: Ring = Ring {
        slots: AtomicPtr::new(core::ptr::null_mut()),
        capacity: AtomicUsize::new(0),
        head: AtomicU64::new(0),
        dumped: AtomicU64::new(0),
    };
}

/// CPU `cpu`'s ring.
pub fn ring_of(cpu: usize) -> &'static Ring {
    RING.on(cpu)
}

/// Gives CPU `cpu` a ring (it records nothing before). Needs the heap; runs
/// before that CPU starts, or on it before it records.
pub fn install(cpu: usize, capacity: usize) {
    let ring = ring_of(cpu);
    if ring.slots.load(Ordering::Acquire).is_null() {
        ring.capacity.store(capacity, Ordering::Relaxed);
        ring.slots.store(new_slots(capacity), Ordering::Release);
    }
}

/// `capacity` empty slots that live for good.
fn new_slots(capacity: usize) -> *mut Slot {
    assert!(capacity.is_power_of_two(), "trace: a ring of {capacity} slots");
    let slots = alloc::vec::Vec::from_iter((0..capacity).map(|_| Slot::empty()));
    alloc::boxed::Box::leak(slots.into_boxed_slice()).as_mut_ptr()
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            commit: AtomicU32::new(0),
            kind_and_small: AtomicU32::new(0),
            tsc: AtomicU64::new(0),
            a: AtomicU64::new(0),
            b: AtomicU64::new(0),
            c: AtomicU64::new(0),
        }
    }

    fn write(&self, index: u64, event: &Event) {
        self.commit.store(0, Ordering::Relaxed);
        fence(Ordering::Release); // "being written" before any of the data
        self.kind_and_small
            .store(event.kind as u32 | (event.small as u32) << 16, Ordering::Relaxed);
        self.tsc.store(event.tsc, Ordering::Relaxed);
        self.a.store(event.a, Ordering::Relaxed);
        self.b.store(event.b, Ordering::Relaxed);
        self.c.store(event.c, Ordering::Relaxed);
        self.commit.store(commit_of(index), Ordering::Release); // the data before "done"
    }

    fn read(&self, index: u64) -> Option<Event> {
        let expected = commit_of(index);
        // 0 means "being written": the one index whose commit wraps to it
        // cannot be told from a write in progress, so it reads as torn.
        if expected == 0 || self.commit.load(Ordering::Acquire) != expected {
            return None;
        }
        let kind_and_small = self.kind_and_small.load(Ordering::Relaxed);
        let event = Event {
            tsc: self.tsc.load(Ordering::Relaxed),
            kind: kind_and_small as u16,
            small: (kind_and_small >> 16) as u16,
            a: self.a.load(Ordering::Relaxed),
            b: self.b.load(Ordering::Relaxed),
            c: self.c.load(Ordering::Relaxed),
        };
        fence(Ordering::Acquire); // the data before the second look at `commit`
        (self.commit.load(Ordering::Relaxed) == expected).then_some(event)
    }
}

fn commit_of(index: u64) -> u32 {
    (index as u32).wrapping_add(1)
}

/// Records `events` in this CPU's ring, in consecutive slots, stamped with
/// `tsc`, or with the time now.
pub fn record(tsc: Option<u64>, events: &mut [Event]) {
    // Interrupts off: the thread must not move to another CPU between taking
    // the time, finding this CPU's ring and writing its slots (an event taken
    // on one CPU and written into another's ring would be drawn inside
    // whatever that CPU ran meanwhile). An NMI may still nest: it reserves
    // slots before or after ours (before, if it lands between the RDTSC and
    // the XADD, with a later time than ours: the host sorts by time).
    interrupts::without_interrupts(|| {
        let now = tsc.unwrap_or_else(rdtsc);
        for event in events.iter_mut() {
            event.tsc = now;
        }
        RING.get().push(events)
    });
}

impl Ring {
    /// A ring of its own, not any CPU's: for the tests, which free it with
    /// [`Ring::free_for_test`].
    pub fn new_for_test(capacity: usize) -> Ring {
        Ring {
            slots: AtomicPtr::new(new_slots(capacity)),
            capacity: AtomicUsize::new(capacity),
            head: AtomicU64::new(0),
            dumped: AtomicU64::new(0),
        }
    }

    /// Writes `events` into consecutive slots. Only this ring's CPU calls
    /// this, with interrupts off (see `record`).
    pub fn push(&self, events: &[Event]) {
        let slots = self.slots.load(Ordering::Acquire);
        if slots.is_null() {
            return;
        }
        let first = fetch_add_this_cpu_only(&self.head, events.len() as u64);
        for (index, event) in (first..).zip(events) {
            self.slot(slots, index).write(index, event);
        }
    }

    /// The slot `index` lives in.
    fn slot(&self, slots: *mut Slot, index: u64) -> &Slot {
        // Published before `slots` (which the caller loaded with Acquire).
        let capacity = self.capacity.load(Ordering::Relaxed);
        // SAFETY: `slots` points at `capacity` slots that live as long as
        // the ring, and the index is reduced modulo that number.
        unsafe { &*slots.add(index as usize & (capacity - 1)) }
    }

    /// The indices recorded since the last dump that are still in the ring,
    /// and how many before them were overwritten unread. The range may end
    /// in slots reserved but not yet written: see `committed_end`.
    pub fn undumped(&self) -> (core::ops::Range<u64>, u64) {
        if self.slots.load(Ordering::Acquire).is_null() {
            return (0..0, 0);
        }
        let head = self.head.load(Ordering::Acquire);
        let dumped = self.dumped.load(Ordering::Relaxed);
        let capacity = self.capacity.load(Ordering::Relaxed) as u64;
        let from = dumped.max(head.saturating_sub(capacity));
        (from..head, from - dumped)
    }

    /// The event at `index`, if it is whole (not being written, not
    /// overwritten by a later one).
    pub fn read(&self, index: u64) -> Option<Event> {
        let slots = self.slots.load(Ordering::Acquire);
        if slots.is_null() {
            return None;
        }
        self.slot(slots, index).read(index)
    }

    /// Frees a ring made by [`Ring::new_for_test`].
    pub fn free_for_test(self) {
        let slots = self.slots.load(Ordering::Acquire);
        let capacity = self.capacity.load(Ordering::Relaxed);
        // SAFETY: `new_slots` leaked a boxed slice of `capacity` slots at
        // this address; this ring was its only user, and is consumed.
        drop(unsafe {
            alloc::boxed::Box::from_raw(core::ptr::slice_from_raw_parts_mut(slots, capacity))
        });
    }

    /// Where `indices` stops being whole at its end: slots at the tail that
    /// are reserved but not yet written belong to a record in progress,
    /// which the next dump gets (ftrace's reader stops at the commit page the
    /// same way). A slot in the middle that is not whole stays torn.
    pub fn committed_end(&self, indices: &core::ops::Range<u64>) -> u64 {
        let mut end = indices.end;
        while end > indices.start && self.read(end - 1).is_none() {
            end -= 1;
        }
        end
    }

    /// Reserves `count` slots without writing them, as a writer does just
    /// before it writes: for the tests.
    pub fn reserve_for_test(&self, count: u64) {
        self.head.fetch_add(count, Ordering::Relaxed);
    }

    /// Puts the slot of `index` in the state a writer leaves it in between
    /// marking it and storing its data: for the tests.
    pub fn mark_being_written_for_test(&self, index: u64) {
        let slots = self.slots.load(Ordering::Acquire);
        self.slot(slots, index).commit.store(0, Ordering::Release);
    }

    /// Records that every index before `end` was dumped. Only the dumper,
    /// one at a time, calls this.
    pub fn mark_dumped(&self, end: u64) {
        self.dumped.store(end, Ordering::Relaxed);
    }
}
