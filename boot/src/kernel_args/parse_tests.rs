//! The kernel's argument parser (kernel/src/args/parse.rs), run on the host:
//! every key's good values, each way a value can be bad and the warning it
//! gives, unknown words, and the defaults against the table.

use log::LevelFilter;

use super::parse::{Args, Bench, Fault, PanicAction, SmpMode, Then, WaitMode, parse, setter};
use super::table::{PARAMETERS, WhenAbsent};

/// The arguments `text` gives, and the warnings the kernel would print.
fn parse_logged(text: &'static str) -> (Args, Vec<String>) {
    let mut warnings = Vec::new();
    let args = parse(text, &mut |message| warnings.push(message.to_string()));
    (args, warnings)
}

/// The arguments `text` gives; it must give no warning.
fn parse_clean(text: &'static str) -> Args {
    let (args, warnings) = parse_logged(text);
    assert_eq!(warnings, Vec::<String>::new(), "{text}");
    args
}

/// The one warning `text` gives; the arguments must be the defaults.
fn rejected(text: &'static str) -> String {
    let (args, mut warnings) = parse_logged(text);
    assert_eq!(args, Args::DEFAULT, "{text} changed the arguments");
    assert_eq!(warnings.len(), 1, "{text}: {warnings:?}");
    warnings.remove(0)
}

#[test]
fn no_text_gives_the_defaults() {
    assert_eq!(parse_clean(""), Args::DEFAULT);
    assert_eq!(parse_clean("  \n\t "), Args::DEFAULT);
}

#[test]
fn every_key_takes_its_good_values() {
    assert_eq!(parse_clean("log=debug").log_level, LevelFilter::Debug);
    assert_eq!(parse_clean("log=off").log_level, LevelFilter::Off);
    // log's level names are matched as the log crate does, ignoring case.
    assert_eq!(parse_clean("log=TRACE").log_level, LevelFilter::Trace);
    assert_eq!(parse_clean("then=exit").then, Then::Exit);
    assert_eq!(parse_clean("then=panic").then, Then::Panic);
    assert_eq!(parse_clean("test=all").test, Some("all"));
    assert_eq!(parse_clean("test=a,b").test, Some("a,b"));
    assert_eq!(parse_clean("panic=spin").panic, Some(PanicAction::Spin));
    assert_eq!(parse_clean("panic=exit").panic, Some(PanicAction::Exit));
    assert_eq!(parse_clean("panic=halt").panic, Some(PanicAction::Halt));
    assert_eq!(parse_clean("panic=5").panic, Some(PanicAction::RebootAfter(5)));
    assert!(parse_clean("apic=xapic").force_xapic);
    assert_eq!(parse_clean("smp=serial").smp, SmpMode::Serial);
    assert_eq!(parse_clean("maxcpus=1").max_cpus, Some(1));
    assert_eq!(parse_clean("init_udelay=0").init_udelay, 0);
    assert_eq!(parse_clean("init_udelay=1000000").init_udelay, 1_000_000);
    assert!(parse_clean("tsc=reliable").tsc_reliable);
    assert_eq!(parse_clean("fault=ap_stuck:3").fault, Some(Fault::ApStuck(3)));
    assert_eq!(parse_clean("fault=ap_panic:1").fault, Some(Fault::ApPanic(1)));
    assert_eq!(parse_clean("fault=skip_shootdown").fault, Some(Fault::SkipShootdown));
    assert_eq!(parse_clean("fault=skip_lazy_catch_up").fault, Some(Fault::SkipLazyCatchUp));
    assert_eq!(parse_clean("bench=smp").bench, Some(Bench::Smp));
    assert_eq!(parse_clean("bench=sched").bench, Some(Bench::Sched));
    assert_eq!(parse_clean("bench=tlb").bench, Some(Bench::Tlb));
    assert_eq!(parse_clean("ipi_wait=spin").ipi_wait, WaitMode::Spin);
    assert_eq!(parse_clean("ipi_wait=preempt").ipi_wait, WaitMode::Preempt);
    assert_eq!(parse_clean("irqoff_us=1").irqoff_us, 1);
    assert_eq!(parse_clean("irqoff_us=10000000").irqoff_us, 10_000_000);
    assert_eq!(parse_clean("irqoff_cpu=3").irqoff_cpu, Some(3));
}

#[test]
fn mode_names_are_the_values_they_are_given_by() {
    for mode in [SmpMode::Parallel, SmpMode::Serial] {
        let word = format!("smp={}", mode.name()).leak();
        assert_eq!(parse_clean(word).smp, mode);
    }
    for mode in WaitMode::ALL {
        let word = format!("ipi_wait={}", mode.name()).leak();
        assert_eq!(parse_clean(word).ipi_wait, mode);
    }
}

#[test]
fn words_combine_and_later_ones_win() {
    let args = parse_clean("log=warn smp=serial test=x log=error");
    assert_eq!(
        (args.log_level, args.smp, args.test),
        (LevelFilter::Error, SmpMode::Serial, Some("x"))
    );
    // A value may itself contain '=': the word is split at the first one.
    assert_eq!(parse_clean("test=a=b").test, Some("a=b"));
}

#[test]
fn bad_values_are_reported_with_the_accepted_ones_and_the_default() {
    assert_eq!(
        rejected("log=loud"),
        "kernel argument log=loud is not valid (accepted: off, error, warn, info, debug, trace); \
         using the default (info)"
    );
    assert_eq!(
        rejected("apic=sideways"),
        "kernel argument apic=sideways is not valid (accepted: auto, xapic); using the default (auto)"
    );
    assert_eq!(
        rejected("init_udelay=1000001"),
        "kernel argument init_udelay=1000001 is not valid (accepted: microseconds from 0 to \
         1000000); using the default (10000, as the SDM asks)"
    );
    assert_eq!(
        rejected("panic=0"),
        "kernel argument panic=0 is not valid (accepted: halt, spin, exit, or a number of seconds \
         N > 0 to reboot after); using the default (halt (exit while testing))"
    );
    assert_eq!(
        rejected("irqoff_cpu=0"),
        "kernel argument irqoff_cpu=0 is not valid (accepted: a CPU number other than 0); using \
         the default (the last CPU)"
    );
}

#[test]
fn each_bad_value_path_is_rejected() {
    let bad = [
        "then=reboot",
        "test=",
        "panic=-1",
        "panic=soon",
        "smp=both",
        "maxcpus=0",
        "maxcpus=many",
        "init_udelay=-1",
        "tsc=maybe",
        "fault=ap_stuck:",
        "fault=ap_stuck:one",
        "fault=ap_panic:-2",
        "fault=everything",
        "bench=all",
        "ipi_wait=nap",
        "irqoff_us=0",
        "irqoff_us=10000001",
        "irqoff_cpu=last",
    ];
    for word in bad {
        let warning = rejected(word);
        let key = word.split_once('=').unwrap().0;
        let parameter = PARAMETERS.iter().find(|p| p.key == key).unwrap();
        let expected = format!(
            "kernel argument {word} is not valid (accepted: {}); using the default ({})",
            parameter.accepted, parameter.default
        );
        assert_eq!(warning, expected);
    }
}

#[test]
fn a_bad_value_keeps_what_came_before() {
    let (args, warnings) = parse_logged("log=debug log=loud");
    assert_eq!(args.log_level, LevelFilter::Debug);
    assert_eq!(warnings.len(), 1);
}

#[test]
fn unknown_words_are_skipped_with_a_warning() {
    assert_eq!(rejected("frob=1"), "ignoring kernel argument 'frob=1'");
    assert_eq!(rejected("quiet"), "ignoring kernel argument 'quiet': expected key=value");
    assert_eq!(rejected("LOG=debug"), "ignoring kernel argument 'LOG=debug'");
    let (args, warnings) = parse_logged("quiet then=exit frob=1");
    assert_eq!(args.then, Then::Exit);
    assert_eq!(warnings.len(), 2);
}

#[test]
fn every_key_of_the_table_has_a_meaning() {
    for parameter in PARAMETERS {
        assert!(setter(parameter.key).is_some(), "{} has no setter", parameter.key);
    }
    assert!(setter("frob").is_none());
}

/// Giving a key its table default explicitly must change nothing: the typed
/// defaults in `Args::DEFAULT` and the table say the same.
#[test]
fn the_table_defaults_are_the_parsers_defaults() {
    for parameter in PARAMETERS {
        let Some(value) = parameter.default.value() else { continue };
        let word = format!("{}={value}", parameter.key).leak();
        assert_eq!(parse_clean(word), Args::DEFAULT, "{word}");
    }
    // Keys without a default value leave their field unset.
    let unset: Vec<&str> = PARAMETERS
        .iter()
        .filter(|p| matches!(p.default, WhenAbsent::Unset(_)))
        .map(|p| p.key)
        .collect();
    let expected = [
        "test",
        "run",
        "run_args",
        "panic",
        "maxcpus",
        "fault",
        "bench",
        "irqoff_us",
        "irqoff_cpu",
    ];
    assert_eq!(unset, expected);
    let d = Args::DEFAULT;
    assert!(d.test.is_none() && d.panic.is_none() && d.max_cpus.is_none());
    assert!(d.run.is_none() && d.run_args.is_none());
    assert!(d.fault.is_none() && d.bench.is_none() && d.irqoff_cpu.is_none());
    assert_eq!(d.irqoff_us, 0);
}

#[test]
fn a_panic_exits_while_testing_and_halts_otherwise() {
    assert_eq!(Args::DEFAULT.panic_action(), PanicAction::Halt);
    assert_eq!(parse_clean("test=all").panic_action(), PanicAction::Exit);
    assert_eq!(parse_clean("test=all panic=spin").panic_action(), PanicAction::Spin);
}
