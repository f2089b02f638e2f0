//! Kernel arguments: `key=value` words separated by spaces.
//!
//! The runner passes them through QEMU's fw_cfg as the file `opt/kernel/args`
//! (see `arch::x86::fw_cfg`). Every known key is one row of
//! [`table::PARAMETERS`] and gets its meaning in [`parse`]; adding a key means
//! adding a row there and an arm to `parse::setter`. Bad input never stops the
//! boot:
//! - an unknown key, or a word that is not `key=value`, is reported as
//!   `warning: ignoring kernel argument 'WORD'` and skipped;
//! - a known key with a bad value is reported with the accepted values, and the
//!   default is kept.
//!
//! This module sits at the bottom of the layers with `arch` and `sync`: it
//! reads fw_cfg and names nothing else in the kernel; the subsystems read
//! [`get`]. `table.rs` and `parse.rs` use only `core` (and `log`'s level
//! type), so the runner includes them to print the list and to test the
//! parser on the host.

mod parse;
// `help` and `WhenAbsent::value` are read by the runner (its `--help` and tests), not here.
#[allow(dead_code)]
pub mod table;

use spin::Once;

pub use parse::{Args, Bench, Fault, PanicAction, SmpMode, TRACE_CATEGORIES, Then, WaitMode};
use table::FW_CFG_FILE;

const MAX_LENGTH: usize = 4096;

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
    ARGS.call_once(|| parse::parse(text, &mut |message| log::warn!("{message}")))
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
