//! What the kernel arguments mean: the parsed [`Args`], and [`parse`], which
//! turns the text into them.
//!
//! The keys, their accepted values and defaults are listed once, in
//! `table.rs`; this file gives each key its meaning. Like the table it uses
//! nothing but `core` and the `log` crate's level type, so the runner's unit
//! tests can include it by path and run it on the host.

use core::fmt;

use log::LevelFilter;

use super::table;

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

/// How a CPU waits for the targets of a cross-CPU call (`ipi_wait=`; what
/// each mode does is explained in `smp::call`, which uses it). It is defined
/// here, with the other argument values, so that this module, at the bottom
/// of the layers, names nothing above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum WaitMode {
    Preempt,
    Spin,
    Sleep,
}

impl WaitMode {
    pub const ALL: [WaitMode; 3] = [WaitMode::Spin, WaitMode::Preempt, WaitMode::Sleep];

    /// The name `ipi_wait=` takes.
    pub fn name(self) -> &'static str {
        match self {
            WaitMode::Preempt => "preempt",
            WaitMode::Spin => "spin",
            WaitMode::Sleep => "sleep",
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    pub log_level: LevelFilter,
    pub then: Then,
    /// `test=NAME[,NAME...]` or `test=all`.
    pub test: Option<&'static str>,
    /// `run=NAME`: the user program to start once booted.
    pub run: Option<&'static str>,
    /// `run_args=A,B`: its arguments after its name, separated by commas.
    pub run_args: Option<&'static str>,
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
    pub ipi_wait: WaitMode,
    /// `irqoff_us=N`: a CPU runs with interrupts off N us at a time (0: never).
    pub irqoff_us: u64,
    /// `irqoff_cpu=C`: which CPU (default: the last one).
    pub irqoff_cpu: Option<usize>,
    /// `trace=`: which event categories the trace records, one bit per
    /// [`TRACE_CATEGORIES`] entry (0: tracing off).
    pub trace: u32,
    /// `panic_blink=`: blink the keyboard LEDs while halted after a panic.
    pub panic_blink: bool,
}

impl Args {
    /// What an empty argument text means. It must agree with each row's
    /// `default` in the table: the runner's unit tests check that giving every
    /// default value explicitly changes nothing.
    pub const DEFAULT: Args = Args {
        log_level: LevelFilter::Info,
        then: Then::Halt,
        test: None,
        run: None,
        run_args: None,
        panic: None,
        force_xapic: false,
        smp: SmpMode::Parallel,
        max_cpus: None,
        init_udelay: 10_000,
        tsc_reliable: false,
        fault: None,
        bench: None,
        ipi_wait: WaitMode::Sleep,
        irqoff_us: 0,
        irqoff_cpu: None,
        trace: 0,
        panic_blink: true,
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

/// Stores one key's value in `Args`; false if the value is not accepted.
type Setter = fn(&mut Args, &'static str) -> bool;

/// What `key` means: how its value is stored. Every key of the table has one
/// (a unit test checks).
pub fn setter(key: &str) -> Option<Setter> {
    let set: Setter = match key {
        "log" => |args, value| value.parse().map(|level| args.log_level = level).is_ok(),
        "then" => |args, value| {
            let options = [("halt", Then::Halt), ("exit", Then::Exit), ("panic", Then::Panic)];
            one_of(value, &options).map(|then| args.then = then).is_some()
        },
        "test" => |args, value| {
            args.test = Some(value);
            !value.is_empty()
        },
        "run" => |args, value| {
            args.run = Some(value);
            !value.is_empty()
        },
        "run_args" => |args, value| {
            args.run_args = Some(value);
            true
        },
        "panic" => set_panic,
        "apic" => |args, value| {
            one_of(value, &[("auto", false), ("xapic", true)])
                .map(|x| args.force_xapic = x)
                .is_some()
        },
        "smp" => |args, value| {
            let options = [("parallel", SmpMode::Parallel), ("serial", SmpMode::Serial)];
            one_of(value, &options).map(|mode| args.smp = mode).is_some()
        },
        "maxcpus" => |args, value| {
            value.parse().ok().filter(|&n| n >= 1).map(|n| args.max_cpus = Some(n)).is_some()
        },
        "init_udelay" => |args, value| {
            let us = value.parse().ok().filter(|&us| us <= 1_000_000);
            us.map(|us| args.init_udelay = us).is_some()
        },
        "tsc" => |args, value| {
            one_of(value, &[("check", false), ("reliable", true)])
                .map(|r| args.tsc_reliable = r)
                .is_some()
        },
        "fault" => |args, value| parse_fault(value).map(|fault| args.fault = Some(fault)).is_some(),
        "bench" => |args, value| {
            let options = [("smp", Bench::Smp), ("sched", Bench::Sched), ("tlb", Bench::Tlb)];
            one_of(value, &options).map(|bench| args.bench = Some(bench)).is_some()
        },
        "ipi_wait" => |args, value| {
            let options = WaitMode::ALL.map(|mode| (mode.name(), mode));
            one_of(value, &options).map(|mode| args.ipi_wait = mode).is_some()
        },
        "irqoff_us" => |args, value| {
            let us = value.parse().ok().filter(|us| (1..=10_000_000).contains(us));
            us.map(|us| args.irqoff_us = us).is_some()
        },
        "irqoff_cpu" => |args, value| {
            let cpu = value.parse().ok().filter(|&cpu| cpu > 0);
            cpu.map(|cpu| args.irqoff_cpu = Some(cpu)).is_some()
        },
        "trace" => |args, value| parse_trace(value).map(|mask| args.trace = mask).is_some(),
        "panic_blink" => |args, value| {
            one_of(value, &[("on", true), ("off", false)]).map(|on| args.panic_blink = on).is_some()
        },
        _ => return None,
    };
    Some(set)
}

fn set_panic(args: &mut Args, value: &'static str) -> bool {
    let options =
        [("halt", PanicAction::Halt), ("exit", PanicAction::Exit), ("spin", PanicAction::Spin)];
    let reboot = || value.parse().ok().filter(|&n| n > 0).map(PanicAction::RebootAfter);
    one_of(value, &options).or_else(reboot).map(|action| args.panic = Some(action)).is_some()
}

/// The event categories `trace=` names; category `i` is bit `i` of
/// [`Args::trace`] (the trace's wire format uses the same bits).
pub const TRACE_CATEGORIES: [&str; 5] = ["smp", "ipi", "tlb", "sched", "panic"];

/// `off`, `all`, or category names separated by commas, as a mask.
fn parse_trace(value: &str) -> Option<u32> {
    match value {
        "off" => Some(0),
        "all" => Some((1 << TRACE_CATEGORIES.len()) - 1),
        _ => value.split(',').try_fold(0, |mask, name| {
            let bit = TRACE_CATEGORIES.iter().position(|&known| known == name)?;
            Some(mask | 1 << bit)
        }),
    }
}

fn parse_fault(value: &str) -> Option<Fault> {
    let cpu_after = |prefix: &str| value.strip_prefix(prefix).and_then(|n| n.parse().ok());
    match value {
        "skip_shootdown" => Some(Fault::SkipShootdown),
        "skip_lazy_catch_up" => Some(Fault::SkipLazyCatchUp),
        _ => cpu_after("ap_stuck:")
            .map(Fault::ApStuck)
            .or_else(|| cpu_after("ap_panic:").map(Fault::ApPanic)),
    }
}

/// Parses `text`, handing `warn` one message for each word it cannot use.
/// Bad input never fails the parse: the word is skipped, or the key keeps
/// its default.
pub fn parse(text: &'static str, warn: &mut dyn FnMut(fmt::Arguments)) -> Args {
    let mut args = Args::DEFAULT;
    for word in text.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            warn(format_args!("ignoring kernel argument '{word}': expected key=value"));
            continue;
        };
        let (Some(parameter), Some(set)) = (table::find(key), setter(key)) else {
            warn(format_args!("ignoring kernel argument '{word}'"));
            continue;
        };
        let before = args.clone();
        if !set(&mut args, value) {
            args = before;
            warn(format_args!(
                "kernel argument {key}={value} is not valid (accepted: {}); using the default ({})",
                parameter.accepted, parameter.default
            ));
        }
    }
    args
}
