//! Synchronisation primitives.

pub mod spinlock;

pub use spinlock::SpinLock;
