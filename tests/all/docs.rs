//! The book (`docs/`) and the README hold: mdBook builds the book, every link between their pages reaches a page and
//! a heading that exist, and every code block is real. A ```rust block of the book only includes compiled code (an
//! anchored part of a workspace crate that CI builds); a ```toml block is a host config that the host's own parser
//! accepts (```toml,cargo: valid TOML); every `edgefn` command in an ```sh block parses with the real CLI; a
//! ```json block is valid JSON. Anything else is ```text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_owned()
}

/// The pages checked: the book's chapters, and the README.
fn pages() -> Vec<PathBuf> {
    let src = workspace().join("docs/src");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&src)
        .expect("docs/src")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    assert!(pages.len() >= 10, "the book has its chapters: {pages:?}");
    pages.push(workspace().join("README.md"));
    pages
}

fn is_book(page: &Path) -> bool {
    page.parent().is_some_and(|dir| dir.ends_with("docs/src"))
}

/// A fenced code block: its info string, its lines, and where it starts.
#[derive(Debug)]
struct Block {
    info: String,
    lines: Vec<String>,
    line: usize,
}

/// The fenced blocks of `text`, and its prose (the lines outside them).
fn split(text: &str) -> (Vec<Block>, Vec<(usize, String)>) {
    let mut blocks = Vec::new();
    let mut prose = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in text.lines().enumerate() {
        let fence = line.trim_start().starts_with("```");
        match (&mut open, fence) {
            (None, true) => {
                let info = line.trim_start().trim_start_matches('`').trim().to_owned();
                open = Some(Block { info, lines: Vec::new(), line: index + 1 });
            }
            (Some(_), true) => blocks.extend(open.take()),
            (Some(block), false) => block.lines.push(line.to_owned()),
            (None, false) => prose.push((index + 1, line.to_owned())),
        }
    }
    assert!(open.is_none(), "a code block is never closed: {open:?}");
    (blocks, prose)
}

/// mdBook's id of a heading: lower case, spaces to `-`, only letters, digits, `-` and `_` kept.
fn heading_id(heading: &str) -> String {
    let text: String = heading.chars().filter(|c| *c != '`').collect();
    text.trim()
        .chars()
        .filter_map(|c| match c {
            c if c.is_whitespace() => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// The heading ids of a page, with mdBook's `-1`, `-2` for repeats.
fn heading_ids(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (_, prose) = split(text);
    prose
        .iter()
        .filter(|(_, line)| line.starts_with('#'))
        .map(|(_, line)| {
            let id = heading_id(line.trim_start_matches('#'));
            let count = seen.entry(id.clone()).or_default();
            *count += 1;
            if *count == 1 { id } else { format!("{id}-{}", *count - 1) }
        })
        .collect()
}

/// The targets of the Markdown links in `line`, outside inline code.
fn link_targets(line: &str) -> Vec<String> {
    let outside_code: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
    let mut targets = Vec::new();
    let mut rest = outside_code.as_str();
    while let Some(start) = rest.find("](") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        targets.push(after[..end].to_owned());
        rest = &after[end..];
    }
    targets
}

#[test]
fn every_link_of_the_book_and_the_readme_reaches_a_page_and_a_heading() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let (_, prose) = split(&text);
        for (line, content) in prose {
            for target in link_targets(&content) {
                if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                    continue;
                }
                let (file, anchor) = target.split_once('#').map_or((target.as_str(), None), |(f, a)| (f, Some(a)));
                let linked = if file.is_empty() { page.clone() } else { page.parent().expect("dir").join(file) };
                let place = format!("{}:{line}: `{target}`", page.display());
                if is_book(&page) {
                    assert!(
                        file.is_empty() || (file.ends_with(".md") && !file.contains('/')),
                        "{place}: the book links only to its own chapters (name other files as `code`)"
                    );
                }
                assert!(linked.is_file(), "{place}: no such file {}", linked.display());
                if let Some(anchor) = anchor {
                    let ids = heading_ids(&std::fs::read_to_string(&linked).expect("linked page"));
                    assert!(ids.iter().any(|id| id == anchor), "{place}: no heading `#{anchor}` there; it has {ids:?}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "the links were found ({checked})");
}

/// The text an mdBook include line brings in: the anchored part of a workspace file (or the whole file).
fn included(page: &Path, line: &str) -> Result<(PathBuf, String), String> {
    let spec = line
        .trim()
        .strip_prefix("{{#include ")
        .and_then(|rest| rest.strip_suffix("}}"))
        .ok_or_else(|| format!("not an include line: `{line}`"))?;
    let (file, anchor) = spec.split_once(':').map_or((spec, None), |(f, a)| (f, Some(a)));
    let path = page.parent().expect("dir").join(file);
    let path = path.canonicalize().map_err(|e| format!("`{file}`: {e}"))?;
    let text = std::fs::read_to_string(&path).map_err(|e| format!("`{file}`: {e}"))?;
    let Some(anchor) = anchor else { return Ok((path, text)) };
    let start = format!("ANCHOR: {anchor}");
    let end = format!("ANCHOR_END: {anchor}");
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.iter().position(|l| l.trim_start().trim_start_matches("//").trim() == start);
    let to = lines.iter().position(|l| l.trim_start().trim_start_matches("//").trim() == end);
    match (from, to) {
        (Some(from), Some(to)) if from < to => {
            let part: Vec<&str> = lines[from + 1..to].iter().copied().filter(|l| !l.contains("ANCHOR")).collect();
            Ok((path, part.join("\n")))
        }
        _ => {
            Err(format!("`{file}` has no anchor `{anchor}` (an `ANCHOR: {anchor}` line, then `ANCHOR_END: {anchor}`)"))
        }
    }
}

/// Whether `path` is in a crate CI compiles: an example, a test guest, the SDK or the host.
fn is_compiled(path: &Path) -> bool {
    let root = workspace().canonicalize().expect("workspace");
    let Ok(relative) = path.strip_prefix(&root) else { return false };
    let relative = relative.to_string_lossy();
    let members = std::fs::read_to_string(root.join("Cargo.toml")).expect("workspace manifest");
    relative.ends_with(".rs")
        && (relative.starts_with("sdk/src/")
            || relative.starts_with("host/src/")
            || relative.split("/src/").next().is_some_and(|krate| members.contains(&format!("\"{krate}\""))))
}

/// The `edgefn` commands of a shell block, as words: continuation lines joined, cut at a pipe, `;`, `&&` or `>`;
/// `cargo run ... --` and `$(edgefn ...)` count as commands too.
fn edgefn_commands(lines: &[String]) -> Vec<(String, Vec<String>)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in lines {
        let line = line.trim();
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        joined.push(std::mem::take(&mut current));
    }
    // A command substituted into another (`TOKEN=$(edgefn token mint ...)`) is checked too.
    let substituted = joined.iter().flat_map(|line| {
        line.match_indices("$(edgefn ").filter_map(|(at, _)| {
            let inner = &line[at + 2..];
            inner.find(')').map(|end| inner[..end].to_owned())
        })
    });
    let substituted: Vec<String> = substituted.collect();
    // `cargo run --release -p edgefn-host -- ARGS` is `edgefn ARGS` before the binary is on the PATH.
    const FROM_SOURCE: &str = "cargo run --release -p edgefn-host -- ";
    let joined: Vec<String> = joined
        .into_iter()
        .map(|line| match line.find(FROM_SOURCE) {
            Some(at) => format!("edgefn {}", &line[at + FROM_SOURCE.len()..]),
            None => line,
        })
        .collect();
    joined
        .into_iter()
        .chain(substituted)
        .filter(|line| line.starts_with("edgefn "))
        .map(|line| {
            let words = shlex::split(&line).unwrap_or_else(|| panic!("unbalanced quotes: {line}"));
            let stop = words
                .iter()
                .position(|w| ["|", "||", "&&", ";", "&", ">", "2>&1"].contains(&w.as_str()) || w.starts_with('#'))
                .unwrap_or(words.len());
            (line.clone(), words[..stop].to_vec())
        })
        .collect()
}

#[test]
fn every_code_block_of_the_book_and_the_readme_is_compiled_parsed_or_valid() {
    use clap::Parser as _;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("page");
        let (blocks, _) = split(&text);
        for block in blocks {
            let place = format!("{}:{}", page.display(), block.line);
            let body = block.lines.join("\n");
            match block.info.as_str() {
                "rust" if !is_book(&page) => *counts.entry("readme rust").or_default() += 1,
                "rust" => {
                    for line in block.lines.iter().filter(|l| !l.trim().is_empty()) {
                        let (path, part) = included(&page, line).unwrap_or_else(|e| panic!("{place}: {e}"));
                        assert!(is_compiled(&path), "{place}: {} is not in a crate CI compiles", path.display());
                        assert!(!part.trim().is_empty(), "{place}: `{line}` includes nothing");
                        *counts.entry("rust").or_default() += 1;
                    }
                }
                "toml" => {
                    let config = if body.trim().starts_with("{{#include") {
                        included(&page, body.trim()).unwrap_or_else(|e| panic!("{place}: {e}")).1
                    } else {
                        body.clone()
                    };
                    if let Err(error) = edgefn_host::config::HostConfig::parse(&config) {
                        panic!("{place}: not a host config the host accepts: {error:#}\n{config}");
                    }
                    *counts.entry("toml").or_default() += 1;
                }
                "toml,cargo" => {
                    toml::from_str::<toml::Value>(&body).unwrap_or_else(|e| panic!("{place}: not TOML: {e}"));
                    *counts.entry("toml,cargo").or_default() += 1;
                }
                "sh" => {
                    for (line, words) in edgefn_commands(&block.lines) {
                        if let Err(error) = edgefn_host::cli::Cli::try_parse_from(&words) {
                            panic!("{place}: `{line}` is not a command the CLI takes:\n{error}");
                        }
                        *counts.entry("edgefn command").or_default() += 1;
                    }
                }
                "json" => {
                    serde_json::from_str::<serde_json::Value>(&body)
                        .unwrap_or_else(|e| panic!("{place}: not JSON: {e}"));
                    *counts.entry("json").or_default() += 1;
                }
                "text" => *counts.entry("text").or_default() += 1,
                other => panic!("{place}: a ```{other} block: use rust (includes), toml, toml,cargo, sh, json or text"),
            }
        }
    }
    // What the book holds today, roughly: a parser that stopped finding blocks would fall far below it.
    for (kind, least) in [("rust", 30), ("toml", 5), ("edgefn command", 50)] {
        assert!(counts.get(kind).copied().unwrap_or(0) >= least, "few {kind} blocks were checked: {counts:?}");
    }
}

#[test]
fn mdbook_builds_the_book() {
    use crate::support::tools::{Tool, require, which};
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
        .map(|home| home.join("bin/mdbook"));
    let found = || which("mdbook").or_else(|| cargo_bin.filter(|path| path.is_file()));
    let Some(mdbook) = require(Tool::Mdbook, "docs::mdbook_builds_the_book", found) else { return };
    let out = tempfile::tempdir().expect("temp dir");
    let built = std::process::Command::new(&mdbook)
        .arg("build")
        .arg(workspace().join("docs"))
        .arg("--dest-dir")
        .arg(out.path())
        .output()
        .expect("run mdbook");
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "mdbook build failed:\n{stderr}");
    assert!(!stderr.contains("ERROR") && !stderr.contains("WARN"), "mdbook complained:\n{stderr}");
    let page = std::fs::read_to_string(out.path().join("observability.html")).expect("a built chapter");
    assert!(page.contains("edgefn::trace::span"), "the chapter's includes were filled in");
}
