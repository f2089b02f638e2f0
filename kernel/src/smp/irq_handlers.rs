//! What `smp` hangs on the interrupt layer: the cross-CPU call IPI, the wake
//! IPI, and the answer to a stuck-CPU sample NMI.

use crate::arch::x86::vectors::{CALL_FUNCTION_VECTOR, WAKE_VECTOR};
use crate::irq::{self, nmi::NmiStage};

/// Registers the handlers; on the boot CPU, before interrupts are enabled.
pub fn register() {
    irq::register(CALL_FUNCTION_VECTOR, "smp::call", super::call::on_call_interrupt);
    // The IPI only ends a `hlt`: whoever sleeps checks for itself why it woke.
    irq::register(WAKE_VECTOR, "smp wake", || {});
    irq::nmi::register(NmiStage::Sample, super::stuck_cpu::answer_on_nmi);
}
