//! A program's initial stack (kernel/src/user/initial_stack.rs), decoded back
//! as a C library's start-up code reads it: argc, argv, envp and the
//! auxiliary vector, every pointer followed to its bytes.

use kernel_logic::initial_stack::aux::*;
use kernel_logic::initial_stack::{InitialStack, MAX_SIZE, PLATFORM, StackTooBig, build};

/// The top of the user address space (`arch::x86::syscall::USER_END`).
const TOP: u64 = 0x0000_7fff_ffff_f000;
const RANDOM: [u8; 16] = *b"0123456789abcdef";

/// Pairs a caller gives, as the kernel's loader will.
const CALLER_AUX: [(u64, u64); 5] =
    [(AT_PHDR, 0x400040), (AT_PHENT, 56), (AT_PHNUM, 6), (AT_PAGESZ, 4096), (AT_ENTRY, 0x401050)];

/// The image read back through its pointers, as `_start` would.
#[derive(Debug)]
struct Decoded {
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    aux: Vec<(u64, u64)>,
    argv_pointers: Vec<u64>,
    envp_pointers: Vec<u64>,
    /// The address just past AT_NULL.
    tables_end: u64,
}

struct Reader<'a> {
    stack: &'a InitialStack,
    top: u64,
}

impl Reader<'_> {
    fn index(&self, address: u64, len: usize) -> usize {
        assert!(
            address >= self.stack.rsp && address + len as u64 <= self.top,
            "{address:#x} + {len} is outside the stack [{:#x}, {:#x})",
            self.stack.rsp,
            self.top
        );
        (address - self.stack.rsp) as usize
    }

    fn word(&self, address: u64) -> u64 {
        let at = self.index(address, 8);
        u64::from_le_bytes(self.stack.bytes[at..at + 8].try_into().unwrap())
    }

    fn bytes(&self, address: u64, len: usize) -> &[u8] {
        let at = self.index(address, len);
        &self.stack.bytes[at..at + len]
    }

    fn c_string(&self, address: u64) -> Vec<u8> {
        let at = self.index(address, 1);
        let len = self.stack.bytes[at..].iter().position(|&byte| byte == 0).expect("a NUL");
        self.stack.bytes[at..at + len].to_vec()
    }

    /// NULL-terminated pointers from `*address` on; `address` moves past the NULL.
    fn pointers(&self, address: &mut u64) -> Vec<u64> {
        let mut pointers = Vec::new();
        loop {
            let pointer = self.word(*address);
            *address += 8;
            if pointer == 0 {
                return pointers;
            }
            pointers.push(pointer);
        }
    }

    fn decode(&self) -> Decoded {
        let mut address = self.stack.rsp;
        let argc = self.word(address);
        address += 8;
        let argv_pointers = self.pointers(&mut address);
        assert_eq!(argc, argv_pointers.len() as u64, "argc counts argv");
        let envp_pointers = self.pointers(&mut address);
        let mut aux = Vec::new();
        loop {
            let pair = (self.word(address), self.word(address + 8));
            address += 16;
            aux.push(pair);
            if pair.0 == AT_NULL {
                break;
            }
        }
        Decoded {
            argv: argv_pointers.iter().map(|&pointer| self.c_string(pointer)).collect(),
            envp: envp_pointers.iter().map(|&pointer| self.c_string(pointer)).collect(),
            aux,
            argv_pointers,
            envp_pointers,
            tables_end: address,
        }
    }
}

fn aux_value(decoded: &Decoded, kind: u64) -> u64 {
    let mut values = decoded.aux.iter().filter(|(found, _)| *found == kind);
    let (_, value) = values.next().unwrap_or_else(|| panic!("no aux entry {kind}"));
    assert!(values.next().is_none(), "aux entry {kind} twice");
    *value
}

/// Builds a stack and checks everything about it; returns the decoded view.
fn build_and_check(top: u64, argv: &[&[u8]], envp: &[&[u8]]) -> Decoded {
    let stack = build(top, argv, envp, &CALLER_AUX, RANDOM).unwrap();
    let context = format!("top {top:#x}, argv {argv:?}, envp {envp:?}");
    assert_eq!(stack.rsp % 16, 0, "{context}");
    assert_eq!(stack.rsp + stack.bytes.len() as u64, top, "{context}");
    let reader = Reader { stack: &stack, top };
    let decoded = reader.decode();

    assert_eq!(decoded.argv, argv, "{context}");
    assert_eq!(decoded.envp, envp, "{context}");
    let added: Vec<u64> = decoded.aux[CALLER_AUX.len()..].iter().map(|&(kind, _)| kind).collect();
    assert_eq!(&decoded.aux[..CALLER_AUX.len()], CALLER_AUX, "the caller's pairs come first");
    assert_eq!(added, [AT_RANDOM, AT_EXECFN, AT_PLATFORM, AT_NULL], "{context}");
    assert_eq!(decoded.aux.last(), Some(&(AT_NULL, 0)));

    let random = aux_value(&decoded, AT_RANDOM);
    assert_eq!(reader.bytes(random, 16), RANDOM, "{context}");
    let platform = aux_value(&decoded, AT_PLATFORM);
    assert_eq!(reader.c_string(platform), PLATFORM);
    let execfn = aux_value(&decoded, AT_EXECFN);
    assert_eq!(reader.c_string(execfn), argv.first().copied().unwrap_or(b""), "{context}");

    // Linux's order, from the top down: 8 zero bytes, the AT_EXECFN string,
    // the envp strings, the argv strings, "x86_64", the random bytes.
    assert_eq!(reader.bytes(top - 8, 8), [0; 8], "the end marker");
    let execfn_len = argv.first().map_or(0, |name| name.len()) as u64 + 1;
    assert_eq!(execfn + execfn_len, top - 8, "{context}");
    let mut expected = random + 16;
    assert_eq!(platform, expected);
    expected += PLATFORM.len() as u64 + 1;
    for (pointer, string) in decoded.argv_pointers.iter().zip(argv) {
        assert_eq!(*pointer, expected, "argv strings one after another: {context}");
        expected += string.len() as u64 + 1;
    }
    for (pointer, string) in decoded.envp_pointers.iter().zip(envp) {
        assert_eq!(*pointer, expected, "then the envp strings: {context}");
        expected += string.len() as u64 + 1;
    }
    assert_eq!(expected, execfn, "then the AT_EXECFN string: {context}");

    // Between the tables and the random bytes: only the alignment padding.
    assert!(decoded.tables_end <= random && random - decoded.tables_end < 16, "{context}");
    assert!(
        reader
            .bytes(decoded.tables_end, (random - decoded.tables_end) as usize)
            .iter()
            .all(|&b| b == 0)
    );
    decoded
}

#[test]
fn a_typical_program_start_decodes_back() {
    let decoded = build_and_check(TOP, &[b"hello", b"7"], &[b"HOME=/", b"TERM=linux"]);
    assert_eq!(decoded.argv, [b"hello".to_vec(), b"7".to_vec()]);
    assert_eq!(aux_value(&decoded, AT_PHDR), 0x400040);
    assert_eq!(aux_value(&decoded, AT_PAGESZ), 4096);
}

#[test]
fn rsp_is_16_byte_aligned_for_every_count_and_length() {
    let words: [&[u8]; 6] = [b"", b"a", b"bc", b"def", b"ghijklm", b"nopqrstuvwxyz12"];
    for argc in 0..=5 {
        for envc in 0..=3 {
            for shift in 0..4 {
                let argv: Vec<&[u8]> =
                    (0..argc).map(|n| words[(n + shift) % words.len()]).collect();
                let envp: Vec<&[u8]> =
                    (0..envc).map(|n| words[(n + 2 * shift + 1) % words.len()]).collect();
                // Page-aligned tops, and some that are not, as a stack
                // that already holds something would have.
                for top in [TOP, TOP - 8, TOP - 3, 0x1_0000] {
                    build_and_check(top, &argv, &envp);
                }
            }
        }
    }
}

#[test]
fn without_arguments_argc_is_0_and_at_execfn_is_empty() {
    let decoded = build_and_check(TOP, &[], &[]);
    assert!(decoded.argv.is_empty() && decoded.envp.is_empty());
}

#[test]
fn at_execfn_is_its_own_copy_of_the_program_name() {
    let decoded = build_and_check(TOP, &[b"prog", b"arg"], &[]);
    assert_ne!(aux_value(&decoded, AT_EXECFN), decoded.argv_pointers[0]);
}

#[test]
fn the_caller_s_aux_pairs_are_kept_in_order() {
    let aux = [(AT_UID, 0), (AT_EUID, 1), (AT_GID, 2), (AT_EGID, 3), (AT_SECURE, 0)];
    let stack = build(TOP, &[b"x"], &[], &aux, RANDOM).unwrap();
    let decoded = Reader { stack: &stack, top: TOP }.decode();
    assert_eq!(decoded.aux[..5], aux);
    assert_eq!(decoded.aux.len(), 5 + 4);
}

#[test]
fn an_image_over_the_limit_is_refused() {
    // One big argument: 64 KiB of text cannot fit with its tables.
    let big = vec![b'x'; MAX_SIZE];
    let error = build(TOP, &[b"prog", &big], &[], &CALLER_AUX, RANDOM).unwrap_err();
    assert_eq!(error.limit, MAX_SIZE);
    assert!(error.size > MAX_SIZE, "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "the arguments, environment and auxiliary vector need a {}-byte initial stack, \
             more than the 65536-byte limit",
            error.size
        )
    );

    // Many small ones: each is 2 bytes of text and 8 of pointer.
    let many: Vec<&[u8]> = vec![b"y"; MAX_SIZE / 10];
    assert!(matches!(build(TOP, &many, &[], &[], RANDOM), Err(StackTooBig { .. })));
}

#[test]
fn an_image_just_under_the_limit_is_made() {
    // Everything but one argument's text, then that text grown until the
    // image is as big as allowed.
    let fixed = build(TOP, &[b""], &[], &[], RANDOM).unwrap().bytes.len();
    let mut len = MAX_SIZE - fixed - 32;
    loop {
        let argument = vec![b'z'; len];
        match build(TOP, &[b"", &argument], &[], &[], RANDOM) {
            Ok(stack) => assert!(stack.bytes.len() <= MAX_SIZE),
            Err(error) => {
                assert!(error.size > MAX_SIZE && error.size <= MAX_SIZE + 16, "{error:?}");
                break;
            }
        }
        len += 1;
    }
}
