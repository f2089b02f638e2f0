//! Turns the kernel ELF (built by cargo as an artifact dependency) into two
//! bootable disk images with the `bootloader` crate, and tells the runner where
//! they are through compile-time environment variables.
//!
//! The images carry a ramdisk too: the user programs in ../user (C, built
//! as static musl binaries) packed in a cpio "newc" archive, the format
//! Linux unpacks as an initramfs, so the same file serves this kernel's
//! `run=NAME` and a Linux kernel's `-initrd` (`cargo run -- bench-user`).

extern crate alloc;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The kernel's reader of the archive, whose writer is compiled here only.
#[path = "../kernel/src/user/archive.rs"]
#[allow(dead_code)]
mod archive;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let kernel = PathBuf::from(std::env::var_os("CARGO_BIN_FILE_KERNEL_kernel").unwrap());
    let ramdisk = out_dir.join("ramdisk.cpio");
    std::fs::write(&ramdisk, archive::write_newc(&user_programs(&out_dir)))
        .expect("failed to write the ramdisk");

    let mut builder = bootloader::DiskImageBuilder::new(kernel.clone());
    // The bootloader's own log would fill the serial console before the kernel's
    // first line; keep only its warnings and errors.
    let mut boot_config = bootloader::BootConfig::default();
    boot_config.log_level = bootloader_boot_config::LevelFilter::Warn;
    builder.set_boot_config(&boot_config);
    builder.set_ramdisk(ramdisk.clone());
    let bios_image = out_dir.join("kernel-bios.img");
    let uefi_image = out_dir.join("kernel-uefi.img");
    builder.create_bios_image(&bios_image).expect("failed to create the BIOS disk image");
    builder.create_uefi_image(&uefi_image).expect("failed to create the UEFI disk image");

    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=BIOS_IMAGE={}", bios_image.display());
    println!("cargo:rustc-env=UEFI_IMAGE={}", uefi_image.display());
    println!("cargo:rustc-env=RAMDISK={}", ramdisk.display());
}

/// Builds every user/*.c into a static program named after its file, and
/// returns (name, mode, bytes) for the archive. Without musl-gcc there are
/// none, with a warning: the kernel still builds, and says so at `run=`.
fn user_programs(out_dir: &Path) -> Vec<(&'static str, u32, &'static [u8])> {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../user");
    println!("cargo:rerun-if-changed={}", sources.display());
    println!("cargo:rerun-if-env-changed=MUSL_GCC");
    let compiler = std::env::var("MUSL_GCC").unwrap_or_else(|_| "musl-gcc".into());
    if Command::new(&compiler).arg("--version").output().is_err() {
        println!(
            "cargo:warning={compiler} not found: the ramdisk holds no user programs; \
             install musl-tools (./dev setup does)"
        );
        // A path that never exists: the script runs again on every build,
        // until the compiler appears (its file keeps an old mtime).
        println!("cargo:rerun-if-changed={}", out_dir.join("no-musl-gcc-yet").display());
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&sources)
        .expect("cannot read user/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "c"))
        .collect();
    files.sort();
    let binaries = out_dir.join("user");
    std::fs::create_dir_all(&binaries).unwrap();
    files
        .iter()
        .map(|source| {
            println!("cargo:rerun-if-changed={}", source.display());
            let name = source.file_stem().unwrap().to_str().unwrap().to_string();
            let binary = binaries.join(&name);
            let status = Command::new(&compiler)
                .args([
                    "-static", "-no-pie", "-O2", "-g", "-Wall", "-Wextra", "-Werror", "-pthread",
                ])
                .arg("-I")
                .arg(sources.join("include"))
                .arg("-o")
                .arg(&binary)
                .arg(source)
                .status()
                .expect("cannot run the C compiler");
            assert!(status.success(), "{compiler} failed on {}", source.display());
            let bytes = std::fs::read(&binary).unwrap();
            // Names and bytes live as long as the build script.
            let name: &'static str = Box::leak(name.into_boxed_str());
            (name, 0o100755, &*Box::leak(bytes.into_boxed_slice()))
        })
        .collect()
}
