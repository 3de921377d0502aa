//! A wasi:http component with no edgefn SDK and no manifest, routing on `/` the way public sample components do
//! (`/`, `/wait`, `/echo`), so a test can mount it under a prefix, with and without stripping it:
//!
//! - `/` answers `plain root (prefix: P)`, P being the `x-forwarded-prefix` header or `none`;
//! - `/wait` sleeps 10 ms and answers `waited`;
//! - `/echo` answers the request body;
//! - anything else answers `plain component saw PATH`, so a test sees what path reached it.

#[cfg(target_family = "wasm")]
mod component {
    use std::io::{Read as _, Write as _};
    use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

    struct Plain;

    wasip2::http::proxy::export!(Plain with_types_in wasip2);

    fn header(request: &IncomingRequest, name: &str) -> Option<String> {
        let values = request.headers().get(name);
        values.first().map(|value| String::from_utf8_lossy(value).into_owned())
    }

    fn read_body(request: IncomingRequest) -> Vec<u8> {
        let mut body = Vec::new();
        if let Ok(incoming) = request.consume()
            && let Ok(mut stream) = incoming.stream()
        {
            let _ = stream.read_to_end(&mut body);
        }
        body
    }

    impl wasip2::exports::http::incoming_handler::Guest for Plain {
        fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
            let path_with_query = request.path_with_query().unwrap_or_default();
            let path = path_with_query.split('?').next().unwrap_or_default().to_owned();
            let answer: Vec<u8> = match path.as_str() {
                "/" => format!(
                    "plain root (prefix: {})",
                    header(&request, "x-forwarded-prefix").as_deref().unwrap_or("none")
                )
                .into_bytes(),
                "/wait" => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    b"waited".to_vec()
                }
                "/echo" => read_body(request),
                _ => format!("plain component saw {path_with_query}").into_bytes(),
            };
            let response = OutgoingResponse::new(Fields::new());
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(response_out, Ok(response));
            if let Ok(mut stream) = body.write() {
                let _ = stream.write_all(&answer);
                let _ = stream.flush();
            }
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
