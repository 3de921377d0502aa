//! The outgoing response, and [`IntoResponse`], what a handler may return.

use crate::{Error, Result, dispatch};
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

/// An HTTP response: status, headers and a body. Wraps `http::Response<Vec<u8>>`.
///
/// ```
/// use edgefn::Response;
/// let response = Response::text("created").with_status(201).with_header("x-order", "42");
/// assert_eq!(response.status(), 201);
/// assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"));
/// ```
#[derive(Debug, Clone)]
pub struct Response {
    inner: http::Response<Vec<u8>>,
}

impl Response {
    /// An empty response with the given status (an invalid status is a 500).
    pub fn new(status: u16) -> Self {
        Self::empty().with_status(status)
    }

    fn empty() -> Self {
        Self { inner: http::Response::new(Vec::new()) }
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

    /// 200 with a raw body (`application/octet-stream` unless a content type is set).
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self { inner: http::Response::new(body.into()) }
    }

    /// Sets the status. A code outside 100..=999 becomes 500, since a handler bug must not break the response.
    pub fn with_status(mut self, status: u16) -> Self {
        *self.inner.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Sets (replaces) a header. An invalid name or value is dropped and reported on stderr rather than failing
    /// the whole response.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(name), Ok(value)) => {
                self.inner.headers_mut().insert(name, value);
            }
            _ => eprintln!("edgefn: dropped invalid response header `{name}`"),
        }
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

    /// The body.
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

    /// The underlying `http` response.
    pub fn into_inner(self) -> http::Response<Vec<u8>> {
        self.inner
    }
}

impl From<http::Response<Vec<u8>>> for Response {
    fn from(inner: http::Response<Vec<u8>>) -> Self {
        Self { inner }
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
