//! `assets = { ... }` of a component (`[components.NAME.assets]`, or `[package.metadata.edgefn.assets]` in the
//! crate's own Cargo.toml): a folder of static files deployed and rolled back with the component, and served by the
//! host itself (`triggers::http::assets`), never by a guest.
//!
//! ```toml
//! [components.site.assets]
//! dir = "public"                         # relative to this file (or to the crate)
//! route = "/"                            # where the files appear; default "/"
//! spa_fallback = "index.html"            # paths with no file and no extension get this file (single-page apps)
//! cache = { "/assets/**" = "public, max-age=31536000, immutable", "**/*.html" = "no-cache" }
//! ```
//!
//! The order a request is answered in: a function's route first, then a file, then the SPA fallback, then 404.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a file gets when no cache rule matches: a browser may keep it, but asks (with its ETag) before using it.
pub const DEFAULT_ASSET_CACHE_CONTROL: &str = "public, max-age=0, must-revalidate";

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssetSettings {
    /// The folder, on the machine that deploys. Not part of a version: what it held is (as [`Self::bundle`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The path prefix the files are served under (default `/`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The file (relative to the folder) that answers a path with no file and no extension.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spa_fallback: Option<String>,
    /// `Cache-Control` by path pattern (glob over the path below the route, with a leading `/`); the first match
    /// in the order of the patterns wins, else [`DEFAULT_ASSET_CACHE_CONTROL`].
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub cache: BTreeMap<String, String>,
    /// The sha256 of the files a deploy carried (set by the host when it stores them; never by hand).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle: Option<String>,
}

impl AssetSettings {
    /// `self` with every setting `overrides` sets replacing its own.
    pub fn merged_with(&self, overrides: &AssetSettings) -> AssetSettings {
        let mut cache = self.cache.clone();
        cache.extend(overrides.cache.clone());
        AssetSettings {
            dir: overrides.dir.clone().or_else(|| self.dir.clone()),
            route: overrides.route.clone().or_else(|| self.route.clone()),
            spa_fallback: overrides.spa_fallback.clone().or_else(|| self.spa_fallback.clone()),
            cache,
            bundle: overrides.bundle.clone().or_else(|| self.bundle.clone()),
        }
    }

    /// The route, normalized: `/` or `/prefix` without a trailing slash.
    pub fn route(&self) -> String {
        let route = self.route.as_deref().unwrap_or("/").trim_end_matches('/');
        if route.is_empty() { "/".to_owned() } else { route.to_owned() }
    }

    /// Checks the settings; the error names the setting and why.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        let route = self.route();
        if !route.starts_with('/') {
            return Err(format!("{what}: assets.route `{route}` must start with `/`"));
        }
        if route.starts_with("/_edgefn") {
            return Err(format!("{what}: assets.route `{route}` is under /_edgefn, which the host keeps for itself"));
        }
        if route.contains(['{', '}', '*', '?', '#']) {
            return Err(format!("{what}: assets.route `{route}` must be a plain path prefix, without patterns"));
        }
        if let Some(fallback) = &self.spa_fallback
            && (fallback.is_empty() || fallback.starts_with('/') || fallback.split('/').any(|part| part == ".."))
        {
            return Err(format!(
                "{what}: assets.spa_fallback `{fallback}` must be a file inside the folder, e.g. \"index.html\""
            ));
        }
        for (pattern, value) in &self.cache {
            globset::Glob::new(pattern)
                .map_err(|error| format!("{what}: assets.cache pattern `{pattern}` is not a glob: {error}"))?;
            if http::HeaderValue::try_from(value.as_str()).is_err() || value.trim().is_empty() {
                return Err(format!("{what}: assets.cache value for `{pattern}` is not a header value: `{value}`"));
            }
        }
        if let Some(bundle) = &self.bundle
            && (bundle.len() != 64 || !bundle.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("{what}: assets.bundle `{bundle}` is not a sha256"));
        }
        Ok(())
    }

    /// What is part of a version: everything but the folder's path on the deploying machine.
    pub fn for_version(&self) -> AssetSettings {
        AssetSettings { dir: None, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deploys_settings_replace_the_hosts_one_by_one() {
        let host = AssetSettings {
            dir: Some("public".into()),
            spa_fallback: Some("index.html".into()),
            cache: BTreeMap::from([("**/*.html".into(), "no-cache".into())]),
            ..AssetSettings::default()
        };
        let deploy = AssetSettings {
            route: Some("/app/".into()),
            cache: BTreeMap::from([("/img/**".into(), "max-age=60".into())]),
            ..AssetSettings::default()
        };
        let merged = host.merged_with(&deploy);
        assert_eq!(merged.dir.as_deref(), Some(std::path::Path::new("public")));
        assert_eq!(merged.route(), "/app");
        assert_eq!(merged.spa_fallback.as_deref(), Some("index.html"));
        assert_eq!(merged.cache.len(), 2);
        assert_eq!(merged.for_version().dir, None);
    }

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        let check = |settings: AssetSettings| settings.validate("[components.site]").unwrap_err();
        let error = check(AssetSettings { route: Some("/_edgefn/x".into()), ..Default::default() });
        assert!(error.contains("assets.route `/_edgefn/x`"), "{error}");
        let error = check(AssetSettings { route: Some("app".into()), ..Default::default() });
        assert!(error.contains("must start with `/`"), "{error}");
        let error = check(AssetSettings { spa_fallback: Some("../secret".into()), ..Default::default() });
        assert!(error.contains("assets.spa_fallback"), "{error}");
        let error =
            check(AssetSettings { cache: BTreeMap::from([("[".into(), "no-cache".into())]), ..Default::default() });
        assert!(error.contains("assets.cache pattern `[`"), "{error}");
        assert!(AssetSettings { route: Some("/app/".into()), ..Default::default() }.validate("x").is_ok());
    }
}
