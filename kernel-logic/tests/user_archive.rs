//! The ramdisk's cpio newc archives (kernel/src/user/archive.rs): what the
//! writer makes the reader reads back, GNU cpio's archives read and ours
//! unpacked by it, and every kind of damage reported at the right byte.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use kernel_logic::archive::{Archive, ArchiveError, Entry, Part, S_IFDIR, S_IFREG, write_newc};

const PROGRAM: u32 = S_IFREG | 0o755;
const TEXT: u32 = S_IFREG | 0o644;
const DIRECTORY: u32 = S_IFDIR | 0o755;

/// The header's length, and the bytes of the trailer entry (header, the
/// 11-byte name padded to 124 - 110 bytes, no data).
const HEADER_LEN: usize = 110;
const TRAILER_ENTRY_LEN: usize = 124;

fn entries(archive: &[u8]) -> Vec<Result<Entry<'_>, ArchiveError>> {
    Archive::new(archive).entries().collect()
}

/// The bytes an entry with this name and data takes in an archive.
fn entry_len(name: &str, data_len: usize) -> usize {
    (HEADER_LEN + name.len() + 1).next_multiple_of(4) + data_len.next_multiple_of(4)
}

#[test]
fn what_is_written_reads_back_with_every_padding() {
    // Names of 1 to 8 bytes and data of 0 to 9 bytes put the name's and the
    // data's padding at every length modulo 4.
    let mut files = Vec::new();
    for name_len in 1..=8 {
        for data_len in 0..=9 {
            let name = format!("{data_len}{}", "n".repeat(name_len - 1));
            let data: Vec<u8> = (0..data_len as u8).map(|byte| byte.wrapping_mul(37) + 1).collect();
            let mode = if data_len % 2 == 0 { PROGRAM } else { TEXT };
            files.push((name, mode, data));
        }
    }
    let list: Vec<(&str, u32, &[u8])> =
        files.iter().map(|(name, mode, data)| (name.as_str(), *mode, data.as_slice())).collect();
    let archive = write_newc(&list);

    let expected_len: usize = files.iter().map(|(name, _, data)| entry_len(name, data.len())).sum();
    assert_eq!(archive.len(), expected_len + TRAILER_ENTRY_LEN);
    assert!(archive.ends_with(b"TRAILER!!!\0\0\0\0"), "the trailer ends the archive");
    let read: Vec<Entry> = entries(&archive).into_iter().map(Result::unwrap).collect();
    assert_eq!(read.len(), files.len());
    for (entry, (name, mode, data)) in read.iter().zip(&files) {
        assert_eq!((entry.name, entry.mode, entry.data), (name.as_str(), *mode, data.as_slice()));
        assert!(entry.is_regular_file() && !entry.is_directory());
    }
}

#[test]
fn the_header_fields_are_those_linux_expects() {
    let archive = write_newc(&[("init", PROGRAM, b"abc"), ("etc", DIRECTORY, b"")]);
    let header = std::str::from_utf8(&archive[..HEADER_LEN]).unwrap();
    let fields: Vec<&str> = (0..13).map(|index| &header[6 + 8 * index..][..8]).collect::<Vec<_>>();
    assert_eq!(&header[..6], "070701");
    // ino 1, mode, uid, gid, nlink 1, mtime, filesize 3, devices, namesize 5, check.
    assert_eq!(
        fields,
        [
            "00000001", "000081ED", "00000000", "00000000", "00000001", "00000000", "00000003",
            "00000000", "00000000", "00000000", "00000000", "00000005", "00000000"
        ]
    );
    let second = &archive[entry_len("init", 3)..];
    assert_eq!(&second[6..14], b"00000002", "inode numbers count up");
    assert_eq!(&second[14..22], b"000041ED");
}

#[test]
fn directories_are_entries_but_not_programs() {
    let archive = write_newc(&[
        ("bin", DIRECTORY, b""),
        ("bin/hello", PROGRAM, b"\x7fELF"),
        ("x", TEXT, b""),
    ]);
    let names: Vec<&str> = entries(&archive).into_iter().map(|entry| entry.unwrap().name).collect();
    assert_eq!(names, ["bin", "bin/hello", "x"]);
    let directory = Archive::new(&archive).find("bin").unwrap().unwrap();
    assert!(directory.is_directory() && !directory.is_regular_file());
    let programs: Vec<&str> =
        Archive::new(&archive).programs().map(|entry| entry.unwrap().name).collect();
    assert_eq!(programs, ["bin/hello", "x"]);
}

#[test]
fn names_lose_a_leading_dot_slash_or_slash_and_the_dot_entry_is_skipped() {
    let archive = write_newc(&[
        (".", DIRECTORY, b""),
        ("./hello", PROGRAM, b"h"),
        ("/abs", TEXT, b"a"),
        ("././twice", TEXT, b"t"),
        ("./", DIRECTORY, b""),
    ]);
    let names: Vec<&str> = entries(&archive).into_iter().map(|entry| entry.unwrap().name).collect();
    assert_eq!(names, ["hello", "abs", "twice"]);
    let archive = Archive::new(&archive);
    for query in ["hello", "./hello", "/hello"] {
        assert_eq!(archive.find(query).unwrap().unwrap().data, b"h", "{query}");
    }
    assert_eq!(archive.find("abs").unwrap().unwrap().data, b"a");
    assert_eq!(archive.find("nothing"), Ok(None));
}

#[test]
fn an_empty_archive_is_just_the_trailer() {
    let archive = write_newc(&[]);
    assert_eq!(archive.len(), TRAILER_ENTRY_LEN);
    assert!(entries(&archive).is_empty());
    assert_eq!(Archive::new(&archive).find("init"), Ok(None));
    assert_eq!(Archive::new(&archive).programs().count(), 0);
}

#[test]
fn nothing_after_the_trailer_is_read() {
    let mut archive = write_newc(&[("a", TEXT, b"1")]);
    archive.extend(b"garbage that is not an entry");
    assert_eq!(entries(&archive).len(), 1);
}

#[test]
fn the_checksum_variant_is_read_without_checking_the_sum() {
    let mut archive = write_newc(&[("a", TEXT, b"data"), ("b", PROGRAM, b"")]);
    for start in [0, entry_len("a", 4), entry_len("a", 4) + entry_len("b", 0)] {
        archive[start + 5] = b'2';
    }
    archive[HEADER_LEN - 1] = b'F'; // a wrong sum
    let names: Vec<&str> = entries(&archive).into_iter().map(|entry| entry.unwrap().name).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_bad_magic_is_reported_at_its_entry_and_ends_the_walk() {
    let mut archive = write_newc(&[("first", TEXT, b"12345"), ("second", TEXT, b"")]);
    let second = entry_len("first", 5);
    archive[second + 5] = b'X';
    let read = entries(&archive);
    assert_eq!(read.len(), 2, "the error is the last item: {read:?}");
    assert_eq!(read[0].unwrap().name, "first");
    let error = read[1].unwrap_err();
    assert_eq!(error, ArchiveError::BadMagic { offset: second, magic: *b"07070X" });
    assert_eq!(
        error.to_string(),
        format!("ramdisk: entry at byte {second}: bad magic 07070X, not a cpio newc archive")
    );
    assert_eq!(Archive::new(&archive).find("second"), Err(error));
    assert_eq!(Archive::new(&archive).find("first").unwrap().unwrap().data, b"12345");

    let not_cpio = b"\x7fELF\x02\x01\x01\0 and so on";
    let error = entries(not_cpio)[0].unwrap_err();
    assert_eq!(
        error.to_string(),
        "ramdisk: entry at byte 0: truncated header: needs 110 bytes, the archive has 18 left"
    );
    let mut long = not_cpio.to_vec();
    long.resize(200, b' ');
    let error = entries(&long)[0].unwrap_err();
    assert_eq!(
        error.to_string(),
        "ramdisk: entry at byte 0: bad magic \\x7fELF\\x02\\x01, not a cpio newc archive"
    );
}

#[test]
fn a_truncated_header_name_or_data_is_reported() {
    let archive = write_newc(&[("a", TEXT, b"xyz"), ("name", TEXT, b"0123456789")]);
    let second = entry_len("a", 3);
    let name_at = second + HEADER_LEN;
    let data_at = (name_at + 5).next_multiple_of(4);
    let cases = [
        (second + 50, Part::Header, HEADER_LEN, 50),
        (name_at + 2, Part::Name, 5, 2),
        (data_at - 1, Part::Data, 10, 0), // cut inside the name's padding
        (data_at + 7, Part::Data, 10, 7),
    ];
    for (len, part, needed, available) in cases {
        let read = entries(&archive[..len]);
        assert_eq!(read.len(), 2, "cut at {len}: {read:?}");
        assert_eq!(
            read[1],
            Err(ArchiveError::Truncated { offset: second, part, needed, available }),
            "cut at {len}"
        );
    }
    let error = entries(&archive[..data_at + 7])[1].unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "ramdisk: entry at byte {second}: truncated data: needs 10 bytes, the archive has 7 left"
        )
    );
}

#[test]
fn an_archive_without_its_trailer_ends_in_an_error_not_a_panic() {
    let archive = write_newc(&[("a", TEXT, b"1"), ("b", TEXT, b"22")]);
    let without_trailer = &archive[..archive.len() - TRAILER_ENTRY_LEN];
    let read = entries(without_trailer);
    assert_eq!(read.len(), 3);
    assert_eq!(read[1].unwrap().data, b"22");
    let end = without_trailer.len();
    let error = read[2].unwrap_err();
    assert_eq!(
        error,
        ArchiveError::Truncated {
            offset: end,
            part: Part::Header,
            needed: HEADER_LEN,
            available: 0
        }
    );
    assert_eq!(
        error.to_string(),
        format!("ramdisk: entry at byte {end}: the archive ends without TRAILER!!!")
    );
    assert_eq!(Archive::new(without_trailer).find("c"), Err(error));
    assert_eq!(
        entries(&[]),
        [Err(ArchiveError::Truncated {
            offset: 0,
            part: Part::Header,
            needed: HEADER_LEN,
            available: 0
        })]
    );
}

#[test]
fn a_field_that_is_not_hex_names_the_field() {
    let archive = write_newc(&[("a", TEXT, b"1")]);
    for (field, index, byte) in
        [("filesize", 6, b'g'), ("namesize", 11, b' '), ("mode", 1, b'-'), ("check", 12, b'x')]
    {
        let mut damaged = archive.clone();
        let at = 6 + 8 * index + 3;
        damaged[at] = byte;
        let mut text = [0; 8];
        text.copy_from_slice(&damaged[at - 3..][..8]);
        let read = entries(&damaged);
        // `check` is checked too, although its sum is never compared.
        assert_eq!(read, [Err(ArchiveError::BadNumber { offset: 0, field, text })], "{field}");
    }
    let mut damaged = archive.clone();
    damaged[6 + 8 * 6..][..8].copy_from_slice(b"0000001g");
    assert_eq!(
        entries(&damaged)[0].unwrap_err().to_string(),
        "ramdisk: entry at byte 0: field filesize is \"0000001g\", not 8 hex digits"
    );
    // Lower-case digits are hex digits too (Linux reads both).
    let mut lower = write_newc(&[("a", PROGRAM, b"")]);
    lower[6 + 8..][..8].copy_from_slice(b"000081ed");
    assert_eq!(entries(&lower)[0].unwrap().mode, PROGRAM);
}

#[test]
fn a_name_without_its_nul_or_not_utf8_is_refused() {
    let archive = write_newc(&[("abc", TEXT, b"")]);
    let name_at = HEADER_LEN;

    let mut no_nul = archive.clone();
    no_nul[name_at + 3] = b'd';
    let error = entries(&no_nul)[0].unwrap_err();
    assert_eq!(
        error.to_string(),
        "ramdisk: entry at byte 0: bad name: it does not end with a NUL byte"
    );

    let mut inner_nul = archive.clone();
    inner_nul[name_at + 1] = 0;
    assert!(matches!(entries(&inner_nul)[0], Err(ArchiveError::BadName { offset: 0, .. })));

    let mut not_utf8 = archive.clone();
    not_utf8[name_at] = 0xff;
    let error = entries(&not_utf8)[0].unwrap_err();
    assert_eq!(error.to_string(), "ramdisk: entry at byte 0: bad name: it is not UTF-8");

    let mut zero_size = archive.clone();
    zero_size[6 + 8 * 11..][..8].copy_from_slice(b"00000000");
    assert!(matches!(entries(&zero_size)[0], Err(ArchiveError::BadName { offset: 0, .. })));
}

/// A fresh, empty directory for one test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kernel-logic-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn have_cpio() -> bool {
    let found = Command::new("cpio").arg("--version").stdout(Stdio::null()).status().is_ok();
    if !found {
        println!("note: no `cpio` tool (apt-get install cpio): skipped");
    }
    found
}

/// What `cpio -o -H FORMAT` writes for `dir`, given the names `find .` lists.
fn gnu_cpio_archive(dir: &PathBuf, format: &str) -> Vec<u8> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(format!("find . | LC_ALL=C sort | cpio -o -H {format} --quiet"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "cpio: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

#[test]
fn archives_written_by_gnu_cpio_are_read() {
    use std::os::unix::fs::PermissionsExt;

    if !have_cpio() {
        return;
    }
    let dir = scratch_dir("gnu-cpio");
    std::fs::write(dir.join("hello"), b"\x7fELF program").unwrap();
    std::fs::set_permissions(dir.join("hello"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(dir.join("sub/odd"), b"seven b").unwrap();
    std::fs::set_permissions(dir.join("sub/odd"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::set_permissions(dir.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();

    for format in ["newc", "crc"] {
        let bytes = gnu_cpio_archive(&dir, format);
        assert!(bytes.starts_with(if format == "newc" { b"070701" } else { b"070702" }));
        let archive = Archive::new(&bytes);
        let read: Vec<(&str, u32, &[u8])> = archive
            .entries()
            .map(|entry| entry.unwrap())
            .map(|entry| (entry.name, entry.mode, entry.data))
            .collect();
        assert_eq!(
            read,
            [
                ("empty", S_IFREG | 0o600, &b""[..]),
                ("hello", S_IFREG | 0o755, b"\x7fELF program"),
                ("sub", S_IFDIR | 0o750, b""),
                ("sub/odd", S_IFREG | 0o640, b"seven b"),
            ],
            "{format}: the names were ./empty, ./hello, ... and the dot entry is skipped"
        );
        let programs: Vec<&str> = archive.programs().map(|entry| entry.unwrap().name).collect();
        assert_eq!(programs, ["empty", "hello", "sub/odd"]);
        assert_eq!(archive.find("./sub/odd").unwrap().unwrap().data, b"seven b");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gnu_cpio_unpacks_what_is_written() {
    if !have_cpio() {
        return;
    }
    let dir = scratch_dir("cpio-unpack");
    let archive = write_newc(&[
        ("hello", PROGRAM, b"\x7fELF program"),
        ("etc", DIRECTORY, b""),
        ("etc/motd", TEXT, b"welcome\n"),
        ("e", TEXT, b""),
    ]);
    let mut unpack = Command::new("cpio")
        .args(["-i", "--quiet", "--no-absolute-filenames"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut unpack.stdin.take().unwrap(), &archive).unwrap();
    assert!(unpack.wait().unwrap().success());

    use std::os::unix::fs::PermissionsExt;
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode();
    assert_eq!(std::fs::read(dir.join("hello")).unwrap(), b"\x7fELF program");
    assert_eq!(std::fs::read(dir.join("etc/motd")).unwrap(), b"welcome\n");
    assert_eq!(std::fs::read(dir.join("e")).unwrap(), b"");
    assert_eq!(mode("hello") & 0o777, 0o755);
    assert!(std::fs::metadata(dir.join("etc")).unwrap().is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}
