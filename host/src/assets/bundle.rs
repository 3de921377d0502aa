//! The bundle a deploy carries a folder of static files in: a tar archive, made the same way every time (paths
//! sorted, no owners, no times), so the same folder is the same sha256 and a redeploy of unchanged files stores
//! nothing new. Unpacking checks every entry: regular files and folders only, paths that stay inside, and the
//! deploy limits on size and count, each refused with the entry and the reason.

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Component, Path};

/// A file of an unpacked bundle, as its index records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IndexedFile {
    pub size: u64,
    /// sha256 of the bytes: the file's ETag.
    pub sha256: String,
}

/// What limits a bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleLimits {
    pub max_bytes: u64,
    pub max_files: u32,
}

/// Packs the folder `dir` into a bundle. Symbolic links are followed (a build tool may link its output); anything
/// that is neither a file nor a folder is refused.
pub fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    if !dir.is_dir() {
        anyhow::bail!("the assets folder {} does not exist or is not a folder", dir.display());
    }
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for relative in files {
        let path = dir.join(&relative);
        let bytes = std::fs::read(&path).with_context(|| format!("failed to read {}", path.display()))?;
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, &relative, bytes.as_slice())
            .with_context(|| format!("failed to pack {}", path.display()))?;
    }
    builder.into_inner().context("failed to finish the assets bundle")
}

/// Every file below `dir`, as a path relative to `root` with `/` separators.
fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("failed to list {}", dir.display()))? {
        let path = entry.with_context(|| format!("failed to list {}", dir.display()))?.path();
        let meta = std::fs::metadata(&path).with_context(|| format!("failed to read {}", path.display()))?;
        if meta.is_dir() {
            collect(root, &path, files)?;
        } else if meta.is_file() {
            let relative = path.strip_prefix(root).unwrap_or(&path);
            let text =
                relative.to_str().with_context(|| format!("asset {} has a name that is not UTF-8", path.display()))?;
            files.push(text.replace(std::path::MAIN_SEPARATOR, "/"));
        } else {
            anyhow::bail!("asset {} is neither a file nor a folder", path.display());
        }
    }
    Ok(())
}

/// The sha256 of a bundle, which names it.
pub fn bundle_hash(bundle: &[u8]) -> String {
    hex::encode(Sha256::digest(bundle))
}

/// Unpacks `bundle` into `files_dir` (which must be empty) and returns the index of what it holds. Refuses, naming
/// the entry: links and devices, absolute paths and `..`, and a bundle over `limits`.
pub fn unpack(bundle: &[u8], files_dir: &Path, limits: BundleLimits) -> Result<BTreeMap<String, IndexedFile>, String> {
    let mut archive = tar::Archive::new(bundle);
    let mut index = BTreeMap::new();
    let mut total: u64 = 0;
    let entries = archive.entries().map_err(|error| format!("the assets bundle is not a tar archive: {error}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| format!("the assets bundle is not a tar archive: {error}"))?;
        let name = entry
            .path()
            .map_err(|error| format!("an asset's name is unreadable: {error}"))?
            .to_string_lossy()
            .into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            other => return Err(format!("asset `{name}` is a {other:?} entry: only files and folders are served")),
        }
        let relative = safe_relative(&name)?;
        if index.len() >= limits.max_files as usize {
            return Err(format!("the assets hold more than {} files (limits.max_asset_files)", limits.max_files));
        }
        let size = entry.header().size().map_err(|error| format!("asset `{name}` has no size: {error}"))?;
        total = total.saturating_add(size);
        if total > limits.max_bytes {
            return Err(format!(
                "the assets hold more than {} MiB (limits.max_assets_mb); `{name}` is past it",
                limits.max_bytes >> 20
            ));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|error| format!("asset `{name}` is cut short: {error}"))?;
        let path = files_dir.join(&relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| format!("failed to unpack `{name}`: {error}"))?;
        }
        std::fs::write(&path, &bytes).map_err(|error| format!("failed to unpack `{name}`: {error}"))?;
        let file = IndexedFile { size, sha256: hex::encode(Sha256::digest(&bytes)) };
        if index.insert(relative.clone(), file).is_some() {
            return Err(format!("asset `{relative}` is in the bundle twice"));
        }
    }
    Ok(index)
}

/// `name` as a path inside the folder (`a/b.css`), or why it is not one.
fn safe_relative(name: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for component in Path::new(name).components() {
        match component {
            Component::Normal(part) => parts
                .push(part.to_str().ok_or_else(|| format!("asset `{name}` has a name that is not UTF-8"))?.to_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(format!("asset `{name}` points outside its folder (absolute, or with `..`)"));
            }
        }
    }
    if parts.is_empty() {
        return Err(format!("asset `{name}` has an empty name"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: BundleLimits = BundleLimits { max_bytes: 1 << 20, max_files: 100 };

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    #[test]
    fn the_same_folder_packs_to_the_same_bytes_and_unpacks_to_the_same_files() {
        let source = folder(&[("index.html", "<h1>hi</h1>"), ("css/site.css", "body{}"), (".well-known/x", "y")]);
        let (first, second) = (pack(source.path()).expect("pack"), pack(source.path()).expect("pack again"));
        assert_eq!(bundle_hash(&first), bundle_hash(&second));
        let target = tempfile::tempdir().expect("temp dir");
        let index = unpack(&first, target.path(), ROOMY).expect("unpack");
        assert_eq!(index.keys().collect::<Vec<_>>(), [".well-known/x", "css/site.css", "index.html"]);
        assert_eq!(std::fs::read_to_string(target.path().join("css/site.css")).expect("read"), "body{}");
        assert_eq!(index["index.html"].sha256, hex::encode(Sha256::digest(b"<h1>hi</h1>")));
    }

    /// A tar with one entry named `name`, written raw so that names `tar::Builder` refuses can be tried.
    fn raw_tar(name: &str, kind: tar::EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        header.set_size(if kind == tar::EntryType::Regular { 3 } else { 0 });
        header.set_entry_type(kind);
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        if kind == tar::EntryType::Regular {
            bytes.extend_from_slice(b"abc");
            bytes.resize(1024, 0);
        }
        bytes.resize(bytes.len() + 1024, 0);
        bytes
    }

    #[test]
    fn entries_that_escape_the_folder_or_are_not_files_are_refused_by_name() {
        let target = tempfile::tempdir().expect("temp dir");
        let error = unpack(&raw_tar("../evil", tar::EntryType::Regular), target.path(), ROOMY).unwrap_err();
        assert!(error.contains("asset `../evil` points outside its folder"), "{error}");
        let error = unpack(&raw_tar("/etc/passwd", tar::EntryType::Regular), target.path(), ROOMY).unwrap_err();
        assert!(error.contains("points outside"), "{error}");
        let error = unpack(&raw_tar("link", tar::EntryType::Symlink), target.path(), ROOMY).unwrap_err();
        assert!(error.contains("asset `link` is a Symlink entry"), "{error}");
        assert!(std::fs::read_dir(target.path()).expect("list").next().is_none(), "nothing was written");
    }

    #[test]
    fn a_bundle_over_the_limits_is_refused_with_the_limit_named() {
        let source = folder(&[("a.txt", "0123456789"), ("b.txt", "0123456789")]);
        let bundle = pack(source.path()).expect("pack");
        let target = tempfile::tempdir().expect("temp dir");
        let error = unpack(&bundle, target.path(), BundleLimits { max_bytes: 1 << 20, max_files: 1 }).unwrap_err();
        assert!(error.contains("more than 1 files (limits.max_asset_files)"), "{error}");
        let error = unpack(&bundle, target.path(), BundleLimits { max_bytes: 15, max_files: 10 }).unwrap_err();
        assert!(error.contains("(limits.max_assets_mb); `b.txt` is past it"), "{error}");
    }
}
