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

/// A function's (mangled) name and how far into it `address` lies.
pub fn lookup(address: u64) -> Option<(&'static str, u64)> {
    let elf = ELF.get()?;
    elf_functions::function_containing(elf.file, address.checked_sub(elf.image_offset)?)
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
        ("_RNCNvNtCs1_6kernel3smp4init0B5_", "kernel::smp::init::{closure#0}"),
        (
            "_RINvNtCs1_4core3ptr13drop_in_placeNtB2_3FooE",
            "core::ptr::drop_in_place::<core::ptr::Foo>",
        ),
        ("_RNvMNtCs1_6kernel3smpNtB2_3Cpu5state", "<kernel::smp::Cpu>::state"),
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
