//! Response caching for GET and HEAD, as a shared cache (RFC 9111) in front of functions.
//!
//! A GET response is stored when its function says a shared cache may keep it: `Cache-Control` with `s-maxage`
//! (or `max-age`), and none of `no-store`, `private` or `no-cache`; a status a cache may keep (200, 203, 204, 300,
//! 301, 308, 404, 405, 410, 414, 501); no `Set-Cookie`; no `Vary: *`; a request that carried credentials only when
//! the response says `public`, `s-maxage` or `must-revalidate`. Until it is stale, the same request (path, query,
//! and the request headers the response's `Vary` names) is answered from memory without running the function,
//! marked `x-edgefn-cache: hit` with an `Age`; a request that ran the function is marked `miss`. Past its freshness
//! and within its `stale-if-error`, the stored response answers when the function fails (`stale`).
//!
//! A response is stored once its body has been sent whole (so a streamed body is not held twice); a body larger
//! than `[cache] max_entry_kb` is sent and not stored. `Cache-Tag` (comma-separated) names tags to purge by, and is
//! not sent on. Entries are per version: the trigger purges a component's entries when it changes (deploy,
//! rollback, undeploy).

use crate::capabilities::cache::{CacheStatus, CachedResponse, ResponseCache, primary_key};
use crate::live::ComponentVersion;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The header that says how the cache answered.
pub const CACHE_STATUS_HEADER: &str = "x-edgefn-cache";

/// The response header whose tags a purge by tag names.
const CACHE_TAG_HEADER: &str = "cache-tag";

/// One cacheable request on its way through the function.
pub(super) struct Caching {
    cache: Arc<ResponseCache>,
    primary: String,
    request_headers: HeaderMap,
    head: bool,
    /// The request carried credentials (or passed an authorizer).
    credentials: bool,
    component: String,
    version: u32,
    path: String,
    /// A stored response past its freshness, for `stale-if-error`.
    stale: Option<Arc<CachedResponse>>,
}

impl Caching {
    /// The cache's view of `request` to `version`, when it is a GET or HEAD and the cache is on.
    pub(super) fn for_request(
        cache: Option<&Arc<ResponseCache>>,
        version: &ComponentVersion,
        request: &Request,
        credentials: bool,
    ) -> Option<Self> {
        let cache = cache.filter(|cache| cache.settings().enabled)?;
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => return None,
        };
        let path_and_query = request.uri().path_and_query().map_or("/", |p| p.as_str());
        Some(Self {
            cache: cache.clone(),
            primary: primary_key(&version.component, version.version, path_and_query),
            request_headers: request.headers().clone(),
            head,
            credentials,
            component: version.component.clone(),
            version: version.version,
            path: request.uri().path().to_owned(),
            stale: None,
        })
    }

    /// The stored answer, when a fresh one exists; remembers a stale one for a failing function.
    pub(super) fn fresh_answer(&mut self) -> Option<Response> {
        let stored = self.cache.lookup(&self.primary, &self.request_headers)?;
        let now = Instant::now();
        if stored.is_fresh(now) {
            self.cache.count(CacheStatus::Hit);
            return Some(answer(&stored, CacheStatus::Hit, self.head, now));
        }
        self.stale = Some(stored);
        None
    }

    /// What the client gets after the function answered `response`: it, marked a miss and recorded for the cache
    /// when it may be stored; or the stale answer when the function failed and one is still allowed.
    pub(super) fn finish(self, mut response: Response) -> Response {
        let now = Instant::now();
        if response.status().is_server_error()
            && let Some(stale) = self.stale.as_ref().filter(|stale| stale.is_usable_on_error(now))
        {
            self.cache.count(CacheStatus::Stale);
            return answer(stale, CacheStatus::Stale, self.head, now);
        }
        self.cache.count(CacheStatus::Miss);
        let tags = take_tags(response.headers_mut());
        response.headers_mut().insert(CACHE_STATUS_HEADER, HeaderValue::from_static("miss"));
        // A HEAD response has no body to answer a GET with.
        let Some(policy) = (!self.head).then(|| storable(&response, self.credentials)).flatten() else {
            return response;
        };
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers.clone();
        headers.remove(CACHE_STATUS_HEADER);
        let status = parts.status;
        let cache = self.cache.clone();
        let limit = cache.max_entry_bytes();
        let (primary, request_headers) = (self.primary, self.request_headers);
        let (component, version, path) = (self.component, self.version, self.path);
        let store = move |body: Bytes| {
            let entry = CachedResponse {
                component,
                version,
                path,
                status,
                headers,
                body,
                tags,
                stored_at: Instant::now(),
                fresh_for: policy.fresh_for,
                stale_if_error: policy.stale_if_error,
            };
            cache.store(&primary, policy.vary, &request_headers, entry);
        };
        let expected = http_body::Body::size_hint(&body).exact();
        let store: Store = Box::new(store);
        let mut recording =
            Recording { inner: body, collected: Some(BytesMut::new()), limit, expected, store: Some(store) };
        // An empty body of a stated length is whole already: the client has all of it with the headers.
        recording.store_if_whole(false);
        Response::from_parts(parts, Body::new(recording))
    }
}

/// A stored response as an answer: its status, headers and body, with `Age` and `x-edgefn-cache`.
fn answer(stored: &CachedResponse, status: CacheStatus, head: bool, now: Instant) -> Response {
    let body = if head { Body::empty() } else { Body::from(stored.body.clone()) };
    let mut response = Response::new(body);
    *response.status_mut() = stored.status;
    *response.headers_mut() = stored.headers.clone();
    response.headers_mut().insert(header::AGE, HeaderValue::from(stored.age(now).as_secs()));
    response.headers_mut().insert(CACHE_STATUS_HEADER, HeaderValue::from_static(status.label()));
    response
}

/// The tags of `Cache-Tag`, which is the host's to read and not the client's.
fn take_tags(headers: &mut HeaderMap) -> Vec<String> {
    let tags = headers
        .get_all(CACHE_TAG_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().to_owned())
        .filter(|tag| !tag.is_empty())
        .collect();
    headers.remove(CACHE_TAG_HEADER);
    tags
}

/// How long a response may be kept, and on what it varies.
#[derive(Debug, PartialEq, Eq)]
struct Policy {
    fresh_for: Duration,
    stale_if_error: Duration,
    vary: Vec<HeaderName>,
}

/// Statuses a cache may store when the response says for how long (RFC 9110 15.1, "heuristically cacheable",
/// and 308).
const STORABLE: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];

/// What a shared cache may do with `response` (see the module docs); `None`: not store it.
fn storable(response: &Response, credentials: bool) -> Option<Policy> {
    if !STORABLE.contains(&response.status().as_u16()) || response.headers().contains_key(header::SET_COOKIE) {
        return None;
    }
    let directives = directives(response.headers());
    let has = |name: &str| directives.iter().any(|(directive, _)| directive == name);
    let seconds = |name: &str| {
        directives.iter().find(|(directive, _)| directive == name).and_then(|(_, value)| value.as_deref()?.parse().ok())
    };
    if has("no-store") || has("private") || has("no-cache") {
        return None;
    }
    // A response that must be revalidated once stale is never served stale (RFC 9111 4.2.4).
    let revalidate = has("must-revalidate") || has("proxy-revalidate");
    let shared_max_age: Option<u64> = seconds("s-maxage");
    if credentials && !(has("public") || shared_max_age.is_some() || has("must-revalidate")) {
        return None;
    }
    let fresh_for = Duration::from_secs(shared_max_age.or_else(|| seconds("max-age"))?);
    if fresh_for.is_zero() {
        return None;
    }
    let mut vary = Vec::new();
    for value in response.headers().get_all(header::VARY) {
        for name in value.to_str().ok()?.split(',').map(str::trim).filter(|name| !name.is_empty()) {
            if name == "*" {
                return None;
            }
            vary.push(HeaderName::try_from(name.to_ascii_lowercase()).ok()?);
        }
    }
    vary.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    vary.dedup();
    let stale_if_error =
        if revalidate { Duration::ZERO } else { Duration::from_secs(seconds("stale-if-error").unwrap_or(0)) };
    Some(Policy { fresh_for, stale_if_error, vary })
}

/// The directives of `Cache-Control`, names lowercased, values unquoted.
fn directives(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|directive| {
            let directive = directive.trim();
            if directive.is_empty() {
                return None;
            }
            Some(match directive.split_once('=') {
                Some((name, value)) => {
                    (name.trim().to_ascii_lowercase(), Some(value.trim().trim_matches('"').to_owned()))
                }
                None => (directive.to_ascii_lowercase(), None),
            })
        })
        .collect()
}

/// Where a stored response goes once its body has been sent whole.
type Store = Box<dyn FnOnce(Bytes) + Send>;

/// A response body passed on as it comes, and kept (up to `limit`) to be stored when it ends cleanly.
struct Recording {
    inner: Body,
    /// `None` once over the limit, or after an error or trailers: nothing is stored then.
    collected: Option<BytesMut>,
    limit: usize,
    /// The body's length when it said so up front: the HTTP server stops polling once it has sent that much, and
    /// drops the body instead of reading its end.
    expected: Option<u64>,
    store: Option<Store>,
}

impl Recording {
    /// Stores what was collected, if it is the whole body.
    fn store_if_whole(&mut self, ended: bool) {
        let whole = ended || self.collected.as_ref().is_some_and(|c| Some(c.len() as u64) == self.expected);
        if whole && let (Some(collected), Some(store)) = (self.collected.take(), self.store.take()) {
            store(collected.freeze());
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        self.store_if_whole(false);
    }
}

impl http_body::Body for Recording {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                match (frame.data_ref(), &mut this.collected) {
                    (Some(data), Some(collected)) if collected.len() + data.len() <= this.limit => {
                        collected.extend_from_slice(data);
                    }
                    _ => this.collected = None,
                }
                // Stored before its last bytes are handed on: a client that has read the whole answer and asks
                // again at once finds it in the cache (the server drops the body only after sending them).
                this.store_if_whole(false);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.store_if_whole(true);
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                this.collected = None;
                Poll::Ready(Some(Err(error)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Never ends before its inner body said so with a last poll: that poll stores it.
    fn is_end_stream(&self) -> bool {
        self.store.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        for (name, value) in headers {
            response
                .headers_mut()
                .append(HeaderName::try_from(*name).expect("name"), HeaderValue::try_from(*value).expect("value"));
        }
        response
    }

    #[test]
    fn only_what_a_shared_cache_may_keep_is_stored_for_as_long_as_it_says() {
        let policy = |headers: &[(&str, &str)]| storable(&response(200, headers), false);
        assert_eq!(policy(&[("cache-control", "public, max-age=60")]).map(|p| p.fresh_for.as_secs()), Some(60));
        let shared = policy(&[("cache-control", "max-age=10, s-maxage=300, stale-if-error=30")]).expect("stored");
        assert_eq!((shared.fresh_for.as_secs(), shared.stale_if_error.as_secs()), (300, 30), "s-maxage wins");
        for refused in ["no-store, max-age=60", "private, max-age=60", "no-cache, max-age=60", "max-age=0", "public"] {
            assert_eq!(policy(&[("cache-control", refused)]), None, "{refused}");
        }
        assert_eq!(policy(&[]), None, "no freshness, no storing");
        assert_eq!(policy(&[("cache-control", "max-age=60"), ("set-cookie", "a=b")]), None);
        assert_eq!(policy(&[("cache-control", "max-age=60"), ("vary", "*")]), None);
        let varied = policy(&[("cache-control", "max-age=60"), ("vary", "Accept-Language, accept-encoding")]);
        assert_eq!(varied.expect("stored").vary, [header::ACCEPT_ENCODING, header::ACCEPT_LANGUAGE]);
        assert_eq!(storable(&response(500, &[("cache-control", "max-age=60")]), false), None);
        assert!(storable(&response(404, &[("cache-control", "max-age=60")]), false).is_some());
        let strict = policy(&[("cache-control", "max-age=60, must-revalidate, stale-if-error=30")]).expect("stored");
        assert_eq!(strict.stale_if_error, Duration::ZERO, "must-revalidate: never served stale");
    }

    #[test]
    fn a_request_with_credentials_is_stored_only_when_the_response_says_so() {
        let with = |cache_control: &str| storable(&response(200, &[("cache-control", cache_control)]), true);
        assert_eq!(with("max-age=60"), None);
        assert!(with("public, max-age=60").is_some());
        assert!(with("s-maxage=60").is_some());
    }

    #[test]
    fn a_body_of_a_stated_length_is_stored_before_its_last_bytes_are_handed_on() {
        use http_body_util::BodyExt as _;
        let stored = std::sync::Arc::new(std::sync::Mutex::new(None::<Bytes>));
        let recording = |body: Body| {
            let into = stored.clone();
            let store: Store = Box::new(move |bytes| *into.lock().expect("lock") = Some(bytes));
            let expected = http_body::Body::size_hint(&body).exact();
            Recording { inner: body, collected: Some(BytesMut::new()), limit: 1024, expected, store: Some(store) }
        };
        let mut whole = recording(Body::from("hello"));
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let frame = runtime.block_on(whole.frame()).expect("a frame").expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"hello"[..]));
        assert_eq!(stored.lock().expect("lock").as_deref(), Some(&b"hello"[..]), "stored with the last bytes");

        *stored.lock().expect("lock") = None;
        let mut empty = recording(Body::empty());
        empty.store_if_whole(false);
        assert_eq!(stored.lock().expect("lock").as_deref(), Some(&b""[..]), "an empty body is whole at once");
    }

    #[test]
    fn tags_are_read_and_not_sent_on() {
        let mut headers = HeaderMap::new();
        headers.append(CACHE_TAG_HEADER, HeaderValue::from_static("a, b"));
        headers.append(CACHE_TAG_HEADER, HeaderValue::from_static("c"));
        assert_eq!(take_tags(&mut headers), ["a", "b", "c"]);
        assert!(headers.is_empty());
    }
}
