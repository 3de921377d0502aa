//! `[cache]`: the HTTP response cache (`capabilities::cache`, `triggers::http::cache`).
//!
//! ```toml
//! [cache]
//! enabled = true       # cache GET responses whose Cache-Control lets a shared cache keep them
//! memory_mb = 64       # the most memory the entries hold together (least recently used go first)
//! max_entry_kb = 1024  # larger responses are passed on, never stored
//! ```

/// `[cache]` of the host config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Cache function responses whose `Cache-Control` allows it (default on).
    pub enabled: bool,
    /// The most memory the entries may hold together.
    pub memory_mb: u64,
    /// The largest response body stored.
    pub max_entry_kb: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { enabled: true, memory_mb: 64, max_entry_kb: 1024 }
    }
}
