//! The interrupt vectors the kernel uses for the local APIC, in one place
//! (Linux: arch/x86/include/asm/irq_vectors.h).
//!
//! They sit at the top of the 256, as in Linux: the upper four bits of a
//! vector are its priority class, and a higher class is delivered first and
//! blocks lower ones while in service (SDM Vol. 3A "Interrupt, Task, and
//! Processor Priority"). Vectors 0-31 are the architecture's exceptions;
//! 0x20-0x2f belong to the remapped, masked legacy PIC (see `pic`).

/// The local APIC timer (Linux: LOCAL_TIMER_VECTOR).
pub const TIMER_VECTOR: u8 = 0xec;
/// A vector tests send to check that a CPU answers IPIs.
pub const SELF_TEST_VECTOR: u8 = 0xf0;
/// Runs the cross-CPU calls queued for this CPU (Linux: CALL_FUNCTION_VECTOR).
pub const CALL_FUNCTION_VECTOR: u8 = 0xfc;
/// Asks a CPU to reschedule: a thread that outranks its current one was woken
/// for it (Linux: RESCHEDULE_VECTOR).
pub const RESCHEDULE_VECTOR: u8 = 0xfd;
/// Makes the other CPUs misbehave on purpose for the panic crash tests (whose
/// code registers its handler).
pub const CRASH_TEST_VECTOR: u8 = 0xf3;
/// Wakes a CPU from `hlt` and does nothing else: bring-up uses it so that
/// waiting CPUs can sleep instead of spinning.
pub const WAKE_VECTOR: u8 = 0xf2;
/// Where the local APIC sends interrupts it has to drop (SDM Vol. 3A 11.9 "Spurious Interrupt").
pub const SPURIOUS_VECTOR: u8 = 0xff;
