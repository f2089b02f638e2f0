//! Reading and writing user memory on behalf of a system call.
//!
//! Every pointer a program passes is checked to lie wholly in the user half
//! before anything is touched, so a kernel address is refused without a
//! fault; the copy itself (`arch::x86::user_copy`) turns a fault on an
//! unmapped or forbidden user page into a short count, and this module into
//! `-EFAULT`. A fault on a page the process may use but has not touched yet
//! (demand-zero memory, see `memory`) is resolved and the copy goes on.

use alloc::vec::Vec;

use super::errno::{EFAULT, Errno};
use crate::arch::x86::user_copy::{self, OnFault};
use crate::mm::address_space::{USER_END, USER_START};

/// Whether `[address, address + length)` lies in the user half.
pub fn in_user_half(address: u64, length: usize) -> bool {
    address.checked_add(length as u64).is_some_and(|end| address >= USER_START && end <= USER_END)
}

fn check(address: u64, length: usize) -> Result<(), Errno> {
    if length == 0 || in_user_half(address, length) { Ok(()) } else { Err(EFAULT) }
}

/// Fills `to` from user memory at `from`.
pub fn read(from: u64, to: &mut [u8]) -> Result<(), Errno> {
    read_with(from, to, OnFault::Resolve)
}

/// As `read`, but a fault is never resolved: for callers that hold a spin
/// lock and may not sleep (futex); they retry with `read` after dropping it.
pub fn read_without_faulting_in(from: u64, to: &mut [u8]) -> Result<(), Errno> {
    read_with(from, to, OnFault::Fail)
}

fn read_with(from: u64, to: &mut [u8], on_fault: OnFault) -> Result<(), Errno> {
    check(from, to.len())?;
    // SAFETY: `to` is ours for its length; `from` was checked to be in the
    // user half.
    let left = unsafe { user_copy::copy(to.as_mut_ptr(), from as *const u8, to.len(), on_fault) };
    if left == 0 { Ok(()) } else { Err(EFAULT) }
}

/// Copies `from` to user memory at `to`.
pub fn write(to: u64, from: &[u8]) -> Result<(), Errno> {
    check(to, from.len())?;
    // SAFETY: as in `read`, the other way round.
    let left =
        unsafe { user_copy::copy(to as *mut u8, from.as_ptr(), from.len(), OnFault::Resolve) };
    if left == 0 { Ok(()) } else { Err(EFAULT) }
}

/// Reads a plain value (integers, `repr(C)` structs of integers).
pub fn read_value<T: Plain>(from: u64) -> Result<T, Errno> {
    let mut value = T::default();
    // SAFETY: `Plain` types are valid for any bytes, so filling one from
    // user memory cannot make an invalid value.
    let bytes =
        unsafe { core::slice::from_raw_parts_mut(&mut value as *mut T as *mut u8, size_of::<T>()) };
    read(from, bytes)?;
    Ok(value)
}

/// Writes a plain value.
pub fn write_value<T: Plain>(to: u64, value: &T) -> Result<(), Errno> {
    // SAFETY: `Plain` types have no padding, so all their bytes are initialised.
    let bytes =
        unsafe { core::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>()) };
    write(to, bytes)
}

/// Reads `length` bytes into a new buffer.
pub fn read_vec(from: u64, length: usize) -> Result<Vec<u8>, Errno> {
    let mut bytes = alloc::vec![0u8; length];
    read(from, &mut bytes)?;
    Ok(bytes)
}

/// Types made of integers only, without padding: any bytes are a valid
/// value, and every byte of a value is initialised.
///
/// # Safety
/// Only for such types.
pub unsafe trait Plain: Copy + Default {}

// SAFETY: integers.
unsafe impl Plain for u32 {}
// SAFETY: integers.
unsafe impl Plain for u64 {}
// SAFETY: integers.
unsafe impl Plain for i64 {}
// SAFETY: two integers, no padding.
unsafe impl Plain for [u64; 2] {}

/// Linux's `struct timespec` (seconds, nanoseconds).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Timespec {
    pub seconds: i64,
    pub nanoseconds: i64,
}

// SAFETY: two i64, no padding.
unsafe impl Plain for Timespec {}

impl Timespec {
    pub fn from_ns(ns: u64) -> Timespec {
        Timespec { seconds: (ns / 1_000_000_000) as i64, nanoseconds: (ns % 1_000_000_000) as i64 }
    }

    /// Nanoseconds, or None if the value is not a valid timespec (EINVAL).
    pub fn to_ns(self) -> Option<u64> {
        if self.seconds < 0 || !(0..1_000_000_000).contains(&self.nanoseconds) {
            return None;
        }
        Some(
            (self.seconds as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(self.nanoseconds as u64),
        )
    }
}
