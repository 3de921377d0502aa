//! The test components: every guest crate of the workspace built once per test binary, for WASI 0.2 and 0.3.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_owned()
}

/// Where crates are built for the tests (the components, and what a host under test builds): apart from the main
/// target dir, so the nested cargo never waits on the lock of the cargo running the tests. The WASI 0.3 builds of
/// the components go to a dir of their own (see [`built`]).
pub(crate) fn components_target_dir() -> PathBuf {
    workspace().join("target").join("test-components")
}

/// The ABI a test component is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Abi {
    P2,
    P3,
}

/// A workspace crate that builds into a component: an example or a test guest.
struct GuestCrate {
    name: String,
    /// Its `edgefn` dependency turns on `wasip3`: it is WASI 0.3 only.
    wasip3_only: bool,
    /// It depends on the SDK, so it also builds for WASI 0.3 (with `--features edgefn/wasip3`).
    uses_sdk: bool,
}

/// Every example and test guest of the workspace (the members under `examples/` and `tests/guests/`): no list to
/// keep by hand.
fn guest_crates() -> Vec<GuestCrate> {
    let root: toml::Table = std::fs::read_to_string(workspace().join("Cargo.toml"))
        .expect("read Cargo.toml")
        .parse()
        .expect("Cargo.toml parses");
    let members = root["workspace"]["members"].as_array().expect("workspace members");
    members
        .iter()
        .filter_map(|member| member.as_str())
        .filter(|member| member.starts_with("examples/") || member.starts_with("tests/guests/"))
        .map(|member| {
            let manifest: toml::Table = std::fs::read_to_string(workspace().join(member).join("Cargo.toml"))
                .expect("read a guest's Cargo.toml")
                .parse()
                .expect("a guest's Cargo.toml parses");
            let name = manifest["package"]["name"].as_str().expect("package name").to_owned();
            let edgefn = manifest.get("dependencies").and_then(|d| d.get("edgefn"));
            let wasip3_only = edgefn
                .and_then(|e| e.get("features"))
                .and_then(|f| f.as_array())
                .is_some_and(|features| features.iter().any(|f| f.as_str() == Some("wasip3")));
            GuestCrate { name, wasip3_only, uses_sdk: edgefn.is_some() }
        })
        .collect()
}

/// Builds every test component once per run, for both ABIs, and returns the directory of each build: the WASI 0.2
/// build of every crate that has one, and the WASI 0.3 build of every crate that uses the SDK (and the plain WASI
/// 0.3 ones). Two cargo runs, because cargo unifies features: one with `edgefn/wasip3` turns it on for all.
fn built() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let crates = guest_crates();
        let build = |abi: Abi, names: Vec<&str>| {
            let target_dir = if abi == Abi::P2 { components_target_dir() } else { components_target_dir().join("p3") };
            let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
            command.current_dir(workspace()).args(["build", "--release", "--target", "wasm32-wasip2"]);
            for name in &names {
                command.args(["-p", name]);
            }
            if abi == Abi::P3 {
                command.args(["--features", "edgefn/wasip3"]);
            }
            let status = command.env("CARGO_TARGET_DIR", &target_dir).status().expect("run cargo");
            assert!(
                status.success(),
                "building the test components ({abi:?}) failed (is the target installed? rustup target add wasm32-wasip2)"
            );
            target_dir.join("wasm32-wasip2").join("release")
        };
        let p2 = crates.iter().filter(|c| !c.wasip3_only && !c.name.ends_with("-p3")).map(|c| c.name.as_str());
        let p3 = crates.iter().filter(|c| c.uses_sdk || c.name.ends_with("-p3")).map(|c| c.name.as_str());
        (build(Abi::P2, p2.collect()), build(Abi::P3, p3.collect()))
    })
}

/// The path of test component `name`.wasm: its WASI 0.2 build, or for a WASI 0.3-only crate, its only build.
pub(crate) fn component(name: &str) -> PathBuf {
    let (p2, p3) = built();
    let path = p2.join(format!("{name}.wasm"));
    if path.is_file() {
        return path;
    }
    let path = p3.join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The path of test component `name`.wasm built for `abi`.
pub(crate) fn component_for(abi: Abi, name: &str) -> PathBuf {
    let (p2, p3) = built();
    let path = if abi == Abi::P2 { p2 } else { p3 }.join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The path of `name`.wasm as a command-line argument.
pub(crate) fn component_arg(name: &str) -> String {
    component(name).to_str().expect("utf-8 path").to_owned()
}

/// The path of `name`.wasm built for `abi`, as a command-line argument.
pub(crate) fn component_arg_for(abi: Abi, name: &str) -> String {
    component_for(abi, name).to_str().expect("utf-8 path").to_owned()
}
