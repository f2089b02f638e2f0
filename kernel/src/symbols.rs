//! Naming code addresses for backtraces, from the kernel's own ELF symbol table.
//!
//! The bootloader leaves the kernel's ELF file in memory and says where
//! (`BootInfo::kernel_addr`, `kernel_len`) and at what virtual offset the image
//! was loaded (`kernel_image_offset`). The file's `.symtab` lists every
//! function with its address and size; the kernel is built with legacy symbol
//! mangling (see .cargo/config.toml), which a few lines below turn back into
//! `kernel::panic::report`-style paths.
//!
//! Everything here only reads memory and takes no lock: it runs in the panic path.

use core::fmt;

use spin::Once;
use x86_64::PhysAddr;

const SHT_SYMTAB: u32 = 2;
const STT_FUNC: u8 = 2;

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
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}
fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// A function's (mangled) name and how far into it `address` lies.
pub fn lookup(address: u64) -> Option<(&'static str, u64)> {
    let elf = ELF.get()?;
    let file = elf.file;
    let target = address.checked_sub(elf.image_offset)?;
    // ELF64 header: section headers at e_shoff (0x28), e_shentsize (0x3a), e_shnum (0x3c).
    let section_headers = read_u64(file, 0x28)? as usize;
    let entry_size = read_u16(file, 0x3a)? as usize;
    let count = read_u16(file, 0x3c)? as usize;
    let section = |index: usize| section_headers + index * entry_size;
    let symtab = (0..count).find(|&i| read_u32(file, section(i) + 4) == Some(SHT_SYMTAB))?;
    let (symbols, symbols_size) = (
        read_u64(file, section(symtab) + 24)? as usize,
        read_u64(file, section(symtab) + 32)? as usize,
    );
    let strtab = read_u32(file, section(symtab) + 40)? as usize;
    let strings = read_u64(file, section(strtab) + 24)? as usize;
    // Each symbol: st_name u32, st_info u8, st_other u8, st_shndx u16, st_value u64, st_size u64.
    (symbols..symbols + symbols_size).step_by(24).find_map(|symbol| {
        let (value, size) = (read_u64(file, symbol + 8)?, read_u64(file, symbol + 16)?);
        if file.get(symbol + 4)? & 0xf != STT_FUNC
            || !(value..value + size.max(1)).contains(&target)
        {
            return None;
        }
        let name_start = strings + read_u32(file, symbol)? as usize;
        let name_length = file.get(name_start..)?.iter().position(|&b| b == 0)?;
        let name = core::str::from_utf8(&file[name_start..name_start + name_length]).ok()?;
        Some((name, target - value))
    })
}

/// Displays a mangled Rust name as a path: legacy names
/// (`_ZN6kernel5panic6report17h0123456789abcdefE`, how the kernel is built)
/// and the plain paths of v0 names (`_RNvNtCs..._4core3fmt5write`, how the
/// precompiled `core` is built) become `kernel::panic::report` and
/// `core::fmt::write`; anything else is shown as it is.
pub struct Demangled<'a>(pub &'a str);

impl fmt::Display for Demangled<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // LLVM appends ".llvm.NNNN" to names it made local.
        let name = self.0.split(".llvm.").next().unwrap_or(self.0);
        if let Some(body) = name.strip_prefix("_ZN").and_then(|s| s.strip_suffix('E')) {
            return write_legacy(f, body);
        }
        // Parsed twice: once to check that the whole name is in the supported
        // subset, once to print it; nothing is allocated (this runs in the panic path).
        if let Some(body) = name.strip_prefix("_R") {
            if (V0Path { rest: body }).parse(&mut None).is_some() {
                return (V0Path { rest: body }).parse(&mut Some(f)).ok_or(fmt::Error);
            }
        }
        f.write_str(self.0)
    }
}

fn write_legacy(f: &mut fmt::Formatter, mut rest: &str) -> fmt::Result {
    let mut first = true;
    while let Some(digits) = rest.find(|c: char| !c.is_ascii_digit()).filter(|&n| n > 0) {
        let length: usize = rest[..digits].parse().map_err(|_| fmt::Error)?;
        let Some(segment) = rest.get(digits..digits + length) else { break };
        rest = &rest[digits + length..];
        // The last segment is a hash, "h" and 16 hex digits: not worth showing.
        if rest.is_empty() && segment.len() == 17 && segment.starts_with('h') {
            break;
        }
        if !first {
            f.write_str("::")?;
        }
        first = false;
        write_unescaped(f, segment)?;
    }
    Ok(())
}

/// The subset of v0 mangling (RFC 2603) made of crate roots (`C`) and nested
/// paths (`N`): enough for plain functions and closures. Generic instances,
/// impls and back-references make `parse` return None.
struct V0Path<'a> {
    rest: &'a str,
}

impl<'a> V0Path<'a> {
    fn take(&mut self, prefix: char) -> bool {
        match self.rest.strip_prefix(prefix) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// `s <base-62> _`: a disambiguator, skipped.
    fn skip_disambiguator(&mut self) -> Option<()> {
        if self.take('s') {
            let end = self.rest.find('_')?;
            self.rest = &self.rest[end + 1..];
        }
        Some(())
    }

    /// `<decimal length> [_] <bytes>`.
    fn identifier(&mut self) -> Option<&'a str> {
        self.skip_disambiguator()?;
        let digits = self.rest.find(|c: char| !c.is_ascii_digit())?;
        let length: usize = self.rest[..digits].parse().ok()?;
        self.rest = &self.rest[digits..];
        self.take('_');
        let identifier = self.rest.get(..length)?;
        self.rest = &self.rest[length..];
        Some(identifier)
    }

    /// Parses a path, writing it to `out` if given.
    fn parse(&mut self, out: &mut Option<&mut fmt::Formatter>) -> Option<()> {
        let mut write = |text: &str| out.as_mut().map_or(Some(()), |f| f.write_str(text).ok());
        if self.take('C') {
            return write(self.identifier()?);
        }
        if !self.take('N') {
            return None;
        }
        let namespace = self.rest.chars().next()?;
        self.rest = &self.rest[1..];
        self.parse(out)?;
        let identifier = self.identifier()?;
        let mut write = |text: &str| out.as_mut().map_or(Some(()), |f| f.write_str(text).ok());
        write("::")?;
        match namespace {
            'C' => write("{closure}"),
            'S' => write("{shim}"),
            _ => write(identifier),
        }
    }
}

/// Legacy mangling spells some characters as `$NAME$` and `::` inside a segment as `..`.
fn write_unescaped(f: &mut fmt::Formatter, mut segment: &str) -> fmt::Result {
    const ESCAPES: &[(&str, &str)] = &[
        ("$LT$", "<"),
        ("$GT$", ">"),
        ("$RF$", "&"),
        ("$BP$", "*"),
        ("$C$", ","),
        ("$SP$", "@"),
        ("$u20$", " "),
        ("$u27$", "'"),
        ("$u5b$", "["),
        ("$u5d$", "]"),
        ("$u7b$", "{"),
        ("$u7d$", "}"),
        ("$u7e$", "~"),
        ("..", "::"),
    ];
    segment = segment.strip_prefix('_').filter(|s| s.starts_with('$')).unwrap_or(segment);
    while !segment.is_empty() {
        match ESCAPES.iter().find(|(code, _)| segment.starts_with(code)) {
            Some((code, text)) => {
                f.write_str(text)?;
                segment = &segment[code.len()..];
            }
            None => {
                let c = segment.chars().next().unwrap();
                write!(f, "{c}")?;
                segment = &segment[c.len_utf8()..];
            }
        }
    }
    Ok(())
}

// Tests.

use crate::testing::{KernelTest, TestResult};

fn demangles_legacy_names() -> TestResult {
    let cases = [
        ("_ZN6kernel5panic6report17h0123456789abcdefE", "kernel::panic::report"),
        (
            "_ZN4core3ptr46drop_in_place$LT$alloc..vec..Vec$LT$u8$GT$$GT$17h0123456789abcdefE",
            "core::ptr::drop_in_place<alloc::vec::Vec<u8>>",
        ),
        (
            "_ZN50_$LT$kernel..Foo$u20$as$u20$core..fmt..Display$GT$3fmt17h0123456789abcdefE",
            "<kernel::Foo as core::fmt::Display>::fmt",
        ),
        (
            "_ZN6kernel5panic13stop_this_cpu17h0eb8c90f79c04383E.llvm.16555554137199176552",
            "kernel::panic::stop_this_cpu",
        ),
        ("_RNvNtCseBUlfiRr2wv_4core3fmt5write", "core::fmt::write"),
        ("_RNvCsliXqPUoegt5_7___rustc17rust_begin_unwind", "__rustc::rust_begin_unwind"),
        ("_RNCNvNtCs1_6kernel3smp4init0B5_", "kernel::smp::init::{closure}"),
        (
            "_RINvNtCs1_4core3ptr13drop_in_placeNtB2_3FooE",
            "_RINvNtCs1_4core3ptr13drop_in_placeNtB2_3FooE",
        ),
        ("memcpy", "memcpy"),
    ];
    for (mangled, expected) in cases {
        let shown = alloc::format!("{}", Demangled(mangled));
        crate::ensure!(shown == expected, "{mangled} became {shown}, expected {expected}");
    }
    Ok(())
}

fn names_its_own_functions() -> TestResult {
    let address = names_its_own_functions as *const () as u64;
    let (name, offset) = lookup(address + 1).ok_or("no symbol for a kernel function")?;
    let shown = alloc::format!("{}", Demangled(name));
    crate::ensure!(
        shown == "kernel::symbols::names_its_own_functions",
        "the function was named {shown}"
    );
    crate::ensure!(offset == 1, "offset {offset} instead of 1");
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("symbols_demangle_legacy_names", demangles_legacy_names),
    KernelTest::new("symbols_name_kernel_functions", names_its_own_functions),
];
