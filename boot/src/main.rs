//! `cargo run` lands here: parse the command line (`boot::cli`), boot the
//! kernel in QEMU, and exit with a status that follows the kernel's verdict.

use std::process::ExitCode;

use boot::cli::Request;
use boot::{Outcome, RunConfig};

fn main() -> ExitCode {
    match boot::cli::parse(std::env::args_os()) {
        Ok(Request::Run(config)) => run(&config),
        Ok(Request::BenchPanic { accelerator, seconds, rounds }) => {
            match boot::panic_bench::run(accelerator, seconds, rounds) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("runner: {error}");
                    ExitCode::from(2)
                }
            }
        }
        Ok(Request::BenchUser(options)) => match boot::user_bench::run(&options) {
            // Every boot gave figures, or some did not (each said why).
            Ok(all) => ExitCode::from(if all { 0 } else { 1 }),
            Err(error) => {
                eprintln!("runner: bench-user: {error}");
                ExitCode::from(2)
            }
        },
        Ok(Request::TraceConvert { raw, json, window }) => {
            match boot::trace::convert(&raw, &json, window) {
                Ok(written) => {
                    eprintln!("{}", written.summary());
                    for warning in written.warnings() {
                        eprintln!("{warning}");
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("runner: trace-convert: {error}");
                    ExitCode::from(2)
                }
            }
        }
        // `--help` too: clap prints it to stdout and exits with status 0.
        Err(error) => error.exit(),
    }
}

fn run(config: &RunConfig) -> ExitCode {
    eprintln!("runner: {}", boot::describe(config));
    let traced = config.kernel_args.iter().any(|a| a.starts_with("trace=") && a != "trace=off");
    if traced && config.trace.is_none() {
        eprintln!(
            "runner: note: the kernel records a trace, but nothing is saved without --trace FILE.json"
        );
    }
    if config.gdb {
        eprintln!("runner: QEMU waits for GDB: gdb {} -ex 'target remote :1234'", boot::KERNEL_ELF);
    }
    match boot::run(config, false) {
        Ok((outcome, _)) => {
            if outcome != Outcome::KernelSuccess {
                eprintln!("runner: {}", outcome.describe());
            }
            ExitCode::from(outcome.exit_code() as u8)
        }
        Err(error) => {
            eprintln!("runner: {error}");
            ExitCode::from(2)
        }
    }
}
