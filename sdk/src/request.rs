//! The incoming request: an `http::Request<Vec<u8>>` plus the route's parameters.

use crate::{Error, REQUEST_ID_HEADER, Result};
use edgefn_manifest::route::percent_decode;
use http::{HeaderMap, Method, Uri};
use serde::de::DeserializeOwned;

/// An HTTP request as a handler sees it: method, URI, headers, the whole body, and the route's parameters.
///
/// It wraps `http::Request<Vec<u8>>` (reach it with [`Request::inner`] or [`Request::into_inner`]) and adds helpers
/// for what handlers do all day: [`param`](Request::param), [`query`](Request::query),
/// [`header`](Request::header), [`json`](Request::json), [`text`](Request::text). The accessors of a single value
/// all borrow from the request: `param`, `query` and `header` return `Option<&str>`.
#[derive(Debug)]
pub struct Request {
    inner: http::Request<Vec<u8>>,
    params: Vec<(String, String)>,
    /// Decoded once, when the request is built.
    query: Vec<(String, String)>,
    /// On a protected route: the claims of the token the host verified.
    claims: Option<serde_json::Value>,
}

impl Request {
    /// Wraps a request that has no route parameters.
    pub fn new(inner: http::Request<Vec<u8>>) -> Self {
        Self::with_params(inner, Vec::new())
    }

    /// Wraps a request with the parameters its route matched.
    pub fn with_params(inner: http::Request<Vec<u8>>, params: Vec<(String, String)>) -> Self {
        let query = decode_query(inner.uri().query());
        Self { inner, params, query, claims: None }
    }

    /// The request with the claims of a verified token (the dispatcher and `edgefn::testing` set them).
    pub(crate) fn with_claims(mut self, claims: Option<serde_json::Value>) -> Self {
        self.claims = claims;
        self
    }

    /// On a route with `auth = "..."`: the claims of the bearer token the host verified (`sub`, `scope`, `iss`,
    /// and whatever else the issuer put in). `None` on a public route.
    pub fn claims(&self) -> Option<&serde_json::Value> {
        self.claims.as_ref()
    }

    /// The verified claims as `T`, e.g. `#[derive(Deserialize)] struct Claims { sub: String }`. A public route
    /// (no claims) is a 401; claims that do not fit `T` are a 403 that says why: the token is valid, but not one
    /// this function can serve.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T> {
        let claims = self.claims.as_ref().ok_or_else(|| {
            Error::new(401, "this route has no verified token: protect it with `auth = \"AUTHORIZER\"`")
        })?;
        T::deserialize(claims).map_err(|e| Error::new(403, format!("the token's claims do not fit this endpoint: {e}")))
    }

    /// A route parameter: `req.param("name")` is `Some("ada")` for `/hello/ada` on route `/hello/{name}`.
    /// Parameters are percent-decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// All route parameters, in route order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }

    /// The first value of a query parameter, decoded (`+` is a space): `?q=a+b` gives `Some("a b")`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every query parameter, decoded, in order.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.query
    }

    /// A header's value, if present and valid UTF-8. Names are case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.inner.method()
    }

    /// The full URI (path and query).
    pub fn uri(&self) -> &Uri {
        self.inner.uri()
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.inner.uri().path()
    }

    /// The raw body.
    pub fn body(&self) -> &[u8] {
        self.inner.body()
    }

    /// The body as UTF-8 text; invalid UTF-8 is a 400.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.inner.body())
            .map_err(|e| Error::bad_request(format!("request body is not valid UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T`; a body that does not parse or does not fit `T` is a 400 that says why.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.inner.body())
            .map_err(|e| Error::bad_request(format!("request body is not valid JSON for this endpoint: {e}")))
    }

    /// The id the host gave this request (also sent back in the `x-request-id` response header).
    pub fn request_id(&self) -> &str {
        self.header(REQUEST_ID_HEADER).unwrap_or("")
    }

    /// The underlying `http` request.
    pub fn inner(&self) -> &http::Request<Vec<u8>> {
        &self.inner
    }

    /// Takes the underlying `http` request.
    pub fn into_inner(self) -> http::Request<Vec<u8>> {
        self.inner
    }
}

/// `a=1&b=x+y` as decoded pairs.
fn decode_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(query) = query else { return Vec::new() };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(&name.replace('+', " ")), percent_decode(&value.replace('+', " ")))
        })
        .collect()
}

impl From<http::Request<Vec<u8>>> for Request {
    fn from(inner: http::Request<Vec<u8>>) -> Self {
        Self::new(inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_query_and_header_all_borrow_from_the_request() {
        let inner = http::Request::builder()
            .uri("/orders/7?qty=2&note=a+b%21&qty=3")
            .header("x-tenant", "acme")
            .body(Vec::new())
            .expect("request");
        let request = Request::with_params(inner, vec![("id".into(), "7".into())]);
        let (id, qty, tenant): (Option<&str>, Option<&str>, Option<&str>) =
            (request.param("id"), request.query("qty"), request.header("x-tenant"));
        assert_eq!((id, qty, tenant), (Some("7"), Some("2"), Some("acme")));
        assert_eq!(request.query("qty").unwrap_or("1"), "2");
        assert_eq!(request.query("missing").unwrap_or("1"), "1");
        assert_eq!(request.query("note"), Some("a b!"));
        assert_eq!(request.query_pairs().len(), 3);
    }
}
