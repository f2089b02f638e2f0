//! The interrupt descriptor table: every CPU exception is reported and ends in
//! a panic; each local APIC vector's stub hands its number to the interrupt
//! layer (`irq`), which runs the handler a subsystem registered for it.
//!
//! Vectors 0-31 are the architecture's exceptions (SDM Vol. 3A "Exception and
//! Interrupt Reference"). The legacy PIC is remapped to 0x20-0x2f and masked
//! (see `pic`). The APIC vectors are numbered in `vectors`.
//!
//! Every vector enters through its assembly stub in `entry`, which saves the
//! registers and calls [`trap_dispatch`] here. This module knows no
//! subsystem: the layer above connects itself with [`set_interrupt_entry`]
//! and [`set_nmi_entry`] before interrupts are enabled.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::{Lazy, Once};
use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{Entry, InterruptDescriptorTable, PageFaultErrorCode};

use super::entry::{self, HAS_ERROR_CODE, TrapFrame};
use super::exception::{self, Described, panic_with as exception_panic};
use super::gdt::{DOUBLE_FAULT_IST_INDEX, MACHINE_CHECK_IST_INDEX, NMI_IST_INDEX};
use super::user_copy::{self, OnFault};
use super::vectors::*;
use x86_64::registers::rflags::RFlags;

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(build_idt);

static INTERRUPT_ENTRY: Once<fn(vector: u8)> = Once::new();

/// An exception in user mode, as the panic report would describe it.
pub struct UserFault<'a> {
    pub what: &'a str,
    /// For a page fault: the address (CR2) and the error code's meaning.
    pub page_fault: Option<(u64, PageFaultErrorCode)>,
}

/// What an exception in user mode does: the process's business, not the
/// kernel's. The user layer resolves it (a demand-zero page: the handler
/// returns and the instruction runs again) or ends the thread (it does not
/// return).
pub type UserFaultHandler = fn(frame: &mut TrapFrame, fault: UserFault);

/// What a page fault inside a user copy (`user_copy`) at `address` does:
/// resolve it (true: the copy goes on) or not (the copy fails).
pub type UserMemoryResolver = fn(address: u64, write: bool) -> bool;

static USER_FAULT: Once<UserFaultHandler> = Once::new();
static USER_MEMORY: Once<UserMemoryResolver> = Once::new();

/// Registers what an exception taken in user mode does; without it, such
/// an exception is reported as a kernel panic.
pub fn set_user_fault_handler(handler: UserFaultHandler) {
    assert!(USER_FAULT.get().is_none(), "idt: the user fault handler is registered twice");
    USER_FAULT.call_once(|| handler);
}

/// Registers who resolves page faults in user copies; without it, each such
/// fault just fails the copy.
pub fn set_user_memory_resolver(resolver: UserMemoryResolver) {
    assert!(USER_MEMORY.get().is_none(), "idt: the user memory resolver is registered twice");
    USER_MEMORY.call_once(|| resolver);
}

/// How many interrupts and exceptions arrived while a CPU was in user mode
/// (each one a `swapgs` in and out): for the tests.
static TRAPS_FROM_USER_MODE: AtomicU64 = AtomicU64::new(0);

pub fn traps_from_user_mode() -> u64 {
    TRAPS_FROM_USER_MODE.load(Ordering::Relaxed)
}
static NMI_ENTRY: Once<fn(interrupted_rip: u64) -> bool> = Once::new();

/// Where every APIC vector's stub goes, with its vector number.
pub fn set_interrupt_entry(entry: fn(vector: u8)) {
    // Registered once, at boot: a second entry would be silently ignored.
    assert!(INTERRUPT_ENTRY.get().is_none(), "idt: the interrupt entry is registered twice");
    INTERRUPT_ENTRY.call_once(|| entry);
}

/// Where an NMI goes first; it returns whether someone claimed the NMI, and an
/// unclaimed one is reported as an unexpected exception.
pub fn set_nmi_entry(entry: fn(interrupted_rip: u64) -> bool) {
    assert!(NMI_ENTRY.get().is_none(), "idt: the NMI entry is registered twice");
    NMI_ENTRY.call_once(|| entry);
}

/// Loads the (shared) IDT on this CPU.
pub fn init_this_cpu() {
    entry::set_trap_handler(trap_dispatch);
    IDT.load();
}

/// Whether this CPU has loaded the kernel's IDT (an AP in its first
/// instructions has not: any interrupt would then triple-fault it).
pub fn loaded_here() -> bool {
    let loaded = x86_64::instructions::tables::sidt();
    // (The boot CPU built and loaded the table long before anything can panic on an AP.)
    loaded.base.as_u64() == &*IDT as *const InterruptDescriptorTable as u64
}

/// Where every stub of `entry` goes, with the saved registers: the vector
/// decides what happens. Runs with interrupts off (every gate is an
/// interrupt gate).
pub(super) extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    let from_user = frame.cs & 3 == 3;
    if from_user {
        TRAPS_FROM_USER_MODE.fetch_add(1, Ordering::Relaxed);
    }
    // NMI, #DF and #MC run on their own IST stacks and are the machine's,
    // not the program's: they never end a user thread nor switch away (a
    // switch would leave the thread's saved stack pointer on the IST stack,
    // which the next NMI reuses).
    let on_ist_stack = matches!(vector, 2 | 8 | 18);
    match vector {
        0..=31 if from_user && !on_ist_stack && USER_FAULT.get().is_some() => {
            user_fault(frame, *USER_FAULT.get().unwrap())
        }
        2 => nmi(frame),
        8 => double_fault(frame),
        14 => page_fault(frame),
        0..=31 => match EXCEPTIONS.iter().find(|e| e.0 == vector) {
            Some(&(_, mnemonic, description)) => exception_panic(
                vector,
                mnemonic,
                description,
                HAS_ERROR_CODE.contains(&vector).then_some(frame.error_code),
                frame,
            ),
            None => exception_panic(vector, "#??", "reserved exception", None, frame),
        },
        SPURIOUS_VECTOR => {} // not acknowledged with an EOI (SDM Vol. 3A 11.9)
        _ => match INTERRUPT_ENTRY.get() {
            Some(entry) => entry(vector),
            // Nothing above is connected yet: acknowledge, so the vector does
            // not stay in service.
            None => super::lapic::end_of_interrupt(),
        },
    }
    if from_user && !on_ist_stack {
        entry::returning_to_user(frame);
    }
}

/// The exceptions that have nothing to do but report: vector, mnemonic,
/// description (SDM Vol. 3A 6.15, "Exception and Interrupt Reference").
const EXCEPTIONS: [(u8, &str, &str); 20] = [
    (0, "#DE", "divide error"),
    (1, "#DB", "debug exception"),
    (3, "#BP", "breakpoint"),
    (4, "#OF", "overflow"),
    (5, "#BR", "BOUND range exceeded"),
    (6, "#UD", "invalid opcode"),
    (7, "#NM", "device not available"),
    (10, "#TS", "invalid TSS"),
    (11, "#NP", "segment not present"),
    (12, "#SS", "stack-segment fault"),
    (13, "#GP", "general protection fault"),
    (16, "#MF", "x87 floating-point error"),
    (17, "#AC", "alignment check"),
    (18, "#MC", "machine check"),
    (19, "#XM", "SIMD floating-point exception"),
    (20, "#VE", "virtualization exception"),
    (21, "#CP", "control protection exception"),
    (28, "#HV", "hypervisor injection exception"),
    (29, "#VC", "VMM communication exception"),
    (30, "#SX", "security exception"),
];

/// Hands an exception from user mode to the registered handler, described
/// as the panic report would describe it.
fn user_fault(frame: &mut TrapFrame, handler: UserFaultHandler) {
    let vector = frame.vector as u8;
    let fault = if vector == 14 {
        let address = Cr2::read_raw();
        let code = PageFaultErrorCode::from_bits_truncate(frame.error_code);
        UserFault { what: describe_page_fault(code), page_fault: Some((address, code)) }
    } else {
        let what = EXCEPTIONS.iter().find(|e| e.0 == vector).map_or("reserved exception", |e| e.2);
        UserFault { what, page_fault: None }
    };
    handler(frame, fault)
}

/// A kernel page fault inside a user copy: resolved, or the copy fails
/// (see `user_copy`). Resolving may sleep, so it runs with interrupts on
/// when the copy had them on (copies that may resolve always do).
fn user_copy_fault(frame: &mut TrapFrame, on_fault: OnFault, address: u64) {
    let write = PageFaultErrorCode::from_bits_truncate(frame.error_code)
        .contains(PageFaultErrorCode::CAUSED_BY_WRITE);
    let resolved = on_fault == OnFault::Resolve
        && frame.rflags & RFlags::INTERRUPT_FLAG.bits() != 0
        && USER_MEMORY.get().is_some_and(|resolve| {
            super::interrupts::enable();
            let resolved = resolve(address, write);
            super::interrupts::disable();
            resolved
        });
    if !resolved {
        user_copy::fail_copy(frame);
    }
}

fn page_fault(frame: &mut TrapFrame) {
    // First: a fault in what follows would overwrite CR2.
    let address = Cr2::read_raw();
    if let Some(on_fault) = user_copy::faulted_in_copy(frame)
        && address < entry::USER_END
    {
        return user_copy_fault(frame, on_fault, address);
    }
    let error_code = PageFaultErrorCode::from_bits_truncate(frame.error_code);
    exception::save(14, Some(frame.error_code), frame);
    panic!(
        "page fault (#PF, vector 14) accessing {:#x} ({}), error code {:#x}, at RIP {:#x}, RSP {:#x}",
        address,
        describe_kernel_page_fault(error_code, address),
        frame.error_code,
        frame.rip,
        frame.rsp,
    );
}

/// The error code's bits in words (SDM Vol. 3A 4.7 "Page-Fault Exceptions").
fn describe_page_fault(code: PageFaultErrorCode) -> &'static str {
    let present = code.contains(PageFaultErrorCode::PROTECTION_VIOLATION);
    let write = code.contains(PageFaultErrorCode::CAUSED_BY_WRITE);
    let fetch = code.contains(PageFaultErrorCode::INSTRUCTION_FETCH);
    match (present, write, fetch) {
        (false, _, true) => "instruction fetch from a page that is not present",
        (false, true, _) => "write to a page that is not present",
        (false, false, _) => "read from a page that is not present",
        (true, _, true) => "instruction fetch from a non-executable page",
        (true, true, _) => "write to a read-only page",
        (true, false, _) => "read denied by the page's protection",
    }
}

/// As `describe_page_fault`, for a fault in ring 0: a protection fault on a
/// user address there is SMEP's or SMAP's doing (SDM Vol. 3A 4.6).
fn describe_kernel_page_fault(code: PageFaultErrorCode, address: u64) -> &'static str {
    let present = code.contains(PageFaultErrorCode::PROTECTION_VIOLATION);
    let fetch = code.contains(PageFaultErrorCode::INSTRUCTION_FETCH);
    match (present && address < entry::USER_END, fetch) {
        (true, true) => "instruction fetch from a user page: SMEP",
        (true, false) => "access to a user page outside a user copy: SMAP",
        (false, _) => describe_page_fault(code),
    }
}

/// A double fault whose CR2 is in the running thread's stack guard page is a
/// kernel stack overflow: the page fault could not push its frame.
fn double_fault(frame: &TrapFrame) -> ! {
    let address = Cr2::read_raw();
    if let Some(guard) = exception::overflowed_stack(address) {
        exception::save(8, Some(frame.error_code), frame);
        panic!(
            "kernel stack overflow in {}: double fault (#DF, vector 8, on its IST stack) after touching the guard page at {address:#x}, RIP {:#x}",
            Described(guard.describe_owner),
            frame.rip
        );
    }
    exception_panic(8, "#DF", "double fault (on its IST stack)", Some(frame.error_code), frame);
}

/// The NMI chain registered above decides who the NMI was for; one nobody
/// claims is reported.
fn nmi(frame: &TrapFrame) {
    if NMI_ENTRY.get().is_some_and(|entry| entry(frame.rip)) {
        return;
    }
    exception_panic(2, "NMI", "non-maskable interrupt", None, frame);
}

/// Every vector that has a use gets its stub: the exceptions, NMI, the APIC
/// vectors. The others stay absent, so a stray interrupt on one of them is a
/// #NP naming it (its error code holds the vector).
fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    let stub = |vector: u8| VirtAddr::new(entry::stub_address(vector));
    let exceptions = EXCEPTIONS.iter().map(|e| e.0).chain([2, 8, 14]);
    for vector in exceptions.filter(|&v| !entry::PARANOID.contains(&v)) {
        // SAFETY: (as for every `set_handler_addr` below) the address is the
        // stub `entry` built for this very vector, which saves the frame the
        // CPU pushes for it and returns with `iretq`.
        unsafe { exception_entry(&mut idt, vector).set_handler_addr(stub(vector)) };
    }
    // SAFETY: as above; each IST index names a stack that gdt::init_this_cpu()
    // put in this CPU's TSS before the IDT is loaded, and no other vector uses it.
    unsafe {
        idt.double_fault.set_handler_addr(stub(8)).set_stack_index(DOUBLE_FAULT_IST_INDEX);
        idt.non_maskable_interrupt.set_handler_addr(stub(2)).set_stack_index(NMI_IST_INDEX);
        idt.machine_check.set_handler_addr(stub(18)).set_stack_index(MACHINE_CHECK_IST_INDEX);
    }
    for vector in [
        TIMER_VECTOR,
        SELF_TEST_VECTOR,
        WAKE_VECTOR,
        CRASH_TEST_VECTOR,
        CALL_FUNCTION_VECTOR,
        RESCHEDULE_VECTOR,
        SPURIOUS_VECTOR,
    ] {
        // SAFETY: as above.
        unsafe { idt[vector].set_handler_addr(stub(vector)) };
    }
    idt
}

/// The IDT entry of exception `vector` (the x86_64 crate names each one).
fn exception_entry(idt: &mut InterruptDescriptorTable, vector: u8) -> &mut Entry<()> {
    // The crate types each exception's entry by its handler's signature;
    // with stubs given by address they are all alike, so view them as such.
    let entry: *mut Entry<()> = match vector {
        0 => (&mut idt.divide_error as *mut Entry<_>).cast(),
        1 => (&mut idt.debug as *mut Entry<_>).cast(),
        3 => (&mut idt.breakpoint as *mut Entry<_>).cast(),
        4 => (&mut idt.overflow as *mut Entry<_>).cast(),
        5 => (&mut idt.bound_range_exceeded as *mut Entry<_>).cast(),
        6 => (&mut idt.invalid_opcode as *mut Entry<_>).cast(),
        7 => (&mut idt.device_not_available as *mut Entry<_>).cast(),
        10 => (&mut idt.invalid_tss as *mut Entry<_>).cast(),
        11 => (&mut idt.segment_not_present as *mut Entry<_>).cast(),
        12 => (&mut idt.stack_segment_fault as *mut Entry<_>).cast(),
        13 => (&mut idt.general_protection_fault as *mut Entry<_>).cast(),
        14 => (&mut idt.page_fault as *mut Entry<_>).cast(),
        16 => (&mut idt.x87_floating_point as *mut Entry<_>).cast(),
        17 => (&mut idt.alignment_check as *mut Entry<_>).cast(),
        19 => (&mut idt.simd_floating_point as *mut Entry<_>).cast(),
        20 => (&mut idt.virtualization as *mut Entry<_>).cast(),
        21 => (&mut idt.cp_protection_exception as *mut Entry<_>).cast(),
        28 => (&mut idt.hv_injection_exception as *mut Entry<_>).cast(),
        29 => (&mut idt.vmm_communication_exception as *mut Entry<_>).cast(),
        30 => (&mut idt.security_exception as *mut Entry<_>).cast(),
        _ => unreachable!("idt: no exception entry for vector {vector}"),
    };
    // SAFETY: every `Entry<F>` has the same layout (F is a marker only), and
    // the pointer comes from a unique borrow of `idt`.
    unsafe { &mut *entry }
}
