//! Property tests of what operators and clients feed the host: the config file, the admin API's JSON, arbitrary
//! request paths and the tokens at a JWT route's door. Whatever the input: no panic, no 5xx, and every refusal says
//! why. 64 cases each by default, so CI stays fast; `EDGEFN_PROPERTY_CASES=5000` runs longer (see `docs/src/contributing.md`). The
//! admin API, the router and the JWT front door are exercised on a real host, over real HTTP.

use crate::support::{Host, component_arg, send};
use edgefn_host::auth::{Signer, standard_claims};
use edgefn_host::config::HostConfig;
use proptest::prelude::*;
use serde_json::Value;
use std::sync::OnceLock;

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::start(&[&component_arg("hello"), &component_arg("automation")]))
}

/// Cases per property: `EDGEFN_PROPERTY_CASES`, or 64.
fn cases() -> u32 {
    std::env::var("EDGEFN_PROPERTY_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(64)
}

const JWT_SECRET: &str = "a-property-test-hs256-secret-of-32-bytes";

/// A host serving the `portable` guest, whose `/whoami` only a token of authorizer `main` opens.
fn jwt_host() -> &'static (Host, tempfile::TempDir) {
    static HOST: OnceLock<(Host, tempfile::TempDir)> = OnceLock::new();
    HOST.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("edgefn.toml");
        let text = format!(
            "[components.portable]\nkey_value_stores = [\"default\"]\n[authorizers.main]\n\
             issuer = \"https://issuer.test/\"\naudiences = [\"api\"]\nhs256_secret = \"{JWT_SECRET}\"\n"
        );
        std::fs::write(&config, text).expect("write config");
        let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("portable")]);
        (host, dir)
    })
}

/// A token `main` accepts.
fn valid_token() -> String {
    let claims = standard_claims("https://issuer.test/", "api", "ada", &[], std::time::Duration::from_secs(3600));
    Signer::hmac(JWT_SECRET.as_bytes(), None).sign(&claims).expect("sign")
}

/// Calls `/whoami` with `authorization` and checks it is refused as a client's fault, saying why.
fn refused_at_the_door(authorization: &str) -> Result<(), TestCaseError> {
    let (host, _) = jwt_host();
    let reply = send("GET", &host.url("/whoami"), &[("authorization", authorization)], b"");
    prop_assert_eq!(reply.status, 401, "{:?}: {}", authorization, reply.body);
    prop_assert!(reply.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{:?}", reply.headers);
    prop_assert!(!reply.body.is_empty());
    Ok(())
}

/// Any JSON value, a few levels deep, with the keys the admin API knows among random ones.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[ -~]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        let key = prop_oneof![
            Just("body".to_owned()),
            Just("body_base64".to_owned()),
            Just("messages".to_owned()),
            Just("delay_ms".to_owned()),
            Just("priority".to_owned()),
            Just("ids".to_owned()),
            Just("to".to_owned()),
            Just("wasm_base64".to_owned()),
            Just("config".to_owned()),
            Just("mount".to_owned()),
            Just("canary_percent".to_owned()),
            "[a-z_]{1,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key, inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Posts `body` and checks the answer is not a server error, and that a refusal is a JSON error that says why.
fn post_admin(path: &str, body: &[u8]) -> Result<(), TestCaseError> {
    let host = host();
    let auth = format!("Bearer {}", host.token);
    let reply = send("POST", &format!("{}{path}", host.admin), &[("authorization", &auth)], body);
    prop_assert!(reply.status < 500, "{path}: {} {}", reply.status, reply.body);
    if reply.status >= 400 {
        let error: Value =
            serde_json::from_str(&reply.body).map_err(|e| TestCaseError::fail(format!("{e}: {}", reply.body)))?;
        prop_assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()), "{path}: {}", reply.body);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_jwt_front_door_refuses_any_malformed_or_altered_token(
        header in prop_oneof![
            "[ -~]{0,80}",
            "Bearer [A-Za-z0-9_.=+/-]{0,120}",
            "Bearer [A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{1,60}\\.[A-Za-z0-9_-]{0,60}",
        ],
        altered in any::<prop::sample::Index>(),
    ) {
        // The door opens to a valid token: the refusals below are the token's, not a closed door's.
        let (host, _) = jwt_host();
        let token = valid_token();
        let opened = send("GET", &host.url("/whoami"), &[("authorization", &format!("Bearer {token}"))], b"");
        prop_assert_eq!(opened.status, 200, "{}", opened.body);
        refused_at_the_door(&header)?;
        // The valid token with one character changed (not the last, whose spare bits a decoder may ignore).
        let mut bytes = token.into_bytes();
        let at = altered.index(bytes.len() - 1);
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).expect("ASCII");
        refused_at_the_door(&format!("Bearer {altered}"))?;
    }

    #[test]
    fn any_config_text_loads_or_says_why(text in "[ -~\n]{0,200}") {
        if let Err(error) = HostConfig::parse(&text) {
            let message = format!("{error:#}");
            prop_assert!(!message.is_empty());
        }
    }

    #[test]
    fn any_config_of_the_right_shape_loads_or_names_the_limit(timeout in any::<u64>(), memory in any::<u64>(), lanes in any::<usize>()) {
        let text = format!("[limits]\ntimeout_ms = {}\nmemory_mb = {}\ncpu_lanes = {}\n", timeout % (i64::MAX as u64), memory % (i64::MAX as u64), lanes % (i64::MAX as usize));
        if let Err(error) = HostConfig::parse(&text) {
            let message = format!("{error:#}");
            prop_assert!(message.contains("limits."), "{}", message);
        }
    }

    #[test]
    fn the_admin_api_answers_any_json_without_a_server_error(body in json(), raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let text = body.to_string();
        for path in [
            "/v1/queues/orders/messages",
            "/v1/queues/orders/redrive",
            "/v1/topics/order.created/messages",
            "/v1/functions/echo/invoke",
            "/v1/components/hello/rollback",
            "/v1/components/probe/versions",
        ] {
            post_admin(path, text.as_bytes())?;
            post_admin(path, &raw)?;
        }
    }

    #[test]
    fn any_request_path_routes_or_is_refused_without_a_server_error(path in "/[ -~]{0,60}", method in "(GET|POST|PUT|DELETE|PATCH)") {
        let host = host();
        // Only what a client can send on the wire: the path percent-encoded where it must be.
        let encoded: String = path
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let reply = send(&method, &host.url(&encoded), &[], b"");
        prop_assert!(reply.status < 500 || reply.status == 501, "{method} {encoded}: {} {}", reply.status, reply.body);
    }
}
