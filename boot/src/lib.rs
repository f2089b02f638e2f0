//! The host side of the kernel: how to boot its disk images in QEMU.
//!
//! `boot/build.rs` builds the images; this library turns a [`RunConfig`] into
//! a QEMU command line ([`qemu_command`]), runs it ([`RunningQemu`]), and
//! turns QEMU's exit into an [`Outcome`]. The `boot` binary (what `cargo run`
//! starts, its command line in [`cli`]) and the host integration tests in
//! `tests/` both use it.
//!
//! Kernel arguments travel through QEMU's fw_cfg device as the file
//! `opt/kernel/args`, so they change without rebuilding the disk image. Their
//! list is the kernel's own table, which [`kernel_args`] includes.
//!
//! The serial output always comes through a pipe, even when it is shown, so
//! that the runner can answer the kernel's `HOSTSTAT` lines with what the host
//! did to QEMU's threads meanwhile (see [`host_stats`]).
//!
//! With [`RunConfig::trace`] set, QEMU keeps what the kernel dumps to its
//! debug console, and once QEMU has exited the runner turns it into a trace
//! for ui.perfetto.dev and an SVG picture (see [`trace`]).

pub mod cli;
mod config;
pub mod host_stats;
pub mod kernel_args;
mod outcome;
pub mod panic_bench;
mod qemu_command;
mod qemu_process;
mod qmp;
mod serial;
pub mod trace;
pub mod user_bench;
pub mod wakeup_probe;

pub use config::{
    Accelerator, DEFAULT_CPUS, DEFAULT_MEMORY, Firmware, LinuxBoot, RunConfig, describe,
};
pub use outcome::{Outcome, SetupError};
pub use qemu_command::qemu_command;
pub use qemu_process::{RunningQemu, run};

pub const BIOS_IMAGE: &str = env!("BIOS_IMAGE");
pub const UEFI_IMAGE: &str = env!("UEFI_IMAGE");
pub const KERNEL_ELF: &str = env!("KERNEL_ELF");
