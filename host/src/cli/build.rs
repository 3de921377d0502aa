//! Building a function crate into a component with cargo, for `edgefn up path/to/crate`.

use anyhow::{Context as _, bail};
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The target every function is built for.
pub(crate) const TARGET: &str = "wasm32-wasip2";

/// Builds the crate in `dir` (release, wasm32-wasip2) and returns the path of its `.wasm`.
///
/// Cargo's progress and diagnostics go to the terminal as usual; its JSON messages on stdout tell which file it
/// produced, so target directories and workspaces need no guessing.
pub(crate) fn build_crate(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!("{} is neither a .wasm file nor a crate directory (no Cargo.toml)", dir.display());
    }
    let manifest = manifest.canonicalize().with_context(|| format!("failed to resolve {}", manifest.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building {} for {TARGET}", dir.display());
    let mut child = Command::new(cargo)
        .args(["build", "--release", "--target", TARGET, "--message-format=json-render-diagnostics", "--lib"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("failed to run cargo: is it installed and on PATH?")?;
    let stdout = child.stdout.take().context("cargo stdout")?;
    let mut wasm = None;
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("failed to read cargo output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if message["reason"] != "compiler-artifact" || message["manifest_path"] != manifest.to_string_lossy().as_ref() {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            wasm = files.iter().filter_map(|f| f.as_str()).find(|f| f.ends_with(".wasm")).map(PathBuf::from).or(wasm);
        }
    }
    let status = child.wait().context("failed to wait for cargo")?;
    if !status.success() {
        bail!(
            "failed to build {}: cargo exited with {status} (is the target installed? `rustup target add {TARGET}`)",
            dir.display()
        );
    }
    wasm.with_context(|| {
        format!("building {} produced no .wasm: its [lib] needs `crate-type = [\"cdylib\"]`", dir.display())
    })
}

/// The static files a crate declares in its Cargo.toml, their folder made absolute:
///
/// ```toml
/// [package.metadata.edgefn]
/// assets = "public"
/// # or: assets = { dir = "public", spa_fallback = "index.html", cache = { "/assets/**" = "max-age=31536000" } }
/// ```
pub(crate) fn declared_assets(crate_dir: &Path) -> anyhow::Result<Option<crate::config::AssetSettings>> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| format!("failed to read {}", manifest.display()))?;
    let value: toml::Value =
        toml::from_str(&text).with_context(|| format!("failed to parse {}", manifest.display()))?;
    let declared = value.get("package").and_then(|p| p.get("metadata")).and_then(|m| m.get("edgefn"));
    let Some(declared) = declared.and_then(|edgefn| edgefn.get("assets")) else { return Ok(None) };
    let what = || format!("[package.metadata.edgefn] assets in {}", manifest.display());
    let mut settings: crate::config::AssetSettings = match declared {
        toml::Value::String(dir) => crate::config::AssetSettings { dir: Some(dir.into()), ..Default::default() },
        other => other.clone().try_into().with_context(what)?,
    };
    let dir = settings.dir.take().with_context(|| format!("{}: name the folder, `dir = \"public\"`", what()))?;
    settings.dir = Some(if dir.is_relative() { crate_dir.join(dir) } else { dir });
    settings.validate(&what()).map_err(anyhow::Error::msg)?;
    Ok(Some(settings))
}

#[cfg(test)]
mod tests {
    use super::declared_assets;
    use std::path::Path;

    fn crate_with(dir: &Path, metadata: &str) {
        let manifest = format!("[package]\nname = \"site\"\nversion = \"0.1.0\"\n{metadata}");
        std::fs::write(dir.join("Cargo.toml"), manifest).expect("write Cargo.toml");
    }

    #[test]
    fn a_crate_declares_its_static_files_by_folder_or_by_table() {
        // The photo gallery example, as `edgefn up examples/photo-gallery` reads it.
        let gallery = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/photo-gallery");
        let settings = declared_assets(&gallery).expect("parses").expect("declared");
        assert_eq!(settings.dir, Some(gallery.join("public")));

        let dir = tempfile::tempdir().expect("temp dir");
        crate_with(dir.path(), "");
        assert!(declared_assets(dir.path()).expect("parses").is_none(), "nothing declared");
        crate_with(
            dir.path(),
            "[package.metadata.edgefn.assets]\ndir = \"site\"\nroute = \"/app\"\nspa_fallback = \"index.html\"\n",
        );
        let settings = declared_assets(dir.path()).expect("parses").expect("declared");
        assert_eq!(settings.dir, Some(dir.path().join("site")));
        assert_eq!((settings.route.as_deref(), settings.spa_fallback.as_deref()), (Some("/app"), Some("index.html")));
        crate_with(dir.path(), "[package.metadata.edgefn.assets]\nroute = \"/app\"\n");
        let error = declared_assets(dir.path()).expect_err("no folder").to_string();
        assert!(error.contains("name the folder"), "{error}");
    }
}
