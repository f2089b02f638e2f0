//! Where the tests are found: every module's [`kernel_tests!`] list puts one
//! [`TestGroup`] into the `kernel_tests` linker section, and the runner reads
//! the section back as an array between the linker's `__start_kernel_tests`
//! and `__stop_kernel_tests` symbols.
//!
//! The linker defines those two symbols for any output section whose name is
//! a C identifier (ld's and lld's "encapsulation symbols"); it concatenates
//! the pieces in the order it meets them, which depends on how the crate was
//! split into codegen units, so [`groups`] sorts them.
//!
//! Nothing names a piece, so two things keep it from being dropped.
//! `#[used(linker)]` marks its section `SHF_GNU_RETAIN`, which `--gc-sections`
//! must keep: a reference to `__start_kernel_tests` alone does not, under
//! lld's default `-z start-stop-gc` (with `#[used(compiler)]` every piece is
//! collected and the link fails on an undefined `__start_kernel_tests`; plain
//! `#[used]` sets the flag with the pinned toolchain, but only `used(linker)`
//! promises it). And the host
//! test `an_unknown_test_name_lists_the_available_tests` checks that the
//! kernel lists every test declared in the source, with its kind.
//!
//! This is the mechanism of Linux's initcalls and of the `linkme` crate,
//! written out because it takes a dozen lines.

use alloc::vec::Vec;

use spin::Once;

use super::KernelTest;

/// One module's tests, in the order its list gives them.
pub struct TestGroup {
    /// `module_path!()` of the list: the first sort key.
    pub module: &'static str,
    /// Where the list is in its file: orders two lists in one module.
    pub line: u32,
    pub tests: &'static [KernelTest],
}

/// Registers a module's tests with the runner: one `KernelTest` expression
/// each, in the order they should run. Use it once per module, beside the
/// tests (the module may stay private):
///
/// ```ignore
/// crate::kernel_tests![
///     KernelTest::new("heap_box_and_vec", heap_box_and_vec),
///     KernelTest::crash("crash_out_of_memory", crash_out_of_memory),
/// ];
/// ```
#[macro_export]
macro_rules! kernel_tests {
    ($($test:expr),+ $(,)?) => {
        const _: () = {
            // SAFETY: no other code or data uses this section name, so the
            // section holds nothing but `TestGroup`s, which is what
            // `testing::registry::section` reads it as.
            #[used(linker)]
            #[unsafe(link_section = "kernel_tests")]
            static GROUP: $crate::testing::TestGroup = $crate::testing::TestGroup {
                module: module_path!(),
                line: line!(),
                tests: &[$($test),+],
            };
        };
    };
}

// Declared as bytes: only their addresses are used, and a `TestGroup` is no
// C type.
unsafe extern "C" {
    static __start_kernel_tests: u8;
    static __stop_kernel_tests: u8;
}

/// The section's pieces, as the linker laid them out.
fn section() -> &'static [TestGroup] {
    let start = (&raw const __start_kernel_tests).cast::<TestGroup>();
    let stop = (&raw const __stop_kernel_tests).cast::<TestGroup>();
    // SAFETY: the linker puts both symbols around the one `kernel_tests`
    // output section, which holds only `TestGroup` statics (see
    // `kernel_tests!`), laid end to end without gaps because each one's size
    // is a multiple of its alignment; the statics are immutable and live for
    // the whole run.
    unsafe { core::slice::from_raw_parts(start, stop.offset_from_unsigned(start)) }
}

static SORTED: Once<Vec<&'static TestGroup>> = Once::new();

/// Every module's tests, ordered by module path and then by place in the file.
pub fn groups() -> impl Iterator<Item = &'static TestGroup> {
    SORTED
        .call_once(|| {
            let mut groups: Vec<&'static TestGroup> = section().iter().collect();
            groups.sort_by_key(|group| (group.module, group.line));
            check_names_are_unique(&groups);
            groups
        })
        .iter()
        .copied()
}

/// `test=NAME` runs the first test of that name: a second one would never run.
fn check_names_are_unique(groups: &[&'static TestGroup]) {
    let mut names: Vec<&str> =
        groups.iter().flat_map(|group| group.tests.iter().map(|test| test.name)).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        panic!("two kernel tests are named {}", pair[0]);
    }
}
