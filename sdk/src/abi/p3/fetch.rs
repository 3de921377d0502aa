//! Outbound HTTP through `wasi:http/client@0.3`: the request's body is written while the call waits for the
//! response, and the response's body arrives as a stream. Several calls awaited together run at the same time; a
//! call dropped before its answer is cancelled.

use super::body::{Incoming, Outgoing, body_error};
use crate::Error;
use crate::body::BodyStream;
use crate::fetch::{Fetched, Options, describe};
use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, RequestOptions, Response, Scheme};
use wasip3::{wit_future, wit_stream};

/// Sends `request` and returns once the response's head has arrived.
pub(crate) async fn send(request: http::Request<Vec<u8>>, options: Options) -> Result<Fetched, Error> {
    let (parts, body) = request.into_parts();
    let target = describe(&parts.uri);
    let authority = parts
        .uri
        .authority()
        .ok_or_else(|| Error::internal(format!("outbound request to `{target}`: the URL needs a host")))?
        .as_str()
        .to_owned();
    let headers = Fields::new();
    for (name, value) in &parts.headers {
        // `host` is the authority in wasi:http, and the other hop-by-hop headers are the host's to set.
        if name == http::header::HOST || crate::fetch::is_hop_by_hop(name.as_str()) {
            continue;
        }
        headers
            .append(name.as_str(), value.as_bytes())
            .map_err(|e| Error::internal(format!("outbound request to `{target}`: header `{name}`: {e:?}")))?;
    }
    if !body.is_empty() && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
        // A known length rather than a chunked body: some servers (and proxies) refuse chunked requests.
        let _ = headers.set(http::header::CONTENT_LENGTH.as_str(), &[body.len().to_string().into_bytes()]);
    }
    // No body at all rather than an empty stream: the origin then sees neither a length nor chunked encoding.
    let (writer, contents) = if body.is_empty() {
        (None, None)
    } else {
        let (writer, contents) = wit_stream::new();
        (Some(writer), Some(contents))
    };
    let (request, _sent) = Request::new(headers, contents, wit_future::new(|| Ok(None)).1, request_options(options));
    let invalid = |what: &str| Error::internal(format!("outbound request to `{target}`: invalid {what}"));
    request.set_method(&method(&parts.method)).map_err(|()| invalid("method"))?;
    let scheme = match parts.uri.scheme_str() {
        Some("https") => Scheme::Https,
        Some("http") | None => Scheme::Http,
        Some(other) => Scheme::Other(other.to_owned()),
    };
    request.set_scheme(Some(&scheme)).map_err(|()| invalid("scheme"))?;
    request.set_authority(Some(&authority)).map_err(|()| invalid("host"))?;
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    request.set_path_with_query(Some(path)).map_err(|()| invalid("path"))?;
    // The body is written while the call waits: the host reads it as it sends, so a large body never waits on a
    // buffer nobody drains. Whatever it could not write (the origin answered early) is the origin's choice.
    let write = async move {
        if let Some(writer) = writer {
            let _ = Outgoing::new(writer).write(body).await;
        }
    };
    let (answer, ()) = futures::join!(client::send(request), write);
    let response = answer.map_err(|code| failed(&authority, &target, code))?;
    Ok(fetched(response))
}

/// The response's head, with its body as a stream.
fn fetched(response: Response) -> Fetched {
    let status = response.get_status_code();
    let mut headers = http::HeaderMap::new();
    for (name, value) in response.get_headers().copy_all() {
        if let (Ok(name), Ok(value)) = (http::HeaderName::try_from(name), http::HeaderValue::try_from(value)) {
            headers.append(name, value);
        }
    }
    let (contents, trailers) = Response::consume_body(response, wit_future::new(|| Ok(())).1);
    Fetched::new(status, headers, BodyStream::wasi(Incoming::new(contents, trailers)))
}

/// The timeouts the host enforces for the call.
fn request_options(options: Options) -> Option<RequestOptions> {
    if options.connect_timeout.is_none() && options.first_byte_timeout.is_none() {
        return None;
    }
    let nanos = |limit: std::time::Duration| u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX);
    let set = RequestOptions::new();
    if let Some(limit) = options.connect_timeout {
        let _ = set.set_connect_timeout(Some(nanos(limit)));
    }
    if let Some(limit) = options.first_byte_timeout {
        let _ = set.set_first_byte_timeout(Some(nanos(limit)));
    }
    Some(set)
}

fn method(method: &http::Method) -> Method {
    match method.as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        "PATCH" => Method::Patch,
        "CONNECT" => Method::Connect,
        "TRACE" => Method::Trace,
        other => Method::Other(other.to_owned()),
    }
}

/// Why a call failed, naming the URL (without its query).
fn failed(authority: &str, target: &str, code: ErrorCode) -> Error {
    match code {
        ErrorCode::HttpRequestDenied => Error::internal(format!(
            "outbound request to `{authority}` denied: the host is not in this component's allowed_outbound_hosts"
        )),
        ErrorCode::DestinationIpProhibited => Error::internal(format!(
            "outbound request to `{authority}` denied: its host resolves to a protected address (loopback, private, \
                 link-local or the cloud metadata service); allowed_outbound_hosts must name that address to allow it"
        )),
        ErrorCode::ConnectionTimeout | ErrorCode::ConnectionReadTimeout => {
            Error::new(504, format!("outbound request to `{target}` timed out: {code:?}"))
        }
        ErrorCode::HttpRequestBodySize(_) | ErrorCode::HttpResponseBodySize(_) => body_error(code),
        other => Error::new(502, format!("outbound request to `{target}` failed: {other:?}")),
    }
}
