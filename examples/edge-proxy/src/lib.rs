//! Two things edge functions are for, as async functions (a WASI 0.3 component):
//!
//! - **A streaming reverse proxy**, `/edge/{*path}` -> `ORIGIN_URL/{path}`. Headers are rewritten (`server` and
//!   `x-powered-by` dropped, `via` and `x-edge` added, a `location` at the origin moved under `/edge`). An HTML page
//!   is rewritten on the fly, chunk by chunk, with `lol_html`: its links to the origin point back under `/edge`,
//!   and a banner is added at the top of its body. Anything else is forwarded as it arrives, without the function
//!   touching a byte (the host pipes it). Nothing is ever held whole, whatever the size.
//! - **An aggregator**, `/aggregate`: fetches every URL of `AGGREGATE_URLS` (comma-separated) at the same time and
//!   answers their JSON (or text) merged, with how long the whole took: the slowest origin's time, not the sum. An origin
//!   that fails or takes over `AGGREGATE_TIMEOUT_MS` (default 2000) is reported as such; the others still answer.
//!
//! Both may reach only the hosts in the component's `allowed_outbound_hosts`.

use edgefn::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What the proxy adds to every response.
const VIA: &str = "1.1 edgefn";

// ANCHOR: proxy
#[function(trigger = http("/edge/{*path}", method = "*"))]
async fn proxy(req: Request) -> Result<Response> {
    let origin = edgefn::config::require("ORIGIN_URL")?.trim_end_matches('/').to_owned();
    let path = req.param("path").unwrap_or("");
    let target = match req.uri().query() {
        Some(query) => format!("{origin}/{path}?{query}"),
        None => format!("{origin}/{path}"),
    };
    let mut outbound = edgefn::http::Request::builder().method(req.method().clone()).uri(&target);
    for (name, value) in req.headers() {
        if name != "host" && !edgefn::fetch::is_hop_by_hop(name.as_str()) {
            outbound = outbound.header(name, value);
        }
    }
    let body = req.read_body().await?.to_vec();
    let fetched = edgefn::fetch::send(outbound.body(body)?).await?;
    let is_html = fetched.header("content-type").is_some_and(|t| t.starts_with("text/html"));
    let mut response = if is_html { rewrite_html(fetched, origin.clone()) } else { Response::forward(fetched) };
    if let Some(location) = response.header("location").map(str::to_owned) {
        response = response.with_header("location", &at_the_edge(&location, &origin));
    }
    Ok(response
        .without_header("server")
        .without_header("x-powered-by")
        .with_header("via", VIA)
        .with_header("x-edge", "edgefn"))
}
// ANCHOR_END: proxy

/// `fetched`'s HTML, rewritten while it streams through: see the module docs.
fn rewrite_html(fetched: edgefn::fetch::Fetched, origin: String) -> Response {
    let status = fetched.status();
    let headers = fetched.headers().clone();
    let mut response = Response::stream(move |mut out| async move {
        let rewritten = Rc::new(RefCell::new(Vec::new()));
        let sink = rewritten.clone();
        let link = |attribute: &'static str| {
            let origin = origin.clone();
            move |element: &mut lol_html::html_content::Element<'_, '_>| {
                if let Some(url) = element.get_attribute(attribute) {
                    element.set_attribute(attribute, &at_the_edge(&url, &origin))?;
                }
                Ok(())
            }
        };
        let banner = |body: &mut lol_html::html_content::Element<'_, '_>| {
            let banner = r#"<div id="edge-banner">served at the edge by edgefn</div>"#;
            body.prepend(banner, lol_html::html_content::ContentType::Html);
            Ok(())
        };
        let settings = lol_html::Settings::new()
            .append_element_content_handler(lol_html::element!("a[href]", link("href")))
            .append_element_content_handler(lol_html::element!("link[href]", link("href")))
            .append_element_content_handler(lol_html::element!("img[src]", link("src")))
            .append_element_content_handler(lol_html::element!("script[src]", link("src")))
            .append_element_content_handler(lol_html::element!("body", banner));
        let mut rewriter =
            lol_html::HtmlRewriter::new(settings, move |chunk: &[u8]| sink.borrow_mut().extend_from_slice(chunk));
        let mut body = fetched.into_body_stream();
        while let Some(chunk) = body.next().await {
            rewriter
                .write(&chunk?)
                .map_err(|e| Error::new(502, format!("the origin's HTML could not be rewritten: {e}")))?;
            let ready = std::mem::take(&mut *rewritten.borrow_mut());
            out.write(ready).await?;
        }
        rewriter.end().map_err(|e| Error::new(502, format!("the origin's HTML could not be rewritten: {e}")))?;
        let rest = std::mem::take(&mut *rewritten.borrow_mut());
        out.write(rest).await
    })
    .with_status(status);
    for (name, value) in &headers {
        // The length changes with the rewrite: the body goes out chunked instead.
        let skip = name == "content-length" || edgefn::fetch::is_hop_by_hop(name.as_str());
        if let (false, Ok(value)) = (skip, value.to_str()) {
            response = response.with_header(name.as_str(), value);
        }
    }
    response
}

/// `url` as the client should see it: a link to the origin (absolute, or rooted at `/`) goes under `/edge`.
fn at_the_edge(url: &str, origin: &str) -> String {
    if let Some(rest) = url.strip_prefix(origin) {
        return format!("/edge{}", if rest.is_empty() { "/" } else { rest });
    }
    match url.strip_prefix('/') {
        Some(rest) if !rest.starts_with('/') && !url.starts_with("/edge/") => format!("/edge/{rest}"),
        _ => url.to_owned(),
    }
}

// ANCHOR: aggregate
#[function(trigger = http("/aggregate"))]
async fn aggregate(_req: Request) -> Result<Response> {
    let urls: Vec<String> = edgefn::config::require("AGGREGATE_URLS")?
        .split(',')
        .map(|url| url.trim().to_owned())
        .filter(|url| !url.is_empty())
        .collect();
    let limit = Duration::from_millis(
        edgefn::config::get("AGGREGATE_TIMEOUT_MS").and_then(|ms| ms.parse().ok()).unwrap_or(2000),
    );
    let started = Instant::now();
    let calls = urls.iter().map(|url| async move {
        let fetched = async {
            let fetched = edgefn::fetch::send_with(url, edgefn::fetch::Options::new().timeout(limit)).await?;
            let status = fetched.status();
            let text = fetched.text().await?;
            // JSON is merged as JSON; any other answer as its text.
            let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
            Ok::<_, Error>(serde_json::json!({ "url": url, "status": status, "body": body }))
        };
        fetched.await.unwrap_or_else(|error| serde_json::json!({ "url": url, "error": error.message() }))
    });
    let sources = edgefn::futures::future::join_all(calls).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    Response::json(&serde_json::json!({ "sources": sources, "elapsed_ms": elapsed_ms }))
}
// ANCHOR_END: aggregate

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_to_the_origin_point_back_under_the_edge() {
        let origin = "http://origin.test:8000";
        assert_eq!(at_the_edge("http://origin.test:8000/a/b?c=1", origin), "/edge/a/b?c=1");
        assert_eq!(at_the_edge("http://origin.test:8000", origin), "/edge/");
        assert_eq!(at_the_edge("/style.css", origin), "/edge/style.css");
        assert_eq!(at_the_edge("/edge/already", origin), "/edge/already");
        assert_eq!(at_the_edge("https://elsewhere.test/x", origin), "https://elsewhere.test/x");
        assert_eq!(at_the_edge("//cdn.test/x.js", origin), "//cdn.test/x.js");
        assert_eq!(at_the_edge("relative.html", origin), "relative.html");
    }
}
