//! Naming code addresses for backtraces, from the kernel's own ELF symbol table.
//!
//! The bootloader leaves the kernel's ELF file in memory and says where
//! (`BootInfo::kernel_addr`, `kernel_len`) and at what virtual offset the image
//! was loaded (`kernel_image_offset`). The file's `.symtab` lists every
//! function with its address and size. This file holds the kernel's side (where
//! the file is, the in-kernel tests); `elf_functions` reads the table and turns
//! names back into `kernel::panic::report`-style paths, with the `elf` and
//! `rustc-demangle` crates (its module doc says why those, and what they cost).
//!
//! Everything here only reads memory and takes no lock: it runs in the panic path.

use spin::Once;
use x86_64::PhysAddr;

mod elf_functions;

pub use elf_functions::Demangled;

mod tests;

struct Elf {
    file: &'static [u8],
    image_offset: u64,
}

static ELF: Once<Elf> = Once::new();

pub fn init(physical_address: u64, length: u64, image_offset: u64) {
    let start = crate::mm::phys_to_virt(PhysAddr::new(physical_address));
    // SAFETY: the bootloader loaded the kernel ELF file there and keeps it (the
    // kernel's read-only segments are mapped from it); it is only read.
    let file = unsafe { core::slice::from_raw_parts(start.as_ptr::<u8>(), length as usize) };
    ELF.call_once(|| Elf { file, image_offset });
    crate::trace::set_code_namer(name_code);
}

/// Writes `function+0xoffset` for a return address (`0x...` if no symbol
/// covers it): how the trace names where a preempt-off span began.
fn name_code(return_address: u64, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
    match lookup_return_address(return_address) {
        Some((name, offset)) => write!(out, "{}+{offset:#x}", Demangled(name)),
        None => write!(out, "{return_address:#x}"),
    }
}

/// A function's (mangled) name and how far into it `address` lies.
pub fn lookup(address: u64) -> Option<(&'static str, u64)> {
    let elf = ELF.get()?;
    elf_functions::function_containing(elf.file, address.checked_sub(elf.image_offset)?)
}

/// The function whose call returns to `return_address`, and the return
/// address's offset in it. The call is the instruction before the return
/// address, so that is what is looked up: a function that ends in a call (one
/// that never returns, as `panic_fmt`) has its return address one byte past
/// its end, in no function or in the next one. (gdb and Linux's unwinder do
/// the same.)
pub fn lookup_return_address(return_address: u64) -> Option<(&'static str, u64)> {
    let (name, offset) = lookup(return_address.checked_sub(1)?)?;
    Some((name, offset + 1))
}
