//! The kernel's virtual address layout (x86_64 4-level paging: 48-bit addresses).
//!
//! ```text
//! 0x0000_0000_0000_0000 .. 0x0000_7fff_ffff_ffff  lower half: unused (later: address spaces)
//! 0xffff_8000_0000_0000 .. 0xffff_bfff_ffff_ffff  bootloader's choice: kernel image, its stack,
//!                                                 boot info, the physical memory window
//! 0xffff_c000_0000_0000 ..                        kernel heap (HEAP_SIZE)
//! 0xffff_c800_0000_0000 ..                        MMIO mappings (uncached), handed out upwards
//! 0xffff_d000_0000_0000 ..                        kernel stacks, each above an unmapped guard page
//! ```
//! The bootloader is confined to its range by `dynamic_range_start/end` in
//! `main.rs`'s `BOOTLOADER_CONFIG`.

pub const BOOTLOADER_RANGE_START: u64 = 0xffff_8000_0000_0000;
pub const BOOTLOADER_RANGE_END: u64 = 0xffff_bfff_ffff_ffff;

pub const HEAP_START: u64 = 0xffff_c000_0000_0000;
pub const HEAP_SIZE: u64 = 16 * 1024 * 1024;

pub const MMIO_START: u64 = 0xffff_c800_0000_0000;
pub const MMIO_END: u64 = 0xffff_c900_0000_0000;

pub const STACKS_START: u64 = 0xffff_d000_0000_0000;
pub const STACKS_END: u64 = 0xffff_d800_0000_0000;
