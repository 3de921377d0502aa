//! WASI 0.3 functions end to end: async handlers, bodies streamed both ways under bounded memory, server-sent
//! events, outbound calls that run at once, cancellation when the client hangs up, limits on streamed responses,
//! and instance reuse. Real hosts on 127.0.0.1, real HTTP, real origins (see `support::origin`).

use crate::support::origin::Origin;
use crate::support::wire::{connect, read_chunk, read_head};
use crate::support::{Abi, Host, component_arg, component_arg_for, get, poll_until, send};
use sha2::Digest as _;
use std::io::{BufRead as _, Read as _};
use std::time::Duration;

/// A host serving the `streaming` guest (and the WASI 0.2 `hello` next to it), allowed to reach `origin`, with
/// `extra` appended to its config.
fn host_with(origin: &Origin, extra: &str) -> (Host, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    let text = format!(
        "[components.streaming]\nallowed_outbound_hosts = [\"{}\"]\nkey_value_stores = [\"drips\"]\n{extra}",
        origin.authority
    );
    std::fs::write(&config, text).expect("write config");
    let host = Host::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        &component_arg("streaming"),
        &component_arg_for(Abi::P2, "hello"),
    ]);
    (host, dir)
}

/// A value of the `drips` store, as a number (0 when absent).
fn drips(host: &Host, key: &str) -> u64 {
    let reply = host.admin("GET", &format!("/v1/kv/drips/keys/{key}"), None);
    match reply.status {
        404 => 0,
        200 => reply.json()["value"].as_str().expect("a text value").parse().expect("a number"),
        other => panic!("reading {key}: {other} {}", reply.body),
    }
}

/// The host process's resident memory, in KiB.
fn rss_kib(host: &Host) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).expect("the host's status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).expect("a number").parse().expect("KiB")
}

/// Watches the host's resident memory until dropped; [`RssWatch::peak_growth_mib`] is how far it rose above where it
/// started.
struct RssWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
    start_kib: u64,
}

impl RssWatch {
    fn start(host: &Host) -> Self {
        let pid = host.pid();
        let start_kib = rss_kib(host);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    && let Some(kib) = status
                        .lines()
                        .find(|l| l.starts_with("VmRSS:"))
                        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                {
                    peak = peak.max(kib);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        Self { stop, thread: Some(thread), start_kib }
    }

    fn peak_growth_mib(mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let peak = self.thread.take().expect("the watcher").join().expect("the watcher");
        peak.saturating_sub(self.start_kib) >> 10
    }
}

#[test]
fn async_and_sync_handlers_of_a_wasip3_component_answer_next_to_a_wasip2_component() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let reply = get(&host.url("/s/hello"));
    assert_eq!((reply.status, reply.body.as_str()), (200, "hello from an async handler"));
    let reply = send("GET", &host.url("/s/sync-hello"), &[], b"");
    assert_eq!(reply.body, "hello from a sync handler, 0 body bytes");
    let reply = send("POST", &host.url("/s/json"), &[], br#"{"a":[1,2]}"#);
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"a":[1,2]}"#));
    let reply = send("POST", &host.url("/s/json-async"), &[], br#"{"b":true}"#);
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"got":{"b":true}}"#));
    // The WASI 0.2 component next to it is unchanged.
    assert_eq!(get(&host.url("/hello/ada")).body, "Hello, ada!");
    // An async handler's correlation id is its request's, after its awaits too.
    let reply = send("GET", &host.url("/s/correlation"), &[("x-request-id", "trace-me-42")], b"");
    assert_eq!(reply.body, "trace-me-42");
    // Async invoke, of an async invoke function; and an async queue consumer.
    assert_eq!(get(&host.url("/s/add/2/40")).body, "42");
    let reply = send("POST", &host.url("/s/jobs/7"), &[("x-request-id", "job-seven")], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    poll_until("the async consumer to take job 7", Duration::from_secs(20), || {
        host.admin("GET", "/v1/kv/drips/keys/job-7", None).status == 200
    });
    let stored = host.admin("GET", "/v1/kv/drips/keys/job-7", None).json();
    assert_eq!(stored["value"], "job-seven", "the consumer ran under the sender's correlation id");
}

#[test]
fn a_gibibyte_streams_in_to_a_guest_that_hashes_it_and_out_of_one_that_makes_it_in_bounded_memory() {
    let _turn = crate::support::one_at_a_time();
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "[limits]\nmax_body_bytes = 2147483648\nmax_buffered_body_mb = 2048\n");
    const GIB: u64 = 1 << 30;
    // In: a chunked upload the guest hashes piece by piece.
    let watch = RssWatch::start(&host);
    let mut expected = sha2::Sha256::new();
    let pattern: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    for _ in 0..1024 {
        expected.update(&pattern);
    }
    let expected = hex::encode(expected.finalize());
    let upload = std::io::Read::take(Pattern { pattern: pattern.clone(), at: 0 }, GIB);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(300)).build();
    let reply = agent.post(&host.url("/s/hash")).send(upload).expect("upload");
    let answer: serde_json::Value = serde_json::from_str(&reply.into_string().expect("body")).expect("json");
    assert_eq!(answer["bytes"], GIB, "{answer}");
    assert_eq!(answer["sha256"], expected.as_str(), "{answer}");
    assert!(answer["chunks"].as_u64().expect("chunks") > 1, "it arrived in pieces: {answer}");
    let growth = watch.peak_growth_mib();
    assert!(growth < 64, "the host's memory grew by {growth} MiB while a GiB streamed in");
    // Out: a GiB the guest makes while it is sent.
    let watch = RssWatch::start(&host);
    let response = agent.get(&host.url(&format!("/s/generate/{GIB}"))).call().expect("download");
    let mut reader = response.into_reader();
    let mut buffer = vec![0; 1 << 20];
    let (mut received, mut good) = (0u64, true);
    loop {
        let n = reader.read(&mut buffer).expect("read the body");
        if n == 0 {
            break;
        }
        good &=
            buffer[..n].iter().enumerate().all(|(i, b)| *b == b'0' + ((received as usize + i) % (64 << 10) % 10) as u8);
        received += n as u64;
    }
    assert_eq!(received, GIB);
    assert!(good, "the bytes are the ones the guest wrote, in order");
    let growth = watch.peak_growth_mib();
    assert!(growth < 64, "the host's memory grew by {growth} MiB while a GiB streamed out");
}

/// A reader that yields its pattern forever.
struct Pattern {
    pattern: Vec<u8>,
    at: usize,
}

impl std::io::Read for Pattern {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.pattern.len() - self.at);
        out[..n].copy_from_slice(&self.pattern[self.at..self.at + n]);
        self.at = (self.at + n) % self.pattern.len();
        Ok(n)
    }
}

#[test]
fn a_failure_after_a_streamed_request_body_is_recorded_saying_its_input_was_not_kept() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "record_failures = true\n");
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    // A chunked upload (no length) is streamed to the guest; the guest reads all of it, then fails.
    let failed = agent
        .post(&host.url("/s/fail-after-reading"))
        .set("x-request-id", "streamed-fail")
        .send(std::io::Cursor::new(vec![b's'; 200_000]));
    assert!(matches!(failed, Err(ureq::Error::Status(500, _))), "expected a 500, got {failed:?}");
    let says = |records: &[serde_json::Value], text: &str| {
        records.iter().any(|r| r["message"].as_str().is_some_and(|m| m.contains(text)))
    };
    let recorded = "recorded without its input: the function read the request body as a stream, so the host never \
                    held it whole";
    poll_until("the failure's record", Duration::from_secs(20), || says(&host.work_log("streamed-fail"), recorded));
    // The guest did read the whole stream before it failed.
    let records = host.work_log("streamed-fail");
    assert!(says(&records, "read 200000 bytes, then failed on purpose"), "{records:#?}");
    let refused = host.cli(&["replay", "streamed-fail"]);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains("the function read its request body as a stream"), "{}", refused.stderr);
}

#[test]
fn a_reused_instance_that_computed_long_and_went_idle_does_not_keep_the_cpu_lane_from_others() {
    // One CPU lane. The reused instance computes long enough to need the lane, answers, and then idles for a minute;
    // a fresh instance of another function then needs the lane too. Were the idle instance still holding it, the
    // second would wait for it past its 3 s deadline: a 504.
    let origin = Origin::start();
    let extra = "\n[components.streaming.functions.compute_reused]\nreuse = { idle_ms = 60000 }\n\n\
                 [components.streaming.functions.compute_fresh]\ntimeout_ms = 3000\n\n[limits]\ncpu_lanes = 1\n";
    let (host, _dir) = host_with(&origin, extra);
    let first = get(&host.url("/s/compute-reused/100"));
    assert_eq!((first.status, first.body.as_str()), (200, "computed 100 ms"));
    let second = get(&host.url("/s/compute-fresh/100"));
    assert_eq!((second.status, second.body.as_str()), (200, "computed 100 ms"), "the lane was never given back");
}

#[test]
fn a_request_body_is_echoed_as_it_arrives() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
    // A chunked upload (no length): the guest passes each piece back as it comes.
    let response = agent.post(&host.url("/s/echo")).send(std::io::Cursor::new(body.clone())).expect("echo");
    let mut echoed = Vec::new();
    response.into_reader().read_to_end(&mut echoed).expect("read");
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "the echo differs from what was sent");
}

#[test]
fn server_sent_events_arrive_as_they_are_sent_with_keep_alive_comments_between() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let mut reader = connect(&host, "GET /s/sse/3?every_ms=600&keepalive_ms=100 HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let head = read_head(&mut reader);
    assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
    assert!(head.iter().any(|h| h.eq_ignore_ascii_case("content-type: text/event-stream")), "{head:?}");
    assert!(head.iter().any(|h| h.eq_ignore_ascii_case("transfer-encoding: chunked")), "{head:?}");
    // The first event arrives while the others are not made yet (the guest waits 600 ms between them).
    let first = String::from_utf8(read_chunk(&mut reader).expect("the first event")).expect("utf-8");
    assert_eq!(first, "event: tick\nid: 0\ndata: tick 0\n\n");
    let mut rest = String::new();
    while let Some(chunk) = read_chunk(&mut reader) {
        rest.push_str(&String::from_utf8(chunk).expect("utf-8"));
    }
    // Events as a browser reads them: blocks of fields, comments left out.
    let wire = format!("{first}{rest}");
    let events: Vec<Vec<&str>> = wire
        .split("\n\n")
        .map(|block| block.lines().filter(|line| !line.starts_with(':')).collect::<Vec<_>>())
        .filter(|fields| !fields.is_empty())
        .collect();
    assert_eq!(
        events,
        [
            ["event: tick", "id: 0", "data: tick 0"],
            ["event: tick", "id: 1", "data: tick 1"],
            ["event: tick", "id: 2", "data: tick 2"]
        ]
    );
    let comments = rest.matches(": keep-alive\n\n").count();
    assert!(comments >= 2, "a quiet stream gets keep-alive comments: {rest:?}");
}

#[test]
fn outbound_calls_awaited_together_run_at_once_and_carry_the_correlation_id() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let url = |path: &str| format!("{}{path}", origin.url);
    let query = format!("url={}&url={}&url={}", url("/delay/400"), url("/delay/400"), url("/delay/400"));
    let reply = send("GET", &host.url(&format!("/s/fanout?{query}")), &[("x-request-id", "fan-out-1")], b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answers = reply.json()["answers"].as_array().cloned().expect("answers");
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|a| a["body"] == "origin waited 400 ms"), "{answers:?}");
    assert_eq!(origin.most_at_once(), 3, "the three calls were at the origin at the same time");
    for headers in origin.headers("/delay/400") {
        assert_eq!(headers.get("x-request-id").map(String::as_str), Some("fan-out-1"), "{headers:?}");
        let traceparent = headers.get("traceparent").expect("a traceparent");
        assert!(traceparent.starts_with("00-") && traceparent.ends_with("-01"), "{traceparent}");
    }
}

#[test]
fn an_outbound_call_past_its_timeout_is_cancelled_and_answers_504() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let target = format!("{}/delay/5000", origin.url);
    let reply = get(&host.url(&format!("/s/fetch-timeout?url={target}&timeout_ms=100")));
    assert_eq!(reply.status, 504, "{}", reply.body);
    // A call the guest may not make is refused, whatever it awaits.
    let reply = get(&host.url("/s/fanout?url=http://127.0.0.1:9/"));
    assert_eq!(reply.status, 500, "{}", reply.body);
    host.wait_for_log("outbound request denied");
}

#[test]
fn a_client_that_hangs_up_cancels_the_guest_and_its_metering() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    let mut reader = connect(
        &host,
        "GET /s/drip?n=1000&every_ms=20&key=gone HTTP/1.1\r\nHost: {host}\r\nx-request-id: hang-up\r\n\r\n",
    );
    read_head(&mut reader);
    for line in 0..3 {
        let chunk = read_chunk(&mut reader).expect("a line");
        assert_eq!(String::from_utf8(chunk).expect("utf-8"), format!("line {line}\n"));
    }
    drop(reader);
    // The invocation's record is stored once its instance is gone: from then on, nothing more can be written.
    let records = host.work_log("hang-up");
    let record = records.iter().find(|r| r["kind"] == "invocation").expect("an invocation record");
    let message = record["message"].as_str().expect("message");
    assert!(message.contains(": cancelled 200 in "), "{message}");
    let written = drips(&host, "gone");
    assert!((3..1000).contains(&written), "the guest stopped soon after the client went: {written} lines");
}

#[test]
fn a_client_that_reads_nothing_holds_the_guest_back_until_its_response_is_abandoned() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "[limits]\nresponse_write_timeout_ms = 1000\n");
    let total = 512u64 << 20;
    let reader = connect(
        &host,
        &format!("GET /s/produce/{total}?key=stalled HTTP/1.1\r\nHost: {{host}}\r\nx-request-id: stalled\r\n\r\n"),
    );
    // Nothing is read; the host gives up on the client after a second, and the guest with it.
    let records = host.work_log("stalled");
    let message = records.iter().find(|r| r["kind"] == "invocation").expect("a record")["message"].clone();
    assert!(message.as_str().expect("message").contains(": cancelled 200"), "{message}");
    let produced_mib = drips(&host, "produced-stalled") * 64 / 1024;
    assert!(produced_mib < 64, "a client reading nothing let the guest make {produced_mib} of {} MiB", total >> 20);
    drop(reader);
}

#[test]
fn a_streamed_response_past_max_stream_bytes_is_cut_short() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "[limits]\nmax_stream_bytes = 1048576\n");
    let mut reader = connect(&host, "GET /s/generate/4194304 HTTP/1.1\r\nHost: {host}\r\n\r\n");
    read_head(&mut reader);
    let mut received = 0;
    let cut = loop {
        let mut size = String::new();
        match reader.read_line(&mut size) {
            Ok(0) | Err(_) => break true,
            Ok(_) => {}
        }
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else { break true };
        if size == 0 {
            break false;
        }
        let mut chunk = vec![0; size + 2];
        if reader.read_exact(&mut chunk).is_err() {
            break true;
        }
        received += size;
    };
    assert!(cut, "the response ended as if complete after {received} bytes");
    assert!(received <= 1 << 20, "{received} bytes got through a 1 MiB limit");
    host.wait_for_log("passed limits.max_stream_bytes");
}

#[test]
fn by_default_every_request_gets_a_fresh_instance() {
    let origin = Origin::start();
    let (host, _dir) = host_with(&origin, "");
    for _ in 0..5 {
        assert_eq!(get(&host.url("/s/counter")).body, "1");
    }
}

#[test]
fn with_reuse_an_instance_serves_up_to_max_requests_then_a_new_one_takes_over() {
    let origin = Origin::start();
    let extra =
        "[components.streaming.functions.counter]\nreuse = { max_requests = 3, max_concurrent = 1, idle_ms = 60000 }\n";
    let (host, _dir) = host_with(&origin, extra);
    let served: Vec<String> = (0..7).map(|_| get(&host.url("/s/counter")).body).collect();
    assert_eq!(served, ["1", "2", "3", "1", "2", "3", "1"]);
    // Other functions of the component keep a fresh instance per request.
    assert_eq!(get(&host.url("/s/counted")).body, "1");
    assert_eq!(get(&host.url("/s/counted")).body, "1");
}

#[test]
fn a_trap_fails_only_the_requests_of_its_instance_and_the_next_request_gets_a_new_one() {
    let origin = Origin::start();
    let extra = "[components.streaming.functions.counted]\nreuse = { max_requests = 100, max_concurrent = 1, idle_ms = 60000 }\n";
    let (host, _dir) = host_with(&origin, extra);
    assert_eq!(get(&host.url("/s/counted")).body, "1");
    assert_eq!(get(&host.url("/s/counted")).body, "2");
    let trapped = get(&host.url("/s/counted?trap=1"));
    assert_eq!(trapped.status, 500, "{}", trapped.body);
    assert_eq!(get(&host.url("/s/counted")).body, "1", "a new instance after the trap");
    assert_eq!(get(&host.url("/s/counted")).body, "2");
    let logs = host.wait_for_log("trapping on request 3 of this instance");
    assert!(logs.contains(trapped.header("x-request-id").expect("id")), "the trap is logged with its request id");
}

#[test]
fn on_a_reused_instance_logs_metering_and_correlation_ids_stay_per_request() {
    let origin = Origin::start();
    let extra =
        "[components.streaming.functions.whoami]\nreuse = { max_requests = 10, max_concurrent = 1, idle_ms = 60000 }\n";
    let (host, _dir) = host_with(&origin, extra);
    let first = send("GET", &host.url("/s/whoami"), &[("x-request-id", "who-first")], b"");
    let second = send("GET", &host.url("/s/whoami"), &[("x-request-id", "who-second")], b"");
    assert_eq!((first.body.as_str(), second.body.as_str()), ("1", "2"), "one instance served both");
    for (id, nth) in [("who-first", 1), ("who-second", 2)] {
        let records = host.work_log(id);
        let said: Vec<&str> =
            records.iter().filter(|r| r["kind"] == "stdout").filter_map(|r| r["message"].as_str()).collect();
        assert_eq!(said, [format!("serving {id} as request {nth} of this instance")], "{records:#?}");
        let invocations: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "invocation").collect();
        assert_eq!(invocations.len(), 1, "{records:#?}");
        assert!(invocations[0]["message"].as_str().expect("message").contains(": ok 200 in "), "{invocations:?}");
    }
    let metered = || {
        let usage = host.admin("GET", "/v1/usage?function=streaming/whoami", None).json();
        usage["usage"]
            .as_array()
            .expect("usage rows")
            .iter()
            .map(|row| row["invocations"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    poll_until("both requests to be metered, each on its own", Duration::from_secs(20), || metered() == 2);
}

#[test]
fn a_deploy_retires_the_old_versions_reused_instances_once_they_drain() {
    let origin = Origin::start();
    let extra = "[components.streaming.functions.counter]\nreuse = { max_requests = 1000, max_concurrent = 4, idle_ms = 600000 }\n";
    let (host, _dir) = host_with(&origin, extra);
    assert_eq!(get(&host.url("/s/counter")).body, "1");
    assert_eq!(get(&host.url("/s/counter")).body, "2");
    assert_eq!(host.instances_in_use(), 1, "the reused instance waits for more (idle for up to ten minutes)");
    // A new version (another environment): the old one's idle instance is retired, not kept for its idle time.
    host.cli_ok(&["deploy", &component_arg("streaming"), "--name", "streaming", "--env", "VERSION=2"]);
    poll_until("the old version's reused instance to be retired", Duration::from_secs(20), || {
        host.instances_in_use() == 0
    });
    assert_eq!(get(&host.url("/s/counter")).body, "1", "the new version starts its own instance");
}

#[test]
fn instance_reuse_is_refused_for_a_wasip2_component() {
    let host = Host::start(&[]);
    let refused = host.cli(&[
        "deploy",
        &component_arg_for(Abi::P2, "hello"),
        "--name",
        "hello2",
        "--function-reuse",
        "hello=max_requests=4",
    ]);
    assert!(!refused.success, "{}", refused.stdout);
    assert!(refused.stderr.contains("needs a WASI 0.3 component"), "{}", refused.stderr);
    assert!(refused.stderr.contains("hello2/hello"), "{}", refused.stderr);
}
