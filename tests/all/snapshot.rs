//! Snapshots: `#[edgefn::init]` runs once at deploy, every invocation starts from the memory it left, and nothing
//! random is shared between instances restored from it.

use crate::support::{Host, component_arg, get};

#[test]
fn init_runs_once_at_deploy_and_every_request_starts_from_the_snapshot() {
    let data = tempfile::tempdir().expect("temp dir");
    let heavy = component_arg("heavy_init");
    {
        let host = Host::start_in(data.path(), &[&heavy]);
        let logs = host.wait_for_log("ran init and took the snapshot");
        assert_eq!(logs.matches("ran init and took the snapshot").count(), 1, "{logs}");
        // Each request is a fresh instance; each sees init's effects exactly once, and init never runs again.
        for _ in 0..3 {
            assert_eq!(get(&host.url("/heavy/init-count")).body, "1");
        }
        let entry = get(&host.url("/heavy/lookup/3"));
        assert_eq!(entry.status, 200);
        assert!(entry.body.parse::<u64>().is_ok(), "{}", entry.body);
        assert_eq!(host.logs().matches("ran init and took the snapshot").count(), 1);
    }
    // A restart maps the snapshot's artifact: no init, no compile.
    let host = Host::start_in(data.path(), &[&heavy]);
    let logs = host.wait_for_log("reusing compiled artifact");
    assert!(!logs.contains("ran init") && !logs.contains("compiled component ahead of time"), "{logs}");
    assert_eq!(get(&host.url("/heavy/init-count")).body, "1");
}

#[test]
fn instances_from_one_snapshot_share_no_random_values_or_hash_keys() {
    let host = Host::start(&[&component_arg("heavy_init")]);
    let ids: Vec<String> = (0..4).map(|_| get(&host.url("/heavy/random")).body).collect();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id.len(), 32, "{id}");
        assert!(!ids[i + 1..].contains(id), "two instances drew the same random id: {ids:?}");
    }
    let hashes: Vec<String> = (0..4).map(|_| get(&host.url("/heavy/hash")).body).collect();
    for (i, hash) in hashes.iter().enumerate() {
        assert!(!hashes[i + 1..].contains(hash), "two instances hashed with the same keys: {hashes:?}");
    }
}

#[test]
fn a_failing_init_refuses_the_deploy_with_its_error() {
    let Err((code, output)) = Host::try_start(&[&component_arg("bad_init")], &[]) else {
        panic!("a component whose init fails was deployed");
    };
    assert_ne!(code, Some(0));
    assert!(output.contains("refused") && output.contains("bad_init.wasm"), "{output}");
    assert!(output.contains("init failed"), "{output}");
    assert!(output.contains("cannot load the routing table: bundled data is empty"), "{output}");
}

#[test]
fn without_snapshots_init_runs_in_every_instance_before_its_first_request() {
    let host = Host::start(&["--no-snapshot", &component_arg("heavy_init")]);
    for _ in 0..2 {
        // A fresh instance per request, each running init itself: the count is 1 every time, never 0 or 2.
        assert_eq!(get(&host.url("/heavy/init-count")).body, "1");
    }
    let logs = host.wait_for_log("compiled component ahead of time");
    assert!(!logs.contains("ran init and took the snapshot"), "{logs}");
}
