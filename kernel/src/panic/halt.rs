//! After the report (`panic=`): halt quietly with `sti; hlt` (the default),
//! spin as Linux's `panic()` does, exit QEMU, or reboot after N seconds.
//! Whichever it is, the host is told through pvpanic last, once every line
//! is out.

use crate::arch::x86::{cpu, i8042, lapic, pvpanic, qemu_exit};
use crate::args::{self, PanicAction};
use crate::console::emergency_write;
use crate::{percpu, time};
use core::sync::atomic::{AtomicBool, Ordering};

/// What happens after the report (`panic=`): say what the host will be told
/// and what this CPU will do, tell the host, then do it.
pub(super) fn finish() -> ! {
    let action = args::get().panic_action();
    let host_event = choose_host_event(action);
    let no_interrupts_here = !crate::arch::x86::idt::loaded_here() || !percpu::is_installed();
    if no_interrupts_here && matches!(action, PanicAction::Halt | PanicAction::Spin) {
        // An AP in its first instructions has no IDT yet: with interrupts on,
        // any interrupt would triple-fault. It halts with them off; the other
        // CPUs are stopped, and the report is out.
        emergency_write(format_args!(
            "panic: halting (cli; hlt: this CPU has no interrupt table yet)\n"
        ));
        tell_the_host(host_event);
        cpu::halt_forever();
    }
    match action {
        PanicAction::Exit => {
            tell_the_host(host_event);
            qemu_exit::exit(qemu_exit::ExitCode::Panicked)
        }
        PanicAction::Halt => halt_quietly(host_event),
        PanicAction::Spin => spin_like_linux(host_event),
        PanicAction::RebootAfter(seconds) => reboot_after(seconds, host_event),
    }
}

/// Which pvpanic event the host gets, said in the report: PANICKED, so the
/// host can act on it; or, when this kernel reboots itself (`panic=N`),
/// CRASH_LOADED, "the guest handles it" (QEMU docs/specs/pvpanic.rst). Only
/// events the device supports. None without the device (said too), and on
/// a second pass: a panic in the panic path comes here again, and the host
/// is told once.
fn choose_host_event(action: PanicAction) -> Option<u8> {
    static CHOSEN: AtomicBool = AtomicBool::new(false);
    if CHOSEN.swap(true, Ordering::AcqRel) {
        return None;
    }
    let Some((port, supported)) = pvpanic::device() else {
        emergency_write(format_args!("panic: no pvpanic device: the host is not told\n"));
        return None;
    };
    let reboots = matches!(action, PanicAction::RebootAfter(_));
    let (event, name) = if reboots && supported & pvpanic::CRASH_LOADED != 0 {
        (pvpanic::CRASH_LOADED, "CRASH_LOADED: the guest reboots itself")
    } else if supported & pvpanic::PANICKED != 0 {
        (pvpanic::PANICKED, "PANICKED")
    } else {
        emergency_write(format_args!(
            "panic: the pvpanic device at port {port:#x} takes neither event ({supported:#x}): the host is not told\n"
        ));
        return None;
    };
    emergency_write(format_args!(
        "panic: telling the host through pvpanic (port {port:#x}): {name}\n"
    ));
    Some(event)
}

/// Tells the host, once every line is out: a host that ends the run as soon
/// as it hears the panic (the runner's `--exit-on-panic`) loses nothing.
fn tell_the_host(event: Option<u8>) {
    if let Some(event) = event {
        pvpanic::signal(event);
    }
}

/// What `finish` will do, as the trace's PANIC_HALT records it.
pub(super) fn action_code() -> u16 {
    match args::get().panic_action() {
        PanicAction::Halt => 0,
        PanicAction::Spin => 1,
        PanicAction::Exit => 2,
        PanicAction::RebootAfter(_) => 3,
    }
}

/// Every periodic timer off, then `sti; hlt` forever: the host sees an idle
/// CPU. With `panic_blink=on` (the default) and a keyboard controller, a
/// one-shot timer wakes the CPU every half second to toggle the keyboard's
/// LEDs, then it halts again: a desktop user sees the machine has panicked,
/// at the cost of two wake-ups a second.
fn halt_quietly(host_event: Option<u8>) -> ! {
    let can_wake = lapic::is_initialised() && percpu::is_installed();
    if can_wake {
        crate::time::timer::stop();
    }
    let blink = can_wake && args::get().panic_blink && i8042::is_present();
    if blink {
        emergency_write(format_args!(
            "panic: blinking the keyboard LEDs every {BLINK_MS} ms (panic_blink=off: no blink)\n"
        ));
    }
    emergency_write(format_args!("panic: halting (sti; hlt)\n"));
    tell_the_host(host_event);
    let mut leds_on = false;
    loop {
        if blink {
            leds_on = !leds_on;
            i8042::set_leds(if leds_on { ALL_LEDS } else { 0 });
            crate::time::timer::start_one_shot(BLINK_MS * 1_000_000);
        }
        cpu::enable_interrupts_and_halt();
    }
}

/// The blink's half period, as Linux's `panic_blink` (500 ms on, 500 off).
const BLINK_MS: u64 = 500;
/// Scroll, Num and Caps Lock together.
const ALL_LEDS: u8 = 0b111;

/// The old way, kept for comparison: interrupts on, busy-wait forever, as
/// Linux's panic() does in its `mdelay()` loop.
fn spin_like_linux(host_event: Option<u8>) -> ! {
    emergency_write(format_args!(
        "panic: spinning (panic=spin: a busy loop, as Linux's mdelay() loop)\n"
    ));
    tell_the_host(host_event);
    crate::arch::x86::interrupts::enable();
    loop {
        time::udelay(1000);
    }
}

/// Sleeps `seconds` on one-shot timers, then resets the machine.
fn reboot_after(seconds: u64, host_event: Option<u8>) -> ! {
    emergency_write(format_args!("panic: rebooting in {seconds} s\n"));
    tell_the_host(host_event);
    let deadline = time::now_ns().saturating_add(seconds.saturating_mul(1_000_000_000));
    if lapic::is_initialised() && percpu::is_installed() {
        while time::now_ns() < deadline {
            // One-shot counts are 32-bit: sleep in steps of at most a second.
            crate::time::timer::start_one_shot((deadline - time::now_ns()).clamp(1, 1_000_000_000));
            cpu::enable_interrupts_and_halt();
        }
    } else {
        time::udelay(seconds * 1_000_000);
    }
    emergency_write(format_args!("panic: rebooting now\n"));
    crate::arch::x86::reset::reset_machine(|| time::udelay(100_000))
}
