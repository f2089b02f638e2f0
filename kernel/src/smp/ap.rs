//! An AP's first Rust code, reached from the trampoline on the AP's own stack.

use core::sync::atomic::Ordering;

use crate::arch::x86::interrupts;

use super::bring_up::wake_boot_cpu;
use super::{ApState, SMP, tsc_sync};
use crate::arch::x86::cpu::{self, rdtsc};
use crate::arch::x86::{control, gdt, idt, lapic};
use crate::args::{self, Fault};
use crate::percpu::{self, Area};
use crate::trace::{self, format};

/// Entered with RSP = this CPU's stack and the address of its per-CPU area
/// (found by APIC id in the trampoline). Never returns: ends in the idle loop.
pub extern "C" fn ap_entry(area_address: u64) -> ! {
    // SAFETY: the trampoline passes the `percpu` field of this CPU's table
    // entry, which smp::init() filled with Area::address().
    let area = unsafe { Area::from_address(area_address) };
    let smp = SMP.get().expect("an AP started before smp::init() finished");
    let me = &smp.cpus[area.cpu()];
    match args::get().fault {
        Some(Fault::ApStuck(cpu)) if cpu == me.number => cpu::halt_forever(), // never report alive
        Some(Fault::ApPanic(cpu)) if cpu == me.number => {
            panic!("fault=ap_panic:{cpu}: panicking before this CPU's per-CPU data is installed")
        }
        _ => {}
    }
    me.times.alive.store(rdtsc(), Ordering::Relaxed);
    if !me.advance(ApState::Kicked, ApState::Alive) {
        cpu::halt_forever(); // the boot CPU gave up on us; its INIT follows
    }

    // SAFETY: the kernel's level-4 table maps everything the trampoline's copy
    // did in the kernel half (the copy came from it), which is all this code,
    // its stack and its data use; CR0/CR4 are the boot CPU's proven settings.
    unsafe { control::adopt(smp.cr0, smp.kernel_cr3, smp.cr4) };
    area.install();
    // INIT resets the CPU, not its per-CPU area: the owners of state that
    // must not survive a restart forget it.
    crate::sync::preempt::reset_after_restart();
    crate::irq::reset_after_restart();
    super::stuck_cpu::forget_requests();
    // Recorded now that this CPU has its per-CPU data (its trace buffer),
    // with the time it got here.
    trace::record_at(me.times.alive.load(Ordering::Relaxed), format::AP_ALIVE, 0, 0, 0, 0);
    gdt::init_this_cpu(me.tables, me.ist_stacks());
    crate::arch::x86::syscall::init_this_cpu();
    idt::init_this_cpu();
    lapic::init_this_cpu();
    percpu::set_apic_id(me.number, lapic::get().id());
    crate::time::timer::init_this_cpu();
    let called_in = rdtsc();
    me.times.called_in.store(called_in, Ordering::Relaxed);
    trace::record_at(called_in, format::AP_CALLED_IN, 0, 0, 0, 0);
    if !me.advance(ApState::Alive, ApState::CalledIn) {
        cpu::halt_forever();
    }
    wake_boot_cpu();

    // Sleep until the boot CPU releases this CPU into the TSC check (it sends
    // a wake IPI); interrupts stay off between the check and `sti; hlt`.
    while me.state() != ApState::Released {
        cpu::enable_interrupts_and_halt();
        interrupts::disable();
    }
    trace::record(format::AP_TSC_CHECK, 0, 0, 0, 0);
    tsc_sync::take_part();
    let online = rdtsc();
    me.times.online.store(online, Ordering::Relaxed);
    trace::record_at(online, format::AP_ONLINE, 0, 0, 0, 0);
    // Calls may be queued here from now on; they run once interrupts are on.
    // (If the boot CPU gives up on this CPU instead, it closes the queue again.)
    crate::smp::call::open_this_cpu();
    if !me.advance(ApState::Released, ApState::Online) {
        cpu::halt_forever();
    }
    percpu::mark_online();
    // The boot CPU is told only once the scheduler runs here: a thread pinned
    // to this CPU right after bring-up must find it taking threads.
    crate::sched::become_idle(wake_boot_cpu)
}
