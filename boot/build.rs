//! Turns the kernel ELF (built by cargo as an artifact dependency) into two
//! bootable disk images with the `bootloader` crate, and tells the runner where
//! they are through compile-time environment variables.

use std::path::PathBuf;

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let kernel = PathBuf::from(std::env::var_os("CARGO_BIN_FILE_KERNEL_kernel").unwrap());

    let mut builder = bootloader::DiskImageBuilder::new(kernel.clone());
    // The bootloader's own log would fill the serial console before the kernel's
    // first line; keep only its warnings and errors.
    let mut boot_config = bootloader::BootConfig::default();
    boot_config.log_level = bootloader_boot_config::LevelFilter::Warn;
    builder.set_boot_config(&boot_config);
    let bios_image = out_dir.join("kernel-bios.img");
    let uefi_image = out_dir.join("kernel-uefi.img");
    builder.create_bios_image(&bios_image).expect("failed to create the BIOS disk image");
    builder.create_uefi_image(&uefi_image).expect("failed to create the UEFI disk image");

    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
    println!("cargo:rustc-env=BIOS_IMAGE={}", bios_image.display());
    println!("cargo:rustc-env=UEFI_IMAGE={}", uefi_image.display());
}
