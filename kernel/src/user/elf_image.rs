//! From a program's ELF file to a load plan: which pages to map with which
//! permissions, and which bytes of the file to copy into each.
//!
//! **What an ELF executable says.** The ELF specification (the System V ABI's
//! generic part, "gABI", chapter 5 "Program Loading and Dynamic Linking")
//! gives a program two views. Sections are for the linker; *program headers*
//! are for the loader. Each program header describes a segment; a `PT_LOAD`
//! one says: take `p_filesz` bytes at file offset `p_offset`, place them at
//! virtual address `p_vaddr`, and follow them with zeros up to `p_memsz`
//! bytes (that tail is `.bss`, uninitialised data), readable, writable
//! and/or executable as `p_flags` says (`PF_R`, `PF_W`, `PF_X`). The file
//! header gives the entry point (`e_entry`), where the program starts.
//!
//! **What this kernel runs.** Statically linked, position-dependent x86_64
//! programs: what `musl-gcc -static -no-pie` makes. That rules out
//! - `ET_DYN` files: position-independent executables (gcc's default) are
//!   meant to be placed at an address of the loader's choosing and relocated;
//! - a `PT_INTERP` segment: it names the dynamic linker (`ld-musl-x86_64.so.1`)
//!   that would have to be loaded to link the program against shared
//!   libraries, and there are none.
//!
//! `PT_TLS` is fine: in a static program musl sets up thread-local storage
//! itself, from the template it finds through `AT_PHDR`. Other segment
//! types (`PT_GNU_STACK`, `PT_GNU_RELRO`, `PT_NOTE`) need nothing here.
//!
//! **Why pages need care.** `p_vaddr` need not be page-aligned (musl's
//! data segment starts at 0x406fc0), so two segments may share a page: the
//! end of read-only data and the start of writable data. Linux maps each
//! segment's pages from the file and lets the last mapping win; this kernel
//! copies instead, so a shared page gets one frame holding both segments'
//! bytes, with the union of their permissions. [`LoadPlan::pages`] lists
//! each page once, with its permissions and copies, so the loader is a loop:
//! allocate a frame, [`PagePlan::fill`] it, map it. Bytes of a page that no
//! segment's file part covers are zero (Linux would show the file's
//! neighbouring bytes there; no program may rely on either).
//!
//! **AT_PHDR.** The C library finds the program headers in memory through
//! the auxiliary vector (see `initial_stack`). Their address is `PT_PHDR`'s
//! `p_vaddr` when the file has one; otherwise (musl's static programs) it is
//! inside the `PT_LOAD` whose file bytes hold the table, as Linux's
//! fs/binfmt_elf.c `load_elf_binary` computes it.
//!
//! Parsing is the `elf` crate's (see `symbols::elf_functions` for the
//! choice); this file checks what a loader needs beyond a well-formed file.
//! It uses only `core`, `alloc` and `elf`, nothing of the kernel's, so the
//! host unit tests (kernel-logic/tests/user_elf_image.rs) compile it.

use alloc::vec::Vec;
use core::fmt;

use elf::ElfBytes;
use elf::ParseError;
use elf::abi;
use elf::endian::LittleEndian;
use elf::segment::ProgramHeader;

/// The size of the pages the plan is made of.
pub const PAGE_SIZE: u64 = 4096;

/// What the loader does with a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    /// Where the program starts (`e_entry`).
    pub entry: u64,
    /// The `PT_LOAD` segments that occupy memory, by address; they share no
    /// byte.
    pub segments: Vec<Segment>,
    /// Where the program headers are in the program's memory, for
    /// `AT_PHDR`; None if no segment loads them.
    pub phdr_address: Option<u64>,
    /// The size of a program header (`AT_PHENT`).
    pub phent: u64,
    /// The number of program headers (`AT_PHNUM`).
    pub phnum: u64,
    /// The page-aligned end of the highest segment: where the heap that
    /// `brk` grows starts.
    pub brk_start: u64,
}

/// One `PT_LOAD` segment, as its program header gives it: `p_vaddr`,
/// `p_memsz`, `p_offset`, `p_filesz`, and the `PF_R`, `PF_W`, `PF_X` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub file_offset: u64,
    pub filesz: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// The address just past the segment.
    pub fn end(&self) -> u64 {
        self.vaddr + self.memsz
    }

    /// The first page the segment touches.
    pub fn first_page(&self) -> u64 {
        page_down(self.vaddr)
    }

    /// The address just past the last page the segment touches.
    pub fn end_page(&self) -> u64 {
        page_up(self.end()).expect("`plan` refuses a segment whose last page overflows")
    }

    fn contains(&self, address: u64) -> bool {
        (self.vaddr..self.end()).contains(&address)
    }

    /// The addresses the file's bytes are copied to; the rest is zero.
    fn file_part(&self) -> core::ops::Range<u64> {
        self.vaddr..self.vaddr + self.filesz
    }
}

/// Why a file cannot be run. Segments are named by their `p_vaddr`.
#[derive(Debug)]
pub enum ElfError {
    /// The file does not start with the ELF magic.
    NotElf,
    /// A 32-bit or big-endian file (`e_ident[EI_CLASS]`, `[EI_DATA]`).
    NotElf64LittleEndian { class: u8, data: u8 },
    /// The `elf` crate could not read the file header or the program headers.
    Malformed(ParseError),
    /// Built for another CPU (`e_machine`).
    WrongMachine { machine: u16 },
    /// `ET_DYN`: a position-independent executable.
    PositionIndependent,
    /// Neither `ET_EXEC` nor `ET_DYN` (`e_type`).
    NotExecutable { elf_type: u16 },
    /// A `PT_INTERP` segment asks for a dynamic linker.
    DynamicallyLinked,
    /// No `PT_LOAD` segment occupies memory.
    NoLoadSegment,
    /// A segment has more bytes in the file than in memory.
    FileSizeAboveMemorySize { vaddr: u64, filesz: u64, memsz: u64 },
    /// A segment's bytes lie (partly) beyond the end of the file.
    PastEndOfFile { vaddr: u64, file_offset: u64, filesz: u64, file_len: u64 },
    /// A segment's end, or the end of its last page, is beyond 2^64.
    AddressOverflow { vaddr: u64, memsz: u64 },
    /// A segment's pages are not all inside user memory.
    OutsideUserRange { vaddr: u64, memsz: u64, user_start: u64, user_end: u64 },
    /// Two segments share bytes: each is `(start, end)`.
    Overlap { first: (u64, u64), second: (u64, u64) },
    /// The entry point is in no executable segment.
    EntryNotExecutable { entry: u64 },
    /// `PT_PHDR` names an address where no segment loads the headers.
    PhdrNotLoaded { address: u64 },
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match *self {
            Self::NotElf => f.write_str("not an ELF file: it does not start with 0x7f 'E' 'L' 'F'"),
            Self::NotElf64LittleEndian { class, data } => write!(
                f,
                "not a 64-bit little-endian ELF file: class {class}, data {data} \
                 (x86_64 needs class 2, ELFCLASS64, and data 1, ELFDATA2LSB)"
            ),
            Self::Malformed(ref error) => write!(f, "malformed ELF file: {error}"),
            Self::WrongMachine { machine } => write!(
                f,
                "built for machine {machine}, not x86_64 (EM_X86_64 = {})",
                abi::EM_X86_64
            ),
            Self::PositionIndependent => f.write_str(
                "a position-independent executable (ET_DYN): build with -static -no-pie",
            ),
            Self::NotExecutable { elf_type } => write!(
                f,
                "ELF type {elf_type} ({}) is not an executable (ET_EXEC)",
                match elf_type {
                    abi::ET_REL => "ET_REL, an object file to link",
                    abi::ET_CORE => "ET_CORE, a core dump",
                    _ => "unknown",
                }
            ),
            Self::DynamicallyLinked => {
                f.write_str("dynamically linked: needs PT_INTERP; build with -static")
            }
            Self::NoLoadSegment => f.write_str("no PT_LOAD segment: nothing to load"),
            Self::FileSizeAboveMemorySize { vaddr, filesz, memsz } => write!(
                f,
                "the segment at {vaddr:#x} has more bytes in the file ({filesz:#x}) \
                 than in memory ({memsz:#x})"
            ),
            Self::PastEndOfFile { vaddr, file_offset, filesz, file_len } => write!(
                f,
                "the segment at {vaddr:#x} reads file bytes {file_offset:#x} + {filesz:#x}, \
                 past the end of the {file_len:#x}-byte file"
            ),
            Self::AddressOverflow { vaddr, memsz } => write!(
                f,
                "the segment at {vaddr:#x} of {memsz:#x} bytes runs past the end of the \
                 address space"
            ),
            Self::OutsideUserRange { vaddr, memsz, user_start, user_end } => write!(
                f,
                "the segment at {vaddr:#x} of {memsz:#x} bytes is outside user memory \
                 [{user_start:#x}, {user_end:#x})"
            ),
            Self::Overlap { first, second } => write!(
                f,
                "segments [{:#x}, {:#x}) and [{:#x}, {:#x}) overlap",
                first.0, first.1, second.0, second.1
            ),
            Self::EntryNotExecutable { entry } => {
                write!(f, "the entry point {entry:#x} is not inside an executable PT_LOAD segment")
            }
            Self::PhdrNotLoaded { address } => write!(
                f,
                "PT_PHDR puts the program headers at {address:#x}, which no PT_LOAD \
                 segment loads from the file"
            ),
        }
    }
}

/// Checks that `bytes` is a static x86_64 executable whose segments lie in
/// `[user_start, user_end)` (both page-aligned), and returns how to load it.
pub fn plan(bytes: &[u8], user_start: u64, user_end: u64) -> Result<LoadPlan, ElfError> {
    let elf = parse(bytes)?;
    let header = &elf.ehdr;
    if header.e_machine != abi::EM_X86_64 {
        return Err(ElfError::WrongMachine { machine: header.e_machine });
    }
    match header.e_type {
        abi::ET_EXEC => {}
        abi::ET_DYN => return Err(ElfError::PositionIndependent),
        elf_type => return Err(ElfError::NotExecutable { elf_type }),
    }
    let headers: Vec<ProgramHeader> =
        elf.segments().map_or(Vec::new(), |table| table.iter().collect());
    if headers.iter().any(|header| header.p_type == abi::PT_INTERP) {
        return Err(ElfError::DynamicallyLinked);
    }

    let mut segments = Vec::new();
    for header in headers.iter().filter(|header| header.p_type == abi::PT_LOAD) {
        let segment = check_segment(header, bytes.len() as u64, user_start, user_end)?;
        // An empty segment occupies nothing; Linux maps nothing for it either.
        if segment.memsz > 0 {
            segments.push(segment);
        }
    }
    // The gABI asks for PT_LOAD entries sorted by address; sorting costs
    // nothing and makes the overlap check a look at neighbours.
    segments.sort_by_key(|segment| segment.vaddr);
    check_no_overlap(&segments)?;
    let Some(last) = segments.last() else {
        return Err(ElfError::NoLoadSegment);
    };
    let brk_start = last.end_page();

    let entry = header.e_entry;
    if !segments.iter().any(|segment| segment.executable && segment.contains(entry)) {
        return Err(ElfError::EntryNotExecutable { entry });
    }

    let phent = u64::from(header.e_phentsize);
    let phnum = headers.len() as u64;
    let table_len = phent * phnum;
    let phdr_address = match headers.iter().find(|header| header.p_type == abi::PT_PHDR) {
        Some(phdr) => Some(loaded_phdr(&segments, phdr.p_vaddr, table_len)?),
        None => phdr_in_load(&headers, header.e_phoff, table_len),
    };

    Ok(LoadPlan { entry, segments, phdr_address, phent, phnum, brk_start })
}

/// The file header parsed, once it is known to be a 64-bit little-endian
/// ELF file (the `elf` crate would read a 32-bit one just as well).
fn parse(bytes: &[u8]) -> Result<ElfBytes<'_, LittleEndian>, ElfError> {
    if bytes.get(..abi::ELFMAGIC.len()) != Some(&abi::ELFMAGIC[..]) {
        return Err(ElfError::NotElf);
    }
    // A file too short to hold these bytes is the parser's to report.
    if let (Some(&class), Some(&data)) = (bytes.get(abi::EI_CLASS), bytes.get(abi::EI_DATA))
        && (class != abi::ELFCLASS64 || data != abi::ELFDATA2LSB)
    {
        return Err(ElfError::NotElf64LittleEndian { class, data });
    }
    ElfBytes::minimal_parse(bytes).map_err(ElfError::Malformed)
}

/// A `PT_LOAD` header as a [`Segment`], checked on its own: sizes, file
/// range, and its pages inside user memory.
fn check_segment(
    header: &ProgramHeader,
    file_len: u64,
    user_start: u64,
    user_end: u64,
) -> Result<Segment, ElfError> {
    let (vaddr, memsz, file_offset, filesz) =
        (header.p_vaddr, header.p_memsz, header.p_offset, header.p_filesz);
    if filesz > memsz {
        return Err(ElfError::FileSizeAboveMemorySize { vaddr, filesz, memsz });
    }
    if file_offset.checked_add(filesz).is_none_or(|end| end > file_len) {
        return Err(ElfError::PastEndOfFile { vaddr, file_offset, filesz, file_len });
    }
    let Some(end_page) = vaddr.checked_add(memsz).and_then(page_up) else {
        return Err(ElfError::AddressOverflow { vaddr, memsz });
    };
    if memsz > 0 && (page_down(vaddr) < user_start || end_page > user_end) {
        return Err(ElfError::OutsideUserRange { vaddr, memsz, user_start, user_end });
    }
    Ok(Segment {
        vaddr,
        memsz,
        file_offset,
        filesz,
        readable: header.p_flags & abi::PF_R != 0,
        writable: header.p_flags & abi::PF_W != 0,
        executable: header.p_flags & abi::PF_X != 0,
    })
}

/// Segments sorted by address may share a page, but not a byte.
fn check_no_overlap(segments: &[Segment]) -> Result<(), ElfError> {
    for pair in segments.windows(2) {
        let (first, second) = (&pair[0], &pair[1]);
        if first.end() > second.vaddr {
            return Err(ElfError::Overlap {
                first: (first.vaddr, first.end()),
                second: (second.vaddr, second.end()),
            });
        }
    }
    Ok(())
}

/// `address`, where PT_PHDR puts the `table_len`-byte program header table,
/// if a segment copies it there from the file (the gABI: PT_PHDR "may occur
/// only if the program header table is part of the memory image").
fn loaded_phdr(segments: &[Segment], address: u64, table_len: u64) -> Result<u64, ElfError> {
    let end = address.checked_add(table_len);
    let loaded = segments.iter().any(|segment| {
        let part = segment.file_part();
        part.start <= address && end.is_some_and(|end| end <= part.end)
    });
    if loaded { Ok(address) } else { Err(ElfError::PhdrNotLoaded { address }) }
}

/// Where the table at file offset `phoff` lands, if a PT_LOAD's file bytes
/// hold all of it.
fn phdr_in_load(headers: &[ProgramHeader], phoff: u64, table_len: u64) -> Option<u64> {
    let table_end = phoff.checked_add(table_len)?;
    headers.iter().find_map(|header| {
        let holds_table = header.p_type == abi::PT_LOAD
            && header.p_offset <= phoff
            && table_end <= header.p_offset + header.p_filesz;
        holds_table.then(|| header.p_vaddr + (phoff - header.p_offset))
    })
}

fn page_down(address: u64) -> u64 {
    address & !(PAGE_SIZE - 1)
}

fn page_up(address: u64) -> Option<u64> {
    address.checked_next_multiple_of(PAGE_SIZE)
}

impl LoadPlan {
    /// The pages to map, by increasing address, each once. The loader is
    /// then one loop:
    ///
    /// ```text
    /// for page in plan.pages():
    ///     frame = a new frame
    ///     page.fill(file, the frame's bytes)
    ///     map page.address to frame for user mode, with page's permissions
    /// ```
    pub fn pages(&self) -> Pages<'_> {
        Pages { remaining: &self.segments, next_page: 0 }
    }
}

/// The iterator of [`LoadPlan::pages`].
#[derive(Clone, Debug)]
pub struct Pages<'a> {
    /// The segments from the first one that may touch `next_page` on.
    remaining: &'a [Segment],
    /// No page below this is left to list.
    next_page: u64,
}

impl<'a> Iterator for Pages<'a> {
    type Item = PagePlan<'a>;

    fn next(&mut self) -> Option<PagePlan<'a>> {
        while let [first, rest @ ..] = self.remaining
            && first.end_page() <= self.next_page
        {
            self.remaining = rest;
        }
        let first = self.remaining.first()?;
        let address = self.next_page.max(first.first_page());
        // Sorted and disjoint, the segments touching this page are the ones
        // from `first` on that start below its end.
        let touching = self.remaining.iter().take_while(|s| s.vaddr < address + PAGE_SIZE).count();
        let segments = &self.remaining[..touching];
        self.next_page = address + PAGE_SIZE;
        Some(PagePlan {
            address,
            readable: segments.iter().any(|segment| segment.readable),
            writable: segments.iter().any(|segment| segment.writable),
            executable: segments.iter().any(|segment| segment.executable),
            segments,
        })
    }
}

/// One page of the program: where, with which permissions (the union of
/// those of the segments in it), and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagePlan<'a> {
    pub address: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    /// The segments with bytes in this page.
    segments: &'a [Segment],
}

/// File bytes `[file_offset, file_offset + len)` go to the page's bytes
/// `[page_offset, page_offset + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageCopy {
    pub page_offset: usize,
    pub file_offset: usize,
    pub len: usize,
}

impl<'a> PagePlan<'a> {
    /// The copies from the file into this page, by page offset; the bytes
    /// they leave out are zero.
    pub fn copies(&self) -> impl Iterator<Item = PageCopy> + use<'a> {
        let page = self.address..self.address + PAGE_SIZE;
        self.segments.iter().filter_map(move |segment| {
            let part = segment.file_part();
            let start = part.start.max(page.start);
            let end = part.end.min(page.end);
            (start < end).then(|| PageCopy {
                page_offset: (start - page.start) as usize,
                file_offset: (segment.file_offset + (start - segment.vaddr)) as usize,
                len: (end - start) as usize,
            })
        })
    }

    /// Writes the page's contents into `page`: the copies from `file`, which
    /// must be the file the plan was made from, and zeros elsewhere.
    pub fn fill(&self, file: &[u8], page: &mut [u8; PAGE_SIZE as usize]) {
        page.fill(0);
        for copy in self.copies() {
            page[copy.page_offset..][..copy.len]
                .copy_from_slice(&file[copy.file_offset..][..copy.len]);
        }
    }
}
