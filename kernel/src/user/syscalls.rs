//! The system-call table: Linux's x86_64 numbers
//! (arch/x86/entry/syscalls/syscall_64.tbl), arguments in rdi, rsi, rdx,
//! r10, r8, r9, the result or a negated error number in rax. Each call here
//! does what Linux's does for the cases this kernel supports, with Linux's
//! error numbers for the rest; a number it does not implement returns
//! -ENOSYS and is named in the log once.

use alloc::sync::Arc;
use alloc::vec::Vec;

use super::access::{self, Timespec};
use super::errno::*;
use super::memory::Placement;
use super::process::Process;
use super::{clone, futex, syscall_names};
use crate::arch::x86::entry::TrapFrame;
use crate::arch::x86::fpu;
use crate::mm::address_space::{Access, USER_END};
use crate::percpu::CpuSet;
use crate::sched::{self, Priority};
use crate::sync::SpinLock;

/// What a call did: returned a value, or ended the calling thread (the
/// caller drops its references, then leaves the CPU for good).
pub enum Outcome {
    Return(u64),
    ThreadEnded,
}

/// The six argument registers.
struct Arguments([u64; 6]);

impl Arguments {
    fn of(frame: &TrapFrame) -> Arguments {
        Arguments([frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9])
    }
}

pub fn call(process: &Arc<Process>, frame: &TrapFrame) -> Outcome {
    let Arguments([a0, a1, a2, a3, a4, _a5]) = Arguments::of(frame);
    let result = match frame.rax {
        0 => read(a0, a1, a2),
        1 => write(a0, a1, a2),
        9 => mmap(process, a0, a1, a2, a3, a4),
        10 => mprotect(process, a0, a1, a2),
        11 => munmap(process, a0, a1),
        12 => Ok(process.memory.lock().set_brk(&process.space, a0)),
        14 => rt_sigprocmask(a2, a3),
        16 => Err(ENOTTY), // ioctl: the console is no terminal (musl asks for TIOCGWINSZ)
        20 => writev(a0, a1, a2),
        24 => {
            sched::yield_now();
            Ok(0)
        }
        28 => madvise(process, a0, a1, a2),
        35 => nanosleep(process, a0),
        39 => Ok(process.pid()),
        56 => clone::clone(process, frame, a0, a1, a2, a3, a4),
        60 => {
            process.end_thread(a0 as i32);
            return Outcome::ThreadEnded;
        }
        144 => sched_setscheduler(a0, a1, a2),
        158 => arch_prctl(a0, a1),
        186 => Ok(sched::current_id()),
        202 => futex::futex(&process.futexes, a0, a1, a2, a3, &|| process.is_exiting()),
        203 => sched_setaffinity(a0, a1, a2),
        204 => sched_getaffinity(a0, a1, a2),
        218 => {
            process.set_clear_child_tid(a0);
            Ok(sched::current_id())
        }
        228 => clock_gettime(a0, a1),
        230 => clock_nanosleep(process, a0, a1, a2),
        231 => {
            process.exit_group(a0 as i32);
            return Outcome::ThreadEnded;
        }
        309 => getcpu(a0, a1),
        number => {
            not_implemented(number);
            Err(ENOSYS)
        }
    };
    Outcome::Return(match result {
        Ok(value) => value,
        Err(Errno(number)) => (-number) as u64,
    })
}

/// Logs an unimplemented call once per number.
fn not_implemented(number: u64) {
    static SEEN: SpinLock<Vec<u64>> = SpinLock::new(Vec::new());
    let mut seen = SEEN.lock_irqsave();
    if !seen.contains(&number) {
        seen.push(number);
        drop(seen);
        let name = syscall_names::name(number).unwrap_or("no such call in Linux");
        log::warn!("user: system call {number} ({name}) is not implemented: -ENOSYS");
    }
}

fn is_console(fd: u64) -> bool {
    fd <= 2
}

/// The console has no input here: reading it finds the end of the file.
fn read(fd: u64, _buffer: u64, _length: u64) -> Result<u64, Errno> {
    if is_console(fd) { Ok(0) } else { Err(EBADF) }
}

/// How much of a buffer is copied in at a time: the console takes the
/// bytes as text, so a line is not split more than this.
const CHUNK: usize = 256;

fn write(fd: u64, buffer: u64, length: u64) -> Result<u64, Errno> {
    if !is_console(fd) {
        return Err(EBADF);
    }
    let length = length.min(isize::MAX as u64) as usize;
    let mut chunk = [0u8; CHUNK];
    let mut done = 0;
    while done < length {
        let n = (length - done).min(CHUNK);
        // A fault after some bytes were written returns what was written,
        // as Linux does; a fault before any returns EFAULT.
        if let Err(error) = access::read(buffer + done as u64, &mut chunk[..n]) {
            return if done == 0 { Err(error) } else { Ok(done as u64) };
        }
        crate::console::write_bytes(&chunk[..n]);
        done += n;
    }
    Ok(done as u64)
}

/// `writev`: an array of (base, length) pairs, written in order.
fn writev(fd: u64, vectors: u64, count: u64) -> Result<u64, Errno> {
    const IOV_MAX: u64 = 1024;
    if !is_console(fd) {
        return Err(EBADF);
    }
    if count > IOV_MAX {
        return Err(EINVAL);
    }
    let mut total = 0;
    for i in 0..count {
        let [base, length] = access::read_value::<[u64; 2]>(vectors + 16 * i)?;
        if length == 0 {
            continue;
        }
        match write(fd, base, length) {
            Ok(n) => total += n,
            Err(error) if total == 0 => return Err(error),
            Err(_) => break,
        }
    }
    Ok(total)
}

const PROT_READ: u64 = 1;
const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;

fn access_of(prot: u64) -> Result<Access, Errno> {
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 {
        return Err(EINVAL);
    }
    Ok(Access {
        readable: prot & PROT_READ != 0,
        writable: prot & PROT_WRITE != 0,
        executable: prot & PROT_EXEC != 0,
    })
}

/// `mmap`: anonymous private memory only (there are no files).
fn mmap(
    process: &Process,
    address: u64,
    length: u64,
    prot: u64,
    flags: u64,
    fd: u64,
) -> Result<u64, Errno> {
    const MAP_PRIVATE: u64 = 0x02;
    const MAP_FIXED: u64 = 0x10;
    const MAP_ANONYMOUS: u64 = 0x20;
    // Hints with nothing to do here: MAP_GROWSDOWN, MAP_DENYWRITE,
    // MAP_EXECUTABLE, MAP_LOCKED, MAP_NORESERVE, MAP_POPULATE,
    // MAP_NONBLOCK, MAP_STACK.
    const MAP_HINTS: u64 = 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
    const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;
    if flags & MAP_ANONYMOUS == 0 {
        return Err(if fd as i32 == -1 { EINVAL } else { ENODEV });
    }
    if flags & 0x03 != MAP_PRIVATE {
        return Err(EINVAL); // MAP_SHARED: no second process to share with
    }
    if flags & !(MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_HINTS | MAP_FIXED_NOREPLACE) != 0 {
        return Err(EINVAL);
    }
    let placement = if flags & MAP_FIXED_NOREPLACE != 0 {
        Placement::FixedNoReplace
    } else if flags & MAP_FIXED != 0 {
        Placement::Fixed
    } else {
        Placement::Anywhere
    };
    let access = access_of(prot)?;
    process.memory.lock().map_anonymous(&process.space, address, length, access, placement)
}

fn munmap(process: &Process, address: u64, length: u64) -> Result<u64, Errno> {
    process.memory.lock().unmap(&process.space, address, length).map(|()| 0)
}

fn mprotect(process: &Process, address: u64, length: u64, prot: u64) -> Result<u64, Errno> {
    let access = access_of(prot)?;
    process.memory.lock().protect(&process.space, address, length, access).map(|()| 0)
}

fn madvise(process: &Process, address: u64, length: u64, advice: u64) -> Result<u64, Errno> {
    const MADV_DONTNEED: u64 = 4;
    match advice {
        MADV_DONTNEED => process.memory.lock().discard(&process.space, address, length).map(|()| 0),
        // MADV_NORMAL, RANDOM, SEQUENTIAL, WILLNEED: hints, nothing to do.
        0..=3 => Ok(0),
        _ => Err(EINVAL),
    }
}

/// There are no signals, so no mask to change: the old one reads as empty.
fn rt_sigprocmask(old_set: u64, set_size: u64) -> Result<u64, Errno> {
    if set_size != 8 {
        return Err(EINVAL);
    }
    if old_set != 0 {
        access::write_value(old_set, &0u64)?;
    }
    Ok(0)
}

fn arch_prctl(code: u64, address: u64) -> Result<u64, Errno> {
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    let thread = sched::current();
    let user = thread.user.as_ref().ok_or(EINVAL)?;
    // SAFETY: the registers of the running thread, touched only on its CPU
    // (by it, and by the context switch, which cannot run meanwhile: the
    // pointer is used with interrupts off below).
    let registers = user.registers.get();
    match code {
        ARCH_SET_FS => {
            if address >= USER_END {
                return Err(EPERM);
            }
            crate::arch::x86::interrupts::without_interrupts(|| {
                // SAFETY: see above.
                unsafe { (*registers).fs_base = address };
                fpu::set_fs_base(address);
            });
            Ok(0)
        }
        ARCH_GET_FS => access::write_value(address, &fpu::fs_base()).map(|()| 0),
        _ => Err(EINVAL),
    }
}

/// The calling thread, if `pid` names it (0 or its own id): the scheduler
/// calls below only change the caller.
fn must_be_caller(pid: u64) -> Result<(), Errno> {
    static SAID: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if pid == 0 || pid == sched::current_id() {
        Ok(())
    } else {
        if !SAID.swap(true, core::sync::atomic::Ordering::Relaxed) {
            log::warn!(
                "user: sched_* calls act on the calling thread only (asked for {pid}): -ESRCH"
            );
        }
        Err(ESRCH)
    }
}

/// SCHED_OTHER (0) is the normal time-shared class; SCHED_FIFO (1) and
/// SCHED_RR (2) priorities 1-49 and 50-99 map to the real-time levels 1 and
/// 2. Level 3 stays the kernel's (the thread that parks a CPU, the injected
/// slow CPU): a user thread must not hold a CPU against them.
fn sched_setscheduler(pid: u64, policy: u64, parameters: u64) -> Result<u64, Errno> {
    must_be_caller(pid)?;
    let priority = access::read_value::<u32>(parameters)?;
    let new = match (policy, priority) {
        (0, 0) => Priority::Normal,
        (1 | 2, 1..=49) => Priority::RealTime(1),
        (1 | 2, 50..=99) => Priority::RealTime(2),
        _ => return Err(EINVAL),
    };
    sched::set_current_priority(new);
    Ok(0)
}

/// The online CPUs' mask size in bytes, rounded to whole 64-bit words as
/// Linux's `cpumask_size()`.
fn mask_bytes() -> usize {
    crate::smp::cpus().len().div_ceil(64).max(1) * 8
}

/// The scheduler pins a thread to one CPU or to none: a mask of one CPU
/// pins, a mask of several lets it run anywhere.
fn sched_setaffinity(pid: u64, length: u64, mask: u64) -> Result<u64, Errno> {
    must_be_caller(pid)?;
    let bytes = access::read_vec(mask, (length as usize).min(mask_bytes()))?;
    let online = CpuSet::all_online();
    let wanted: CpuSet = online
        .iter()
        .filter(|&cpu| bytes.get(cpu / 8).is_some_and(|b| b & (1 << (cpu % 8)) != 0))
        .collect();
    match wanted.len() {
        0 => Err(EINVAL),
        1 => {
            sched::set_current_affinity(wanted.first());
            Ok(0)
        }
        _ => {
            sched::set_current_affinity(None);
            Ok(0)
        }
    }
}

fn sched_getaffinity(pid: u64, length: u64, mask: u64) -> Result<u64, Errno> {
    must_be_caller(pid)?;
    let size = mask_bytes();
    if (length as usize) < size || !length.is_multiple_of(8) {
        return Err(EINVAL);
    }
    let mut bytes = alloc::vec![0u8; size];
    let cpus = match sched::current().affinity() {
        Some(cpu) => CpuSet::single(cpu),
        None => CpuSet::all_online(),
    };
    for cpu in cpus.iter() {
        bytes[cpu / 8] |= 1 << (cpu % 8);
    }
    access::write(mask, &bytes)?;
    Ok(size as u64)
}

const CLOCK_REALTIME: u64 = 0;
const CLOCK_MONOTONIC: u64 = 1;
const CLOCK_MONOTONIC_RAW: u64 = 4;
const CLOCK_BOOTTIME: u64 = 7;

/// Every clock is the time since boot: there is no wall clock here.
fn clock_gettime(clock: u64, timespec: u64) -> Result<u64, Errno> {
    match clock {
        CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_MONOTONIC_RAW | CLOCK_BOOTTIME => {
            access::write_value(timespec, &Timespec::from_ns(crate::time::now_ns())).map(|()| 0)
        }
        _ => Err(EINVAL),
    }
}

fn nanosleep(process: &Process, request: u64) -> Result<u64, Errno> {
    let ns = access::read_value::<Timespec>(request)?.to_ns().ok_or(EINVAL)?;
    sleep_until(process, crate::time::now_ns().saturating_add(ns))
}

fn clock_nanosleep(process: &Process, clock: u64, flags: u64, request: u64) -> Result<u64, Errno> {
    const TIMER_ABSTIME: u64 = 1;
    if !matches!(clock, CLOCK_REALTIME | CLOCK_MONOTONIC | CLOCK_BOOTTIME) {
        return Err(EINVAL);
    }
    let ns = access::read_value::<Timespec>(request)?.to_ns().ok_or(EINVAL)?;
    let deadline =
        if flags & TIMER_ABSTIME != 0 { ns } else { crate::time::now_ns().saturating_add(ns) };
    sleep_until(process, deadline)
}

/// Sleeps until `deadline_ns`, or until the process starts exiting.
fn sleep_until(process: &Process, deadline_ns: u64) -> Result<u64, Errno> {
    let exiting = || process.is_exiting();
    while crate::time::now_ns() < deadline_ns {
        if exiting() {
            return Err(EINTR);
        }
        sched::block_until(&exiting, deadline_ns);
    }
    Ok(0)
}

fn getcpu(cpu: u64, node: u64) -> Result<u64, Errno> {
    let me = crate::percpu::cpu_number() as u32;
    if cpu != 0 {
        access::write_value(cpu, &me)?;
    }
    if node != 0 {
        access::write_value(node, &0u32)?;
    }
    Ok(0)
}
