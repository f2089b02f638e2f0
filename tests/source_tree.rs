//! Walking the repository's source, for the host tests that read it instead
//! of booting it (the docs check, the layers check, the list of declared
//! kernel tests): one walk, in a stable order, so their reports are too.

use std::fs;
use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively, sorted by path; none if `dir` does
/// not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else { return found };
    let mut paths: Vec<PathBuf> = entries.map(|entry| entry.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// The Rust files under `dir`, as [`files_under`].
pub fn rust_files_under(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| path.extension().is_some_and(|e| e == "rs"))
        .collect()
}

/// The kernel's source directory.
#[allow(dead_code)] // not every test crate that includes this file needs it
pub fn kernel_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/src")
}
