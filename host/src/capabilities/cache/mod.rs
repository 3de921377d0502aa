//! The response cache's store: function responses the HTTP trigger may answer again without running the function
//! (`triggers::http::cache` decides what is stored and when an entry answers), and the import that lets a
//! function purge its own component's entries (`edgefn::cache::purge_path` / `purge_tag`).
//!
//! Entries live in the node's memory, in least-recently-used order under a byte budget (`[cache] memory_mb`); one
//! larger than `max_entry_kb` is never stored. Nothing is written to disk. Each entry belongs to one version of
//! one component: a deploy, a rollback or an undeploy purges the component's entries, and a function can purge only
//! its own component's. On a cluster, a purge made on one node reaches every node ([`peers`]).

pub mod peers;

pub use crate::config::CacheSettings;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One stored response.
#[derive(Debug)]
pub struct CachedResponse {
    pub component: String,
    pub version: u32,
    /// The request path (no query): what a purge by path names.
    pub path: String,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// From the response's `Cache-Tag` header: what a purge by tag names.
    pub tags: Vec<String>,
    pub stored_at: Instant,
    /// Fresh for this long after `stored_at` (`s-maxage`, else `max-age`).
    pub fresh_for: Duration,
    /// After that, still good for this long when the function fails (`stale-if-error`).
    pub stale_if_error: Duration,
}

impl CachedResponse {
    /// What it costs the budget: its body and headers, and a little for the entry itself.
    fn weight(&self, key: &str) -> usize {
        let headers: usize = self.headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
        self.body.len() + headers + key.len() + self.path.len() + 256
    }

    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.stored_at)
    }

    pub fn is_fresh(&self, now: Instant) -> bool {
        self.age(now) < self.fresh_for
    }

    pub fn is_usable_on_error(&self, now: Instant) -> bool {
        self.age(now) < self.fresh_for + self.stale_if_error
    }
}

/// What is in the cache now, for metrics and the admin API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub stored: u64,
    pub purged: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct ResponseCache {
    settings: CacheSettings,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    stored: AtomicU64,
    purged: AtomicU64,
    /// On a cluster: where this node's purges go to reach the other nodes.
    peers: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<(String, Purge)>>,
}

/// What a purge drops of a component's entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// A path (every query and variant of it), or every path below a prefix ending in `*`.
    Path(String),
    Tag(String),
    All,
}

#[derive(Debug)]
struct State {
    /// By primary key (component, version, path and query), least recently used first.
    entries: lru::LruCache<String, Variants>,
    bytes: usize,
}

/// The responses stored for one primary key: one per combination of the request headers they vary on.
#[derive(Debug, Default)]
struct Variants {
    vary: Vec<http::HeaderName>,
    /// (the request's values of `vary`, the response)
    responses: Vec<(String, std::sync::Arc<CachedResponse>)>,
}

/// The most variants kept for one primary key (a `Vary: User-Agent` must not fill the cache with one URL).
const MAX_VARIANTS: usize = 16;

impl Variants {
    fn weight(&self) -> usize {
        self.responses.iter().map(|(values, response)| response.weight(values)).sum()
    }
}

/// How an answer from the cache is labelled (`x-edgefn-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    Hit,
    Miss,
    Stale,
}

impl CacheStatus {
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Stale => "stale",
        }
    }
}

impl ResponseCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State { entries: lru::LruCache::unbounded(), bytes: 0 }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale: AtomicU64::new(0),
            stored: AtomicU64::new(0),
            purged: AtomicU64::new(0),
            peers: std::sync::OnceLock::new(),
        }
    }

    /// Drops `component`'s entries that `purge` names, here and, on a cluster, on every other node (which happens
    /// moments later); returns how many were dropped here.
    pub fn purge(&self, component: &str, purge: &Purge) -> u64 {
        if let Some(peers) = self.peers.get() {
            // The receiving task ends only with the node: a send that fails finds nothing left to tell.
            let _ = peers.send((component.to_owned(), purge.clone()));
        }
        self.purge_here(component, purge)
    }

    /// Drops `component`'s entries that `purge` names, on this node only.
    pub fn purge_here(&self, component: &str, purge: &Purge) -> u64 {
        match purge {
            Purge::Path(path) => self.purge_path(component, path),
            Purge::Tag(tag) => self.purge_tag(component, tag),
            Purge::All => self.purge_component(component),
        }
    }

    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The largest body stored.
    pub fn max_entry_bytes(&self) -> usize {
        usize::try_from(self.settings.max_entry_kb << 10).unwrap_or(usize::MAX)
    }

    fn budget(&self) -> usize {
        usize::try_from(self.settings.memory_mb << 20).unwrap_or(usize::MAX)
    }

    /// The entry for `primary` whose varying request headers match `request`, fresh or not.
    pub fn lookup(&self, primary: &str, request: &HeaderMap) -> Option<std::sync::Arc<CachedResponse>> {
        let mut state = self.lock();
        let variants = state.entries.get(primary)?;
        let values = vary_values(&variants.vary, request)?;
        variants.responses.iter().find(|(v, _)| *v == values).map(|(_, response)| response.clone())
    }

    /// Counts an answer.
    pub fn count(&self, status: CacheStatus) {
        let counter = match status {
            CacheStatus::Hit => &self.hits,
            CacheStatus::Miss => &self.misses,
            CacheStatus::Stale => &self.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `entry` for `primary`, varying on `vary` of `request`, dropping the least recently used entries
    /// past the budget. An entry too large is not stored.
    pub fn store(&self, primary: &str, vary: Vec<http::HeaderName>, request: &HeaderMap, entry: CachedResponse) {
        // A varying header that is not text cannot be told apart from its absence: such a response is not kept.
        let Some(values) = vary_values(&vary, request) else { return };
        let weight = entry.weight(&values) + primary.len();
        if entry.body.len() > self.max_entry_bytes() || weight > self.budget() {
            return;
        }
        let mut state = self.lock();
        let before = state.entries.peek(primary).map_or(0, Variants::weight);
        let mut variants = state.entries.pop(primary).unwrap_or_default();
        if variants.vary != vary {
            // The response now varies on other headers: the old variants no longer say which request they fit.
            variants = Variants { vary, responses: Vec::new() };
        }
        variants.responses.retain(|(v, _)| *v != values);
        if variants.responses.len() >= MAX_VARIANTS {
            variants.responses.remove(0);
        }
        variants.responses.push((values, std::sync::Arc::new(entry)));
        let after = variants.weight();
        state.entries.put(primary.to_owned(), variants);
        state.bytes = state.bytes.saturating_sub(before) + after;
        while state.bytes > self.budget() {
            let Some((_, evicted)) = state.entries.pop_lru() else { break };
            state.bytes = state.bytes.saturating_sub(evicted.weight());
        }
        self.stored.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops every entry of `component` that `matches`; returns how many.
    fn purge_where(&self, component: &str, matches: impl Fn(&CachedResponse) -> bool) -> u64 {
        let mut state = self.lock();
        let prefix = format!("{component}\n");
        let primaries: Vec<String> =
            state.entries.iter().filter(|(primary, _)| primary.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
        let mut purged = 0;
        for primary in primaries {
            let Some(mut variants) = state.entries.pop(&primary) else { continue };
            let before = variants.weight();
            let count = variants.responses.len();
            variants.responses.retain(|(_, response)| !matches(response));
            purged += (count - variants.responses.len()) as u64;
            state.bytes = state.bytes.saturating_sub(before) + variants.weight();
            if !variants.responses.is_empty() {
                state.entries.put(primary, variants);
            }
        }
        self.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Drops `component`'s entries for `path` (every query and variant of it); a path ending in `*` drops those
    /// below the prefix before it. A full URL or a path with a query is taken for its path, and a path without its
    /// leading slash gets one. The path is compared as requests sent it, percent-encoding included (`/a%20b`).
    pub fn purge_path(&self, component: &str, path: &str) -> u64 {
        let path = normalized_purge_path(path);
        let path = path.as_str();
        match path.strip_suffix('*') {
            Some(prefix) => self.purge_where(component, |entry| entry.path.starts_with(prefix)),
            None => self.purge_where(component, |entry| entry.path == path),
        }
    }

    /// Drops `component`'s entries tagged `tag`.
    pub fn purge_tag(&self, component: &str, tag: &str) -> u64 {
        self.purge_where(component, |entry| entry.tags.iter().any(|t| t == tag))
    }

    /// Drops every entry of `component` (its deploys and rollbacks do).
    pub fn purge_component(&self, component: &str) -> u64 {
        self.purge_where(component, |_| true)
    }

    pub fn stats(&self) -> CacheStats {
        let state = self.lock();
        CacheStats {
            entries: state.entries.iter().map(|(_, variants)| variants.responses.len() as u64).sum(),
            bytes: state.bytes as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            stale: self.stale.load(Ordering::Relaxed),
            stored: self.stored.load(Ordering::Relaxed),
            purged: self.purged.load(Ordering::Relaxed),
        }
    }
}

/// The primary key of a response: its component and version, method-free (GET and HEAD share), path and query.
pub fn primary_key(component: &str, version: u32, path_and_query: &str) -> String {
    format!("{component}\n{version}\n{path_and_query}")
}

/// The values `request` has for the headers a response varies on, as one string; `None` when one is not text.
fn vary_values(vary: &[http::HeaderName], request: &HeaderMap) -> Option<String> {
    let mut key = String::new();
    for name in vary {
        key.push_str(name.as_str());
        key.push('=');
        let values = request.get_all(name).iter().map(|v| v.to_str().ok()).collect::<Option<Vec<&str>>>()?;
        key.push_str(&values.join(","));
        key.push('\n');
    }
    Some(key)
}

/// The view the purge import acts on: the cache, and who calls.
#[derive(Debug)]
pub struct CacheView<'a> {
    pub cache: Option<&'a std::sync::Arc<ResponseCache>>,
    /// `component/function` of the caller: a function purges only its own component's entries.
    pub caller: Option<&'a str>,
}

use super::bindings::p2::edgefn::function::cache as wit;

/// The [`wasmtime::component::HasData`] of the purge import.
#[derive(Debug)]
pub struct CacheHost;

impl wasmtime::component::HasData for CacheHost {
    type Data<'a> = CacheView<'a>;
}

/// Links `edgefn:function/cache`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> CacheView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, CacheHost>(linker, view)
}

impl CacheView<'_> {
    fn scope(&self) -> Result<(&ResponseCache, &str), String> {
        let cache = self.cache.ok_or_else(|| super::unavailable("the response cache"))?;
        let component = super::caller_component(self.caller);
        Ok((cache, component))
    }
}

impl wit::Host for CacheView<'_> {
    async fn purge_path(&mut self, path: String) -> Result<u64, String> {
        if !path.starts_with('/') {
            return Err(format!("cache purge path `{path}` must start with `/`"));
        }
        let (cache, component) = self.scope()?;
        Ok(cache.purge(component, &Purge::Path(path)))
    }

    async fn purge_tag(&mut self, tag: String) -> Result<u64, String> {
        if tag.is_empty() {
            return Err("cache purge tag is empty".into());
        }
        let (cache, component) = self.scope()?;
        Ok(cache.purge(component, &Purge::Tag(tag)))
    }
}

/// The path a purge names, as requests arrive at it: `https://host/a?x=1` and `a` are `/a`.
fn normalized_purge_path(path: &str) -> String {
    let path = path.trim();
    // A URL only when what comes before `://` is a scheme: `/proxy/https://x/a` is a path.
    let is_scheme = |scheme: &str| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    };
    let path = match path.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => rest.find('/').map_or("/", |slash| &rest[slash..]),
        _ => path,
    };
    let path = path.split(['?', '#']).next().unwrap_or_default();
    if path.starts_with('/') { path.to_owned() } else { format!("/{path}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(component: &str, path: &str, body: &str, tags: &[&str]) -> CachedResponse {
        CachedResponse {
            component: component.into(),
            version: 1,
            path: path.into(),
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_owned()),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            stored_at: Instant::now(),
            fresh_for: Duration::from_secs(60),
            stale_if_error: Duration::ZERO,
        }
    }

    fn put(cache: &ResponseCache, component: &str, path: &str, body: &str, tags: &[&str]) {
        let primary = primary_key(component, 1, path);
        cache.store(&primary, Vec::new(), &HeaderMap::new(), entry(component, path, body, tags));
    }

    fn body(cache: &ResponseCache, component: &str, path: &str) -> Option<String> {
        let found = cache.lookup(&primary_key(component, 1, path), &HeaderMap::new())?;
        Some(String::from_utf8_lossy(&found.body).into_owned())
    }

    #[test]
    fn entries_vary_on_the_request_headers_the_response_names() {
        let cache = ResponseCache::new(CacheSettings::default());
        let primary = primary_key("a", 1, "/greeting");
        let vary = vec![http::header::ACCEPT_LANGUAGE];
        let mut german = HeaderMap::new();
        german.insert(http::header::ACCEPT_LANGUAGE, "de".parse().expect("value"));
        let mut english = HeaderMap::new();
        english.insert(http::header::ACCEPT_LANGUAGE, "en".parse().expect("value"));
        cache.store(&primary, vary.clone(), &german, entry("a", "/greeting", "hallo", &[]));
        assert_eq!(cache.lookup(&primary, &german).map(|e| e.body.clone()), Some(Bytes::from("hallo")));
        assert!(cache.lookup(&primary, &english).is_none(), "another language is another entry");
        cache.store(&primary, vary, &english, entry("a", "/greeting", "hello", &[]));
        assert_eq!(cache.lookup(&primary, &english).map(|e| e.body.clone()), Some(Bytes::from("hello")));
    }

    #[test]
    fn the_least_recently_used_entries_go_first_when_the_budget_is_full() {
        let cache = ResponseCache::new(CacheSettings { enabled: true, memory_mb: 1, max_entry_kb: 512 });
        let big = "x".repeat(300 << 10);
        put(&cache, "a", "/1", &big, &[]);
        put(&cache, "a", "/2", &big, &[]);
        assert!(body(&cache, "a", "/1").is_some(), "touch /1: /2 is now the least recently used");
        put(&cache, "a", "/3", &big, &[]);
        put(&cache, "a", "/4", &big, &[]);
        assert!(body(&cache, "a", "/2").is_none());
        assert!(cache.stats().bytes <= 1 << 20, "{:?}", cache.stats());
        put(&cache, "a", "/huge", &"x".repeat(600 << 10), &[]);
        assert!(body(&cache, "a", "/huge").is_none(), "over max_entry_kb: not stored");
    }

    #[test]
    fn purges_by_path_prefix_tag_and_component_touch_only_that_component() {
        let cache = ResponseCache::new(CacheSettings::default());
        put(&cache, "a", "/products/1", "p1", &["product-1", "products"]);
        put(&cache, "a", "/products/2", "p2", &["products"]);
        put(&cache, "a", "/about", "about", &[]);
        put(&cache, "b", "/products/1", "other tenant", &["products"]);
        assert_eq!(cache.purge_tag("a", "product-1"), 1);
        assert!(body(&cache, "a", "/products/1").is_none());
        assert_eq!(cache.purge_path("a", "/products/*"), 1);
        assert_eq!(body(&cache, "b", "/products/1").as_deref(), Some("other tenant"));
        assert_eq!(cache.purge_path("a", "/about"), 1);
        put(&cache, "a", "/about", "about again", &[]);
        assert_eq!(cache.purge_path("a", "https://example.test/about?x=1"), 1, "a URL names its path");
        assert_eq!(cache.purge_component("b"), 1);
        assert_eq!(cache.stats().entries, 0);
        assert_eq!(cache.stats().bytes, 0);
    }

    #[test]
    fn a_purge_names_a_path_as_requests_arrive_at_it() {
        for (given, path) in [
            ("/a/b", "/a/b"),
            ("a/b", "/a/b"),
            ("/a?x=1", "/a"),
            ("https://example.test/a/b?x#y", "/a/b"),
            ("http://example.test", "/"),
            ("/a/*", "/a/*"),
            (" /a ", "/a"),
            ("/proxy/https://x.test/a", "/proxy/https://x.test/a"),
        ] {
            assert_eq!(normalized_purge_path(given), path, "{given}");
        }
    }
}
