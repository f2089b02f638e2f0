//! `cargo run` lands here: parse the flags, boot the kernel in QEMU, and exit
//! with a status that follows the kernel's verdict (see `boot::USAGE`).

use std::process::ExitCode;

use boot::{Outcome, Request};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("bench-panic") {
        args.next();
        return bench_panic(args.collect());
    }
    let config = match boot::parse_command_line(args) {
        Ok(Request::Run(config)) => config,
        Ok(Request::Help) => {
            println!("{}", boot::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("runner: {message}");
            return ExitCode::from(2);
        }
    };
    eprintln!("runner: {}", boot::describe(&config));
    if config.gdb {
        eprintln!("runner: QEMU waits for GDB: gdb {} -ex 'target remote :1234'", boot::KERNEL_ELF);
    }
    match boot::run(&config, false) {
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

/// `bench-panic [--kvm] [--seconds N]`: see boot/src/panic_bench.rs.
fn bench_panic(args: Vec<String>) -> ExitCode {
    let mut accelerator = boot::Accelerator::Tcg;
    let mut seconds = 10;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--kvm" => accelerator = boot::Accelerator::Kvm,
            "--seconds" => match args.next().and_then(|s| s.parse().ok()).filter(|&s| s > 0) {
                Some(s) => seconds = s,
                None => {
                    eprintln!("runner: --seconds needs a positive whole number");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("runner: bench-panic takes --kvm and --seconds N, not '{other}'");
                return ExitCode::from(2);
            }
        }
    }
    match boot::panic_bench::run(accelerator, seconds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("runner: {error}");
            ExitCode::from(2)
        }
    }
}
