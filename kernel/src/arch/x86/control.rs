//! The control registers as a whole: read for the panic report, and copied
//! from the boot CPU to each AP, which must run with the same settings (SDM
//! Vol. 3A "Control Registers").

use x86_64::PhysAddr;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr2, Cr3, Cr3Flags, Cr4, Cr4Flags};
use x86_64::structures::paging::PhysFrame;

pub struct ControlRegisters {
    pub cr0: u64,
    /// The last page-fault address.
    pub cr2: u64,
    /// The page-table root's physical address (without the flag bits).
    pub cr3: u64,
    pub cr4: u64,
}

impl ControlRegisters {
    /// This CPU's control registers.
    pub fn read() -> ControlRegisters {
        ControlRegisters {
            cr0: Cr0::read_raw(),
            cr2: Cr2::read_raw(),
            cr3: Cr3::read().0.start_address().as_u64(),
            cr4: Cr4::read_raw(),
        }
    }
}

/// Loads another CPU's page-table root, CR0 and CR4 on this one (CR2 is not
/// a setting).
///
/// # Safety
/// `cr3` is a level-4 table that maps the running code, stack and data where
/// the current tables do, and `cr0`/`cr4` are settings a CPU of this machine
/// runs the kernel with.
pub unsafe fn adopt(cr0: u64, cr3: u64, cr4: u64) {
    // SAFETY: the caller's contract.
    unsafe {
        Cr3::write(PhysFrame::containing_address(PhysAddr::new(cr3)), Cr3Flags::empty());
        Cr0::write(Cr0Flags::from_bits_retain(cr0));
        Cr4::write(Cr4Flags::from_bits_retain(cr4));
    }
}
