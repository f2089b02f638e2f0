//! Linux's error numbers (include/uapi/asm-generic/errno-base.h, errno.h).
//! A system call returns them negated in RAX; musl turns -1..-4095 into
//! `errno`.

/// A system call's failure: the positive error number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i64);

pub const EPERM: Errno = Errno(1);
pub const ESRCH: Errno = Errno(3);
pub const EINTR: Errno = Errno(4);
pub const EBADF: Errno = Errno(9);
pub const EAGAIN: Errno = Errno(11);
pub const ENOMEM: Errno = Errno(12);
pub const EFAULT: Errno = Errno(14);
pub const EEXIST: Errno = Errno(17);
pub const ENODEV: Errno = Errno(19);
pub const EINVAL: Errno = Errno(22);
pub const ENOTTY: Errno = Errno(25);
pub const ENOSYS: Errno = Errno(38);
pub const ETIMEDOUT: Errno = Errno(110);
