//! The x87/SSE registers of user threads, and the two control-register
//! features that keep the kernel honest about user memory (SMEP, SMAP).
//!
//! **Floating point.** The kernel is compiled without floating point (soft
//! float), but musl's `memcpy` and `printf` use SSE, so user threads need the
//! registers, and each thread its own copy. The context switch saves them
//! with `fxsave64` and restores them with `fxrstor64` (SDM Vol. 1 10.5,
//! "FXSAVE and FXRSTOR Instructions"), eagerly, only for threads that run in
//! user mode. For every other thread CR0.TS is set, so an x87 or SSE
//! instruction in the kernel raises #NM (SDM Vol. 3A 2.5, Table 2-2) instead
//! of silently clobbering a user thread's registers: the same guarantee the
//! kernel had before user mode, when CR0.EM forbade them outright.
//!
//! **SMEP and SMAP** (SDM Vol. 3A 4.6, "Access Rights"): with CR4.SMEP the
//! CPU refuses to execute a user page in ring 0; with CR4.SMAP it refuses
//! ring-0 reads and writes of user pages unless RFLAGS.AC is set, which the
//! kernel does only inside its user-copy routine (`user_copy`).
//! Both turn a kernel bug that follows a user pointer into a page fault.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::VirtAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::FsBase;

/// What a user thread keeps of the CPU besides its general registers (which
/// are in its `TrapFrame`): the `fxsave` image and the FS base (musl's
/// thread pointer, set with `arch_prctl(ARCH_SET_FS)`).
#[repr(C, align(16))]
pub struct UserRegisters {
    fxsave: [u8; 512],
    pub fs_base: u64,
}

impl UserRegisters {
    /// The state a new process starts with: x87 control word 0x37f (all
    /// exceptions masked, double-extended precision) and MXCSR 0x1f80 (all
    /// SSE exceptions masked, round to nearest), as after `fninit` and at
    /// Linux's `execve`.
    pub fn new() -> UserRegisters {
        let mut fxsave = [0u8; 512];
        fxsave[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        fxsave[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        UserRegisters { fxsave, fs_base: 0 }
    }

    /// The running user thread's x87/SSE registers as they are now, for a
    /// new thread of the same process (`clone`: Linux starts a thread with
    /// its parent's floating-point state too), with FS base `fs_base`.
    /// Called by that user thread (its registers are live: TS is clear).
    pub fn copy_of_live(fs_base: u64) -> UserRegisters {
        let mut copy = UserRegisters { fxsave: [0; 512], fs_base };
        // SAFETY: 512 bytes, 16-byte aligned; TS is clear while a user
        // thread runs (switch_in cleared it).
        unsafe {
            core::arch::asm!("fxsave64 [{}]", in(reg) copy.fxsave.as_mut_ptr(), options(nostack))
        };
        copy
    }
}

impl Default for UserRegisters {
    fn default() -> UserRegisters {
        UserRegisters::new()
    }
}

static SMAP: AtomicBool = AtomicBool::new(false);

/// Whether SMAP is on (for the test that shows it).
pub fn smap_enabled() -> bool {
    SMAP.load(Ordering::Relaxed)
}

/// On the boot CPU, before the APs start (they copy CR0 and CR4 from it):
/// lets user threads use x87/SSE, sets TS so the kernel cannot, and turns on
/// SMEP and SMAP where the CPU has them (CPUID.(EAX=7,ECX=0):EBX bits 7, 20).
/// Returns (SMEP, SMAP) as enabled.
pub fn init() -> (bool, bool) {
    let has_leaf_7 = core::arch::x86_64::__cpuid(0).eax >= 7;
    let features = if has_leaf_7 { core::arch::x86_64::__cpuid_count(7, 0).ebx } else { 0 };
    let smep = features & (1 << 7) != 0;
    let smap = features & (1 << 20) != 0;
    // SAFETY: clearing EM and setting MP|TS makes x87/SSE raise #NM until a
    // user thread's switch clears TS; OSFXSR/OSXMMEXCPT make fxsave cover
    // the SSE registers and SSE exceptions raise #XM. SMEP/SMAP only forbid
    // what the kernel never does on purpose (the user-copy routine sets AC).
    unsafe {
        Cr0::update(|flags| {
            flags.remove(Cr0Flags::EMULATE_COPROCESSOR);
            flags.insert(Cr0Flags::MONITOR_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            flags.insert(Cr0Flags::WRITE_PROTECT | Cr0Flags::NUMERIC_ERROR);
        });
        Cr4::update(|flags| {
            flags.insert(Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
            if smep {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION);
            }
            if smap {
                flags.insert(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION);
            }
        });
    }
    SMAP.store(smap, Ordering::Relaxed);
    (smep, smap)
}

/// At a context switch, for the thread being switched away from, if it runs
/// in user mode.
///
/// # Safety
/// `registers` is that thread's, and the x87/SSE registers hold its state
/// (TS is clear: it was restored by `switch_in`).
pub unsafe fn switch_out(registers: *mut UserRegisters) {
    // SAFETY: the area is 512 bytes, 16-byte aligned (repr align), as
    // fxsave64 requires; TS is clear, as the caller promises.
    unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) registers as *mut u8, options(nostack)) };
}

/// At a context switch, for the thread being switched to: its registers
/// (a user thread), or TS set (any other thread).
///
/// # Safety
/// `registers`, if given, belongs to the thread about to run here, and no
/// other CPU uses it.
pub unsafe fn switch_in(registers: Option<*const UserRegisters>) {
    let task_switched = Cr0::read().contains(Cr0Flags::TASK_SWITCHED);
    match registers {
        Some(registers) => {
            // SAFETY: `clts` only allows x87/SSE again; the image was
            // written by fxsave64 or `UserRegisters::new` (valid MXCSR), and
            // FS is the user's (the kernel addresses per-CPU data through GS).
            unsafe {
                if task_switched {
                    core::arch::asm!("clts", options(nomem, nostack));
                }
                core::arch::asm!("fxrstor64 [{}]", in(reg) registers as *const u8, options(nostack));
                FsBase::write(VirtAddr::new_truncate((*registers).fs_base));
            }
        }
        None if !task_switched => {
            // SAFETY: only makes x87/SSE fault until the next user thread.
            unsafe { Cr0::update(|flags| flags.insert(Cr0Flags::TASK_SWITCHED)) };
        }
        None => {}
    }
}

/// The running user thread's FS base: live in the MSR (`switch_in` loaded
/// it, `set_fs_base` changes it; the kernel itself never uses FS).
pub fn fs_base() -> u64 {
    FsBase::read().as_u64()
}

/// Sets the running user thread's FS base (`arch_prctl(ARCH_SET_FS)`);
/// the caller records it in the thread's `UserRegisters` too.
pub fn set_fs_base(value: u64) {
    FsBase::write(VirtAddr::new_truncate(value));
}
