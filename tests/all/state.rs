//! State and identity on a real host: JWT-protected routes (the whole matrix of bad tokens, scopes, key rotation
//! without a restart, failing closed) and the key-value store (grants, expiry, compare-and-swap and increments
//! under contention, limits, persistence across a crash, the CLI, and the portable subset under `wasmtime serve`).

use crate::support::{Host, Reply, WasmtimeServe, component, component_arg, poll_until, send, workspace};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use edgefn_host::auth::{Signer, standard_claims};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const ISSUER: &str = "https://issuer.test/";
const SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!";
const INVALID_TOKEN: &str = r#"Bearer error="invalid_token""#;

fn fixture(name: &str) -> PathBuf {
    workspace().join("tests/fixtures/jwt").join(name)
}

/// A config for the todo-api with authorizer `todo` over `jwks.json` next to it (and an HS256 secret), written
/// into `dir`; `authorizer: false` leaves the authorizer out.
fn todo_config(dir: &Path, authorizer: bool) -> String {
    let mut text = "[components.todo-api]\nkey_value_stores = [\"todos\"]\n".to_owned();
    if authorizer {
        // A relative JWKS path: found next to the config, wherever the host runs.
        text.push_str(&format!(
            "[authorizers.todo]\nissuer = \"{ISSUER}\"\naudiences = [\"todo-api\"]\njwks_file = \"jwks.json\"\n\
             hs256_secret = \"{SECRET}\"\nleeway_s = 0\n"
        ));
        if !dir.join("jwks.json").exists() {
            std::fs::copy(fixture("jwks-1.json"), dir.join("jwks.json")).expect("copy the JWKS");
        }
    }
    let path = dir.join("edgefn.toml");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8 path").to_owned()
}

fn claims(sub: &str, scopes: &[&str]) -> Value {
    let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
    standard_claims(ISSUER, "todo-api", sub, &scopes, Duration::from_secs(600))
}

fn signed(key_file: &str, kid: &str, claims: &Value) -> String {
    let signer = Signer::from_pem_file(&fixture(key_file), None, Some(kid.into())).expect("test key");
    format!("Bearer {}", signer.sign(claims).expect("sign"))
}

fn call(host: &Host, method: &str, path: &str, authorization: Option<&str>, body: &str) -> Reply {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = authorization {
        headers.push(("authorization", value));
    }
    send(method, &host.url(path), &headers, body.as_bytes())
}

/// The keys of a store, through the admin API.
fn store_keys(host: &Host, store: &str) -> Vec<String> {
    let reply = host.admin("GET", &format!("/v1/kv/{store}/keys?limit=1000"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    serde_json::from_value(reply.json()["keys"].clone()).expect("keys")
}

#[test]
fn the_jwt_matrix_on_a_real_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::start(&["--config", &todo_config(dir.path(), true), &component_arg("todo_api")]);
    let good = claims("ada", &["todos:write"]);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut claims = good.clone();
        change(&mut claims);
        signed("rsa-1.pem", "rsa-1", &claims)
    };
    let now = good["iat"].as_u64().expect("iat");
    let spliced = {
        let real = signed("rsa-1.pem", "rsa-1", &good);
        let forged = signed("rsa-2.pem", "rsa-1", &good);
        format!("{}.{}", real.rsplit_once('.').expect("jwt").0, forged.rsplit_once('.').expect("jwt").1)
    };
    let alg_none = format!(
        "Bearer {}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    // HS256 "signed" with the RSA public key, which anyone can read, under the RSA key's kid.
    let public_pem = std::fs::read(fixture("rsa-1.pub.pem")).expect("public key");
    let confused = format!("Bearer {}", Signer::hmac(&public_pem, Some("rsa-1".into())).sign(&good).expect("sign"));
    let refused: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "no bearer token"),
        ("not bearer", Some("Basic YWRhOnB3".into()), "no bearer token"),
        ("malformed", Some("Bearer not-a-jwt".into()), "malformed token"),
        ("bad signature", Some(spliced), "InvalidSignature"),
        ("unknown kid", Some(signed("rsa-2.pem", "rsa-2", &good)), "no RS256 key has kid `rsa-2`"),
        ("wrong iss", Some(with(&|c| c["iss"] = json!("https://evil.test/"))), "InvalidIssuer"),
        ("wrong aud", Some(with(&|c| c["aud"] = json!("other-api"))), "InvalidAudience"),
        ("expired", Some(with(&|c| c["exp"] = json!(now - 5))), "ExpiredSignature"),
        ("not yet valid", Some(with(&|c| c["nbf"] = json!(now + 600))), "ImmatureSignature"),
        ("alg none", Some(alg_none), "malformed token"),
        ("HS/RS confusion", Some(confused), "InvalidSignature"),
    ];
    for (case, authorization, logged_reason) in &refused {
        let reply = call(&host, "POST", "/todos", authorization.as_deref(), r#"{"title":"sneaky"}"#);
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(reply.header("www-authenticate"), Some(INVALID_TOKEN), "{case}");
        // The caller learns nothing about which check failed; the operator's log says.
        assert_eq!(reply.json()["error"], "a valid bearer token is required", "{case}");
        let line = host.request_log_line(&reply);
        assert!(line.contains("status=401") && line.contains("start=-"), "{case}: no instance may start: {line}");
        let id = reply.header("x-request-id").expect("request id");
        let logs = host.wait_for_log(logged_reason);
        assert!(
            logs.lines().any(|l| l.contains(id) && l.contains(logged_reason)),
            "{case}: the log should say `{logged_reason}` for request {id}:\n{logs}"
        );
    }
    assert_eq!(store_keys(&host, "todos"), Vec::<String>::new(), "a refused request wrote something");

    // Valid, but only allowed to read: 403 on a write, with the scope it needs.
    let reader = signed("ec-1.pem", "ec-1", &claims("ada", &["todos:read"]));
    let reply = call(&host, "POST", "/todos", Some(&reader), r#"{"title":"x"}"#);
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.header("www-authenticate"), Some(r#"Bearer error="insufficient_scope", scope="todos:write""#));
    assert_eq!(call(&host, "GET", "/todos", Some(&reader), "").json()["todos"], json!([]));

    // Valid: the function runs and sees the claims, whatever a client forges next to the token.
    let writer = signed("rsa-1.pem", "rsa-1", &good);
    let created = call(&host, "POST", "/todos", Some(&writer), r#"{"title":"buy milk"}"#);
    assert_eq!(created.status, 201, "{}", created.body);
    let forged_claims = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory"}).to_string());
    let forged = [("authorization", writer.as_str()), ("x-edgefn-claims", &forged_claims), ("x-edgefn-auth", "x")];
    let me = send("GET", &host.url("/me"), &forged, b"");
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!((me.json()["sub"].clone(), me.json()["iss"].clone()), (json!("ada"), json!(ISSUER)));
    let forged_only = send("GET", &host.url("/me"), &forged[1..], b"");
    assert_eq!(forged_only.status, 401, "forged headers alone must not pass: {}", forged_only.body);

    // Every algorithm the authorizer allows.
    let hs256 = format!("Bearer {}", Signer::hmac(SECRET.as_bytes(), None).sign(&good).expect("sign"));
    for authorization in [signed("ec-1.pem", "ec-1", &good), signed("ed-1.pem", "ed-1", &good), hs256] {
        let reply = call(&host, "GET", "/me", Some(&authorization), "");
        assert_eq!(reply.status, 200, "{authorization}: {}", reply.body);
    }
}

/// `examples/todo-api/access.json`, the table of who may do what that the example's native unit test also runs:
/// with real signed tokens on a real host, every status the table lists.
#[test]
fn the_access_table_holds_on_a_host_as_in_native_tests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::start(&["--config", &todo_config(dir.path(), true), &component_arg("todo_api")]);
    // The start-up listing shows each route's protection, scopes and all.
    for guard in ["/me  (auth: todo, any scope)", "/todos  (auth: todo, scopes: todos:read | todos:write)"] {
        assert!(host.banner.contains(guard), "no `{guard}` in:\n{}", host.banner);
    }
    let table = std::fs::read_to_string(workspace().join("examples/todo-api/access.json")).expect("the table");
    let table: Vec<Value> = serde_json::from_str(&table).expect("the table parses");
    assert!(table.len() >= 10, "the table lost its rows");
    for row in &table {
        let case = row["case"].as_str().expect("case");
        let authorization = row["token"].as_object().map(|token| {
            let mut claims = claims("table", &[]);
            claims.as_object_mut().expect("claims object").extend(token.clone());
            signed("rsa-1.pem", "rsa-1", &claims)
        });
        let body = row.get("body").map(Value::to_string).unwrap_or_default();
        let method = row["method"].as_str().expect("method");
        let reply = call(&host, method, row["path"].as_str().expect("path"), authorization.as_deref(), &body);
        assert_eq!(u64::from(reply.status), row["status"].as_u64().expect("status"), "{case}: {}", reply.body);
        if let Some(error) = row.get("error").and_then(Value::as_str) {
            assert!(reply.body.contains(error), "{case}: {}", reply.body);
        }
    }
}

#[test]
fn jwks_rotation_needs_no_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let host = Host::start(&["--config", &todo_config(dir.path(), true), &component_arg("todo_api")]);
    let jwks = dir.path().join("jwks.json");
    let old_key = signed("rsa-1.pem", "rsa-1", &claims("ada", &[]));
    let new_key = signed("rsa-2.pem", "rsa-2", &claims("ada", &[]));
    let status = |authorization: &str| call(&host, "GET", "/me", Some(authorization), "").status;
    assert_eq!((status(&old_key), status(&new_key)), (200, 401));

    // The identity provider publishes its next key next to the current one: the host picks the file up by itself.
    let mut both: Value = serde_json::from_slice(&std::fs::read(fixture("jwks-1.json")).expect("jwks")).expect("json");
    let next: Value = serde_json::from_slice(&std::fs::read(fixture("jwks-2.json")).expect("jwks")).expect("json");
    both["keys"].as_array_mut().expect("keys").extend(next["keys"].as_array().expect("keys").iter().cloned());
    std::fs::write(&jwks, both.to_string()).expect("write jwks");
    poll_until("the new key to be accepted", Duration::from_secs(15), || status(&new_key) == 200);
    assert_eq!(status(&old_key), 200, "both keys are valid while both are listed");

    // The old key is retired; the admin API reloads now rather than within the second.
    std::fs::copy(fixture("jwks-2.json"), &jwks).expect("write jwks");
    let reloaded = host.admin("POST", "/v1/authorizers/todo/reload", None);
    assert_eq!((reloaded.status, reloaded.json()["keys"].clone()), (200, json!(2)), "{}", reloaded.body);
    assert_eq!((status(&old_key), status(&new_key)), (401, 200));

    // A broken file is refused, and the keys loaded before stay in use.
    std::fs::write(&jwks, "{\"keys\": [").expect("write jwks");
    let broken = host.admin("POST", "/v1/authorizers/todo/reload", None);
    assert_eq!(broken.status, 422, "{}", broken.body);
    assert!(broken.json()["error"].as_str().unwrap_or_default().contains("jwks.json"), "{}", broken.body);
    assert_eq!(status(&new_key), 200);
    assert_eq!(host.admin("POST", "/v1/authorizers/nope/reload", None).status, 404);
}

#[test]
fn protected_routes_fail_closed() {
    // A host without the authorizer refuses the component, at start and at deploy, and never serves it open.
    let dir = tempfile::tempdir().expect("temp dir");
    let without = todo_config(dir.path(), false);
    let (_, output) = Host::try_start(&["--config", &without, &component_arg("todo_api")], &[])
        .err()
        .expect("a host without the authorizer must refuse the todo-api");
    assert!(output.contains("authorizer `todo`"), "{output}");
    let host = Host::start(&["--config", &without]);
    let deploy = host.cli(&["deploy", &component_arg("todo_api")]);
    assert!(!deploy.success);
    assert!(deploy.stderr.contains("protected by authorizer `todo`, which this host does not have"), "{deploy:?}");
    assert_eq!(call(&host, "GET", "/me", None, "").status, 404);
    drop(host);

    // A host restarted without it does not bring the component back.
    let with_dir = tempfile::tempdir().expect("temp dir");
    let data = tempfile::tempdir().expect("data dir");
    let with = todo_config(with_dir.path(), true);
    let host = Host::start_in(data.path(), &["--config", &with, &component_arg("todo_api")]);
    assert_eq!(call(&host, "GET", "/me", None, "").status, 401);
    drop(host);
    let host = Host::start_in(data.path(), &["--config", &without]);
    assert_eq!(call(&host, "GET", "/me", None, "").status, 404, "restored without its authorizer");
    // The host's own log line (written by its log thread, after what `up` prints itself) names the authorizer.
    let logs = host.wait_for_log("could not restore a live component");
    assert!(
        logs.lines()
            .any(|line| line.contains("could not restore a live component") && line.contains("authorizer `todo`")),
        "{logs}"
    );
    drop(host);
}

#[test]
fn the_todo_api_walkthrough_with_a_minted_token() {
    // Exactly as the book (`docs/src/examples.md`): the examples' config, a token from `edgefn token mint`.
    let config = workspace().join("examples/edgefn.toml");
    let config = config.to_str().expect("utf-8 path");
    let host = Host::start(&["--config", config, &component_arg("todo_api")]);
    let mint = |sub: &str| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
            .args(["token", "mint", "--config", config, "--authorizer", "todo", "--sub", sub])
            .args(["--scope", "todos:write", "--ttl", "15m"])
            .output()
            .expect("run edgefn token mint");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        format!("Bearer {}", String::from_utf8_lossy(&output.stdout).trim())
    };
    let (ada, bob) = (mint("ada"), mint("bob"));
    let post = |who: &str, path: &str, body: &str, key: Option<&str>| {
        let mut headers = vec![("authorization", who), ("content-type", "application/json")];
        if let Some(key) = key {
            headers.push(("idempotency-key", key));
        }
        send("POST", &host.url(path), &headers, body.as_bytes())
    };
    let list = |who: &str| call(&host, "GET", "/todos", Some(who), "").json()["todos"].clone();

    let first = post(&ada, "/todos", r#"{"title":"buy milk"}"#, Some("retry-1"));
    assert_eq!(first.status, 201, "{}", first.body);
    // A client retrying after a lost response gets the same todo, not a second one.
    let retried = post(&ada, "/todos", r#"{"title":"buy milk"}"#, Some("retry-1"));
    assert_eq!((retried.status, retried.header("idempotent-replayed")), (200, Some("true")));
    assert_eq!(retried.json(), first.json());
    post(&ada, "/todos", r#"{"title":"write tests"}"#, None);
    assert_eq!(list(&ada).as_array().map(Vec::len), Some(2));
    assert_eq!(list(&bob), json!([]), "bob sees none of ada's todos");

    let id = first.json()["id"].as_u64().expect("id");
    assert_eq!(post(&bob, &format!("/todos/{id}/complete"), "", None).status, 404, "bob cannot touch ada's todo");
    let done = post(&ada, &format!("/todos/{id}/complete"), "", None);
    assert_eq!((done.status, done.json()["done"].clone()), (200, json!(true)));
    let deleted = send("DELETE", &host.url(&format!("/todos/{id}")), &[("authorization", &ada)], b"");
    assert_eq!(deleted.status, 204);
    assert_eq!(list(&ada).as_array().map(Vec::len), Some(1));
    // The idempotency key is stored with its expiry, and per user.
    assert!(store_keys(&host, "todos").iter().any(|k| k.starts_with("idem:ada:")));

    let unknown = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["token", "mint", "--config", config, "--authorizer", "nope", "--sub", "ada"])
        .output()
        .expect("run edgefn token mint");
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("defines no authorizer `nope` (it defines: gallery, todo)"), "{stderr}");
}

// --- the key-value store ---

/// Runs one operation of the kv-probe deployed as `component`; `Err` carries the admin API's error text.
fn kv(host: &Host, component: &str, op: Value) -> Result<Value, String> {
    let reply = host.admin("POST", &format!("/v1/functions/{component}%2Fkv/invoke"), Some(op));
    if reply.status == 200 { Ok(reply.json()["result"].clone()) } else { Err(reply.body) }
}

fn kv_ok(host: &Host, component: &str, op: Value) -> Value {
    kv(host, component, op.clone()).unwrap_or_else(|error| panic!("{op}: {error}\n{}", host.logs()))
}

/// A host with the kv-probe deployed as `kv-a` (stores `shared` and `a`) and `kv-b` (`shared` and `b`).
fn kv_host(limits: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    std::fs::write(&config, format!("[limits]\n{limits}\n")).expect("config");
    let host = Host::start(&["--config", config.to_str().expect("utf-8")]);
    for (name, own) in [("kv-a", "a"), ("kv-b", "b")] {
        host.cli_ok(&["deploy", &component_arg("kv_probe"), "--name", name, "--kv-store", "shared", "--kv-store", own]);
    }
    (dir, host)
}

#[test]
fn components_see_only_the_stores_they_were_granted() {
    let (_dir, host) = kv_host("");
    kv_ok(&host, "kv-a", json!({"op": "set", "store": "a", "key": "secret", "value": "a's"}));
    let denied = kv(&host, "kv-b", json!({"op": "get", "store": "a", "key": "secret"})).expect_err("b read a's store");
    assert!(denied.contains("may not open key-value store `a`"), "{denied}");
    assert!(kv(&host, "kv-a", json!({"op": "set", "store": "b", "key": "k", "value": "v"})).is_err());
    assert_eq!(store_keys(&host, "b"), Vec::<String>::new(), "the refused write wrote nothing");
    // A store granted to both is shared.
    kv_ok(&host, "kv-b", json!({"op": "set", "store": "shared", "key": "note", "value": "from b"}));
    assert_eq!(kv_ok(&host, "kv-a", json!({"op": "get", "store": "shared", "key": "note"}))["value"], "from b");
    assert_eq!(store_keys(&host, "a"), ["secret"]);
}

#[test]
fn expired_keys_are_invisible_at_once() {
    let (_dir, host) = kv_host("");
    let get = |key: &str| kv_ok(&host, "kv-a", json!({"op": "get", "store": "a", "key": key}))["value"].clone();
    kv_ok(&host, "kv-a", json!({"op": "set", "store": "a", "key": "session", "value": "ada", "ttl_ms": 3000}));
    kv_ok(&host, "kv-a", json!({"op": "set", "store": "a", "key": "profile", "value": "ada"}));
    assert_eq!(get("session"), "ada");
    poll_until("the session to expire", Duration::from_secs(20), || get("session").is_null());
    assert_eq!(kv_ok(&host, "kv-a", json!({"op": "exists", "store": "a", "key": "session"}))["exists"], false);
    let listed = kv_ok(&host, "kv-a", json!({"op": "list", "store": "a", "prefix": "", "cursor": null, "limit": 10}));
    assert_eq!(listed["keys"], json!(["profile"]));
    assert_eq!(host.admin("GET", "/v1/kv/a/keys/session", None).status, 404);
}

#[test]
fn increments_and_compare_and_swap_lose_nothing_under_contention() {
    let (_dir, host) = kv_host("");
    let host = &host;
    // 1,000 increments from 16 clients at once, each its own invocation: every one counts, once.
    let seen: Vec<i64> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|client| {
                scope.spawn(move || {
                    (0..1000)
                        .filter(|n| n % 16 == client)
                        .map(|_| {
                            let op = json!({"op": "incr", "store": "shared", "key": "hits", "delta": 1});
                            kv_ok(host, "kv-a", op)["value"].as_i64().expect("value")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients.into_iter().flat_map(|c| c.join().expect("client")).collect()
    });
    assert_eq!(seen.iter().copied().collect::<BTreeSet<_>>(), (1..=1000).collect::<BTreeSet<_>>());
    assert_eq!(kv_ok(host, "kv-b", json!({"op": "get", "store": "shared", "key": "hits"}))["value"], "1000");

    // 80 read-modify-writes of one list from 16 clients, through both components: none is lost.
    let attempts: u64 = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..16)
            .map(|client| {
                scope.spawn(move || {
                    (0..5)
                        .map(|n| {
                            let component = if client % 2 == 0 { "kv-a" } else { "kv-b" };
                            let item = format!("{client}-{n}");
                            let op = json!({"op": "cas_append", "store": "shared", "key": "list", "item": item});
                            kv_ok(host, component, op)["attempts"].as_u64().expect("attempts")
                        })
                        .sum::<u64>()
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().expect("client")).sum()
    });
    let list = kv_ok(host, "kv-a", json!({"op": "get", "store": "shared", "key": "list"}))["value"].clone();
    let items: Vec<String> = serde_json::from_str(list.as_str().expect("a list")).expect("json list");
    let expected: BTreeSet<String> = (0..16).flat_map(|c| (0..5).map(move |n| format!("{c}-{n}"))).collect();
    assert_eq!(items.len(), 80, "{items:?}");
    assert_eq!(items.into_iter().collect::<BTreeSet<_>>(), expected);
    println!("80 compare-and-swap appends took {attempts} attempts");
}

#[test]
fn limits_refuse_with_a_reason_and_write_nothing() {
    let (_dir, host) = kv_host("kv_max_keys = 10\nkv_max_value_bytes = 64\nkv_max_key_bytes = 32");
    let filled =
        kv_ok(&host, "kv-a", json!({"op": "fill", "store": "a", "prefix": "k", "count": 15, "value_bytes": 8}));
    assert_eq!(filled["written"], 10);
    let error = filled["error"].as_str().expect("a refusal");
    assert!(error.contains("store `a` is full") && error.contains("10 keys"), "{error}");
    // Another store has its own room.
    let other =
        kv_ok(&host, "kv-a", json!({"op": "fill", "store": "shared", "prefix": "k", "count": 3, "value_bytes": 8}));
    assert_eq!(other["written"], 3);

    let too_big = "x".repeat(65);
    let refused = kv(&host, "kv-b", json!({"op": "set", "store": "b", "key": "big", "value": too_big})).unwrap_err();
    assert!(refused.contains("65 bytes; the limit is 64"), "{refused}");
    let long_key = "k".repeat(33);
    let refused = kv(&host, "kv-b", json!({"op": "set", "store": "b", "key": long_key, "value": "v"})).unwrap_err();
    assert!(refused.contains("33 bytes; the limit is 32"), "{refused}");
    assert_eq!(store_keys(&host, "b"), Vec::<String>::new());
    // The admin API answers with the same reasons and statuses.
    let reply = send(
        "PUT",
        &format!("{}/v1/kv/b/keys/big", host.admin),
        &[("authorization", &format!("Bearer {}", host.token))],
        too_big.as_bytes(),
    );
    assert_eq!(reply.status, 413, "{}", reply.body);
}

#[test]
fn the_store_survives_a_crash_and_the_cli_reads_it() {
    let data = tempfile::tempdir().expect("data dir");
    let host = Host::start_in(data.path(), &[]);
    host.cli_ok(&["deploy", &component_arg("kv_probe"), "--name", "kv-a", "--kv-store", "a"]);
    kv_ok(&host, "kv-a", json!({"op": "set", "store": "a", "key": "user:ada", "value": "Ada"}));
    kv_ok(&host, "kv-a", json!({"op": "incr", "store": "a", "key": "visits", "delta": 41}));
    host.cli_ok(&["kv", "set", "a", "user:bob", "Bob"]);
    host.kill();

    let host = Host::start_in(data.path(), &[]);
    assert_eq!(kv_ok(&host, "kv-a", json!({"op": "get", "store": "a", "key": "user:ada"}))["value"], "Ada");
    assert_eq!(kv_ok(&host, "kv-a", json!({"op": "incr", "store": "a", "key": "visits", "delta": 1}))["value"], 42);
    assert_eq!(host.cli_ok(&["kv", "get", "a", "user:bob"]).trim(), "Bob");
    assert_eq!(
        host.cli_ok(&["kv", "list", "a", "--prefix", "user:"]).lines().collect::<Vec<_>>(),
        ["user:ada", "user:bob"]
    );
    host.cli_ok(&["kv", "delete", "a", "user:bob"]);
    let gone = host.cli(&["kv", "get", "a", "user:bob"]);
    assert!(!gone.success && gone.stderr.contains("404"), "{gone:?}");
}

/// The same component answers the same under `wasmtime serve` and on edgefn where it uses only the standard
/// `wasi:keyvalue` subset; and its protected route, which edgefn serves to a valid token, refuses everything under
/// a host that does not enforce `auth`, forged headers or not.
#[test]
fn portable_components_behave_the_same_on_wasmtime_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    let text = format!(
        "[components.portable]\nkey_value_stores = [\"default\"]\n\
         [authorizers.main]\nissuer = \"{ISSUER}\"\naudiences = [\"todo-api\"]\nhs256_secret = \"{SECRET}\"\n"
    );
    std::fs::write(&config, text).expect("config");
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("portable")]);
    host.cli_ok(&["kv", "set", "default", "greeting", "hello"]);
    let ours = send("GET", &host.url("/kv"), &[], b"");
    assert_eq!(ours.status, 200, "{}", ours.body);
    let expected = json!({
        "greeting": "hello",
        "read_back": "written",
        "existed": true,
        "increments": [2, 5],
        "counter": "5",
        "keys": ["counter", "greeting", "scratch"],
        "exists_after_delete": false,
    });
    assert_eq!(ours.json(), expected);
    let token = format!("Bearer {}", Signer::hmac(SECRET.as_bytes(), None).sign(&claims("ada", &[])).expect("sign"));
    let whoami = send("GET", &host.url("/whoami"), &[("authorization", &token)], b"");
    assert_eq!((whoami.status, whoami.json()["sub"].clone()), (200, json!("ada")), "{}", whoami.body);

    let flags = ["-Scli", "-Skeyvalue", "-Skeyvalue-in-memory-data=greeting=hello"];
    let test = "portable_components_behave_the_same_on_wasmtime_serve";
    let Some(wasmtime) = WasmtimeServe::start(test, &component("portable"), &flags) else {
        return;
    };
    let theirs = send("GET", &wasmtime.url("/kv"), &[], b"");
    assert_eq!(theirs.status, 200, "{}", theirs.body);
    assert_eq!(theirs.json(), expected);

    let forged_claims = URL_SAFE_NO_PAD.encode(json!({"sub": "mallory"}).to_string());
    let forged = [("authorization", token.as_str()), ("x-edgefn-claims", &forged_claims), ("x-edgefn-auth", "guess")];
    for headers in [&forged[..], &forged[..1], &[]] {
        let reply = send("GET", &wasmtime.url("/whoami"), headers, b"");
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.header("www-authenticate"), Some(INVALID_TOKEN));
        assert!(reply.body.contains("which this host did not enforce"), "{}", reply.body);
    }
}
