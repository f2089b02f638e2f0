//! What the scheduler hangs on the interrupt layer: its share of the timer
//! tick, the reschedule IPI, the preemption check every interrupt ends in,
//! and the stack-overflow check of the double fault handler.

use crate::arch::x86::exception::{self, StackGuard};
use crate::arch::x86::vectors::RESCHEDULE_VECTOR;
use crate::{irq, percpu};

/// Registers the scheduler's handlers; on the boot CPU, before interrupts are enabled.
pub fn register() {
    crate::time::timer::set_tick_hook(super::on_timer_interrupt);
    // Nothing to do in the handler: the preemption check on the way out switches.
    irq::register(RESCHEDULE_VECTOR, "sched", || {});
    irq::set_return_hook(super::preempt_on_interrupt_return);
    exception::set_stack_guard(StackGuard {
        // An AP may double-fault before it has per-CPU data, hence no thread.
        is_guard_page: |address| percpu::is_installed() && super::hit_current_guard_page(address),
        describe_owner: |f| core::fmt::Display::fmt(&super::CurrentThread, f),
    });
}
