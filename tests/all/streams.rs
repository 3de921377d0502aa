//! Ordered streams on a real host: the stream-probe guest feeds streams and consumes them, checking per-key order
//! in key-value store `seen`; the host is killed mid-stream; a poison record goes to the on-failure queue; a replay
//! delivers again from a sequence; two consumers each read all of a stream.

use crate::support::{Host, component_arg, poll_until};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

fn deploy(host: &Host) {
    host.cli_ok(&["deploy", &component_arg("stream_probe"), "--name", "probe", "--kv-store", "seen"]);
}

/// Puts `count` records from `from` to `stream` in one batch through the probe's `feed`.
fn feed(host: &Host, stream: &str, from: u64, count: u64, keys: u64, poison: &[u64]) {
    let payload = json!({"stream": stream, "from": from, "count": count, "keys": keys, "poison": poison});
    let reply = host.admin("POST", "/v1/functions/probe%2Ffeed/invoke", Some(payload));
    assert_eq!(reply.status, 200, "feed {stream} from {from}: {}\n{}", reply.body, host.logs());
    assert_eq!(reply.json()["result"], count);
}

/// A key of store `seen`, as text; `None` when it is not there.
fn seen(host: &Host, key: &str) -> Option<String> {
    let reply = host.admin("GET", &format!("/v1/kv/seen/keys/{}", key.replace('/', "%2F")), None);
    match reply.status {
        200 => reply.json()["value"].as_str().map(str::to_owned),
        404 => None,
        status => panic!("GET seen/{key}: {status} {}", reply.body),
    }
}

fn count(host: &Host, key: &str) -> u64 {
    seen(host, key).map_or(0, |value| value.parse().expect("a counter"))
}

fn describe(host: &Host, stream: &str) -> Value {
    let reply = host.admin("GET", &format!("/v1/streams/{stream}"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Sum over `stream`'s shards of `consumer`'s checkpoints: how many records it has handled.
fn handled(host: &Host, stream: &str, consumer: &str) -> u64 {
    let described = describe(host, stream);
    let places = described["consumers"].as_array().cloned().unwrap_or_default();
    places.iter().filter(|c| c["consumer"] == consumer).map(|c| c["checkpoint"].as_u64().unwrap_or(0)).sum()
}

fn start(data: &Path) -> Host {
    Host::start_in(data, &[])
}

#[test]
fn a_hundred_thousand_records_over_a_thousand_keys_arrive_in_order_per_key_across_a_sigkill() {
    const KEYS: u64 = 1_000;
    const PER_KEY: u64 = 100;
    const BATCH: u64 = 1_000;
    let data = tempfile::tempdir().expect("data dir");
    let host = start(data.path());
    deploy(&host);
    let put = host.admin_bytes("PUT", "/v1/kv/seen/keys/expect", PER_KEY.to_string().as_bytes());
    assert_eq!(put.status, 200, "{}", put.body);
    let total = KEYS * PER_KEY;
    for from in (0..total / 2).step_by(BATCH as usize) {
        feed(&host, "clicks", from, BATCH, KEYS, &[]);
    }
    // Kill the host while the consumer is half-way through what is stored: no drain, no flush.
    poll_until("the consumer is under way", Duration::from_secs(120), || {
        handled(&host, "clicks", "probe/ordered") >= 10_000
    });
    eprintln!("killing the host with {} records handled", handled(&host, "clicks", "probe/ordered"));
    host.kill();
    let host = start(data.path());
    for from in (total / 2..total).step_by(BATCH as usize) {
        feed(&host, "clicks", from, BATCH, KEYS, &[]);
    }
    poll_until("every key reached its last record", Duration::from_secs(600), || count(&host, "complete") >= KEYS);
    assert_eq!(count(&host, "complete"), KEYS, "each key completes once");
    assert_eq!(seen(&host, "violations"), None, "no key saw a gap or a record out of order");
    // Every record was put once and kept; each shard's checkpoint reached its last record.
    let described = describe(&host, "clicks");
    let shards = described["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 4, "the default shard count");
    assert_eq!(shards.iter().map(|s| s["records"].as_u64().unwrap()).sum::<u64>(), total);
    poll_until("every checkpoint is at its shard's end", Duration::from_secs(30), || {
        let described = describe(&host, "clicks");
        described["consumers"].as_array().is_some_and(|places| {
            places.len() == 4 && places.iter().all(|c| c["behind"] == 0 && c["iterator_age_ms"] == 0)
        })
    });
    for key in ["k0", "k517", "k999"] {
        assert_eq!(seen(&host, &format!("last/{key}")).as_deref(), Some("100"), "{key}");
    }
}

#[test]
fn a_poison_record_goes_to_the_on_failure_queue_after_its_retries_and_its_shard_goes_on() {
    let data = tempfile::tempdir().expect("data dir");
    let host = start(data.path());
    deploy(&host);
    // 40 records over keys k0..k3; record 13 is k1's 4th and poison. Each batch holding it fails as a whole.
    feed(&host, "poison", 0, 40, 4, &[13]);
    poll_until("the poison record reached the on-failure queue", Duration::from_secs(60), || {
        seen(&host, "failed/k1/4").is_some()
    });
    poll_until("every other record was handled", Duration::from_secs(60), || {
        (0..40u64).filter(|i| *i != 13).all(|i| seen(&host, &format!("strict/k{}/{}", i % 4, i / 4 + 1)).is_some())
    });
    assert_eq!(seen(&host, "strict/k1/4"), None, "the poison record never succeeded");
    // The records after it in its shard (k1's 5th to 10th) were handled after it went on.
    for number in 5..=10 {
        assert!(seen(&host, &format!("strict/k1/{number}")).is_some(), "k1 #{number}");
    }
    let logged = host.wait_for_log("went to the on-failure queue");
    assert!(logged.contains("poison-failed") && logged.contains("failed 3 deliveries (max_retries = 2)"), "{logged}");
    assert!(logged.contains("record 4 is poison"), "the last error is named: {logged}");
}

#[test]
fn two_consumers_each_read_the_whole_stream_and_a_replay_delivers_again_from_a_sequence() {
    let data = tempfile::tempdir().expect("data dir");
    let host = start(data.path());
    deploy(&host);
    feed(&host, "tally", 0, 10, 3, &[]);
    poll_until("both consumers counted every record", Duration::from_secs(60), || {
        count(&host, "tally_a") == 10 && count(&host, "tally_b") == 10
    });
    let replayed = host.cli_ok(&["streams", "replay", "probe/tally_a", "--from", "1"]);
    assert!(replayed.contains("probe/tally_a on tally: shard 0 starts again after sequence 0"), "{replayed}");
    poll_until("tally_a read the stream again", Duration::from_secs(60), || count(&host, "tally_a") == 20);
    // The CLI puts a record too; both consumers get it, and tally_b was never replayed.
    let put = host.cli_ok(&["streams", "put", "tally", "k1", r#"{"key": "k1", "number": 99}"#]);
    assert!(put.contains("at sequence"), "{put}");
    poll_until("both consumers got the new record", Duration::from_secs(60), || {
        count(&host, "tally_a") == 21 && count(&host, "tally_b") == 11
    });
    let described = host.cli_ok(&["streams", "describe", "tally"]);
    assert!(
        described.contains("consumer probe/tally_a") && described.contains("consumer probe/tally_b"),
        "{described}"
    );
    let metrics = host.admin("GET", "/metrics", None).body;
    assert!(metrics.contains(r#"edgefn_stream_records{stream="tally"} 11"#), "{metrics}");
    assert!(metrics.contains("edgefn_stream_iterator_age_seconds{"), "{metrics}");
    // A replay names what it cannot do.
    let unknown = host.cli(&["streams", "replay", "nobody", "--from", "1"]);
    assert!(!unknown.success && unknown.stderr.contains("no stream function `nobody`"), "{}", unknown.stderr);
    let bad = host.cli(&["streams", "replay", "tally_a", "--from", "whenever"]);
    assert!(!bad.success && bad.stderr.contains("--from `whenever`"), "{}", bad.stderr);
}

#[test]
fn a_wasi_0_3_component_puts_and_consumes_streams_the_same_way() {
    use crate::support::{Abi, component_arg_for};
    let host = Host::start(&[]);
    let probe = component_arg_for(Abi::P3, "stream_probe");
    host.cli_ok(&["deploy", &probe, "--name", "probe", "--kv-store", "seen"]);
    feed(&host, "tally", 0, 12, 4, &[]);
    poll_until("both WASI 0.3 consumers counted every record", Duration::from_secs(60), || {
        count(&host, "tally_a") == 12 && count(&host, "tally_b") == 12
    });
}
