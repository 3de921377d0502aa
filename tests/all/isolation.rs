//! Tenants that cannot hurt each other, end to end: the `hostile` test component attacks a real host the ways a
//! hostile tenant would (spinning, printing, holding memory, never reading its responses, flooding a queue,
//! settling with huge reasons, calling the admin API), next to `hello`, a neighbour whose requests must keep
//! succeeding, and the host's own `/healthz` and admin API, which must keep answering.

use crate::support::{Collector, Host, component_arg, get, poll_until};
use serde_json::Value;
use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

const SECRET: &str = "s3cr3t-isolation-value-0123456789";

fn config(dir: &std::path::Path, limits: &str, hostile: &str) -> String {
    let path = dir.join("edgefn.toml");
    let text =
        format!("[limits]\n{limits}\n[components.hostile]\nsecrets = {{ API_SECRET = \"{SECRET}\" }}\n{hostile}\n");
    std::fs::write(&path, text).expect("write config");
    path.to_str().expect("utf-8").to_owned()
}

/// A GET that must be answered within `within`: a frozen host fails the test instead of stalling it.
fn get_within(url: &str, within: Duration) -> Result<(u16, String), String> {
    let agent = ureq::AgentBuilder::new().timeout(within).build();
    match agent.get(url).call() {
        Ok(response) => Ok((response.status(), response.into_string().unwrap_or_default())),
        Err(ureq::Error::Status(status, response)) => Ok((status, response.into_string().unwrap_or_default())),
        Err(error) => Err(format!("{url}: {error}")),
    }
}

/// While `attack` runs, checks over and over that `/healthz`, the admin API and the neighbour answer, each
/// within a second (a frozen host took 30 s). Returns how many rounds it checked.
fn neighbours_keep_answering(host: &Host, attack: &std::thread::JoinHandle<()>) -> usize {
    let mut rounds = 0;
    while !attack.is_finished() {
        let healthz = get_within(&host.url("/healthz"), Duration::from_secs(1));
        assert_eq!(healthz, Ok((200, "ok".to_owned())), "during the attack");
        let hello = get_within(&host.url("/hello/neighbour"), Duration::from_secs(1));
        assert_eq!(hello, Ok((200, "Hello, neighbour!".to_owned())), "during the attack");
        let admin = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(1))
            .build()
            .get(&format!("{}/v1/components", host.admin))
            .set("authorization", &format!("Bearer {}", host.token))
            .call();
        assert!(admin.is_ok_and(|r| r.status() == 200), "the admin API stopped answering during the attack");
        rounds += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    rounds
}

#[test]
fn spinning_guests_never_freeze_healthz_the_admin_api_or_a_neighbour() {
    let _turn = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "timeout_ms = 3000", "");
    let host = Host::start(&["--config", &config, &component_arg("hello"), &component_arg("hostile")]);
    assert_eq!(get(&host.url("/hello/warm")).status, 200);
    // Four times as many spinning requests as this machine has cores.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let url = host.url("/hostile/spin");
    let attack = std::thread::spawn(move || {
        let spinners: Vec<_> = (0..4 * cores)
            .map(|_| {
                let url = url.clone();
                std::thread::spawn(move || get(&url).status)
            })
            .collect();
        for spinner in spinners {
            // Each is still killed at its own deadline.
            assert_eq!(spinner.join().expect("spinner"), 504);
        }
    });
    let rounds = neighbours_keep_answering(&host, &attack);
    attack.join().expect("every spinning request ended in a 504");
    assert!(rounds >= 5, "the attack ended before it was checked ({rounds} rounds)");
}

#[test]
fn a_guest_printing_without_end_is_capped_and_never_blocks_the_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "max_output_bytes = 65536", "");
    // Nobody reads the host's stdout: the pipe fills, and the functions print to it.
    let host = Host::start_undrained(&["--config", &config, &component_arg("hello"), &component_arg("hostile")], &[]);
    let url = host.url("/hostile/print?mb=20");
    let attack = std::thread::spawn(move || {
        let printers: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn({
                    let url = url.clone();
                    move || get(&url)
                })
            })
            .collect();
        for printer in printers {
            let reply = printer.join().expect("printer");
            assert_eq!((reply.status, reply.body.as_str()), (200, "printed 20480 lines"));
        }
    });
    neighbours_keep_answering(&host, &attack);
    attack.join().expect("both printing requests answered");
    let logs = host.wait_for_log("output over limits.max_output_bytes was dropped");
    assert!(logs.contains("function=hostile/print cap=65536"), "{logs}");
}

#[test]
fn a_secret_printed_across_the_output_cut_never_reaches_the_log_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "", "");
    let host = Host::start(&["--config", &config, &component_arg("hostile")]);
    let mut last = None;
    for offset in 1..SECRET.len() {
        let reply = get(&host.url(&format!("/hostile/leak?offset={offset}")));
        assert_eq!(reply.status, 200, "{}", reply.body);
        last = Some(reply);
    }
    // Every leak attempt printed its marker: the output read below is complete.
    poll_until("every marker to be printed", Duration::from_secs(10), || {
        host.stdout().matches("[secret API_SECRET] <- was the secret").count() == SECRET.len() - 1
    });
    let printed = host.stdout();
    assert!(!printed.contains(SECRET), "the secret reached the host's output whole");
    // The last request's own log line is written after everything it printed: the log read below is complete.
    host.request_log_line(&last.expect("at least one leak attempt"));
    assert!(!host.logs().contains(SECRET));
}

#[test]
fn memory_hogs_get_their_share_then_nothing_and_neighbours_keep_answering() {
    let _turn = crate::support::one_at_a_time();
    let dir = tempfile::tempdir().expect("temp dir");
    // A 512 MiB budget: one function may hold 256 MiB, whatever its own cap.
    let config = config(dir.path(), "memory_budget_mb = 512\nmax_memory_mb = 256", "memory_mb = 200");
    let host = Host::start(&["--config", &config, &component_arg("hello"), &component_arg("hostile")]);
    let url = host.url("/hostile/hold?mb=120&ms=1500");
    let attack = std::thread::spawn(move || {
        let hogs: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn({
                    let url = url.clone();
                    move || get(&url)
                })
            })
            .collect();
        let replies: Vec<_> = hogs.into_iter().map(|h| h.join().expect("hog")).collect();
        // Each hog says how much it held and from when to when; a hog that started late may get memory an earlier
        // one gave back, so what counts is the most held at any one moment.
        let holds: Vec<(usize, u128, u128)> = replies
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| {
                let parsed = (|| {
                    let (mb, window) = r.body.strip_prefix("held ")?.split_once(" MiB from ")?;
                    let (from, to) = window.split_once(" to ")?;
                    Some((mb.parse().ok()?, from.parse().ok()?, to.parse().ok()?))
                })();
                parsed.unwrap_or_else(|| panic!("unexpected hog reply: {}", r.body))
            })
            .collect();
        let held_at_once = holds
            .iter()
            .map(|&(_, from, _)| holds.iter().filter(|&&(_, f, t)| f <= from && from < t).map(|&(mb, _, _)| mb).sum())
            .max()
            .unwrap_or(0);
        // Six hogs of 120 MiB at once: never more than the function's share (256 MiB) between them.
        assert!(held_at_once <= 256, "the hogs held {held_at_once} MiB at once: {replies:?}");
        assert!(held_at_once >= 120, "no hog got its memory: {replies:?}");
        assert!(replies.iter().all(|r| r.status == 200 || r.status == 503), "{replies:?}");
    });
    neighbours_keep_answering(&host, &attack);
    attack.join().expect("the hogs' replies");
}

#[test]
fn slow_readers_cannot_hold_the_instances() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "max_instances = 4\nresponse_write_timeout_ms = 500\nresponse_buffer_kib = 64", "");
    let host = Host::start(&["--config", &config, &component_arg("hello"), &component_arg("hostile")]);
    let address = host.base.trim_start_matches("http://").to_owned();
    // Twice as many clients as instances ask for 8 MiB each and never read a byte.
    let stalled: Vec<std::net::TcpStream> = (0..8)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).expect("connect");
            let head = format!("GET /hostile/big?mb=8 HTTP/1.1\r\nHost: {address}\r\n\r\n");
            stream.write_all(head.as_bytes()).expect("send");
            stream
        })
        .collect();
    // Within about the write timeout, their instances are free again: the neighbour gets every request through.
    std::thread::sleep(Duration::from_millis(1_500));
    for n in 0..20 {
        let reply = get(&host.url(&format!("/hello/{n}")));
        assert_eq!(reply.status, 200, "request {n}: {}", reply.body);
    }
    let logs = host.wait_for_log("a client did not read its response; the response is abandoned");
    assert!(logs.contains("a client did not read its response; the response is abandoned"), "{logs}");
    // An abandoned response is cut, never passed off as complete.
    let mut stalled = stalled.into_iter().next().expect("a client");
    stalled.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut received = Vec::new();
    let _ = stalled.read_to_end(&mut received);
    assert!(received.len() < 8 << 20, "the whole 8 MiB arrived after the response was abandoned");
}

#[test]
fn a_queue_flood_is_refused_at_its_quotas_and_nothing_queued_is_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "max_send_bytes_per_invocation = 4194304\nmax_queue_mb = 6", "");
    let host = Host::start(&["--config", &config, &component_arg("hello"), &component_arg("hostile")]);
    let first = get(&host.url("/hostile/flood")).json();
    assert_eq!(first["sent"], 4, "{first}");
    assert!(first["refused"].as_str().is_some_and(|r| r.contains("max_send_bytes_per_invocation")), "{first}");
    let second = get(&host.url("/hostile/flood")).json();
    assert_eq!(second["sent"], 2, "6 MiB of room: two more 1 MiB messages fit, then the queue is full: {second}");
    assert!(second["refused"].as_str().is_some_and(|r| r.contains("is full")), "{second}");
    let logs = host.wait_for_log("a send was refused");
    assert!(logs.contains("function=hostile/flood"), "{logs}");
    // What was queued is all there, and the host still serves.
    let queues = host.admin("GET", "/v1/queues", None).json();
    let flood = queues["queues"].as_array().expect("queues").iter().find(|q| q["queue"] == "hostile-flood").cloned();
    assert_eq!(flood.map(|q| q["ready"].clone()), Some(Value::from(6)), "{queues}");
    // The admin API refuses past the queue's capacity too, with its own status.
    let reply =
        host.admin("POST", "/v1/queues/hostile-flood/messages", Some(serde_json::json!({ "body_base64": "eA==" })));
    assert_eq!(reply.status, 507, "{}", reply.body);
    assert!(reply.body.contains("queue `hostile-flood` is full"), "{}", reply.body);
    assert_eq!(get(&host.url("/hello/after")).status, 200);
}

#[test]
fn settling_over_and_over_with_huge_reasons_keeps_one_bounded_reason() {
    let host = Host::start(&[&component_arg("hostile")]);
    let reply = host.admin("POST", "/v1/queues/hostile-settle/messages", Some(serde_json::json!({ "body": 1 })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let page = host.admin("GET", "/v1/queues/hostile-settle/dead-letters", None);
        let letters = page.json()["dead_letters"].as_array().cloned().unwrap_or_default();
        if !letters.is_empty() {
            break letters;
        }
        assert!(Instant::now() < deadline, "no dead letter after 60 s:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    let reason = letters[0]["error"].as_str().expect("a reason");
    assert!(reason.len() < 4096 + 100, "a {} byte reason was kept", reason.len());
    assert!(reason.contains("[truncated: "), "{}", &reason[reason.len() - 60..]);
}

#[test]
fn a_guest_allowed_everything_still_cannot_reach_the_hosts_own_listeners() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    // `*`, and the collector's address (loopback: `*` alone does not open it).
    let allowed = format!("allowed_outbound_hosts = [\"*\", \"{}\"]", collector.authority);
    let config = config(dir.path(), "", &allowed);
    let host = Host::start(&["--config", &config, &component_arg("hostile")]);
    let call = |url: &str| get(&host.url(&format!("/hostile/call?url={url}"))).json();
    // Everything else is reachable: the collector answers.
    assert_eq!(call(&format!("{}/anything", collector.url))["status"], 200);
    let admin_port = host.admin.rsplit(':').next().expect("port").to_owned();
    for target in [
        host.admin.clone(),
        format!("http://localhost:{admin_port}"),
        format!("http://127.0.0.2:{admin_port}"),
        host.base.clone(),
    ] {
        let reply = call(&format!("{target}/v1/components"));
        assert!(reply["error"].as_str().is_some_and(|e| e.to_lowercase().contains("denied")), "{target}: {reply}");
    }
    let logs = host.wait_for_log("outbound request denied");
    assert!(logs.contains("outbound request denied"), "{logs}");
}

#[test]
fn unsafe_queue_names_are_refused_everywhere() {
    let host = Host::start(&[&component_arg("hello")]);
    for name in ["..%2F..%2Fetc", ".hidden", "a%2F..%2Fb"] {
        let reply = host.admin("POST", &format!("/v1/queues/{name}/messages"), Some(serde_json::json!({ "body": 1 })));
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
        let reply = host.admin("GET", &format!("/v1/queues/{name}/dead-letters"), None);
        assert_eq!(reply.status, 400, "{name}: {}", reply.body);
    }
    let queues = host.admin("GET", "/v1/queues", None).json();
    assert_eq!(queues["queues"], Value::Array(Vec::new()), "a refused name was created: {queues}");
}

#[test]
fn a_delivery_waiting_for_an_instance_holds_no_lease() {
    let collector = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), "max_instances = 1\ntimeout_ms = 4000", "");
    let host = Host::start(&["--config", &config, &component_arg("hostile"), &component_arg("versioned")]);
    let versioned_env = format!("COLLECTOR_URL={}", collector.url);
    host.cli_ok(&[
        "deploy",
        &component_arg("versioned"),
        "--env",
        &versioned_env,
        "--allow-host",
        &collector.authority,
    ]);
    // The only instance spins until its deadline; a message arrives meanwhile.
    let url = host.url("/hostile/spin");
    let spinner = std::thread::spawn(move || get(&url).status);
    std::thread::sleep(Duration::from_millis(500));
    let reply = host.admin("POST", "/v1/queues/versioned-work/messages", Some(serde_json::json!({ "body": 7 })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    std::thread::sleep(Duration::from_millis(1_000));
    let queues = host.admin("GET", "/v1/queues", None).json();
    let work = queues["queues"].as_array().expect("queues").iter().find(|q| q["queue"] == "versioned-work").cloned();
    let work = work.expect("the queue is listed");
    assert!(!spinner.is_finished(), "the spinner ended too soon: this checked nothing");
    assert_eq!((work["ready"].clone(), work["in_flight"].clone()), (Value::from(1), Value::from(0)), "{queues}");
    assert_eq!(spinner.join().expect("spinner"), 504);
    let reports = collector.wait_for("/work", Duration::from_secs(20), |r| !r.is_empty());
    assert_eq!(reports[0]["numbers"], serde_json::json!([7]));
}

#[test]
fn an_artifact_changed_on_disk_is_never_mapped_again() {
    let host = Host::start(&["--idle-timeout-ms", "200", &component_arg("hello")]);
    assert_eq!(get(&host.url("/hello/a")).status, 200);
    poll_until("the idle unload", Duration::from_secs(20), || host.logs().contains("unloaded idle component"));
    for entry in std::fs::read_dir(host.data.join("compiled")).expect("compiled dir") {
        let path = entry.expect("entry").path();
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, bytes).expect("corrupt in place");
    }
    let reply = get(&host.url("/hello/b"));
    assert_eq!(reply.status, 500, "{}", reply.body);
    let logs = host.wait_for_log("does not match its recorded checksum");
    assert!(logs.contains("does not match its recorded checksum (it changed on disk)"), "{logs}");
}

#[test]
fn a_name_that_resolves_to_a_protected_address_is_refused_unless_the_address_is_named() {
    let origin = crate::support::origin::Origin::start();
    let port = origin.authority.rsplit(':').next().expect("port").to_owned();
    let dir = tempfile::tempdir().expect("temp dir");
    // The names resolve as the test says, never through DNS: pinned by the host config.
    let pinned = "[outbound]\nresolve = { \"sneaky.test\" = [\"127.0.0.1\"], \"metadata.test\" = [\"169.254.169.254\"], \
                  \"mixed.test\" = [\"93.184.216.34\", \"10.1.2.3\"] }\n";
    let write = |name: &str, allowed: &str| {
        let path = dir.path().join(name);
        let text = format!("{pinned}[components.hostile]\nallowed_outbound_hosts = [{allowed}]\n");
        std::fs::write(&path, text).expect("write config");
        path.to_str().expect("utf-8").to_owned()
    };

    // Every name is allowed, by name and by `*`; none of their addresses is.
    let by_name = write("by-name.toml", &format!("\"sneaky.test:{port}\", \"metadata.test\", \"mixed.test\", \"*\""));
    let host = Host::start(&["--config", &by_name, &component_arg("hostile")]);
    let call = |url: &str| get(&host.url(&format!("/hostile/call?url={url}"))).json();
    let refusals = [
        (format!("http://sneaky.test:{port}/json/sneaky"), format!("127.0.0.1:{port}"), "loopback"),
        ("http://metadata.test/latest/meta-data".to_owned(), "169.254.169.254:80".to_owned(), "cloud metadata"),
        // One protected address among public ones is enough to refuse: the connection could use any of them.
        ("http://mixed.test/".to_owned(), "10.1.2.3:80".to_owned(), "private network"),
        // `*` opens every name, not the node's loopback.
        (format!("http://127.0.0.1:{port}/json/direct"), format!("127.0.0.1:{port}"), "loopback"),
    ];
    for (url, _, _) in &refusals {
        let reply = call(url);
        let error = reply["error"].as_str().unwrap_or_else(|| panic!("{url} was let through: {reply}"));
        assert!(error.contains("protected address"), "{url}: {error}");
    }
    // Each refusal is logged naming the host, the address and the rule.
    for (url, address, rule) in &refusals {
        let name = url.trim_start_matches("http://").split(['/', ':']).next().expect("a host");
        let host_field = format!("host={name} ");
        host.wait_for_log_line(&[
            "outbound request denied: its host resolves to a protected address",
            &host_field,
            address,
            rule,
        ]);
    }
    assert!(
        origin.headers("/json/sneaky").is_empty() && origin.headers("/json/direct").is_empty(),
        "nothing reached the origin"
    );
    drop(host);

    // Naming the address opens it: the pinned name then reaches the origin, which sees the name as the host.
    let named = write("named.toml", &format!("\"sneaky.test:{port}\", \"127.0.0.1:{port}\""));
    let host = Host::start(&["--config", &named, &component_arg("hostile")]);
    let reply = get(&host.url(&format!("/hostile/call?url=http://sneaky.test:{port}/json/sneaky"))).json();
    assert_eq!(reply["status"], 200, "{reply}");
    let seen = origin.headers("/json/sneaky");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].get("host").map(String::as_str), Some(format!("sneaky.test:{port}").as_str()));
}

#[test]
fn a_freed_slot_hands_the_next_instance_fresh_memory_in_every_reset_mode() {
    // Two slots, so the same ones are reused request after request; each mode and amount kept resident resets them
    // differently (PAGEMAP_SCAN where the kernel has it and nothing swaps, else in place; madvise past the kept part).
    for (slot_reset, keep_resident_kib) in [("auto", 2048), ("in-place", 2048), ("in-place", 0), ("auto", 65536)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let limits =
            format!("max_instances = 2\nslot_reset = \"{slot_reset}\"\nkeep_resident_kib = {keep_resident_kib}");
        let config = config(dir.path(), &limits, "");
        let host = Host::start(&["--config", &config, &component_arg("hostile")]);
        let mode = host.wait_for_log("a freed instance slot is reset by");
        let mode =
            mode.lines().find(|l| l.contains("a freed instance slot is reset by")).unwrap_or_default().to_owned();
        for run in 0..400 {
            let reply = get(&host.url("/hostile/fresh-memory?mb=4"));
            assert_eq!(reply.status, 200, "{}", reply.body);
            let seen = reply.json();
            assert_eq!(
                seen["before"], 0,
                "run {run} ({slot_reset}, {keep_resident_kib} KiB kept; {mode}) found an earlier instance's markers: {seen}"
            );
            assert_eq!(seen["after"], seen["written"], "the scan sees what it wrote: {seen}");
        }
    }
}

/// How many times `needle` occurs in every file under `dir`, all together.
fn occurrences_under(dir: &std::path::Path, needle: &[u8]) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("read a data directory") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            count += occurrences_under(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            count += bytes.windows(needle.len()).filter(|window| *window == needle).count();
        }
    }
    count
}

/// Checks that `host` serves the automation guest's `/secret`, which reads `API_SECRET` and answers its length.
fn assert_serves_the_secret(host: &Host) {
    let reply = get(&host.url("/secret"));
    assert_eq!(
        (reply.status, reply.json()["length"].clone()),
        (200, serde_json::json!(SECRET.len())),
        "{}",
        reply.body
    );
}

#[test]
fn secrets_are_sealed_at_rest_and_a_data_directory_without_its_key_yields_none() {
    const PLAIN: &str = "plain-value-7f3a9c51";
    let data = tempfile::tempdir().expect("data dir");
    let dir = tempfile::tempdir().expect("config dir");
    let config = dir.path().join("edgefn.toml");
    let text = format!(
        "[components.automation]\nenv = {{ PLAIN = \"{PLAIN}\" }}\nsecrets = {{ API_SECRET = \"{SECRET}\" }}\n"
    );
    std::fs::write(&config, text).expect("write config");
    let config = config.to_str().expect("utf-8");

    let host = Host::start_in(data.path(), &["--config", config, &component_arg("automation")]);
    assert_serves_the_secret(&host);
    drop(host);
    // The scan reaches the stored configuration: its plain value is there; its secret is not, anywhere.
    assert!(occurrences_under(data.path(), PLAIN.as_bytes()) > 0, "the scan does not see the stored configuration");
    assert_eq!(occurrences_under(data.path(), SECRET.as_bytes()), 0, "a secret is stored in clear");

    // Rotating the key (offline) re-seals what is stored; the host then opens it with the new key only.
    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["secrets", "rotate-key", "--data", data.path().to_str().expect("utf-8")])
        .env_remove("EDGEFN_SECRETS_KEY")
        .output()
        .expect("run edgefn secrets rotate-key");
    let said = String::from_utf8_lossy(&rotated.stdout);
    assert!(rotated.status.success(), "{said}{}", String::from_utf8_lossy(&rotated.stderr));
    assert!(said.contains("re-sealed the secrets of 1 stored version(s)"), "{said}");
    assert_eq!(occurrences_under(data.path(), SECRET.as_bytes()), 0, "a secret is stored in clear after rotation");
    let host = Host::start_in(data.path(), &["--config", config, &component_arg("hello")]);
    assert_serves_the_secret(&host);
    drop(host);

    // A copy of the data directory without its key (here: with the retired one) brings back no secret: the version
    // is refused, naming the key that sealed it.
    let key = std::fs::read(data.path().join("secrets.key")).expect("the host key");
    std::fs::rename(data.path().join("secrets.key.old"), data.path().join("secrets.key")).expect("the old key");
    let keyless = Host::start_in(data.path(), &["--config", config, &component_arg("hello")]);
    keyless.wait_for_log_line(&["could not bring back a component that was live", "automation", "sealed under key"]);
    assert_eq!(get(&keyless.url("/secret")).status, 404, "the component with the secret is not served");
    drop(keyless);

    // With its key, the same directory serves the secret again: nothing was lost.
    std::fs::write(data.path().join("secrets.key"), key).expect("put the key back");
    let host = Host::start_in(data.path(), &["--config", config, &component_arg("hello")]);
    assert_serves_the_secret(&host);
}
