//! In-kernel tests of user mode.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::arch::global_asm;

use x86_64::VirtAddr;
use x86_64::structures::paging::{Page, PhysFrame};

use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::gdt::{USER_CS, USER_SS};
use crate::arch::x86::{interrupts, syscall};
use crate::mm::address_space::{Access, AddressSpace};
use crate::mm::{self, frame};
use crate::sched::Builder;
use crate::smp;
use crate::sync::SpinLock;
use crate::testing::{KernelTest, TestResult};

// A user program in a few instructions: getpid, spin long enough for timer
// interrupts to arrive in user mode (each one a swapgs in and out), then
// exit with the pid as the status.
global_asm!(
    r#"
    .section .rodata.user_round_trip, "a"
    .global user_round_trip_code
    .hidden user_round_trip_code
    user_round_trip_code:
        mov eax, 39
        syscall
        mov edi, eax
        mov ecx, 20000000
    1:
        dec ecx
        jnz 1b
        mov eax, 60
        syscall
        ud2
    .global user_round_trip_end
    .hidden user_round_trip_end
    user_round_trip_end:

    // Writes to an address nothing maps: the page fault must end this
    // thread, not the kernel.
    .global user_bad_write_code
    .hidden user_bad_write_code
    user_bad_write_code:
        mov byte ptr [0x10], 1
        mov eax, 60
        xor edi, edi
        syscall
    .global user_bad_write_end
    .hidden user_bad_write_end
    user_bad_write_end:
    .text
    "#
);

/// How each bare ring-3 thread of these tests ended: (thread id, status).
static EXITS: SpinLock<Vec<(u64, i32)>> = SpinLock::new(Vec::new());

/// Called by the user layer when a thread without a process exits or faults.
pub(super) fn record_exit(thread: u64, status: i32) {
    EXITS.lock_irqsave().push((thread, status));
}

fn exit_status(id: u64) -> Option<i32> {
    EXITS.lock_irqsave().iter().find(|(thread, _)| *thread == id).map(|&(_, status)| status)
}

const CODE_AT: u64 = 0x40_0000;
const STACK_TOP: u64 = 0x7fff_0000_0000;

unsafe extern "C" {
    static user_round_trip_code: u8;
    static user_round_trip_end: u8;
    static user_bad_write_code: u8;
    static user_bad_write_end: u8;
}

/// The bytes between two labels of the programs above.
fn program(start: *const u8, end: *const u8) -> &'static [u8] {
    // SAFETY: the labels delimit one program above, in read-only data.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}

/// A space with `bytes` at CODE_AT and one stack page below STACK_TOP.
fn make_space(bytes: &[u8]) -> (Arc<AddressSpace>, [PhysFrame; 2]) {
    let space = Arc::new(AddressSpace::new());
    let code = frame::allocate().expect("no frame for the code");
    let stack = frame::allocate().expect("no frame for the stack");
    // SAFETY: `code` is a fresh frame, reached through the kernel's map of
    // physical memory; the program is shorter than a page.
    unsafe {
        let to = mm::phys_to_virt(code.start_address()).as_mut_ptr::<u8>();
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), to, bytes.len());
    }
    let page = |address: u64| Page::containing_address(VirtAddr::new(address));
    let code_access = Access { readable: true, writable: false, executable: true };
    let stack_access = Access { readable: true, writable: true, executable: false };
    space.map_user(page(CODE_AT), code, code_access).expect("mapping the code");
    space.map_user(page(STACK_TOP - 4096), stack, stack_access).expect("mapping the stack");
    (space, [code, stack])
}

/// Runs `bytes` in ring 3 on CPU `cpu` until its thread ends; returns the
/// thread's id and the status it ended with.
fn run_in_user_mode(bytes: &[u8], cpu: usize) -> (u64, Option<i32>) {
    let (space, frames) = make_space(bytes);
    let thread = Builder::new("user-test").pin(cpu).address_space(space.clone()).spawn(|| {
        let frame = TrapFrame {
            rip: CODE_AT,
            cs: USER_CS as u64,
            rflags: 0x202, // IF, and bit 1, which is always set
            rsp: STACK_TOP,
            ss: USER_SS as u64,
            ..TrapFrame::default()
        };
        interrupts::disable();
        // SAFETY: the frame is a user-mode context in this thread's space
        // (code and stack mapped above); nothing on this stack is needed
        // afterwards: the thread ends in `exit`, or is killed.
        unsafe { syscall::enter_user(&frame) }
    });
    let id = thread.thread.id;
    thread.join();
    for (address, frame) in [(CODE_AT, frames[0]), (STACK_TOP - 4096, frames[1])] {
        let page = Page::containing_address(VirtAddr::new(address));
        space.unmap(page);
        crate::tlb::shootdown(&space, page.start_address(), 1);
        // SAFETY: unmapped, and flushed wherever the space is loaded.
        unsafe { frame::free(frame) };
    }
    (id, exit_status(id))
}

/// Runs a program in ring 3 on every CPU in turn: `getpid` must return the
/// thread's id, `exit` must end the thread with it, and timer interrupts
/// taken in user mode along the way must come and go (swapgs) unharmed.
fn user_mode_round_trip() -> TestResult {
    let mut failures = Vec::new();
    let traps_before = crate::arch::x86::idt::traps_from_user_mode();
    let bytes = program(&raw const user_round_trip_code, &raw const user_round_trip_end);
    for cpu in smp::cpus() {
        let (id, status) = run_in_user_mode(bytes, cpu.number);
        if status.map(|s| s as u64) != Some(id) {
            failures.push(alloc::format!(
                "cpu{}: thread {id} exited with {status:?}, expected its id",
                cpu.number
            ));
        }
    }
    // The spin is long enough for the timer to interrupt it, in user mode.
    if crate::arch::x86::idt::traps_from_user_mode() == traps_before {
        failures.push("no interrupt arrived while a CPU was in user mode".into());
    }
    if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
}

/// A user-mode write to an address nothing maps ends that thread (status
/// 128 + SIGSEGV, as a shell shows it), and the kernel goes on.
fn user_fault_ends_only_the_thread() -> TestResult {
    let bytes = program(&raw const user_bad_write_code, &raw const user_bad_write_end);
    let last = smp::cpus().len() - 1;
    match run_in_user_mode(bytes, last) {
        (_, Some(139)) => Ok(()),
        (id, status) => Err(alloc::format!("thread {id} ended with {status:?}, expected 139")),
    }
}

/// Runs `touch` in a kernel thread whose address space has a user page at
/// CODE_AT holding a `ret`: the crash tests below touch it from ring 0.
fn touch_a_user_page_from_the_kernel(touch: fn(u64)) -> TestResult {
    let (space, _frames) = make_space(&[0xc3]); // ret
    let thread =
        Builder::new("user-page-toucher").address_space(space).spawn(move || touch(CODE_AT));
    thread.join();
    Err("the kernel touched a user page and nothing faulted".into())
}

/// With SMAP, a kernel read of a user page outside the user-copy routine
/// faults (a page fault with the protection bit set).
fn crash_smap() -> TestResult {
    if !crate::arch::x86::fpu::smap_enabled() {
        return Err("this CPU has no SMAP".into());
    }
    touch_a_user_page_from_the_kernel(|address| {
        // SAFETY: deliberately wrong: the read must fault under SMAP.
        let byte = unsafe { core::ptr::read_volatile(address as *const u8) };
        log::error!("read {byte:#x} from a user page without a fault");
    })
}

/// With SMEP, the kernel executing a user page faults (an instruction fetch
/// with the protection bit set).
fn crash_smep() -> TestResult {
    touch_a_user_page_from_the_kernel(|address| {
        // SAFETY: deliberately wrong: the call must fault under SMEP.
        let code: extern "C" fn() = unsafe { core::mem::transmute(address as *const ()) };
        code();
        log::error!("ran a user page in ring 0 without a fault");
    })
}

crate::kernel_tests![
    KernelTest::crash("crash_smap", crash_smap),
    KernelTest::crash("crash_smep", crash_smep),
    KernelTest::new("user_mode_round_trip", user_mode_round_trip),
    KernelTest::new("user_fault_ends_only_the_thread", user_fault_ends_only_the_thread),
];
