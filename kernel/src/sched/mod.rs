//! Scheduling. For now only the preempt count, which spinlocks already use.

pub mod preempt;
