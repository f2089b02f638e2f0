//! What the kernel knows of each CPU: its number, APIC id, per-CPU data and
//! IST stacks, and where it is in its life cycle ([`ApState`]), which the
//! boot CPU and the AP move along with compare-and-swap (see `Cpu::advance`).

use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use x86_64::VirtAddr;

use crate::arch::x86::gdt::{CpuTables, IstStacks};
use crate::arch::x86::vectors::WAKE_VECTOR;
use crate::percpu::Area;

/// Where an AP is in its life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ApState {
    /// Never started, or back in wait-for-SIPI.
    Offline,
    /// INIT and SIPIs sent.
    Kicked,
    /// Running Rust code on its own stack.
    Alive,
    /// Descriptor tables, per-CPU data and local APIC set up; waiting for the TSC check.
    CalledIn,
    /// Told by the boot CPU to run the TSC check and go online.
    Released,
    Online,
    /// Stopped in `cli; hlt` on request, ready for INIT.
    Parked,
    /// Did not come online in time.
    Failed,
}

/// TSC values (boot CPU's time base) at each bring-up phase of one CPU.
#[derive(Default)]
pub struct PhaseTimes {
    pub kicked: AtomicU64,
    pub alive: AtomicU64,
    pub called_in: AtomicU64,
    pub online: AtomicU64,
}

/// What the kernel knows of one CPU.
pub struct Cpu {
    pub number: usize,
    pub apic_id: u32,
    /// Its per-CPU area, and its TSS and GDT.
    pub(super) area: Area,
    pub(super) tables: &'static CpuTables,
    pub(super) state: AtomicU8,
    /// A park request for this CPU (see `park`).
    pub(super) park_request: AtomicU8,
    pub times: PhaseTimes,
    pub(super) ist_stacks: [VirtAddr; 3],
}

impl Cpu {
    pub fn state(&self) -> ApState {
        // SAFETY: only set_state() writes `state`, always from an ApState.
        unsafe { core::mem::transmute::<u8, ApState>(self.state.load(Ordering::Acquire)) }
    }

    pub(super) fn set_state(&self, state: ApState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Moves from `from` to `to` if no one moved the CPU elsewhere first. The
    /// AP and the boot CPU race at every step of bring-up (the AP moving on,
    /// the boot CPU giving up on it): whoever moves first wins, and the loser
    /// sees it. An AP that loses stops and waits for the INIT that follows.
    pub(super) fn advance(&self, from: ApState, to: ApState) -> bool {
        self.state
            .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Sets the state and wakes the CPU in case it sleeps waiting for it.
    pub(super) fn set_state_and_wake(&self, state: ApState) {
        self.set_state(state);
        crate::irq::send_ipi(self.number, WAKE_VECTOR);
    }

    pub(super) fn ist_stacks(&self) -> IstStacks {
        IstStacks {
            double_fault: self.ist_stacks[0],
            nmi: self.ist_stacks[1],
            machine_check: self.ist_stacks[2],
        }
    }
}
