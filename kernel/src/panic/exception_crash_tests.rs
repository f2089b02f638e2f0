//! Crash tests of the exception path: each raises one CPU exception on
//! purpose, which the handler in `arch::x86::idt` turns into a panic, and the
//! host tests (tests/boot/) read the report it ends in. Test code only,
//! kept here rather than beside the handlers because arch/ imports nothing
//! above it, the test harness included.

use crate::testing::{KernelTest, TestResult};

fn crash_page_fault() -> TestResult {
    let unmapped = 0x0000_7fff_dead_b000 as *const u64;
    // SAFETY: deliberately unsound: this read must fault, to show the report.
    let value = unsafe { core::ptr::read_volatile(unmapped) };
    Err(alloc::format!("reading an unmapped page returned {value:#x} instead of faulting"))
}

fn crash_double_fault() -> TestResult {
    // The kernel stack has an unmapped guard page below it. Running into it raises
    // a page fault whose frame cannot be pushed on that stack: a double fault,
    // which only reports because its handler runs on its own IST stack.
    let depth = crate::testing::overflow_the_stack(0);
    Err(alloc::format!("recursed {depth} times without overflowing the stack"))
}

fn crash_floating_point() -> TestResult {
    // The kernel has no floating-point state to switch (see sched::switch), so
    // any x87 or SSE instruction must fault rather than silently corrupt
    // another thread's registers.
    // SAFETY: deliberately executes an x87 instruction, which must raise #NM.
    unsafe { core::arch::asm!("fninit", options(nomem, nostack)) };
    Err("an x87 instruction ran instead of faulting".into())
}

fn crash_breakpoint() -> TestResult {
    x86_64::instructions::interrupts::int3();
    Err("int3 returned instead of being reported".into())
}

/// Sends this CPU an NMI that no stage of the NMI chain claims: `idt` turns
/// it into a panic, which then runs on the NMI's own IST stack.
fn crash_unclaimed_nmi() -> TestResult {
    crate::irq::send_nmi(crate::percpu::cpu_number());
    // An NMI to oneself arrives at once; a microsecond loop gives it time.
    crate::time::udelay(100_000);
    Err("an NMI sent to this CPU was not reported".into())
}

crate::kernel_tests![
    KernelTest::crash("crash_unclaimed_nmi", crash_unclaimed_nmi),
    KernelTest::crash("crash_page_fault", crash_page_fault),
    KernelTest::crash("crash_double_fault", crash_double_fault),
    KernelTest::crash("crash_breakpoint", crash_breakpoint),
    KernelTest::crash("crash_floating_point", crash_floating_point),
];
