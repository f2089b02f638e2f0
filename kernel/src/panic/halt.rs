//! After the report (`panic=`): halt quietly with `sti; hlt` (the default),
//! spin as Linux's `panic()` does, exit QEMU, or reboot after N seconds.
//! Whichever it is, the host is told through pvpanic last, once every line
//! is out.

use crate::arch::x86::{cpu, i8042, interrupts, lapic, pvpanic, qemu_exit};
use crate::args::{self, PanicAction};
use crate::console::{self, emergency_write};
use crate::time::{self, timer};
use crate::{irq, percpu};
use core::sync::atomic::{AtomicBool, Ordering};

/// What happens after the report (`panic=`): say what the host will be told
/// and what this CPU will do, tell the host, then do it.
pub(super) fn finish() -> ! {
    let action = args::get().panic_action();
    let host_event = choose_host_event(action);
    if matches!(action, PanicAction::Halt | PanicAction::Spin)
        && let Some(why) = why_interrupts_must_stay_off()
    {
        // The other CPUs are stopped and the report is out: halting with
        // interrupts off loses nothing but the blink.
        emergency_write(format_args!("panic: halting (cli; hlt: {why})\n"));
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

/// Why this CPU may not turn interrupts on, if it may not.
fn why_interrupts_must_stay_off() -> Option<&'static str> {
    if !crate::arch::x86::idt::loaded_here() || !percpu::is_installed() {
        // An AP in its first instructions: any interrupt would triple-fault.
        Some("this CPU has no interrupt table yet")
    } else if irq::nmi::running_here() {
        Some("the panic began in an NMI handler, whose stack a second NMI would reuse")
    } else {
        None
    }
}

/// Whether this CPU can sleep until its local APIC timer wakes it: the timer
/// is set up and calibrated (a count computed from a rate of 0 would fire at
/// once, every time), and interrupts may be turned on.
fn can_sleep_on_the_timer() -> bool {
    lapic::is_initialised() && why_interrupts_must_stay_off().is_none() && timer::ticks_per_ms() > 0
}

/// Which pvpanic event the host gets: PANICKED, so the host can act on it;
/// or, when this kernel reboots itself (`panic=N`), CRASH_LOADED, "the guest
/// handles it" (QEMU docs/specs/pvpanic.rst). Only events the device
/// supports; None without the device. The choice is said in the report on
/// the first pass only: a panic in the panic path comes here again, and must
/// still tell the host if the first pass did not get that far.
fn choose_host_event(action: PanicAction) -> Option<u8> {
    static SAID: AtomicBool = AtomicBool::new(false);
    let say = !SAID.swap(true, Ordering::AcqRel);
    let Some((port, supported)) = pvpanic::device() else {
        if say {
            emergency_write(format_args!("panic: no pvpanic device: the host is not told\n"));
        }
        return None;
    };
    let reboots = matches!(action, PanicAction::RebootAfter(_));
    let chosen = if reboots && supported & pvpanic::CRASH_LOADED != 0 {
        Some((pvpanic::CRASH_LOADED, "CRASH_LOADED: the guest reboots itself"))
    } else if supported & pvpanic::PANICKED != 0 {
        Some((pvpanic::PANICKED, "PANICKED"))
    } else {
        None
    };
    match chosen {
        _ if !say => {}
        Some((_, name)) => emergency_write(format_args!(
            "panic: telling the host through pvpanic (port {port:#x}): {name}\n"
        )),
        None => emergency_write(format_args!(
            "panic: the pvpanic device at port {port:#x} takes neither event ({supported:#x}): the host is not told\n"
        )),
    }
    chosen.map(|(event, _)| event)
}

/// Tells the host, once every line is out: a host that ends the run as soon
/// as it hears the panic (the runner's `--exit-on-panic`) loses nothing. The
/// UART is drained first: its last bytes must have left it before the host
/// hears. Once: a panic in the panic path may get here a second time.
fn tell_the_host(event: Option<u8>) {
    static TOLD: AtomicBool = AtomicBool::new(false);
    if let Some(event) = event
        && !TOLD.swap(true, Ordering::AcqRel)
    {
        console::wait_until_sent(100_000);
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
    let can_wake = can_sleep_on_the_timer();
    if can_wake {
        timer::stop();
    }
    let mut blink = can_wake && args::get().panic_blink && i8042::is_present();
    if blink {
        emergency_write(format_args!(
            "panic: blinking the keyboard LEDs every {BLINK_MS} ms (panic_blink=off: no blink)\n"
        ));
    }
    emergency_write(format_args!("panic: halting (sti; hlt)\n"));
    tell_the_host(host_event);
    let mut leds_on = false;
    let mut next_toggle = 0;
    loop {
        // Interrupts off from here to the `hlt`: a timer that expires in
        // between then ends the `hlt` (sti's one-instruction shadow) instead
        // of being taken, and dropped, before it, which would leave the CPU
        // asleep with nothing armed.
        interrupts::disable();
        if blink {
            let now = time::now_ns();
            // Only when the half period is over: anything else that wakes
            // the CPU (an interrupt that was pending) must not speed it up.
            if now >= next_toggle {
                leds_on = !leds_on;
                blink = i8042::set_leds(if leds_on { ALL_LEDS } else { 0 });
                next_toggle = now + BLINK_MS * 1_000_000;
                if !blink {
                    emergency_write(format_args!(
                        "panic: the keyboard controller stopped answering: no more blinking\n"
                    ));
                }
            }
            if blink {
                timer::start_one_shot(next_toggle - now);
            }
        }
        cpu::enable_interrupts_and_halt();
    }
}

/// The blink's half period. Linux toggles every 200 ms (`3600 /
/// PANIC_BLINK_SPD`); half a second is as visible and wakes the CPU less.
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
    interrupts::enable();
    loop {
        time::udelay(1000);
    }
}

/// Sleeps `seconds` on one-shot timers, then resets the machine.
fn reboot_after(seconds: u64, host_event: Option<u8>) -> ! {
    emergency_write(format_args!("panic: rebooting in {seconds} s\n"));
    tell_the_host(host_event);
    let deadline = time::now_ns().saturating_add(seconds.saturating_mul(1_000_000_000));
    if can_sleep_on_the_timer() {
        loop {
            // Interrupts off from the check to the `hlt`, as in halt_quietly:
            // a last short sleep must not expire before the `hlt`.
            interrupts::disable();
            let now = time::now_ns();
            if now >= deadline {
                break;
            }
            // One-shot counts are 32-bit: sleep in steps of at most a second.
            timer::start_one_shot((deadline - now).min(1_000_000_000));
            cpu::enable_interrupts_and_halt();
        }
    } else {
        time::udelay(seconds.saturating_mul(1_000_000));
    }
    emergency_write(format_args!("panic: rebooting now\n"));
    crate::arch::x86::reset::reset_machine(|| time::udelay(100_000))
}
