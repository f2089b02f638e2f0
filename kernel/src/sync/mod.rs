//! Synchronisation primitives: the preempt count and spinlocks.

pub mod preempt;
pub mod spinlock;

pub use spinlock::SpinLock;
