//! Warm starts end to end: the compiled-artifact cache across restarts, loading on demand, eviction, and the
//! instance pool's back-pressure.

use crate::support::{Host, component_arg, get, poll_until};
use std::time::Duration;

/// The `start=` field of the request log line of `reply`.
fn start_of(host: &Host, reply: &crate::support::Reply) -> String {
    let line = host.request_log_line(reply);
    line.split("start=").nth(1).expect("start field").split_whitespace().next().expect("value").to_owned()
}

#[test]
fn a_restarted_host_reuses_artifacts_and_rebuilds_a_corrupt_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let hello = component_arg("hello");
    {
        let host = Host::start_in(data.path(), &[&hello]);
        let logs = host.wait_for_log("compiled component ahead of time");
        assert!(logs.contains("compiled component ahead of time"), "{logs}");
        assert_eq!(get(&host.url("/hello/first")).body, "Hello, first!");
    }
    // The .wasm is stored by its hash, the artifact next to it.
    let stored = std::fs::read_dir(data.path().join("components")).expect("components dir").count();
    assert_eq!(stored, 1);
    {
        let host = Host::start_in(data.path(), &[&hello]);
        let logs = host.wait_for_log("reusing compiled artifact");
        assert!(logs.contains("reusing compiled artifact, no compile"), "{logs}");
        assert!(!logs.contains("compiled component ahead of time"), "{logs}");
        assert_eq!(get(&host.url("/hello/again")).body, "Hello, again!");
    }
    // Corrupt the artifact in place: the next host must notice, rebuild it and serve correctly.
    let artifact = std::fs::read_dir(data.path().join("compiled"))
        .expect("compiled dir")
        .map(|entry| entry.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("an artifact");
    let mut bytes = std::fs::read(&artifact).expect("read artifact");
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64].fill(0xAB);
    std::fs::write(&artifact, &bytes).expect("corrupt artifact");
    let host = Host::start_in(data.path(), &[&hello]);
    let logs = host.wait_for_log("compiled component ahead of time");
    assert!(logs.contains("does not match its recorded checksum; rebuilding it"), "{logs}");
    assert!(logs.contains("compiled component ahead of time"), "{logs}");
    assert_eq!(get(&host.url("/hello/rebuilt")).body, "Hello, rebuilt!");
}

#[test]
fn components_load_on_first_use_and_reload_after_eviction() {
    // Deployed in this order with room for one: hello is kept loaded from its deploy, misbehave finds no room.
    let host = Host::start(&["--max-loaded", "1", &component_arg("hello"), &component_arg("misbehave")]);
    assert!(!host.logs().contains("loaded component"), "nothing loads from disk before it is triggered");

    let first = get(&host.url("/ok"));
    assert_eq!(first.body, "still here");
    let second = get(&host.url("/ok"));
    let third = get(&host.url("/hello/three")); // hello was evicted when misbehave loaded
    assert_eq!(third.body, "Hello, three!");

    assert_eq!(start_of(&host, &first), "cold");
    assert_eq!(start_of(&host, &second), "warm");
    assert_eq!(start_of(&host, &third), "cold");
    let logs = host.wait_for_log("unloaded least recently used component");
    assert!(logs.contains("unloaded least recently used component"), "{logs}");
}

#[test]
fn a_deployed_component_is_kept_loaded_for_its_first_request_while_there_is_room() {
    let host = Host::start(&["--max-loaded", "1", &component_arg("hello"), &component_arg("misbehave")]);
    // hello took the one place at its deploy: its first request is warm, and nothing was loaded from disk for it.
    let first = get(&host.url("/hello/first"));
    assert_eq!(first.body, "Hello, first!");
    assert_eq!(start_of(&host, &first), "warm");
    assert!(!host.logs().contains("loaded component"), "{}", host.logs());
    // misbehave found no room (keeping it would have unloaded hello): its first request loads it.
    let ok = get(&host.url("/ok"));
    assert_eq!(start_of(&host, &ok), "cold");
}

#[test]
fn idle_components_are_unloaded_and_reload_on_demand() {
    let host = Host::start(&["--idle-timeout-ms", "200", &component_arg("hello")]);
    assert_eq!(get(&host.url("/hello/a")).body, "Hello, a!");
    poll_until("the idle unload", Duration::from_secs(20), || host.logs().contains("unloaded idle component"));
    let reply = get(&host.url("/hello/b"));
    assert_eq!(reply.body, "Hello, b!");
    assert_eq!(start_of(&host, &reply), "cold");
}

#[test]
fn a_full_pool_answers_503_and_the_host_recovers() {
    let host = Host::start(&[
        "--max-instances",
        "1",
        "--queue-timeout-ms",
        "100",
        "--timeout-ms",
        "4000",
        &component_arg("misbehave"),
    ]);
    let url = host.url("/loop");
    let busy = std::thread::spawn(move || get(&url).status);
    // Wait until the looping request holds the only slot (its component is loaded and instantiated).
    poll_until("the loop to start", Duration::from_secs(20), || host.instances_in_use() == 1);
    let mut saw_503 = false;
    while !busy.is_finished() && !saw_503 {
        let reply = get(&host.url("/ok"));
        saw_503 = reply.status == 503;
        if saw_503 {
            assert!(reply.body.contains("at capacity"), "{}", reply.body);
            assert_eq!(reply.header("retry-after"), Some("1"));
        }
    }
    assert!(saw_503, "no request was refused while the only slot was busy:\n{}", host.logs());
    assert_eq!(busy.join().expect("loop thread"), 504);
    assert_eq!(get(&host.url("/ok")).body, "still here");
}
