//! The `log` crate's backend: one line per record on the serial console.
//!
//! Each line starts with the time since boot in seconds and, once more than one
//! CPU is online, the CPU that printed it:
//!
//! ```text
//! [    0.031415] acpi: MADT lists 4 CPUs ...
//! [    0.271828] cpu2 warning: ...
//! ```

use core::fmt;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::{console, percpu, time};

struct SerialLogger;

static LOGGER: SerialLogger = SerialLogger;

pub fn init(level: LevelFilter) {
    // Ignoring the error is right: it only says a logger was already set.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

fn level_label(level: Level) -> &'static str {
    match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        Level::Info => "",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    }
}

/// Formats `cpuN ` when there is more than one CPU to tell apart.
struct CpuTag;

impl fmt::Display for CpuTag {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if percpu::online_count() > 1 { write!(f, "cpu{} ", percpu::cpu_number()) } else { Ok(()) }
    }
}

impl Log for SerialLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ns = time::now_ns();
        console::print(format_args!(
            "[{:>5}.{:06}] {}{}{}\n",
            ns / 1_000_000_000,
            ns % 1_000_000_000 / 1000,
            CpuTag,
            level_label(record.level()),
            record.args()
        ));
    }

    fn flush(&self) {}
}
