//! A route table: (method, route pattern) -> value, with conflict detection and 404/405 semantics.

use crate::route::{RouteError, RoutePattern};

/// A method a route answers: one method (upper case), or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodFilter {
    Any,
    Only(String),
}

impl MethodFilter {
    /// Parses a method as written in a trigger: `"GET"`, `"post"`, or `"*"` for any.
    pub fn parse(method: &str) -> Result<Self, String> {
        if method == "*" {
            return Ok(Self::Any);
        }
        let upper = method.to_ascii_uppercase();
        if KNOWN_METHODS.contains(&upper.as_str()) {
            Ok(Self::Only(upper))
        } else {
            Err(format!("unknown HTTP method `{method}`; expected one of {}, or `*` for any", KNOWN_METHODS.join(", ")))
        }
    }

    fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Only(a), Self::Only(b)) => a == b,
            _ => true,
        }
    }

    fn accepts(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(m) => m.eq_ignore_ascii_case(method),
        }
    }
}

/// The methods a route may name.
pub const KNOWN_METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// One entry of the table.
#[derive(Debug, Clone)]
pub struct Route<T> {
    pub pattern: RoutePattern,
    pub method: MethodFilter,
    pub value: T,
}

/// Two entries that would answer the same requests.
#[derive(Debug, Clone)]
pub struct Conflict<'a, T> {
    pub existing: &'a Route<T>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup<'a, T> {
    Found {
        route: &'a Route<T>,
        params: Vec<(String, String)>,
    },
    /// The path exists, but not for this method; `allowed` lists the methods that are.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

/// A route table kept sorted from most to least specific pattern.
#[derive(Debug, Clone)]
pub struct Router<T> {
    routes: Vec<Route<T>>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<T> Router<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every route, most specific first.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }

    /// The value of the route at `index` of [`Router::routes`], to change it in place.
    pub fn value_mut(&mut self, index: usize) -> &mut T {
        &mut self.routes[index].value
    }

    /// The route that already answers what `pattern` + `method` would, if any.
    pub fn conflict(&self, pattern: &RoutePattern, method: &MethodFilter) -> Option<Conflict<'_, T>> {
        let shape = pattern.shape();
        self.routes
            .iter()
            .find(|r| r.pattern.shape() == shape && r.method.overlaps(method))
            .map(|existing| Conflict { existing })
    }

    /// Adds a route, refusing one that conflicts with an existing route.
    pub fn insert(&mut self, pattern: RoutePattern, method: MethodFilter, value: T) -> Result<(), Conflict<'_, T>> {
        if let Some(index) = self.conflict(&pattern, &method).map(|c| self.index_of(c.existing)) {
            return Err(Conflict { existing: &self.routes[index] });
        }
        let at = self.routes.partition_point(|r| r.pattern.specificity_cmp(&pattern) != std::cmp::Ordering::Greater);
        self.routes.insert(at, Route { pattern, method, value });
        Ok(())
    }

    fn index_of(&self, route: &Route<T>) -> usize {
        self.routes.iter().position(|r| std::ptr::eq(r, route)).expect("a conflict points into this router")
    }

    /// Parses `route` and `method` and inserts them; errors are strings fit for a user.
    pub fn insert_str(&mut self, route: &str, method: &str, value: T) -> Result<(), String>
    where
        T: std::fmt::Debug,
    {
        let pattern = RoutePattern::parse(route).map_err(|e: RouteError| e.to_string())?;
        let method = MethodFilter::parse(method)?;
        self.insert(pattern, method, value).map_err(|c| {
            format!("route `{route}` is already claimed by `{}` ({:?})", c.existing.pattern, c.existing.value)
        })
    }

    /// Finds the most specific route for a request.
    /// A `HEAD` with no route of its own goes to the `GET` route of its path, as RFC 9110 (9.3.2) has servers do.
    pub fn lookup(&self, method: &str, path: &str) -> Lookup<'_, T> {
        let found = self.lookup_method(method, path);
        if method == "HEAD"
            && !matches!(found, Lookup::Found { .. })
            && let get @ Lookup::Found { .. } = self.lookup_method("GET", path)
        {
            return get;
        }
        found
    }

    fn lookup_method(&self, method: &str, path: &str) -> Lookup<'_, T> {
        let Some(parts) = crate::route::split_path(path) else { return Lookup::NotFound };
        let mut allowed: Vec<String> = Vec::new();
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = route.pattern.matches_segments(&parts) else { continue };
            if route.method.accepts(method) {
                return Lookup::Found { route, params };
            }
            path_matched = true;
            if let MethodFilter::Only(m) = &route.method
                && !allowed.contains(m)
            {
                allowed.push(m.clone());
            }
        }
        if path_matched {
            allowed.sort();
            Lookup::MethodNotAllowed { allowed }
        } else {
            Lookup::NotFound
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router<usize> {
        let mut r = Router::new();
        for (i, (route, method)) in routes.iter().enumerate() {
            r.insert_str(route, method, i).unwrap();
        }
        r
    }

    fn found(r: &Router<usize>, method: &str, path: &str) -> Option<usize> {
        match r.lookup(method, path) {
            Lookup::Found { route, .. } => Some(route.value),
            _ => None,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let r = router(&[("/hello/{name}", "GET"), ("/hello/world", "GET"), ("/{*rest}", "*")]);
        assert_eq!(found(&r, "GET", "/hello/world"), Some(1));
        assert_eq!(found(&r, "GET", "/hello/ada"), Some(0));
        assert_eq!(found(&r, "GET", "/elsewhere"), Some(2));
    }

    #[test]
    fn a_head_without_its_own_route_goes_to_the_get_route() {
        let r = router(&[("/a", "GET"), ("/b", "POST"), ("/c", "GET"), ("/c", "HEAD")]);
        assert_eq!(found(&r, "HEAD", "/a"), Some(0));
        assert_eq!(found(&r, "HEAD", "/b"), None, "POST answers no HEAD");
        assert_eq!(found(&r, "HEAD", "/c"), Some(3), "a HEAD route of its own wins");
    }

    #[test]
    fn wrong_method_is_405_with_allowed_methods() {
        let r = router(&[("/orders", "POST"), ("/orders", "PUT"), ("/hello/{n}", "GET")]);
        match r.lookup("GET", "/orders") {
            Lookup::MethodNotAllowed { allowed } => assert_eq!(allowed, ["POST", "PUT"]),
            other => panic!("expected 405, got {other:?}"),
        }
        assert!(matches!(r.lookup("GET", "/nope"), Lookup::NotFound));
        assert_eq!(found(&r, "post", "/orders"), Some(0));
    }

    #[test]
    fn conflicts_are_refused_and_named() {
        let mut r = router(&[("/hello/{name}", "GET")]);
        let e = r.insert_str("/hello/{id}", "GET", 7).unwrap_err();
        assert!(e.contains("/hello/{name}"), "{e}");
        assert!(r.insert_str("/hello/{id}", "*", 7).is_err());
        r.insert_str("/hello/{id}", "POST", 7).unwrap();
    }

    #[test]
    fn unknown_method_is_refused() {
        assert!(MethodFilter::parse("FETCH").unwrap_err().contains("expected one of GET"));
        assert_eq!(MethodFilter::parse("post").unwrap(), MethodFilter::Only("POST".into()));
    }
}
