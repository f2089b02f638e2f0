//! Crash tests of the panic path itself: a plain panic, a panic inside the
//! panic, every CPU panicking at once, a panic while another CPU holds the
//! console lock, and a panic with interrupts still pending. Each ends the
//! run; the host tests (tests/boot/) read the report. Test code only: the
//! crash-test IPI's handler is here too, because only these tests send it.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::arch::x86::lapic::{self, Ipi};
use crate::arch::x86::qemu_exit;
use crate::arch::x86::vectors::CRASH_TEST_VECTOR;
use crate::testing::{KernelTest, TestResult};
use crate::{irq, percpu, smp, time};

fn crash_panic() -> TestResult {
    panic!("panicking on purpose (crash test)");
}

/// What the crash-test IPI asks the other CPUs to do.
static CRASH_TEST_ACTION: AtomicU8 = AtomicU8::new(0);
const ACTION_PANIC_TOGETHER: u8 = 1;
const ACTION_HOLD_CONSOLE: u8 = 2;
/// Raised by the boot CPU to start the storm; counts CPUs ready for it.
static STORM_GO: AtomicU8 = AtomicU8::new(0);
static STORM_READY: AtomicUsize = AtomicUsize::new(0);

/// The crash-test IPI's handler, on every other CPU.
fn on_crash_test_ipi() {
    match CRASH_TEST_ACTION.load(Ordering::Acquire) {
        ACTION_PANIC_TOGETHER => {
            STORM_READY.fetch_add(1, Ordering::AcqRel);
            while STORM_GO.load(Ordering::Acquire) == 0 {
                core::hint::spin_loop();
            }
            panic!("panic storm: cpu{} panics too", percpu::cpu_number());
        }
        ACTION_HOLD_CONSOLE => crate::console::hold_lock_forever(),
        _ => {}
    }
}

fn send_crash_test_ipi(action: u8) -> usize {
    // Test code, so the vector's handler is registered here, not at boot.
    static HANDLER: spin::Once = spin::Once::new();
    HANDLER.call_once(|| irq::register(CRASH_TEST_VECTOR, "crash tests", on_crash_test_ipi));
    CRASH_TEST_ACTION.store(action, Ordering::Release);
    let me = percpu::cpu_number();
    let others: alloc::vec::Vec<_> = smp::online_except(me).collect();
    for cpu in &others {
        lapic::get().send_ipi(cpu.apic_id, Ipi::Fixed(CRASH_TEST_VECTOR));
    }
    others.len()
}

/// Every CPU panics at the same moment: one report, the others listed as stopped.
fn crash_panic_storm() -> TestResult {
    let others = send_crash_test_ipi(ACTION_PANIC_TOGETHER);
    while STORM_READY.load(Ordering::Acquire) < others {
        core::hint::spin_loop();
    }
    STORM_GO.store(1, Ordering::Release);
    panic!("panic storm: cpu{} panics too", percpu::cpu_number());
}

/// Another CPU takes the console lock and spins with interrupts off; this CPU
/// panics. The NMI must stop that CPU and the report must still be printed.
fn crash_panic_while_console_locked() -> TestResult {
    let others = send_crash_test_ipi(ACTION_HOLD_CONSOLE);
    crate::ensure!(others > 0, "needs a second CPU");
    let deadline = time::now_ns() + 1_000_000_000;
    while !crate::console::is_locked() && time::now_ns() < deadline {
        core::hint::spin_loop();
    }
    crate::ensure!(crate::console::is_locked(), "the other CPU did not take the console lock");
    panic!("panicking while another CPU holds the console lock");
}

/// This CPU panics while a reschedule IPI and a call IPI are pending for it,
/// and a real-time canary thread is queued on it. Once the report is out only
/// the panic path may run: neither the canary nor the call may ever print.
fn crash_panic_with_pending_ipis() -> TestResult {
    use crate::sched::{Builder, Priority};
    use alloc::sync::Arc;
    use core::sync::atomic::AtomicBool;
    let me_and_other = || {
        let me = percpu::cpu_number();
        smp::online_except(me).next().map(|c| (me, c.number))
    };
    crate::arch::x86::interrupts::disable();
    let Some((me, other)) = me_and_other() else {
        crate::arch::x86::interrupts::enable();
        return Err("needs a second CPU".into());
    };
    // Outranks everything here: spawning it asks this CPU to reschedule.
    Builder::new("canary").priority(Priority::RealTime(3)).pin(me).spawn(|| {
        crate::println!("canary: a thread ran after the panic");
        qemu_exit::exit(qemu_exit::ExitCode::Success);
    });
    lapic::get().send_ipi(
        smp::cpus()[me].apic_id,
        Ipi::Fixed(crate::arch::x86::vectors::RESCHEDULE_VECTOR),
    );
    // Another CPU queues a call for this one; its IPI stays pending here.
    let queued = Arc::new(AtomicBool::new(false));
    let queued2 = queued.clone();
    Builder::new("queue-a-call").pin(other).spawn(move || {
        crate::smp::call::call_on_many_nowait(
            crate::percpu::CpuSet::single(me),
            "after_panic",
            || {
                crate::println!("xcall: a cross-CPU call ran after the panic");
            },
        );
        queued2.store(true, Ordering::Release);
    });
    while !queued.load(Ordering::Acquire) {
        core::hint::spin_loop();
    }
    panic!("panicking with a reschedule IPI and a call IPI pending");
}

/// A value whose formatting panics: the panic message itself fails.
struct PanicsWhenFormatted;

impl fmt::Display for PanicsWhenFormatted {
    fn fmt(&self, _: &mut fmt::Formatter) -> fmt::Result {
        panic!("formatting this message panics");
    }
}

fn crash_panic_in_panic() -> TestResult {
    panic!("{}", PanicsWhenFormatted);
}

crate::kernel_tests![
    KernelTest::crash("crash_panic", crash_panic),
    KernelTest::crash("crash_panic_in_panic", crash_panic_in_panic),
    KernelTest::crash("crash_panic_storm", crash_panic_storm),
    KernelTest::crash("crash_panic_while_console_locked", crash_panic_while_console_locked),
    KernelTest::crash("crash_panic_with_pending_ipis", crash_panic_with_pending_ipis),
];
