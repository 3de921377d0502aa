//! Outbound HTTP: [`fetch`] sends a request through the standard `wasi:http/outgoing-handler`.
//!
//! The edgefn host only lets a function reach the hosts in its component's `allowed_outbound_hosts` (default:
//! none); a denied request is an `Err` here, and the host logs it.

use crate::Error;

/// Sends `request` and waits for the whole response. The URI must be absolute (`https://host/path`).
pub fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
    imp::fetch(request)
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

    pub(super) fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        Err(Error::internal(format!(
            "outbound HTTP ({} {}) needs a wasi:http host: run the function on edgefn",
            request.method(),
            request.uri()
        )))
    }
}

#[cfg(target_family = "wasm")]
mod imp {
    use crate::Error;
    use std::io::{Read as _, Write as _};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, Scheme};

    pub(super) fn fetch(request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error> {
        let (parts, body) = request.into_parts();
        // Errors name the URL without its query, which often carries a key.
        let uri = format!(
            "{}://{}{}",
            parts.uri.scheme_str().unwrap_or("http"),
            parts.uri.authority().map(|a| a.as_str()).unwrap_or(""),
            parts.uri.path()
        );
        let uri = &uri;
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
