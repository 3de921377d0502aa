//! The component's `wasi:http/handler@0.3` export: turns each request into an edgefn [`Request`] whose body is still
//! arriving, hands it to the dispatcher, and turns the [`Response`] back, writing or forwarding its body in a task
//! of its own after `handle` has returned it.

use super::body::{Incoming, Outgoing, Trailers};
use crate::body::{BodyStream, BodyWriter};
use crate::dispatch::{self, HttpFunction, HttpHandler, Routed};
use crate::response::{Outgoing as Body, Streamed};
use crate::rt::{Scoped, spawn};
use crate::{Error, Request, Response};
use wasip3::http::types::{self as wasi, ErrorCode, Fields};
use wasip3::wit_bindgen::FutureWriter;
use wasip3::{wit_future, wit_stream};

struct Component;

wasip3::http::service::export!(Component);

impl wasip3::exports::http::handler::Guest for Component {
    async fn handle(request: wasi::Request) -> Result<wasi::Response, ErrorCode> {
        let head = match head_of(&request) {
            Ok(head) => head,
            Err(reason) => {
                let error = Error::bad_request(format!("could not read the request: {reason}"));
                return Ok(into_wasi(dispatch::error_response(&error)));
            }
        };
        let (body, trailers) = wasi::Request::consume_body(request, wit_future::new(|| Ok(())).1);
        let body = BodyStream::wasi(Incoming::new(body, trailers));
        let (request_id, routed) = dispatch::route(head);
        let response = match routed {
            Routed::Answer(response) => response,
            Routed::Call(function, request) => Scoped::new(request_id.clone(), call(function, *request, body)).await,
        };
        Ok(into_wasi(dispatch::finish(response, &request_id)))
    }
}

/// Runs the handler: a sync one gets the whole body (read first), an async one the body as it arrives.
async fn call(function: &'static HttpFunction, request: Request, body: BodyStream) -> Response {
    match function.handler {
        HttpHandler::Sync(handler) => match body.bytes().await {
            Ok(bytes) => handler(request.with_body(bytes)),
            Err(error) => dispatch::error_response(&error),
        },
        HttpHandler::Async(handler) => handler(request.with_body_stream(body)).await,
    }
}

/// The request without its body, as `http` types.
fn head_of(request: &wasi::Request) -> Result<http::Request<Vec<u8>>, String> {
    let method = match request.get_method() {
        wasi::Method::Get => http::Method::GET,
        wasi::Method::Head => http::Method::HEAD,
        wasi::Method::Post => http::Method::POST,
        wasi::Method::Put => http::Method::PUT,
        wasi::Method::Delete => http::Method::DELETE,
        wasi::Method::Connect => http::Method::CONNECT,
        wasi::Method::Options => http::Method::OPTIONS,
        wasi::Method::Trace => http::Method::TRACE,
        wasi::Method::Patch => http::Method::PATCH,
        wasi::Method::Other(other) => http::Method::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?,
    };
    let scheme = request.get_scheme().map(|scheme| match scheme {
        wasi::Scheme::Http => "http".to_owned(),
        wasi::Scheme::Https => "https".to_owned(),
        wasi::Scheme::Other(other) => other,
    });
    let authority = request.get_authority();
    let uri = crate::abi::incoming_uri(scheme.as_deref(), authority.as_deref(), request.get_path_with_query());
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut has_host = false;
    for (name, value) in request.get_headers().copy_all() {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name, value);
    }
    // `host` is a forbidden header in wasi:http: the client's host arrives as the authority.
    if let Some(authority) = authority.filter(|_| !has_host) {
        builder = builder.header(http::header::HOST, authority);
    }
    builder.body(Vec::new()).map_err(|e| e.to_string())
}

/// `response` as a `wasi:http` response; its body goes out from a task of its own once `handle` has returned.
fn into_wasi(response: Response) -> wasi::Response {
    let (parts, body) = response.into_outgoing();
    let headers = Fields::new();
    for (name, value) in &parts.headers {
        // WASI refuses some headers (hop-by-hop ones such as `connection`): skip them, keep the response.
        if headers.append(name.as_str(), value.as_bytes()).is_err() {
            eprintln!("edgefn: response header `{name}` is not allowed by wasi:http and was dropped");
        }
    }
    let answer = |headers: Fields, contents, trailers: Trailers| {
        let (response, _sent) = wasi::Response::new(headers, Some(contents), trailers);
        // The status came from `http::StatusCode`, so it is always in the range WASI accepts.
        let _ = response.set_status_code(parts.status.as_u16());
        response
    };
    match body {
        Body::Bytes(bytes) => {
            if !bytes.is_empty() && !parts.headers.contains_key(http::header::CONTENT_LENGTH) {
                // A known length: the client gets it in one piece, not chunked.
                let _ = headers.set(http::header::CONTENT_LENGTH.as_str(), &[bytes.len().to_string().into_bytes()]);
            }
            let (writer, contents) = wit_stream::new();
            let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
            let response = answer(headers, contents, trailers_rx);
            spawn(async move {
                let mut out = Outgoing::new(writer);
                let written = if bytes.is_empty() { Ok(()) } else { out.write(bytes).await };
                drop(out);
                end(trailers_tx, written).await;
            });
            response
        }
        Body::Streamed(Streamed::Forward(stream)) => match stream.into_wasi().map(Incoming::into_parts) {
            // Unread: the stream itself becomes the body, and the host pipes it without the guest.
            Ok(Some((contents, trailers))) => answer(headers, contents, trailers),
            Ok(None) => answer_empty(headers, answer),
            Err(mut stream) => {
                let (writer, contents) = wit_stream::new();
                let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
                let response = answer(headers, contents, trailers_rx);
                spawn(async move {
                    let mut out = Outgoing::new(writer);
                    let mut outcome = Ok(());
                    while let Some(chunk) = stream.next().await {
                        outcome = match chunk {
                            Ok(chunk) => out.write(chunk).await,
                            Err(error) => Err(error),
                        };
                        if outcome.is_err() {
                            break;
                        }
                    }
                    drop(out);
                    end(trailers_tx, outcome).await;
                });
                response
            }
        },
        Body::Streamed(Streamed::Writer(write)) => {
            let (writer, contents) = wit_stream::new();
            let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
            let response = answer(headers, contents, trailers_rx);
            spawn(async move {
                let outcome = write(BodyWriter::wasi(Outgoing::new(writer))).await;
                end(trailers_tx, outcome).await;
            });
            response
        }
        Body::Streamed(Streamed::Sse { handler, keep_alive }) => {
            let (writer, contents) = wit_stream::new();
            let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
            let response = answer(headers, contents, trailers_rx);
            spawn(async move {
                let (events, frames) = crate::sse::channel();
                let mut out = BodyWriter::wasi(Outgoing::new(writer));
                let (outcome, ()) = futures::join!(handler(events), crate::sse::pump(frames, &mut out, keep_alive));
                drop(out);
                end(trailers_tx, outcome).await;
            });
            response
        }
    }
}

/// A response with no body at all.
fn answer_empty(
    headers: Fields,
    answer: impl FnOnce(Fields, wasip3::wit_bindgen::StreamReader<u8>, Trailers) -> wasi::Response,
) -> wasi::Response {
    let (writer, contents) = wit_stream::new::<u8>();
    drop(writer);
    answer(headers, contents, wit_future::new(|| Ok(None)).1)
}

/// Says how a body ended: whole, or cut short by `error`, which the client then sees as a broken response (never
/// a clean end) and the log gets. A client that went away is no error of the function's.
async fn end(trailers: FutureWriter<Result<Option<Fields>, ErrorCode>>, outcome: Result<(), Error>) {
    match outcome {
        Ok(()) => drop(trailers),
        Err(error) if error.status() == 499 => drop(trailers),
        Err(error) => {
            eprintln!("edgefn: request {} failed while its body was sent: {error}", crate::correlation_id());
            let _ = trailers.write(Err(ErrorCode::InternalError(Some(error.message().to_owned())))).await;
        }
    }
}
