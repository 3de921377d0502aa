//! The authorizer's decisions, token by token. The same matrix runs over real HTTP in `tests/state.rs`; these cover
//! key selection and the algorithm rules in detail.

#![allow(clippy::unwrap_used, reason = "tests")]

use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/jwt").join(name)
}

fn config(jwks: Option<PathBuf>, secret: Option<&str>) -> AuthorizerConfig {
    AuthorizerConfig {
        issuer: "https://issuer.test".into(),
        audiences: vec!["todo-api".into(), "other".into()],
        jwks_file: jwks,
        hs256_secret_from_host: None,
        hs256_secret: secret.map(str::to_owned),
        algorithms: Vec::new(),
        leeway_s: Some(0),
    }
}

fn claims(scopes: &[&str]) -> Value {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    standard_claims("https://issuer.test", "todo-api", "ada", &scopes, Duration::from_secs(600))
}

fn signer(file: &str, kid: &str) -> Signer {
    Signer::from_pem_file(&fixture(file), None, Some(kid.into())).unwrap()
}

fn both() -> Authorizer {
    Authorizer::new("main", &config(Some(fixture("jwks-1.json")), Some(SECRET))).unwrap()
}

fn unauthorized(verdict: Verdict) -> String {
    match verdict {
        Verdict::Unauthorized(reason) => reason,
        other => panic!("expected 401, got {other:?}"),
    }
}

#[test]
fn each_algorithm_verifies_with_its_key() {
    let authorizer = both();
    for (file, kid) in [("rsa-1.pem", "rsa-1"), ("ec-1.pem", "ec-1"), ("ed-1.pem", "ed-1")] {
        let token = signer(file, kid).sign(&claims(&[])).unwrap();
        match authorizer.check(Some(&format!("Bearer {token}")), &[]) {
            Verdict::Allowed(claims) => assert_eq!(claims["sub"], "ada"),
            other => panic!("{kid}: {other:?}"),
        }
    }
    let token = Signer::hmac(SECRET.as_bytes(), None).sign(&claims(&[])).unwrap();
    assert!(matches!(authorizer.check(Some(&format!("bearer {token}")), &[]), Verdict::Allowed(_)));
}

#[test]
fn claims_are_checked() {
    let authorizer = both();
    let rsa = signer("rsa-1.pem", "rsa-1");
    let check = |claims: Value| authorizer.check(Some(&format!("Bearer {}", rsa.sign(&claims).unwrap())), &[]);
    let mut wrong_issuer = claims(&[]);
    wrong_issuer["iss"] = json!("https://evil.test");
    assert!(unauthorized(check(wrong_issuer)).contains("Issuer"));
    let mut wrong_audience = claims(&[]);
    wrong_audience["aud"] = json!("someone-else");
    assert!(unauthorized(check(wrong_audience)).contains("Audience"));
    let mut second_audience = claims(&[]);
    second_audience["aud"] = json!(["x", "other"]);
    assert!(matches!(check(second_audience), Verdict::Allowed(_)));
    let mut expired = claims(&[]);
    expired["exp"] = json!(expired["iat"].as_u64().unwrap() - 10);
    assert!(unauthorized(check(expired)).contains("Expired"));
    let mut early = claims(&[]);
    early["nbf"] = json!(early["iat"].as_u64().unwrap() + 600);
    assert!(unauthorized(check(early)).contains("Immature"));
    let mut no_expiry = claims(&[]);
    no_expiry.as_object_mut().unwrap().remove("exp");
    unauthorized(check(no_expiry));
}

#[test]
fn scopes_decide_between_200_and_403() {
    let authorizer = both();
    let rsa = signer("rsa-1.pem", "rsa-1");
    let write = vec!["todos:write".to_owned(), "admin".to_owned()];
    let bearer = |claims: Value| format!("Bearer {}", rsa.sign(&claims).unwrap());
    assert_eq!(authorizer.check(Some(&bearer(claims(&["todos:read"]))), &write), Verdict::Forbidden);
    assert!(matches!(authorizer.check(Some(&bearer(claims(&["todos:read", "admin"]))), &write), Verdict::Allowed(_)));
    let mut scp = claims(&[]);
    scp["scp"] = json!(["todos:write"]);
    assert!(matches!(authorizer.check(Some(&bearer(scp)), &write), Verdict::Allowed(_)));
    // No scopes on the route: any valid token.
    assert!(matches!(authorizer.check(Some(&bearer(claims(&[]))), &[]), Verdict::Allowed(_)));
}

#[test]
fn bad_tokens_are_unauthorized() {
    let authorizer = both();
    unauthorized(authorizer.check(None, &[]));
    unauthorized(authorizer.check(Some("Basic YWRhOnB3"), &[]));
    unauthorized(authorizer.check(Some("Bearer "), &[]));
    unauthorized(authorizer.check(Some("Bearer not.a.jwt"), &[]));
    // A good token with its signature from another key.
    let good = signer("rsa-1.pem", "rsa-1").sign(&claims(&[])).unwrap();
    let forged = signer("rsa-2.pem", "rsa-1").sign(&claims(&[])).unwrap();
    let spliced = format!("{}.{}", good.rsplit_once('.').unwrap().0, forged.rsplit_once('.').unwrap().1);
    unauthorized(authorizer.check(Some(&format!("Bearer {spliced}")), &[]));
    // A kid the JWKS does not hold.
    let unknown = signer("rsa-2.pem", "rsa-2").sign(&claims(&[])).unwrap();
    assert!(unauthorized(authorizer.check(Some(&format!("Bearer {unknown}")), &[])).contains("kid"));
    // A key of the wrong family under a known kid: an EC token naming the RSA kid.
    let confused = signer("ec-1.pem", "rsa-1").sign(&claims(&[])).unwrap();
    unauthorized(authorizer.check(Some(&format!("Bearer {confused}")), &[]));
}

#[test]
fn alg_none_is_refused() {
    let authorizer = both();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&[])).unwrap());
    unauthorized(authorizer.check(Some(&format!("Bearer {header}.{payload}.")), &[]));
}

#[test]
fn an_rsa_public_key_is_never_an_hmac_secret() {
    // The attack: sign HS256 with the RSA public key (public knowledge) and hope the verifier treats the key as a
    // secret. The JWKS authorizer without an HS secret does not accept HS256 at all...
    let jwks_only = Authorizer::new("jwks", &config(Some(fixture("jwks-1.json")), None)).unwrap();
    let public_pem = std::fs::read(fixture("rsa-1.pub.pem")).unwrap();
    let token = Signer::hmac(&public_pem, Some("rsa-1".into())).sign(&claims(&[])).unwrap();
    assert!(unauthorized(jwks_only.check(Some(&format!("Bearer {token}")), &[])).contains("not accepted"));
    // ...and even when HS256 is allowed, the RSA key of that kid is never used for it.
    let mut allowing = config(Some(fixture("jwks-1.json")), None);
    allowing.algorithms = vec!["RS256".into(), "HS256".into()];
    let allowing = Authorizer::new("allowing", &allowing).unwrap();
    unauthorized(allowing.check(Some(&format!("Bearer {token}")), &[]));
}

#[test]
fn config_errors_name_the_problem() {
    let error = |config: AuthorizerConfig| Authorizer::new("orders", &config).unwrap_err().to_string();
    assert!(error(config(None, None)).contains("jwks_file"));
    assert!(error(config(None, Some("short"))).contains("at least 32"));
    let mut no_audience = config(None, Some(SECRET));
    no_audience.audiences.clear();
    assert!(error(no_audience).contains("audiences"));
    let mut none = config(None, Some(SECRET));
    none.algorithms = vec!["none".into()];
    assert!(error(none).contains("unknown algorithm `none`"));
    let missing = error(config(Some(fixture("absent.json")), None));
    assert!(missing.contains("orders") && missing.contains("absent.json"), "{missing}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.json");
    std::fs::write(&empty, r#"{"keys": []}"#).unwrap();
    assert!(error(config(Some(empty), None)).contains("no usable signing key"));
}

#[test]
fn rotation_swaps_keys_and_a_broken_file_keeps_the_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks-1.json"), &jwks).unwrap();
    let authorizer = Authorizer::new("main", &config(Some(jwks.clone()), None)).unwrap();
    let old = format!("Bearer {}", signer("rsa-1.pem", "rsa-1").sign(&claims(&[])).unwrap());
    let new = format!("Bearer {}", signer("rsa-2.pem", "rsa-2").sign(&claims(&[])).unwrap());
    assert!(matches!(authorizer.check(Some(&old), &[]), Verdict::Allowed(_)));
    unauthorized(authorizer.check(Some(&new), &[]));

    // Both sets listed: both valid.
    let mut both: Value = serde_json::from_str(&std::fs::read_to_string(fixture("jwks-1.json")).unwrap()).unwrap();
    let second: Value = serde_json::from_str(&std::fs::read_to_string(fixture("jwks-2.json")).unwrap()).unwrap();
    both["keys"].as_array_mut().unwrap().extend(second["keys"].as_array().unwrap().iter().cloned());
    std::fs::write(&jwks, both.to_string()).unwrap();
    assert_eq!(authorizer.reload().unwrap(), 4);
    assert!(matches!(authorizer.check(Some(&old), &[]), Verdict::Allowed(_)));
    assert!(matches!(authorizer.check(Some(&new), &[]), Verdict::Allowed(_)));

    // A broken file: the keys loaded before stay.
    std::fs::write(&jwks, "{\"keys\": [").unwrap();
    assert!(authorizer.reload().is_err());
    assert!(matches!(authorizer.check(Some(&new), &[]), Verdict::Allowed(_)));

    // The old key retired.
    std::fs::copy(fixture("jwks-2.json"), &jwks).unwrap();
    authorizer.reload().unwrap();
    unauthorized(authorizer.check(Some(&old), &[]));
    assert!(matches!(authorizer.check(Some(&new), &[]), Verdict::Allowed(_)));
}

#[test]
fn a_token_verified_once_is_remembered_and_still_scoped() {
    let authorizer = both();
    let token = format!("Bearer {}", signer("rsa-1.pem", "rsa-1").sign(&claims(&["todos:read"])).unwrap());
    let write = ["todos:write".to_owned()];
    let read = ["todos:read".to_owned()];
    for _ in 0..3 {
        assert!(matches!(authorizer.check(Some(&token), &read), Verdict::Allowed(_)));
        assert_eq!(authorizer.check(Some(&token), &write), Verdict::Forbidden);
    }
    assert_eq!(authorizer.keys.load().verified.len(), 1, "verified once, then remembered");
    // A bad token is never remembered.
    let tampered = format!("{}x", token.trim_end_matches(|c: char| c != '.'));
    unauthorized(authorizer.check(Some(&tampered), &[]));
    assert_eq!(authorizer.keys.load().verified.len(), 1);
}
