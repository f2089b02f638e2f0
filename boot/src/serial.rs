//! The kernel's serial output on its way from QEMU's stdout to the user or
//! the tests, with the runner's `HOST` lines added after each `HOSTSTAT end`
//! (see [`crate::host_stats`]).

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use crate::host_stats;

/// Where the serial output goes: a buffer for the caller to read, or, when it
/// is not captured, this process's stdout as it arrives.
pub(crate) struct SerialSink(
    pub(crate) Option<Arc<Mutex<Vec<u8>>>>,
    /// When the first line of a panic report arrived (for the QMP listener).
    pub(crate) crate::qmp::Moment,
);

impl SerialSink {
    fn write(&self, bytes: &[u8]) {
        match &self.0 {
            Some(buffer) => buffer.lock().unwrap().extend_from_slice(bytes),
            None => {
                let _ = std::io::stdout().write_all(bytes);
            }
        }
    }

    fn flush(&self) {
        if self.0.is_none() {
            let _ = std::io::stdout().flush();
        }
    }
}

/// The start of the current line, enough to recognise a `HOSTSTAT` line.
const LINE_KEPT: usize = 256;

/// Passes the serial output on as it arrives: whole lines one at a time, and
/// the part of a line that has no newline yet at once, so nothing waits. After
/// a `HOSTSTAT end` line it adds the runner's `HOST` lines.
pub(crate) fn pump_serial(
    mut source: impl Read,
    sink: SerialSink,
    mut watcher: host_stats::Watcher,
) {
    let mut chunk = [0u8; 4096];
    let mut line = Vec::new();
    while let Ok(n) = source.read(&mut chunk) {
        if n == 0 {
            break;
        }
        let mut rest = &chunk[..n];
        while let Some(newline) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(newline + 1);
            keep_line_start(&mut line, head);
            // The snapshot is taken before the line is shown: a slow terminal must not delay it.
            let text = String::from_utf8_lossy(&line);
            if text.starts_with("---- kernel panic") {
                sink.1.lock().unwrap().get_or_insert_with(std::time::Instant::now);
            }
            let added = watcher.line(&text);
            sink.write(head);
            for text in added {
                sink.write(format!("{text}\n").as_bytes());
            }
            line.clear();
            rest = tail;
        }
        keep_line_start(&mut line, rest);
        sink.write(rest);
        sink.flush();
    }
}

fn keep_line_start(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = LINE_KEPT.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its chunks one `read` at a time, as a pipe might.
    struct Chunks(Vec<&'static [u8]>);

    impl Read for Chunks {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let chunk = self.0.remove(0);
            out[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    #[test]
    fn serial_passes_through_unchanged_with_host_lines_after_each_end() {
        let chunks = vec![
            &b"boot\r\nHOSTST"[..],
            b"AT begin a\r\nBENCH x=1\r\nHOSTSTAT end a\r",
            b"\nnext\r\npartial",
        ];
        let buffer = Arc::new(Mutex::new(Vec::new()));
        // No such process: the HOST line says the figures are unavailable.
        pump_serial(
            Chunks(chunks),
            SerialSink(Some(buffer.clone()), Default::default()),
            host_stats::Watcher::new(u32::MAX),
        );
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let (before, after) = text.split_once("HOSTSTAT end a\r\n").unwrap();
        assert_eq!(before, "boot\r\nHOSTSTAT begin a\r\nBENCH x=1\r\n");
        let (host, rest) = after.split_once('\n').unwrap();
        assert!(host.starts_with("HOST a unavailable: cannot read /proc/"), "{host}");
        assert_eq!(rest, "next\r\npartial");
    }
}
