//! The kernel's top-level modules form layers: each uses only modules below it.
//!
//! This test reads `kernel/src`, finds every `crate::X` reference each
//! top-level module makes outside test code, and checks them against the layer
//! list in docs/README.md ("Layers"), so that the diagram there stays true. It
//! also names every cycle it finds, layers or not. No QEMU is needed.
//!
//! Definitions:
//! - A **top-level module** is a directory or a `.rs` file directly under
//!   `kernel/src`, except `main.rs` (the crate root, which wires everything
//!   together and so sits above all of them).
//! - **Test code** is not checked: files named `tests.rs` or `*_tests.rs`, the
//!   `testing` module (the in-kernel test harness, above everything by
//!   definition), any item under `#[cfg(test)]`, an inline `mod tests`, and
//!   any function returning `TestResult` (an in-kernel test). A reference to
//!   `crate::testing` registers tests and is not an edge.
//! - Macro invocations (`crate::println!`, `crate::ensure!`) are not module
//!   references: `#[macro_export]` puts macros at the crate root.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

mod source_tree;

use source_tree::{kernel_src, rust_files_under};

/// Edges that go upwards, each with the reason it is accepted. Each must
/// still exist: once it is gone the entry must go too, so the list only shrinks.
const KNOWN_UPWARD: &[(&str, &str, &str)] = &[];

/// The top-level module a file belongs to, or None for the crate root.
fn top_module(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?.to_string();
    if first == "main.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

fn is_test_file(relative: &Path) -> bool {
    let name = relative.file_name().unwrap().to_str().unwrap();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || top_module(relative).as_deref() == Some("testing")
}

/// The source with comments, string and char literals blanked out (kept as
/// spaces so byte offsets and line numbers stay), so braces and paths are
/// only those of code.
fn code_only(source: &str) -> Vec<u8> {
    let s = source.as_bytes();
    let mut out = s.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for b in &mut out[from..to] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    };
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"//") {
            let end = s[i..].iter().position(|&b| b == b'\n').map_or(s.len(), |p| i + p);
            blank(&mut out, i, end);
            i = end;
        } else if s[i..].starts_with(b"/*") {
            let end = find(s, i + 2, b"*/").map_or(s.len(), |p| p + 2);
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == b'r'
            && (s.get(i + 1) == Some(&b'"') || s.get(i + 1) == Some(&b'#'))
            && (i == 0 || !is_ident(s[i - 1]))
        {
            let hashes = s[i + 1..].iter().take_while(|&&b| b == b'#').count();
            if s.get(i + 1 + hashes) != Some(&b'"') {
                i += 1;
                continue;
            }
            let mut close = vec![b'"'];
            close.extend(std::iter::repeat_n(b'#', hashes));
            let end = find(s, i + 2 + hashes, &close).map_or(s.len(), |p| p + close.len());
            blank(&mut out, i, end);
            i = end;
        } else if s[i] == b'"' {
            let mut j = i + 1;
            while j < s.len() && s[j] != b'"' {
                j += if s[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i, (j + 1).min(s.len()));
            i = j + 1;
        } else if s[i] == b'\'' {
            // A char literal ('x', '\n', '{'), not a lifetime ('a).
            let len = if s.get(i + 1) == Some(&b'\\') {
                s[i + 2..].iter().position(|&b| b == b'\'').map(|p| p + 3)
            } else {
                let ch = source[i + 1..].chars().next().map_or(1, char::len_utf8);
                (s.get(i + 1 + ch) == Some(&b'\'')).then_some(ch + 2)
            };
            match len {
                Some(len) => {
                    blank(&mut out, i, i + len);
                    i += len;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    out
}

fn find(s: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    s.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The end (one past the closing brace, or the `;`) of the item starting at `from`.
fn item_end(code: &[u8], from: usize) -> usize {
    let mut depth = 0usize;
    for (i, &b) in code.iter().enumerate().skip(from) {
        match b {
            b';' if depth == 0 => return i + 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Blanks out test code inside a non-test file (see the module doc).
fn blank_test_items(code: &mut [u8]) {
    let text = String::from_utf8_lossy(code).into_owned();
    let mut starts = Vec::new();
    for marker in ["#[cfg(test)]", "mod tests {", "mod tests;"] {
        starts.extend(text.match_indices(marker).map(|(i, _)| i));
    }
    // `fn name(...) -> TestResult {`: from the `fn` to its closing brace.
    for (i, _) in text.match_indices("fn ") {
        if i > 0 && is_ident(code[i - 1]) {
            continue;
        }
        let header_end = text[i..].find(['{', ';']).map_or(text.len(), |p| i + p);
        if text[i..header_end].contains("-> TestResult") {
            starts.push(i);
        }
    }
    for start in starts {
        let end = item_end(code, start);
        for b in &mut code[start..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
}

/// The top-level modules named by `crate::` paths in `code`, with line numbers.
fn references(code: &[u8]) -> Vec<(String, usize)> {
    let text = String::from_utf8_lossy(code);
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut found = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        if at > 0 && (is_ident(code[at - 1]) || code[at - 1] == b'$') {
            continue; // `$crate::` in a macro, or part of a longer name
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a, b::{c, d}, e}: the first name of each top-level entry.
            let mut depth = 0;
            let mut entry_start = true;
            for (offset, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => entry_start = true,
                    c if entry_start && (c.is_alphanumeric() || c == '_') => {
                        let name: String = group[offset..]
                            .chars()
                            .take_while(|&c| c.is_alphanumeric() || c == '_')
                            .collect();
                        found.push((name, line_of(at + "crate::{".len() + offset)));
                        entry_start = false;
                    }
                    _ => {}
                }
            }
            continue;
        }
        let name: String = rest.chars().take_while(|&c| c.is_alphanumeric() || c == '_').collect();
        if rest[name.len()..].starts_with('!') {
            continue; // a macro exported at the crate root
        }
        found.push((name, line_of(at)));
    }
    found
}

/// One `from -> to` dependency and where it shows.
type Edges = BTreeMap<(String, String), Vec<String>>;

fn module_edges() -> (BTreeSet<String>, Edges) {
    let root = kernel_src();
    let files = rust_files_under(&root);
    assert!(!files.is_empty(), "no Rust files under {}", root.display());
    let mut modules = BTreeSet::new();
    let mut edges = Edges::new();
    for path in files {
        let relative = path.strip_prefix(&root).unwrap().to_path_buf();
        let Some(from) = top_module(&relative) else { continue };
        if from != "testing" {
            modules.insert(from.clone());
        }
        if is_test_file(&relative) {
            continue;
        }
        let mut code = code_only(&fs::read_to_string(&path).unwrap());
        blank_test_items(&mut code);
        for (to, line) in references(&code) {
            if to == from || to == "testing" || to == "self" || to == "super" {
                continue;
            }
            let place = format!("kernel/src/{}:{line}", relative.display());
            edges.entry((from.clone(), to)).or_default().push(place);
        }
    }
    (modules, edges)
}

/// The layer list of docs/README.md: under the "## Layers" heading, a numbered
/// list from the bottom, each line naming its modules in backticks.
fn documented_layers() -> Vec<Vec<String>> {
    let readme = fs::read_to_string(kernel_src().join("../../docs/README.md")).unwrap();
    let section =
        readme.split("\n## Layers").nth(1).expect("docs/README.md has no \"## Layers\" section");
    let section = section.split("\n## ").next().unwrap();
    let mut layers = Vec::new();
    for line in section.lines() {
        let Some((number, rest)) = line.split_once(". ") else { continue };
        if number.is_empty() || !number.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let names = rest.split(" — ").next().unwrap();
        let modules: Vec<String> =
            names.split('`').skip(1).step_by(2).map(str::to_string).collect();
        assert_eq!(
            number.parse::<usize>().unwrap(),
            layers.len() + 1,
            "docs/README.md layer list is not numbered 1, 2, 3...: {line}"
        );
        layers.push(modules);
    }
    assert!(!layers.is_empty(), "docs/README.md's Layers section lists no layers");
    layers
}

/// One shortest cycle in each group of modules that reach each other (a
/// strongly connected component), as its edges in order.
fn cycles(edges: &Edges) -> Vec<Vec<(String, String)>> {
    let nodes: BTreeSet<&String> = edges.keys().flat_map(|(a, b)| [a, b]).collect();
    let successors = |node: &String| -> Vec<&String> {
        edges.keys().filter(|(a, _)| a == node).map(|(_, b)| b).collect()
    };
    // The shortest path from `from` back to itself, by breadth-first search.
    let shortest_cycle_through = |from: &String| -> Option<Vec<(String, String)>> {
        let mut parent: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            for next in successors(node) {
                if next == from {
                    let mut path = vec![(node.clone(), next.clone())];
                    let mut at = node;
                    while at != from {
                        let before = parent[at];
                        path.push((before.clone(), at.clone()));
                        at = before;
                    }
                    path.reverse();
                    return Some(path);
                }
                if !parent.contains_key(next) {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    };
    let mut found: Vec<Vec<(String, String)>> = Vec::new();
    let mut covered: BTreeSet<&String> = BTreeSet::new();
    let mut all: Vec<Vec<(String, String)>> =
        nodes.iter().filter_map(|n| shortest_cycle_through(n)).collect();
    all.sort_by_key(Vec::len);
    for cycle in all {
        if cycle.iter().all(|(a, _)| covered.contains(a)) {
            continue;
        }
        for (a, _) in &cycle {
            covered.insert(nodes.get(a).unwrap());
        }
        found.push(cycle);
    }
    found
}

fn describe(edges: &Edges, edge: &(String, String)) -> String {
    let places = &edges[edge];
    let more =
        if places.len() > 3 { format!(" and {} more", places.len() - 3) } else { String::new() };
    format!("  {} -> {}: {}{more}", edge.0, edge.1, places[..places.len().min(3)].join(", "))
}

#[test]
fn no_cycles_between_top_level_modules() {
    let (_, edges) = module_edges();
    let known: BTreeSet<(String, String)> =
        KNOWN_UPWARD.iter().map(|(a, b, _)| (a.to_string(), b.to_string())).collect();
    let checked: Edges = edges
        .iter()
        .filter(|(e, _)| !known.contains(*e))
        .map(|(e, p)| (e.clone(), p.clone()))
        .collect();
    let found = cycles(&checked);
    let report: Vec<String> = found
        .iter()
        .map(|cycle| cycle.iter().map(|e| describe(&checked, e)).collect::<Vec<_>>().join("\n"))
        .collect();
    assert!(
        found.is_empty(),
        "cycles between top-level modules of kernel/src:\n{}",
        report.join("\n\n")
    );
}

#[test]
fn every_reference_goes_down_the_documented_layers() {
    let (modules, edges) = module_edges();
    let layers = documented_layers();
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, names)| names.iter().map(move |n| (n.as_str(), i)))
        .collect();
    let listed: BTreeSet<String> = layer_of.keys().map(|s| s.to_string()).collect();
    let unlisted: Vec<_> = modules.difference(&listed).collect();
    let gone: Vec<_> = listed.difference(&modules).collect();
    assert!(
        unlisted.is_empty(),
        "top-level modules missing from docs/README.md's Layers: {unlisted:?}"
    );
    assert!(gone.is_empty(), "docs/README.md's Layers lists modules kernel/src lacks: {gone:?}");

    let known: BTreeSet<(String, String)> =
        KNOWN_UPWARD.iter().map(|(a, b, _)| (a.to_string(), b.to_string())).collect();
    let stale: Vec<_> = known.iter().filter(|e| !edges.contains_key(*e)).collect();
    assert!(
        stale.is_empty(),
        "KNOWN_UPWARD lists edges that no longer exist; remove them: {stale:?}"
    );

    let wrong: Vec<String> = edges
        .keys()
        .filter(|e| !known.contains(*e))
        .filter(|(from, to)| layer_of[from.as_str()] <= layer_of[to.as_str()])
        .map(|e| describe(&edges, e))
        .collect();
    assert!(
        wrong.is_empty(),
        "references that do not go down the layers of docs/README.md (a module may use only \
         modules on lower layers):\n{}",
        wrong.join("\n")
    );
}

/// The checker itself: test code is left out, and each kind of path is found.
#[test]
fn the_reference_finder_sees_paths_and_skips_tests() {
    let source = r#"
use crate::{sync::{self, SpinLock}, time};
use crate::mm::frame; // crate::smp in a comment
fn f() { crate::sched::yield_now(); crate::println!("crate::panic"); let c = '{'; }
fn a_test() -> TestResult { crate::fault::x(); Ok(()) }
#[cfg(test)]
mod unit { fn g() { crate::acpi::y(); } }
"#;
    let mut code = code_only(source);
    blank_test_items(&mut code);
    let names: BTreeSet<String> = references(&code).into_iter().map(|(n, _)| n).collect();
    let expected: BTreeSet<String> =
        ["sync", "time", "mm", "sched"].iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected);
}
