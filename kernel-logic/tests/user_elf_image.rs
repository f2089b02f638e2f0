//! ELF executables checked and planned for loading
//! (kernel/src/user/elf_image.rs): files built here byte by byte for each
//! refusal and for the page arithmetic, and real programs built by musl-gcc.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use kernel_logic::elf_image::{ElfError, LoadPlan, PAGE_SIZE, Segment, plan};

/// The user address range the kernel gives programs: page 0 stays unmapped,
/// and so does the last page below the canonical hole
/// (`arch::x86::syscall::USER_END`).
const USER_START: u64 = 0x1000;
const USER_END: u64 = 0x0000_7fff_ffff_f000;

const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_TLS: u32 = 7;
const PT_GNU_STACK: u32 = 0x6474_e551;
const R: u32 = 4;
const W: u32 = 2;
const X: u32 = 1;

/// The ELF header's size, and where the program headers start in these files.
const EHDR_LEN: u64 = 64;
const PHENT: u64 = 56;

/// One program header, as the test writes it.
#[derive(Clone, Copy)]
struct Phdr {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
}

fn load(flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Phdr {
    Phdr { kind: PT_LOAD, flags, offset, vaddr, filesz, memsz }
}

fn other(kind: u32, offset: u64, vaddr: u64, size: u64) -> Phdr {
    Phdr { kind, flags: R, offset, vaddr, filesz: size, memsz: size }
}

/// An ELF file as a builder: the header's fields, the program headers, and
/// the file's length (its bytes after the headers are a pattern, so that a
/// copy from the wrong offset shows).
#[derive(Clone)]
struct ElfFile {
    class: u8,
    data: u8,
    e_type: u16,
    machine: u16,
    entry: u64,
    phoff: u64,
    phdrs: Vec<Phdr>,
    len: usize,
}

impl ElfFile {
    fn new(entry: u64, phdrs: &[Phdr], len: usize) -> Self {
        Self {
            class: 2,
            data: 1,
            e_type: ET_EXEC,
            machine: EM_X86_64,
            entry,
            phoff: EHDR_LEN,
            phdrs: phdrs.to_vec(),
            len,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut file = vec![0x7f, b'E', b'L', b'F', self.class, self.data, 1, 0];
        file.resize(16, 0);
        file.extend(self.e_type.to_le_bytes());
        file.extend(self.machine.to_le_bytes());
        file.extend(1u32.to_le_bytes()); // e_version
        file.extend(self.entry.to_le_bytes());
        file.extend(self.phoff.to_le_bytes());
        file.extend(0u64.to_le_bytes()); // e_shoff: no sections
        file.extend(0u32.to_le_bytes()); // e_flags
        let phnum = self.phdrs.len() as u16;
        for half in [EHDR_LEN as u16, PHENT as u16, phnum, 64, 0, 0] {
            // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
            file.extend(half.to_le_bytes());
        }
        assert_eq!(file.len() as u64, EHDR_LEN);
        let mut table = Vec::new();
        for phdr in &self.phdrs {
            table.extend(phdr.kind.to_le_bytes());
            table.extend(phdr.flags.to_le_bytes());
            table.extend(phdr.offset.to_le_bytes());
            table.extend(phdr.vaddr.to_le_bytes());
            table.extend(phdr.vaddr.to_le_bytes()); // p_paddr
            table.extend(phdr.filesz.to_le_bytes());
            table.extend(phdr.memsz.to_le_bytes());
            table.extend(PAGE_SIZE.to_le_bytes()); // p_align
        }
        let length = self.len.max(file.len());
        file.extend((file.len()..length).map(|at| (at % 251) as u8 + 1));
        if self.phoff != 0 {
            let phoff = self.phoff as usize;
            file.resize(file.len().max(phoff + table.len()), 0);
            file[phoff..phoff + table.len()].copy_from_slice(&table);
        }
        file
    }

    fn plan(&self) -> Result<LoadPlan, ElfError> {
        plan(&self.bytes(), USER_START, USER_END)
    }
}

/// Like musl's static programs: R (holding the headers), RX, R, and RW at
/// an unaligned address with a .bss; plus GNU_STACK and TLS. Here the
/// read-only data reaches into the data segment's first page, so one page
/// holds two segments.
fn musl_like() -> ElfFile {
    ElfFile::new(
        0x40104b,
        &[
            load(R, 0, 0x400000, 0x190, 0x190),
            load(R | X, 0x1000, 0x401000, 0x3bb7, 0x3bb7),
            load(R, 0x5000, 0x405000, 0x1100, 0x1100),
            load(R | W, 0x6fc0, 0x406fc0, 0x150, 0x7f8),
            other(PT_GNU_STACK, 0, 0, 0),
            other(PT_TLS, 0x6fc0, 0x406fc0, 0x8),
        ],
        0x7110,
    )
}

/// The program's memory as the kernel would load it with the plan: page
/// address to (contents, readable, writable, executable).
type Memory = BTreeMap<u64, ([u8; PAGE_SIZE as usize], bool, bool, bool)>;

fn load_with(plan: &LoadPlan, file: &[u8]) -> Memory {
    let mut memory = Memory::new();
    for page in plan.pages() {
        assert_eq!(page.address % PAGE_SIZE, 0);
        let mut contents = [0xcc; PAGE_SIZE as usize];
        page.fill(file, &mut contents);
        let mapped = (contents, page.readable, page.writable, page.executable);
        assert!(memory.insert(page.address, mapped).is_none(), "page {:#x} twice", page.address);
    }
    memory
}

/// Checks `plan`'s pages against the definition, byte by byte: every page a
/// segment touches is there, with the union of the permissions of the
/// segments in it; each segment's bytes are its file bytes then zeros; the
/// rest of each page is zero. Pages come in increasing order.
fn check_pages(plan: &LoadPlan, file: &[u8]) -> Memory {
    let addresses: Vec<u64> = plan.pages().map(|page| page.address).collect();
    assert!(addresses.is_sorted(), "{addresses:x?}");
    let memory = load_with(plan, file);

    let mut expected_pages: BTreeMap<u64, (bool, bool, bool)> = BTreeMap::new();
    for segment in &plan.segments {
        for page in (segment.first_page()..segment.end_page()).step_by(PAGE_SIZE as usize) {
            let flags = expected_pages.entry(page).or_default();
            flags.0 |= segment.readable;
            flags.1 |= segment.writable;
            flags.2 |= segment.executable;
        }
    }
    let pages: BTreeMap<u64, (bool, bool, bool)> =
        memory.iter().map(|(&page, &(_, r, w, x))| (page, (r, w, x))).collect();
    assert_eq!(pages, expected_pages);

    for (&page, (contents, ..)) in &memory {
        for (at, &byte) in contents.iter().enumerate() {
            let address = page + at as u64;
            let expected =
                match plan.segments.iter().find(|s| (s.vaddr..s.end()).contains(&address)) {
                    Some(s) if address - s.vaddr < s.filesz => {
                        file[(s.file_offset + address - s.vaddr) as usize]
                    }
                    _ => 0,
                };
            assert_eq!(byte, expected, "byte at {address:#x}");
        }
    }
    memory
}

fn segment(flags: u32, file_offset: u64, vaddr: u64, filesz: u64, memsz: u64) -> Segment {
    Segment {
        vaddr,
        memsz,
        file_offset,
        filesz,
        readable: flags & R != 0,
        writable: flags & W != 0,
        executable: flags & X != 0,
    }
}

#[test]
fn a_musl_like_program_is_planned_segment_by_segment() {
    let file = musl_like();
    let plan = file.plan().unwrap();
    assert_eq!(plan.entry, 0x40104b);
    assert_eq!(
        plan.segments,
        [
            segment(R, 0, 0x400000, 0x190, 0x190),
            segment(R | X, 0x1000, 0x401000, 0x3bb7, 0x3bb7),
            segment(R, 0x5000, 0x405000, 0x1100, 0x1100),
            segment(R | W, 0x6fc0, 0x406fc0, 0x150, 0x7f8),
        ]
    );
    assert_eq!(plan.phdr_address, Some(0x400040), "the first segment loads the headers");
    assert_eq!((plan.phent, plan.phnum), (PHENT, 6));
    assert_eq!(plan.brk_start, 0x408000, "the page after .bss, which ends at 0x4077b8");
}

#[test]
fn pages_shared_by_two_segments_get_both_permissions_and_both_contents() {
    let file = musl_like();
    let bytes = file.bytes();
    let plan = file.plan().unwrap();
    let memory = check_pages(&plan, &bytes);
    let flags: Vec<(u64, bool, bool, bool)> =
        memory.iter().map(|(&page, &(_, r, w, x))| (page, r, w, x)).collect();
    assert_eq!(
        flags,
        [
            (0x400000, true, false, false),
            (0x401000, true, false, true),
            (0x402000, true, false, true),
            (0x403000, true, false, true),
            (0x404000, true, false, true),
            (0x405000, true, false, false),
            (0x406000, true, true, false), // the end of R data and the start of RW data
            (0x407000, true, true, false), // .data's end and .bss
        ]
    );
    let shared = plan.pages().find(|page| page.address == 0x406000).unwrap();
    let copies: Vec<_> = shared.copies().map(|c| (c.page_offset, c.file_offset, c.len)).collect();
    assert_eq!(copies, [(0, 0x6000, 0x100), (0xfc0, 0x6fc0, 0x40)]);
    let bss_page = plan.pages().last().unwrap();
    let copies: Vec<_> = bss_page.copies().map(|c| (c.page_offset, c.file_offset, c.len)).collect();
    assert_eq!(copies, [(0, 0x7000, 0x110)], "then zeros up to the end of .bss");
}

#[test]
fn unaligned_segments_and_bss_spanning_pages_are_copied_and_zeroed() {
    // A segment starting mid-page and ending mid-page several pages on; a
    // .bss of three pages after 5 file bytes; segments touching end to end
    // inside one page; a file offset not congruent to the address.
    let file = ElfFile::new(
        0x10_0123,
        &[
            load(R | X, 0x1234, 0x10_0100, 0x2345, 0x2345),
            load(R | W, 0x4001, 0x10_2445, 0x5, 0x3000),
            load(R, 0x77, 0x10_5445, 0x10, 0x10),
        ],
        0x5000,
    );
    let bytes = file.bytes();
    let plan = file.plan().unwrap();
    check_pages(&plan, &bytes);
    assert_eq!(plan.pages().count(), 6);
    assert_eq!(plan.brk_start, 0x10_6000);
    assert_eq!(plan.phdr_address, None, "no segment loads file offset 64");
}

#[test]
fn segments_are_taken_in_address_order_and_empty_ones_dropped() {
    let file = ElfFile::new(
        0x20_0000,
        &[
            load(R | W, 0x3000, 0x30_0000, 0x10, 0x10),
            load(R | X, 0, 0x20_0000, 0x1000, 0x1000),
            load(R, 0, 0x25_0000, 0, 0),
        ],
        0x4000,
    );
    let plan = file.plan().unwrap();
    let addresses: Vec<u64> = plan.segments.iter().map(|s| s.vaddr).collect();
    assert_eq!(addresses, [0x20_0000, 0x30_0000]);
    assert_eq!(plan.phdr_address, Some(0x20_0040));
    assert_eq!(plan.phnum, 3, "AT_PHNUM counts every header");
    check_pages(&plan, &file.bytes());
}

#[test]
fn pt_phdr_gives_the_headers_address_when_a_segment_loads_them() {
    let mut file = musl_like();
    file.phdrs.insert(0, other(PT_PHDR, EHDR_LEN, 0x400000 + EHDR_LEN, 7 * PHENT));
    // The first PT_LOAD grows to hold the seven headers.
    file.phdrs[1].filesz = 0x200;
    file.phdrs[1].memsz = 0x200;
    let plan = file.plan().unwrap();
    assert_eq!(plan.phdr_address, Some(0x400040));
    assert_eq!(plan.phnum, 7);
    // The loaded headers are the file's: what AT_PHDR shows the C library.
    let bytes = file.bytes();
    let memory = load_with(&plan, &bytes);
    let table = &memory[&0x400000].0[EHDR_LEN as usize..][..7 * PHENT as usize];
    assert_eq!(table, &bytes[EHDR_LEN as usize..][..7 * PHENT as usize]);

    file.phdrs[0].vaddr = 0x400170; // its end is past the first segment's 0x200 file bytes
    let error = file.plan().unwrap_err();
    assert!(matches!(error, ElfError::PhdrNotLoaded { address: 0x400170 }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "PT_PHDR puts the program headers at 0x400170, which no PT_LOAD segment loads from \
         the file"
    );
}

#[test]
fn pt_tls_and_other_segments_are_accepted() {
    let mut file = musl_like();
    file.phdrs.push(other(0x6474_e552, 0x6fc0, 0x406fc0, 0x40)); // PT_GNU_RELRO
    file.phdrs.push(other(4, 0x100, 0x400100, 0x20)); // PT_NOTE
    assert!(file.plan().is_ok());
}

/// The error `file` gives, and its message.
fn refusal(file: &ElfFile) -> (ElfError, String) {
    refusal_of(&file.bytes())
}

fn refusal_of(bytes: &[u8]) -> (ElfError, String) {
    let error = plan(bytes, USER_START, USER_END).unwrap_err();
    let message = error.to_string();
    (error, message)
}

#[test]
fn what_is_not_a_64_bit_little_endian_elf_file_is_refused() {
    for bytes in [&b""[..], b"\x7fEL", b"#!/bin/sh\necho hello\n", b"\0\0\0\0\0\0\0\0"] {
        let (error, message) = refusal_of(bytes);
        assert!(matches!(error, ElfError::NotElf), "{bytes:?}: {error:?}");
        assert_eq!(message, "not an ELF file: it does not start with 0x7f 'E' 'L' 'F'");
    }
    let mut file = musl_like();
    file.class = 1;
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::NotElf64LittleEndian { class: 1, data: 1 }));
    assert_eq!(
        message,
        "not a 64-bit little-endian ELF file: class 1, data 1 \
         (x86_64 needs class 2, ELFCLASS64, and data 1, ELFDATA2LSB)"
    );
    let mut file = musl_like();
    file.data = 2;
    assert!(matches!(refusal(&file).0, ElfError::NotElf64LittleEndian { class: 2, data: 2 }));
}

#[test]
fn a_malformed_file_is_refused_with_the_parser_s_reason() {
    let whole = musl_like().bytes();
    let (error, message) = refusal_of(&whole[..40]);
    assert!(matches!(error, ElfError::Malformed(_)), "{error:?}");
    assert!(message.starts_with("malformed ELF file: "), "{message}");

    let mut file = musl_like();
    file.phoff = 0x10_0000; // past the end of the file
    file.len = 0x7110;
    let bytes = &file.bytes()[..0x7110];
    assert!(matches!(refusal_of(bytes).0, ElfError::Malformed(_)));
}

#[test]
fn other_machines_and_file_types_are_refused() {
    let mut file = musl_like();
    file.machine = 3; // EM_386
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::WrongMachine { machine: 3 }));
    assert_eq!(message, "built for machine 3, not x86_64 (EM_X86_64 = 62)");

    let mut file = musl_like();
    file.e_type = ET_DYN;
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::PositionIndependent));
    assert_eq!(message, "a position-independent executable (ET_DYN): build with -static -no-pie");

    file.e_type = 1;
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::NotExecutable { elf_type: 1 }));
    assert_eq!(
        message,
        "ELF type 1 (ET_REL, an object file to link) is not an executable (ET_EXEC)"
    );
    file.e_type = 0xfe01;
    assert_eq!(refusal(&file).1, "ELF type 65025 (unknown) is not an executable (ET_EXEC)");
}

#[test]
fn a_program_asking_for_a_dynamic_linker_is_refused() {
    let mut file = musl_like();
    file.phdrs.insert(0, other(PT_INTERP, 0x100, 0x400100, 0x1a));
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::DynamicallyLinked));
    assert_eq!(message, "dynamically linked: needs PT_INTERP; build with -static");
}

#[test]
fn a_program_with_nothing_to_load_is_refused() {
    let mut file = ElfFile::new(0x401000, &[other(PT_GNU_STACK, 0, 0, 0)], 0x100);
    let (error, message) = refusal(&file);
    assert!(matches!(error, ElfError::NoLoadSegment));
    assert_eq!(message, "no PT_LOAD segment: nothing to load");
    file.phoff = 0; // no program header table at all
    assert!(matches!(refusal(&file).0, ElfError::NoLoadSegment));
    let only_empty = ElfFile::new(0x401000, &[load(R | X, 0, 0x401000, 0, 0)], 0x100);
    assert!(matches!(refusal(&only_empty).0, ElfError::NoLoadSegment));
}

#[test]
fn sizes_that_do_not_fit_the_file_are_refused() {
    let mut file = musl_like();
    file.phdrs[3].filesz = 0x800; // more than memsz 0x7f8
    let (error, message) = refusal(&file);
    assert!(matches!(
        error,
        ElfError::FileSizeAboveMemorySize { vaddr: 0x406fc0, filesz: 0x800, memsz: 0x7f8 }
    ));
    assert_eq!(
        message,
        "the segment at 0x406fc0 has more bytes in the file (0x800) than in memory (0x7f8)"
    );

    let mut file = musl_like();
    file.phdrs[3].filesz = 0x151; // one byte past the end of the 0x7110-byte file
    let (error, message) = refusal(&file);
    assert!(matches!(
        error,
        ElfError::PastEndOfFile {
            vaddr: 0x406fc0,
            file_offset: 0x6fc0,
            filesz: 0x151,
            file_len: 0x7110
        }
    ));
    assert_eq!(
        message,
        "the segment at 0x406fc0 reads file bytes 0x6fc0 + 0x151, past the end of the \
         0x7110-byte file"
    );
    file.phdrs[3].filesz = 0x150;
    file.phdrs[3].offset = u64::MAX - 0x10; // offset + filesz overflows
    assert!(matches!(refusal(&file).0, ElfError::PastEndOfFile { .. }));
}

#[test]
fn segments_outside_user_memory_are_refused() {
    let cases = [
        (0, 0x10),                  // page 0
        (0xfff, 0x10),              // in page 0, though it ends above it
        (USER_END - 0x10, 0x10),    // in the last allowed page: fine, see below
        (USER_END - 0x10, 0x11),    // one byte past the end
        (USER_END, 1),              // the first page above
        (0xffff_8000_0000_0000, 1), // the kernel's half
    ];
    for (vaddr, memsz) in cases {
        let file = ElfFile::new(vaddr, &[load(R | X, 0, vaddr, 0, memsz)], 0x1000);
        let result = file.plan();
        if vaddr == USER_END - 0x10 && memsz == 0x10 {
            assert!(result.is_ok(), "{vaddr:#x} + {memsz:#x}: {result:?}");
            continue;
        }
        let error = result.unwrap_err();
        assert!(
            matches!(error, ElfError::OutsideUserRange { vaddr: v, memsz: m, .. } if v == vaddr && m == memsz),
            "{vaddr:#x} + {memsz:#x}: {error:?}"
        );
    }
    let file = ElfFile::new(0x1000, &[load(R | X, 0, 0, 0, 0x10)], 0x1000);
    assert_eq!(
        refusal(&file).1,
        "the segment at 0x0 of 0x10 bytes is outside user memory [0x1000, 0x7ffffffff000)"
    );
}

#[test]
fn segments_that_wrap_around_the_address_space_are_refused() {
    for (vaddr, memsz) in [(u64::MAX - 0xf, 0x10), (u64::MAX - 0xf, 0x11), (0x1000, u64::MAX)] {
        let file = ElfFile::new(0x1000, &[load(R | X, 0, vaddr, 0, memsz)], 0x1000);
        let (error, message) = refusal(&file);
        assert!(
            matches!(error, ElfError::AddressOverflow { vaddr: v, memsz: m } if v == vaddr && m == memsz),
            "{vaddr:#x} + {memsz:#x}: {error:?}"
        );
        assert!(message.ends_with("runs past the end of the address space"), "{message}");
    }
}

#[test]
fn segments_sharing_a_byte_are_refused_but_sharing_a_page_is_fine() {
    let touching = ElfFile::new(
        0x401000,
        &[load(R | X, 0x1000, 0x401000, 0x800, 0x800), load(R | W, 0x1800, 0x401800, 0x10, 0x10)],
        0x2000,
    );
    assert_eq!(touching.plan().unwrap().pages().count(), 1);

    let mut overlapping = touching.clone();
    overlapping.phdrs[1].vaddr = 0x4017ff;
    let (error, message) = refusal(&overlapping);
    assert!(matches!(
        error,
        ElfError::Overlap { first: (0x401000, 0x401800), second: (0x4017ff, 0x40180f) }
    ));
    assert_eq!(message, "segments [0x401000, 0x401800) and [0x4017ff, 0x40180f) overlap");

    // The same address twice, listed in either order.
    let mut same = touching.clone();
    same.phdrs[1].vaddr = 0x401000;
    assert!(matches!(refusal(&same).0, ElfError::Overlap { .. }));
    same.phdrs.reverse();
    assert!(matches!(refusal(&same).0, ElfError::Overlap { .. }));

    // A .bss running into the next segment overlaps too.
    let mut bss = touching.clone();
    bss.phdrs[0].memsz = 0x801;
    assert!(matches!(refusal(&bss).0, ElfError::Overlap { .. }));
}

#[test]
fn the_entry_point_must_be_in_an_executable_segment() {
    for entry in [0x406fc0, 0x400000, 0x404bb7, 0x500000, 0] {
        let mut file = musl_like();
        file.entry = entry;
        let (error, message) = refusal(&file);
        assert!(matches!(error, ElfError::EntryNotExecutable { entry: e } if e == entry));
        assert_eq!(
            message,
            format!("the entry point {entry:#x} is not inside an executable PT_LOAD segment")
        );
    }
    let mut file = musl_like();
    file.entry = 0x404bb6; // the executable segment's last byte
    assert!(file.plan().is_ok());
}

/// `source` compiled by musl-gcc with `flags` into a temporary directory,
/// or None (with a note) when musl-gcc is not installed.
fn musl_gcc(test: &str, source: &str, flags: &[&str]) -> Option<(PathBuf, Vec<u8>)> {
    let dir = std::env::temp_dir().join(format!("kernel-logic-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let source_path = dir.join("program.c");
    std::fs::write(&source_path, source).unwrap();
    let program = dir.join("program");
    let output = match Command::new("musl-gcc")
        .args(flags)
        .arg("-o")
        .arg(&program)
        .arg(&source_path)
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            println!("note: musl-gcc is not installed (apt-get install musl-tools): skipped");
            std::fs::remove_dir_all(&dir).unwrap();
            return None;
        }
    };
    assert!(output.status.success(), "musl-gcc: {}", String::from_utf8_lossy(&output.stderr));
    let bytes = std::fs::read(&program).unwrap();
    Some((dir, bytes))
}

const HELLO: &str = r#"
#include <stdio.h>
#include <stdlib.h>

_Thread_local int counter = 5; /* a PT_TLS segment */
static char buffer[100000];    /* a large .bss */

int main(int argc, char **argv) {
    counter += argc;
    buffer[argc] = 1;
    printf("hello from user mode: argc=%d %d\n", argc, counter + buffer[1]);
    return argc > 1 ? atoi(argv[1]) : 0;
}
"#;

fn remove(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_static_musl_program_is_planned() {
    let Some((dir, bytes)) = musl_gcc("musl-static", HELLO, &["-static", "-no-pie", "-O2"]) else {
        return;
    };
    let plan = plan(&bytes, USER_START, USER_END).unwrap();
    remove(&dir);

    let entry_segment = plan.segments.iter().find(|s| (s.vaddr..s.end()).contains(&plan.entry));
    assert!(entry_segment.is_some_and(|s| s.executable), "{plan:#x?}");
    let phdr = plan.phdr_address.expect("AT_PHDR: musl finds PT_TLS through it");
    let table_len = plan.phent * plan.phnum;
    assert!(
        plan.segments.iter().any(|s| s.vaddr <= phdr && phdr + table_len <= s.vaddr + s.filesz),
        "{plan:#x?}"
    );
    assert_eq!(plan.phent, 56);
    assert_eq!(plan.phnum, u64::from(u16::from_le_bytes([bytes[56], bytes[57]])));
    assert!(plan.segments.iter().any(|s| s.memsz >= s.filesz + 100000), "the .bss");
    assert_eq!(plan.brk_start % PAGE_SIZE, 0);
    assert!(plan.segments.iter().all(|s| s.end() <= plan.brk_start));

    // Loaded, the program headers are where AT_PHDR says.
    let memory = check_pages(&plan, &bytes);
    let phoff = u64::from_le_bytes(bytes[32..40].try_into().unwrap()) as usize;
    let (page, offset) = (phdr & !(PAGE_SIZE - 1), (phdr % PAGE_SIZE) as usize);
    let loaded = &memory[&page].0[offset..offset + table_len as usize];
    assert_eq!(loaded, &bytes[phoff..phoff + table_len as usize]);
}

#[test]
fn musl_programs_built_without_static_are_refused() {
    let Some((dir, default)) = musl_gcc("musl-pie", HELLO, &["-O2"]) else {
        return;
    };
    remove(&dir);
    assert!(matches!(refusal_of(&default).0, ElfError::PositionIndependent));
    let Some((dir, dynamic)) = musl_gcc("musl-dynamic", HELLO, &["-no-pie", "-O2"]) else {
        return;
    };
    remove(&dir);
    assert!(matches!(refusal_of(&dynamic).0, ElfError::DynamicallyLinked));
}
