//! The interrupt descriptor table: every CPU exception is reported and ends in
//! a panic; each local APIC vector's stub hands its number to the interrupt
//! layer (`irq`), which runs the handler a subsystem registered for it.
//!
//! Vectors 0-31 are the architecture's exceptions (SDM Vol. 3A 6.3, Table 6-1
//! "Protected-Mode Exceptions and Interrupts"). The legacy PIC is remapped to
//! 0x20-0x2f and masked (see `pic`). The APIC vectors sit at the top, as in
//! Linux (arch/x86/include/asm/irq_vectors.h): a higher vector has a higher
//! priority class (SDM Vol. 3A 11.8.3 "Interrupt, Task, and Processor Priority").
//!
//! This module knows no subsystem: the layer above connects itself with
//! [`set_interrupt_entry`] and [`set_nmi_entry`] before interrupts are enabled.

use spin::{Lazy, Once};
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use super::exception::{self, Described, panic_with as exception_panic};
use super::gdt::{DOUBLE_FAULT_IST_INDEX, MACHINE_CHECK_IST_INDEX, NMI_IST_INDEX};

/// The local APIC timer (Linux: LOCAL_TIMER_VECTOR).
pub const TIMER_VECTOR: u8 = 0xec;
/// A vector tests send to check that a CPU answers IPIs.
pub const SELF_TEST_VECTOR: u8 = 0xf0;
/// Runs the cross-CPU calls queued for this CPU (Linux: CALL_FUNCTION_VECTOR).
pub const CALL_FUNCTION_VECTOR: u8 = 0xfc;
/// Asks a CPU to reschedule: a thread that outranks its current one was woken
/// for it (Linux: RESCHEDULE_VECTOR).
pub const RESCHEDULE_VECTOR: u8 = 0xfd;
/// Makes the other CPUs misbehave on purpose for the panic crash tests (whose
/// code registers its handler).
pub const CRASH_TEST_VECTOR: u8 = 0xf3;
/// Wakes a CPU from `hlt` and does nothing else: bring-up uses it so that
/// waiting CPUs can sleep instead of spinning.
pub const WAKE_VECTOR: u8 = 0xf2;
/// Where the local APIC sends interrupts it has to drop (SDM Vol. 3A 11.9 "Spurious Interrupt").
pub const SPURIOUS_VECTOR: u8 = 0xff;

static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(build_idt);

static INTERRUPT_ENTRY: Once<fn(vector: u8)> = Once::new();
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
    IDT.load();
}

/// Whether this CPU has loaded the kernel's IDT (an AP in its first
/// instructions has not: any interrupt would then triple-fault it).
pub fn loaded_here() -> bool {
    let loaded = x86_64::instructions::tables::sidt();
    // (The boot CPU built and loaded the table long before anything can panic on an AP.)
    loaded.base.as_u64() == &*IDT as *const InterruptDescriptorTable as u64
}

macro_rules! exception_handler {
    ($name:ident, $vector:expr, $mnemonic:expr, $description:expr) => {
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame) {
            exception_panic($vector, $mnemonic, $description, None, &frame);
        }
    };
    ($name:ident, $vector:expr, $mnemonic:expr, $description:expr, error_code) => {
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame, error_code: u64) {
            exception_panic($vector, $mnemonic, $description, Some(error_code), &frame);
        }
    };
}

exception_handler!(divide_error, 0, "#DE", "divide error");
exception_handler!(debug, 1, "#DB", "debug exception");
exception_handler!(breakpoint, 3, "#BP", "breakpoint");
exception_handler!(overflow, 4, "#OF", "overflow");
exception_handler!(bound_range, 5, "#BR", "BOUND range exceeded");
exception_handler!(invalid_opcode, 6, "#UD", "invalid opcode");
exception_handler!(device_not_available, 7, "#NM", "device not available");
exception_handler!(invalid_tss, 10, "#TS", "invalid TSS", error_code);
exception_handler!(segment_not_present, 11, "#NP", "segment not present", error_code);
exception_handler!(stack_segment, 12, "#SS", "stack-segment fault", error_code);
exception_handler!(general_protection, 13, "#GP", "general protection fault", error_code);
exception_handler!(x87_floating_point, 16, "#MF", "x87 floating-point error");
exception_handler!(alignment_check, 17, "#AC", "alignment check", error_code);
exception_handler!(simd_floating_point, 19, "#XM", "SIMD floating-point exception");
exception_handler!(virtualization, 20, "#VE", "virtualization exception");
exception_handler!(control_protection, 21, "#CP", "control protection exception", error_code);
exception_handler!(hv_injection, 28, "#HV", "hypervisor injection exception");
exception_handler!(vmm_communication, 29, "#VC", "VMM communication exception", error_code);
exception_handler!(security, 30, "#SX", "security exception", error_code);

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, error_code: PageFaultErrorCode) {
    let address = Cr2::read_raw();
    exception::save(14, Some(error_code.bits()), &frame);
    panic!(
        "page fault (#PF, vector 14) accessing {:#x} ({}), error code {:#x}, at RIP {:#x}, RSP {:#x}",
        address,
        describe_page_fault(error_code),
        error_code.bits(),
        frame.instruction_pointer.as_u64(),
        frame.stack_pointer.as_u64(),
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

/// A double fault whose CR2 is in the running thread's stack guard page is a
/// kernel stack overflow: the page fault could not push its frame.
extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, error_code: u64) -> ! {
    let address = Cr2::read_raw();
    if let Some(guard) = exception::overflowed_stack(address) {
        exception::save(8, Some(error_code), &frame);
        panic!(
            "kernel stack overflow in {}: double fault (#DF, vector 8, on its IST stack) after touching the guard page at {address:#x}, RIP {:#x}",
            Described(guard.describe_owner),
            frame.instruction_pointer.as_u64()
        );
    }
    exception_panic(8, "#DF", "double fault (on its IST stack)", Some(error_code), &frame);
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    exception_panic(18, "#MC", "machine check", None, &frame);
}

/// The NMI chain registered above decides who the NMI was for; one nobody
/// claims is reported.
extern "x86-interrupt" fn nmi(frame: InterruptStackFrame) {
    let rip = frame.instruction_pointer.as_u64();
    if NMI_ENTRY.get().is_some_and(|entry| entry(rip)) {
        return;
    }
    exception_panic(2, "NMI", "non-maskable interrupt", None, &frame);
}

/// The stub of APIC vector `VECTOR`: one instance per vector, since the CPU
/// does not say which vector it took.
extern "x86-interrupt" fn apic_interrupt<const VECTOR: u8>(_frame: InterruptStackFrame) {
    match INTERRUPT_ENTRY.get() {
        Some(entry) => entry(VECTOR),
        // Nothing above is connected yet: acknowledge, so the vector does not
        // stay in service.
        None => super::lapic::end_of_interrupt(),
    }
}

/// A spurious interrupt is not acknowledged with an EOI (SDM Vol. 3A 11.9).
extern "x86-interrupt" fn spurious_interrupt(_frame: InterruptStackFrame) {}

fn build_idt() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    idt.divide_error.set_handler_fn(divide_error);
    idt.debug.set_handler_fn(debug);
    idt.breakpoint.set_handler_fn(breakpoint);
    idt.overflow.set_handler_fn(overflow);
    idt.bound_range_exceeded.set_handler_fn(bound_range);
    idt.invalid_opcode.set_handler_fn(invalid_opcode);
    idt.device_not_available.set_handler_fn(device_not_available);
    idt.invalid_tss.set_handler_fn(invalid_tss);
    idt.segment_not_present.set_handler_fn(segment_not_present);
    idt.stack_segment_fault.set_handler_fn(stack_segment);
    idt.general_protection_fault.set_handler_fn(general_protection);
    idt.page_fault.set_handler_fn(page_fault);
    idt.x87_floating_point.set_handler_fn(x87_floating_point);
    idt.alignment_check.set_handler_fn(alignment_check);
    idt.simd_floating_point.set_handler_fn(simd_floating_point);
    idt.virtualization.set_handler_fn(virtualization);
    idt.cp_protection_exception.set_handler_fn(control_protection);
    idt.hv_injection_exception.set_handler_fn(hv_injection);
    idt.vmm_communication_exception.set_handler_fn(vmm_communication);
    idt.security_exception.set_handler_fn(security);
    // SAFETY: each IST index names a stack that gdt::init_this_cpu() put in this
    // CPU's TSS before the IDT is loaded, and no other vector uses it.
    unsafe {
        idt.double_fault.set_handler_fn(double_fault).set_stack_index(DOUBLE_FAULT_IST_INDEX);
        idt.non_maskable_interrupt.set_handler_fn(nmi).set_stack_index(NMI_IST_INDEX);
        idt.machine_check.set_handler_fn(machine_check).set_stack_index(MACHINE_CHECK_IST_INDEX);
    }
    idt[TIMER_VECTOR].set_handler_fn(apic_interrupt::<TIMER_VECTOR>);
    idt[SELF_TEST_VECTOR].set_handler_fn(apic_interrupt::<SELF_TEST_VECTOR>);
    idt[WAKE_VECTOR].set_handler_fn(apic_interrupt::<WAKE_VECTOR>);
    idt[CRASH_TEST_VECTOR].set_handler_fn(apic_interrupt::<CRASH_TEST_VECTOR>);
    idt[CALL_FUNCTION_VECTOR].set_handler_fn(apic_interrupt::<CALL_FUNCTION_VECTOR>);
    idt[RESCHEDULE_VECTOR].set_handler_fn(apic_interrupt::<RESCHEDULE_VECTOR>);
    idt[SPURIOUS_VECTOR].set_handler_fn(spurious_interrupt);
    idt
}
