//! A `wasi:http@0.3` service with no edgefn SDK and no manifest, written against the `wasip3` crate the way public
//! WASIp3 samples are, so a test can mount it on edgefn (and serve it with `wasmtime serve`):
//!
//! - `/` answers `plain p3 root (prefix: P)`, P being the `x-forwarded-prefix` header or `none`;
//! - `/echo` streams the request body back as it arrives;
//! - `/count/N` streams N lines (`line 0` .. `line N-1`), one write each;
//! - anything else answers `plain p3 component saw PATH`.

#[cfg(target_family = "wasm")]
mod component {
    use wasip3::http::types::{ErrorCode, Fields, Request, Response};
    use wasip3::{wit_future, wit_stream};

    struct PlainP3;

    wasip3::http::service::export!(PlainP3);

    fn header(request: &Request, name: &str) -> Option<String> {
        let values = request.get_headers().get(name);
        values.first().map(|value| String::from_utf8_lossy(value).into_owned())
    }

    /// A response whose body is whatever `fill` writes into it, after `handle` has returned.
    fn streamed<F>(fill: impl FnOnce(wasip3::wit_bindgen::StreamWriter<u8>) -> F) -> Result<Response, ErrorCode>
    where
        F: core::future::Future<Output = ()> + 'static,
    {
        let (body_tx, body_rx) = wit_stream::new();
        let (trailers_tx, trailers_rx) = wit_future::new(|| Ok(None));
        drop(trailers_tx);
        let (response, _sent) = Response::new(Fields::new(), Some(body_rx), trailers_rx);
        wasip3::spawn_local(fill(body_tx));
        Ok(response)
    }

    impl wasip3::exports::http::handler::Guest for PlainP3 {
        async fn handle(request: Request) -> Result<Response, ErrorCode> {
            let path_with_query = request.get_path_with_query().unwrap_or_default();
            let path = path_with_query.split('?').next().unwrap_or_default().to_owned();
            if path == "/echo" {
                let (_done_tx, done_rx) = wit_future::new(|| Ok(()));
                let (mut body, _trailers) = Request::consume_body(request, done_rx);
                return streamed(|mut out| async move {
                    loop {
                        let (status, chunk) = body.read(Vec::with_capacity(64 << 10)).await;
                        if chunk.is_empty() && !matches!(status, wasip3::wit_bindgen::StreamResult::Complete(_)) {
                            break;
                        }
                        if !out.write_all(chunk).await.is_empty() {
                            break;
                        }
                    }
                });
            }
            if let Some(count) = path.strip_prefix("/count/").and_then(|n| n.parse::<u32>().ok()) {
                return streamed(move |mut out| async move {
                    for line in 0..count {
                        if !out.write_all(format!("line {line}\n").into_bytes()).await.is_empty() {
                            break;
                        }
                    }
                });
            }
            let answer = match path.as_str() {
                "/" => format!(
                    "plain p3 root (prefix: {})",
                    header(&request, "x-forwarded-prefix").as_deref().unwrap_or("none")
                ),
                _ => format!("plain p3 component saw {path_with_query}"),
            };
            streamed(move |mut out| async move {
                let _ = out.write_all(answer.into_bytes()).await;
            })
        }
    }
}
