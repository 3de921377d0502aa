//! Embeds the SDK's source in the `edgefn` binary, for `edgefn new`: a new function crate gets a copy of the SDK
//! that matches this host exactly (the `edgefn`, `edgefn-macros` and `edgefn-manifest` crates and the WIT
//! contract), so it builds anywhere with only cargo, before the SDK is on crates.io.
//!
//! The crates' manifests inherit from this workspace (`version.workspace = true`, `serde.workspace = true`); each
//! is rewritten here into a standalone manifest, every inherited entry resolved from the workspace's own tables,
//! so the copy can never drift from what the workspace builds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The crates copied, by directory in this workspace and name in the new crate's `edgefn-sdk/`.
const CRATES: &[(&str, &str)] = &[("sdk", "edgefn"), ("macros", "edgefn-macros"), ("manifest", "edgefn-manifest")];

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is in the workspace").to_owned();
    let root: toml::Table = read_toml(&workspace.join("Cargo.toml"));
    let package_defaults = root["workspace"]["package"].as_table().expect("[workspace.package]").clone();
    let dependencies = root["workspace"]["dependencies"].as_table().expect("[workspace.dependencies]").clone();
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut manifests: BTreeMap<String, String> = BTreeMap::new();
    for (dir, name) in CRATES {
        let crate_dir = workspace.join(dir);
        println!("cargo::rerun-if-changed={}", crate_dir.join("Cargo.toml").display());
        let manifest = standalone_manifest(&read_toml(&crate_dir.join("Cargo.toml")), &package_defaults, &dependencies);
        manifests.insert(format!("{name}/Cargo.toml"), manifest);
        collect(&crate_dir.join("src"), &format!("{name}/src"), &mut files);
        // A crate's build script (the SDK's names the ABI it builds for) goes with it.
        // Watched only where it exists: cargo counts a watched file that is missing as changed on every build,
        // which rebuilt the host each time. A build script added later is picked up at the next change to its
        // crate's manifest or sources.
        let build_script = crate_dir.join("build.rs");
        if build_script.is_file() {
            println!("cargo::rerun-if-changed={}", build_script.display());
            files.push((format!("{name}/build.rs"), build_script));
        }
    }
    collect(&workspace.join("wit"), "wit", &mut files);
    println!("cargo::rerun-if-changed={}", workspace.join("Cargo.toml").display());
    println!("cargo::rerun-if-changed={}", workspace.join("Cargo.lock").display());

    let mut out = String::from(
        "/// The SDK's files: path inside `edgefn-sdk/`, contents.\npub(crate) const SDK_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (relative, path) in &files {
        println!("cargo::rerun-if-changed={}", path.display());
        writeln!(out, "    ({relative:?}, include_bytes!({:?})),", path.display().to_string()).expect("write");
    }
    for (relative, manifest) in &manifests {
        writeln!(out, "    ({relative:?}, {:?}.as_bytes()),", manifest).expect("write");
    }
    out.push_str("];\n");
    writeln!(
        out,
        "/// The workspace's lock file: the versions the SDK is built and tested with.\npub(crate) const LOCK_FILE: &str = include_str!({:?});",
        workspace.join("Cargo.lock").display().to_string()
    )
    .expect("write");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out_dir.join("sdk_files.rs"), out).expect("write sdk_files.rs");
}

fn read_toml(path: &Path) -> toml::Table {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.parse().unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Every file under `dir`, as (`prefix/relative path`, absolute path), in a stable order.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().expect("file name").to_string_lossy().into_owned();
        if path.is_dir() {
            collect(&path, &format!("{prefix}/{name}"), files);
        } else {
            files.push((format!("{prefix}/{name}"), path));
        }
    }
}

/// The crate's manifest with every workspace-inherited entry resolved, path dependencies on our own crates pointed
/// at their sibling copies, and what only the workspace needs (tests, dev-dependencies, lints) left out.
fn standalone_manifest(manifest: &toml::Table, package_defaults: &toml::Table, dependencies: &toml::Table) -> String {
    let mut out = toml::Table::new();
    let mut package = manifest["package"].as_table().expect("[package]").clone();
    for (key, value) in package.iter_mut() {
        if value.get("workspace").and_then(toml::Value::as_bool) == Some(true) {
            *value = package_defaults.get(key).unwrap_or_else(|| panic!("[workspace.package] has no `{key}`")).clone();
        }
    }
    package.insert("publish".into(), toml::Value::Boolean(false));
    out.insert("package".into(), toml::Value::Table(package));
    if let Some(lib) = manifest.get("lib") {
        out.insert("lib".into(), lib.clone());
    }
    if let Some(features) = manifest.get("features") {
        out.insert("features".into(), features.clone());
    }
    if let Some(deps) = manifest.get("dependencies").and_then(toml::Value::as_table) {
        out.insert("dependencies".into(), toml::Value::Table(resolve_dependencies(deps, dependencies)));
    }
    if let Some(targets) = manifest.get("target").and_then(toml::Value::as_table) {
        let mut resolved = toml::Table::new();
        for (cfg, table) in targets {
            let mut target = toml::Table::new();
            if let Some(deps) = table.get("dependencies").and_then(toml::Value::as_table) {
                target.insert("dependencies".into(), toml::Value::Table(resolve_dependencies(deps, dependencies)));
            }
            resolved.insert(cfg.clone(), toml::Value::Table(target));
        }
        out.insert("target".into(), toml::Value::Table(resolved));
    }
    format!(
        "# Written by `edgefn new`: the edgefn SDK, matching the host that wrote it.\n{}",
        toml::to_string(&out).expect("manifest serializes")
    )
}

fn resolve_dependencies(deps: &toml::Table, workspace: &toml::Table) -> toml::Table {
    let mut resolved = toml::Table::new();
    for (name, spec) in deps {
        let inherits = spec.get("workspace").and_then(toml::Value::as_bool) == Some(true);
        let mut value = if inherits {
            workspace.get(name).unwrap_or_else(|| panic!("[workspace.dependencies] has no `{name}`")).clone()
        } else {
            spec.clone()
        };
        // A bare version string becomes a table so the crate's own keys (features, optional) can join it.
        if let toml::Value::String(version) = &value {
            let mut table = toml::Table::new();
            table.insert("version".into(), toml::Value::String(version.clone()));
            value = toml::Value::Table(table);
        }
        let table = value.as_table_mut().expect("a dependency is a table");
        if let Some(own) = spec.as_table().filter(|_| inherits) {
            for (key, entry) in own {
                match key.as_str() {
                    "workspace" => {}
                    "features" => {
                        let mut features =
                            table.get("features").and_then(toml::Value::as_array).cloned().unwrap_or_default();
                        features.extend(entry.as_array().cloned().unwrap_or_default());
                        table.insert("features".into(), toml::Value::Array(features));
                    }
                    _ => {
                        table.insert(key.clone(), entry.clone());
                    }
                }
            }
        }
        // Our own crates: the sibling copy in `edgefn-sdk/`, by path.
        if let Some(path) = table.get("path").and_then(toml::Value::as_str) {
            let sibling = CRATES.iter().find(|(dir, _)| Path::new(path).ends_with(dir)).map(|(_, name)| *name);
            let sibling = sibling.unwrap_or_else(|| panic!("path dependency `{name}` on {path} is not an SDK crate"));
            table.insert("path".into(), toml::Value::String(format!("../{sibling}")));
        }
        resolved.insert(name.clone(), value);
    }
    resolved
}
