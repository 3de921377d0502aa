//! The HTTP response cache (issue 24, item 4), on a real host over real HTTP with the gateway-probe guest: what a
//! function's `Cache-Control` lets a shared cache keep is answered again without running it (`x-edgefn-cache: hit`),
//! per `Vary`; `private` is never kept; a stale answer covers a failing function within `stale-if-error`; purges by
//! tag and path from a function, the CLI and the admin API; a deploy purges the component's entries.

use crate::support::{Host, Reply, component_arg, send};

fn get(host: &Host, path: &str, headers: &[(&str, &str)]) -> Reply {
    send("GET", &host.url(path), headers, b"")
}

fn cache_status(reply: &Reply) -> &str {
    reply.header("x-edgefn-cache").unwrap_or("(none)")
}

#[test]
fn function_responses_are_cached_per_vary_served_stale_on_error_and_purged_by_tag_path_and_deploy() {
    let host = Host::start(&[&component_arg("gateway_probe")]);
    let first = get(&host, "/cached/ada", &[]);
    assert_eq!((first.status, cache_status(&first)), (200, "miss"), "{}", first.body);
    assert!(first.body.starts_with("en ada "), "{}", first.body);
    assert_eq!(first.header("cache-tag"), None, "the tags are the host's, not the client's");
    let again = get(&host, "/cached/ada", &[]);
    assert_eq!((cache_status(&again), again.body.as_str()), ("hit", first.body.as_str()), "the function did not run");
    assert!(again.header("age").is_some());
    assert_eq!(again.header("cache-control"), Some("public, max-age=60, stale-if-error=300"));
    let head = send("HEAD", &host.url("/cached/ada"), &[], b"");
    assert_eq!((head.status, cache_status(&head), head.body.as_str()), (200, "hit", ""));
    // A fresh entry answers even while the function would fail: it does not run.
    assert_eq!(get(&host, "/cached/ada", &[("x-fail", "1")]).body, first.body);

    // Vary: Accept-Language keeps one entry per language.
    let german = get(&host, "/cached/ada", &[("accept-language", "de")]);
    assert_eq!(cache_status(&german), "miss");
    assert!(german.body.starts_with("de ada "), "{}", german.body);
    assert_eq!(get(&host, "/cached/ada", &[("accept-language", "de")]).body, german.body);
    assert_eq!(get(&host, "/cached/ada", &[]).body, first.body, "the English entry is still there");
    // A write that succeeds drops the path's entries (every variant); the next GET runs the function.
    assert_eq!(send("POST", &host.url("/cached/carl"), &[], b"").status, 204);
    let carl = get(&host, "/cached/carl", &[]);
    assert_eq!((cache_status(&carl), cache_status(&get(&host, "/cached/carl", &[]))), ("miss", "hit"));
    assert_eq!(send("POST", &host.url("/cached/carl"), &[], b"").status, 204);
    let rewritten = get(&host, "/cached/carl", &[]);
    assert_eq!(cache_status(&rewritten), "miss", "the write made the entry stale");
    assert_ne!(rewritten.body, carl.body);
    // Another query string is another entry.
    assert_eq!(cache_status(&get(&host, "/cached/ada?max_age=60", &[])), "miss");
    assert_eq!(cache_status(&get(&host, "/cached/ada?max_age=60", &[])), "hit");

    // `private` is never kept.
    let (one, two) = (get(&host, "/uncached/private", &[]), get(&host, "/uncached/private", &[]));
    assert_ne!(one.body, two.body);
    assert_eq!((cache_status(&one), cache_status(&two)), ("miss", "miss"));
    // Methods other than GET and HEAD pass by the cache.
    assert_eq!(send("POST", &host.url("/purge"), &[], b"").header("x-edgefn-cache"), None);

    // Past its max-age, an entry answers only when the function fails (within stale-if-error).
    let short = get(&host, "/cached/bob?max_age=1", &[]);
    assert_eq!(cache_status(&short), "miss");
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    let stale = get(&host, "/cached/bob?max_age=1", &[("x-fail", "1")]);
    assert_eq!((stale.status, cache_status(&stale), stale.body.as_str()), (200, "stale", short.body.as_str()));
    let renewed = get(&host, "/cached/bob?max_age=1", &[]);
    assert_eq!(cache_status(&renewed), "miss");
    assert_ne!(renewed.body, short.body);

    // Purged by tag from a function: both languages of ada, nothing of bob.
    let purged = send("POST", &host.url("/purge?tag=greeting-ada"), &[], b"");
    assert_eq!((purged.status, purged.body.as_str()), (200, "3"), "en, de, and the ?max_age=60 entry");
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "miss");
    assert_ne!(cache_status(&get(&host, "/cached/bob?max_age=1", &[("x-fail", "1")])), "miss", "bob's is still there");
    // By path from the CLI (every query string of it), by prefix from a function.
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "hit");
    let out = host.cli_ok(&["cache", "purge", "gateway_probe", "--path", "/cached/ada"]);
    assert!(out.contains("purged 1 entries of gateway_probe"), "{out}");
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "miss");
    let by_prefix = send("POST", &host.url("/purge?path=/cached/*"), &[], b"");
    assert_eq!(by_prefix.body, "3", "ada, bob and carl");
    // From the admin API, all of a component's entries; then its stats.
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "miss");
    let all = host.admin("POST", "/v1/cache/purge", Some(serde_json::json!({ "component": "gateway_probe" })));
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("\"purged\":1"), "{}", all.body);
    let refused = host.admin("POST", "/v1/cache/purge", Some(serde_json::json!({ "component": "x", "path": "p" })));
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("cache purge path `p` must start with `/`"), "{}", refused.body);

    // A deploy of a new version purges the component's entries.
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "miss");
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "hit");
    host.cli_ok(&["deploy", &component_arg("gateway_probe"), "--env", "CHANGED=1"]);
    assert_eq!(cache_status(&get(&host, "/cached/ada", &[])), "miss");

    let stats = host.cli_ok(&["cache", "stats"]);
    assert!(stats.contains("1 entries"), "{stats}");
    let metrics = host.admin("GET", "/metrics", None).body;
    let hits = metrics
        .lines()
        .find(|line| line.starts_with("edgefn_http_cache_responses_total{status=\"hit\"}"))
        .unwrap_or_else(|| panic!("no hit counter in:\n{metrics}"));
    assert!(!hits.ends_with(" 0"), "{hits}");
}

#[test]
fn a_purge_on_one_node_reaches_the_cache_of_every_node_of_a_cluster() {
    let test = "a_purge_on_one_node_reaches_the_cache_of_every_node_of_a_cluster";
    let Some(cluster) = crate::cluster::Cluster::new(test) else { return };
    let a = cluster.node_configured("a", &["gateway_probe"], "");
    let b = cluster.node_configured("b", &["gateway_probe"], "");
    // Node b deploys its own copy at start while following node a's: the same bytes make one version, and the
    // second deploy switches nothing (a switch would empty the cache under the test).
    let versions = b.admin("GET", "/v1/components/gateway_probe/versions", None).json();
    assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1), "{versions}");
    // Each node keeps its own copies.
    for host in [&a, &b] {
        for name in ["ada", "bob"] {
            let path = format!("/cached/{name}");
            assert_eq!(cache_status(&get(host, &path, &[])), "miss");
            assert_eq!(cache_status(&get(host, &path, &[])), "hit", "{path} cached on {}", host.base);
        }
    }
    // A purge is a miss on the node that asked at once, and on the other moments later.
    let missed_on = |host: &Host, path: &str, what: &str| {
        crate::support::poll_until(what, std::time::Duration::from_secs(10), || {
            cache_status(&get(host, path, &[])) == "miss"
        });
    };

    // A function on node a purges a tag: node b's entry goes too, and only that one.
    let purged = send("POST", &a.url("/purge?tag=greeting-ada"), &[], b"");
    assert_eq!((purged.status, purged.body.as_str()), (200, "1"), "node a's own count");
    assert_eq!(cache_status(&get(&a, "/cached/ada", &[])), "miss");
    missed_on(&b, "/cached/ada", "node b to drop /cached/ada after node a purged its tag");
    assert_eq!(cache_status(&get(&b, "/cached/bob", &[])), "hit", "another tag's entry stays");

    // The admin API of node b purges a path: node a's entry goes too.
    let body = serde_json::json!({ "component": "gateway_probe", "path": "/cached/bob" });
    let reply = b.admin("POST", "/v1/cache/purge", Some(body));
    assert_eq!((reply.status, reply.json()["purged"].as_u64()), (200, Some(1)), "{}", reply.body);
    missed_on(&a, "/cached/bob", "node a to drop /cached/bob after node b's admin API purged it");
}
