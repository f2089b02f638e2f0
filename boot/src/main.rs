//! `cargo run` lands here: parse the flags, boot the kernel in QEMU, and exit
//! with a status that follows the kernel's verdict (see `boot::USAGE`).

use std::process::ExitCode;

use boot::{Outcome, Request};

fn main() -> ExitCode {
    let config = match boot::parse_command_line(std::env::args().skip(1)) {
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
