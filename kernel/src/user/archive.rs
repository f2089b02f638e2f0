//! The ramdisk's format: a cpio "newc" archive, the format Linux unpacks as
//! its initramfs (Documentation/driver-api/early-userspace/buffer-format.rst),
//! so the very file the kernel boots with can be handed to Linux as `-initrd`.
//!
//! **The format.** An archive is a list of entries, each a file, a directory
//! or another kind of inode, and ends with an entry named `TRAILER!!!`. An
//! entry is:
//!
//! ```text
//! header   110 ASCII bytes: the magic "070701", then 13 fields of 8 hex digits:
//!          ino mode uid gid nlink mtime filesize devmajor devminor
//!          rdevmajor rdevminor namesize check
//! name     namesize bytes, the last one a NUL; zero bytes follow until the
//!          header and name together end on a multiple of 4
//! data     filesize bytes; zero bytes follow until a multiple of 4
//! ```
//!
//! The headers are text, so an archive reads the same on any byte order,
//! and every part is padded to 4 bytes. The padding counts from the archive's
//! start (which the bootloader places on a page boundary), so the next entry
//! starts at the next multiple of 4 after the data. `mode` holds the file
//! type and permissions as in `stat`'s `st_mode` (0o100755 is an executable
//! regular file, 0o040755 a directory). The magic "070702" marks the same
//! layout with `check` holding a sum of the data bytes; this reader accepts
//! it and, as Linux does when unpacking, leaves the sum unchecked.
//!
//! **Names.** `cpio -o` stores the names it is given, often `./hello` or
//! `.` for the directory itself. An [`Entry`]'s name has a leading `./` or
//! `/` removed, and the entry for `.` is skipped, so `hello` finds `./hello`.
//!
//! **Reading.** [`Archive::entries`] walks the entries without copying:
//! each [`Entry`] borrows its name and data from the archive's bytes. Every
//! offset is checked against the length, so a damaged archive gives an
//! [`ArchiveError`] naming the byte where the bad entry starts, and never a
//! read past the end; an archive that ends without `TRAILER!!!` is
//! [`ArchiveError::Truncated`].
//!
//! **Writing.** [`write_newc`] builds an archive from (name, mode, data)
//! triples. Only the host uses it: boot/build.rs packs the user programs with
//! it, so it is compiled only where the target has an operating system (the
//! kernel's target, x86_64-unknown-none, has none) and the kernel carries no
//! unused code.
//!
//! This file uses only `core` and `alloc`, nothing of the kernel's, so the
//! host unit tests (kernel-logic/tests/user_archive.rs) and the build script
//! compile this very file with `#[path]`. A crate that includes it needs
//! `extern crate alloc;` at its root (a `std` crate such as a build script
//! too), and one that uses only the writer or only the reader allows
//! `dead_code` on the `mod` line.

use core::fmt;

/// The mask of `mode`'s file-type bits (`S_IFMT` in Linux's
/// include/uapi/linux/stat.h).
pub const S_IFMT: u32 = 0o170000;
/// The file type of a regular file.
pub const S_IFREG: u32 = 0o100000;
/// The file type of a directory.
pub const S_IFDIR: u32 = 0o040000;

/// The magic of a newc header, and of its variant with a checksum.
const MAGIC: &[u8; MAGIC_LEN] = b"070701";
const MAGIC_WITH_CHECKSUM: &[u8; MAGIC_LEN] = b"070702";
/// The name of the entry that ends the archive.
const TRAILER: &str = "TRAILER!!!";

/// The header's length: the 6-byte magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = MAGIC_LEN + FIELDS.len() * FIELD_LEN;
const MAGIC_LEN: usize = 6;
const FIELD_LEN: usize = 8;

/// The header's fields in order, as the error messages name them.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const MODE: usize = 1;
const FILESIZE: usize = 6;
const NAMESIZE: usize = 11;

/// A cpio newc archive in memory.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

/// One file (or directory, or other inode) of an archive, borrowing its name
/// and data from the archive's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path inside the archive, without a leading `./` or `/`.
    pub name: &'a str,
    /// The file type and permission bits, as `stat`'s `st_mode`.
    pub mode: u32,
    /// The file's contents (empty for a directory).
    pub data: &'a [u8],
}

impl Entry<'_> {
    /// Whether this is a regular file, which a program must be.
    pub fn is_regular_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    /// Whether this is a directory.
    pub fn is_directory(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// What is wrong with an archive, and at which byte the entry holding the
/// problem starts (counted from the archive's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveError {
    /// The entry does not start with "070701" or "070702".
    BadMagic { offset: usize, magic: [u8; MAGIC_LEN] },
    /// The archive ends inside the entry's `part` (or, when `available` is 0
    /// and `part` is the header, where an entry or the trailer should start).
    Truncated { offset: usize, part: Part, needed: usize, available: usize },
    /// A header field is not 8 hex digits.
    BadNumber { offset: usize, field: &'static str, text: [u8; FIELD_LEN] },
    /// The name has no NUL at its end, holds a NUL inside, or is not UTF-8.
    BadName { offset: usize, problem: &'static str },
}

/// The part of an entry that the archive ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Header,
    Name,
    Data,
}

impl fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Self::BadMagic { offset, magic } => write!(
                f,
                "ramdisk: entry at byte {offset}: bad magic {}, not a cpio newc archive",
                magic.escape_ascii()
            ),
            Self::Truncated { offset, part: Part::Header, available: 0, .. } => {
                write!(f, "ramdisk: entry at byte {offset}: the archive ends without {TRAILER}")
            }
            Self::Truncated { offset, part, needed, available } => {
                let part = match part {
                    Part::Header => "header",
                    Part::Name => "name",
                    Part::Data => "data",
                };
                write!(
                    f,
                    "ramdisk: entry at byte {offset}: truncated {part}: \
                     needs {needed} bytes, the archive has {available} left"
                )
            }
            Self::BadNumber { offset, field, text } => write!(
                f,
                "ramdisk: entry at byte {offset}: field {field} is \"{}\", not 8 hex digits",
                text.escape_ascii()
            ),
            Self::BadName { offset, problem } => {
                write!(f, "ramdisk: entry at byte {offset}: bad name: {problem}")
            }
        }
    }
}

impl<'a> Archive<'a> {
    /// The archive in `bytes`, which start where the first header starts.
    /// Nothing is checked until the entries are read.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// The entries in archive order, up to (and without) `TRAILER!!!`. An
    /// error is the last item: after a damaged entry nothing is known about
    /// where the next one starts.
    pub fn entries(&self) -> Entries<'a> {
        Entries { bytes: self.bytes, offset: 0, finished: false }
    }

    /// The entry named `name` (compared after removing a leading `./` or
    /// `/` from both), or None if the archive has none. An error is returned
    /// only if the archive is damaged before such an entry.
    pub fn find(&self, name: &str) -> Result<Option<Entry<'a>>, ArchiveError> {
        let name = normalise(name);
        for entry in self.entries() {
            let entry = entry?;
            if entry.name == name {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// The regular files, which are the candidates for programs: directories
    /// and device nodes are left out. Errors are passed through.
    pub fn programs(&self) -> impl Iterator<Item = Result<Entry<'a>, ArchiveError>> + use<'a> {
        self.entries().filter(|entry| match entry {
            Ok(entry) => entry.is_regular_file(),
            Err(_) => true,
        })
    }
}

/// The iterator of [`Archive::entries`].
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    bytes: &'a [u8],
    /// Where the next header starts.
    offset: usize,
    /// Set after the trailer or an error.
    finished: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>, ArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            let (entry, next) = match read_entry(self.bytes, self.offset) {
                Ok(found) => found,
                Err(error) => {
                    self.finished = true;
                    return Some(Err(error));
                }
            };
            self.offset = next;
            if entry.name == TRAILER {
                self.finished = true;
                break;
            }
            // An empty name or "." is the archive's own top directory: skipped.
            let name = normalise(entry.name);
            if !name.is_empty() && name != "." {
                return Some(Ok(Entry { name, ..entry }));
            }
        }
        None
    }
}

/// The name without any leading `./` or `/`.
fn normalise(mut name: &str) -> &str {
    while let Some(rest) = name.strip_prefix("./").or_else(|| name.strip_prefix('/')) {
        name = rest;
    }
    name
}

/// The entry whose header starts at `offset`, with its name as stored, and
/// the offset of the next header.
fn read_entry(bytes: &[u8], offset: usize) -> Result<(Entry<'_>, usize), ArchiveError> {
    let header = take(bytes, offset, offset, HEADER_LEN, Part::Header)?;
    let mut magic = [0; MAGIC_LEN];
    magic.copy_from_slice(&header[..MAGIC_LEN]);
    if &magic != MAGIC && &magic != MAGIC_WITH_CHECKSUM {
        return Err(ArchiveError::BadMagic { offset, magic });
    }
    // Only three fields matter here, but a header with any field that is
    // not a number is not to be trusted for those three either.
    let mut fields = [0; FIELDS.len()];
    for (index, field) in fields.iter_mut().enumerate() {
        *field = read_field(header, index, offset)?;
    }
    let mode = fields[MODE];
    let filesize = fields[FILESIZE] as usize;
    let namesize = fields[NAMESIZE] as usize;

    let name_start = offset + HEADER_LEN;
    let name = read_name(take(bytes, offset, name_start, namesize, Part::Name)?, offset)?;
    let data_start = align4(name_start + namesize);
    let data = take(bytes, offset, data_start, filesize, Part::Data)?;
    let next = align4(data_start + filesize);
    Ok((Entry { name, mode, data }, next))
}

/// `len` bytes at `start`, or the error of the entry at `entry` being cut
/// short in `part`. The padding before `start` is included in the check: an
/// archive cut inside it is truncated too.
fn take(
    bytes: &[u8],
    entry: usize,
    start: usize,
    len: usize,
    part: Part,
) -> Result<&[u8], ArchiveError> {
    let truncated = || ArchiveError::Truncated {
        offset: entry,
        part,
        needed: len,
        available: bytes.len().saturating_sub(start),
    };
    let end = start.checked_add(len).ok_or_else(truncated)?;
    bytes.get(start..end).ok_or_else(truncated)
}

/// Header field number `index` (0 is `ino`), 8 hex digits after the magic.
fn read_field(header: &[u8], index: usize, offset: usize) -> Result<u32, ArchiveError> {
    let start = MAGIC_LEN + index * FIELD_LEN;
    let mut text = [0; FIELD_LEN];
    text.copy_from_slice(&header[start..start + FIELD_LEN]);
    // Eight hex digits fill a u32 exactly, so the value cannot overflow.
    let value = text.iter().try_fold(0, |value: u32, &digit| {
        let digit = char::from(digit).to_digit(16)?;
        Some(value << 4 | digit)
    });
    value.ok_or(ArchiveError::BadNumber { offset, field: FIELDS[index], text })
}

/// The name stored in `raw` (`namesize` bytes, a NUL last), as text.
fn read_name(raw: &[u8], offset: usize) -> Result<&str, ArchiveError> {
    let bad_name = |problem| ArchiveError::BadName { offset, problem };
    let Some((&0, name)) = raw.split_last() else {
        return Err(bad_name("it does not end with a NUL byte"));
    };
    if name.contains(&0) {
        return Err(bad_name("it holds a NUL byte before its end"));
    }
    core::str::from_utf8(name).map_err(|_| bad_name("it is not UTF-8"))
}

/// `n` rounded up to a multiple of 4.
fn align4(n: usize) -> usize {
    n.next_multiple_of(4)
}

#[cfg(not(target_os = "none"))]
pub use writer::write_newc;

/// The writer, for the host only (see the module comment).
#[cfg(not(target_os = "none"))]
mod writer {
    use alloc::vec::Vec;

    use super::{HEADER_LEN, MAGIC, TRAILER, align4};

    /// An archive holding `files`, each (name, mode, data), in that order,
    /// then the trailer: what `cpio -o -H newc` writes, so Linux unpacks it
    /// as an initramfs. Inode numbers count up from 1; every file has one
    /// link, owner 0:0 and time 0, so the same files give the same bytes.
    ///
    /// Linux creates no parent directories when it unpacks: a name with a
    /// `/` needs its directories listed first, with mode `S_IFDIR | 0o755`.
    ///
    /// # Panics
    ///
    /// If a name is empty or holds a NUL byte, or a file does not fit the
    /// format's 32-bit sizes: the build script's own files, so a bug.
    pub fn write_newc(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut archive = Vec::new();
        for (index, &(name, mode, data)) in files.iter().enumerate() {
            assert!(!name.is_empty() && !name.contains('\0'), "cpio: bad name {name:?}");
            let inode = u32::try_from(index + 1).expect("cpio: too many files");
            write_entry(&mut archive, inode, mode, name, data);
        }
        // The trailer, as GNU cpio writes it: everything 0 but the link count.
        write_entry(&mut archive, 0, 0, TRAILER, &[]);
        archive
    }

    fn write_entry(archive: &mut Vec<u8>, inode: u32, mode: u32, name: &str, data: &[u8]) {
        let size = |len: usize| u32::try_from(len).expect("cpio: a file of 4 GiB or more");
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            size(data.len()),
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            size(name.len() + 1),
            0, // check: no checksum in "070701" archives
        ];
        let start = archive.len();
        archive.extend_from_slice(MAGIC);
        for field in fields {
            push_hex(archive, field);
        }
        debug_assert_eq!(archive.len() - start, HEADER_LEN);
        archive.extend_from_slice(name.as_bytes());
        archive.push(0);
        pad4(archive);
        archive.extend_from_slice(data);
        pad4(archive);
    }

    /// `value` as 8 upper-case hex digits, as Linux's usr/gen_init_cpio.c
    /// writes them.
    fn push_hex(archive: &mut Vec<u8>, value: u32) {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        for shift in (0..32).step_by(4).rev() {
            archive.push(DIGITS[(value >> shift) as usize & 0xf]);
        }
    }

    fn pad4(archive: &mut Vec<u8>) {
        archive.resize(align4(archive.len()), 0);
    }
}
