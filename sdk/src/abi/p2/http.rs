//! The component's `wasi:http/incoming-handler` export: converts between WASI HTTP resources and `http` types and
//! hands every request to the dispatcher. Only compiled for wasm targets.

use crate::dispatch;
use std::io::{Read, Write};
use wasip2::http::types::{
    Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam, Scheme,
};

struct Component;

wasip2::http::proxy::export!(Component with_types_in wasip2);

impl wasip2::exports::http::incoming_handler::Guest for Component {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let response = match read_request(&request) {
            Ok(request) => dispatch::dispatch(request).into_inner(),
            Err(reason) => {
                let error = crate::Error::bad_request(format!("could not read the request: {reason}"));
                dispatch::error_response(&error).into_inner()
            }
        };
        write_response(response, response_out);
    }
}

fn read_request(incoming: &IncomingRequest) -> Result<http::Request<Vec<u8>>, String> {
    let method = match incoming.method() {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes()).map_err(|e| e.to_string())?,
    };
    let scheme = incoming.scheme().map(|scheme| match scheme {
        Scheme::Http => "http".to_owned(),
        Scheme::Https => "https".to_owned(),
        Scheme::Other(other) => other,
    });
    let authority = incoming.authority();
    let uri = crate::abi::incoming_uri(scheme.as_deref(), authority.as_deref(), incoming.path_with_query());
    let mut builder = http::Request::builder().method(method).uri(uri);
    let mut has_host = false;
    for (name, value) in incoming.headers().entries() {
        has_host |= name.eq_ignore_ascii_case("host");
        builder = builder.header(name, value);
    }
    // Hosts may hold `host` back (it is forbidden in wasi:http fields): the authority is what the client sent in it.
    if let Some(authority) = authority.filter(|_| !has_host) {
        builder = builder.header(http::header::HOST, authority);
    }
    let body = read_body(incoming)?;
    builder.body(body).map_err(|e| e.to_string())
}

fn read_body(incoming: &IncomingRequest) -> Result<Vec<u8>, String> {
    let body = incoming.consume().map_err(|()| "the request body was already consumed".to_owned())?;
    let mut bytes = Vec::new();
    {
        let mut stream = body.stream().map_err(|()| "the request body stream is unavailable".to_owned())?;
        stream.read_to_end(&mut bytes).map_err(|e| format!("failed to read the request body: {e}"))?;
    }
    drop(IncomingBody::finish(body));
    Ok(bytes)
}

fn write_response(response: http::Response<Vec<u8>>, response_out: ResponseOutparam) {
    let (parts, body) = response.into_parts();
    let headers = Fields::new();
    for (name, value) in &parts.headers {
        // WASI refuses some headers (hop-by-hop ones such as `connection`): skip them, keep the response.
        if headers.append(name.as_str(), value.as_bytes()).is_err() {
            eprintln!("edgefn: response header `{name}` is not allowed by wasi:http and was dropped");
        }
    }
    let outgoing = OutgoingResponse::new(headers);
    // The status came from `http::StatusCode`, so it is always in the range WASI accepts.
    let _ = outgoing.set_status_code(parts.status.as_u16());
    let Ok(outgoing_body) = outgoing.body() else {
        eprintln!("edgefn: could not open the response body");
        return;
    };
    ResponseOutparam::set(response_out, Ok(outgoing));
    {
        let Ok(mut stream) = outgoing_body.write() else {
            eprintln!("edgefn: could not write the response body");
            return;
        };
        if let Err(e) = stream.write_all(&body).and_then(|()| Write::flush(&mut stream)) {
            eprintln!("edgefn: failed to write the response body: {e}");
            return;
        }
    }
    if let Err(e) = OutgoingBody::finish(outgoing_body, None) {
        eprintln!("edgefn: failed to finish the response body: {e:?}");
    }
}
