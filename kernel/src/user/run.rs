//! `run=NAME run_args=A,B`: the program the boot starts, from the ramdisk.
//!
//! The runner's build packs the programs under user/ into a cpio archive
//! that the bootloader loads as its ramdisk (`DiskImageBuilder::
//! set_ramdisk`) and maps for the kernel (`BootInfo::ramdisk_addr`).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use spin::Once;

use super::archive::Archive;
use super::loader;

static RAMDISK: Once<&'static [u8]> = Once::new();

/// Records the ramdisk (none if the bootloader loaded none) and says what
/// it holds.
pub fn set_ramdisk(bytes: Option<&'static [u8]>) {
    let bytes = RAMDISK.call_once(|| bytes.unwrap_or(&[]));
    match program_names() {
        Ok(names) if names.is_empty() => log::info!(
            "user: the ramdisk holds no programs (the build had no musl-gcc: install musl-tools)"
        ),
        Ok(names) => log::info!(
            "user: ramdisk ({} KiB) holds {} programs: {}",
            bytes.len() / 1024,
            names.len(),
            names.join(", ")
        ),
        Err(error) => log::warn!("user: {error}"),
    }
}

/// The ramdisk's bytes (none before `set_ramdisk`, or without a ramdisk).
fn ramdisk() -> &'static [u8] {
    RAMDISK.get().copied().unwrap_or(&[])
}

fn program_names() -> Result<Vec<&'static str>, String> {
    if ramdisk().is_empty() {
        return Ok(Vec::new());
    }
    let programs = Archive::new(ramdisk()).programs();
    programs.map(|entry| entry.map(|e| e.name).map_err(|e| e.to_string())).collect()
}

/// Runs program `name` with `arguments` (separated by commas) and waits for
/// it; returns its exit status, or None if it could not be started (the
/// reason is logged, with the list of programs for an unknown name).
pub fn run(name: &str, arguments: Option<&str>) -> Option<i32> {
    let file = match Archive::new(ramdisk()).find(name) {
        Ok(Some(entry)) if entry.is_regular_file() => entry.data,
        Ok(_) => {
            log::error!("user: no program '{name}' in the ramdisk; it holds:");
            match program_names() {
                Ok(names) if names.is_empty() => {
                    log::error!("    nothing (the build had no musl-gcc: install musl-tools)")
                }
                Ok(names) => names.iter().for_each(|n| log::error!("    {n}")),
                Err(error) => log::error!("    (unreadable: {error})"),
            }
            return None;
        }
        Err(error) => {
            log::error!("user: {error}");
            return None;
        }
    };
    let mut argv = alloc::vec![name.to_string()];
    argv.extend(arguments.into_iter().flat_map(|a| a.split(',')).map(String::from));
    let frames_before = frames_not_in_use();
    let process = match loader::spawn(name, file, argv) {
        Ok(process) => process,
        Err(error) => {
            log::error!("user: '{name}' is not a program this kernel can run: {error}");
            return None;
        }
    };
    let status = process.wait();
    let pid = process.pid();
    drop(process);
    log::info!("user: pid {pid} '{name}' exited with status {status}");
    let frames_after = frames_not_in_use();
    log::info!("user: frames free before the program {frames_before}, after {frames_after}");
    Some(status)
}

/// Free frames, counting those of freed kernel stacks that wait for a
/// flush, and not counting page tables the kernel half gained (kept for
/// good): what a process's exit must give back exactly.
fn frames_not_in_use() -> i64 {
    let free = crate::mm::frame::counts().0 + crate::mm::stack::retired_frames();
    free as i64 + crate::mm::paging::kernel_tables_made() as i64
}
