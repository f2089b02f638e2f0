//! The scanners behind tests/docs.rs: what a line of Markdown names (paths,
//! links, code spans, Rust paths) and what a Rust source file defines. Each
//! works on text alone; the checks against the repository are in docs.rs.

use std::fs;
use std::path::Path;

/// Directories whose paths the docs name in full.
pub const REPOSITORY_PREFIXES: [&str; 6] =
    ["kernel/src/", "kernel-logic/", "boot/", "scripts/", "docs/", "tests/"];

/// A file's text; an unreadable file reads as empty, so it defines nothing.
pub fn read(file: &Path) -> String {
    fs::read_to_string(file).unwrap_or_default()
}

/// The identifiers (and numbers) in `text`.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// Whether `text` declares `name` as an item, a `pub use`, a field or a variant.
pub fn defines(text: &str, name: &str) -> bool {
    const ITEM_KEYWORDS: [&str; 10] = [
        "fn",
        "struct",
        "enum",
        "const",
        "static",
        "trait",
        "type",
        "mod",
        "union",
        "macro_rules!",
    ];
    text.lines().any(|line| {
        let code = line.trim_start();
        if code.starts_with("//") {
            return false;
        }
        let tokens: Vec<&str> = code
            .split(|c: char| c.is_whitespace() || c == '(' || c == ':' || c == '<' || c == '{')
            .filter(|t| !t.is_empty())
            .collect();
        let item = tokens.windows(2).any(|pair| {
            ITEM_KEYWORDS.contains(&pair[0]) && pair[1].trim_end_matches([';', ',', '!']) == name
        }) || tokens.windows(3).any(|triple| triple == ["static", "mut", name]);
        let reexport = code.starts_with("pub use") && words(code).any(|w| w == name);
        let unqualified = code.trim_start_matches("pub(crate) ").trim_start_matches("pub ");
        // A field is `name: Type`; a variant is capitalised, which tells it from
        // a call or an assignment at the start of a line.
        let field_or_variant = unqualified.strip_prefix(name).is_some_and(|after| {
            let field = after.starts_with(':') && !after.starts_with("::");
            let variant = name.starts_with(char::is_uppercase)
                && (after.is_empty() || after.starts_with([',', '(', ' ', '{']));
            field || variant
        });
        item || reexport || field_or_variant
    })
}

/// Whether `text` defines `macro_rules! name` under `#[macro_export]`, which
/// puts the macro at the crate root.
pub fn exports_macro(text: &str, name: &str) -> bool {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    lines.windows(2).any(|pair| {
        pair[0] == "#[macro_export]"
            && pair[1].strip_prefix("macro_rules! ") == Some(&format!("{name} {{"))
    })
}

/// The extension of a path's last component, or "" if it has none.
pub fn extension(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.').map_or("", |(_, ext)| ext)
}

/// Whether `text` has an `impl` block for `ty` (its own or a trait's).
pub fn implements(text: &str, ty: &str) -> bool {
    text.lines().any(|line| {
        let code = line.trim_start();
        code.starts_with("impl") && words(code).any(|w| w == ty)
    })
}

/// Repository paths on a line, with the lines they name (`:N` or `:A-B`).
pub fn repository_paths(line: &str) -> Vec<(&str, Option<(usize, usize)>)> {
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut found = Vec::new();
    for (start, _) in line.char_indices() {
        let rest = &line[start..];
        let boundary = line[..start].chars().next_back().is_none_or(|c| !is_path_char(c));
        if !boundary || !REPOSITORY_PREFIXES.iter().any(|p| rest.starts_with(p)) {
            continue;
        }
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        let path = rest[..end].trim_end_matches('.');
        let lines = rest[path.len()..].strip_prefix(':').and_then(parse_line_range);
        if rest[end..].starts_with('*') || path.ends_with("..") {
            continue; // a pattern, not a path
        }
        found.push((path, lines));
    }
    found
}

/// `N` or `A-B` after a path's colon, as a range of lines.
pub fn parse_line_range(text: &str) -> Option<(usize, usize)> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let first_len = digits(text);
    let first: usize = text[..first_len].parse().ok()?;
    let after = &text[first_len..];
    if let Some(second) = after.strip_prefix('-') {
        let second_len = digits(second);
        if second_len > 0 {
            return Some((first, second[..second_len].parse().ok()?));
        }
    }
    Some((first, first))
}

/// `.rs` files named by a path inside a crate (`mm/tlb.rs`) or bare (`tlb.rs`).
pub fn crate_file_names(line: &str) -> Vec<&str> {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "_./-".contains(c)))
        .map(|token| token.trim_end_matches('.'))
        .filter(|token| token.ends_with(".rs") && token.len() > 3)
        .filter(|token| !REPOSITORY_PREFIXES.iter().any(|p| token.starts_with(p)))
        .filter(|token| !token.starts_with("kernel/") && !token.contains(".rs/"))
        .collect()
}

/// Relative link targets: `[text](target)`, without the anchor.
pub fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            let target = &rest[..rest.find(')')?];
            let target = target.split('#').next().unwrap();
            let external = target.contains("://") || target.starts_with("mailto:");
            (!external && !target.is_empty()).then_some(target)
        })
        .collect()
}

/// Inline code spans that close on this line, with the line each opened on; a
/// span still open at the end of the line carries on in `open`.
pub fn code_spans(
    line: &str,
    number: usize,
    open: &mut Option<(usize, String)>,
) -> Vec<(usize, String)> {
    let mut spans = Vec::new();
    for (index, piece) in line.split('`').enumerate() {
        if index > 0 {
            match open.take() {
                Some((start, text)) => spans.push((start, text)),
                None => *open = Some((number, String::new())),
            }
        }
        if let Some((_, text)) = open.as_mut() {
            text.push_str(piece);
            text.push(' ');
        }
    }
    spans
}

/// The Rust path a code span starts with, if it has two segments or more.
pub fn item_path(span: &str) -> Option<Vec<String>> {
    let span = span.trim().trim_start_matches('&');
    let end =
        span.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(span.len());
    let segments: Vec<String> = span[..end].split("::").map(str::to_string).collect();
    let well_formed = segments.iter().all(|s| {
        s.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_alphanumeric() || c == '_')
    });
    let own = !matches!(segments[0].as_str(), "Self" | "self" | "super");
    (segments.len() >= 2 && well_formed && own).then_some(segments)
}
