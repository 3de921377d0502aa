//! The incoming request: an `http::Request<Vec<u8>>` plus the route's parameters.

use crate::{Error, REQUEST_ID_HEADER, Result};
use edgefn_manifest::route::percent_decode;
use http::{HeaderMap, Method, Uri};
use serde::de::DeserializeOwned;

/// An HTTP request as a handler sees it: method, URI, headers, the whole body, and the route's parameters.
///
/// It wraps `http::Request<Vec<u8>>` (reach it with [`Request::inner`] or [`Request::into_inner`]) and adds helpers
/// for what handlers do all day: [`param`](Request::param), [`query`](Request::query),
/// [`header`](Request::header), [`json`](Request::json), [`text`](Request::text). The accessors of a single value
/// all borrow from the request: `param`, `query` and `header` return `Option<&str>`.
///
/// An `async fn` handler gets the body unread, as it arrives: read it as a stream of chunks with
/// [`Request::body_stream`], or whole with [`Request::read_body`]`.await`. The sync accessors ([`Request::body`],
/// [`Request::text`], [`Request::json`]) still work there: they read the rest of the body first (waiting for it,
/// and blocking the instance's other tasks meanwhile). A sync handler gets the body whole, read before it runs.
#[derive(Debug)]
pub struct Request {
    inner: http::Request<Vec<u8>>,
    params: Vec<(String, String)>,
    /// Decoded once, when the request is built.
    query: Vec<(String, String)>,
    /// The `cookie` header(s), decoded once, when the request is built.
    cookies: Vec<(String, String)>,
    /// On a protected route: the claims of the token the host verified.
    claims: Option<serde_json::Value>,
    /// The body, when it is still arriving: not read yet.
    #[cfg(edgefn_async)]
    unread: std::cell::RefCell<Option<crate::body::BodyStream>>,
    /// The body once read from `unread`, or why reading it failed (status, message).
    #[cfg(edgefn_async)]
    read: std::cell::OnceCell<Result<Vec<u8>, (u16, String)>>,
}

impl Request {
    /// Wraps a request that has no route parameters.
    pub fn new(inner: http::Request<Vec<u8>>) -> Self {
        Self::with_params(inner, Vec::new())
    }

    /// Wraps a request with the parameters its route matched.
    pub fn with_params(inner: http::Request<Vec<u8>>, params: Vec<(String, String)>) -> Self {
        let query = decode_query(inner.uri().query());
        let cookies = decode_cookies(inner.headers());
        Self {
            inner,
            params,
            query,
            cookies,
            claims: None,
            #[cfg(edgefn_async)]
            unread: std::cell::RefCell::new(None),
            #[cfg(edgefn_async)]
            read: std::cell::OnceCell::new(),
        }
    }

    /// The request with its whole body, read before the handler runs.
    #[cfg_attr(not(edgefn_p3), allow(dead_code))]
    pub(crate) fn with_body(mut self, bytes: Vec<u8>) -> Self {
        *self.inner.body_mut() = bytes;
        self
    }

    /// The request with a body still arriving (in place of the one in its `http::Request`).
    #[cfg(edgefn_async)]
    pub(crate) fn with_body_stream(self, body: crate::body::BodyStream) -> Self {
        *self.unread.borrow_mut() = Some(body);
        self
    }

    /// Whether the body is still arriving (an async handler that has not read it yet).
    pub fn body_is_unread(&self) -> bool {
        #[cfg(edgefn_async)]
        if self.unread.borrow().is_some() {
            return true;
        }
        false
    }

    /// The body, read whole if it was still arriving: the bytes, or why they could not be read (a body over the
    /// host's limit, a client that stopped sending).
    fn whole_body(&self) -> Result<&[u8]> {
        #[cfg(edgefn_async)]
        {
            if let Some(read) = self.read.get() {
                return read_result(read);
            }
            let unread = self.unread.borrow_mut().take();
            if let Some(body) = unread {
                let read = crate::rt::block_on(body.bytes()).map_err(|e| (e.status(), e.message().to_owned()));
                return read_result(self.read.get_or_init(|| read));
            }
        }
        Ok(self.inner.body())
    }

    /// Reads the rest of the body, waiting for it without blocking other tasks, and returns all of it. After this,
    /// [`Request::body`], [`Request::text`] and [`Request::json`] answer at once.
    #[cfg(edgefn_async)]
    pub async fn read_body(&self) -> Result<&[u8]> {
        let unread = self.unread.borrow_mut().take();
        if let Some(body) = unread {
            let read = body.bytes().await.map_err(|e| (e.status(), e.message().to_owned()));
            // Whoever read it first (there is no other reader: `unread` was taken) set it.
            return read_result(self.read.get_or_init(|| read));
        }
        self.whole_body()
    }

    /// The body as a stream of chunks, as they arrive: `while let Some(chunk) = body.next().await { .. }`. A body
    /// already read comes as one chunk. Taking the stream leaves the request without a body.
    #[cfg(edgefn_async)]
    pub fn body_stream(&self) -> crate::body::BodyStream {
        if let Some(body) = self.unread.borrow_mut().take() {
            return body;
        }
        match self.read.get() {
            Some(Ok(bytes)) => crate::body::BodyStream::from_bytes(bytes.clone()),
            Some(Err(_)) => crate::body::BodyStream::from_bytes(Vec::new()),
            None => crate::body::BodyStream::from_bytes(self.inner.body().clone()),
        }
    }

    /// The request with the claims of a verified token (the dispatcher and `edgefn::testing` set them).
    pub(crate) fn with_claims(mut self, claims: Option<serde_json::Value>) -> Self {
        self.claims = claims;
        self
    }

    /// On a route with `auth = "..."`: the claims of the bearer token the host verified (`sub`, `scope`, `iss`,
    /// and whatever else the issuer put in). `None` on a public route.
    pub fn claims(&self) -> Option<&serde_json::Value> {
        self.claims.as_ref()
    }

    /// The verified claims as `T`, e.g. `#[derive(Deserialize)] struct Claims { sub: String }`. A public route
    /// (no claims) is a 401; claims that do not fit `T` are a 403 that says why: the token is valid, but not one
    /// this function can serve.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T> {
        let claims = self.claims.as_ref().ok_or_else(|| {
            Error::new(401, "this route has no verified token: protect it with `auth = \"AUTHORIZER\"`")
        })?;
        T::deserialize(claims).map_err(|e| Error::new(403, format!("the token's claims do not fit this endpoint: {e}")))
    }

    /// A route parameter: `req.param("name")` is `Some("ada")` for `/hello/ada` on route `/hello/{name}`.
    /// Parameters are percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// All route parameters, in route order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The first value of a query parameter, decoded (`+` is a space): `?q=a+b` gives `Some("a b")`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every query parameter, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// A header's value, if present and valid UTF-8. Names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The URI as the host passed it: on edgefn and `wasmtime serve` absolute (`http://example.com/a?b=1`, with the
    /// authority the client sent in `Host`), in a native test as given to `edgefn::testing`. For the whole URL as a
    /// string, whatever the source, use [`Request::url`].
    pub fn uri(&self) -> &Uri {
        self.inner.uri()
    }

    /// The full URL the client asked for: scheme, host, port, path and query, e.g.
    /// `http://links.example.com:8080/s/abc?ref=mail`. Build absolute links, redirects and OAuth callbacks from it.
    /// The host is the one the client sent (its `Host` header); a request that names none (a native test of
    /// `/path`) is `http://localhost/path`.
    ///
    /// ```
    /// let req = edgefn::testing::request("GET", "/s/abc?ref=mail").header("host", "links.example.com:8080").build();
    /// assert_eq!(req.url(), "http://links.example.com:8080/s/abc?ref=mail");
    /// assert_eq!(req.host(), Some("links.example.com:8080"));
    /// ```
    pub fn url(&self) -> String {
        let path = self.inner.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{}{path}", self.origin())
    }

    /// Scheme and host of [`Request::url`], without a trailing slash: `http://links.example.com:8080`. Prefix a path
    /// with it for an absolute link back to this host.
    pub fn origin(&self) -> String {
        let scheme = self.inner.uri().scheme_str().unwrap_or("http");
        format!("{scheme}://{}", self.host().unwrap_or("localhost"))
    }

    /// The host (and port, if not the scheme's default) the client asked for: the URI's authority, else the `Host`
    /// header. `None` only where no client named one (a native test without a `host` header).
    pub fn host(&self) -> Option<&str> {
        self.inner.uri().authority().map(|a| a.as_str()).or_else(|| self.header("host"))
    }

    /// A cookie's value, percent-decoded: `req.cookie("session")`. The first one wins if the client sent a name
    /// twice. Set cookies with [`crate::Response::with_cookie`].
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every cookie the client sent, decoded, in order.
    pub fn cookies(&self) -> &[(String, String)] {
        &self.cookies
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.inner.uri().path()
    }

    /// The raw body (empty if it could not be read: [`Request::text`] and [`Request::json`] say why).
    pub fn body(&self) -> &[u8] {
        self.whole_body().unwrap_or_default()
    }

    /// The body as UTF-8 text; invalid UTF-8 is a 400.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.whole_body()?)
            .map_err(|e| Error::bad_request(format!("request body is not valid UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; a body that does not parse or does not fit `T` is a 400 that says why and
    /// where: `request body is not valid JSON for this endpoint: at `items[1].qty`: invalid value: integer `-1`,
    /// expected u64 at line 1 column 31`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        crate::error::from_json(self.whole_body()?)
            .map_err(|e| Error::bad_request(format!("request body is not valid JSON for this endpoint: {e}")))
    }

    /// The id the host gave this request (also sent back in the `x-request-id` response header).
    pub fn request_id(&self) -> &str {
        self.header(REQUEST_ID_HEADER).unwrap_or("")
    }

    /// The underlying `http` request. Its body is what arrived before the handler ran: empty for a body an async
    /// handler has not read yet (see [`Request::read_body`]).
    pub fn inner(&self) -> &http::Request<Vec<u8>> {
        &self.inner
    }

    /// Takes the underlying `http` request, with the whole body (read first if it was still arriving; empty if it
    /// could not be read).
    pub fn into_inner(self) -> http::Request<Vec<u8>> {
        #[cfg(edgefn_async)]
        if self.body_is_unread() || self.read.get().is_some() {
            let body = self.body().to_vec();
            let mut inner = self.inner;
            *inner.body_mut() = body;
            return inner;
        }
        self.inner
    }
}

/// A body read from its stream, or the error that ended it, as `Result`.
#[cfg(edgefn_async)]
fn read_result(read: &Result<Vec<u8>, (u16, String)>) -> Result<&[u8]> {
    read.as_deref().map_err(|(status, message)| Error::new(*status, message.clone()))
}

/// The cookies of every `cookie` header, percent-decoded; a malformed pair is skipped, not the request.
fn decode_cookies(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| cookie::Cookie::split_parse_encoded(value.to_owned()).filter_map(|c| c.ok()))
        .map(|c| (c.name().to_owned(), c.value().to_owned()))
        .collect()
}

/// `a=1&b=x+y` as decoded pairs.
fn decode_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&name.replace('+', " ")), percent_decode(&value.replace('+', " ")))
        })
        .collect()
}

impl From<http::Request<Vec<u8>>> for Request {
    fn from(inner: http::Request<Vec<u8>>) -> Self {
        Self::new(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_query_and_header_all_borrow_from_the_request() {
        let inner = http::Request::builder()
            .uri("/orders/7?qty=2&note=a+b%21&qty=3")
            .header("x-tenant", "acme")
            .body(Vec::new())
            .expect("request");
        let request = Request::with_params(inner, vec![("id".into(), "7".into())]);
        let (id, qty, tenant): (Option<&str>, Option<&str>, Option<&str>) =
            (request.param("id"), request.query("qty"), request.header("x-tenant"));
        assert_eq!((id, qty, tenant), (Some("7"), Some("2"), Some("acme")));
        assert_eq!(request.query("qty").unwrap_or("1"), "2");
        assert_eq!(request.query("missing").unwrap_or("1"), "1");
        assert_eq!(request.query("note"), Some("a b!"));
        assert_eq!(request.query_pairs().len(), 3);
    }

    #[test]
    fn the_url_is_whole_whether_the_uri_is_absolute_or_the_host_is_a_header() {
        let absolute = http::Request::builder().uri("https://a.example:8443/x?y=1").body(Vec::new()).expect("req");
        assert_eq!(Request::new(absolute).url(), "https://a.example:8443/x?y=1");
        let relative =
            http::Request::builder().uri("/x?y=1").header("host", "b.example").body(Vec::new()).expect("req");
        let relative = Request::new(relative);
        assert_eq!((relative.url().as_str(), relative.host()), ("http://b.example/x?y=1", Some("b.example")));
        let bare = Request::new(http::Request::builder().uri("/").body(Vec::new()).expect("req"));
        assert_eq!((bare.url().as_str(), bare.host()), ("http://localhost/", None));
    }

    #[test]
    fn cookies_are_decoded_from_every_cookie_header() {
        let inner = http::Request::builder()
            .header("cookie", "session=abc%20def; theme=dark")
            .header("cookie", "broken; lang=de")
            .body(Vec::new())
            .expect("request");
        let request = Request::new(inner);
        assert_eq!(request.cookie("session"), Some("abc def"));
        assert_eq!(request.cookie("lang"), Some("de"));
        assert_eq!(request.cookie("missing"), None);
        assert_eq!(request.cookies().len(), 3);
    }
}
