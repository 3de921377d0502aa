//! Streams, object storage and workflow runs on a cluster of two hosts and one real `nats-server -js`. The
//! `cluster` test component's `moves` consumer reports each stream batch it handled, and on which node, to the
//! collector; the object-probe puts, reads, copies, signs and deletes objects on one node or the other; the
//! workflow-probe's runs are started on one node, resumed by the other, and taken over when it is killed.

use crate::cluster::Cluster;
use crate::support::{Host, component_arg};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Which node delivers each shard of `moves`, as `host` describes the stream (shards no node holds are missing).
fn owners(host: &Host) -> BTreeMap<u64, String> {
    let reply = host.admin("GET", "/v1/streams/moves", None);
    if reply.status == 404 {
        return BTreeMap::new(); // no node made the stream yet
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    let consumers = reply.json()["consumers"].as_array().cloned().unwrap_or_default();
    consumers.iter().filter_map(|c| Some((c["shard"].as_u64()?, c["owner"].as_str()?.to_owned()))).collect()
}

/// Polls `done` every 200 ms until it holds; fails naming `what` after `timeout`.
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One batch of `moves` as reported: the node, the shard, and each record's key and number.
type Reported = (String, u64, Vec<(String, u64)>);

/// Every batch reported so far, in the order the collector got them.
fn batches(cluster: &Cluster) -> Vec<Reported> {
    let records = |body: &Value| -> Vec<(String, u64)> {
        let list = body["records"].as_array().expect("records");
        list.iter().map(|r| (r[0].as_str().expect("key").to_owned(), r[1].as_u64().expect("number"))).collect()
    };
    cluster
        .collector()
        .bodies("/moves")
        .iter()
        .map(|body| {
            let shard = body["shard"].as_str().and_then(|s| s.parse().ok()).expect("shard");
            (body["node"].as_str().expect("node").to_owned(), shard, records(body))
        })
        .collect()
}

#[test]
fn a_killed_nodes_stream_shards_move_to_the_other_node_and_order_per_key_holds() {
    const KEYS: u64 = 80;
    const PER_KEY: u64 = 100;
    let Some(cluster) = Cluster::new("a_killed_nodes_stream_shards_move_to_the_other_node_and_order_per_key_holds")
    else {
        return;
    };
    // A dead node's shards lapse after 2 s.
    let a = cluster.node("a", 2_000, &["cluster"]);
    let b = cluster.node("b", 2_000, &["cluster"]);
    wait_until("the four shards to be spread two and two", Duration::from_secs(60), || {
        let owners = owners(&b);
        owners.len() == 4 && owners.values().filter(|node| *node == "a").count() == 2
    });
    let held_by_a: BTreeSet<u64> = owners(&a).into_iter().filter(|(_, node)| node == "a").map(|(s, _)| s).collect();
    // Records go in through both nodes: a put on either reaches the same stream.
    for (index, from) in (0..KEYS * PER_KEY).step_by(1_000).enumerate() {
        let host = if index % 2 == 0 { &a } else { &b };
        let payload = json!({ "from": from, "count": 1_000, "keys": KEYS });
        let reply = host.admin("POST", "/v1/functions/cluster%2Ffeed_moves/invoke", Some(payload));
        assert_eq!(reply.status, 200, "feed from {from}: {}", reply.body);
    }
    // Kill node a in the middle of its share: it has delivered some batches and has more to go.
    wait_until("node a to deliver a thousand records", Duration::from_secs(120), || {
        batches(&cluster).iter().filter(|(node, _, _)| node == "a").map(|(_, _, r)| r.len()).sum::<usize>() >= 1_000
    });
    a.kill();
    let killed_at = batches(&cluster).len();
    eprintln!("killed node a after {killed_at} batches; it held shards {held_by_a:?}");
    let total = (KEYS * PER_KEY) as usize;
    wait_until("every record to be handled", Duration::from_secs(180), || {
        let handled: BTreeSet<(String, u64)> = batches(&cluster).into_iter().flat_map(|(_, _, r)| r).collect();
        handled.len() == total
    });
    let delivered = batches(&cluster);
    // Per key, in the order delivered: the next number, or one already seen (delivered again after the kill).
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut again = 0;
    for (node, shard, records) in &delivered {
        for (key, number) in records {
            match last.get(key) {
                Some(seen) if number <= seen => again += 1,
                Some(seen) => {
                    assert_eq!(*number, seen + 1, "{key}: {number} after {seen} (node {node}, shard {shard})")
                }
                None => assert_eq!(*number, 0, "{key} began at {number} (node {node}, shard {shard})"),
            }
            let entry = last.entry(key.clone()).or_insert(*number);
            *entry = (*entry).max(*number);
        }
    }
    assert!(last.values().all(|n| *n == PER_KEY - 1), "every key reached its last record: {last:?}");
    eprintln!("{} batches, {again} records delivered again", delivered.len());
    // The shards node a held went on, on node b.
    let after_kill: BTreeSet<u64> =
        delivered[killed_at..].iter().filter(|(node, _, _)| node == "b").map(|(_, shard, _)| *shard).collect();
    for shard in &held_by_a {
        assert!(after_kill.contains(shard), "shard {shard}, node a's, was not delivered by node b after the kill");
    }
    // Node b holds every shard now, and every checkpoint is at its shard's end.
    wait_until("node b to hold every shard, caught up", Duration::from_secs(30), || {
        let reply = b.admin("GET", "/v1/streams/moves", None);
        let consumers = reply.json()["consumers"].as_array().cloned().unwrap_or_default();
        consumers.len() == 4 && consumers.iter().all(|c| c["owner"] == "b" && c["behind"] == 0)
    });
    // A replay from the start, asked on the surviving node, delivers every record again.
    let replayed = b.cli_ok(&["streams", "replay", "cluster/moves", "--from", "1"]);
    assert!(replayed.contains("starts again after sequence 0"), "{replayed}");
    wait_until("every record to be delivered again", Duration::from_secs(120), || {
        let mut times: BTreeMap<(String, u64), usize> = BTreeMap::new();
        for record in batches(&cluster).into_iter().flat_map(|(_, _, r)| r) {
            *times.entry(record).or_default() += 1;
        }
        times.len() == total && times.values().all(|n| *n >= 2)
    });
}

/// Runs one operation of the object-probe (deployed as `probe`) on `host`.
fn obj(host: &Host, op: Value) -> Value {
    let reply = host.admin("POST", "/v1/functions/probe%2Fobj/invoke", Some(op.clone()));
    assert_eq!(reply.status, 200, "{op}: {}\n{}", reply.body, host.logs());
    reply.json()["result"].clone()
}

/// A key of `host`'s key-value store `seen` (each node has its own), as a number; 0 when it is not there.
fn seen_count(host: &Host, key: &str) -> u64 {
    let reply = host.admin("GET", &format!("/v1/kv/seen/keys/{}", key.replace('/', "%2F")), None);
    match reply.status {
        200 => reply.json()["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0),
        404 => 0,
        status => panic!("GET seen/{key}: {status} {}", reply.body),
    }
}

#[test]
fn objects_put_on_one_node_are_read_listed_copied_signed_and_deleted_on_the_other() {
    let Some(cluster) = Cluster::new("objects_put_on_one_node_are_read_listed_copied_signed_and_deleted_on_the_other")
    else {
        return;
    };
    // The nodes share the URL-signing key, so a URL one signs is good on the other.
    let env = [("EDGEFN_URL_SIGNING_KEY", "the cluster's test signing key")];
    let a = cluster.node_with_env("a", &[], &env);
    let b = cluster.node_with_env("b", &[], &env);
    let probe = component_arg("object_probe");
    a.cli_ok(&[
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
    wait_until("the probe to be live on node b", Duration::from_secs(60), || {
        b.admin("POST", "/v1/functions/probe%2Fobj/invoke", Some(json!({"op": "head", "bucket": "docs", "key": "x"})))
            .status
            == 200
    });

    // 5 MiB streamed in by a function on node a, read back byte for byte (in 4 MiB ranges) on node b.
    let put = obj(&a, json!({"op": "put_pattern", "bucket": "docs", "key": "big.bin", "mib": 5}));
    let checked = obj(&b, json!({"op": "check_pattern", "bucket": "docs", "key": "big.bin"}));
    assert_eq!(checked["size"], 5 << 20);
    assert_eq!(checked["etag"], put["etag"]);
    // Text, its range and its metadata, put on b and read on a; the admin API serves the bytes on either.
    obj(
        &b,
        json!({"op": "put", "bucket": "docs", "key": "notes/a.txt", "text": "hello, cluster", "content_type": "text/plain"}),
    );
    let got = obj(&a, json!({"op": "get", "bucket": "docs", "key": "notes/a.txt"}));
    assert_eq!(got["text"], "hello, cluster");
    assert_eq!(got["info"]["content_type"], "text/plain");
    assert_eq!(got["info"]["etag"], hex::encode(Sha256::digest(b"hello, cluster")));
    assert_eq!(
        obj(&a, json!({"op": "range", "bucket": "docs", "key": "notes/a.txt", "offset": 7, "length": 7}))["text"],
        "cluster"
    );
    let served = a.admin("GET", "/v1/objects/docs/notes/a.txt", None);
    assert_eq!((served.status, served.body.as_str()), (200, "hello, cluster"));
    // Copied on a, the copy read on b; listed by prefix, with paging, on either node.
    obj(
        &a,
        json!({"op": "copy", "bucket": "docs", "key": "notes/a.txt", "to_bucket": "docs", "to_key": "notes/b.txt"}),
    );
    assert_eq!(obj(&b, json!({"op": "get", "bucket": "docs", "key": "notes/b.txt"}))["text"], "hello, cluster");
    let first = obj(&b, json!({"op": "list", "bucket": "docs", "prefix": "notes/", "limit": 1}));
    assert_eq!(first["keys"], json!(["notes/a.txt"]));
    let second =
        obj(&a, json!({"op": "list", "bucket": "docs", "prefix": "notes/", "cursor": first["cursor"], "limit": 1}));
    assert_eq!((second["keys"].clone(), second["cursor"].clone()), (json!(["notes/b.txt"]), Value::Null));

    // A signed upload URL minted on node a, used by a plain HTTP client against node b.
    let signed = obj(
        &a,
        json!({"op": "sign_upload", "bucket": "photos", "key": "uploads/cat.png", "expires_ms": 60_000,
            "max_bytes": 1024, "content_type": "image/png"}),
    );
    let url = b.url(signed["url"].as_str().expect("a url"));
    let uploaded = crate::support::send("PUT", &url, &[("content-type", "image/png")], b"\x89PNG cat");
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    let head = obj(&a, json!({"op": "head", "bucket": "photos", "key": "uploads/cat.png"}));
    assert_eq!((head["size"].as_u64(), head["content_type"].as_str()), (Some(8), Some("image/png")));
    // The upload's change reached the probe's `photos` trigger, on one node or the other.
    wait_until("the upload's trigger to run", Duration::from_secs(30), || {
        seen_count(&a, "runs:uploads/cat.png") + seen_count(&b, "runs:uploads/cat.png") >= 1
    });

    // Deleted on b: gone on a. The usage both nodes report is the cluster's.
    assert_eq!(obj(&b, json!({"op": "delete", "bucket": "docs", "key": "notes/a.txt"}))["deleted"], true);
    assert_eq!(obj(&a, json!({"op": "head", "bucket": "docs", "key": "notes/a.txt"})), Value::Null);
    assert_eq!(a.admin("GET", "/v1/objects/docs/notes/a.txt", None).status, 404);
    for host in [&a, &b] {
        let usage = host.admin("GET", "/v1/objects", None).json();
        let docs = usage["buckets"].as_array().expect("buckets").iter().find(|u| u["bucket"] == "docs").cloned();
        let docs = docs.expect("bucket docs in the usage");
        assert_eq!((docs["objects"].as_u64(), docs["bytes"].as_u64()), (Some(2), Some((5 << 20) + 14)));
    }
}

/// What node b's copy of run `id` says (every node holds every run).
fn workflow_run(host: &Host, id: &str) -> Value {
    let reply = host.admin("GET", &format!("/v1/workflows/runs/{id}"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// The names of the steps run `run`'s journal holds, in order.
fn journaled_steps(run: &Value) -> Vec<String> {
    let journal = run["journal"].as_array().expect("journal");
    journal.iter().filter_map(|entry| entry["name"].as_str().map(str::to_owned)).collect()
}

/// Issue 22, item 6: one node at a time resumes the workflow runs; when it dies, another takes them over from the
/// cluster's log, and no step result is journaled twice.
#[test]
fn a_killed_nodes_workflow_runs_finish_on_the_other_node_with_each_step_journaled_once() {
    let test = "a_killed_nodes_workflow_runs_finish_on_the_other_node_with_each_step_journaled_once";
    let Some(cluster) = Cluster::new(test) else { return };
    let config = "[components.workflow_probe]\nkey_value_stores = [\"default\"]\n";
    let a = cluster.node_full("a", 3_000, &["workflow_probe"], "", config, &[]);
    a.wait_for_log("this node resumes the workflow runs");
    let b = cluster.node_full("b", 3_000, &["workflow_probe"], "", config, &[]);
    // Started through node b, which does not resume them: the cluster's log brings each start to node a.
    const RUNS: usize = 50;
    for i in 0..RUNS / 2 {
        for (workflow, input, id) in
            [("five", json!(i), format!("five-{i}")), ("nap", json!(4_000), format!("nap-{i}"))]
        {
            let body = json!({ "workflow": workflow, "input": input, "id": id });
            let started = b.admin("POST", "/v1/workflows/runs", Some(body));
            assert_eq!(started.status, 201, "{}", started.body);
        }
    }
    let count = |state: &str| crate::workflows::runs_in(&b, state).len();
    wait_until("node a to finish some runs and put the naps to sleep", Duration::from_secs(60), || {
        count("done") >= 5 && count("sleeping") >= 1
    });
    assert!(!b.logs().contains("this node resumes the workflow runs"), "node a holds the runs: b resumed none");
    let done_before = count("done");
    assert!(done_before < RUNS, "the kill comes while runs are in flight");
    a.kill();
    b.wait_for_log("this node resumes the workflow runs");
    wait_until(&format!("node b to finish all {RUNS} runs"), Duration::from_secs(90), || count("done") == RUNS);
    for i in 0..RUNS / 2 {
        let five = workflow_run(&b, &format!("five-{i}"));
        assert_eq!(five["result"], json!(15), "{five:#}");
        assert_eq!(journaled_steps(&five), ["s1", "s2", "s3", "s4", "s5"], "each step once, in order: {five:#}");
        let nap = workflow_run(&b, &format!("nap-{i}"));
        assert_eq!(nap["result"], json!("awake"), "{nap:#}");
        assert_eq!(journaled_steps(&nap), ["woke"], "{nap:#}");
    }
    eprintln!("{done_before} of {RUNS} runs done on node a when it was killed; node b finished the rest");

    // A step whose result does not fit one message of the cluster's NATS server (1 MiB by default) fails its run,
    // naming the size and the limit, instead of resuming for ever; a small one goes through.
    for (id, kib) in [("bulky-small", 4), ("bulky-big", 2_048)] {
        let body = json!({ "workflow": "bulky", "input": kib, "id": id });
        let started = b.admin("POST", "/v1/workflows/runs", Some(body));
        assert_eq!(started.status, 201, "{}", started.body);
    }
    let small = crate::workflows::wait_for_state(&b, "bulky-small", "done");
    assert_eq!(small["result"], json!(4_096), "{small:#}");
    let big = crate::workflows::wait_for_state(&b, "bulky-big", "failed");
    let error = big["error"].as_str().unwrap_or_default();
    assert!(error.contains("bytes, and the cluster's NATS server takes messages of at most"), "{big:#}");
    assert!(error.contains("max_payload"), "{big:#}");
    assert!(journaled_steps(&big).is_empty(), "nothing of the step was journaled: {big:#}");
}

/// A node stopped as an operator stops it (SIGTERM) gives the workflow runs' lease back: the other node takes the
/// runs over at once, not once the lease lapses (a minute here), and finishes them.
#[test]
fn a_node_stopped_gracefully_hands_the_workflow_runs_to_another_at_once() {
    let test = "a_node_stopped_gracefully_hands_the_workflow_runs_to_another_at_once";
    let Some(cluster) = Cluster::new(test) else { return };
    let config = "[components.workflow_probe]\nkey_value_stores = [\"default\"]\n";
    let mut a = cluster.node_full("a", 60_000, &["workflow_probe"], "", config, &[]);
    a.wait_for_log("this node resumes the workflow runs");
    let b = cluster.node_full("b", 60_000, &["workflow_probe"], "", config, &[]);
    for i in 0..4 {
        let body = json!({ "workflow": "nap", "input": 15_000, "id": format!("nap-{i}") });
        let started = b.admin("POST", "/v1/workflows/runs", Some(body));
        assert_eq!(started.status, 201, "{}", started.body);
    }
    wait_until("node a to put the naps to sleep", Duration::from_secs(30), || {
        crate::workflows::runs_in(&b, "sleeping").len() == 4
    });
    a.terminate();
    assert!(a.logs().contains("this node stops resuming the workflow runs: it is stopping"), "{}", a.logs());
    // The lease would lapse 40 to 60 s from now; node b asks for it every 20 s.
    wait_until("node b to take the runs over", Duration::from_secs(32), || {
        b.logs().contains("this node resumes the workflow runs")
    });
    wait_until("node b to finish the naps", Duration::from_secs(40), || {
        crate::workflows::runs_in(&b, "done").len() == 4
    });
}
