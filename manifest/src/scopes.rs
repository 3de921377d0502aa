//! Which scopes a verified token grants, and whether that is enough for a route: the host's authorizer decides a
//! request with this, and the SDK's native test dispatcher decides the same request with the same code, so a
//! scope rule that passes a unit test passes on a host.

use serde_json::Value;
use std::collections::BTreeSet;

/// The scopes a token's claims grant: `scope` (space-separated, RFC 8693) and `scp` (a list, or space-separated).
pub fn granted(claims: &Value) -> BTreeSet<&str> {
    let mut scopes = BTreeSet::new();
    for claim in ["scope", "scp"] {
        match claims.get(claim) {
            Some(Value::String(text)) => scopes.extend(text.split_whitespace()),
            Some(Value::Array(items)) => scopes.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    scopes
}

/// Whether `claims` may call a route that needs one of `required` (none listed: any verified token may).
pub fn allows<S: AsRef<str>>(claims: &Value, required: &[S]) -> bool {
    if required.is_empty() {
        return true;
    }
    let granted = granted(claims);
    required.iter().any(|scope| granted.contains(scope.as_ref()))
}

/// The `WWW-Authenticate` challenge of a 403 for a token without the route's scopes (RFC 6750, section 3).
pub fn insufficient_scope_challenge<S: AsRef<str>>(required: &[S]) -> String {
    let listed: Vec<&str> = required.iter().map(AsRef::as_ref).collect();
    format!(r#"Bearer error="insufficient_scope", scope="{}""#, listed.join(" "))
}

/// The message of that 403, the same from the host and from a native test.
pub const INSUFFICIENT_SCOPE: &str = "the token does not grant the scope this route needs";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scope_and_scp_both_grant_and_any_listed_scope_is_enough() {
        let required = ["todos:read", "todos:write"];
        assert!(allows(&json!({"scope": "profile todos:write"}), &required));
        assert!(allows(&json!({"scp": ["todos:read"]}), &required));
        assert!(allows(&json!({"scp": "a todos:read"}), &required));
        assert!(!allows(&json!({"scope": "todos:admin"}), &required));
        assert!(!allows(&json!({}), &required));
        assert!(!allows(&json!({"scope": 7}), &required));
        assert!(allows(&json!({}), &[] as &[&str]));
        assert_eq!(
            insufficient_scope_challenge(&required),
            r#"Bearer error="insufficient_scope", scope="todos:read todos:write""#
        );
    }
}
