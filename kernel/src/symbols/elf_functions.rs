//! The pure half of `symbols`: which function of an ELF file holds an
//! address, and its mangled name shown as a Rust path.
//!
//! It reads only the byte slice it is given and uses only `core`, `elf` and
//! `rustc_demangle`, nothing of the kernel's, so the host unit tests
//! (kernel-logic/) compile this very file. It allocates nothing and takes no lock: the panic handler calls it.
//!
//! **Why these crates.** Both replace hand-written code that re-did what a
//! well-kept crate does:
//! - `elf` (cole14/rust-elf, default features off) parses the section and
//!   symbol tables lazily from a `&[u8]`, with every offset checked and no
//!   heap allocation ("zero-alloc" without its `alloc` feature), and has no
//!   lock or global state; the user-mode loader will need it for program
//!   headers. `object` (read_core + elf) would do too, but is a larger,
//!   more generic API for one table walk.
//! - `rustc-demangle` is the demangler the Rust toolchain's own backtraces
//!   use (`no_std`). Its `Display` writes through a size-limited adapter
//!   without allocating. It reads both legacy (`_ZN...E`) and the full v0
//!   grammar (`_R...`: generics, impls, back-references), so the build no
//!   longer forces `-C symbol-mangling-version=legacy`, which it did only for
//!   the hand-written demangler's sake.
//!
//! **What they cost**, measured on the dev kernel (`cargo build`, `llvm-size`):
//!
//! | kernel ELF                        | file bytes | `.text` | `.rodata` |
//! |-----------------------------------|-----------:|--------:|----------:|
//! | hand-written, legacy mangling     |  9,632,600 | 444,943 |    66,147 |
//! | crates, legacy mangling           |  9,632,816 | 472,911 |    69,963 |
//! | crates, v0 mangling (this build)  |  9,951,440 | 473,007 |    69,947 |
//!
//! The code grows by 28 KiB (6%): rustc-demangle's functions are 24 KiB,
//! `elf`'s 2.4 KiB, against the 7 KiB of hand-written
//! code they replace. That holds with both crates optimised like the kernel
//! (Cargo.toml): at the dev profile's opt-level 0 they cost 90 KiB. v0 names
//! are longer, so the file (which the bootloader keeps in memory) grows by
//! 311 KiB (3%), almost all of it DWARF linkage names; `.strtab` by 43 KiB (155,883 to 199,406 bytes). A
//! backtrace that names generic and trait functions, as the old subset could
//! not, is worth that.

use core::fmt;

use elf::ElfBytes;
use elf::abi::STT_FUNC;
use elf::endian::LittleEndian;

/// The function of `file` whose `[st_value, st_value + st_size)` holds
/// `address` (a link-time address): its mangled name and how far into it
/// `address` lies. None when `file` is not a readable ELF64 file with a
/// `.symtab`, or no function holds the address.
pub fn function_containing(file: &[u8], address: u64) -> Option<(&str, u64)> {
    let elf = ElfBytes::<LittleEndian>::minimal_parse(file).ok()?;
    let (symbols, names) = elf.symbol_table().ok()??;
    symbols.iter().find_map(|symbol| {
        let offset = address.checked_sub(symbol.st_value)?;
        // A function of size 0 (an assembly label) still names its first byte.
        if symbol.st_symtype() != STT_FUNC || offset >= symbol.st_size.max(1) {
            return None;
        }
        Some((names.get(symbol.st_name as usize).ok()?, offset))
    })
}

/// Displays a mangled Rust name as a path without its hashes:
/// `_ZN6kernel5panic6report17h0123456789abcdefE` (legacy) and
/// `_RNvNtCs1234_6kernel5panic6report` (v0) both become
/// `kernel::panic::report`; LLVM's `.llvm.NNNN` suffix is dropped. Anything
/// that is not a Rust name (`memcpy`) is shown as it is.
pub struct Demangled<'a>(pub &'a str);

impl fmt::Display for Demangled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match rustc_demangle::try_demangle(self.0) {
            // `#` leaves out legacy hashes and v0 crate disambiguators.
            Ok(name) => write!(f, "{name:#}"),
            Err(_) => f.write_str(self.0),
        }
    }
}
