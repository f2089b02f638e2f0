//! The stack a program finds when it starts: its arguments, its environment
//! and the auxiliary vector, laid out as Linux lays them out for a static ELF
//! program, so that musl's `_start` (and any Linux program) reads them here.
//!
//! **What the ABI asks.** The System V ABI's AMD64 supplement, §3.4.1
//! "Initial Stack and Register State", defines the process's first stack
//! frame. At entry `rsp` points at `argc` and is 16-byte aligned; above it,
//! one 8-byte word each:
//!
//! ```text
//!  rsp ->  argc
//!          argv[0] .. argv[argc - 1]   pointers to NUL-terminated strings
//!          0
//!          envp[0] .. envp[n - 1]      pointers to "NAME=value" strings
//!          0
//!          auxv: (type, value) pairs   ending with (AT_NULL, 0)
//!          padding to 16 bytes
//!          the 16 AT_RANDOM bytes, the AT_PLATFORM string
//!          the argv strings, the envp strings, the AT_EXECFN string
//!          8 zero bytes                 <- just below `top`
//! ```
//!
//! The ABI leaves the order of what lies above the auxiliary vector open;
//! this is the order of Linux's fs/exec.c (the end marker, then the file
//! name, the environment and the arguments copied by `do_execveat_common`)
//! and fs/binfmt_elf.c `create_elf_tables` (the platform string, the random
//! bytes, the alignment, then the tables), without Linux's random shift of
//! the stack top. The ABI also says what the registers hold: `rdx` a function
//! for `atexit`, or 0; Linux starts a program with all of them 0.
//!
//! **The auxiliary vector** tells the C library what it cannot ask for
//! without a system call: where the program headers are (`AT_PHDR`, which
//! musl reads to find the thread-local-storage template), the page size,
//! the user ids, 16 random bytes for the stack-protector canary and pointer
//! guards (`AT_RANDOM`). The caller gives the pairs that depend on the
//! program and the kernel; [`build`] adds the three that point into the
//! image itself (`AT_RANDOM`, `AT_EXECFN`, `AT_PLATFORM`) and `AT_NULL`.
//! The numbers are Linux's include/uapi/linux/auxvec.h and
//! arch/x86/include/uapi/asm/auxvec.h, in [`aux`].
//!
//! **Addresses.** Every pointer in the image is a user address computed from
//! `top`: the kernel copies [`InitialStack::bytes`] to `[rsp, top)` of the
//! new address space and starts the program with that `rsp`.
//!
//! This file uses only `core` and `alloc`, nothing of the kernel's, so the
//! host unit tests (kernel-logic/tests/user_initial_stack.rs) compile it.

use alloc::vec::Vec;
use core::fmt;

/// The auxiliary vector's entry types used here (Linux
/// include/uapi/linux/auxvec.h; `AT_PLATFORM` and the rest are the same on
/// every architecture).
pub mod aux {
    /// The end of the vector.
    pub const AT_NULL: u64 = 0;
    /// The address of the program headers in the program's memory.
    pub const AT_PHDR: u64 = 3;
    /// The size of one program header.
    pub const AT_PHENT: u64 = 4;
    /// The number of program headers.
    pub const AT_PHNUM: u64 = 5;
    /// The page size.
    pub const AT_PAGESZ: u64 = 6;
    /// Where the interpreter (dynamic linker) is loaded; 0 without one.
    pub const AT_BASE: u64 = 7;
    /// Flags; none are defined.
    pub const AT_FLAGS: u64 = 8;
    /// The program's entry point.
    pub const AT_ENTRY: u64 = 9;
    /// The real and effective user and group ids.
    pub const AT_UID: u64 = 11;
    pub const AT_EUID: u64 = 12;
    pub const AT_GID: u64 = 13;
    pub const AT_EGID: u64 = 14;
    /// The address of a string naming the CPU ("x86_64").
    pub const AT_PLATFORM: u64 = 15;
    /// The CPU's feature bits (CPUID leaf 1, EDX, on x86).
    pub const AT_HWCAP: u64 = 16;
    /// The frequency `times()` counts in.
    pub const AT_CLKTCK: u64 = 17;
    /// Nonzero when the program runs with more privilege than its caller.
    pub const AT_SECURE: u64 = 23;
    /// The address of 16 random bytes.
    pub const AT_RANDOM: u64 = 25;
    /// The address of the program's file name.
    pub const AT_EXECFN: u64 = 31;
}

/// The largest initial stack [`build`] makes. The kernel maps the pages the
/// image needs before it copies it, and its arguments come from the kernel
/// command line, which holds a few hundred bytes, so 64 KiB is plenty while
/// it keeps a runaway argument list from eating the memory. (Linux limits
/// the strings to a quarter of the stack's rlimit, 2 MiB by default, and
/// each one to 32 pages: `MAX_ARG_STRLEN`.)
pub const MAX_SIZE: usize = 64 * 1024;

/// The AT_PLATFORM string: Linux's `ELF_PLATFORM` on x86_64.
pub const PLATFORM: &[u8] = b"x86_64";

/// The number of AT_RANDOM bytes.
const RANDOM_LEN: usize = 16;
/// The zero word at the very top (Linux: `bprm->p = vma->vm_end -
/// sizeof(void *)`), so the last string is followed by 8 zero bytes.
const END_MARKER_LEN: usize = 8;
const WORD: usize = 8;
/// The pairs [`build`] adds to the caller's: AT_RANDOM, AT_EXECFN,
/// AT_PLATFORM and AT_NULL.
const ADDED_AUX_PAIRS: usize = 4;

/// A stack image and where it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The bytes to copy to `[rsp, top)`.
    pub bytes: Vec<u8>,
    /// The stack pointer to start the program with: the address of `argc`,
    /// a multiple of 16.
    pub rsp: u64,
}

/// The error of [`build`]: the image would be larger than [`MAX_SIZE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackTooBig {
    /// The bytes the image needs (at least).
    pub size: usize,
    pub limit: usize,
}

impl fmt::Display for StackTooBig {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "the arguments, environment and auxiliary vector need a {}-byte initial stack, \
             more than the {}-byte limit",
            self.size, self.limit
        )
    }
}

/// The initial stack below `top` for a program started with the arguments
/// `argv` (the first being its name, also given as AT_EXECFN, or "" if there
/// are none), the environment `envp` ("NAME=value" each), the auxiliary
/// vector entries `aux` (type, value) and the AT_RANDOM bytes `random`.
///
/// The strings are copied as they are, each followed by a NUL: one holding a
/// NUL byte would read shorter in C, so the caller passes none.
///
/// # Panics
///
/// If `top` is lower than the image's size: the top of the user address
/// space is far above any stack this makes.
pub fn build(
    top: u64,
    argv: &[&[u8]],
    envp: &[&[u8]],
    aux: &[(u64, u64)],
    random: [u8; 16],
) -> Result<InitialStack, StackTooBig> {
    let program_name = argv.first().copied().unwrap_or(b"");
    let text_len = END_MARKER_LEN
        + c_string_len(program_name)
        + strings_len(envp)
        + strings_len(argv)
        + c_string_len(PLATFORM)
        + RANDOM_LEN;
    let tables_len =
        WORD * (1 + (argv.len() + 1) + (envp.len() + 1) + 2 * (aux.len() + ADDED_AUX_PAIRS));

    // Aligning rsp down adds at most 15 bytes; the limit is checked on the
    // exact size, but the unaligned one already rules out a huge image
    // before any address arithmetic.
    let unaligned_len = text_len + tables_len;
    if unaligned_len > MAX_SIZE {
        return Err(StackTooBig { size: unaligned_len, limit: MAX_SIZE });
    }
    let below_top = top.checked_sub(unaligned_len as u64).expect("the stack top is too low");
    let rsp = below_top & !15;
    let size = (top - rsp) as usize;
    if size > MAX_SIZE {
        return Err(StackTooBig { size, limit: MAX_SIZE });
    }

    let mut image = Image { bytes: alloc::vec![0; size], rsp };
    // The strings, from the top down; the end marker is already zero.
    let mut cursor = top - END_MARKER_LEN as u64;
    let execfn = image.push_strings_below(&mut cursor, &[program_name])[0];
    let envp_addresses = image.push_strings_below(&mut cursor, envp);
    let argv_addresses = image.push_strings_below(&mut cursor, argv);
    let platform = image.push_strings_below(&mut cursor, &[PLATFORM])[0];
    cursor -= RANDOM_LEN as u64;
    image.put(cursor, &random);
    let random_address = cursor;

    // The tables, from rsp up; the padding above them stays zero.
    let mut words = Vec::with_capacity(tables_len / WORD);
    words.push(argv.len() as u64);
    words.extend(&argv_addresses);
    words.push(0);
    words.extend(&envp_addresses);
    words.push(0);
    let added = [
        (aux::AT_RANDOM, random_address),
        (aux::AT_EXECFN, execfn),
        (aux::AT_PLATFORM, platform),
        (aux::AT_NULL, 0),
    ];
    for &(kind, value) in aux.iter().chain(&added) {
        words.extend([kind, value]);
    }
    let mut address = rsp;
    for word in words {
        image.put(address, &word.to_le_bytes());
        address += WORD as u64;
    }
    debug_assert!(address <= random_address, "the tables run into the strings");

    Ok(InitialStack { bytes: image.bytes, rsp })
}

/// The bytes of `string` and its NUL.
fn c_string_len(string: &[u8]) -> usize {
    string.len() + 1
}

fn strings_len(strings: &[&[u8]]) -> usize {
    strings.iter().map(|string| c_string_len(string)).sum()
}

/// The image being filled, addressed by user address.
struct Image {
    bytes: Vec<u8>,
    /// The user address of `bytes[0]`.
    rsp: u64,
}

impl Image {
    fn put(&mut self, address: u64, data: &[u8]) {
        let start = (address - self.rsp) as usize;
        self.bytes[start..start + data.len()].copy_from_slice(data);
    }

    /// Places `strings` (each with its NUL, which the zeroed image already
    /// holds) in order just below `cursor`, moves `cursor` down past them,
    /// and returns their addresses.
    fn push_strings_below(&mut self, cursor: &mut u64, strings: &[&[u8]]) -> Vec<u64> {
        *cursor -= strings_len(strings) as u64;
        let mut address = *cursor;
        let mut addresses = Vec::with_capacity(strings.len());
        for string in strings {
            self.put(address, string);
            addresses.push(address);
            address += c_string_len(string) as u64;
        }
        addresses
    }
}
