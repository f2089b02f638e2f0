//! The panic path: the stop, the report, the quiet halt, and what comes after.

use super::*;

/// The report's lines about the other CPUs, e.g. "panic:   cpu2 stopped by NMI at RIP ...".
fn stopped_cpus(run: &Run) -> Vec<String> {
    run.serial
        .lines()
        .filter(|l| l.contains("panic:   cpu") && l.contains(" stopped"))
        .map(String::from)
        .collect()
}

#[test]
fn a_panic_stops_the_other_cpus_prints_once_and_halts_quietly() {
    let config =
        RunConfig { cpus: 4, kernel_args: vec!["then=panic".into()], ..RunConfig::default() };
    // panic=halt never exits: the run is stopped after the halt line, still halted.
    let run = boot_until(config, "panic: halting (sti; hlt)");
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("panic: then=panic: panicking on purpose")
        .expect_line("panic: at kernel/src/main.rs:")
        .expect_line("panic: context: cpu0, kernel code outside interrupts, preempt count 0")
        .expect_line("panic: other CPUs (3 stopped):")
        .expect_line("kernel::kernel_main+0x")
        .expect_count("---- kernel panic", 1);
    assert_eq!(stopped_cpus(&run).len(), 3, "not 3 CPUs listed as stopped; {}", run.explain());
    // The kernel's last line (the runner may add its own after it).
    let last = run.serial.lines().rfind(|l| !l.starts_with("runner: ")).unwrap_or("");
    assert_eq!(
        last,
        "panic: halting (sti; hlt)",
        "the report did not end with the halt line; {}",
        run.explain()
    );
}

/// Boots 4 CPUs with `kernel_args`, waits until the panic report ends with
/// `panic: halting (sti; hlt)`, then measures over 3 s how much host CPU QEMU
/// uses, the way `cargo run -- bench-panic` does, and requires less than 10%
/// of one host core.
///
/// Why 10% cannot fail by chance: a real halt measured 0.1% of a core (see
/// docs/panic.md), so the bound leaves a margin of 100 times. A halted guest
/// has nothing to run, so a busy host cannot make QEMU use more. A kernel
/// that spins instead uses a whole core, and load on the host can only lower
/// that share, never raise a halted one's; under heavy load the test could at
/// worst miss a spin, not report one that is not there.
fn assert_halt_is_quiet(kernel_args: &[&str]) {
    // panic=halt goes first: it is the default only outside tests (with
    // test= a panic exits), and a panic= in `kernel_args` still wins, as the
    // kernel lets later words override earlier ones.
    let args = std::iter::once("panic=halt").chain(kernel_args.iter().copied());
    let config = RunConfig {
        cpus: 4,
        kernel_args: args.map(String::from).collect(),
        ..RunConfig::default()
    };
    let mut qemu = boot::RunningQemu::start(&config, true)
        .unwrap_or_else(|error| panic!("cannot boot: {error}"));
    let halted = qemu.wait_for_output("panic: halting (sti; hlt)", TIMEOUT);
    let used = halted.then(|| boot::panic_bench::cpu_use(qemu.pid(), Duration::from_secs(3)));
    let (outcome, serial) = qemu.finish(Some(Duration::ZERO)).unwrap();
    let run = Run { outcome, serial };
    assert!(halted, "the kernel never printed the halt line; {}", run.explain());
    let used = used
        .unwrap()
        .unwrap_or_else(|error| panic!("cannot read QEMU's CPU time: {error}; {}", run.explain()));
    eprintln!(
        "halted with {kernel_args:?}: QEMU used {:.3}% of one host core",
        used.from_schedstat
    );
    assert!(
        used.from_schedstat < 10.0,
        "QEMU used {:.3}% of a host core after the halt line, expected under 10%; {}",
        used.from_schedstat,
        run.explain()
    );
    // Killed while still halted: nothing ended the run after the halt line.
    run.expect(PANIC_LEFT_RUNNING);
}

#[test]
fn a_halted_panic_leaves_the_host_idle() {
    assert_halt_is_quiet(&["then=panic"]);
    // Also when IPIs were pending at the panic: none of them may wake anything.
    assert_halt_is_quiet(&["test=crash_panic_with_pending_ipis"]);
}

#[test]
fn a_panic_storm_gives_one_report_and_lists_every_other_cpu() {
    let run = boot(Firmware::Bios, 4, &["test=crash_panic_storm"]);
    run.expect(PANIC_EXITED)
        .expect_line("panic: panic storm: cpu")
        .expect_count("---- kernel panic", 1);
    let owner: usize = run.serial.split("---- kernel panic on cpu").nth(1).unwrap()[..1]
        .parse()
        .unwrap_or_else(|_| panic!("no CPU number after 'kernel panic on cpu'; {}", run.explain()));
    let stopped = stopped_cpus(&run);
    for cpu in (0..4).filter(|&c| c != owner) {
        let listed = stopped.iter().any(|l| l.contains(&format!("panic:   cpu{cpu} stopped")));
        assert!(listed, "cpu{cpu} not listed as stopped; {}", run.explain());
    }
}

#[test]
fn a_panic_prints_even_while_another_cpu_holds_the_console_lock() {
    let run = boot(Firmware::Bios, 4, &["test=crash_panic_while_console_locked"]);
    run.expect(PANIC_EXITED)
        .expect_line("panic: panicking while another CPU holds the console lock")
        // The holder spins with interrupts disabled; only the NMI can stop it.
        .expect_line("stopped by NMI at RIP 0xffff")
        .expect_line("kernel::console::hold_lock_forever+0x")
        .expect_line("panic: backtrace (newest first):")
        // panic_fmt never returns: its return address lies past its end, and
        // is named only because the walk looks up the call before it.
        .expect_line("core::panicking::panic_fmt+0x")
        .expect_line("kernel::panic::crash_tests::crash_panic_while_console_locked+0x");
}

#[test]
fn a_panic_inside_the_panic_path_does_not_recurse() {
    let run = boot(Firmware::Bios, 2, &["test=crash_panic_in_panic"]);
    run.expect(PANIC_EXITED)
        .expect_line("panic: panicked again while reporting: formatting this message panics")
        .expect_count("---- kernel panic", 1)
        .expect_count("panicked again", 1)
        // The host is told even though the report broke, and only once.
        .expect_count("panic: telling the host through pvpanic (port 0x505): PANICKED", 1)
        .expect_line("runner: guest panicked (QMP event GUEST_PANICKED");
}

#[test]
fn panic_with_a_timeout_reboots() {
    let started = std::time::Instant::now();
    let run = boot(Firmware::Bios, 2, &["then=panic", "panic=2"]);
    // The guest reset (-no-reboot ends QEMU then), after telling the host.
    run.expect(PANIC_EXITED)
        .expect_line("panic: rebooting in 2 s")
        .expect_line("panic: rebooting now")
        // The guest handles this panic itself, and says so.
        .expect_line("panic: telling the host through pvpanic (port 0x505): CRASH_LOADED")
        .expect_line("runner: guest panicked (QMP event GUEST_CRASHLOADED");
    assert!(started.elapsed() < Duration::from_secs(120), "took {:?}", started.elapsed());
}

#[test]
fn panic_spin_keeps_the_busy_loop_and_bad_values_are_refused() {
    let config = RunConfig {
        cpus: 1,
        kernel_args: vec!["then=panic".into(), "panic=spin".into()],
        ..RunConfig::default()
    };
    boot_until(config, "panic: spinning (panic=spin").expect(PANIC_LEFT_RUNNING);
    boot(Firmware::Bios, 1, &["panic=0", "then=exit"])
        .expect(Outcome::KernelSuccess)
        .expect_line("warning: kernel argument panic=0 is not valid (accepted: halt, spin, exit, or a number of seconds N > 0");
}

/// With QEMU's pvpanic device (the runner's default) the report ends by
/// telling the host, the runner hears QEMU's GUEST_PANICKED event, and the
/// run ends with the panic's own status.
#[test]
fn a_panic_tells_the_host_through_pvpanic_and_the_runner_hears_it() {
    let run = boot(Firmware::Bios, 2, &["then=panic", "panic=exit"]);
    run.expect(PANIC_EXITED)
        .expect_line("panic: telling the host through pvpanic (port 0x505): PANICKED")
        .expect_line("runner: guest panicked (QMP event GUEST_PANICKED, ");
    assert_eq!(run.outcome.exit_code(), 4);
}

/// `--exit-on-panic`: a halted panic (the default) ends the run as soon as
/// the runner hears it, long before the timeout, with every line out: the
/// kernel tells the host only after its last line.
#[test]
fn exit_on_panic_ends_a_halted_panic_when_the_host_hears_it() {
    let started = std::time::Instant::now();
    let run = boot_with(RunConfig {
        cpus: 2,
        kernel_args: vec!["then=panic".into()],
        exit_on_panic: true,
        ..RunConfig::default()
    });
    let took = started.elapsed();
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("runner: guest panicked (QMP event GUEST_PANICKED, ");
    let last = run.serial.lines().rfind(|l| !l.starts_with("runner: ")).unwrap_or("");
    assert_eq!(last, "panic: halting (sti; hlt)", "the last lines were lost; {}", run.explain());
    // Killed at the timeout instead, it would have taken TIMEOUT.
    assert!(took < TIMEOUT / 2, "the run went on for {took:?}; {}", run.explain());
}

/// An NMI nobody claims becomes a panic that runs on the NMI's own stack.
/// That CPU must never turn interrupts on again: the `iret` of any interrupt
/// (the blink's timer, say) would unblock NMIs, and the next NMI would start
/// again at the top of the stack the panic is still using. It halts with
/// interrupts off, and says why (no blink).
#[test]
fn a_panic_in_an_nmi_handler_halts_with_interrupts_off() {
    let config = RunConfig {
        cpus: 2,
        kernel_args: vec!["test=crash_unclaimed_nmi".into(), "panic=halt".into()],
        ..RunConfig::default()
    };
    boot_until(config, "panic: halting (")
        .expect(PANIC_LEFT_RUNNING)
        .expect_line("(NMI, vector 2)")
        .expect_line("panic: halting (cli; hlt: the panic began in an NMI handler, whose stack a second NMI would reuse)")
        .expect_count("panic: blinking", 0);
}

/// Without the device the report says so, and the kernel carries on to its
/// end: `panic=exit` still ends with the panic's status (the kernel's own
/// exit code), while a halted panic is, to the runner, just a guest that
/// stopped talking.
#[test]
fn without_pvpanic_the_report_says_the_host_is_not_told() {
    let without = |action: &str| RunConfig {
        cpus: 2,
        kernel_args: vec!["then=panic".into(), action.into()],
        pvpanic: false,
        ..RunConfig::default()
    };
    boot_with(without("panic=exit"))
        .expect(PANIC_EXITED)
        .expect_line("panic: no pvpanic device: the host is not told")
        .expect_count("runner: guest panicked", 0);
    boot_until(without("panic=halt"), "panic: halting (sti; hlt)")
        .expect(Outcome::TimedOut)
        .expect_line("panic: no pvpanic device: the host is not told");
}

/// The LED commands QEMU's keyboard received while the kernel sat halted
/// after a panic for `seconds`, read from QEMU's own trace of its PS/2
/// keyboard (`-trace ps2_set_ledstate`): (times all LEDs were set on, times
/// they were set off).
fn led_changes_while_halted(name: &str, kernel_args: &[&str], seconds: u64) -> (Run, usize, usize) {
    let log = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let config = RunConfig {
        cpus: 2,
        kernel_args: kernel_args.iter().map(|a| a.to_string()).collect(),
        qemu_args: vec![
            "-trace".into(),
            "ps2_set_ledstate".into(),
            "-D".into(),
            log.display().to_string(),
        ],
        ..RunConfig::default()
    };
    let mut qemu = boot::RunningQemu::start(&config, true).expect("cannot boot");
    let halted = qemu.wait_for_output("panic: halting (sti; hlt)", TIMEOUT);
    // Only what happens after the halt line counts (the firmware sets the LEDs too).
    let before = std::fs::read_to_string(&log).unwrap_or_default().lines().count();
    std::thread::sleep(Duration::from_secs(seconds));
    let (outcome, serial) = qemu.finish(Some(Duration::ZERO)).unwrap();
    let run = Run { outcome, serial };
    assert!(halted, "the kernel never halted; {}", run.explain());
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let after: Vec<&str> = text.lines().skip(before).collect();
    let on = after.iter().filter(|l| l.ends_with("ledstate 7")).count();
    let off = after.iter().filter(|l| l.ends_with("ledstate 0")).count();
    (run, on, off)
}

#[test]
fn a_halted_panic_blinks_the_keyboard_leds() {
    let (run, on, off) = led_changes_while_halted("blink-on", &["then=panic"], 4);
    run.expect(PANIC_LEFT_RUNNING).expect_line("panic: blinking the keyboard LEDs every 500 ms");
    // Every 500 ms: about 4 on and 4 off in 4 s, alternating; a slow host
    // may wake it late, but nothing may make it blink faster.
    let expected = 2..=6;
    assert!(
        expected.contains(&on) && expected.contains(&off) && on.abs_diff(off) <= 1,
        "LEDs set on {on} and off {off} times in 4 s, expected 2 to 6 each, alternating; {}",
        run.explain()
    );
}

#[test]
fn panic_blink_off_leaves_the_leds_alone() {
    let (run, on, off) =
        led_changes_while_halted("blink-off", &["then=panic", "panic_blink=off"], 3);
    run.expect(PANIC_LEFT_RUNNING)
        .expect_line("panic: halting (sti; hlt)")
        .expect_count("panic: blinking", 0);
    assert_eq!((on, off), (0, 0), "LEDs changed with panic_blink=off; {}", run.explain());
}
