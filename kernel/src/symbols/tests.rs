//! Tests of the symboliser inside the kernel: demangling, and naming the kernel's own functions from its ELF image.

use super::*;
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
        shown == "kernel::symbols::tests::names_its_own_functions",
        "the function was named {shown}"
    );
    crate::ensure!(offset == 1, "offset {offset} instead of 1");
    Ok(())
}

crate::kernel_tests![
    KernelTest::new("symbols_demangle_legacy_names", demangles_legacy_names),
    KernelTest::new("symbols_name_kernel_functions", names_its_own_functions),
];
