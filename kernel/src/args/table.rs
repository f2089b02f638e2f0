//! The list of kernel arguments: every key the kernel accepts, what values it
//! takes, what it does when absent, and one line of help.
//!
//! This file is the one place the list is written. The kernel's parser
//! (`parse.rs` beside it) looks keys up here and quotes `accepted` and
//! `default` in its warnings; the runner includes this file by path to print
//! the list in `--help`, and its unit tests check that the tables in README.md
//! and docs/runner.md are the ones generated from it. So it must stay plain
//! data: no `crate::` paths, no allocation, nothing but `core`.

use core::fmt;

/// The fw_cfg file the runner writes the arguments to and the kernel reads.
pub const FW_CFG_FILE: &str = "opt/kernel/args";

/// What the kernel does when a key is absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenAbsent {
    /// As if the key had been given this value, spelled as the key accepts it.
    Value(&'static str),
    /// As `Value`, with the reason for it.
    ValueBecause(&'static str, &'static str),
    /// No value is set; the text says what happens then.
    Unset(&'static str),
}

impl WhenAbsent {
    /// The value the absence stands for, if it is one the key accepts.
    pub fn value(self) -> Option<&'static str> {
        match self {
            WhenAbsent::Value(value) | WhenAbsent::ValueBecause(value, _) => Some(value),
            WhenAbsent::Unset(_) => None,
        }
    }
}

impl fmt::Display for WhenAbsent {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            WhenAbsent::Value(value) => f.write_str(value),
            WhenAbsent::ValueBecause(value, because) => write!(f, "{value}, {because}"),
            WhenAbsent::Unset(what) => f.write_str(what),
        }
    }
}

/// One kernel argument, `key=value`.
pub struct Parameter {
    pub key: &'static str,
    /// The accepted values, as quoted in the warning for a bad one.
    pub accepted: &'static str,
    pub default: WhenAbsent,
    /// What it is for, in one line.
    pub help: &'static str,
}

/// Every kernel argument, in the order the help shows them.
pub const PARAMETERS: &[Parameter] = &[
    Parameter {
        key: "log",
        accepted: "off, error, warn, info, debug, trace",
        default: WhenAbsent::Value("info"),
        help: "console log level",
    },
    Parameter {
        key: "then",
        accepted: "halt, exit, panic",
        default: WhenAbsent::Value("halt"),
        help: "what to do once booted: sleep with the timer off, exit QEMU, or panic on purpose",
    },
    Parameter {
        key: "test",
        accepted: "all, or test names separated by commas",
        default: WhenAbsent::Unset("none"),
        help: "run these in-kernel tests, then exit",
    },
    Parameter {
        key: "run",
        accepted: "the name of a program in the ramdisk",
        default: WhenAbsent::Unset("none"),
        help: "start that user program once booted; with then=exit, the run ends when it exits, \
               successfully only if its status is 0 (see docs/user-mode.md)",
    },
    Parameter {
        key: "run_args",
        accepted: "arguments separated by commas",
        default: WhenAbsent::Unset("none"),
        help: "the program's argv[1], argv[2], ... (argv[0] is its name)",
    },
    Parameter {
        key: "panic",
        accepted: "halt, spin, exit, or a number of seconds N > 0 to reboot after",
        default: WhenAbsent::Unset("halt (exit while testing)"),
        help: "after a panic's report: sleep in sti; hlt, busy-wait like Linux, exit QEMU, \
               or reboot after N s (see docs/panic.md)",
    },
    Parameter {
        key: "panic_blink",
        accepted: "on, off",
        default: WhenAbsent::ValueBecause("on", "where a keyboard controller answers"),
        help: "while halted after a panic (panic=halt), toggle the keyboard LEDs every 500 ms, \
               woken by a one-shot timer",
    },
    Parameter {
        key: "apic",
        accepted: "auto, xapic",
        default: WhenAbsent::Value("auto"),
        help: "xapic keeps the memory-mapped xAPIC interface even where x2APIC exists",
    },
    Parameter {
        key: "smp",
        accepted: "parallel, serial",
        default: WhenAbsent::Value("parallel"),
        help: "how the other CPUs are started: all at once, or one after the other",
    },
    Parameter {
        key: "maxcpus",
        accepted: "a number of CPUs from 1 up, counting the boot CPU",
        default: WhenAbsent::Unset("all"),
        help: "start at most this many CPUs",
    },
    Parameter {
        key: "init_udelay",
        accepted: "microseconds from 0 to 1000000",
        default: WhenAbsent::ValueBecause("10000", "as the SDM asks"),
        help: "the wait after INIT before the first SIPI",
    },
    Parameter {
        key: "tsc",
        accepted: "check, reliable",
        default: WhenAbsent::Value("check"),
        help: "reliable skips the TSC synchronisation check at bring-up",
    },
    Parameter {
        key: "fault",
        accepted: "ap_stuck:CPU, ap_panic:CPU, skip_shootdown, skip_lazy_catch_up",
        default: WhenAbsent::Unset("none"),
        help: "fault injection: that CPU never reports alive, or panics before its per-CPU data \
               exists; TLB shootdowns flush only the local CPU; a lazy CPU skips its catch-up \
               flush (the torture test must then fail)",
    },
    Parameter {
        key: "bench",
        accepted: "smp, sched, tlb",
        default: WhenAbsent::Unset("none"),
        help: "run that benchmark (bring-up, scheduler, shootdowns) instead of the normal end",
    },
    Parameter {
        key: "ipi_wait",
        accepted: "preempt, sleep, spin",
        default: WhenAbsent::Value("sleep"),
        help: "how a CPU waits for a cross-CPU call: spin preemptibly, block after 200 us until \
               the last target wakes it, or spin with preemption off",
    },
    Parameter {
        key: "irqoff_us",
        // Up to 10 s: longer than the 1 s after which a waiter reports a stuck
        // CPU, so that report and the wait that follows can be watched.
        accepted: "microseconds from 1 to 10000000",
        default: WhenAbsent::Unset("off"),
        help: "one CPU runs with interrupts off this long at a time: a slow CPU",
    },
    Parameter {
        key: "irqoff_cpu",
        accepted: "a CPU number other than 0",
        default: WhenAbsent::Unset("the last CPU"),
        help: "which CPU irqoff_us slows down",
    },
    Parameter {
        key: "trace",
        accepted: "off, all, or smp, ipi, tlb, sched, panic separated by commas",
        default: WhenAbsent::Value("off"),
        help: "record these events in per-CPU buffers, dumped to the debug console at the end, \
               after a panic's report, and on request (the runner's --trace FILE.json; see \
               docs/tracing.md)",
    },
];

/// The row for `key`, if the kernel knows it.
pub fn find(key: &str) -> Option<&'static Parameter> {
    PARAMETERS.iter().find(|parameter| parameter.key == key)
}
