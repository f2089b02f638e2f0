//! Starting a program: its ELF file's segments copied into a new address
//! space, a stack with its arguments, and a first thread that enters it.
//!
//! The file is checked and turned into a page-by-page plan first
//! (`elf_image`, host-tested), before anything is allocated, so a bad file
//! is a clear error for whoever asked to run it. The copying happens in the
//! new thread itself, in its own address space, so the stack is written
//! with the same user-copy routine a system call uses (its pages come on
//! demand, as any stack page does).

use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use x86_64::VirtAddr;
use x86_64::structures::paging::Page;

use super::access;
use super::elf_image::{self, LoadPlan, PagePlan};
use super::initial_stack::{self, aux};
use super::memory::{MemoryMap, PAGE_SIZE, STACK_TOP};
use super::process::Process;
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::fpu::UserRegisters;
use crate::arch::x86::gdt::{USER_CS, USER_SS};
use crate::mm::address_space::{Access, AddressSpace, USER_END, USER_START};
use crate::mm::{self, frame};

/// The environment every program gets.
const ENVIRONMENT: [&[u8]; 3] = [b"HOME=/", b"TERM=linux", b"PATH=/"];

/// Checks `file` and starts it as a new process named `name` with
/// arguments `argv` (argv[0] included).
pub fn spawn(name: &str, file: &'static [u8], argv: Vec<String>) -> Result<Arc<Process>, String> {
    let plan = elf_image::plan(file, USER_START, USER_END).map_err(|e| e.to_string())?;
    let process = Arc::new(Process::new(name, MemoryMap::new(), Arc::new(AddressSpace::new())));
    process.start_thread(UserRegisters::new(), false, 0, move |process| {
        load(process, &plan, file, &argv).map_err(|error| {
            log::warn!("user: cannot start '{}': {error}", process.name);
            127 // as a shell's "cannot execute"
        })
    });
    Ok(process)
}

/// Fills the running thread's address space from the plan; returns the
/// first user-mode context.
fn load(
    process: &Process,
    plan: &LoadPlan,
    file: &[u8],
    argv: &[String],
) -> Result<TrapFrame, String> {
    let mut memory = process.memory.lock();
    for page in plan.pages() {
        let access = access_of(&page);
        map_filled_page(&process.space, &page, file, access)?;
        memory.add_loaded(page.address, page.address + PAGE_SIZE, access);
    }
    drop(memory);
    let random = random_bytes();
    let auxiliary = [
        (aux::AT_PHDR, plan.phdr_address.unwrap_or(0)),
        (aux::AT_PHENT, plan.phent),
        (aux::AT_PHNUM, plan.phnum),
        (aux::AT_PAGESZ, PAGE_SIZE),
        (aux::AT_ENTRY, plan.entry),
        (aux::AT_UID, 0),
        (aux::AT_EUID, 0),
        (aux::AT_GID, 0),
        (aux::AT_EGID, 0),
        (aux::AT_HWCAP, 0),
        (aux::AT_CLKTCK, 100),
        (aux::AT_SECURE, 0),
    ];
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    let stack = initial_stack::build(STACK_TOP, &argv, &ENVIRONMENT, &auxiliary, random)
        .map_err(|e| e.to_string())?;
    access::write(stack.rsp, &stack.bytes).map_err(|_| "cannot write the initial stack")?;
    Ok(TrapFrame {
        rip: plan.entry,
        cs: USER_CS as u64,
        rflags: 0x202, // IF, and bit 1, which is always set
        rsp: stack.rsp,
        ss: USER_SS as u64,
        ..TrapFrame::default()
    })
}

fn access_of(page: &PagePlan) -> Access {
    Access { readable: page.readable, writable: page.writable, executable: page.executable }
}

/// A fresh frame with the page's bytes, mapped with its rights.
fn map_filled_page(
    space: &AddressSpace,
    page: &PagePlan,
    file: &[u8],
    access: Access,
) -> Result<(), String> {
    let frame = frame::allocate().ok_or("out of memory")?;
    // SAFETY: a fresh frame, reached through the physical-memory map.
    let bytes = unsafe { &mut *mm::phys_to_virt(frame.start_address()).as_mut_ptr::<[u8; 4096]>() };
    page.fill(file, bytes);
    // The contents before the entry that publishes them (see `memory`).
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    let at = Page::containing_address(VirtAddr::new(page.address));
    space.map_user(at, frame, access).map_err(|e| {
        // SAFETY: not mapped.
        unsafe { frame::free(frame) };
        alloc::format!("cannot map {:#x}: {e:?}", page.address)
    })
}

/// AT_RANDOM's 16 bytes, for musl's stack canary and pointer guard: from
/// RDRAND where the CPU has it, mixed with the time stamp counter.
fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let tsc = crate::time::now_ns()
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17 * i as u32 + 7);
        let hardware =
            x86_64::instructions::random::RdRand::new().and_then(|r| r.get_u64()).unwrap_or(0);
        chunk.copy_from_slice(&(tsc ^ hardware).to_le_bytes());
    }
    bytes
}
