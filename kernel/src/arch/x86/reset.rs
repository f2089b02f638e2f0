//! Resetting the machine (for `panic=N`).
//!
//! The classic PC ways, tried in order: pulse the reset line through the 8042
//! keyboard controller (command 0xfe to port 0x64), then force a triple fault
//! by loading an empty IDT and raising an exception: a CPU that cannot deliver
//! a double fault shuts down, and the chipset resets (SDM Vol. 3A 6.15,
//! "Interrupt 8—Double Fault Exception (#DF)").

use x86_64::VirtAddr;
use x86_64::instructions::port::Port;
use x86_64::structures::DescriptorTablePointer;

/// `settle` waits for the 8042's reset to take (the caller knows the clock:
/// 100 ms is plenty) before the triple fault is tried.
pub fn reset_machine(settle: impl FnOnce()) -> ! {
    // SAFETY: port 0x64 is the 8042's command port; 0xfe pulses the CPU reset line.
    unsafe { Port::<u8>::new(0x64).write(0xfe) };
    settle();
    let empty = DescriptorTablePointer { limit: 0, base: VirtAddr::zero() };
    // SAFETY: deliberately breaks interrupt delivery: the next exception
    // triple-faults, which resets the machine. Nothing runs afterwards.
    unsafe {
        x86_64::instructions::tables::lidt(&empty);
        core::arch::asm!("int3", options(noreturn));
    }
}
