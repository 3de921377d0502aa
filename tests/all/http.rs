//! End to end: real components on a real `edgefn up`, over real HTTP, with a real SQLite file.

use crate::support::{Abi, Host, WasmtimeServe, component, component_arg_for, for_both_abis, get, post, send};
use hmac::Mac as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const SECRET: &str = "s3cr3t-webhook-key-for-tests";

/// One host with every test component built for `abi`, shared by the tests that do not need a host of their own.
/// Both serve the same foreign WASI 0.2 component at `/plain`; the WASI 0.3 one also a foreign WASI 0.3 one at
/// `/plain3`.
fn shared(abi: Abi) -> &'static Host {
    static HOSTS: [OnceLock<Host>; 2] = [OnceLock::new(), OnceLock::new()];
    HOSTS[abi as usize].get_or_init(|| {
        let config = std::env::temp_dir().join(format!("edgefn-test-config-{}-{abi:?}.toml", std::process::id()));
        std::fs::write(&config, "[components.webhook]\nenv_from_host = [\"WEBHOOK_SECRET\"]\n").expect("config");
        let (hello, webhook, misbehave) =
            (component_arg_for(abi, "hello"), component_arg_for(abi, "webhook"), component_arg_for(abi, "misbehave"));
        let plain = format!("/plain={}", component("plain").display());
        let plain3 = format!("/plain3={},strip-prefix", component("plain_p3").display());
        let mut args = vec![
            "--config",
            config.to_str().expect("utf-8 path"),
            "--timeout-ms",
            "1000",
            "--memory-mb",
            "64",
            "--max-body-bytes",
            "65536",
            "--mount",
            &plain,
        ];
        if abi == Abi::P3 {
            args.extend(["--mount", &plain3]);
        }
        args.extend([hello.as_str(), webhook.as_str(), misbehave.as_str()]);
        Host::start_with_env(&args, &[("WEBHOOK_SECRET", SECRET)])
    })
}

for_both_abis! {
    fn path_parameters_reach_the_function(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/hello/ada"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "Hello, ada!"));
        assert_eq!(get(&host.url("/hello/grace%20hopper")).body, "Hello, grace hopper!");
    }
}

for_both_abis! {
    fn a_function_sees_the_url_the_client_asked_for_and_redirects_with_a_cookie(abi) {
        let host = shared(abi);
        let header = |head: &[String], name: &str| {
            head.iter()
                .find_map(|line| line.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)))
                .map(|(_, value)| value.trim().to_owned())
        };
        // The Host the client sent, port and all, is in the function's `req.url()`.
        let request = "GET /go/grace%20hopper?from=mail HTTP/1.1\r\nhost: links.example:8080\r\nconnection: close\r\n\r\n";
        let head = crate::support::wire::read_head(&mut crate::support::wire::connect(host, request));
        assert!(head[0].contains(" 302 "), "{head:#?}");
        assert_eq!(header(&head, "location").as_deref(), Some("http://links.example:8080/hello/grace%20hopper"));
        assert_eq!(header(&head, "set-cookie").as_deref(), Some("last=grace%20hopper; HttpOnly; SameSite=Lax; Path=/"));
        // The cookie comes back decoded.
        let reply = send("GET", &host.url("/hello/_"), &[("cookie", "theme=dark; last=grace%20hopper")], b"");
        assert_eq!((reply.status, reply.body.as_str()), (200, "Hello, grace hopper!"));
        // An absolute-form target names its own authority, which wins over `Host`.
        let request = "GET http://abs.example/go/ada HTTP/1.1\r\nhost: elsewhere.example\r\nconnection: close\r\n\r\n";
        let head = crate::support::wire::read_head(&mut crate::support::wire::connect(host, request));
        assert_eq!(header(&head, "location").as_deref(), Some("http://abs.example/hello/ada"), "{head:#?}");
        // A Host that is no host[:port] is the client's error, said so.
        let request = "GET /go/ada HTTP/1.1\r\nhost: not a host\r\nconnection: close\r\n\r\n";
        let mut reader = crate::support::wire::connect(host, request);
        let head = crate::support::wire::read_head(&mut reader);
        assert!(head[0].contains(" 400 "), "{head:#?}");
        let mut body = String::new();
        std::io::Read::read_to_string(&mut reader, &mut body).expect("read the body");
        assert!(body.contains("the Host header is not a valid host[:port]"), "{body}");
    }
}

#[test]
fn startup_prints_each_function_with_its_trigger_and_url() {
    let host = shared(Abi::P2);
    let expected = format!("GET     {}/hello/{{name}}", host.base);
    assert!(host.banner.contains(&expected), "{}", host.banner);
    assert!(host.banner.contains(&format!("POST    {}/orders", host.base)), "{}", host.banner);
}

for_both_abis! {
    fn json_in_and_out(abi) {
        let reply = post(&shared(abi).url("/orders"), r#"{"item":"tea","quantity":2}"#);
        assert_eq!(reply.status, 201, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let order = reply.json();
        assert_eq!((order["item"].as_str(), order["quantity"].as_u64()), (Some("tea"), Some(2)));
    }
}

for_both_abis! {
    fn bad_json_is_400_with_a_request_id(abi) {
        let reply = post(&shared(abi).url("/orders"), "{not json");
        assert_eq!(reply.status, 400);
        let body = reply.json();
        assert!(body["error"].as_str().unwrap_or_default().contains("not valid JSON"), "{}", reply.body);
        assert_eq!(body["request_id"].as_str(), reply.header("x-request-id"));
    }
}

for_both_abis! {
    fn handler_errors_carry_their_status(abi) {
        let reply = get(&shared(abi).url("/orders/42"));
        assert_eq!(reply.status, 404);
        assert!(reply.json()["error"].as_str().unwrap_or_default().contains("order 42 does not exist"));
    }
}

for_both_abis! {
    fn unknown_route_is_404_and_wrong_method_is_405(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/nowhere"));
        assert_eq!(reply.status, 404);
        assert!(reply.json()["request_id"].is_string());
        let reply = get(&host.url("/orders"));
        assert_eq!(reply.status, 405);
        assert_eq!(reply.header("allow"), Some("POST"));
    }
}

for_both_abis! {
    fn oversized_body_is_413(abi) {
        let host = shared(abi);
        // Raw HTTP, headers only: the host refuses on the declared length before reading any body. (A client that
        // also sends the body can see its connection reset before it reads the 413: that is TCP, not the host.)
        let address = host.base.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(30))).expect("read timeout");
        let head =
            format!("POST /echo HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", 65536 + 1);
        std::io::Write::write_all(&mut stream, head.as_bytes()).expect("send head");
        let mut reply = String::new();
        std::io::Read::read_to_string(&mut stream, &mut reply).expect("read reply");
        assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
        assert!(reply.contains("larger than the 65536-byte limit"), "{reply}");

        let fits = vec![b'y'; 65536];
        let reply = send("POST", &host.url("/echo"), &[], &fits);
        assert_eq!((reply.status, reply.body.len()), (200, 65536));
    }
}

for_both_abis! {
    fn panic_is_500_and_the_host_keeps_serving(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/panic"));
        assert_eq!(reply.status, 500);
        let request_id = reply.header("x-request-id").expect("request id").to_owned();
        assert_eq!(reply.json()["request_id"].as_str(), Some(request_id.as_str()));
        assert_eq!(get(&host.url("/ok")).body, "still here");
        // The trap is logged with the request id, so the operator can find it; the guest's own panic message too.
        host.wait_for_log_line(&["wasm trap", &request_id]);
        host.wait_for_log("this handler panics on purpose");
    }
}

for_both_abis! {
    fn infinite_loop_is_504_within_the_deadline_and_the_host_keeps_serving(abi) {
        let host = shared(abi);
        let started = Instant::now();
        let reply = get(&host.url("/loop"));
        assert_eq!(reply.status, 504, "{}", reply.body);
        // Generous bound: the deadline is 1 s; this only proves the loop was stopped rather than run to the client's
        // 30 s timeout.
        assert!(started.elapsed() < Duration::from_secs(20));
        assert_eq!(get(&host.url("/ok")).status, 200);
    }
}

for_both_abis! {
    fn memory_hog_is_500_and_the_host_keeps_serving(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/hog"));
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert_eq!(get(&host.url("/ok")).body, "still here");
    }
}

#[test]
fn healthz_answers_200() {
    let reply = get(&shared(Abi::P2).url("/healthz"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "ok"));
}

for_both_abis! {
    fn every_request_is_logged_once_with_id_function_status_and_duration(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/hello/logline"));
        // Exactly one line mentions the request id: the request log line itself (a trap would add a second).
        let request_id = reply.header("x-request-id").expect("request id");
        assert_eq!(host.wait_for_log(request_id).matches(request_id).count(), 1, "{}", host.logs());
        let line = host.request_log_line(&reply);
        for field in ["function=\"hello/hello\"", "status=200", "duration_ms="] {
            assert!(line.contains(field), "missing {field}: {line}");
        }
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

for_both_abis! {
    fn webhook_accepts_good_signatures_and_refuses_bad_ones(abi) {
        let host = shared(abi);
        let url = host.url("/webhooks/github");
        let body = br#"{"action":"opened"}"#;
        let good = sign(body);
        let reply = send("POST", &url, &[("x-hub-signature-256", &good), ("x-github-event", "issues")], body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["action"], "opened");

        let tampered = send("POST", &url, &[("x-hub-signature-256", &good)], br#"{"action":"closed"}"#);
        assert_eq!(tampered.status, 401);
        assert_eq!(send("POST", &url, &[], body).status, 401);
        assert_eq!(send("POST", &url, &[("x-hub-signature-256", "sha256=00")], body).status, 401);
        // The secret reached the function (the good signature verified) and never the log: not the host's own, and not
        // the function's (complete once its invocation record is stored: see `work_log`).
        let request_id = tampered.header("x-request-id").expect("request id");
        let stored = host.work_log(request_id);
        assert!(!format!("{stored:?}").contains(SECRET), "{stored:#?}");
        assert!(!host.wait_for_log(&format!("request request_id={request_id}")).contains(SECRET));
    }
}

for_both_abis! {
    fn a_plain_wasi_http_component_is_served_at_its_mount(abi) {
        let host = shared(abi);
        let reply = get(&host.url("/plain/any/path?x=1"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "plain component saw /plain/any/path?x=1"));
        if abi == Abi::P3 {
            // A WASI 0.3 component built without the SDK (the `wasip3` crate), mounted with its prefix stripped.
            let root = get(&host.url("/plain3"));
            assert_eq!((root.status, root.body.as_str()), (200, "plain p3 root (prefix: /plain3)"));
            let saw = get(&host.url("/plain3/some/where?y=2"));
            assert_eq!(saw.body, "plain p3 component saw /some/where?y=2");
            let body: String = (0..2000).map(|n| format!("{n},")).collect();
            let echoed = send("POST", &host.url("/plain3/echo"), &[], body.as_bytes());
            assert_eq!((echoed.status, echoed.body), (200, body));
            let lines = get(&host.url("/plain3/count/500"));
            assert_eq!(lines.body.lines().count(), 500);
            assert_eq!(lines.body.lines().last(), Some("line 499"));
        }
    }
}

#[test]
fn a_non_component_is_refused_by_name_and_the_others_serve() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"definitely not wasm").expect("write");
    let hello = component("hello");
    let host = Host::start(&[bogus.to_str().expect("utf-8"), hello.to_str().expect("utf-8")]);
    // The refusal is printed before the host listens, but read from its stderr by another thread: poll for it.
    let logs = host.wait_for_log("not a WebAssembly file");
    assert!(logs.contains("refused") && logs.contains("bogus.wasm"), "{logs}");
    assert!(logs.contains("not a WebAssembly file"), "{logs}");
    assert_eq!(get(&host.url("/hello/ada")).body, "Hello, ada!");
}

#[test]
fn a_route_claimed_by_two_components_stops_the_start_naming_both() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("hello_again.wasm");
    std::fs::copy(component("hello"), &copy).expect("copy");
    let hello = component("hello");
    let Err((code, output)) = Host::try_start(&[hello.to_str().expect("utf-8"), copy.to_str().expect("utf-8")], &[])
    else {
        panic!("the host started with a route claimed twice");
    };
    assert_ne!(code, Some(0));
    assert!(output.contains("already claimed"), "{output}");
    assert!(output.contains("hello_again/") && output.contains("hello/"), "{output}");
}

#[test]
fn deployments_are_recorded_in_sqlite() {
    let host = Host::start(&[component("hello").to_str().expect("utf-8")]);
    let db = host.data.join("edgefn.db");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["deployments", "--data"])
        .arg(&host.data)
        .output()
        .expect("run edgefn deployments");
    assert!(db.is_file());
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(listing.contains("hello v1 live sha256") && listing.contains("hello  http GET /hello/{name}"), "{listing}");
}

#[test]
fn up_builds_a_crate_directory() {
    let dir = crate::support::workspace().join("examples").join("hello");
    let host = Host::start(&[dir.to_str().expect("utf-8")]);
    assert_eq!(get(&host.url("/hello/crate")).body, "Hello, crate!");
}

#[test]
fn inspect_prints_functions_and_triggers() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .arg("inspect")
        .arg(component("hello"))
        .output()
        .expect("run edgefn inspect");
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in [
        "create_order  http POST /orders",
        "get_order     http GET /orders/{id}",
        "hello         http GET /hello/{name}",
    ] {
        assert!(stdout.contains(line), "missing `{line}` in:\n{stdout}");
    }

    let plain = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .arg("inspect")
        .arg(component("plain"))
        .output()
        .expect("run edgefn inspect");
    assert!(String::from_utf8_lossy(&plain.stdout).contains("no edgefn manifest"));

    let bogus = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["inspect", "Cargo.toml"])
        .current_dir(crate::support::workspace())
        .output()
        .expect("run edgefn inspect");
    assert!(!bogus.status.success());
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("Cargo.toml: not a WebAssembly file"));
}

/// The same hello .wasm under `wasmtime serve` answers the same requests with the same responses: no lock-in.
#[test]
fn wasmtime_serve_answers_like_edgefn() {
    let Some(wasmtime) = WasmtimeServe::start("wasmtime_serve_answers_like_edgefn", &component("hello"), &["-Scli"])
    else {
        return;
    };
    let reference = wasmtime.base.clone();
    let edgefn = shared(Abi::P2);
    let requests: &[(&str, &str, &str)] = &[
        ("GET", "/hello/ada", ""),
        ("POST", "/orders", r#"{"item":"tea","quantity":2}"#),
        ("POST", "/orders", "{not json"),
        ("GET", "/orders/7", ""),
        ("GET", "/orders", ""),
        ("GET", "/nowhere/at/all", ""),
    ];
    for (method, path, body) in requests {
        let ours = send(method, &edgefn.url(path), &[], body.as_bytes());
        let theirs = send(method, &format!("{reference}{path}"), &[], body.as_bytes());
        assert_eq!(ours.status, theirs.status, "{method} {path}");
        assert_eq!(without_request_id(&ours.body), without_request_id(&theirs.body), "{method} {path}");
    }
}

fn without_request_id(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut value) => {
            if let Some(object) = value.as_object_mut() {
                object.remove("request_id");
            }
            value.to_string()
        }
        Err(_) => body.to_owned(),
    }
}

/// Every import of the example components is in the `edgefn:function/http-function` world of `wit/`, and the
/// component exports the world's `wasi:http/incoming-handler`: the WIT is the real contract, not documentation.
#[test]
fn components_fit_the_wit_contract() {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(crate::support::workspace().join("wit")).expect("wit/ parses");
    let world = resolve.select_world(&[package], Some("http-function")).expect("world http-function");
    let key_names = |items: &dyn Fn(&wit_parser::World) -> Vec<wit_parser::WorldKey>| -> Vec<String> {
        items(&resolve.worlds[world]).iter().map(|key| resolve.name_world_key(key)).collect()
    };
    let imports = key_names(&|w| w.imports.keys().cloned().collect());
    let exports = key_names(&|w| w.exports.keys().cloned().collect());
    assert!(exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@")), "{exports:?}");
    assert!(exports.iter().any(|e| e == "wizer-initialize"), "{exports:?}");

    for name in ["hello", "webhook", "misbehave"] {
        let wasm = std::fs::read(component(name)).expect("read component");
        for payload in wasmparser::Parser::new(0).parse_all(&wasm) {
            if let Ok(wasmparser::Payload::ComponentImportSection(section)) = payload {
                for import in section {
                    let import = import.expect("valid import").name.name;
                    // Nested shim components import local names such as `import-type-incoming-request`; only
                    // interface imports (`ns:pkg/iface@version`) cross the host boundary.
                    if !import.contains(':') {
                        continue;
                    }
                    assert!(imports.iter().any(|i| i == import), "{name} imports {import}, which the WIT world lacks");
                }
            }
        }
    }
}
