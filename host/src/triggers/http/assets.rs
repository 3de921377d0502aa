//! Answers a GET or HEAD with a component's static files (`crate::assets`), when no function route matched.
//!
//! tower-http's `ServeFile` reads the file: byte ranges, the precompressed `.br` / `.gz` form the client accepts,
//! the content type, `Last-Modified` and `If-Modified-Since`. Around it this adds what a site needs from a CDN:
//! a strong ETag per form, `If-None-Match` (304, which takes precedence over `If-Modified-Since` as RFC 9110
//! says), `If-Range` by ETag, `Cache-Control` by path pattern, and `Vary: Accept-Encoding` where a form varies.

use crate::assets::{AssetLookup, AssetSite, SiteFile};
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};

/// The site's answer for `request`, or `None` when it has no file there (the caller answers 404).
pub(super) async fn serve(site: &AssetSite, request: Request) -> Option<Response> {
    let path = request.uri().path().to_owned();
    match site.lookup(&path) {
        AssetLookup::File(file) | AssetLookup::Fallback(file) => Some(serve_file(file, request).await),
        AssetLookup::Redirect(location) => {
            let location = match request.uri().query() {
                Some(query) => format!("{location}?{query}"),
                None => location,
            };
            Some((StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response())
        }
        AssetLookup::NotFound => None,
    }
}

async fn serve_file(file: &SiteFile, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let if_none_match = parts.headers.remove(header::IF_NONE_MATCH);
    if if_none_match.is_some() {
        parts.headers.remove(header::IF_MODIFIED_SINCE);
    }
    // `If-Range`: the range only if the client's copy is the one being served, by the ETag of the form served
    // (known once ServeFile has picked it) or by its exact Last-Modified date; else the whole file (RFC 9110 13.1.5).
    // ServeFile does not look at If-Range itself.
    let if_range = parts.headers.remove(header::IF_RANGE);
    let whole = if_range.as_ref().map(|_| {
        let mut headers = parts.headers.clone();
        headers.remove(header::RANGE);
        (parts.method.clone(), parts.uri.clone(), headers)
    });
    let mut response = match serve_form(file, http::Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(failed) => return failed,
    };
    if let (Some(if_range), Some((method, uri, headers))) = (if_range, whole)
        && matches!(response.status(), StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE)
        && !if_range_holds(&if_range, file, &response)
    {
        let mut request = http::Request::new(Body::empty());
        (*request.method_mut(), *request.uri_mut(), *request.headers_mut()) = (method, uri, headers);
        response = match serve_form(file, request).await {
            Ok(response) => response,
            Err(failed) => return failed,
        };
    }
    let encoding = response.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let etag = file.etag_for(encoding.as_deref()).clone();
    let unchanged = response.status().is_success() && if_none_match.as_ref().is_some_and(|tags| matches(tags, &etag));
    let mut response = if unchanged {
        let mut not_modified = StatusCode::NOT_MODIFIED.into_response();
        for name in [header::CONTENT_ENCODING, header::LAST_MODIFIED] {
            if let Some(value) = response.headers().get(&name) {
                not_modified.headers_mut().insert(name, value.clone());
            }
        }
        not_modified
    } else {
        response
    };
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        add_headers(response.headers_mut(), file, etag);
    }
    response
}

/// ServeFile's answer for `request`: the form the client accepts, ranges, content type, `If-Modified-Since`; or the
/// 500 a file that cannot be read gets.
async fn serve_form(file: &SiteFile, request: http::Request<Body>) -> Result<Response, Response> {
    let mut serve = tower_http::services::ServeFile::new(&file.path);
    if file.brotli.is_some() {
        serve = serve.precompressed_br();
    }
    if file.gzip.is_some() {
        serve = serve.precompressed_gzip();
    }
    match serve.try_call(request).await {
        Ok(response) => Ok(response.map(Body::new)),
        Err(error) => {
            tracing::error!(file = %file.path.display(), %error, "a static file could not be read");
            Err((StatusCode::INTERNAL_SERVER_ERROR, "a static file could not be read").into_response())
        }
    }
}

fn add_headers(headers: &mut HeaderMap, file: &SiteFile, etag: HeaderValue) {
    headers.insert(header::ETAG, etag);
    headers.insert(header::CACHE_CONTROL, file.cache_control.clone());
    if file.has_variants() {
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// Whether an `If-Range` validator names what `response` carries: strongly the ETag of its form (a weak tag never
/// does), or exactly its Last-Modified date.
fn if_range_holds(validator: &HeaderValue, file: &SiteFile, response: &Response) -> bool {
    if is_etag(validator) {
        let encoding = response.headers().get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
        return file.etag_for(encoding) == validator;
    }
    response.headers().get(header::LAST_MODIFIED) == Some(validator)
}

/// Whether a header value is an entity tag (`"..."` or `W/"..."`) rather than a date.
fn is_etag(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    bytes.starts_with(b"\"") || bytes.starts_with(b"W/\"")
}

/// `If-None-Match` against the current ETag: `*`, or any tag of the list, compared weakly (RFC 9110 13.1.2).
fn matches(if_none_match: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(list) = if_none_match.to_str() else { return false };
    let current = etag.to_str().unwrap_or_default();
    list.split(',').map(str::trim).any(|tag| tag == "*" || tag.trim_start_matches("W/") == current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_over_a_list() {
        let etag = HeaderValue::from_static("\"abc\"");
        assert!(matches(&HeaderValue::from_static("\"abc\""), &etag));
        assert!(matches(&HeaderValue::from_static("\"x\", W/\"abc\""), &etag));
        assert!(matches(&HeaderValue::from_static("*"), &etag));
        assert!(!matches(&HeaderValue::from_static("\"abcd\""), &etag));
        assert!(is_etag(&HeaderValue::from_static("W/\"abc\"")));
        assert!(!is_etag(&HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT")));
    }
}
