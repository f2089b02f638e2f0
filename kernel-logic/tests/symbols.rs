//! Symbol lookup and demangling as the panic path uses them
//! (kernel/src/symbols/elf_functions.rs), on ELF files built here byte by byte.

use kernel_logic::elf_functions::{Demangled, function_containing};

const STT_OBJECT: u8 = 1;
const STT_FUNC: u8 = 2;
const STB_GLOBAL: u8 = 1;

/// One `.symtab` entry: name, type, value, size.
type Symbol = (&'static str, u8, u64, u64);

/// An ELF64 little-endian file with a null section, `.symtab` and `.strtab`
/// (its sh_link), holding `symbols` after the null symbol.
fn elf_with(symbols: &[Symbol]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 24]; // symbol 0 is the null symbol
    for &(name, kind, value, size) in symbols {
        symtab.extend((strtab.len() as u32).to_le_bytes());
        symtab.push(STB_GLOBAL << 4 | kind);
        symtab.push(0); // st_other
        symtab.extend(1u16.to_le_bytes()); // st_shndx: some section
        symtab.extend(value.to_le_bytes());
        symtab.extend(size.to_le_bytes());
        strtab.extend(name.as_bytes());
        strtab.push(0);
    }
    let symtab_at = 64;
    let strtab_at = symtab_at + symtab.len();
    let headers_at = (strtab_at + strtab.len()).next_multiple_of(8);

    let mut file = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0]; // ELF64, little-endian, v1
    file.resize(16, 0);
    file.extend(2u16.to_le_bytes()); // e_type: executable
    file.extend(0x3eu16.to_le_bytes()); // e_machine: x86-64
    file.extend(1u32.to_le_bytes()); // e_version
    file.extend(0u64.to_le_bytes()); // e_entry
    file.extend(0u64.to_le_bytes()); // e_phoff: no program headers
    file.extend((headers_at as u64).to_le_bytes()); // e_shoff
    file.extend(0u32.to_le_bytes()); // e_flags
    for half in [64u16, 56, 0, 64, 3, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        file.extend(half.to_le_bytes());
    }
    assert_eq!(file.len(), 64);
    file.extend(&symtab);
    file.extend(&strtab);
    file.resize(headers_at, 0);
    file.extend([0u8; 64]); // section 0: SHT_NULL
    let section = |file: &mut Vec<u8>, kind: u32, at: usize, size: usize, link: u32, entry: u64| {
        file.extend(0u32.to_le_bytes()); // sh_name
        file.extend(kind.to_le_bytes());
        file.extend(0u64.to_le_bytes()); // sh_flags
        file.extend(0u64.to_le_bytes()); // sh_addr
        file.extend((at as u64).to_le_bytes());
        file.extend((size as u64).to_le_bytes());
        file.extend(link.to_le_bytes());
        file.extend(1u32.to_le_bytes()); // sh_info: first global symbol
        file.extend(8u64.to_le_bytes()); // sh_addralign
        file.extend(entry.to_le_bytes());
    };
    section(&mut file, 2, symtab_at, symtab.len(), 2, 24); // SHT_SYMTAB, strings in section 2
    section(&mut file, 3, strtab_at, strtab.len(), 0, 0); // SHT_STRTAB
    file
}

const KERNEL_MAIN: &str = "_RNvCs1234_6kernel11kernel_main";
const REPORT: &str = "_ZN6kernel5panic6report17h0123456789abcdefE";

fn sample() -> Vec<u8> {
    elf_with(&[
        ("DATA", STT_OBJECT, 0x1000, 0x100), // covers 0x1000..0x1100, but is not code
        (KERNEL_MAIN, STT_FUNC, 0x1000, 0x40),
        (REPORT, STT_FUNC, 0x1080, 0x20),
        ("label", STT_FUNC, 0x2000, 0), // an assembly label: size 0
    ])
}

#[test]
fn finds_the_function_holding_an_address_and_the_offset_into_it() {
    let file = sample();
    assert_eq!(function_containing(&file, 0x1000), Some((KERNEL_MAIN, 0)));
    assert_eq!(function_containing(&file, 0x1011), Some((KERNEL_MAIN, 0x11)));
    assert_eq!(function_containing(&file, 0x103f), Some((KERNEL_MAIN, 0x3f)));
    assert_eq!(function_containing(&file, 0x1090), Some((REPORT, 0x10)));
}

#[test]
fn addresses_outside_every_function_have_no_name() {
    let file = sample();
    // 0x1040 is one past kernel_main's end, inside only the data object.
    for address in [0, 0xfff, 0x1040, 0x107f, 0x10a0, 0x2001, u64::MAX] {
        assert_eq!(function_containing(&file, address), None, "address {address:#x}");
    }
}

#[test]
fn a_function_of_size_zero_names_only_its_first_byte() {
    let file = sample();
    assert_eq!(function_containing(&file, 0x2000), Some(("label", 0)));
}

#[test]
fn a_damaged_file_gives_no_name_rather_than_a_panic() {
    let file = sample();
    for length in [0, 4, 63, 64, 100, file.len() - 1] {
        // Cut before the section headers end: no table, no name.
        assert_eq!(function_containing(&file[..length], 0x1011), None, "cut at {length}");
    }
    let mut wrong_magic = file.clone();
    wrong_magic[1] = b'X';
    assert_eq!(function_containing(&wrong_magic, 0x1011), None);
    let mut symbols_beyond_the_end = file.clone();
    let headers_at = u64::from_le_bytes(file[0x28..0x30].try_into().unwrap()) as usize;
    let symtab_offset = headers_at + 64 + 24; // section 1's sh_offset
    symbols_beyond_the_end[symtab_offset..symtab_offset + 8]
        .copy_from_slice(&(file.len() as u64).to_le_bytes());
    assert_eq!(function_containing(&symbols_beyond_the_end, 0x1011), None);
}

fn shown(mangled: &str) -> String {
    format!("{}", Demangled(mangled))
}

#[test]
fn legacy_names_become_paths_without_their_hash() {
    assert_eq!(shown(REPORT), "kernel::panic::report");
    assert_eq!(
        shown("_ZN4core3ptr46drop_in_place$LT$alloc..vec..Vec$LT$u8$GT$$GT$17h0123456789abcdefE"),
        "core::ptr::drop_in_place<alloc::vec::Vec<u8>>"
    );
    assert_eq!(
        shown("_ZN6kernel5panic13stop_this_cpu17h0eb8c90f79c04383E.llvm.16555554137199176552"),
        "kernel::panic::stop_this_cpu"
    );
}

#[test]
fn v0_names_become_paths_without_crate_disambiguators() {
    assert_eq!(shown(KERNEL_MAIN), "kernel::kernel_main");
    assert_eq!(shown("_RNvNtCseBUlfiRr2wv_4core3fmt5write"), "core::fmt::write");
    assert_eq!(shown("_RNCNvNtCs1_6kernel3smp4init0B5_"), "kernel::smp::init::{closure#0}");
    assert_eq!(shown("_RNvMNtCs1_6kernel3smpNtB2_3Cpu5state"), "<kernel::smp::Cpu>::state");
    assert_eq!(
        shown("_RINvNtCs1_4core3ptr13drop_in_placeNtNtCs1_6kernel3smp3CpuE"),
        "core::ptr::drop_in_place::<kernel::smp::Cpu>"
    );
}

#[test]
fn names_that_are_not_rust_are_shown_as_they_are() {
    for name in ["memcpy", "_start", "_ZN3foo", "_RNvC", ""] {
        assert_eq!(shown(name), name);
    }
}
