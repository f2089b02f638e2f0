//! Kernel arguments: `key=value` words separated by spaces.
//!
//! The runner passes them through QEMU's fw_cfg as the file `opt/kernel/args`
//! (see `arch::x86::fw_cfg`). Every known key is one row of [`PARAMETERS`];
//! adding a key means adding a row. Bad input never stops the boot:
//! - an unknown key, or a word that is not `key=value`, is reported as
//!   `warning: ignoring kernel argument 'WORD'` and skipped;
//! - a known key with a bad value is reported with the accepted values, and the
//!   default is kept.

use log::LevelFilter;
use spin::Once;

/// Where the runner puts the arguments in fw_cfg.
pub const FW_CFG_FILE: &str = "opt/kernel/args";
const MAX_LENGTH: usize = 4096;

/// What to do once the kernel has booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Sleep in `hlt` with the timer off (the default): a quiet idle machine.
    Halt,
    /// Exit QEMU with success.
    Exit,
    /// Panic on purpose, to show the panic path.
    Panic,
}

/// What the panic path does after its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicAction {
    /// `sti; hlt` forever.
    Halt,
    /// Exit QEMU with the failure code (the default while tests run).
    Exit,
    /// Busy-wait forever with interrupts on, as Linux does (for comparison).
    Spin,
    /// `panic=N`: reset the machine after N seconds.
    RebootAfter(u64),
}

/// How the application processors are started (see `smp`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmpMode {
    /// Kick every AP, then wait for all (Linux since 6.5).
    Parallel,
    /// Kick one AP, wait until it is online, then the next (xv6, Linux before 6.5).
    Serial,
}

impl SmpMode {
    pub fn name(self) -> &'static str {
        match self {
            SmpMode::Parallel => "parallel",
            SmpMode::Serial => "serial",
        }
    }
}

/// Faults injected on purpose, to test the paths that handle them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `fault=ap_stuck:N`: CPU N stops before it reports alive.
    ApStuck(usize),
    /// `fault=ap_panic:N`: CPU N panics in its first Rust code, before its
    /// per-CPU data is installed (the panic path must cope without it).
    ApPanic(usize),
    /// `fault=skip_shootdown`: TLB shootdowns flush only the local CPU, to
    /// show that the TLB torture test catches the stale translations.
    SkipShootdown,
    /// `fault=skip_lazy_catch_up`: a lazy CPU coming back into a space does
    /// not check for shootdowns it was skipped for, to show that the torture
    /// catches that too.
    SkipLazyCatchUp,
}

/// Benchmarks run instead of the normal boot's end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    /// `bench=smp`: repeated serial and parallel bring-up.
    Smp,
    /// `bench=sched`: context switches, wake-up latency, preempt-off spans.
    Sched,
    /// `bench=tlb`: wake-up latency behind shootdowns, spin vs preempt waits.
    Tlb,
}

#[derive(Clone, Debug)]
pub struct Args {
    pub log_level: LevelFilter,
    pub then: Then,
    /// `test=NAME[,NAME...]` or `test=all`.
    pub test: Option<&'static str>,
    pub panic: Option<PanicAction>,
    /// `apic=xapic` keeps the memory-mapped interface even where x2APIC exists.
    pub force_xapic: bool,
    pub smp: SmpMode,
    /// `maxcpus=N`: bring up at most N CPUs, the boot CPU included.
    pub max_cpus: Option<usize>,
    /// Wait after INIT before the first SIPI, in microseconds (SDM: 10 ms).
    pub init_udelay: u64,
    /// `tsc=reliable` skips the TSC synchronisation check at bring-up.
    pub tsc_reliable: bool,
    pub fault: Option<Fault>,
    pub bench: Option<Bench>,
    /// How cross-CPU calls wait for their targets (`ipi_wait=`).
    pub ipi_wait: crate::smp::call::WaitMode,
    /// `irqoff_us=N`: a CPU runs with interrupts off N us at a time (0: never).
    pub irqoff_us: u64,
    /// `irqoff_cpu=C`: which CPU (default: the last one).
    pub irqoff_cpu: Option<usize>,
}

impl Args {
    const DEFAULT: Args = Args {
        log_level: LevelFilter::Info,
        then: Then::Halt,
        test: None,
        panic: None,
        force_xapic: false,
        smp: SmpMode::Parallel,
        max_cpus: None,
        init_udelay: 10_000,
        tsc_reliable: false,
        fault: None,
        bench: None,
        ipi_wait: crate::smp::call::WaitMode::Sleep,
        irqoff_us: 0,
        irqoff_cpu: None,
    };

    /// What a panic does: as asked, else exit while testing and halt otherwise.
    pub fn panic_action(&self) -> PanicAction {
        self.panic.unwrap_or(if self.test.is_some() {
            PanicAction::Exit
        } else {
            PanicAction::Halt
        })
    }
}

/// The value of `options` named `value`, if any.
fn one_of<T: Copy>(value: &str, options: &[(&str, T)]) -> Option<T> {
    options.iter().find(|(name, _)| *name == value).map(|(_, v)| *v)
}

struct Parameter {
    key: &'static str,
    /// The accepted values, as shown in the warning for a bad one.
    accepted: &'static str,
    default: &'static str,
    /// Stores the value; false if it is not one of the accepted ones.
    set: fn(&mut Args, &'static str) -> bool,
}

const PARAMETERS: &[Parameter] = &[
    Parameter {
        key: "log",
        accepted: "off, error, warn, info, debug, trace",
        default: "info",
        set: |args, value| value.parse().map(|level| args.log_level = level).is_ok(),
    },
    Parameter {
        key: "then",
        accepted: "halt, exit, panic",
        default: "halt",
        set: |args, value| {
            let options = [("halt", Then::Halt), ("exit", Then::Exit), ("panic", Then::Panic)];
            one_of(value, &options).map(|then| args.then = then).is_some()
        },
    },
    Parameter {
        key: "test",
        accepted: "all, or test names separated by commas",
        default: "none",
        set: |args, value| {
            args.test = Some(value);
            !value.is_empty()
        },
    },
    Parameter {
        key: "panic",
        accepted: "halt, spin, exit, or a number of seconds N > 0 to reboot after",
        default: "halt (exit while testing)",
        set: |args, value| {
            let options = [
                ("halt", PanicAction::Halt),
                ("exit", PanicAction::Exit),
                ("spin", PanicAction::Spin),
            ];
            let reboot = || value.parse().ok().filter(|&n| n > 0).map(PanicAction::RebootAfter);
            one_of(value, &options)
                .or_else(reboot)
                .map(|action| args.panic = Some(action))
                .is_some()
        },
    },
    Parameter {
        key: "apic",
        accepted: "auto, xapic",
        default: "auto",
        set: |args, value| {
            one_of(value, &[("auto", false), ("xapic", true)])
                .map(|x| args.force_xapic = x)
                .is_some()
        },
    },
    Parameter {
        key: "smp",
        accepted: "parallel, serial",
        default: "parallel",
        set: |args, value| {
            let options = [("parallel", SmpMode::Parallel), ("serial", SmpMode::Serial)];
            one_of(value, &options).map(|mode| args.smp = mode).is_some()
        },
    },
    Parameter {
        key: "maxcpus",
        accepted: "a number of CPUs from 1 up, counting the boot CPU",
        default: "all",
        set: |args, value| {
            value.parse().ok().filter(|&n| n >= 1).map(|n| args.max_cpus = Some(n)).is_some()
        },
    },
    Parameter {
        key: "init_udelay",
        accepted: "microseconds from 0 to 1000000",
        default: "10000, as the SDM asks",
        set: |args, value| {
            value
                .parse()
                .ok()
                .filter(|&us| us <= 1_000_000)
                .map(|us| args.init_udelay = us)
                .is_some()
        },
    },
    Parameter {
        key: "tsc",
        accepted: "check, reliable",
        default: "check",
        set: |args, value| {
            one_of(value, &[("check", false), ("reliable", true)])
                .map(|r| args.tsc_reliable = r)
                .is_some()
        },
    },
    Parameter {
        key: "fault",
        accepted: "ap_stuck:CPU, ap_panic:CPU, skip_shootdown, skip_lazy_catch_up",
        default: "none",
        set: |args, value| {
            if value == "skip_shootdown" {
                args.fault = Some(Fault::SkipShootdown);
                return true;
            }
            if value == "skip_lazy_catch_up" {
                args.fault = Some(Fault::SkipLazyCatchUp);
                return true;
            }
            let cpu_after = |prefix: &str| value.strip_prefix(prefix).and_then(|n| n.parse().ok());
            if let Some(cpu) = cpu_after("ap_stuck:") {
                args.fault = Some(Fault::ApStuck(cpu));
            } else if let Some(cpu) = cpu_after("ap_panic:") {
                args.fault = Some(Fault::ApPanic(cpu));
            } else {
                return false;
            }
            true
        },
    },
    Parameter {
        key: "bench",
        accepted: "smp, sched, tlb",
        default: "none",
        set: |args, value| {
            let options = [("smp", Bench::Smp), ("sched", Bench::Sched), ("tlb", Bench::Tlb)];
            one_of(value, &options).map(|bench| args.bench = Some(bench)).is_some()
        },
    },
    Parameter {
        key: "ipi_wait",
        accepted: "preempt, sleep, spin",
        default: "sleep",
        set: |args, value| {
            use crate::smp::call::WaitMode;
            let options = WaitMode::ALL.map(|mode| (mode.name(), mode));
            one_of(value, &options).map(|mode| args.ipi_wait = mode).is_some()
        },
    },
    Parameter {
        key: "irqoff_us",
        // Up to 10 s: longer than the 1 s after which a waiter reports a stuck
        // CPU, so that report and the wait that follows can be watched.
        accepted: "microseconds from 1 to 10000000",
        default: "off",
        set: |args, value| {
            value
                .parse()
                .ok()
                .filter(|us| (1..=10_000_000).contains(us))
                .map(|us| args.irqoff_us = us)
                .is_some()
        },
    },
    Parameter {
        key: "irqoff_cpu",
        accepted: "a CPU number other than 0",
        default: "the last CPU",
        set: |args, value| {
            value
                .parse()
                .ok()
                .filter(|&cpu| cpu > 0)
                .map(|cpu| args.irqoff_cpu = Some(cpu))
                .is_some()
        },
    },
];

/// Parses `text`, logging a warning for each word it cannot use.
pub fn parse(text: &'static str) -> Args {
    let mut args = Args::DEFAULT;
    for word in text.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            log::warn!("ignoring kernel argument '{word}': expected key=value");
            continue;
        };
        let Some(parameter) = PARAMETERS.iter().find(|p| p.key == key) else {
            log::warn!("ignoring kernel argument '{word}'");
            continue;
        };
        let before = args.clone();
        if !(parameter.set)(&mut args, value) {
            args = before;
            log::warn!(
                "kernel argument {key}={value} is not valid (accepted: {}); using the default ({})",
                parameter.accepted,
                parameter.default
            );
        }
    }
    args
}

static TEXT: Once<([u8; MAX_LENGTH], usize)> = Once::new();
static ARGS: Once<Args> = Once::new();

/// Reads the arguments from fw_cfg (none outside QEMU) and parses them once.
pub fn load() -> &'static Args {
    let (bytes, length) = TEXT.call_once(|| {
        let mut buffer = [0u8; MAX_LENGTH];
        let size = crate::arch::x86::fw_cfg::read_file(FW_CFG_FILE, &mut buffer).unwrap_or(0);
        (buffer, size)
    });
    if *length > MAX_LENGTH {
        log::warn!(
            "kernel arguments are {length} bytes long; only the first {MAX_LENGTH} are read"
        );
    }
    let text = core::str::from_utf8(&bytes[..(*length).min(MAX_LENGTH)]).unwrap_or_else(|error| {
        log::warn!(
            "kernel arguments are not UTF-8 after byte {}; ignoring the rest",
            error.valid_up_to()
        );
        core::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap()
    });
    ARGS.call_once(|| parse(text))
}

/// The arguments as given, for the boot log.
pub fn text() -> &'static str {
    TEXT.get()
        .map(|(bytes, length)| {
            core::str::from_utf8(&bytes[..(*length).min(MAX_LENGTH)]).unwrap_or("")
        })
        .unwrap_or("")
        .trim()
}

/// The parsed arguments (the defaults before `load()`).
pub fn get() -> &'static Args {
    ARGS.get().unwrap_or(&Args::DEFAULT)
}
