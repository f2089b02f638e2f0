//! The kernel's pure logic, built for the host so that `cargo test` checks it
//! in milliseconds, without QEMU.
//!
//! Each module below is a kernel source file itself, included with `#[path]`:
//! the kernel and these tests compile the same text. That works for files
//! that need nothing from the kernel crate (no `crate::` paths), which is why
//! their in-kernel tests and kernel glue live in sibling files. `runqueue`,
//! `priority` and `thread` sit side by side as in the kernel's `sched`, so
//! `super::thread` resolves the same way. The tests are in tests/*.rs.

extern crate alloc;

/// Symbol lookup and demangling (kernel `symbols`).
#[path = "../../kernel/src/symbols/elf_functions.rs"]
pub mod elf_functions;

/// xAPIC or x2APIC (kernel `arch::x86::apic_mode`), which the MADT reader
/// names as `super::apic_mode`.
#[path = "../../kernel/src/arch/x86/apic_mode.rs"]
pub mod apic_mode;

/// The MADT reader (kernel `acpi::madt`).
#[path = "../../kernel/src/acpi/madt.rs"]
pub mod madt;

/// CPU sets (kernel `percpu::cpu_set`).
#[path = "../../kernel/src/percpu/cpu_set.rs"]
pub mod cpu_set;

/// Thread priorities (kernel `sched::priority`).
#[path = "../../kernel/src/sched/priority.rs"]
pub mod priority;

/// The run queue (kernel `sched::runqueue`). The kernel keeps it private, so
/// clippy asks for a `Default` only here, where it is public for the tests.
#[allow(clippy::new_without_default)]
#[path = "../../kernel/src/sched/runqueue.rs"]
pub mod runqueue;

/// The ramdisk's cpio newc archives, read and written (kernel
/// `user::archive`; boot/build.rs includes the same file for the writer).
#[path = "../../kernel/src/user/archive.rs"]
pub mod archive;

/// A program's first stack: arguments, environment, auxiliary vector
/// (kernel `user::initial_stack`).
#[path = "../../kernel/src/user/initial_stack.rs"]
pub mod initial_stack;

/// A static ELF executable checked and turned into pages to map (kernel
/// `user::elf_image`).
#[path = "../../kernel/src/user/elf_image.rs"]
pub mod elf_image;

pub mod thread {
    //! A stand-in for the kernel's `sched::thread`, whose `Thread` owns a
    //! stack and an address space: the run queue reads nothing of a thread
    //! but its priority. It re-exports the real `Priority`, as the kernel's does.

    pub use super::priority::Priority;

    #[derive(Debug)]
    pub struct Thread {
        pub name: &'static str,
        pub priority: Priority,
    }

    impl Thread {
        /// As the kernel's accessor (its priority is an atomic there).
        pub fn priority(&self) -> Priority {
            self.priority
        }
    }
}
