//! `cargo run` lands here: parse the command line (`boot::cli`), boot the
//! kernel in QEMU, and exit with a status that follows the kernel's verdict.

use std::process::ExitCode;

use boot::cli::Request;
use boot::{Outcome, RunConfig};

fn main() -> ExitCode {
    match boot::cli::parse(std::env::args_os()) {
        Ok(Request::Run(config)) => run(&config),
        Ok(Request::BenchPanic { accelerator, seconds }) => {
            match boot::panic_bench::run(accelerator, seconds) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("runner: {error}");
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
