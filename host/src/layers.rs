//! The host's layers, lowest first, and a test that holds the code to them: a module may use (`crate::...`) only
//! modules of its own layer or below. The book's *Architecture* chapter (`docs/src/architecture.md`) draws the same picture.
//!
//! The leaves any layer may use come first; [`crate::node`] wires everything together, and [`crate::cli`] sits on
//! top of it.

/// The top-level modules of the host, lowest layer first; modules in one inner slice are peers of one layer.
pub const LAYERS: &[&[&str]] = &[
    &["storage", "config", "component", "logging", "priority", "layers", "assets"],
    &["telemetry", "auth"],
    &["capabilities"],
    &["runtime"],
    &["live"],
    &["triggers", "alarms"],
    &["deployments"],
    &["admin"],
    &["node"],
    &["cli"],
];

#[cfg(test)]
mod tests {
    use super::LAYERS;
    use std::path::{Path, PathBuf};

    /// The layer of top-level module `name`.
    fn layer(name: &str) -> Option<usize> {
        LAYERS.iter().position(|peers| peers.contains(&name))
    }

    /// Every `.rs` file under `dir`.
    fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read the source dir") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }

    /// The top-level modules a file's code names with `crate::` (comments left out).
    fn uses(code: &str) -> Vec<String> {
        let mut used = Vec::new();
        for line in code.lines() {
            let code = line.split("//").next().unwrap_or_default();
            let mut rest = code;
            while let Some(at) = rest.find("crate::") {
                let name: String =
                    rest[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                used.push(name);
                rest = &rest[at + 7..];
            }
        }
        used
    }

    #[test]
    fn every_module_uses_only_its_own_layer_and_those_below() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut violations = Vec::new();
        for file in &files {
            let relative = file.strip_prefix(&root).expect("under src");
            let first = relative.components().next().expect("a component").as_os_str().to_string_lossy();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let own = layer(&module).unwrap_or_else(|| panic!("module `{module}` is in no layer: add it to LAYERS"));
            let code = std::fs::read_to_string(file).expect("read a source file");
            for used in uses(&code) {
                let Some(theirs) = layer(&used) else { continue };
                if theirs > own {
                    violations.push(format!("{} uses crate::{used}, a layer above `{module}`", relative.display()));
                }
            }
        }
        assert!(violations.is_empty(), "the layers do not hold:\n{}", violations.join("\n"));
    }

    #[test]
    fn the_check_sees_a_use_from_above_and_not_one_in_a_comment() {
        // Spelled in pieces, so this file's own scan does not see a use of the runtime here.
        let line = format!("use {0}runtime::Abi; // {0}cli is not used", "crate::");
        assert_eq!(uses(&line), ["runtime"]);
        assert!(layer("cli") > layer("runtime"));
    }
}
