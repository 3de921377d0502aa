//! A full disk: a host whose data dir is a small tmpfs of its own, filled to the last byte while it serves. Writes
//! (key-value sets from a function and from the admin API, queue sends, deploys, log records) fail with a 507 or an
//! error naming the disk, everything stored before and everything a write was acknowledged for is still there
//! afterwards and the databases pass SQLite's integrity check, requests keep being served, and once the space is
//! freed every kind of write works again.

use crate::support::{Host, component_arg, get, queue_stats};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How many times a kind of write is tried while the disk is full before the test gives up on seeing it refused.
/// SQLite can still place a write in room its files already have (pages freed by a rolled-back write, the unused
/// end of the write-ahead log), so a write is not refused at once; 32 KiB each, these outgrow that room.
const TRIES: usize = 400;

/// The kv-probe's operation `op`, run as an invocation of `kv/kv`; the result or the admin API's error text.
fn kv(host: &Host, op: Value) -> Result<Value, String> {
    let reply = host.admin("POST", "/v1/functions/kv%2Fkv/invoke", Some(op));
    if reply.status == 200 { Ok(reply.json()["result"].clone()) } else { Err(reply.body) }
}

/// Repeats `write` (which answers an HTTP status and body) until it is refused; returns how many were accepted
/// (status `accepted`) and the refusal, which must be a 507 naming the full disk.
fn write_until_refused(what: &str, accepted: u16, mut write: impl FnMut(usize) -> (u16, String)) -> (usize, String) {
    for n in 0..TRIES {
        let (status, body) = write(n);
        if status == accepted {
            continue;
        }
        assert_eq!(status, 507, "{what} #{n} on a full disk: {body}");
        return (n, body);
    }
    panic!("{TRIES} {what}s on a full disk were all accepted")
}

fn assert_names_the_full_disk(text: &str, host: &Host) {
    let data = host.data.display().to_string();
    assert!(text.contains("the disk holding") && text.contains("is full") && text.contains(&data), "{text}");
}

#[test]
fn a_full_disk_refuses_writes_naming_it_loses_nothing_stored_and_recovers_once_freed() {
    let host = Host::start_on_small_disk(96, &[&component_arg("hostile")]);
    host.cli_ok(&["deploy", &component_arg("kv_probe"), "--name", "kv", "--kv-store", "notes"]);
    // What is stored before the disk fills.
    let set = json!({"op": "set", "store": "notes", "key": "kept", "value": "stored before"});
    assert_eq!(kv(&host, set).expect("set"), json!({"ok": true}));
    let reply = host.admin("POST", "/v1/queues/parked/messages", Some(json!({ "body": { "n": "before" } })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let versions_before = host.cli_ok(&["versions", "kv"]);

    let filler = host.fill_disk();

    // A function's key-value writes: refused with an error naming the disk, which the function sees.
    let filled =
        kv(&host, json!({"op": "fill", "store": "notes", "prefix": "full-", "count": 100_000, "value_bytes": 4096}))
            .expect("the function answers even when its writes are refused");
    let written = filled["written"].as_u64().expect("written");
    assert!(written < 100_000, "{filled}");
    assert_names_the_full_disk(filled["error"].as_str().expect("the refusal"), &host);

    // The admin API's key-value writes and queue sends: 507, naming the disk.
    let value = "v".repeat(32 << 10);
    let (admin_kv_accepted, refusal) = write_until_refused("admin key-value write", 200, |n| {
        let reply = host.admin_bytes("PUT", &format!("/v1/kv/notes/keys/admin-{n}"), value.as_bytes());
        (reply.status, reply.body)
    });
    assert_names_the_full_disk(&refusal, &host);
    let (sends_accepted, refusal) = write_until_refused("queue send", 201, |n| {
        let reply = host.admin("POST", "/v1/queues/parked/messages", Some(json!({ "body": { "n": n, "pad": value } })));
        (reply.status, reply.body)
    });
    assert_names_the_full_disk(&refusal, &host);

    // A deploy of a component the host has never stored: refused naming the disk, no partial file left behind.
    let deploy = host.cli(&["deploy", &component_arg("misbehave")]);
    assert!(!deploy.success, "a deploy on a full disk succeeded: {}", deploy.stdout);
    assert_names_the_full_disk(&deploy.stderr, &host);
    for dir in ["components", "compiled"] {
        let leftovers: Vec<String> = std::fs::read_dir(host.data_view().join(dir))
            .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(leftovers.iter().all(|name| !name.ends_with(".tmp")), "{dir}: {leftovers:?}");
    }

    // Requests are still served while the log store cannot keep their records; the host says so once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !host.logs().contains("log records are lost until the log store's disk has room again") {
        let reply = get(&host.url("/hostile/print?mb=1"));
        assert_eq!((reply.status, reply.body.as_str()), (200, "printed 1024 lines"), "served on a full disk");
        assert!(Instant::now() < deadline, "the log store never said its disk is full:\n{}", host.logs());
    }
    let line = host.wait_for_log_line(&["log records are lost until"]);
    assert_names_the_full_disk(&line, &host);
    assert_eq!(host.logs().matches("log records are lost until").count(), 1, "said once, not per batch");

    // Space again: every kind of write works.
    std::fs::remove_file(&filler).expect("free the disk");
    let set = json!({"op": "set", "store": "notes", "key": "after", "value": "stored after"});
    assert_eq!(kv(&host, set).expect("set after"), json!({"ok": true}));
    let reply = host.admin_bytes("PUT", "/v1/kv/notes/keys/admin-after", b"after");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = host.admin("POST", "/v1/queues/parked/messages", Some(json!({ "body": { "n": "after" } })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    host.cli_ok(&["deploy", &component_arg("misbehave")]);
    assert_eq!(get(&host.url("/ok")).body, "still here");
    let deadline = Instant::now() + Duration::from_secs(30);
    let recovered = loop {
        // Records go to the store in batches: a request makes the writer try again.
        assert_eq!(get(&host.url("/ok")).status, 200);
        let reply = host.admin("GET", "/v1/logs?level=warn&limit=1000", None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let logs = reply.json()["logs"].as_array().cloned().unwrap_or_default();
        if let Some(record) = logs.iter().find(|r| r["message"].as_str().unwrap_or("").contains("has room again")) {
            break record["message"].as_str().unwrap_or_default().to_owned();
        }
        assert!(Instant::now() < deadline, "the log store never said it has room again:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(recovered.contains("log records were lost while its disk was full"), "{recovered}");

    // Nothing stored before, and nothing acknowledged while full, was lost.
    let kept = json!({"op": "get", "store": "notes", "key": "kept"});
    assert_eq!(kv(&host, kept).expect("get")["value"], "stored before");
    for n in 0..written {
        let key = json!({"op": "exists", "store": "notes", "key": format!("full-{n}")});
        assert_eq!(kv(&host, key).expect("exists")["exists"], true, "full-{n} was acknowledged, then lost");
    }
    for n in 0..admin_kv_accepted {
        let reply = host.admin("GET", &format!("/v1/kv/notes/keys/admin-{n}"), None);
        assert_eq!(reply.status, 200, "admin-{n} was acknowledged, then lost: {}", reply.body);
        assert_eq!(reply.json()["value"].as_str().map(str::len), Some(value.len()));
    }
    // The message sent before, those accepted while full, and the one after: all waiting, none dead.
    let parked = queue_stats(&host, "parked");
    assert_eq!(parked["ready"], json!(1 + sends_accepted + 1), "{parked}");
    assert_eq!(host.cli_ok(&["versions", "kv"]), versions_before, "the versions of `kv` changed");
    for file in ["edgefn.db", "telemetry.db"] {
        assert_eq!(integrity_check(&host, file), "ok", "{file}");
    }
}

/// SQLite's `PRAGMA integrity_check` of database `file` in the host's data dir. SQLite resolves the `/proc/PID/root`
/// link to a path of this process's file system, where the host's disk is not mounted, so it checks a copy: the
/// database and its write-ahead log, copied while the host may still write. A copy torn by a write checks as
/// damaged; a damaged database checks as damaged every time, so the check is tried three times.
fn integrity_check(host: &Host, file: &str) -> String {
    let mut verdict = String::new();
    for _ in 0..3 {
        let copy = tempfile::tempdir().expect("temp dir");
        for suffix in ["", "-wal"] {
            let from = host.data_view().join(format!("{file}{suffix}"));
            if from.exists() {
                std::fs::copy(&from, copy.path().join(format!("{file}{suffix}"))).expect("copy the database");
            }
        }
        let db = rusqlite::Connection::open(copy.path().join(file)).expect("open the copy");
        verdict = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).expect("integrity check");
        if verdict == "ok" {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    verdict
}
