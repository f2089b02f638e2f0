//! Where is a CPU that does not answer? Ask it with an NMI.
//!
//! A CPU with interrupts disabled takes no IPI, but it still takes a
//! non-maskable interrupt (SDM Vol. 3A 11.6.1, delivery mode NMI; 6.7.1
//! "Handling Multiple NMIs"). A waiter that reports a stuck target sends it an
//! NMI whose handler records the interrupted RIP and returns, so the report
//! can say where the target is spinning. Linux does the same from its
//! CSD-lock debugging with `trigger_single_cpu_backtrace()`.
//!
//! NMIs do not queue: one more can be latched while one is handled, the rest
//! are lost. So each request is a number, and only the requester that moves
//! `requested` past `answered` sends an NMI; any NMI that finds a request
//! outstanding answers it. No NMI is ever sent without a request waiting for
//! it, so the NMI handler never mistakes a sample for an unexpected NMI.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::percpu::cpu_local;
use crate::symbols::{self, Demangled};
use crate::time;

/// How long a requester waits for the answer.
const ANSWER_WITHIN_NS: u64 = 20_000_000;

/// One CPU's mailbox for RIP samples.
struct RipSample {
    requested: AtomicU64,
    answered: AtomicU64,
    rip: AtomicU64,
}

impl RipSample {
    const fn new() -> RipSample {
        RipSample {
            requested: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            rip: AtomicU64::new(0),
        }
    }
}

cpu_local! {
    static RIP_SAMPLE: RipSample = RipSample::new();
}

/// For a CPU restarted by INIT, which dropped any NMI still on its way:
/// a request it never answered would otherwise stay outstanding for good.
pub fn forget_requests() {
    let sample = RIP_SAMPLE.get();
    sample.answered.store(sample.requested.load(Ordering::Acquire), Ordering::Release);
}

/// Called by the NMI handler: true if this NMI answered a sample request.
pub fn answer_on_nmi(interrupted_rip: u64) -> bool {
    let sample = RIP_SAMPLE.get();
    let wanted = sample.requested.load(Ordering::Acquire);
    if sample.answered.load(Ordering::Relaxed) >= wanted {
        return false;
    }
    sample.rip.store(interrupted_rip, Ordering::Relaxed);
    sample.answered.store(wanted, Ordering::Release);
    true
}

/// Where a CPU was when it answered, if it did.
pub enum Location {
    At(u64),
    NoAnswer,
}

/// Asks `cpu` where it is, waiting up to 20 ms for the answer.
pub fn locate(cpu: usize) -> Location {
    let target = &super::cpus()[cpu];
    let sample = RIP_SAMPLE.on(cpu);
    let answered = sample.answered.load(Ordering::Acquire);
    // Ask only if no request is outstanding; otherwise wait for that one.
    let wanted = match sample.requested.compare_exchange(
        answered,
        answered + 1,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            crate::irq::send_nmi(target.number);
            answered + 1
        }
        Err(outstanding) => outstanding,
    };
    let deadline = time::now_ns() + ANSWER_WITHIN_NS;
    while sample.answered.load(Ordering::Acquire) < wanted {
        if time::now_ns() >= deadline {
            return Location::NoAnswer;
        }
        core::hint::spin_loop();
    }
    Location::At(sample.rip.load(Ordering::Relaxed))
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Location::At(rip) => match symbols::lookup(rip) {
                Some((name, offset)) => {
                    write!(f, "it is at RIP {rip:#x} {}+{offset:#x}", Demangled(name))
                }
                None => write!(f, "it is at RIP {rip:#x}"),
            },
            Location::NoAnswer => write!(
                f,
                "it did not answer an NMI within {} ms either",
                ANSWER_WITHIN_NS / 1_000_000
            ),
        }
    }
}
