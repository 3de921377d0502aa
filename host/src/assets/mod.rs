//! Static files deployed with a component and served by the host itself (issue 24, item 1).
//!
//! A deploy carries a folder as one [`bundle`] (a tar), named by its sha256. The host unpacks it once into
//! `<data>/assets/<sha256>/files/`, with an index (`index.json`: each file's size and sha256, its ETag) and the
//! bundle itself (`bundle.tar`, for a cluster's other nodes). The version's configuration names the bundle
//! (`assets.bundle`), so a version always serves the files it was deployed with, and a rollback serves the old
//! ones again: nothing is copied at a switch. The same folder deployed twice is stored once.
//!
//! An [`AssetSite`] is one version's files, ready to serve: which path is which file, its ETags (one per encoding:
//! `app.js.br` next to `app.js` is its Brotli form), and its `Cache-Control`. The HTTP trigger answers with it
//! (`triggers::http::assets`) when no function route matches.

pub mod bundle;

use crate::config::{AssetSettings, DEFAULT_ASSET_CACHE_CONTROL};
use bundle::{BundleLimits, IndexedFile};
use http::HeaderValue;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where bundles are unpacked: `<data>/assets`.
#[derive(Debug, Clone)]
pub struct AssetStore {
    root: PathBuf,
}

const INDEX_FILE: &str = "index.json";
const FILES_DIR: &str = "files";
const BUNDLE_FILE: &str = "bundle.tar";

impl AssetStore {
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        let root = data_dir.join("assets");
        std::fs::create_dir_all(&root)
            .map_err(|error| anyhow::anyhow!("failed to create {}: {error}", root.display()))?;
        Ok(Self { root })
    }

    /// Whether bundle `sha256` is unpacked here.
    pub fn has(&self, sha256: &str) -> bool {
        self.root.join(sha256).join(INDEX_FILE).is_file()
    }

    /// The bytes of bundle `sha256`, as deployed.
    pub fn bundle(&self, sha256: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.root.join(sha256).join(BUNDLE_FILE))
    }

    /// Unpacks `bundle` (blocking: call it off the serving threads) and returns its sha256. Written under a
    /// temporary name and renamed: a crash leaves either the whole bundle or none of it.
    pub fn install(&self, bundle_bytes: &[u8], limits: BundleLimits) -> Result<String, String> {
        let sha256 = bundle::bundle_hash(bundle_bytes);
        if self.has(&sha256) {
            return Ok(sha256);
        }
        let unique = format!(".unpacking-{sha256}-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        let staging = self.root.join(unique);
        let result = (|| {
            let files = staging.join(FILES_DIR);
            std::fs::create_dir_all(&files).map_err(|error| format!("failed to unpack the assets: {error}"))?;
            let index = bundle::unpack(bundle_bytes, &files, limits)?;
            let json = serde_json::to_vec(&index).map_err(|error| error.to_string())?;
            let write = |name: &str, bytes: &[u8]| {
                std::fs::write(staging.join(name), bytes)
                    .map_err(|error| format!("failed to store the assets: {error}"))
            };
            write(BUNDLE_FILE, bundle_bytes)?;
            write(INDEX_FILE, &json)?;
            match std::fs::rename(&staging, self.root.join(&sha256)) {
                Ok(()) => Ok(()),
                // Another deploy of the same files got there first: theirs is the same.
                Err(_) if self.has(&sha256) => Ok(()),
                Err(error) => Err(format!("failed to store the assets: {error}")),
            }
        })();
        if result.is_err() || staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result.map(|()| sha256)
    }

    /// Bundle `sha256`, ready to serve with `settings`.
    pub fn site(&self, sha256: &str, settings: &AssetSettings) -> Result<AssetSite, String> {
        let dir = self.root.join(sha256);
        let json = std::fs::read(dir.join(INDEX_FILE))
            .map_err(|error| format!("its static files (bundle {sha256}) are not on this node: {error}"))?;
        let index: BTreeMap<String, IndexedFile> = serde_json::from_slice(&json)
            .map_err(|error| format!("the index of its static files (bundle {sha256}) is unreadable: {error}"))?;
        AssetSite::new(sha256, &dir.join(FILES_DIR), &index, settings)
    }
}

/// One file as the host serves it.
#[derive(Debug)]
pub struct SiteFile {
    pub path: PathBuf,
    /// The ETag of the file itself, and of its Brotli and gzip forms when the folder has them.
    pub etag: HeaderValue,
    pub brotli: Option<HeaderValue>,
    pub gzip: Option<HeaderValue>,
    pub cache_control: HeaderValue,
}

impl SiteFile {
    /// Whether it has a compressed form, so responses vary by `Accept-Encoding`.
    pub fn has_variants(&self) -> bool {
        self.brotli.is_some() || self.gzip.is_some()
    }

    /// The ETag of the form a response carries, by its `Content-Encoding`.
    pub fn etag_for(&self, content_encoding: Option<&str>) -> &HeaderValue {
        match content_encoding {
            Some("br") => self.brotli.as_ref().unwrap_or(&self.etag),
            Some("gzip") => self.gzip.as_ref().unwrap_or(&self.etag),
            _ => &self.etag,
        }
    }
}

/// What a path below the site's route is.
#[derive(Debug)]
pub enum AssetLookup<'a> {
    File(&'a SiteFile),
    /// A folder named without its trailing slash: where it is with one (its `index.html` is then served).
    Redirect(String),
    /// No file, and the site's SPA fallback answers.
    Fallback(&'a SiteFile),
    NotFound,
}

/// See the module docs.
#[derive(Debug)]
pub struct AssetSite {
    pub bundle: String,
    /// The path prefix it is served under: `/` or `/prefix`.
    pub route: String,
    files: HashMap<String, SiteFile>,
    spa_fallback: Option<String>,
}

impl AssetSite {
    fn new(
        sha256: &str,
        files_dir: &Path,
        index: &BTreeMap<String, IndexedFile>,
        settings: &AssetSettings,
    ) -> Result<Self, String> {
        // The longest pattern is the most specific: it wins.
        let mut rules = Vec::new();
        for (pattern, value) in &settings.cache {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| format!("assets.cache pattern `{pattern}`: {error}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("assets.cache value for `{pattern}` is not a header value"))?;
            rules.push((pattern.len(), glob.compile_matcher(), value));
        }
        rules.sort_by_key(|rule| std::cmp::Reverse(rule.0));
        let etag = |file: &IndexedFile| {
            HeaderValue::try_from(format!("\"{}\"", &file.sha256[..32.min(file.sha256.len())]))
                .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
        };
        let mut files = HashMap::with_capacity(index.len());
        for (name, file) in index {
            let url_path = format!("/{name}");
            let cache_control = rules
                .iter()
                .find(|(_, matcher, _)| matcher.is_match(&url_path))
                .map_or_else(|| HeaderValue::from_static(DEFAULT_ASSET_CACHE_CONTROL), |(_, _, value)| value.clone());
            let site_file = SiteFile {
                path: files_dir.join(name),
                etag: etag(file),
                brotli: index.get(&format!("{name}.br")).map(etag),
                gzip: index.get(&format!("{name}.gz")).map(etag),
                cache_control,
            };
            files.insert(name.clone(), site_file);
        }
        if let Some(fallback) = &settings.spa_fallback
            && !files.contains_key(fallback.as_str())
        {
            return Err(format!("assets.spa_fallback `{fallback}` is not among the deployed files"));
        }
        Ok(Self {
            bundle: sha256.to_owned(),
            route: settings.route(),
            files,
            spa_fallback: settings.spa_fallback.clone(),
        })
    }

    /// How many files it has.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The path below the route when `path` is under this site's route.
    pub fn below_route<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.route == "/" {
            return Some(path);
        }
        let rest = path.strip_prefix(self.route.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    /// What `path` (the request's path, percent-encoded) is on this site.
    pub fn lookup(&self, path: &str) -> AssetLookup<'_> {
        let Some(below) = self.below_route(path) else { return AssetLookup::NotFound };
        if below.is_empty() && self.route != "/" {
            // `/app` of a site at `/app`: its index is at `/app/`, where its relative links resolve.
            return AssetLookup::Redirect(format!("{}/", self.route));
        }
        let decoded = edgefn_manifest::route::percent_decode(below);
        let name = decoded.trim_start_matches('/');
        if name.split('/').any(|part| part == ".." || part == ".") {
            return AssetLookup::NotFound;
        }
        let key = if name.is_empty() || name.ends_with('/') { format!("{name}index.html") } else { name.to_owned() };
        if let Some(file) = self.files.get(&key) {
            return AssetLookup::File(file);
        }
        if !name.is_empty() && !name.ends_with('/') && self.files.contains_key(&format!("{name}/index.html")) {
            // One leading slash: `//docs/` would send the browser to another host.
            return AssetLookup::Redirect(format!("/{}/", path.trim_start_matches('/')));
        }
        let last = name.rsplit('/').next().unwrap_or_default();
        match &self.spa_fallback {
            Some(fallback) if !last.contains('.') => {
                self.files.get(fallback.as_str()).map_or(AssetLookup::NotFound, AssetLookup::Fallback)
            }
            _ => AssetLookup::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(route: &str, spa: Option<&str>) -> AssetSite {
        let file = |text: &str| IndexedFile { size: 1, sha256: format!("{text:0>64}") };
        let index = BTreeMap::from([
            ("index.html".to_owned(), file("1")),
            ("app.js".to_owned(), file("2")),
            ("app.js.br".to_owned(), file("3")),
            ("docs/index.html".to_owned(), file("4")),
            ("img/a b.png".to_owned(), file("5")),
        ]);
        let settings = AssetSettings {
            route: Some(route.into()),
            spa_fallback: spa.map(Into::into),
            cache: BTreeMap::from([
                ("**".into(), "public, max-age=60".into()),
                ("/img/**".into(), "public, max-age=31536000, immutable".into()),
            ]),
            ..AssetSettings::default()
        };
        AssetSite::new(&"f".repeat(64), Path::new("/nowhere"), &index, &settings).expect("site")
    }

    fn file_name(lookup: AssetLookup<'_>) -> String {
        match lookup {
            AssetLookup::File(file) => format!("file {}", file.path.display()),
            AssetLookup::Fallback(file) => format!("fallback {}", file.path.display()),
            AssetLookup::Redirect(to) => format!("redirect {to}"),
            AssetLookup::NotFound => "none".into(),
        }
    }

    #[test]
    fn paths_find_files_folders_their_index_and_the_fallback() {
        let site = site("/", Some("index.html"));
        assert_eq!(file_name(site.lookup("/")), "file /nowhere/index.html");
        assert_eq!(file_name(site.lookup("/app.js")), "file /nowhere/app.js");
        assert_eq!(file_name(site.lookup("/docs/")), "file /nowhere/docs/index.html");
        assert_eq!(file_name(site.lookup("/docs")), "redirect /docs/");
        assert_eq!(file_name(site.lookup("//docs")), "redirect /docs/", "never to another host");
        assert_eq!(file_name(site.lookup("/img/a%20b.png")), "file /nowhere/img/a b.png");
        assert_eq!(file_name(site.lookup("/orders/42")), "fallback /nowhere/index.html", "a client-side route");
        assert_eq!(file_name(site.lookup("/missing.png")), "none", "a missing file is not the app");
        assert_eq!(file_name(site.lookup("/../etc/passwd")), "none");
        assert_eq!(file_name(site.lookup("/%2e%2e/etc/passwd")), "none");
    }

    #[test]
    fn a_site_under_a_route_answers_only_below_it() {
        let site = site("/app/", None);
        assert_eq!(file_name(site.lookup("/app")), "redirect /app/");
        assert_eq!(file_name(site.lookup("/app/")), "file /nowhere/index.html");
        assert_eq!(file_name(site.lookup("/app/app.js")), "file /nowhere/app.js");
        assert_eq!(file_name(site.lookup("/application")), "none");
        assert_eq!(file_name(site.lookup("/app/orders/42")), "none", "no fallback configured");
    }

    #[test]
    fn each_file_has_its_etags_and_the_most_specific_cache_rule() {
        let site = site("/", None);
        let AssetLookup::File(app) = site.lookup("/app.js") else { panic!("app.js") };
        assert_eq!(app.etag, format!("\"{}\"", &format!("{:0>64}", "2")[..32]));
        assert!(app.brotli.is_some() && app.gzip.is_none() && app.has_variants());
        assert_eq!(app.etag_for(Some("br")), app.brotli.as_ref().expect("br"));
        assert_eq!(app.cache_control, "public, max-age=60");
        let AssetLookup::File(image) = site.lookup("/img/a%20b.png") else { panic!("image") };
        assert_eq!(image.cache_control, "public, max-age=31536000, immutable");
    }
}
