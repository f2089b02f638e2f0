//! The kernel's event trace on the host: `cargo run -- --trace FILE.json`
//! boots with tracing on, and turns what the kernel dumped into a trace a
//! viewer opens (FILE.json, for ui.perfetto.dev or chrome://tracing) and a
//! picture (FILE.svg).
//!
//! The way there:
//!
//! 1. The kernel records events in a ring per CPU and dumps them to QEMU's
//!    debug console (port 0xe9), which QEMU writes to `FILE.ktrace`
//!    (`-debugcon file:...`): the raw stream, kept beside the JSON so that
//!    `cargo run -- trace-convert` can redo the rest later.
//! 2. [`decode`] reads the stream: dumps, CPU sections, 40-byte records,
//!    in the layout of [`format`](mod@format), the kernel's own file.
//! 3. [`timeline::Timeline::build`] pairs begins with ends into spans,
//!    puts them on tracks and connects senders to receivers.
//! 4. [`chrome::write`] writes the timeline as Chrome Trace Event JSON,
//!    [`svg::to_svg`] draws it.
//!
//! For the tests, [`checks`] holds the rules a viewer enforces on the JSON
//! (spans nest, flows land in spans) and [`read`] the queries that read a
//! written trace back.

pub mod checks;
pub mod chrome;
mod decode;
#[path = "../../../kernel/src/trace/format.rs"]
pub mod format;
mod names;
pub mod read;
pub mod svg;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use checks::{check_flows, check_nesting};
pub use decode::{CpuTotals, DecodeError, Dump, Event, Trace, decode};
pub use timeline::Timeline;

/// A parsed JSON document, as [`read::load`] returns it.
pub type Json = serde_json::Value;

/// A part of the trace to draw, in ns on the trace's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub from_ns: u64,
    pub to_ns: u64,
}

/// `FROM_US..TO_US`, microseconds (fractions allowed), as `--trace-window`
/// and `trace-convert --window` take it.
impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Window, String> {
        let micros = |part: &str| -> Option<u64> {
            let value: f64 = part.trim().parse().ok()?;
            (value >= 0.0 && value.is_finite()).then(|| (value * 1000.0).round() as u64)
        };
        let (from, to) = text.split_once("..").ok_or("expected FROM_US..TO_US, e.g. 100..250.5")?;
        match (micros(from), micros(to)) {
            (Some(from_ns), Some(to_ns)) if from_ns < to_ns => Ok(Window { from_ns, to_ns }),
            _ => Err("expected FROM_US..TO_US: two times in µs, the first the smaller".into()),
        }
    }
}

/// Where the raw stream of `json` is kept: the same name, `.ktrace`.
pub fn raw_path(json: &Path) -> PathBuf {
    json.with_extension("ktrace")
}

/// Where the picture of `json` goes: the same name, `.svg`.
pub fn svg_path(json: &Path) -> PathBuf {
    json.with_extension("svg")
}

/// What [`convert`] wrote.
#[derive(Debug)]
pub struct Written {
    pub events: usize,
    pub cpus: usize,
    pub lost: u64,
    pub torn: u64,
    /// Being written when the last dump ran, so in no dump.
    pub pending: u64,
    pub dumps: usize,
    pub cuts: Vec<String>,
    pub json: PathBuf,
    pub svg: PathBuf,
}

impl Written {
    /// The line the runner prints.
    pub fn summary(&self) -> String {
        format!(
            "trace: {} events on {} CPUs ({} lost) -> {} (open in ui.perfetto.dev or \
             chrome://tracing), {}",
            self.events,
            self.cpus,
            self.lost,
            self.json.display(),
            self.svg.display()
        )
    }

    /// What the reader of the trace should know is missing from it.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.dumps == 0 {
            warnings.push(
                "trace: warning: the kernel dumped no trace (was `trace=off` given, or did the \
                 run end before the kernel's dump?)"
                    .to_string(),
            );
        }
        if self.lost > 0 {
            warnings.push(format!(
                "trace: warning: {} events were overwritten before a dump read them: the \
                 trace starts late on the CPUs that lost them (otherData.cpus in the JSON)",
                self.lost
            ));
        }
        if self.torn > 0 {
            warnings.push(format!(
                "trace: warning: {} events were skipped, being written while a dump read them",
                self.torn
            ));
        }
        if self.pending > 0 {
            warnings.push(format!(
                "trace: warning: {} events were being recorded when the last dump ran, and \
                 are in no dump",
                self.pending
            ));
        }
        for cut in &self.cuts {
            warnings.push(format!("trace: warning: the stream was cut: {cut}"));
        }
        warnings
    }
}

/// Reads the raw stream `raw` and writes `json` and the SVG beside it
/// ([`svg_path`]), drawing only `window` if given.
pub fn convert(raw: &Path, json: &Path, window: Option<Window>) -> Result<Written, String> {
    let bytes = std::fs::read(raw).map_err(|e| format!("cannot read {}: {e}", raw.display()))?;
    let trace = decode(&bytes).map_err(|e| format!("{}: {e}", raw.display()))?;
    let timeline = Timeline::build(&trace);
    let written = Written {
        events: trace.events.len(),
        cpus: trace.cpus.len(),
        lost: trace.cpus.iter().map(|c| c.lost).sum(),
        torn: trace.cpus.iter().map(|c| c.torn).sum(),
        pending: trace.cpus.iter().map(|c| c.pending).sum(),
        dumps: trace.dumps.len(),
        cuts: trace.cuts.clone(),
        json: json.to_path_buf(),
        svg: svg_path(json),
    };
    std::fs::File::create(json)
        .and_then(|file| chrome::write(&trace, &timeline, BufWriter::new(file)))
        .map_err(|e| format!("cannot write {}: {e}", json.display()))?;
    let title = format!(
        "Kernel trace: {} events on {} CPUs, {} dump{}{}",
        written.events,
        written.cpus,
        written.dumps,
        if written.dumps == 1 { "" } else { "s" },
        if written.lost + written.torn > 0 || !written.cuts.is_empty() {
            format!(" ({} lost, {} torn, {} cut)", written.lost, written.torn, written.cuts.len())
        } else {
            String::new()
        }
    );
    std::fs::write(&written.svg, svg::to_svg(&timeline, &title, window))
        .map_err(|e| format!("cannot write {}: {e}", written.svg.display()))?;
    Ok(written)
}

/// After a run with `--trace json`: converts its raw stream and says so on
/// stderr, the summary line and any warning, or why it could not.
pub fn convert_after_run(json: &Path, window: Option<Window>) {
    match convert(&raw_path(json), json, window) {
        Ok(written) => {
            eprintln!("{}", written.summary());
            for warning in written.warnings() {
                eprintln!("{warning}");
            }
        }
        Err(error) => eprintln!("trace: {error}"),
    }
}
