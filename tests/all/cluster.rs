//! Several hosts, one real `nats-server -js`: queues and topics shared over NATS JetStream. Each test starts its
//! own server and hosts (they kill and fill them), with the `cluster` test component reporting to a collector
//! which node handled what.

use crate::support::{Collector, Host, NatsServer, component_arg, poll_until, queue_stats, wait_for_dead_letters};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// A nats-server, a collector and the config dir of the nodes that share them.
pub(crate) struct Cluster {
    nats: NatsServer,
    collector: Collector,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` (the test SKIPPED) when there is no nats-server; `.ci/run` makes that a failure.
    pub(crate) fn new(test: &str) -> Option<Self> {
        let nats = NatsServer::start(test)?;
        Some(Self { nats, collector: Collector::start(), dir: tempfile::tempdir().expect("temp dir") })
    }

    /// What the nodes' components reported.
    pub(crate) fn collector(&self) -> &Collector {
        &self.collector
    }

    /// Starts node `name` of the cluster, serving `components`. A delivery a dead node held goes to another after
    /// `ack_wait_ms`.
    pub(crate) fn node(&self, name: &str, ack_wait_ms: u64, components: &[&str]) -> Host {
        self.node_with(name, ack_wait_ms, components, "")
    }

    /// [`Cluster::node`] with `limits` added to the node's `[limits]`.
    fn node_with(&self, name: &str, ack_wait_ms: u64, components: &[&str], limits: &str) -> Host {
        self.node_full(name, ack_wait_ms, components, limits, "", &[])
    }

    /// [`Cluster::node`] with `config` added to the node's configuration (the default `ack_wait_ms`, 30 s).
    pub(crate) fn node_configured(&self, name: &str, components: &[&str], config: &str) -> Host {
        self.node_full(name, 30_000, components, "", config, &[])
    }

    /// [`Cluster::node`] (the default `ack_wait_ms`) with `env` set for the host process.
    pub(crate) fn node_with_env(&self, name: &str, components: &[&str], env: &[(&str, &str)]) -> Host {
        self.node_full(name, 30_000, components, "", "", env)
    }

    pub(crate) fn node_full(
        &self,
        name: &str,
        ack_wait_ms: u64,
        components: &[&str],
        limits: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Host {
        let config = self.dir.path().join(format!("{name}.toml"));
        let text = format!(
            "[limits]\ntimeout_ms = 10000\n{limits}\n[cluster]\nack_wait_ms = {ack_wait_ms}\n\n[components.cluster]\n\
             env = {{ COLLECTOR_URL = \"{}\", NODE = \"{name}\" }}\nallowed_outbound_hosts = [\"{}\"]\n{extra}",
            self.collector.url, self.collector.authority
        );
        std::fs::write(&config, text).expect("write config");
        let mut args = vec![
            "--config".to_owned(),
            config.to_str().expect("utf-8").to_owned(),
            "--nats".to_owned(),
            self.nats.url.clone(),
            "--node".to_owned(),
            name.to_owned(),
        ];
        args.extend(components.iter().map(|c| component_arg(c)));
        Host::start_with_env(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    }
}

/// Sends `messages` to `queue` through `host`'s admin API.
fn send(host: &Host, queue: &str, messages: Vec<Value>) {
    let reply = host.admin("POST", &format!("/v1/queues/{queue}/messages"), Some(json!({ "messages": messages })));
    assert_eq!(reply.status, 201, "{}", reply.body);
}

/// The counts of `queue`, as `host` reads them.
/// Which numbers each node reported on `path` (bodies `{"node": .., "n": [..]}`), and how many reports in all.
fn numbers_by_node(collector: &Collector, path: &str) -> (BTreeMap<String, Vec<u64>>, usize) {
    let mut by_node: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut total = 0;
    for body in collector.bodies(path) {
        let node = body["node"].as_str().expect("node").to_owned();
        let numbers = body["n"].as_array().expect("n").iter().map(|n| n.as_u64().expect("number"));
        let numbers: Vec<u64> = numbers.collect();
        total += numbers.len();
        by_node.entry(node).or_default().extend(numbers);
    }
    (by_node, total)
}

#[test]
fn ten_thousand_messages_are_shared_by_two_nodes_and_none_is_lost() {
    let Some(cluster) = Cluster::new("ten_thousand_messages_are_shared_by_two_nodes_and_none_is_lost") else { return };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let b = cluster.node("b", 30_000, &["cluster"]);
    for chunk in 0..10 {
        let messages = (chunk * 1_000..(chunk + 1) * 1_000).map(|n| json!({ "body": { "n": n } })).collect();
        // Half of the sends go through each node: either one reaches the same queue.
        send(if chunk % 2 == 0 { &a } else { &b }, "work", messages);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let (by_node, handled) = loop {
        let (by_node, handled) = numbers_by_node(&cluster.collector, "/work");
        let distinct: BTreeSet<u64> = by_node.values().flatten().copied().collect();
        if distinct.len() == 10_000 {
            assert_eq!(distinct.last(), Some(&9_999));
            break (by_node, handled);
        }
        assert!(Instant::now() < deadline, "only {} of 10000 messages were handled in 120 s", distinct.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    let share = |node: &str| by_node.get(node).map_or(0, Vec::len);
    eprintln!("node a handled {}, node b {}, duplicates {}", share("a"), share("b"), handled - 10_000);
    // Both take a real share: a tenth at least each.
    assert!(share("a") >= 1_000 && share("b") >= 1_000, "a: {}, b: {}", share("a"), share("b"));
    // Every message was acked: the queue is empty on both nodes' view.
    poll_until("the work queue to be empty", Duration::from_secs(20), || {
        let stats = queue_stats(&b, "work");
        stats["ready"] == 0 && stats["in_flight"] == 0
    });
    assert_eq!(queue_stats(&a, "work")["ready"], 0);
}

#[test]
fn a_killed_nodes_deliveries_finish_on_the_other_node() {
    let Some(cluster) = Cluster::new("a_killed_nodes_deliveries_finish_on_the_other_node") else { return };
    let a = cluster.node("a", 2_000, &["cluster"]);
    let b = cluster.node("b", 2_000, &["cluster"]);
    send(&a, "slow", (0..20).map(|n| json!({ "body": { "n": n } })).collect());
    // As soon as node a is inside a delivery (its batch pulled and not settled), kill it.
    let started = cluster
        .collector
        .wait_for("/slow-start", Duration::from_secs(30), |bodies| bodies.iter().any(|b| b["node"] == "a"));
    a.kill();
    let held_by_a: Vec<u64> = started
        .iter()
        .filter(|b| b["node"] == "a")
        .flat_map(|b| b["n"].as_array().expect("n").iter().map(|n| n.as_u64().expect("number")))
        .collect();
    assert!(!held_by_a.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (by_node, _) = numbers_by_node(&cluster.collector, "/slow-done");
        let done: BTreeSet<u64> = by_node.values().flatten().copied().collect();
        if done.len() == 20 {
            let by_b: BTreeSet<u64> = by_node.get("b").into_iter().flatten().copied().collect();
            for n in &held_by_a {
                assert!(by_b.contains(n), "message {n}, in flight on the killed node, was not finished by node b");
            }
            break;
        }
        assert!(Instant::now() < deadline, "only {done:?} of 20 finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    poll_until("the slow queue to be empty", Duration::from_secs(20), || {
        let stats = queue_stats(&b, "slow");
        stats["ready"] == 0 && stats["in_flight"] == 0
    });
}

#[test]
fn a_poison_message_dead_letters_after_its_attempts_and_redrives_on_any_node() {
    let Some(cluster) = Cluster::new("a_poison_message_dead_letters_after_its_attempts_and_redrives_on_any_node")
    else {
        return;
    };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let b = cluster.node("b", 30_000, &["cluster"]);
    send(&a, "poison", vec![json!({ "body": { "poison": true } })]);
    let deliveries = cluster.collector.wait_for("/poison", Duration::from_secs(30), |b| b.len() >= 3);
    let attempts: Vec<&Value> = deliveries.iter().map(|d| &d["attempts"]).collect();
    assert_eq!(attempts, [1, 2, 3], "max_retries = 2: three deliveries");
    let letters = wait_for_dead_letters(&b, "poison");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!((letters[0]["queue"].as_str(), letters[0]["attempts"].as_u64()), (Some("poison-dlq"), Some(3)));
    let error = letters[0]["error"].as_str().expect("error");
    assert!(error.contains("this message is poison") && error.contains("max_retries = 2"), "{error}");
    assert_eq!(letters[0]["body"], r#"{"poison":true}"#);
    assert_eq!(queue_stats(&a, "poison")["dead"], 1);
    assert_eq!(queue_stats(&a, "poison-dlq")["ready"], 1);
    // No fourth delivery: it is dead, not retried.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.collector.bodies("/poison").len(), 3);

    let reply = a.admin("POST", "/v1/queues/poison/redrive", Some(json!({})));
    assert_eq!(reply.json()["redriven"], 1, "{}", reply.body);
    let deliveries = cluster.collector.wait_for("/poison", Duration::from_secs(30), |b| b.len() >= 4);
    assert_eq!(deliveries[3]["attempts"], 1, "a re-driven message starts over");
    // It fails again and dead-letters again: still one dead letter, never two.
    cluster.collector.wait_for("/poison", Duration::from_secs(30), |b| b.len() >= 6);
    // Under a loaded CI machine the last failure's settling can trail its report to the collector by seconds.
    poll_until("the re-driven message dead-lettered again", Duration::from_secs(30), || {
        let stats = queue_stats(&b, "poison");
        assert!(stats["dead"].as_u64() <= Some(1), "two dead letters for one message: {stats}");
        stats["dead"] == 1 && stats["in_flight"] == 0
    });
    let letters = wait_for_dead_letters(&b, "poison");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(cluster.collector.bodies("/poison").len(), 6, "no delivery after the second dead letter");
}

#[test]
fn higher_priority_messages_are_delivered_first() {
    let Some(cluster) = Cluster::new("higher_priority_messages_are_delivered_first") else { return };
    // A node that consumes nothing takes the sends; the consumer joins once they are all in.
    let sender = cluster.node("sender", 30_000, &[]);
    let mut messages = Vec::new();
    for (label, priority) in [("lo", -1), ("mid", 0), ("hi", 5)] {
        for n in 0..3 {
            messages.push(json!({ "body": format!("{label}{n}"), "priority": priority }));
        }
    }
    // The highest priority of all, but not due for 2 s: it must not come early.
    messages.push(json!({ "body": "late", "priority": 9, "delay_ms": 2_000 }));
    send(&sender, "prio", messages);
    let _consumer = cluster.node("consumer", 30_000, &["cluster"]);
    let bodies = cluster.collector.wait_for("/prio", Duration::from_secs(30), |b| b.len() >= 10);
    let late = bodies.iter().position(|b| b["body"] == "late").expect("the delayed message");
    // Measured by the function itself, from the send to its delivery.
    let waited_ms = bodies[late]["waited_ms"].as_u64().expect("waited_ms");
    assert!(waited_ms >= 2_000, "the delayed message came {waited_ms} ms after its send");
    assert_eq!(bodies[late]["priority"], 9);
    let order: Vec<&str> = bodies.iter().filter_map(|b| b["body"].as_str()).filter(|b| *b != "late").collect();
    assert_eq!(order, ["hi0", "hi1", "hi2", "mid0", "mid1", "mid2", "lo0", "lo1", "lo2"]);
    assert_eq!(bodies[0]["priority"], 5);
}

#[test]
fn a_topic_reaches_every_subscriber_once_across_nodes() {
    let Some(cluster) = Cluster::new("a_topic_reaches_every_subscriber_once_across_nodes") else { return };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let _b = cluster.node("b", 30_000, &["cluster"]);
    // The subscriptions are durable in the cluster once a node's consumers have started.
    poll_until("both subscribers of `events`", Duration::from_secs(20), || {
        let reply = a.admin("POST", "/v1/topics/events/messages", Some(json!({ "body": { "probe": true } })));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["subscribers"] == 2
    });
    for e in 0..50 {
        let reply = a.admin("POST", "/v1/topics/events/messages", Some(json!({ "body": { "e": e } })));
        assert_eq!(reply.json()["subscribers"], 2, "{}", reply.body);
    }
    for subscriber in ["/sub_a", "/sub_b"] {
        let events = |bodies: &[Value]| -> Vec<u64> {
            bodies
                .iter()
                .flat_map(|b| b["bodies"].as_array().expect("bodies").clone())
                .filter_map(|v| v["e"].as_u64())
                .collect()
        };
        cluster.collector.wait_for(subscriber, Duration::from_secs(30), |bodies| {
            events(bodies).into_iter().collect::<BTreeSet<_>>().len() == 50
        });
        // Settle time for a duplicate to show, then each event exactly once.
        std::thread::sleep(Duration::from_millis(500));
        let mut seen = events(&cluster.collector.bodies(subscriber));
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<u64>>(), "{subscriber} got each event once");
    }
}

/// The ticks run on schedule so far, by tick: the nodes that ran each. (A run whose node died before it ended is
/// run again by another node as a catch-up: at least once, like every delivery.)
fn ticks(collector: &Collector) -> BTreeMap<u64, Vec<String>> {
    let mut by_tick: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for body in collector.bodies("/tick").into_iter().filter(|b| b["reason"] == "schedule") {
        let node = body["node"].as_str().expect("node").to_owned();
        by_tick.entry(body["tick"].as_u64().expect("tick")).or_default().push(node);
    }
    by_tick
}

#[test]
fn a_cron_tick_fires_on_one_node_and_the_survivor_takes_over_when_it_dies() {
    let _turn = crate::support::one_at_a_time();
    let Some(cluster) = Cluster::new("a_cron_tick_fires_on_one_node_and_the_survivor_takes_over_when_it_dies") else {
        return;
    };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let b = cluster.node("b", 30_000, &["cluster"]);
    // Ten seconds with both nodes up.
    poll_until("ten ticks", Duration::from_secs(30), || ticks(&cluster.collector).len() >= 10);
    let before = ticks(&cluster.collector);
    let (&last_tick, nodes) = before.iter().next_back().expect("a tick");
    let fired_last = nodes[0].clone();
    let (victim, survivor, survivor_name) = if fired_last == "a" { (a, b, "b") } else { (b, a, "a") };
    victim.kill();
    // When the victim died, by the wall clock the ticks are named by. On a loaded machine that can be seconds after
    // its last report reached the collector, and it may have claimed further ticks meanwhile.
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis();
    let killed_at = u64::try_from(killed_at).expect("ms fit u64");
    // Ten more seconds on the survivor alone, once the victim's last run can no longer look alive. (Killed between
    // its report and its end, that run looks like it is still going until it has not been renewed for 6 s; with
    // `overlap = "skip"` the survivor skips ticks until then, then runs that tick again.) Two seconds more for the
    // survivor's next tick and a slow machine.
    let settled = killed_at.max(last_tick) + 6_000 + 2_000;
    poll_until("ten more ticks", Duration::from_secs(45), || ticks(&cluster.collector).range(settled..).count() >= 10);
    let after = ticks(&cluster.collector);
    for (tick, nodes) in &after {
        assert_eq!(nodes.len(), 1, "tick {tick} ran on {nodes:?}: a tick runs once per cluster");
    }
    // The only tick run again is one the victim had claimed when it died, and the survivor ran it: the victim's
    // last reported tick (reported, not yet marked done) or a later one it was killed in before its report went
    // out. Never a tick another node had already run on schedule.
    for rerun in cluster.collector.bodies("/tick").iter().filter(|b| b["reason"] == "catch-up") {
        let tick = rerun["tick"].as_u64().expect("tick");
        assert_eq!(rerun["node"], survivor_name, "{rerun}");
        assert!(
            (last_tick..settled).contains(&tick),
            "a catch-up outside the victim's last ticks ({last_tick}..{settled}, killed at {killed_at}): {rerun}"
        );
        if let Some(nodes) = after.get(&tick) {
            assert_eq!(nodes, &vec![fired_last.clone()], "{rerun}: only the victim ran it on schedule");
        }
    }
    // From then on every tick runs, on the survivor.
    let since: Vec<(&u64, &Vec<String>)> = after.range(settled..).collect();
    for window in since.windows(2) {
        assert_eq!(window[1].0 - window[0].0, 1_000, "a tick was missed between {} and {}", window[0].0, window[1].0);
    }
    assert!(since.iter().all(|(_, nodes)| nodes[0] == survivor_name), "{since:?}");
    // Both nodes took ticks while both were up: the claim, not a fixed leader, decides.
    let fired: BTreeSet<&str> = before.values().map(|nodes| nodes[0].as_str()).collect();
    eprintln!("ticks before the kill by node: {fired:?}");
    // Every node's `edgefn runs` shows the cluster's history, the dead node's runs included.
    let reply = survivor.admin("GET", "/v1/functions/tick/runs?limit=1000", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let runs = reply.json()["runs"].as_array().expect("runs").clone();
    let run_nodes: BTreeSet<&str> = runs.iter().filter_map(|run| run["node"].as_str()).collect();
    assert!(run_nodes.contains(fired_last.as_str()), "the history lacks node {fired_last}: {run_nodes:?}");
    let mut scheduled: Vec<u64> = runs.iter().filter_map(|run| run["scheduled_at"].as_u64()).collect();
    let total = scheduled.len();
    scheduled.dedup();
    assert_eq!(scheduled.len(), total, "a tick appears twice in the history");
}

/// Which version of `versioned` `host` serves now: its tag, or the status when it serves none.
fn who(host: &Host) -> String {
    let reply = crate::support::get(&host.url("/versioned/who"));
    if reply.status == 200 { reply.body } else { format!("status {}", reply.status) }
}

/// Waits until `host` serves `expected` at `/versioned/who`.
fn wait_for_who(host: &Host, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = who(host);
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "the node still answers {now:?}, not {expected:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_deploy_on_one_node_reaches_every_node_and_a_late_node_catches_up() {
    let Some(cluster) = Cluster::new("a_deploy_on_one_node_reaches_every_node_and_a_late_node_catches_up") else {
        return;
    };
    let a = cluster.node("a", 30_000, &[]);
    let b = cluster.node("b", 30_000, &[]);
    let versioned = component_arg("versioned");
    let deploy = |host: &Host, tag: &str| host.cli_ok(&["deploy", &versioned, "--env", &format!("TAG={tag}")]);
    assert!(deploy(&a, "v1").contains("deployed versioned version 1"));
    wait_for_who(&b, "v1");
    // Same bytes, other settings: a new version, on every node.
    deploy(&a, "v2");
    wait_for_who(&b, "v2");
    // A rollback on any node: back to the version each node already has (nothing to fetch or compile).
    b.cli_ok(&["rollback", "versioned"]);
    wait_for_who(&a, "v1");
    let versions = a.admin("GET", "/v1/components/versioned/versions", None).json();
    let live: Vec<u64> = versions["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["status"] == "live")
        .filter_map(|v| v["version"].as_u64())
        .collect();
    assert_eq!(live, [1], "node a went back to its own version 1: {versions}");
    // A node that joins later serves what is live, and every node lists the members.
    let c = cluster.node("c", 30_000, &[]);
    wait_for_who(&c, "v1");
    let listed = || c.cli_ok(&["nodes"]);
    poll_until("three nodes serving versioned v1", Duration::from_secs(20), || {
        let out = listed();
        ["a ", "b ", "c "].iter().all(|node| out.lines().any(|l| l.starts_with(node) && l.contains("versioned v1")))
    });
    // An undeploy on one node takes it off every node.
    c.cli_ok(&["undeploy", "versioned"]);
    wait_for_who(&a, "status 404");
    wait_for_who(&b, "status 404");
    // And a single host says it is none of this.
    let alone = Host::start(&[]);
    let refused = alone.cli(&["nodes"]);
    assert!(!refused.success && refused.stderr.contains("not a cluster member"), "{}", refused.stderr);
}

#[test]
fn a_cron_run_whose_node_dies_midway_runs_again_on_another_node() {
    let _turn = crate::support::one_at_a_time();
    let Some(cluster) = Cluster::new("a_cron_run_whose_node_dies_midway_runs_again_on_another_node") else { return };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let b = cluster.node("b", 30_000, &["cluster"]);
    // The first slow run to start once both nodes are up (an earlier one may be over already): kill its node in the
    // middle of it.
    let both_up = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64;
    let started = cluster.collector.wait_for("/slow-tick-start", Duration::from_secs(30), |bodies| {
        bodies.iter().any(|s| s["tick"].as_u64().is_some_and(|tick| tick >= both_up))
    });
    let first = started.iter().find(|s| s["tick"].as_u64().is_some_and(|tick| tick >= both_up)).expect("a start");
    let (tick, victim_name) = (first["tick"].as_u64().expect("tick"), first["node"].as_str().expect("node"));
    let survivor_name = if victim_name == "a" { "b" } else { "a" };
    let survivor = if victim_name == "a" {
        a.kill();
        b
    } else {
        b.kill();
        a
    };
    // The survivor notices the run lost its node (it stops being renewed) and runs the tick again, as a catch-up.
    let done = cluster
        .collector
        .wait_for("/slow-tick-done", Duration::from_secs(40), |bodies| bodies.iter().any(|d| d["tick"] == tick));
    let rerun: Vec<&Value> = done.iter().filter(|d| d["tick"] == tick).collect();
    assert_eq!(rerun.len(), 1, "{rerun:?}");
    assert_eq!((rerun[0]["node"].as_str(), rerun[0]["reason"].as_str()), (Some(survivor_name), Some("catch-up")));
    // While the dead node's run still looked alive, the next tick was not run next to it (overlap = "skip"): no
    // tick ran on two nodes, and none ran twice except the one re-run.
    let mut starts: Vec<(u64, String)> = cluster
        .collector
        .bodies("/slow-tick-start")
        .iter()
        .map(|s| (s["tick"].as_u64().expect("tick"), s["reason"].as_str().unwrap_or_default().to_owned()))
        .collect();
    starts.sort();
    let schedule_starts: Vec<u64> = starts.iter().filter(|(_, r)| r == "schedule").map(|(t, _)| *t).collect();
    let mut distinct = schedule_starts.clone();
    distinct.dedup();
    assert_eq!(distinct, schedule_starts, "a tick started twice on schedule: {starts:?}");
    drop(survivor);
}

#[test]
fn jetstream_refuses_oversize_messages_and_sends_past_a_full_queue_and_stores_none_of_them() {
    let test = "jetstream_refuses_oversize_messages_and_sends_past_a_full_queue_and_stores_none_of_them";
    let Some(cluster) = Cluster::new(test) else { return };
    // Nothing consumes `jobs`: what is stored stays there to count.
    let a = cluster.node_with("a", 30_000, &[], "max_queue_messages = 3\nmax_message_bytes = 1000\n");
    let big = a.admin("POST", "/v1/queues/jobs/messages", Some(json!({ "body": "x".repeat(2_000) })));
    assert_eq!(big.status, 413, "{}", big.body);
    assert!(big.body.contains("jobs") && big.body.contains("max_message_bytes"), "{}", big.body);
    send(&a, "jobs", (0..3).map(|n| json!({ "body": { "n": n } })).collect());
    let full = a.admin("POST", "/v1/queues/jobs/messages", Some(json!({ "body": { "n": 3 } })));
    assert_eq!(full.status, 507, "{}", full.body);
    assert!(full.body.contains("queue `jobs` is full"), "{}", full.body);
    assert_eq!(queue_stats(&a, "jobs")["ready"], 3, "the refused messages were not stored");
}

#[test]
fn a_host_whose_nats_server_cannot_be_reached_refuses_to_start_and_names_it() {
    let port = crate::support::free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let (code, output) = match Host::try_start(&["--nats", &url], &[]) {
        Ok(_) => panic!("a host started without its cluster's server"),
        Err(failure) => failure,
    };
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(&format!("failed to connect to {url}")), "{output}");
}

/// Sends `{"n": n}` to queue `work` through `host`, one message per request, for every `n` of `numbers`, pausing
/// `every` between sends; returns the numbers acknowledged (201) and the refusals (status and body) of the others.
fn send_one_by_one(host: &Host, numbers: std::ops::Range<u64>, every: Duration) -> (Vec<u64>, Vec<(u16, String)>) {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(20)).build();
    let url = format!("{}/v1/queues/work/messages", host.admin);
    let auth = format!("Bearer {}", host.token);
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    for n in numbers {
        let body = json!({ "messages": [{ "body": { "n": n } }] });
        match agent.post(&url).set("authorization", &auth).send_json(body) {
            Ok(response) if response.status() == 201 => acknowledged.push(n),
            Ok(response) => refused.push((response.status(), response.into_string().unwrap_or_default())),
            Err(ureq::Error::Status(status, response)) => {
                refused.push((status, response.into_string().unwrap_or_default()))
            }
            Err(error) => refused.push((0, error.to_string())),
        }
        std::thread::sleep(every);
    }
    (acknowledged, refused)
}

#[test]
fn a_nats_server_killed_or_stalled_under_load_loses_no_acknowledged_send() {
    let test = "a_nats_server_killed_or_stalled_under_load_loses_no_acknowledged_send";
    let Some(mut cluster) = Cluster::new(test) else { return };
    let a = cluster.node("a", 2_000, &["cluster"]);
    std::thread::scope(|scope| {
        let sender = scope.spawn(|| send_one_by_one(&a, 0..600, Duration::from_millis(10)));
        // Killed for eight seconds, then back on the same store; later stalled (SIGSTOP) for three.
        cluster.collector.wait_for("/work", Duration::from_secs(60), |bodies| bodies.len() >= 20);
        cluster.nats.kill();
        std::thread::sleep(Duration::from_secs(8));
        cluster.nats.restart();
        std::thread::sleep(Duration::from_secs(2));
        cluster.nats.signal("-STOP");
        std::thread::sleep(Duration::from_secs(3));
        cluster.nats.signal("-CONT");
        let (acknowledged, refused) = sender.join().expect("the sender");
        eprintln!(
            "{} sends acknowledged, {} refused: {:?}",
            acknowledged.len(),
            refused.len(),
            refused.iter().take(3).collect::<Vec<_>>()
        );
        // A refusal is a 503 that names the cluster's server, never a hang past the client's patience. (A send
        // refused for a missing acknowledgement may still have been stored: at least once, as documented.)
        for (status, body) in &refused {
            assert!(*status == 503 && body.contains("NATS"), "{status}: {body}");
        }
        // Every acknowledged send is delivered, including those after the restart and the stall: consumers resume.
        assert!(acknowledged.iter().any(|n| *n >= 550), "sends after the faults were acknowledged: {acknowledged:?}");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let (by_node, _) = numbers_by_node(&cluster.collector, "/work");
            let delivered: BTreeSet<u64> = by_node.values().flatten().copied().collect();
            let lost: Vec<u64> = acknowledged.iter().copied().filter(|n| !delivered.contains(n)).collect();
            if lost.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                let logs = a.logs();
                let trouble: Vec<&str> = logs.lines().filter(|l| !l.contains(" INFO ")).collect();
                panic!(
                    "{} acknowledged sends were never delivered: {lost:?}\nthe node's warnings:\n{trouble:#?}",
                    lost.len()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

#[test]
fn cron_runs_each_tick_once_and_deploys_converge_across_a_killed_and_a_stalled_nats_server() {
    let _turn = crate::support::one_at_a_time();
    let test = "cron_runs_each_tick_once_and_deploys_converge_across_a_killed_and_a_stalled_nats_server";
    let Some(mut cluster) = Cluster::new(test) else { return };
    let a = cluster.node("a", 30_000, &["cluster"]);
    let b = cluster.node("b", 30_000, &["cluster"]);
    let versioned = component_arg("versioned");
    let deploy = |host: &Host, tag: &str| host.cli(&["deploy", &versioned, "--env", &format!("TAG={tag}")]);
    assert!(deploy(&a, "v1").success);
    wait_for_who(&b, "v1");
    poll_until("five ticks", Duration::from_secs(30), || ticks(&cluster.collector).len() >= 5);

    // Killed: a deploy is refused, naming the server, and neither node changes what it serves.
    cluster.nats.kill();
    let refused = deploy(&b, "while-killed");
    assert!(!refused.success, "a deploy with the cluster's server down succeeded: {}", refused.stdout);
    assert!(refused.stderr.contains("NATS"), "{}", refused.stderr);
    assert_eq!((who(&a), who(&b)), ("v1".to_owned(), "v1".to_owned()));
    std::thread::sleep(Duration::from_secs(4));
    cluster.nats.restart();
    // Back: a deploy on either node reaches the other.
    let deploy_to_both = |on: &Host, tag: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !deploy(on, tag).success {
            assert!(Instant::now() < deadline, "no deploy of {tag} succeeded within 30 s of the server's return");
            std::thread::sleep(Duration::from_millis(500));
        }
        wait_for_who(&a, tag);
        wait_for_who(&b, tag);
    };
    deploy_to_both(&b, "after-restart");

    // Stalled (SIGSTOP): a deploy is refused once the server has not answered for 5 s, and changes nothing.
    cluster.nats.signal("-STOP");
    let refused = deploy(&a, "while-stalled");
    cluster.nats.signal("-CONT");
    assert!(!refused.success, "a deploy with the cluster's server stalled succeeded: {}", refused.stdout);
    assert!(refused.stderr.contains("NATS") && refused.stderr.contains("503"), "{}", refused.stderr);
    assert_eq!((who(&a), who(&b)), ("after-restart".to_owned(), "after-restart".to_owned()));
    // Going on: a deploy made right after reaches both nodes.
    deploy_to_both(&a, "after-stall");

    // Ticks go on after the faults, every second, and no tick of the whole run ran twice.
    let resumed = ticks(&cluster.collector).keys().next_back().copied().expect("a tick");
    poll_until("ten ticks after the faults", Duration::from_secs(40), || {
        ticks(&cluster.collector).range(resumed + 1..).count() >= 10
    });
    let all = ticks(&cluster.collector);
    for (tick, nodes) in &all {
        assert_eq!(nodes.len(), 1, "tick {tick} ran on {nodes:?}: a tick runs once per cluster");
    }
    let after: Vec<u64> = all.range(resumed + 1..).map(|(tick, _)| *tick).collect();
    for window in after.windows(2).take(9) {
        assert_eq!(window[1] - window[0], 1_000, "a tick was missed after the faults: {after:?}");
    }
    let reruns: Vec<Value> =
        cluster.collector.bodies("/tick").into_iter().filter(|b| b["reason"] != "schedule").collect();
    let mut run_ticks: Vec<u64> = cluster.collector.bodies("/tick").iter().filter_map(|b| b["tick"].as_u64()).collect();
    let total = run_ticks.len();
    run_ticks.sort_unstable();
    run_ticks.dedup();
    assert_eq!(run_ticks.len(), total, "a tick ran twice (as a catch-up too): {reruns:?}");
    eprintln!("{} ticks, {} after the faults, catch-ups: {reruns:?}", all.len(), after.len());
}
