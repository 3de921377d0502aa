//! `cors = { ... }` of a component (`[components.NAME.cors]`) or of one function
//! (`[components.NAME.functions.F.cors]`): which browser origins may call its HTTP functions. The host answers
//! preflights itself and adds the headers to the function's responses (`triggers::http::cors`).
//!
//! ```toml
//! [components.api.cors]
//! allowed_origins = ["https://app.example.com", "https://*.example.com"]   # or ["*"]
//! allowed_methods = ["GET", "POST"]                # default: GET, HEAD, POST
//! allowed_headers = ["content-type", "authorization"]
//! expose_headers = ["x-request-id"]
//! allow_credentials = true                         # never with "*"
//! max_age_s = 600                                  # how long a browser may cache a preflight
//! ```

use serde::Deserialize;

/// See the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsSettings {
    /// Exact origins (`https://app.example.com`), one-label wildcards (`https://*.example.com`), or `*`.
    pub allowed_origins: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_methods: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_credentials: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_s: Option<u64>,
}

/// The methods a policy allows when it names none: the CORS-safelisted ones.
pub const DEFAULT_CORS_METHODS: &[&str] = &["GET", "HEAD", "POST"];

impl CorsSettings {
    /// Checks the settings; the error names the setting and why.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.allowed_origins.is_empty() {
            return Err(format!("{what}: cors.allowed_origins is empty: name the origins (or \"*\")"));
        }
        for origin in &self.allowed_origins {
            if origin == "*" {
                if self.allow_credentials {
                    return Err(format!(
                        "{what}: cors.allow_credentials with allowed_origins \"*\" would let any site make calls \
                         with the user's cookies: name the origins"
                    ));
                }
                continue;
            }
            let Some((scheme, host)) = origin.split_once("://") else {
                return Err(format!(
                    "{what}: cors origin `{origin}` must be scheme://host[:port], e.g. https://app.example.com"
                ));
            };
            let host_ok = !host.is_empty()
                && !host.contains('/')
                && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:*[]".contains(c))
                && (!host.contains('*') || (host.starts_with("*.") && host.matches('*').count() == 1));
            if !matches!(scheme, "http" | "https") || !host_ok {
                return Err(format!(
                    "{what}: cors origin `{origin}` must be http(s)://host[:port], with at most a leading `*.` label"
                ));
            }
        }
        for method in &self.allowed_methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(format!("{what}: cors method `{method}` is not a method name"));
            }
        }
        for header in self.allowed_headers.iter().chain(&self.expose_headers) {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() && header != "*" {
                return Err(format!("{what}: cors header `{header}` is not a header name"));
            }
        }
        if self.max_age_s.is_some_and(|age| age > 86_400) {
            return Err(format!("{what}: cors.max_age_s must be at most 86400 (a day; browsers cap it anyway)"));
        }
        Ok(())
    }
}

/// An origin rule, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OriginRule {
    Any,
    Exact(String),
    /// `scheme://*.rest`: any one label in front of `.rest`.
    OneLabel {
        scheme: String,
        rest: String,
    },
}

impl OriginRule {
    fn parse(origin: &str) -> Self {
        if origin == "*" {
            return Self::Any;
        }
        match origin.split_once("://*.") {
            Some((scheme, rest)) => Self::OneLabel { scheme: scheme.to_owned(), rest: rest.to_ascii_lowercase() },
            None => Self::Exact(origin.trim_end_matches('/').to_ascii_lowercase()),
        }
    }

    fn admits(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact.eq_ignore_ascii_case(origin),
            Self::OneLabel { scheme, rest } => {
                let Some(host) = origin.strip_prefix(scheme.as_str()).and_then(|o| o.strip_prefix("://")) else {
                    return false;
                };
                let host = host.to_ascii_lowercase();
                host.strip_suffix(rest.as_str())
                    .and_then(|label| label.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains(['.', '/', ':', '@']))
            }
        }
    }
}

/// A function's CORS settings, compiled for the requests it answers.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<OriginRule>,
    methods: Vec<String>,
    /// Lower case; `*` allows any.
    headers: Vec<String>,
    expose: Vec<String>,
    credentials: bool,
    max_age_s: Option<u64>,
}

/// Headers to add to an answer, as (name, value).
pub type CorsHeaders = Vec<(http::HeaderName, http::HeaderValue)>;

impl CorsPolicy {
    pub fn new(settings: &CorsSettings) -> Self {
        let methods = if settings.allowed_methods.is_empty() {
            DEFAULT_CORS_METHODS.iter().map(|m| (*m).to_owned()).collect()
        } else {
            settings.allowed_methods.iter().map(|m| m.to_ascii_uppercase()).collect()
        };
        Self {
            origins: settings.allowed_origins.iter().map(|o| OriginRule::parse(o)).collect(),
            methods,
            headers: settings.allowed_headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            expose: settings.expose_headers.clone(),
            credentials: settings.allow_credentials,
            max_age_s: settings.max_age_s,
        }
    }

    /// The `Access-Control-Allow-Origin` for `origin`, or why it is not allowed.
    fn allow_origin(&self, origin: &str) -> Result<http::HeaderValue, String> {
        if !self.origins.iter().any(|rule| rule.admits(origin)) {
            return Err(format!("origin `{origin}` is not in cors.allowed_origins"));
        }
        // `*` only when any origin is allowed and no credentials: otherwise the origin itself (and `Vary: Origin`).
        let value = if !self.credentials && self.origins.contains(&OriginRule::Any) { "*" } else { origin };
        http::HeaderValue::from_str(value).map_err(|_| format!("origin `{origin}` is not a valid header value"))
    }

    fn common(&self, allow_origin: http::HeaderValue) -> CorsHeaders {
        use http::header;
        let mut headers = vec![(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin)];
        if self.credentials {
            headers.push((header::ACCESS_CONTROL_ALLOW_CREDENTIALS, http::HeaderValue::from_static("true")));
        }
        headers.push((header::VARY, http::HeaderValue::from_static("Origin")));
        headers
    }

    /// The answer to a preflight from `origin` for `method` with `request_headers` (the comma-separated
    /// `Access-Control-Request-Headers`), or why it is refused.
    pub fn preflight(&self, origin: &str, method: &str, request_headers: &str) -> Result<CorsHeaders, String> {
        use http::header;
        let allow_origin = self.allow_origin(origin)?;
        if !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return Err(format!("method {method} is not in cors.allowed_methods ({})", self.methods.join(", ")));
        }
        let asked: Vec<String> =
            request_headers.split(',').map(|h| h.trim().to_ascii_lowercase()).filter(|h| !h.is_empty()).collect();
        let any_header = self.headers.iter().any(|h| h == "*") && !self.credentials;
        if let Some(refused) = asked.iter().find(|h| !any_header && !self.headers.contains(h)) {
            return Err(format!("request header `{refused}` is not in cors.allowed_headers"));
        }
        let mut headers = self.common(allow_origin);
        let value = |text: String| http::HeaderValue::from_str(&text).ok();
        if let Some(methods) = value(self.methods.join(", ")) {
            headers.push((header::ACCESS_CONTROL_ALLOW_METHODS, methods));
        }
        if !asked.is_empty()
            && let Some(allowed) = value(asked.join(", "))
        {
            headers.push((header::ACCESS_CONTROL_ALLOW_HEADERS, allowed));
        }
        if let Some(age) = self.max_age_s {
            headers.push((header::ACCESS_CONTROL_MAX_AGE, http::HeaderValue::from(age)));
        }
        Ok(headers)
    }

    /// The headers an actual (not preflight) response to `origin` gets, or why it gets none.
    pub fn response_headers(&self, origin: &str) -> Result<CorsHeaders, String> {
        let mut headers = self.common(self.allow_origin(origin)?);
        if !self.expose.is_empty()
            && let Ok(expose) = http::HeaderValue::from_str(&self.expose.join(", "))
        {
            headers.push((http::header::ACCESS_CONTROL_EXPOSE_HEADERS, expose));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str]) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["Content-Type".into()],
            ..CorsSettings::default()
        }
    }

    #[test]
    fn exact_and_one_label_origins_are_admitted_and_nothing_else() {
        let policy = CorsPolicy::new(&settings(&["https://app.example.com", "https://*.shop.test"]));
        assert!(policy.response_headers("https://app.example.com").is_ok());
        assert!(policy.response_headers("https://a.shop.test").is_ok());
        for refused in [
            "http://app.example.com",
            "https://evil.com",
            "https://a.b.shop.test",
            "https://shop.test",
            "https://app.example.com.evil.com",
            "https://x.shop.test.evil",
        ] {
            let error = policy.response_headers(refused).unwrap_err();
            assert!(error.contains("not in cors.allowed_origins"), "{refused}: {error}");
        }
    }

    #[test]
    fn a_preflight_checks_method_and_headers_and_answers_what_the_browser_needs() {
        let policy = CorsPolicy::new(&CorsSettings { max_age_s: Some(600), ..settings(&["https://app.example.com"]) });
        let headers = policy.preflight("https://app.example.com", "PUT", "content-type").expect("allowed");
        let get = |name: http::HeaderName| headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_str().unwrap());
        assert_eq!(get(http::header::ACCESS_CONTROL_ALLOW_ORIGIN), Some("https://app.example.com"));
        assert_eq!(get(http::header::ACCESS_CONTROL_ALLOW_METHODS), Some("GET, PUT"));
        assert_eq!(get(http::header::ACCESS_CONTROL_ALLOW_HEADERS), Some("content-type"));
        assert_eq!(get(http::header::ACCESS_CONTROL_MAX_AGE), Some("600"));
        assert_eq!(get(http::header::VARY), Some("Origin"));
        let error = policy.preflight("https://app.example.com", "DELETE", "").unwrap_err();
        assert!(error.contains("method DELETE"), "{error}");
        let error = policy.preflight("https://app.example.com", "PUT", "x-secret").unwrap_err();
        assert!(error.contains("`x-secret`"), "{error}");
    }

    #[test]
    fn any_origin_is_a_star_without_credentials_and_settings_are_checked() {
        let any = CorsPolicy::new(&settings(&["*"]));
        let headers = any.response_headers("https://whoever.test").expect("any");
        assert_eq!(headers[0].1, "*");
        let star_with_credentials = CorsSettings { allow_credentials: true, ..settings(&["*"]) };
        assert!(star_with_credentials.validate("c").unwrap_err().contains("allow_credentials"));
        assert!(settings(&["app.example.com"]).validate("c").unwrap_err().contains("scheme://host"));
        assert!(settings(&["https://a.*.com"]).validate("c").is_err());
        assert!(settings(&[]).validate("c").unwrap_err().contains("empty"));
        assert!(settings(&["https://*.example.com", "http://localhost:5173"]).validate("c").is_ok());
    }
}
