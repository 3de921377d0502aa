//! One CLI convention for every admin command: a readable table or summary on stdout by default, the admin API's
//! exact JSON with `--json`, errors on stderr with exit code 1, and the admin address and token found from the data
//! dir alone (`edgefn up` writes both there).

use crate::support::{Host, component_arg, poll_until};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Runs the CLI with nothing but `--data`: no `--admin`, no `--token`, no environment that names them.
fn edgefn_in(host: &Host, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(args)
        .args(["--data", host.data.to_str().expect("utf-8 path")])
        .env_remove("EDGEFN_ADMIN_URL")
        .env_remove("EDGEFN_ADMIN_TOKEN")
        .output()
        .expect("run the edgefn CLI")
}

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn every_command_prints_a_table_or_summary_and_exact_json_with_json_from_the_data_dir_alone() {
    // The host's admin API is on a port of its own choosing (the test support's `--admin-listen 127.0.0.1:0`):
    // only the data dir's `admin-url` says where.
    let host = Host::start(&[&component_arg("hello"), &component_arg("automation")]);
    let written = std::fs::read_to_string(host.data.join("admin-url")).expect("`edgefn up` wrote admin-url");
    assert_eq!(written.trim(), host.admin);

    let components = stdout(&edgefn_in(&host, &["components"]));
    let header = components.lines().next().expect("a header");
    assert!(
        header.starts_with("COMPONENT") && header.contains("VERSION") && header.ends_with("TRIGGERS"),
        "{components}"
    );
    // Columns line up: every row's TRIGGERS starts where the header's does.
    let column = header.find("TRIGGERS").expect("TRIGGERS");
    for line in components.lines().skip(1) {
        assert!(
            line.len() > column && line.as_bytes()[column - 1] == b' ' && line.as_bytes()[column] != b' ',
            "{components}"
        );
    }
    let exact: Value = serde_json::from_str(&stdout(&edgefn_in(&host, &["components", "--json"]))).expect("JSON");
    assert_eq!(exact["components"].as_array().map(Vec::len), Some(2), "{exact}");

    // A message: one line that says what happened; `--json` the API's answer.
    let sent = stdout(&edgefn_in(&host, &["send", "cli-probe", r#"{"n":1}"#]));
    assert!(sent.starts_with("sent to cli-probe: message ") && sent.contains("correlation id"), "{sent}");
    let sent: Value =
        serde_json::from_str(&stdout(&edgefn_in(&host, &["send", "cli-probe", r#"{"n":2}"#, "--json"]))).expect("JSON");
    assert_eq!(sent["ids"].as_array().map(Vec::len), Some(1), "{sent}");
    let queues = stdout(&edgefn_in(&host, &["queues"]));
    let probe = queues.lines().find(|l| l.starts_with("cli-probe ")).unwrap_or_else(|| panic!("{queues}"));
    assert_eq!(probe.split_whitespace().nth(1), Some("2"), "{queues}");

    // Dead letters as a table, attempts and all.
    let reply =
        host.admin("POST", "/v1/queues/poison/messages", Some(serde_json::json!({ "body": { "poison": true } })));
    assert_eq!(reply.status, 201, "{}", reply.body);
    poll_until("the poison message to be dead-lettered", Duration::from_secs(30), || {
        stdout(&edgefn_in(&host, &["dead-letters", "poison"])).lines().count() == 2
    });
    let letters = stdout(&edgefn_in(&host, &["dead-letters", "poison"]));
    assert!(letters.starts_with("ID") && letters.contains("ATTEMPTS"), "{letters}");
    let row: Vec<&str> = letters.lines().nth(1).expect("a row").split_whitespace().collect();
    assert_eq!((row[1], row[2]), ("poison-dlq", "3"), "{letters}");

    // A cron run fired by hand: a summary; its history: a table.
    let fired = stdout(&edgefn_in(&host, &["invoke", "automation/every_second_skip", "--cron"]));
    assert!(fired.contains("of automation/every_second_skip: succeeded (attempt 1, manual)"), "{fired}");
    let runs = stdout(&edgefn_in(&host, &["runs", "automation/every_second_skip", "--limit", "100"]));
    assert!(runs.starts_with("SCHEDULED (UTC)") && runs.contains("manual"), "{runs}");
    let runs: Value =
        serde_json::from_str(&stdout(&edgefn_in(&host, &["runs", "automation/every_second_skip", "--json"])))
            .expect("JSON");
    assert!(runs["runs"].as_array().is_some_and(|r| !r.is_empty()), "{runs}");

    // An error: on stderr, exit code 1, nothing on stdout.
    let missing = edgefn_in(&host, &["versions", "no-such-component"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(missing.stdout.is_empty(), "{}", String::from_utf8_lossy(&missing.stdout));
    assert!(
        String::from_utf8_lossy(&missing.stderr).starts_with("error: 404"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    // A flag still wins over the data dir, and an unreachable host is named.
    let elsewhere = edgefn_in(&host, &["components", "--admin", "http://127.0.0.1:9"]);
    assert_eq!(elsewhere.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("could not reach the admin API at http://127.0.0.1:9"));
    // Bad usage is clap's exit code 2.
    assert_eq!(edgefn_in(&host, &["send"]).status.code(), Some(2));
}

#[test]
fn help_shows_an_example_per_command_and_completions_cover_every_command() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_edgefn")).args(args).output().expect("run the edgefn CLI");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let commands = [
        "up",
        "dev",
        "new",
        "deploy",
        "versions",
        "rollback",
        "promote",
        "undeploy",
        "components",
        "inspect",
        "deployments",
        "send",
        "publish",
        "invoke",
        "queues",
        "dead-letters",
        "redrive",
        "runs",
        "kv",
        "token",
        "secrets",
        "logs",
        "usage",
        "replay",
        "nodes",
        "completions",
    ];
    for command in commands {
        let help = run(&[command, "--help"]);
        assert!(help.contains(&format!("Example: edgefn {command}")), "{command} --help has no example:\n{help}");
    }
    let overview = run(&["--help"]);
    assert!(overview.contains("Exit codes: 0 done, 1 failed"), "{overview}");
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_edgefn()"), "{bash}");
    for command in commands {
        assert!(bash.contains(command), "the bash completions miss {command}");
    }
}
