//! The outgoing response, and [`IntoResponse`], what a handler may return.

#[cfg(edgefn_async)]
use crate::body::{BodyStream, BodyWriter};
#[cfg(edgefn_async)]
use crate::rt::LocalBoxFuture;
#[cfg(edgefn_async)]
use crate::sse::Events;
use crate::{Error, Result, dispatch};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
#[cfg(edgefn_async)]
use std::time::Duration;

/// An HTTP response: status, headers and a body. Wraps `http::Response<Vec<u8>>`.
///
/// ```
/// use edgefn::Response;
/// let response = Response::text("created").with_status(201).with_header("x-order", "42");
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// ```
///
/// With the `wasip3` feature a body can also be made while it is sent: [`Response::stream`] (written piece by
/// piece), [`Response::sse`] (server-sent events) and [`Response::forward`] (a fetched body passed on as it
/// arrives). Such a body is not in [`Response::body`]: read it in tests with `edgefn::testing::read_body`.
#[derive(Clone)]
pub struct Response {
    inner: http::Response<Vec<u8>>,
    /// A body made while it is sent; shared so that `Response` stays `Clone` (whichever clone is sent takes it).
    #[cfg(edgefn_async)]
    streamed: Option<std::rc::Rc<std::cell::RefCell<Option<Streamed>>>>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut debug = f.debug_struct("Response");
        debug.field("status", &self.inner.status()).field("headers", self.inner.headers());
        #[cfg(edgefn_async)]
        if self.streamed.is_some() {
            return debug.field("body", &"(streamed)").finish();
        }
        debug.field("body_len", &self.inner.body().len()).finish()
    }
}

/// A body made while it is sent.
#[cfg(edgefn_async)]
pub(crate) enum Streamed {
    /// Written by the handler's writer function.
    Writer(Box<dyn FnOnce(BodyWriter) -> LocalBoxFuture<'static, Result<()>>>),
    /// Server-sent events, with a keep-alive comment after each quiet interval.
    Sse { handler: Box<dyn FnOnce(Events) -> LocalBoxFuture<'static, Result<()>>>, keep_alive: Duration },
    /// A body passed on as it arrives.
    Forward(BodyStream),
}

/// What a response's body is, once the handler is done with it.
#[cfg_attr(edgefn_p2, allow(dead_code))]
pub(crate) enum Outgoing {
    Bytes(Vec<u8>),
    #[cfg(edgefn_async)]
    Streamed(Streamed),
}

impl Response {
    /// An empty response with the given status (an invalid status is a 500).
    pub fn new(status: u16) -> Self {
        Self::empty().with_status(status)
    }

    fn empty() -> Self {
        Self::from(http::Response::new(Vec::new()))
    }

    /// 200 with a `text/plain` body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::bytes(body.into().into_bytes()).with_header(CONTENT_TYPE.as_str(), "text/plain; charset=utf-8")
    }

    /// 200 with a `text/html` body.
    pub fn html(body: impl Into<String>) -> Self {
        Self::bytes(body.into().into_bytes()).with_header(CONTENT_TYPE.as_str(), "text/html; charset=utf-8")
    }

    /// 200 with `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error::internal(format!("failed to serialize the response as JSON: {e}")))?;
        Ok(Self::bytes(body).with_header(CONTENT_TYPE.as_str(), "application/json"))
    }

    /// 302 Found to `location` (absolute, or relative to the request: build absolute ones from
    /// [`crate::Request::url`]). Browsers follow it with a GET.
    ///
    /// ```
    /// let response = edgefn::Response::redirect("https://example.com/login?next=%2Fcart");
    /// assert_eq!((response.status(), response.header("location")), (302, Some("https://example.com/login?next=%2Fcart")));
    /// ```
    pub fn redirect(location: &str) -> Self {
        Self::redirect_with_status(location, 302)
    }

    /// A redirect with its status: 301 (moved permanently), 302 (found), 303 (see other: after a POST, GET the
    /// result), 307 or 308 (temporary or permanent, keeping the method and body). Any other status, or a location
    /// that cannot be a header value, is a bug in the handler: the response is a 500 and stderr says why.
    pub fn redirect_with_status(location: &str, status: u16) -> Self {
        if !matches!(status, 301 | 302 | 303 | 307 | 308) {
            eprintln!("edgefn: {status} is not a redirect status (301, 302, 303, 307 or 308)");
            return Self::new(500);
        }
        match HeaderValue::try_from(location) {
            Ok(value) => {
                let mut response = Self::new(status);
                response.inner.headers_mut().insert(http::header::LOCATION, value);
                response
            }
            Err(_) => {
                eprintln!("edgefn: redirect location {location:?} is not a valid header value");
                Self::new(500)
            }
        }
    }

    /// 200 with a raw body (`application/octet-stream` unless a content type is set).
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self::from(http::Response::new(body.into()))
    }

    /// 200 with a body that `write` writes piece by piece, after the handler has returned: each write goes out to
    /// the client as it is made, waiting while the client is behind. An `Err` from `write` cuts the response short
    /// (the client never sees a clean end) and is logged. Set a content type with [`Response::with_header`].
    ///
    /// ```
    /// # use edgefn::{Response, Result};
    /// let response = Response::stream(|mut body| async move {
    ///     for n in 0..3 {
    ///         body.write(format!("line {n}\n")).await?;
    ///     }
    ///     Ok(())
    /// })
    /// .with_header("content-type", "text/plain");
    /// assert_eq!(edgefn::testing::read_body(response).unwrap(), b"line 0\nline 1\nline 2\n");
    /// ```
    #[cfg(edgefn_async)]
    pub fn stream<F, Fut>(write: F) -> Self
    where
        F: FnOnce(BodyWriter) -> Fut + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        let writer: Box<dyn FnOnce(BodyWriter) -> LocalBoxFuture<'static, Result<()>>> =
            Box::new(move |body| Box::pin(write(body)));
        Self::empty().streaming(Streamed::Writer(writer))
    }

    /// 200 `text/event-stream`: the events `handler` sends go to the client as they are sent, with a keep-alive
    /// comment after every quiet [`sse::DEFAULT_KEEP_ALIVE`](crate::sse::DEFAULT_KEEP_ALIVE) (see
    /// [`Response::with_keep_alive`]). See [`crate::sse`].
    ///
    /// ```
    /// # use edgefn::{Response, sse::Event};
    /// let response = Response::sse(|mut events| async move {
    ///     events.send(Event::data("hello").event("greeting").id("1")).await?;
    ///     Ok(())
    /// });
    /// let wire = String::from_utf8(edgefn::testing::read_body(response).unwrap()).unwrap();
    /// assert_eq!(wire, "event: greeting\nid: 1\ndata: hello\n\n");
    /// ```
    #[cfg(edgefn_async)]
    pub fn sse<F, Fut>(handler: F) -> Self
    where
        F: FnOnce(Events) -> Fut + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        let handler: Box<dyn FnOnce(Events) -> LocalBoxFuture<'static, Result<()>>> =
            Box::new(move |events| Box::pin(handler(events)));
        Self::empty()
            .with_header(CONTENT_TYPE.as_str(), "text/event-stream")
            .with_header("cache-control", "no-cache")
            // Tells proxies such as nginx not to hold the events back in a buffer.
            .with_header("x-accel-buffering", "no")
            .streaming(Streamed::Sse { handler, keep_alive: crate::sse::DEFAULT_KEEP_ALIVE })
    }

    /// For a [`Response::sse`] response: how long the stream may stay quiet before a keep-alive comment goes out.
    #[cfg(edgefn_async)]
    pub fn with_keep_alive(self, every: Duration) -> Self {
        if let Some(shared) = &self.streamed
            && let Some(Streamed::Sse { keep_alive, .. }) = shared.borrow_mut().as_mut()
        {
            *keep_alive = every;
        }
        self
    }

    /// A response whose body is `body`, passed on as it arrives (a request body echoed back, say). A fetched
    /// response is forwarded whole with [`Response::forward`].
    #[cfg(edgefn_async)]
    pub fn from_stream(status: u16, body: BodyStream) -> Self {
        Self::new(status).streaming(Streamed::Forward(body))
    }

    /// `fetched`'s status, headers and body, the body passed on as it arrives: a streaming reverse proxy. When the
    /// body is not read by the function, the host pipes it straight from the origin to the client.
    #[cfg(edgefn_async)]
    pub fn forward(fetched: crate::fetch::Fetched) -> Self {
        let (status, headers, body) = fetched.into_parts();
        let mut response = Self::from_stream(status, body);
        for (name, value) in &headers {
            // Hop-by-hop headers describe the origin's connection, not this response.
            if !crate::fetch::is_hop_by_hop(name.as_str()) {
                response.inner.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }

    #[cfg(edgefn_async)]
    fn streaming(mut self, body: Streamed) -> Self {
        self.streamed = Some(std::rc::Rc::new(std::cell::RefCell::new(Some(body))));
        self
    }

    /// Whether the body is made while it is sent ([`Response::stream`], [`Response::sse`], [`Response::forward`]).
    pub fn is_streamed(&self) -> bool {
        #[cfg(edgefn_async)]
        if self.streamed.is_some() {
            return true;
        }
        false
    }

    /// The head, and the body as the handler left it.
    #[cfg_attr(edgefn_p2, allow(dead_code))]
    pub(crate) fn into_outgoing(self) -> (http::response::Parts, Outgoing) {
        let (parts, bytes) = self.inner.into_parts();
        #[cfg(edgefn_async)]
        if let Some(streamed) = self.streamed.and_then(|shared| shared.borrow_mut().take()) {
            return (parts, Outgoing::Streamed(streamed));
        }
        (parts, Outgoing::Bytes(bytes))
    }

    /// Sets the status. A code outside 100..=999 becomes 500, since a handler bug must not break the response.
    pub fn with_status(mut self, status: u16) -> Self {
        *self.inner.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Sets (replaces) a header. An invalid name or value is dropped and reported on stderr rather than failing
    /// the whole response.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Some((name, value)) = valid_header(name, value) {
            self.inner.headers_mut().insert(name, value);
        }
        self
    }

    /// Adds a header value, keeping the ones already there (for headers that may repeat, such as `link`). An invalid
    /// name or value is dropped and reported on stderr.
    pub fn with_appended_header(mut self, name: &str, value: &str) -> Self {
        if let Some((name, value)) = valid_header(name, value) {
            self.inner.headers_mut().append(name, value);
        }
        self
    }

    /// Sets a cookie: one `set-cookie` header per call, its value percent-encoded (as [`crate::Request::cookie`]
    /// decodes it). Build one with its attributes from [`crate::cookie::Cookie`]:
    ///
    /// ```
    /// use edgefn::cookie::{Cookie, SameSite, time::Duration};
    /// let session = Cookie::build(("session", "s 1"))
    ///     .path("/")
    ///     .http_only(true)
    ///     .secure(true)
    ///     .same_site(SameSite::Lax)
    ///     .max_age(Duration::hours(12));
    /// let response = edgefn::Response::text("signed in").with_cookie(session).with_cookie(Cookie::new("theme", "dark"));
    /// let set: Vec<_> = response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    /// assert_eq!(set, ["session=s%201; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=43200", "theme=dark"]);
    /// ```
    ///
    /// To delete a cookie in the browser, send it again expired: [`crate::cookie::Cookie::make_removal`].
    pub fn with_cookie<'c>(self, cookie: impl Into<cookie::Cookie<'c>>) -> Self {
        let cookie = cookie.into();
        self.with_appended_header(http::header::SET_COOKIE.as_str(), &cookie.encoded().to_string())
    }

    /// Removes a header (every value of it), if it is there.
    pub fn without_header(mut self, name: &str) -> Self {
        self.inner.headers_mut().remove(name);
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }

    /// A header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The body (empty for a streamed one: see [`Response::is_streamed`]).
    pub fn body(&self) -> &[u8] {
        self.inner.body()
    }

    /// The body as text (lossy): handy in tests.
    pub fn text_body(&self) -> String {
        String::from_utf8_lossy(self.inner.body()).into_owned()
    }

    /// The body parsed as JSON: handy in tests.
    pub fn json_body<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.inner.body()).map_err(Error::from)
    }

    /// The underlying `http` response (a streamed body is left out: see [`Response::is_streamed`]).
    pub fn into_inner(self) -> http::Response<Vec<u8>> {
        self.inner
    }
}

/// `name: value` as a header, or `None` (said on stderr) when either is invalid: a handler bug must not fail the
/// whole response.
fn valid_header(name: &str, value: &str) -> Option<(HeaderName, HeaderValue)> {
    match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
        (Ok(name), Ok(value)) => Some((name, value)),
        _ => {
            eprintln!("edgefn: dropped invalid response header `{name}`");
            None
        }
    }
}

impl From<http::Response<Vec<u8>>> for Response {
    fn from(inner: http::Response<Vec<u8>>) -> Self {
        Self {
            inner,
            #[cfg(edgefn_async)]
            streamed: None,
        }
    }
}

/// Anything a handler may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a response an edgefn function can return",
    label = "this return type does not implement `IntoResponse`",
    note = "return `Response`, `Result<Response>`, `String`, `&'static str`, `(u16, T)`, `()`, or implement `IntoResponse`"
)]
pub trait IntoResponse {
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for http::Response<Vec<u8>> {
    fn into_response(self) -> Response {
        Response::from(self)
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        Response::bytes(self)
    }
}

/// `()` is 204 No Content.
impl IntoResponse for () {
    fn into_response(self) -> Response {
        Response::new(204)
    }
}

/// `(status, body)`.
impl<T: IntoResponse> IntoResponse for (u16, T) {
    fn into_response(self) -> Response {
        self.1.into_response().with_status(self.0)
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        dispatch::error_response(&self)
    }
}

impl<T: IntoResponse, E: Into<Error>> IntoResponse for std::result::Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into().into_response(),
        }
    }
}
