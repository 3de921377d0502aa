//! A wasi:http component with no edgefn SDK and no manifest: it answers every request with its own path, so a
//! test can check that `edgefn up --mount` forwards requests unchanged.

#[cfg(target_family = "wasm")]
mod component {
    use std::io::Write as _;
    use wasip2::http::types::{Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam};

    struct Plain;

    wasip2::http::proxy::export!(Plain with_types_in wasip2);

    impl wasip2::exports::http::incoming_handler::Guest for Plain {
        fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
            let path = request.path_with_query().unwrap_or_default();
            let response = OutgoingResponse::new(Fields::new());
            let Ok(body) = response.body() else { return };
            ResponseOutparam::set(response_out, Ok(response));
            if let Ok(mut stream) = body.write() {
                let _ = stream.write_all(format!("plain component saw {path}").as_bytes());
                let _ = stream.flush();
            }
            let _ = OutgoingBody::finish(body, None);
        }
    }
}
