//! Object storage on a real host: the object-probe guest drives `edgefn::objects`, curl uses signed URLs, the CLI
//! and the admin API stream objects in and out, and the probe's object trigger follows bucket `photos`.

use crate::support::{Host, component_arg, poll_until, send, wait_for_dead_letters};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs one operation of the object-probe deployed as `component`; `Err` carries the admin API's error text.
fn obj(host: &Host, component: &str, op: Value) -> Result<Value, String> {
    let reply = host.admin("POST", &format!("/v1/functions/{component}%2Fobj/invoke"), Some(op));
    if reply.status == 200 { Ok(reply.json()["result"].clone()) } else { Err(reply.body) }
}

fn obj_ok(host: &Host, component: &str, op: Value) -> Value {
    obj(host, component, op.clone()).unwrap_or_else(|error| panic!("{op}: {error}\n{}", host.logs()))
}

/// A host with the object-probe deployed as `probe` (buckets `photos` and `docs`, store `seen`) and as `other`
/// (bucket `docs` only).
fn object_host(data: &Path) -> Host {
    let host = Host::start_in(data, &[]);
    deploy(&host);
    host
}

fn deploy(host: &Host) {
    let probe = component_arg("object_probe");
    host.cli_ok(&[
        "deploy",
        &probe,
        "--name",
        "probe",
        "--object-bucket",
        "photos",
        "--object-bucket",
        "docs",
        "--kv-store",
        "seen",
    ]);
    // `other` follows `photos` too (its trigger), so it must be granted it; it is not granted `docs`.
    host.cli_ok(&["deploy", &probe, "--name", "other", "--object-bucket", "photos", "--kv-store", "seen"]);
}

fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "-o", "/dev/stderr", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run curl ({e}): install it with `apt-get install curl`"));
    let status = String::from_utf8_lossy(&output.stdout).trim().parse().expect("curl printed the status");
    (status, String::from_utf8_lossy(&output.stderr).into_owned())
}

fn files_under(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |d| d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect(),
    )
}

#[test]
fn objects_round_trip_through_a_function_and_buckets_are_granted_per_component() {
    let data = tempfile::tempdir().expect("data dir");
    let host = object_host(data.path());
    let put = obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "docs", "key": "a/one.txt", "text": "one", "content_type": "text/plain"}),
    );
    assert_eq!(put["etag"], hex::encode(Sha256::digest(b"one")));
    assert_eq!((put["size"].as_u64(), put["content_type"].as_str()), (Some(3), Some("text/plain")));
    for key in ["a/two.txt", "a/three.txt", "b/four.txt"] {
        obj_ok(&host, "probe", json!({"op": "put", "bucket": "docs", "key": key, "text": key, "content_type": ""}));
    }
    let got = obj_ok(&host, "probe", json!({"op": "get", "bucket": "docs", "key": "a/one.txt"}));
    assert_eq!(got["text"], "one");
    let range =
        obj_ok(&host, "probe", json!({"op": "range", "bucket": "docs", "key": "a/two.txt", "offset": 2, "length": 3}));
    assert_eq!(range["text"], "two");
    // Listing by prefix, a page at a time.
    let page = obj_ok(&host, "probe", json!({"op": "list", "bucket": "docs", "prefix": "a/", "limit": 2}));
    assert_eq!(page["keys"], json!(["a/one.txt", "a/three.txt"]));
    let cursor = page["cursor"].as_str().expect("a next page").to_owned();
    let page =
        obj_ok(&host, "probe", json!({"op": "list", "bucket": "docs", "prefix": "a/", "cursor": cursor, "limit": 2}));
    assert_eq!((page["keys"].clone(), page["cursor"].clone()), (json!(["a/two.txt"]), Value::Null));
    // Copy, delete, head.
    let copy = obj_ok(
        &host,
        "probe",
        json!({"op": "copy", "bucket": "docs", "key": "a/one.txt", "to_bucket": "photos", "to_key": "copied.txt"}),
    );
    assert_eq!(copy["etag"], put["etag"]);
    assert_eq!(obj_ok(&host, "probe", json!({"op": "delete", "bucket": "docs", "key": "a/one.txt"}))["deleted"], true);
    assert_eq!(obj_ok(&host, "probe", json!({"op": "head", "bucket": "docs", "key": "a/one.txt"})), Value::Null);
    assert_eq!(obj_ok(&host, "probe", json!({"op": "get", "bucket": "photos", "key": "copied.txt"}))["text"], "one");
    // An upload dropped before it finished stores nothing.
    obj_ok(&host, "probe", json!({"op": "abandon", "bucket": "docs", "key": "never"}));
    assert_eq!(obj_ok(&host, "probe", json!({"op": "head", "bucket": "docs", "key": "never"})), Value::Null);
    assert_eq!(
        files_under(&data.path().join("objects/tmp")),
        Vec::<String>::new(),
        "the dropped upload's file is gone"
    );

    // `other` is not granted `docs`: refused with the reason, and nothing written.
    let denied =
        obj(&host, "other", json!({"op": "get", "bucket": "docs", "key": "a/two.txt"})).expect_err("not granted");
    assert!(denied.contains("may not use object bucket `docs`: add it to its `object_buckets`"), "{denied}");
    let denied =
        obj(&host, "other", json!({"op": "put", "bucket": "docs", "key": "x", "text": "x", "content_type": ""}));
    assert!(denied.is_err());
    assert_eq!(obj_ok(&host, "probe", json!({"op": "head", "bucket": "docs", "key": "x"})), Value::Null);
    let bad = obj(&host, "probe", json!({"op": "put", "bucket": "docs", "key": "", "text": "x", "content_type": ""}));
    assert!(bad.expect_err("an empty key").contains("the object key is empty"));
    let dots = obj(
        &host,
        "probe",
        json!({"op": "put", "bucket": "docs", "key": "a/../b/four.txt", "text": "x", "content_type": ""}),
    );
    assert!(dots.expect_err("a dot segment").contains("`.` or `..` segment"));

    // A deploy whose object trigger follows a bucket the component is not granted is refused, naming both.
    let refused = host.cli(&["deploy", &component_arg("object_probe"), "--name", "ungranted"]);
    assert!(!refused.success, "{refused:?}");
    assert!(
        refused.stderr.contains("follows object bucket `photos`, which the component is not granted"),
        "{refused:?}"
    );

    // The CLI and the admin API: usage, listing, get, put, rm; and what was stored survives a crash.
    let usage = host.cli_ok(&["objects", "usage"]);
    assert!(usage.lines().any(|l| l.starts_with("docs") && l.contains(" 3 objects")), "{usage}");
    let metrics = host.admin("GET", "/metrics", None).body;
    let bytes = "a/two.txt".len() + "a/three.txt".len() + "b/four.txt".len();
    assert!(metrics.contains(&format!("edgefn_object_bucket_bytes{{bucket=\"docs\"}} {bytes}")), "{metrics}");
    assert!(metrics.contains("edgefn_object_bucket_objects{bucket=\"docs\"} 3"), "{metrics}");
    host.kill();
    let host = Host::start_in(data.path(), &[]);
    let listed = host.cli_ok(&["objects", "ls", "docs", "--prefix", "a/"]);
    assert_eq!(
        listed.lines().map(|l| l.rsplit(' ').next().unwrap_or_default()).collect::<Vec<_>>(),
        ["a/three.txt", "a/two.txt"]
    );
    let file = data.path().join("upload.txt");
    std::fs::write(&file, "from the cli").expect("file");
    host.cli_ok(&["objects", "put", "docs", "c/cli.txt", file.to_str().expect("utf-8"), "--type", "text/plain"]);
    assert_eq!(host.cli_ok(&["objects", "get", "docs", "c/cli.txt"]), "from the cli");
    host.cli_ok(&["objects", "rm", "docs", "c/cli.txt"]);
    let gone = host.cli(&["objects", "get", "docs", "c/cli.txt"]);
    assert!(!gone.success && gone.stderr.contains("404") && gone.stderr.contains("does not exist"), "{gone:?}");
}

#[test]
fn signed_urls_let_curl_upload_and_download_and_refuse_what_they_do_not_allow() {
    let data = tempfile::tempdir().expect("data dir");
    let host = object_host(data.path());
    let sign_upload = |key: &str, expires_ms: u64, max_bytes: u64| {
        let signed = obj_ok(
            &host,
            "probe",
            json!({"op": "sign_upload", "bucket": "docs", "key": key,
            "expires_ms": expires_ms, "max_bytes": max_bytes, "content_type": "image/png"}),
        );
        host.url(signed["url"].as_str().expect("a url"))
    };
    let body = data.path().join("photo.png");
    std::fs::write(&body, [0x89, b'P', b'N', b'G', 1, 2, 3, 4]).expect("file");
    let upload = |url: &str, content_type: &str| {
        curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("content-type: {content_type}"),
            "--data-binary",
            &format!("@{}", body.display()),
            url,
        ])
    };
    let url = sign_upload("in/photo.png", 60_000, 1024);
    let (status, answer) = upload(&url, "image/png");
    assert_eq!(status, 201, "{answer}");
    let etag = hex::encode(Sha256::digest(std::fs::read(&body).expect("read")));
    assert_eq!(serde_json::from_str::<Value>(&answer).expect("json")["etag"], etag);
    let head = obj_ok(&host, "probe", json!({"op": "head", "bucket": "docs", "key": "in/photo.png"}));
    assert_eq!((head["size"].as_u64(), head["content_type"].as_str()), (Some(8), Some("image/png")));

    // Refusals: each stores nothing and says why.
    let tampered = url.replace("in/photo.png", "in/other.png");
    let (status, answer) = upload(&tampered, "image/png");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("signature does not match"), "{answer}");
    let (status, answer) = upload(&url.replace("max=1024", "max=99999"), "image/png");
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = upload(&url, "text/html");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("allows content type `image/png`"), "{answer}");
    let small = sign_upload("in/small.png", 60_000, 4);
    let (status, answer) = upload(&small, "image/png");
    assert_eq!(status, 413, "{answer}");
    // Chunked, with no length up front: refused as the bytes pass the bound.
    let (status, answer) = curl(&[
        "-X",
        "PUT",
        "-H",
        "content-type: image/png",
        "-H",
        "transfer-encoding: chunked",
        "--data-binary",
        &format!("@{}", body.display()),
        &small,
    ]);
    assert_eq!(status, 413, "{answer}");
    let expired = sign_upload("in/late.png", 1, 1024);
    std::thread::sleep(Duration::from_millis(20));
    let (status, answer) = upload(&expired, "image/png");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("expired"), "{answer}");
    for key in ["in/other.png", "in/small.png", "in/late.png"] {
        assert_eq!(obj_ok(&host, "probe", json!({"op": "head", "bucket": "docs", "key": key})), Value::Null, "{key}");
    }
    assert_eq!(files_under(&data.path().join("objects/tmp")), Vec::<String>::new());

    // Download: whole, a range, a matching ETag; an upload URL does not download.
    let signed = obj_ok(
        &host,
        "probe",
        json!({"op": "sign_download", "bucket": "docs", "key": "in/photo.png", "expires_ms": 60_000}),
    );
    let download = host.url(signed["url"].as_str().expect("a url"));
    let whole = send("GET", &download, &[], b"");
    assert_eq!((whole.status, whole.header("etag")), (200, Some(format!("\"{etag}\"").as_str())));
    assert_eq!(whole.header("content-type"), Some("image/png"));
    let part = send("GET", &download, &[("range", "bytes=4-5")], b"");
    assert_eq!((part.status, part.body.as_bytes()), (206, [1u8, 2].as_slice()));
    assert_eq!(part.header("content-range"), Some("bytes 4-5/8"));
    // A range for another version (If-Range with an old ETag) gets the whole object, never pieces of two.
    let stale = send("GET", &download, &[("range", "bytes=4-5"), ("if-range", "\"an-older-etag\"")], b"");
    assert_eq!((stale.status, stale.header("content-length")), (200, Some("8")));
    assert_eq!(whole.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(whole.header("content-disposition"), None, "an image is shown inline");
    // An uploaded page is never served as the site: a download, sandboxed, not sniffed.
    obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "docs", "key": "in/page.html", "text": "<script>alert(1)</script>", "content_type": "text/html"}),
    );
    let signed = obj_ok(
        &host,
        "probe",
        json!({"op": "sign_download", "bucket": "docs", "key": "in/page.html", "expires_ms": 60_000}),
    );
    let page = send("GET", &host.url(signed["url"].as_str().expect("a url")), &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-disposition"), Some("attachment"));
    assert_eq!(page.header("content-security-policy"), Some("sandbox; default-src 'none'"));
    let cached = send("GET", &download, &[("if-none-match", &format!("\"{etag}\""))], b"");
    assert_eq!(cached.status, 304);
    assert_eq!(send("GET", &url, &[], b"").status, 403, "an upload URL is not a download URL");
    assert_eq!(send("GET", &download.replace("photo.png", "other.png"), &[], b"").status, 403);
}

#[test]
fn an_upload_runs_its_object_trigger_once_with_its_etag_and_a_failing_handler_dead_letters() {
    let data = tempfile::tempdir().expect("data dir");
    let host = object_host(data.path());
    let seen = |key: &str| -> Option<i64> {
        let reply = host.admin("GET", &format!("/v1/kv/seen/keys/runs:{}", key.replace('/', "%2F")), None);
        (reply.status == 200).then(|| reply.json()["value"].as_str().expect("text").parse().expect("a count"))
    };
    let put = obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "photos", "key": "uploads/x.png", "text": "x", "content_type": "image/png"}),
    );
    // Both `probe` and `other` follow `photos`: each runs once.
    poll_until("the object trigger to run", Duration::from_secs(30), || seen("uploads/x.png") == Some(2));
    let last = host.admin("GET", "/v1/kv/seen/keys/last:uploads%2Fx.png", None).json();
    let last: Value = serde_json::from_str(last["value"].as_str().expect("text")).expect("json");
    assert_eq!(
        (last["etag"].clone(), last["size"].as_u64(), last["event"].as_str()),
        (put["etag"].clone(), Some(1), Some("created"))
    );
    assert!(!last["correlation_id"].as_str().expect("an id").is_empty());
    // Outside the prefix, or a delete (the trigger asks for `created` only): no run.
    obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "photos", "key": "elsewhere/y.png", "text": "y", "content_type": ""}),
    );
    obj_ok(&host, "probe", json!({"op": "delete", "bucket": "photos", "key": "uploads/x.png"}));
    // A change after those, which does run, proves they were handled (the outbox is in order) and not delivered.
    obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "photos", "key": "uploads/z.png", "text": "z", "content_type": ""}),
    );
    poll_until("the later change to run", Duration::from_secs(30), || seen("uploads/z.png") == Some(2));
    assert_eq!(seen("elsewhere/y.png"), None);
    assert_eq!(seen("uploads/x.png"), Some(2), "the delete ran nothing");

    // A handler that keeps failing: retried (max_retries = 2), then dead-lettered with the change in it.
    obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "photos", "key": "uploads/fail.png", "text": "f", "content_type": ""}),
    );
    let letters = wait_for_dead_letters(&host, "objects.photos@probe.on_upload");
    let event: Value = serde_json::from_str(letters[0]["body"].as_str().expect("a text body")).expect("json");
    assert_eq!((event["key"].as_str(), event["event"].as_str()), (Some("uploads/fail.png"), Some("created")));
    assert_eq!(
        seen("uploads/fail.png").map(|runs| runs >= 3),
        Some(true),
        "first attempt and two retries, per follower"
    );

    // A function cannot forge a change by sending to the trigger's queue.
    let forged = obj_ok(&host, "probe", json!({"op": "forge", "queue": "objects.photos@other.on_upload"}));
    let refusal = forged["refused"].as_str().unwrap_or_else(|| panic!("a forged change was sent: {forged}"));
    assert!(refusal.contains("is the host's own"), "{refusal}");
}

#[test]
fn a_200_mib_object_streams_in_and_out_byte_exact_in_bounded_host_memory() {
    let data = tempfile::tempdir().expect("data dir");
    let host = object_host(data.path());
    let peak = || -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).expect("status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).expect("kB").parse::<u64>().expect("a number") << 10
    };
    let before = peak();
    // From a function: 200 writes of 1 MiB, each checked back in 4 MiB reads.
    let put = obj_ok(&host, "probe", json!({"op": "put_pattern", "bucket": "docs", "key": "big.bin", "mib": 200}));
    assert_eq!(put["size"].as_u64(), Some(200 << 20));
    let checked = obj_ok(&host, "probe", json!({"op": "check_pattern", "bucket": "docs", "key": "big.bin"}));
    assert_eq!((checked["size"].as_u64(), checked["etag"].clone()), (Some(200 << 20), put["etag"].clone()));
    // Through the CLI (the admin API), a file of 200 MiB in and out.
    let file = data.path().join("big-in.bin");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..(200 << 20) / 8 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.write_all(&state.to_le_bytes()).expect("write");
        }
    }
    let stored = host.cli_ok(&["objects", "put", "docs", "big-cli.bin", file.to_str().expect("utf-8")]);
    let mut hasher = Sha256::new();
    std::io::copy(&mut std::fs::File::open(&file).expect("open"), &mut hasher).expect("hash");
    let etag = hex::encode(hasher.finalize());
    assert!(stored.contains(&etag), "{stored}");
    let back = data.path().join("big-out.bin");
    host.cli_ok(&["objects", "get", "docs", "big-cli.bin", "-o", back.to_str().expect("utf-8")]);
    let mut hasher = Sha256::new();
    let mut reader = std::fs::File::open(&back).expect("open");
    let mut length = 0u64;
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = reader.read(&mut buffer).expect("read");
        if read == 0 {
            break;
        }
        length += read as u64;
        hasher.update(&buffer[..read]);
    }
    assert_eq!((length, hex::encode(hasher.finalize())), (200 << 20, etag), "byte-exact");
    let grew = peak().saturating_sub(before);
    assert!(grew < 64 << 20, "the host's peak RSS grew by {} MiB moving 2 x 2 x 200 MiB", grew >> 20);
}

#[test]
fn a_kill_during_an_upload_leaves_the_old_object_whole_and_no_leftovers() {
    let data = tempfile::tempdir().expect("data dir");
    let host = object_host(data.path());
    obj_ok(
        &host,
        "probe",
        json!({"op": "put", "bucket": "docs", "key": "doc", "text": "version one", "content_type": "text/plain"}),
    );
    let signed = obj_ok(
        &host,
        "probe",
        json!({"op": "sign_upload", "bucket": "docs", "key": "doc",
        "expires_ms": 60_000, "max_bytes": 64 << 20, "content_type": ""}),
    );
    // Half of a 16 MiB upload, then the host dies.
    let address = host.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut stream = std::net::TcpStream::connect(&address).expect("connect");
    write!(
        stream,
        "PUT {} HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\n\r\n",
        signed["url"].as_str().expect("url"),
        16 << 20
    )
    .expect("head");
    stream.write_all(&vec![b'2'; 8 << 20]).expect("half the body");
    poll_until("the upload's temporary file to fill", Duration::from_secs(30), || {
        std::fs::read_dir(data.path().join("objects/tmp"))
            .map(|d| d.filter_map(Result::ok).any(|e| e.metadata().is_ok_and(|m| m.len() >= 4 << 20)))
            .unwrap_or(false)
    });
    host.kill();
    drop(stream);
    let host = Host::start_in(data.path(), &[]);
    let got = obj_ok(&host, "probe", json!({"op": "get", "bucket": "docs", "key": "doc"}));
    assert_eq!(got["text"], "version one");
    assert_eq!(files_under(&data.path().join("objects/tmp")), Vec::<String>::new(), "the torn upload is swept");
    assert_eq!(files_under(&data.path().join("objects/blobs")).len(), 1, "one file: the old object's");
}

#[test]
fn a_wasi_0_3_component_uses_objects_the_same_way() {
    use crate::support::{Abi, component_arg_for};
    let host = Host::start(&[]);
    let probe = component_arg_for(Abi::P3, "object_probe");
    host.cli_ok(&["deploy", &probe, "--name", "probe3", "--object-bucket", "photos", "--kv-store", "seen"]);
    let put = obj_ok(&host, "probe3", json!({"op": "put_pattern", "bucket": "photos", "key": "p3.bin", "mib": 3}));
    let checked = obj_ok(&host, "probe3", json!({"op": "check_pattern", "bucket": "photos", "key": "p3.bin"}));
    assert_eq!((checked["size"].as_u64(), checked["etag"].clone()), (Some(3 << 20), put["etag"].clone()));
    obj_ok(&host, "probe3", json!({"op": "abandon", "bucket": "photos", "key": "dropped"}));
    assert_eq!(obj_ok(&host, "probe3", json!({"op": "head", "bucket": "photos", "key": "dropped"})), Value::Null);
    let denied = obj(&host, "probe3", json!({"op": "head", "bucket": "docs", "key": "x"})).expect_err("not granted");
    assert!(denied.contains("may not use object bucket `docs`"), "{denied}");
    // Its object trigger runs too.
    obj_ok(
        &host,
        "probe3",
        json!({"op": "put", "bucket": "photos", "key": "uploads/a.png", "text": "a", "content_type": ""}),
    );
    poll_until("the WASI 0.3 object trigger to run", Duration::from_secs(30), || {
        host.admin("GET", "/v1/kv/seen/keys/runs:uploads%2Fa.png", None).status == 200
    });
}
