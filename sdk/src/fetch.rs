//! Outbound HTTP through the standard `wasi:http` client: [`fetch`] waits for the whole response; with the
//! `wasip3` feature, [`send`] returns a future of a response whose body arrives as a stream, so several calls run at
//! once (`futures::join!`), a call can have a timeout ([`Options::timeout`]), and a body can be passed on as it
//! arrives ([`crate::Response::forward`]).
//!
//! ```no_run
//! # async fn example() -> edgefn::Result<()> {
//! use edgefn::fetch::{self, Options};
//! use std::time::Duration;
//! let (a, b) = futures::join!(
//!     fetch::send(http::Request::get("https://a.example/").body(Vec::new())?),
//!     fetch::send_with(http::Request::get("https://b.example/").body(Vec::new())?, Options::new().timeout(Duration::from_secs(2))),
//! );
//! let (a, b) = (a?.text().await?, b?.text().await?);
//! # Ok(()) }
//! ```
//!
//! The edgefn host only lets a function reach the hosts in its component's `allowed_outbound_hosts` (default:
//! none); a denied request is an `Err` here, and the host logs it. Each request carries the work's correlation id
//! (`x-request-id`, and `traceparent` from the host) unless it sets its own.

use crate::Error;

/// Sends `request` and waits for the whole response. The URI must be absolute (`https://host/path`).
///
/// In an `async fn`, prefer [`send`]: this one blocks the instance's other tasks until the response is whole.
pub fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
    imp::fetch(request)
}

/// Sends `request` (an `http::Request<Vec<u8>>`, or a URL to `GET`); the response's head arrives first, its body
/// as a stream ([`Fetched`]). Dropping the future before it is done cancels the call.
#[cfg(edgefn_async)]
pub async fn send(request: impl IntoRequest) -> Result<Fetched, Error> {
    send_with(request, Options::new()).await
}

/// [`send`] with [`Options`]: timeouts.
#[cfg(edgefn_async)]
pub async fn send_with(request: impl IntoRequest, options: Options) -> Result<Fetched, Error> {
    let request = with_correlation_id(request.into_request()?);
    let target = describe(request.uri());
    let call = imp::send(request, options);
    match options.timeout {
        None => call.await,
        Some(limit) => crate::rt::timeout(limit, call)
            .await
            .map_err(|_| Error::new(504, format!("outbound request to `{target}` timed out after {limit:?}")))?,
    }
}

/// What [`send`] takes: a request, or a URL to `GET`.
pub trait IntoRequest {
    fn into_request(self) -> Result<http::Request<Vec<u8>>, Error>;
}

impl IntoRequest for http::Request<Vec<u8>> {
    fn into_request(self) -> Result<http::Request<Vec<u8>>, Error> {
        Ok(self)
    }
}

impl IntoRequest for &str {
    fn into_request(self) -> Result<http::Request<Vec<u8>>, Error> {
        http::Request::get(self).body(Vec::new()).map_err(|e| Error::internal(format!("bad URL `{self}`: {e}")))
    }
}

impl IntoRequest for String {
    fn into_request(self) -> Result<http::Request<Vec<u8>>, Error> {
        self.as_str().into_request()
    }
}

impl IntoRequest for &String {
    fn into_request(self) -> Result<http::Request<Vec<u8>>, Error> {
        self.as_str().into_request()
    }
}

/// How [`send_with`] sends.
#[cfg(edgefn_async)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub(crate) timeout: Option<std::time::Duration>,
    pub(crate) connect_timeout: Option<std::time::Duration>,
    pub(crate) first_byte_timeout: Option<std::time::Duration>,
}

#[cfg(edgefn_async)]
impl Options {
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole call, until the response's head has arrived: past it the call is cancelled and the result is a
    /// 504 error naming the URL.
    pub fn timeout(mut self, limit: std::time::Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Connecting to the origin (the host enforces it).
    pub fn connect_timeout(mut self, limit: std::time::Duration) -> Self {
        self.connect_timeout = Some(limit);
        self
    }

    /// From the request sent to the response's first byte (the host enforces it).
    pub fn first_byte_timeout(mut self, limit: std::time::Duration) -> Self {
        self.first_byte_timeout = Some(limit);
        self
    }
}

/// A response to [`send`]: its status and headers, and a body still arriving.
#[cfg(edgefn_async)]
#[derive(Debug)]
pub struct Fetched {
    status: u16,
    headers: http::HeaderMap,
    body: crate::body::BodyStream,
}

#[cfg(edgefn_async)]
impl Fetched {
    #[cfg_attr(not(edgefn_p3), allow(dead_code))]
    pub(crate) fn new(status: u16, headers: http::HeaderMap, body: crate::body::BodyStream) -> Self {
        Self { status, headers, body }
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// A header's value, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The whole body.
    pub async fn bytes(self) -> Result<Vec<u8>, Error> {
        self.body.bytes().await
    }

    /// The whole body as UTF-8 text.
    pub async fn text(self) -> Result<String, Error> {
        self.body.text().await
    }

    /// The whole body parsed as JSON into `T`.
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let bytes = self.body.bytes().await?;
        crate::error::from_json(&bytes).map_err(|e| {
            Error::new(502, format!("the fetched body is not a valid {}: {e}", std::any::type_name::<T>()))
        })
    }

    /// The body as a stream of chunks.
    pub fn into_body_stream(self) -> crate::body::BodyStream {
        self.body
    }

    /// Status, headers and body.
    pub fn into_parts(self) -> (u16, http::HeaderMap, crate::body::BodyStream) {
        (self.status, self.headers, self.body)
    }
}

/// Headers that describe one connection (RFC 9110, 7.6.1): a proxy never passes them on.
pub fn is_hop_by_hop(name: &str) -> bool {
    ["connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"]
        .iter()
        .any(|hop| name.eq_ignore_ascii_case(hop))
}

/// The request, carrying the current work's correlation id unless it has its own: the host ties the call to the
/// work, and the service called can tie its logs to it.
#[cfg(edgefn_async)]
fn with_correlation_id(mut request: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    let id = crate::correlation_id();
    if !id.is_empty()
        && !request.headers().contains_key(crate::REQUEST_ID_HEADER)
        && let Ok(value) = http::HeaderValue::try_from(id)
    {
        request.headers_mut().insert(crate::REQUEST_ID_HEADER, value);
    }
    request
}

/// A URL as errors name it: without its query, which often carries a key.
pub(crate) fn describe(uri: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        uri.path()
    )
}

/// `GET url`.
pub fn get(url: &str) -> Result<http::Response<Vec<u8>>, Error> {
    let request =
        http::Request::get(url).body(Vec::new()).map_err(|e| Error::internal(format!("bad URL `{url}`: {e}")))?;
    fetch(request)
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: serde::Serialize + ?Sized>(url: &str, value: &T) -> Result<http::Response<Vec<u8>>, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::internal(format!("failed to encode the body: {e}")))?;
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| Error::internal(format!("bad URL `{url}`: {e}")))?;
    fetch(request)
}

#[cfg(not(target_family = "wasm"))]
mod imp {
    use crate::Error;

    fn no_host<B>(request: &http::Request<B>) -> Error {
        Error::internal(format!(
            "outbound HTTP ({} {}) needs a wasi:http host: run the function on edgefn",
            request.method(),
            super::describe(request.uri())
        ))
    }

    pub(super) fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        Err(no_host(&request))
    }

    pub(super) async fn send(
        request: http::Request<Vec<u8>>,
        _options: super::Options,
    ) -> Result<super::Fetched, Error> {
        Err(no_host(&request))
    }
}

#[cfg(edgefn_p3)]
mod imp {
    use crate::Error;
    pub(super) use crate::abi::fetch::send;

    /// The whole response, waiting for it (blocking the instance's other tasks).
    pub(super) fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        crate::rt::block_on(async {
            let fetched = super::send(request).await?;
            let (status, headers, body) = fetched.into_parts();
            let mut response = http::Response::new(body.bytes().await?);
            *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
            *response.headers_mut() = headers;
            Ok(response)
        })
    }
}

#[cfg(edgefn_p2)]
mod imp {
    use crate::Error;
    use std::io::{Read as _, Write as _};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};

    pub(super) fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        let (parts, body) = request.into_parts();
        // Errors name the URL without its query, which often carries a key.
        let uri = &super::describe(&parts.uri);
        let authority = parts
            .uri
            .authority()
            .ok_or_else(|| Error::internal(format!("outbound request to `{uri}`: the URL needs a host")))?
            .as_str()
            .to_owned();
        let headers = Fields::new();
        // A known length, rather than a chunked body: some servers (and proxies) refuse chunked requests.
        if !parts.headers.contains_key(http::header::CONTENT_LENGTH)
            && (!body.is_empty() || parts.method != http::Method::GET)
        {
            let _ = headers.append("content-length", body.len().to_string().as_bytes());
        }
        for (name, value) in &parts.headers {
            headers
                .append(name.as_str(), value.as_bytes())
                .map_err(|e| Error::internal(format!("header `{name}` is not allowed: {e:?}")))?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match parts.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            other => Method::Other(other.to_owned()),
        };
        let scheme = match parts.uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") | None => Scheme::Http,
            Some(other) => Scheme::Other(other.to_owned()),
        };
        let invalid = |what: &str| Error::internal(format!("outbound request to `{uri}`: invalid {what}"));
        outgoing.set_method(&method).map_err(|()| invalid("method"))?;
        outgoing.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
        outgoing.set_authority(Some(&authority)).map_err(|()| invalid("host"))?;
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        outgoing.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;
        let outgoing_body = outgoing.body().map_err(|()| invalid("body"))?;
        let failed = |code: ErrorCode| match code {
            ErrorCode::HttpRequestDenied => Error::internal(format!(
                "outbound request to `{authority}` denied: the host is not in this component's allowed_outbound_hosts"
            )),
            ErrorCode::DestinationIpProhibited => Error::internal(format!(
                "outbound request to `{authority}` denied: its host resolves to a protected address (loopback, private, \
                 link-local or the cloud metadata service); allowed_outbound_hosts must name that address to allow it"
            )),
            other => Error::internal(format!("outbound request to `{uri}` failed: {other:?}")),
        };
        // Send first, then stream the body: the host reads it while we write, so a large body cannot fill a pipe
        // nobody drains.
        let future = outgoing_handler::handle(outgoing, None).map_err(failed)?;
        // A write fails when the host refused the request (e.g. denied by the allowlist): the response future then
        // holds the real reason, so report that first. It also "fails" with the stream closed when the server
        // answered before our last flush (it had the whole declared length already, or it answered early, say
        // with a 413): then its answer is the outcome, not the closed stream.
        let mut closed_by_peer = false;
        let written = outgoing_body.write().map_err(|()| invalid("body stream")).and_then(|mut stream| {
            stream.write_all(&body).and_then(|()| std::io::Write::flush(&mut stream)).map_err(|e| {
                closed_by_peer = e.to_string().contains("Closed");
                Error::internal(format!("outbound request to `{uri}`: writing the body failed: {e}"))
            })
        });
        let finished = match written {
            Ok(()) => OutgoingBody::finish(outgoing_body, None).map_err(failed),
            Err(error) => Err(error),
        };
        let response = loop {
            match future.get() {
                Some(result) => break result,
                None => future.subscribe().block(),
            }
        };
        let response =
            response.map_err(|()| Error::internal("outbound response was already taken"))?.map_err(failed)?;
        if !closed_by_peer {
            finished?;
        }
        let mut builder = http::Response::builder().status(response.status());
        for (name, value) in response.headers().entries() {
            builder = builder.header(name, value);
        }
        let incoming_body = response.consume().map_err(|()| invalid("response body"))?;
        let mut bytes = Vec::new();
        {
            let mut stream = incoming_body.stream().map_err(|()| invalid("response body stream"))?;
            stream.read_to_end(&mut bytes).map_err(|e| {
                Error::internal(format!("outbound request to `{uri}`: reading the response failed: {e}"))
            })?;
        }
        drop(IncomingBody::finish(incoming_body));
        builder.body(bytes).map_err(|e| Error::internal(format!("outbound response from `{uri}` is invalid: {e}")))
    }
}
