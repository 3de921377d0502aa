//! Live deployments end to end: `edgefn deploy`, `versions`, `rollback`, `promote`, `undeploy` against a running
//! host, with real components over real HTTP, a real SQLite file and a real collector the functions report to.
//!
//! The `versioned` test component answers and reports with `TAG`, which each version is deployed with, so every
//! answer, cron run and queue delivery says which version produced it.

use crate::support::{Collector, Host, component_arg, get, post, send};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Deploys the `versioned` component tagged `tag`, reporting to `collector` if given.
fn deploy_versioned(host: &Host, tag: &str, collector: Option<&Collector>, extra: &[&str]) -> String {
    let wasm = component_arg("versioned");
    let env_tag = format!("TAG={tag}");
    let mut args = vec!["deploy", wasm.as_str(), "--env", env_tag.as_str()];
    let env_collector;
    if let Some(collector) = collector {
        env_collector = format!("COLLECTOR_URL={}", collector.url);
        args.extend(["--env", env_collector.as_str(), "--allow-host", collector.authority.as_str()]);
    }
    args.extend(extra);
    host.cli_ok(&args)
}

fn who(host: &Host) -> String {
    let reply = get(&host.url("/versioned/who"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The tags a client saw, in order, collapsed: `[v1, v1, v2, v2, v1]` is `[v1, v2, v1]`.
fn runs_of(tags: &[String]) -> Vec<String> {
    let mut runs: Vec<String> = Vec::new();
    for tag in tags {
        if runs.last() != Some(tag) {
            runs.push(tag.clone());
        }
    }
    runs
}

#[test]
fn a_deploy_and_a_rollback_switch_versions_with_no_failed_request_and_no_mix() {
    let host = Host::start(&[]);
    assert!(deploy_versioned(&host, "v1", None, &[]).contains("deployed versioned version 1"));
    assert_eq!(who(&host), "v1");

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (host.url("/versioned/who"), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let reply = get(&url);
                    seen.push((reply.status, reply.body));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let deployed = deploy_versioned(&host, "v2", None, &[]);
    assert!(deployed.contains("deployed versioned version 2"), "{deployed}");
    // Once the deploy has answered, every new request gets the new version.
    assert_eq!(who(&host), "v2");
    std::thread::sleep(Duration::from_millis(300));
    let rolled_back = host.cli_ok(&["rollback", "versioned"]);
    assert!(rolled_back.contains("version 1 is live"), "{rolled_back}");
    assert_eq!(who(&host), "v1");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for client in clients {
        let seen = client.join().expect("client thread");
        total += seen.len();
        let failed: Vec<_> = seen.iter().filter(|(status, _)| *status != 200).collect();
        assert!(failed.is_empty(), "failed requests during the switches: {failed:?}");
        let tags: Vec<String> = seen.into_iter().map(|(_, body)| body).collect();
        // Each client's requests follow one another: v1, then v2 once the deploy switched, then v1 again after
        // the rollback, never back and forth.
        assert_eq!(runs_of(&tags), ["v1", "v2", "v1"], "{tags:?}");
    }
    assert!(total > 100, "the clients made only {total} requests");
    // Every request log line names the version that served it.
    let reply = get(&host.url("/versioned/who"));
    assert!(host.request_log_line(&reply).contains("version=1"), "{}", host.request_log_line(&reply));
}

#[test]
fn a_request_in_flight_finishes_on_the_version_it_started_on() {
    let collector = Collector::start();
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", Some(&collector), &[]);
    // It waits until the test opens a gate, then invokes a function of its own component: after the switch, that
    // must still be version 1.
    let url = host.url("/versioned/slow-invoke?gate=switched");
    let slow = std::thread::spawn(move || get(&url));
    collector.wait_for("/waiting", Duration::from_secs(10), |waiting| !waiting.is_empty());
    deploy_versioned(&host, "v2", Some(&collector), &[]);
    assert_eq!(who(&host), "v2");
    assert!(!slow.is_finished(), "the slow request ended before the switch: this test checked nothing");
    collector.open_gate("switched");
    let reply = slow.join().expect("slow request");
    assert_eq!((reply.status, reply.body.as_str()), (200, "v1 then v1"), "the request in flight was cut or mixed");
    assert_eq!(get(&host.url("/versioned/slow-invoke")).body, "v2 then v2");
}

#[test]
fn queue_messages_and_cron_ticks_cross_deploys_with_none_lost_or_doubled() {
    let collector = Collector::start();
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", Some(&collector), &[]);
    // Messages are sent one by one, by HTTP traffic, for as long as the deploys take.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (base, sending) = (host.url("/versioned/enqueue"), sending.clone());
        std::thread::spawn(move || {
            let mut sent = 0u64;
            while sending.load(Ordering::Relaxed) || sent < 200 {
                let reply = post(&format!("{base}/{sent}"), "");
                if reply.status != 202 {
                    return Err(format!("enqueue {sent}: {} {}", reply.status, reply.body));
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(sent)
        })
    };
    std::thread::sleep(Duration::from_millis(1_500));
    deploy_versioned(&host, "v2", Some(&collector), &[]);
    std::thread::sleep(Duration::from_millis(1_500));
    deploy_versioned(&host, "v3", Some(&collector), &[]);
    std::thread::sleep(Duration::from_millis(1_500));
    sending.store(false, Ordering::Relaxed);
    let sent = sender.join().expect("sender").unwrap_or_else(|error| panic!("{error}\nhost log:\n{}", host.logs()));

    let reports = collector.wait_for("/work", Duration::from_secs(30), |reports| {
        let done: BTreeSet<u64> = reports
            .iter()
            .flat_map(|r| r["numbers"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_u64())
            .collect();
        done.len() as u64 >= sent
    });
    let mut handled: BTreeMap<u64, usize> = BTreeMap::new();
    let mut tags = BTreeSet::new();
    for report in &reports {
        tags.insert(report["tag"].as_str().unwrap_or_default().to_owned());
        for n in report["numbers"].as_array().into_iter().flatten() {
            *handled.entry(n.as_u64().expect("number")).or_default() += 1;
        }
    }
    let missing: Vec<u64> = (0..sent).filter(|n| !handled.contains_key(n)).collect();
    assert!(missing.is_empty(), "lost messages: {missing:?}");
    let doubled: Vec<(&u64, &usize)> = handled.iter().filter(|(_, count)| **count > 1).collect();
    assert!(doubled.is_empty(), "messages handled twice across the deploys: {doubled:?}\nhost log:\n{}", host.logs());
    assert!(tags.contains("v1") && tags.contains("v3"), "versions that handled messages: {tags:?}");

    // The per-second cron job: one run per tick, whichever version ran it, and no tick missing between the first
    // and the last one reported.
    let ticks = collector.bodies("/tick");
    let mut by_tick: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for tick in &ticks {
        let scheduled = tick["scheduled_at"].as_u64().expect("scheduled_at");
        by_tick.entry(scheduled).or_default().push(tick["tag"].as_str().unwrap_or_default().to_owned());
    }
    let doubled: Vec<_> = by_tick.iter().filter(|(_, tags)| tags.len() > 1).collect();
    assert!(doubled.is_empty(), "ticks that ran twice: {doubled:?}");
    let (first, last) = (*by_tick.keys().next().expect("a tick"), *by_tick.keys().last().expect("a tick"));
    let missing: Vec<u64> =
        (first / 1000..=last / 1000).map(|s| s * 1000).filter(|t| !by_tick.contains_key(t)).collect();
    assert!(missing.is_empty(), "ticks missed across the deploys: {missing:?} in {by_tick:?}");
    assert!(by_tick.len() >= 4, "{by_tick:?}");
    let tick_tags: BTreeSet<&String> = by_tick.values().flatten().collect();
    assert!(tick_tags.len() >= 2, "the ticks were all run by one version: {by_tick:?}");
}

#[test]
fn a_failing_deploy_is_refused_with_its_reason_and_the_old_version_keeps_serving() {
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", None, &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    let garbage = dir.path().join("versioned.wasm");
    std::fs::write(&garbage, b"not a component at all").expect("write");

    let refused = host.cli(&["deploy", garbage.to_str().expect("utf-8")]);
    assert!(
        !refused.success && refused.stderr.contains("422") && refused.stderr.contains("not a WebAssembly file"),
        "{refused:?}"
    );
    let bad_init = component_arg("bad_init");
    let refused = host.cli(&["deploy", &bad_init, "--name", "versioned"]);
    assert!(!refused.success && refused.stderr.contains("init failed"), "{refused:?}");
    let refused = host.cli(&["deploy", &component_arg("versioned"), "--memory-mb", "100000"]);
    assert!(refused.stderr.contains("memory_mb = 100000 is outside 1..=512"), "{refused:?}");
    let refused = host.cli(&["deploy", &component_arg("versioned"), "--function-timeout-ms", "nope=5"]);
    assert!(refused.stderr.contains("no such function"), "{refused:?}");
    // A route another component already serves.
    host.cli_ok(&["deploy", &component_arg("hello")]);
    let refused = host.cli(&["deploy", &component_arg("hello"), "--name", "hello2"]);
    assert!(
        !refused.success && refused.stderr.contains("409") && refused.stderr.contains("already claimed by `hello/"),
        "{refused:?}"
    );
    assert_eq!(who(&host), "v1");
    assert_eq!(get(&host.url("/hello/ada")).body, "Hello, ada!");
    // None of the refused deploys left a version behind.
    let versions = host.cli_ok(&["versions", "versioned"]);
    assert_eq!(versions.lines().count(), 2, "a header and one version: {versions}");
    assert!(versions.contains("live"), "{versions}");
}

#[test]
fn undeploy_stops_routes_and_triggers_but_keeps_versions_queues_and_messages() {
    let collector = Collector::start();
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", Some(&collector), &[]);
    collector.wait_for("/tick", Duration::from_secs(10), |ticks| !ticks.is_empty());
    let undeployed = host.cli_ok(&["undeploy", "versioned"]);
    assert!(undeployed.contains("undeployed versioned"), "{undeployed}");
    let undeployed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    assert_eq!(get(&host.url("/versioned/who")).status, 404);
    // Its queue stays, and takes messages: they wait for a consumer.
    host.cli_ok(&["send", "versioned-work", "4242"]);
    let queues = host.cli_ok(&["queues"]);
    let line = queues.lines().find(|l| l.starts_with("versioned-work")).unwrap_or_else(|| panic!("{queues}"));
    assert_eq!(line.split_whitespace().nth(1), Some("1"), "one ready message: {queues}");
    std::thread::sleep(Duration::from_millis(2_500));
    let redeployed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    // Deploying the same version again makes it live again (no new version), and its consumer takes the message.
    let redeployed = deploy_versioned(&host, "v1", Some(&collector), &[]);
    assert!(redeployed.contains("unchanged, version 1"), "{redeployed}");
    collector.wait_for("/work", Duration::from_secs(10), |reports| {
        reports.iter().any(|r| r["numbers"].as_array().is_some_and(|n| n.contains(&Value::from(4242))))
    });
    // The collector sees ticks again (it is listening), but none for the seconds the component was undeployed.
    collector.wait_for("/tick", Duration::from_secs(10), |ticks| {
        ticks.iter().any(|t| u128::from(t["scheduled_at"].as_u64().unwrap_or(0)) > redeployed_at)
    });
    let during: Vec<Value> = collector
        .bodies("/tick")
        .into_iter()
        .filter(|t| {
            let at = u128::from(t["scheduled_at"].as_u64().unwrap_or(0));
            at > undeployed_at + 1_000 && at + 1_000 < redeployed_at
        })
        .collect();
    assert!(during.is_empty(), "cron ran while undeployed: {during:?}");
}

#[test]
fn a_restarted_host_brings_back_exactly_what_was_live_without_compiling() {
    let data = tempfile::tempdir().expect("temp dir");
    {
        let host = Host::start_in(data.path(), &[]);
        deploy_versioned(&host, "v1", None, &[]);
        deploy_versioned(&host, "v2", None, &[]);
        host.cli_ok(&["deploy", &component_arg("hello")]);
        host.cli_ok(&["undeploy", "hello"]);
        assert_eq!(who(&host), "v2");
        host.kill();
    }
    let host = Host::start_in(data.path(), &[]);
    // The log arrives on stderr, read by another thread than the banner: wait for it rather than race it.
    let logs = host.wait_for_log("restored what was live");
    assert!(logs.contains("restored what was live"), "{logs}");
    assert!(logs.contains("reusing compiled artifact, no compile"), "{logs}");
    assert!(!logs.contains("compiled component ahead of time") && !logs.contains("ran init"), "{logs}");
    assert_eq!(who(&host), "v2");
    assert_eq!(get(&host.url("/hello/ada")).status, 404, "an undeployed component stays undeployed");
    let versions = host.cli_ok(&["versions", "versioned"]);
    assert!(versions.lines().nth(1).is_some_and(|l| l.contains(" 2 ") && l.contains("live")), "{versions}");
}

#[test]
fn a_canary_takes_its_share_until_promoted_or_rolled_back() {
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", None, &[]);
    let canary = deploy_versioned(&host, "v2", None, &["--canary", "10"]);
    assert!(canary.contains("canary taking 10%"), "{canary}");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..1_000 {
        *counts.entry(who(&host)).or_default() += 1;
    }
    let to_canary = counts.get("v2").copied().unwrap_or(0);
    assert!((50..=150).contains(&to_canary), "10% asked, {to_canary} of 1,000 went to the canary: {counts:?}");
    let versions = host.cli_ok(&["versions", "versioned"]);
    assert!(versions.contains("canary 10%"), "{versions}");
    // Rollback ends the canary: the live version takes everything.
    host.cli_ok(&["rollback", "versioned"]);
    assert!((0..20).all(|_| who(&host) == "v1"));
    // A new canary, then promote: it takes everything.
    deploy_versioned(&host, "v3", None, &["--canary", "50"]);
    let seen: BTreeSet<String> = (0..20).map(|_| who(&host)).collect();
    assert_eq!(seen, BTreeSet::from(["v1".to_owned(), "v3".to_owned()]));
    // A request on the canary that invokes its own component stays on the canary, and likewise on the live one.
    let answers: BTreeSet<String> = (0..20).map(|_| get(&host.url("/versioned/slow-invoke")).body).collect();
    assert_eq!(answers, BTreeSet::from(["v1 then v1".to_owned(), "v3 then v3".to_owned()]));
    let promoted = host.cli_ok(&["promote", "versioned"]);
    assert!(promoted.contains("version 3 is live"), "{promoted}");
    assert!((0..20).all(|_| who(&host) == "v3"));
}

#[test]
fn per_function_settings_apply_within_the_host_maximums() {
    let host = Host::start(&["--timeout-ms", "20000"]);
    deploy_versioned(&host, "v1", None, &["--function-timeout-ms", "spin=300", "--function-max-concurrency", "slow=1"]);
    let started = Instant::now();
    let reply = get(&host.url("/versioned/spin"));
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.body.contains("300ms"), "the function's own deadline: {}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(15), "the host's 20 s deadline applied instead");
    // One `slow` at a time: while one holds it, another waits the queue timeout (1 s), then is throttled.
    let url = host.url("/versioned/slow?ms=4000");
    let first = std::thread::spawn(move || get(&url));
    let mut throttled = None;
    while !first.is_finished() && throttled.is_none() {
        let reply = get(&host.url("/versioned/slow?ms=10"));
        if reply.status == 429 {
            throttled = Some(reply);
        }
    }
    let throttled = throttled.expect("no request was throttled while another held the only slot of `slow`");
    assert!(throttled.body.contains("limit of 1 concurrent"), "{}", throttled.body);
    assert_eq!(throttled.header("retry-after"), Some("1"));
    assert_eq!(first.join().expect("first").status, 200);
    // Other functions of the component are not limited by it.
    assert_eq!(who(&host), "v1");
}

#[test]
fn a_foreign_component_routing_on_slash_works_under_a_stripped_prefix() {
    let plain = component_arg("plain");
    let host = Host::start(&["--mount", &format!("/sample={plain},strip-prefix")]);
    assert_eq!(get(&host.url("/sample")).body, "plain root (prefix: /sample)");
    assert_eq!(get(&host.url("/sample/")).body, "plain root (prefix: /sample)");
    assert_eq!(get(&host.url("/sample/wait")).body, "waited");
    let echo = send("POST", &host.url("/sample/echo"), &[], b"echo me");
    assert_eq!((echo.status, echo.body.as_str()), (200, "echo me"));
    assert_eq!(get(&host.url("/sample/other?x=1")).body, "plain component saw /other?x=1");
    // The same component deployed by the CLI under another name and route, prefix kept.
    host.cli_ok(&["deploy", &plain, "--name", "kept", "--mount", "/kept"]);
    assert_eq!(get(&host.url("/kept/wait")).body, "plain component saw /kept/wait");
    // Artifacts are content-addressed: the same bytes under another name are not compiled again.
    let logs = host.wait_for_log("no compile component=\"kept");
    assert!(logs.contains("no compile component=\"kept"), "{logs}");
    assert!(!logs.contains("ahead of time component=\"kept"), "{logs}");
}

#[test]
fn versions_list_every_version_with_who_when_and_triggers() {
    let host = Host::start(&[]);
    deploy_versioned(&host, "v1", None, &[]);
    deploy_versioned(&host, "v2", None, &[]);
    let unchanged = deploy_versioned(&host, "v2", None, &[]);
    assert!(unchanged.contains("unchanged, version 2"), "the same code and config is no new version: {unchanged}");
    let versions = host.cli_ok(&["versions", "versioned"]);
    let rows: Vec<&str> = versions.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{versions}");
    assert!(rows[0].trim_start().starts_with("2 ") && rows[0].contains("live"), "{versions}");
    assert!(rows[1].trim_start().starts_with("1 ") && !rows[1].contains("live"), "{versions}");
    for row in &rows {
        assert!(row.contains("who: http GET /versioned/who") && row.contains("tick: cron"), "{row}");
        assert!(row.contains('@') || row.contains("unknown"), "who deployed it: {row}");
    }
    // The admin API has the configuration, secrets redacted.
    let reply = host.admin("GET", "/v1/components/versioned/versions", None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["versions"][0]["config"]["env"]["TAG"], "v2");
    // Back to a named version, and not to one that does not exist.
    assert!(host.cli_ok(&["rollback", "versioned", "--to", "1"]).contains("version 1 is live"));
    assert_eq!(who(&host), "v1");
    let refused = host.cli(&["rollback", "versioned", "--to", "9"]);
    assert!(!refused.success && refused.stderr.contains("has no version 9"), "{refused:?}");
    assert_eq!(who(&host), "v1");
    let missing = host.cli(&["versions", "nothing-here"]);
    assert!(
        !missing.success && missing.stderr.contains("404") && missing.stderr.contains("never been deployed"),
        "{missing:?}"
    );
}
