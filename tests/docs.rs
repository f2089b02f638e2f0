//! The documentation names only code that exists: every repository path, and
//! every Rust item path in backticks, in README.md and docs/*.md. No QEMU.
//!
//! What counts as a reference, and how each is checked:
//! - A repository path: `kernel/src/...`, `kernel-logic/...`, `boot/...`,
//!   `scripts/...`, `docs/...` or `tests/...`, in prose or in code, with an optional `:LINE`
//!   or `:FIRST-LAST`. The file (or directory, for a trailing `/`) must exist,
//!   and outside fenced code blocks the lines too. Inside fenced blocks the
//!   line numbers are a recorded run's (a panic's `file:line:col`), so only
//!   the file is checked. Other `kernel/` paths are Linux's (`kernel/smp.c`),
//!   and so is a path with an extension no file here has (QEMU's
//!   `docs/specs/fw_cfg.rst`).
//! - A file named by its path inside a crate (`mm/tlb.rs`) or by its bare name
//!   (`tlb.rs`): a `.rs` file that must exist under kernel/src, boot/src or
//!   tests (bare: anywhere in kernel/, boot/ or tests/).
//! - A relative Markdown link target: it must exist.
//! - A Rust item path in an inline code span, as written at the start of the
//!   span (`sched::block_until`, `smp::call::WaitMode`, `crate::mm::tlb`,
//!   `CrossCall::run(..)`, `kernel::kernel_main+0x`). The first segment decides
//!   whose it is: `crate` or `kernel` is the kernel's root, `boot` the runner's;
//!   a lowercase name is any kernel or runner module of that name (docs
//!   shorten `smp::call::call_on` to `call::call_on`); a capitalised one is a
//!   type. A path whose first segment is none of these is another crate's or
//!   Linux's (`core::mem::forget`, `Ordering::Relaxed`) and is not checked.
//!   Then the modules are followed, and the last name must be defined in that
//!   module's file or directory (fn, struct, enum, const, static, trait,
//!   type, mod, macro, union, a `pub use`, a field or a variant; a crate
//!   root also holds its `#[macro_export]` macros); after a type, in a file
//!   that defines or implements the type.
//!
//! A failure lists each missing reference as `doc:line: reference: why`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

#[path = "docs/scan.rs"]
mod scan;
mod source_tree;

use source_tree::{files_under, rust_files_under};

use scan::{
    code_spans, crate_file_names, defines, exports_macro, extension, implements, item_path,
    link_targets, read, repository_paths,
};

/// Where Rust code lives: the crate roots, with the name each crate is used by.
const CRATES: [(&str, &str, &str); 2] =
    [("kernel", "kernel/src", "main.rs"), ("boot", "boot/src", "lib.rs")];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// README.md and every chapter in docs/.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    let mut chapters: Vec<PathBuf> = fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .map(|path| PathBuf::from("docs").join(path.file_name().unwrap()))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

/// One reference that does not resolve.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Missing {
    doc: String,
    line: usize,
    reference: String,
    why: String,
}

/// The repository as the checks see it.
struct Repository {
    root: PathBuf,
    /// Every `.rs` file of the kernel, the runner and the host tests.
    rust_files: Vec<PathBuf>,
    /// The file name extensions the repository uses: a path with another
    /// (`.c`, `.rst`) names another project's file.
    extensions: BTreeSet<String>,
}

impl Repository {
    fn new(root: PathBuf) -> Repository {
        let mut rust_files = Vec::new();
        for dir in ["kernel", "kernel-logic", "boot", "tests"] {
            rust_files.extend(rust_files_under(&root.join(dir)));
        }
        let extensions = ["kernel", "kernel-logic", "boot", "tests", "scripts", "docs"]
            .iter()
            .flat_map(|dir| files_under(&root.join(dir)))
            .map(|path| extension(&path.to_string_lossy()).to_string())
            .collect();
        Repository { root, rust_files, extensions }
    }

    fn check_document(&self, doc: &Path, text: &str) -> Vec<Missing> {
        let mut missing = Vec::new();
        let mut report = |line: usize, reference: &str, why: String| {
            let doc = doc.display().to_string();
            missing.push(Missing { doc, line, reference: reference.to_string(), why });
        };
        let mut in_fence = false;
        let mut open_span: Option<(usize, String)> = None;
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                continue;
            }
            for (path, lines) in repository_paths(line) {
                let lines = if in_fence { None } else { lines };
                if let Err(why) = self.check_path(path, lines) {
                    let reference = match lines {
                        Some((first, last)) if first == last => format!("{path}:{first}"),
                        Some((first, last)) => format!("{path}:{first}-{last}"),
                        None => path.to_string(),
                    };
                    report(number, &reference, why);
                }
            }
            if in_fence {
                continue;
            }
            for name in crate_file_names(line) {
                if let Err(why) = self.check_crate_file(name) {
                    report(number, name, why);
                }
            }
            for target in link_targets(line) {
                let resolved = doc.parent().unwrap_or(Path::new("")).join(target);
                if !self.root.join(&resolved).exists() {
                    report(
                        number,
                        target,
                        format!("link target {} does not exist", resolved.display()),
                    );
                }
            }
            for (start, span) in code_spans(line, number, &mut open_span) {
                if let Some(path) = item_path(&span)
                    && let Err(why) = self.check_item(&path)
                {
                    let hint = self.definitions_of(path.last().unwrap());
                    report(start, &path.join("::"), format!("{why}{hint}"));
                }
            }
        }
        missing
    }

    /// A repository path, and the line or lines it names, if any.
    fn check_path(&self, path: &str, lines: Option<(usize, usize)>) -> Result<(), String> {
        if !path.ends_with('/') && !self.extensions.contains(extension(path)) {
            return Ok(()); // another project's file: QEMU's `docs/specs/fw_cfg.rst`
        }
        let full = self.root.join(path);
        if !full.exists() {
            let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or(path);
            return Err(format!("no such file or directory{}", self.files_named(name)));
        }
        let Some((first, last)) = lines else { return Ok(()) };
        let count = fs::read_to_string(&full).map(|text| text.lines().count()).unwrap_or(0);
        if first == 0 || first > last || last > count {
            return Err(format!("the file has {count} lines"));
        }
        Ok(())
    }

    /// `mm/tlb.rs` inside a crate, or a bare `tlb.rs` anywhere in the code.
    fn check_crate_file(&self, name: &str) -> Result<(), String> {
        let found = self.rust_files.iter().any(|file| {
            let relative = file.strip_prefix(&self.root).unwrap();
            if name.contains('/') {
                ["kernel/src", "boot/src", "tests"]
                    .iter()
                    .any(|dir| relative == Path::new(dir).join(name))
            } else {
                file.file_name().is_some_and(|file_name| file_name == name)
            }
        });
        if found {
            return Ok(());
        }
        let name = name.rsplit('/').next().unwrap_or(name);
        Err(format!("no such file under kernel/src, boot/src or tests{}", self.files_named(name)))
    }

    /// Where files called `name` are now, as a hint for a moved file.
    fn files_named(&self, name: &str) -> String {
        let places: Vec<String> = ["kernel", "kernel-logic", "boot", "tests", "scripts", "docs"]
            .iter()
            .flat_map(|dir| files_under(&self.root.join(dir)))
            .filter(|file| file.file_name().is_some_and(|f| f == name))
            .map(|file| file.strip_prefix(&self.root).unwrap().display().to_string())
            .collect();
        if places.is_empty() { String::new() } else { format!(" (now at {}?)", places.join(", ")) }
    }

    /// Where `name` is defined now, as a hint for a moved item.
    fn definitions_of(&self, name: &str) -> String {
        let places: Vec<String> = self
            .rust_files
            .iter()
            .filter(|file| defines(&read(file), name))
            .map(|file| file.strip_prefix(&self.root).unwrap().display().to_string())
            .collect();
        if places.is_empty() {
            String::new()
        } else {
            format!(" (`{name}` is defined in {})", places.join(", "))
        }
    }

    fn check_item(&self, path: &[String]) -> Result<(), String> {
        let first = path[0].as_str();
        let starts: Vec<Module> = match first {
            "crate" | "kernel" => vec![self.crate_root("kernel")],
            "boot" => vec![self.crate_root("boot")],
            _ if first.starts_with(char::is_uppercase) => {
                if !self.rust_files.iter().any(|file| defines(&read(file), first)) {
                    return Ok(()); // not a type of this repository (`Ordering`, `Box`)
                }
                return self.check_member(path);
            }
            _ => self.modules_named(first),
        };
        if starts.is_empty() {
            return Ok(()); // another crate's module, or Linux's
        }
        let mut first_error = None;
        for start in starts {
            match self.check_in_module(start, &path[1..]) {
                Ok(()) => return Ok(()),
                Err(why) => {
                    first_error.get_or_insert(why);
                }
            }
        }
        Err(first_error.unwrap())
    }

    /// Follows `rest` from `module`: submodules, then one item or a type's member.
    fn check_in_module(&self, mut module: Module, rest: &[String]) -> Result<(), String> {
        let mut index = 0;
        while let Some(sub) = rest.get(index).and_then(|name| module.submodule(name)) {
            module = sub;
            index += 1;
        }
        let place = module.describe(&self.root);
        match &rest[index..] {
            [] => Ok(()),
            [name] if module.defines(name) => Ok(()),
            [name] => Err(format!("no `{name}` defined in {place}")),
            [ty, ..] if ty.starts_with(char::is_lowercase) => {
                Err(format!("no module `{ty}` in {place}"))
            }
            [ty, ..] if !module.defines(ty) => Err(format!("no type `{ty}` defined in {place}")),
            members => self.check_member(members),
        }
    }

    /// `Type::member`: the member is defined in a file that defines or
    /// implements the type.
    fn check_member(&self, path: &[String]) -> Result<(), String> {
        let (ty, member) = (&path[0], &path[path.len() - 1]);
        let found = self.rust_files.iter().any(|file| {
            let text = read(file);
            (defines(&text, ty) || implements(&text, ty)) && defines(&text, member)
        });
        if found { Ok(()) } else { Err(format!("`{ty}` has no `{member}`")) }
    }

    fn crate_root(&self, name: &str) -> Module {
        let (_, dir, file) = CRATES.iter().find(|c| c.0 == name).expect("a known crate");
        Module { file: self.root.join(dir).join(file), dir: self.root.join(dir) }
    }

    /// Every module of either crate whose last name is `name`.
    fn modules_named(&self, name: &str) -> Vec<Module> {
        let mut found = Vec::new();
        for file in &self.rust_files {
            let parent = file.parent().unwrap();
            if file.file_name().is_some_and(|f| f == format!("{name}.rs").as_str()) {
                found.push(Module { file: file.clone(), dir: parent.join(name) });
            } else if file.ends_with(format!("{name}/mod.rs")) {
                found.push(Module { file: file.clone(), dir: parent.to_path_buf() });
            }
        }
        let in_crate = |m: &Module| CRATES.iter().any(|c| m.file.starts_with(self.root.join(c.1)));
        found.retain(in_crate);
        found
    }
}

/// A module: its file, and the directory its submodules live in.
struct Module {
    file: PathBuf,
    dir: PathBuf,
}

impl Module {
    fn submodule(&self, name: &str) -> Option<Module> {
        let file = self.dir.join(format!("{name}.rs"));
        if file.is_file() {
            return Some(Module { file, dir: self.dir.join(name) });
        }
        let file = self.dir.join(name).join("mod.rs");
        file.is_file().then(|| Module { file, dir: self.dir.join(name) })
    }

    /// The module's own file, and every file in its directory.
    /// The module's own file and every file in its directory; a crate root's
    /// directory is the whole crate, so for a root only its file.
    fn files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.file.clone()];
        if !self.is_root() {
            files.extend(files_under(&self.dir).into_iter().filter(|f| f != &self.file));
        }
        files
    }

    /// A crate root also holds the crate's `#[macro_export]` macros.
    fn defines(&self, name: &str) -> bool {
        let exported =
            || files_under(&self.dir).iter().any(|file| exports_macro(&read(file), name));
        self.files().iter().any(|file| defines(&read(file), name)) || self.is_root() && exported()
    }

    fn is_root(&self) -> bool {
        self.file.file_name().is_some_and(|f| f == "main.rs" || f == "lib.rs")
    }

    fn describe(&self, root: &Path) -> String {
        let file = self.file.strip_prefix(root).unwrap_or(&self.file).display().to_string();
        if self.dir.is_dir() {
            let dir = self.dir.strip_prefix(root).unwrap_or(&self.dir).display().to_string();
            if !self.file.starts_with(&self.dir) {
                return format!("{file} or {dir}/");
            }
        }
        file
    }
}

#[test]
fn every_path_and_item_the_docs_name_exists() {
    let repository = Repository::new(repository());
    let mut missing = BTreeSet::new();
    for doc in documents(&repository.root) {
        let text = fs::read_to_string(repository.root.join(&doc)).expect("a readable document");
        missing.extend(repository.check_document(&doc, &text));
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|m| format!("{}:{}: `{}`: {}", m.doc, m.line, m.reference, m.why))
        .collect();
    assert!(
        lines.is_empty(),
        "{} references in the docs do not resolve:\n{}",
        lines.len(),
        lines.join("\n")
    );
}

/// The checks find what they are for: each kind of stale reference is reported.
#[test]
fn stale_references_are_reported() {
    let repository = Repository::new(repository());
    let text = "\
See `kernel/src/no_such_file.rs`, kernel/src/main.rs:999999 and `no_such_module.rs`.
[a chapter](no-such-chapter.md), `sched::no_such_function()`, `smp::call::NoSuchType`,
`CrossCall::no_such_method`, `crate::mm::no_such_module::f`.
Fine: `kernel/src/main.rs:1`, [docs](README.md), `sched::block_until`, `core::mem::forget`,
`smp::call::WaitMode`, `call::call_on_many`, `Ordering::Relaxed`, kernel/smp.c.
```text
panic: at kernel/src/main.rs:999999:5
```
";
    let found: Vec<String> = repository
        .check_document(Path::new("docs/example.md"), text)
        .into_iter()
        .map(|m| format!("{}:{}", m.line, m.reference))
        .collect();
    let expected = [
        "1:kernel/src/no_such_file.rs",
        "1:kernel/src/main.rs:999999",
        "1:no_such_module.rs",
        "2:no-such-chapter.md",
        "2:sched::no_such_function",
        "2:smp::call::NoSuchType",
        "3:CrossCall::no_such_method",
        "3:crate::mm::no_such_module::f",
    ];
    assert_eq!(found, expected);
}
