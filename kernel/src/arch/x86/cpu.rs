//! CPU identification (CPUID), the time-stamp counter, and halting.

use core::arch::asm;

use core::arch::x86_64::{__cpuid, __cpuid_count, _rdtsc, CpuidResult};

pub fn cpuid(leaf: u32) -> CpuidResult {
    // CPUID exists on every x86_64 CPU; an unsupported leaf returns the data
    // of the highest basic leaf rather than faulting.
    __cpuid(leaf)
}

pub fn cpuid_subleaf(leaf: u32, subleaf: u32) -> CpuidResult {
    __cpuid_count(leaf, subleaf)
}

pub fn max_basic_leaf() -> u32 {
    cpuid(0).eax
}

pub fn max_extended_leaf() -> u32 {
    cpuid(0x8000_0000).eax
}

/// CPUID.01H:ECX[21] (SDM Vol. 3A, "Detecting and Enabling x2APIC Mode").
pub fn has_x2apic() -> bool {
    cpuid(1).ecx & (1 << 21) != 0
}

/// CPUID.80000007H:EDX[8]: the TSC ticks at a constant rate in every power state
/// (SDM Vol. 3B, "Time-Stamp Counter", invariant TSC).
pub fn has_invariant_tsc() -> bool {
    max_extended_leaf() >= 0x8000_0007 && cpuid(0x8000_0007).edx & (1 << 8) != 0
}

/// This CPU's initial APIC id: the 32-bit x2APIC id from leaf 0BH where the CPU
/// has it, else the 8-bit id from leaf 01H. MADT lists the same id the APIC
/// reports (SDM Vol. 3A, "Identifying Logical Processors in an MP System").
pub fn initial_apic_id() -> u32 {
    if max_basic_leaf() >= 0xb && cpuid_subleaf(0xb, 0).ebx != 0 {
        cpuid_subleaf(0xb, 0).edx
    } else {
        cpuid(1).ebx >> 24
    }
}

/// Reads the time-stamp counter.
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86_64 CPU and has no side effects
    // (CR4.TSD is clear: the kernel runs at CPL 0 anyway).
    unsafe { _rdtsc() }
}

/// Adds `delta` to `counter` and returns the value before, in one `xadd`
/// without a `lock` prefix (Linux: `this_cpu_add_return()`). One instruction
/// cannot be split by an interrupt or an NMI on this CPU, so it is atomic
/// against them; it is not atomic against other CPUs, so `counter` must be
/// one that only this CPU changes (its own per-CPU data), and the caller must
/// not move to another CPU between finding `counter` and this call.
#[inline]
pub fn fetch_add_this_cpu_only(counter: &core::sync::atomic::AtomicU64, delta: u64) -> u64 {
    let mut value = delta;
    // SAFETY: `counter` is a valid, aligned AtomicU64 (a reference); XADD
    // exchanges and adds in place. Without LOCK the read-modify-write is not
    // atomic against other CPUs, which the caller rules out (see above).
    unsafe {
        asm!("xadd qword ptr [{counter}], {value}",
             counter = in(reg) counter.as_ptr(),
             value = inout(reg) value,
             options(nostack))
    };
    value
}

/// Reads the TSC after every earlier instruction has completed (`lfence;
/// rdtsc`, Linux's rdtsc_ordered()): a plain RDTSC may execute early.
#[inline]
pub fn rdtsc_ordered() -> u64 {
    // SAFETY: LFENCE only orders instruction execution.
    unsafe { core::arch::x86_64::_mm_lfence() };
    rdtsc()
}

/// Sleeps until the next interrupt with interrupts enabled. `sti` delays
/// interrupts by one instruction, so no interrupt slips in between the two and
/// is lost before `hlt` (SDM Vol. 2B, STI).
pub fn enable_interrupts_and_halt() {
    x86_64::instructions::interrupts::enable_and_hlt();
}

/// Sleeps until the next interrupt (or NMI), with interrupts as they are.
pub fn halt() {
    x86_64::instructions::hlt();
}

/// Stops this CPU for good: interrupts off, `hlt` in a loop (an NMI or SMI may
/// still wake it, hence the loop).
pub fn halt_forever() -> ! {
    x86_64::instructions::interrupts::disable();
    loop {
        x86_64::instructions::hlt();
    }
}

/// The hypervisor's vendor signature from CPUID leaf 40000000H, e.g.
/// "TCGTCGTCGTCG" (QEMU's emulator) or "KVMKVMKVM" (KVM); None on bare metal.
pub fn hypervisor_vendor() -> Option<[u8; 12]> {
    if cpuid(1).ecx & (1 << 31) == 0 {
        return None;
    }
    let leaf = cpuid(0x4000_0000);
    let mut vendor = [0u8; 12];
    vendor[0..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    vendor[8..12].copy_from_slice(&leaf.edx.to_le_bytes());
    Some(vendor)
}

/// The accelerator QEMU runs this kernel with, as benchmarks report it.
pub fn accelerator_name() -> &'static str {
    match hypervisor_vendor() {
        Some(vendor) if vendor.starts_with(b"TCGTCGTCG") => "TCG",
        Some(vendor) if vendor.starts_with(b"KVMKVMKVM") => "KVM",
        Some(_) => "another hypervisor",
        None => "none (bare metal)",
    }
}

/// The frame pointer (rbp) of the function this is inlined into. The kernel is
/// built with frame pointers: [rbp] is the caller's rbp, [rbp + 8] the return
/// address.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    rbp
}

/// The stack pointer (rsp) where this is inlined.
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: reading rsp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags))
    };
    rsp
}

/// The return address of the function this is inlined into.
#[inline(always)]
pub fn return_address() -> u64 {
    // SAFETY: with frame pointers, [rbp + 8] holds the return address, on the
    // current (mapped) stack.
    unsafe { *((frame_pointer() + 8) as *const u64) }
}
