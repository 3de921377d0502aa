//! Route patterns: `/hello/{name}`, `/orders`, `/files/{*path}`.
//!
//! A pattern is a `/`-separated list of segments. A segment is a literal, a parameter `{name}` that matches exactly
//! one non-empty segment, or, last only, a catch-all `{*name}` that matches the rest of the path (possibly empty).
//! Parameters are percent-decoded when matched.

use std::fmt;

/// One segment of a [`RoutePattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    Param(String),
    CatchAll(String),
}

/// A parsed, valid route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    source: String,
    segments: Vec<Segment>,
}

/// Why a route pattern is invalid; the message is shown to the function author by the macro.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError(String);

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

fn err(route: &str, reason: impl fmt::Display) -> RouteError {
    RouteError(format!("invalid route `{route}`: {reason}"))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl RoutePattern {
    /// Parses and validates a pattern.
    pub fn parse(route: &str) -> Result<Self, RouteError> {
        let Some(rest) = route.strip_prefix('/') else {
            return Err(err(route, "a route must start with `/`, e.g. `/hello/{name}`"));
        };
        let mut segments = Vec::new();
        let mut names: Vec<&str> = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let segment = if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    let (catch_all, name) = match inner.strip_prefix('*') {
                        Some(name) => (true, name),
                        None => (false, inner),
                    };
                    if !is_identifier(name) {
                        return Err(err(
                            route,
                            format!("parameter `{{{inner}}}` must be named with letters, digits and `_`"),
                        ));
                    }
                    if names.contains(&name) {
                        return Err(err(route, format!("parameter `{name}` appears twice")));
                    }
                    names.push(name);
                    if catch_all {
                        if !last {
                            return Err(err(route, format!("catch-all `{{*{name}}}` must be the last segment")));
                        }
                        Segment::CatchAll(name.to_owned())
                    } else {
                        Segment::Param(name.to_owned())
                    }
                } else if part.is_empty() {
                    if last {
                        return Err(err(route, "a route must not end with `/` (write `/orders`, not `/orders/`)"));
                    }
                    return Err(err(route, "empty segment `//`"));
                } else if let Some(bad) = part.chars().find(|c| matches!(c, '{' | '}' | '?' | '#' | '*' | ' ')) {
                    return Err(err(
                        route,
                        format!(
                            "segment `{part}` contains `{bad}`; a segment is a literal, `{{name}}` or a final `{{*name}}`"
                        ),
                    ));
                } else {
                    Segment::Literal((*part).to_owned())
                };
                segments.push(segment);
            }
        }
        Ok(Self { source: route.to_owned(), segments })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parsed segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Names of the parameters, in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::CatchAll(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The pattern with parameter names erased: two routes with the same shape match exactly the same paths
    /// (`/hello/{name}` and `/hello/{id}` are the same route).
    pub fn shape(&self) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            out.push('/');
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Param(_) => out.push_str("{}"),
                Segment::CatchAll(_) => out.push_str("{*}"),
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Matches a request path (without query), returning the decoded parameters.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        self.matches_segments(&split_path(path)?)
    }

    /// Matches a path already split with [`split_path`]: a router splits once and tries every route.
    pub fn matches_segments(&self, parts: &[&str]) -> Option<Vec<(String, String)>> {
        // Cheap rejections first: most routes of a large table fail on length or on a literal.
        let catch_all = matches!(self.segments.last(), Some(Segment::CatchAll(_)));
        let fixed = self.segments.len() - usize::from(catch_all);
        if parts.len() < fixed || (!catch_all && parts.len() != fixed) {
            return None;
        }
        for (segment, part) in self.segments.iter().zip(parts) {
            if let Segment::Literal(l) = segment
                && l != part
            {
                return None;
            }
        }
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(_) => {}
                Segment::Param(name) => {
                    let part = parts.get(i).filter(|p| !p.is_empty())?;
                    params.push((name.clone(), percent_decode(part)));
                }
                Segment::CatchAll(name) => {
                    let tail = parts.get(i..).map(|t| t.join("/")).unwrap_or_default();
                    params.push((name.clone(), percent_decode(&tail)));
                }
            }
        }
        Some(params)
    }

    /// Orders patterns from most to least specific: at the first differing segment, a literal beats a parameter,
    /// which beats a catch-all. The router tries routes in this order, so `/hello/world` wins over `/hello/{name}`.
    pub fn specificity_cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn rank(s: Option<&Segment>) -> u8 {
            match s {
                Some(Segment::Literal(_)) => 0,
                Some(Segment::Param(_)) => 1,
                None => 2,
                Some(Segment::CatchAll(_)) => 3,
            }
        }
        let len = self.segments.len().max(other.segments.len());
        for i in 0..len {
            let ordering = rank(self.segments.get(i)).cmp(&rank(other.segments.get(i)));
            if ordering.is_ne() {
                return ordering;
            }
        }
        std::cmp::Ordering::Equal
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Splits a request path into segments; `None` if it does not start with `/`. A trailing slash is tolerated:
/// `/orders/` reaches `/orders`.
pub fn split_path(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    let mut parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
    if parts.last() == Some(&"") {
        parts.pop();
    }
    Some(parts)
}

/// Percent-encodes every byte but the unreserved characters (letters, digits, `-._~`) and, with `keep_slash`, `/`
/// (a key that is a path of segments): what [`percent_decode`] turns back.
pub fn percent_encode(input: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for byte in input.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || (keep_slash && byte == b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; malformed escapes and invalid UTF-8 are kept as they are rather than refused, since a
/// handler can always validate a parameter further.
pub fn percent_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = bytes.get(i + 1..i + 3)
            && let Ok(hex) = std::str::from_utf8(hex)
            && let Ok(value) = u8::from_str_radix(hex, 16)
        {
            out.push(value);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| input.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_round_trips_and_keeps_slashes_only_when_asked() {
        assert_eq!(percent_encode("uploads/a b+c.png", true), "uploads/a%20b%2Bc.png");
        assert_eq!(percent_encode("a/b", false), "a%2Fb");
        for text in ["uploads/a b+c.png", "ünï/cödé?&=#%", ""] {
            assert_eq!(percent_decode(&percent_encode(text, false)), text);
            assert_eq!(percent_decode(&percent_encode(text, true)), text);
        }
    }

    fn p(s: &str) -> RoutePattern {
        RoutePattern::parse(s).unwrap()
    }

    #[test]
    fn literal_and_param_routes_match() {
        assert_eq!(p("/hello/{name}").matches("/hello/ada"), Some(vec![("name".into(), "ada".into())]));
        assert_eq!(p("/hello/{name}").matches("/hello"), None);
        assert_eq!(p("/hello/{name}").matches("/hello/"), None);
        assert_eq!(p("/hello/{name}").matches("/hello/ada/x"), None);
        assert_eq!(p("/orders").matches("/orders"), Some(vec![]));
        assert_eq!(p("/orders").matches("/orders/"), Some(vec![]));
        assert_eq!(p("/").matches("/"), Some(vec![]));
        assert_eq!(p("/").matches("/x"), None);
    }

    #[test]
    fn params_are_percent_decoded() {
        assert_eq!(p("/hello/{name}").matches("/hello/ada%20lovelace").unwrap()[0].1, "ada lovelace");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn catch_all_takes_the_rest() {
        let route = p("/files/{*path}");
        assert_eq!(route.matches("/files/a/b/c").unwrap()[0].1, "a/b/c");
        assert_eq!(route.matches("/files").unwrap()[0].1, "");
        assert_eq!(route.matches("/other"), None);
    }

    #[test]
    fn invalid_routes_say_why() {
        for (route, needle) in [
            ("hello", "must start with `/`"),
            ("/hello/", "must not end with `/`"),
            ("/a//b", "empty segment"),
            ("/a/{}", "must be named"),
            ("/a/{1x}", "must be named"),
            ("/a/{x}/{x}", "appears twice"),
            ("/a/{*x}/b", "must be the last"),
            ("/a/b{x}", "contains `{`"),
            ("/a?b", "contains `?`"),
        ] {
            let e = RoutePattern::parse(route).unwrap_err().to_string();
            assert!(e.contains(needle), "{route}: {e}");
        }
    }

    #[test]
    fn shape_ignores_parameter_names() {
        assert_eq!(p("/hello/{name}").shape(), p("/hello/{id}").shape());
        assert_ne!(p("/hello/{name}").shape(), p("/hello/name").shape());
        assert_eq!(p("/").shape(), "/");
    }

    #[test]
    fn literals_are_more_specific_than_params() {
        let mut routes = [p("/{*all}"), p("/hello/{name}"), p("/hello/world"), p("/hello")];
        routes.sort_by(|a, b| a.specificity_cmp(b));
        let order: Vec<_> = routes.iter().map(|r| r.as_str()).collect();
        assert_eq!(order, ["/hello/world", "/hello/{name}", "/hello", "/{*all}"]);
    }
}
