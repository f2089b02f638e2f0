//! The kernel's arguments as the runner shows them: its `--help` and the
//! tables in README.md and docs/runner.md.
//!
//! The list itself is the kernel's (`kernel/src/args/table.rs`), included here
//! by path, so there is one list to edit. The unit test
//! `docs_list_the_kernel_arguments_of_the_table` fails when a document's copy
//! drifts from it; `UPDATE_KERNEL_ARGS_DOCS=1 cargo test -p boot kernel_args`
//! rewrites the copies. The kernel's parser is included too, only in tests
//! (`kernel_args/parse_tests.rs`), to check it on the host.

#[path = "../../kernel/src/args/table.rs"]
pub mod table;

#[cfg(test)]
#[path = "../../kernel/src/args/parse.rs"]
mod parse;
#[cfg(test)]
mod parse_tests;

use table::{PARAMETERS, Parameter};

/// Where the key column of `--help` ends.
const HELP_KEY_WIDTH: usize = 15;
/// The width `--help` wraps to.
const HELP_WIDTH: usize = 100;

/// Words of `text`, joined into lines no longer than `width` (a longer word
/// gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// One key's entry: the key, then its help, accepted values and default, each
/// starting a line of the right-hand column and wrapped within it.
fn help_entry(parameter: &Parameter) -> String {
    let column = " ".repeat(HELP_KEY_WIDTH);
    let texts = [
        parameter.help.to_string(),
        format!("accepted: {}", parameter.accepted),
        format!("default: {}", parameter.default),
    ];
    let mut lines = Vec::new();
    for text in texts {
        // Continuation lines are indented by two more, to show where each text starts.
        for (n, line) in wrap(&text, HELP_WIDTH - HELP_KEY_WIDTH - 2).into_iter().enumerate() {
            lines.push(format!("{column}{}{line}", if n == 0 { "" } else { "  " }));
        }
    }
    let key = format!("  {:width$}", parameter.key, width = HELP_KEY_WIDTH - 2);
    lines[0].replace_range(..HELP_KEY_WIDTH, &key);
    lines.join("\n")
}

/// The kernel arguments for `--help`: per key, what it does, the accepted
/// values and the default.
pub fn help() -> String {
    PARAMETERS.iter().map(help_entry).collect::<Vec<_>>().join("\n")
}

/// The line that opens the generated block in a document.
pub const DOC_BEGIN: &str = "<!-- kernel-args:begin: generated from kernel/src/args/table.rs; \
    edit the table, then run UPDATE_KERNEL_ARGS_DOCS=1 cargo test -p boot kernel_args -->";
/// The line that closes it.
pub const DOC_END: &str = "<!-- kernel-args:end -->";

/// The Markdown table of the kernel arguments, between its marker lines.
pub fn doc_block() -> String {
    let mut block = format!("{DOC_BEGIN}\n| key | accepted values | default | what it does |\n");
    block += "|---|---|---|---|\n";
    for p in PARAMETERS {
        block += &format!("| `{}` | {} | {} | {} |\n", p.key, p.accepted, p.default, p.help);
    }
    block + DOC_END
}

/// `document` with its generated block replaced by `block`; None if it has
/// no block (a begin line starting `<!-- kernel-args:begin`, an end line).
pub fn with_doc_block(document: &str, block: &str) -> Option<String> {
    let begin = document.find("<!-- kernel-args:begin")?;
    let end = begin + document[begin..].find(DOC_END)? + DOC_END.len();
    Some(format!("{}{block}{}", &document[..begin], &document[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_names_every_key_with_its_values_and_default() {
        let help = help();
        for parameter in PARAMETERS {
            let entry = help_entry(parameter);
            assert!(entry.starts_with(&format!("  {} ", parameter.key)), "{entry}");
            assert!(help.contains(&entry));
        }
        assert!(help.contains("default: 10000, as the SDM asks"), "{help}");
        assert!(help.lines().all(|line| line.len() <= HELP_WIDTH), "{help}");
    }

    #[test]
    fn wrapping_keeps_every_word_and_indents_the_rest() {
        assert_eq!(wrap("aa bb cc dd", 5), ["aa bb", "cc dd"]);
        assert_eq!(wrap("aa bbb c", 5), ["aa", "bbb c"]);
        assert_eq!(wrap("a-very-long-word x", 5), ["a-very-long-word", "x"]);
    }

    #[test]
    fn the_block_is_found_and_replaced() {
        let document =
            "intro\n<!-- kernel-args:begin old -->\nstale\n<!-- kernel-args:end -->\nrest\n";
        let replaced = with_doc_block(document, "NEW").unwrap();
        assert_eq!(replaced, "intro\nNEW\nrest\n");
        assert_eq!(with_doc_block("no block here", "NEW"), None);
    }

    /// README.md and docs/runner.md carry the table generated from the
    /// kernel's list; an edit to either side alone fails here.
    #[test]
    fn docs_list_the_kernel_arguments_of_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let block = doc_block();
        let update = std::env::var_os("UPDATE_KERNEL_ARGS_DOCS").is_some();
        for name in ["README.md", "docs/runner.md"] {
            let path = root.join(name);
            let document = std::fs::read_to_string(&path).unwrap();
            let expected = with_doc_block(&document, &block)
                .unwrap_or_else(|| panic!("{name} has no {DOC_END} block"));
            if expected == document {
                continue;
            }
            if update {
                std::fs::write(&path, expected).unwrap();
                continue;
            }
            panic!(
                "{name}'s kernel-argument table differs from kernel/src/args/table.rs.\n\
                 Run `UPDATE_KERNEL_ARGS_DOCS=1 cargo test -p boot kernel_args` to regenerate it. \
                 Expected:\n{block}"
            );
        }
    }
}
