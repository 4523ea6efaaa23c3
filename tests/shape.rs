//! The house rule on function size: no function in `src/` longer than 60 lines, tests included,
//! so that each reads at a glance. A function over it is split, not listed here.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 60;

/// The source with comments, string and character literals blanked, so that only code braces
/// remain; line breaks are kept.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let rest = &chars[i..];
        let end = if rest.starts_with(&['/', '/']) {
            i + rest.iter().position(|&c| c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            i + 2 + rest[2..].windows(2).position(|w| w == ['*', '/']).map_or(rest.len() - 2, |p| p + 2)
        } else if rest[0] == 'r' && rest.get(1).is_some_and(|&c| c == '"' || c == '#') {
            let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
            let closing: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            let body = 2 + hashes;
            i + body + rest[body..].windows(closing.len()).position(|w| w == closing).map_or(0, |p| p + closing.len())
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            i + j + 1
        } else if rest[0] == '\'' && (rest.get(2) == Some(&'\'') || rest.get(1) == Some(&'\\')) {
            i + 1 + rest[1..].iter().skip(1).position(|&c| c == '\'').map_or(1, |p| p + 2)
        } else {
            out.push(rest[0]);
            i += 1;
            continue;
        };
        let end = end.min(chars.len());
        out.extend(chars[i..end].iter().map(|&c| blank(c)));
        i = end;
    }
    out
}

/// Each function with a body: (first line, name, lines from its `fn` to its closing brace).
fn functions(source: &str) -> Vec<(usize, String, usize)> {
    let code = code_only(source);
    let lines: Vec<&str> = code.lines().collect();
    let mut found = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let Some(at) = line.find("fn ").filter(|&at| at == 0 || !line.as_bytes()[at - 1].is_ascii_alphanumeric())
        else {
            continue;
        };
        let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let mut depth = 0i32;
        let mut opened = false;
        for (offset, text) in lines[start..].iter().enumerate() {
            let text = if offset == 0 { &text[at..] } else { text };
            for c in text.chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                found.push((start + 1, name.clone(), offset + 1));
                break;
            }
            if !opened && text.trim_end().ends_with(';') {
                break;
            }
        }
    }
    found
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn no_function_in_src_is_longer_than_sixty_lines() {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    let mut long = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("a source file");
        for (line, name, length) in functions(&source) {
            if length > MAX_LINES {
                long.push(format!("{}:{line} {name} ({length} lines)", file.display()));
            }
        }
    }
    assert!(files.len() > 30, "the scan found the sources");
    assert!(long.is_empty(), "functions over {MAX_LINES} lines:\n{}", long.join("\n"));
}

#[test]
fn the_scan_measures_a_function_whatever_its_strings_and_comments_hold() {
    let source = "fn short() {\n    let a = \"}}\"; // }\n    let b = r#\"{\"x\"}\"#;\n    let c = '{';\n}\n\
                  pub(crate) async fn long<'a>(x: &'a str) -> usize {\n/* { */\n    x.len()\n\n}\nfn declared();\n";
    assert_eq!(functions(source), vec![(1, "short".to_owned(), 5), (6, "long".to_owned(), 5)], "{}", code_only(source));
}
