//! `edgefn new` end to end, as a new user would go: write a crate from each template outside this repository,
//! run its own `cargo test`, deploy it to a running host with `edgefn deploy`, and get an answer from it.

use crate::support::{Host, components_target_dir, get, poll_until, post, send};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Runs `cargo test` in `dir` and returns its output; fails the test unless every test passed.
fn cargo_test(dir: &Path) -> String {
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .arg("test")
        .current_dir(dir)
        // Shared with the test components: the SDK's dependencies build once for every template.
        .env("CARGO_TARGET_DIR", components_target_dir())
        .output()
        .expect("run cargo test");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "cargo test failed in {}:\n{printed}", dir.display());
    printed
}

/// The number of tests that passed, from cargo's summary lines.
fn passed(printed: &str) -> usize {
    printed
        .lines()
        .filter_map(|line| line.strip_prefix("test result: ok. "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<usize>().ok())
        .sum()
}

#[test]
fn every_template_builds_passes_its_own_tests_deploys_and_answers() {
    let outside = tempfile::tempdir().expect("temp dir");
    assert!(
        !outside.path().starts_with(crate::support::workspace()),
        "the crates must be written outside the repository"
    );
    let host = Host::start(&[]);
    for template in ["http", "cron", "queue", "webhook"] {
        let name = format!("my-{template}");
        let dir = outside.path().join(&name);
        let written = std::process::Command::new(env!("CARGO_BIN_EXE_edgefn"))
            .args(["new", &name, "--template", template, "--path"])
            .arg(&dir)
            .output()
            .expect("run edgefn new");
        assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
        let printed = cargo_test(&dir);
        assert!(passed(&printed) >= 1, "the {template} template's own tests did not run:\n{printed}");

        let path = dir.to_str().expect("utf-8 path");
        let mut deploy = vec!["deploy", path];
        if template == "webhook" {
            deploy.extend(["--secret", "WEBHOOK_SECRET=new-user-secret"]);
        }
        let deployed = host.cli_ok(&deploy);
        let component = name.replace('-', "_");
        assert!(deployed.contains(&format!("deployed {component} version 1")), "{deployed}");
        match template {
            "http" => {
                assert_eq!(get(&host.url("/my-http/hello/ada?greeting=Hi")).body, "Hi, ada!");
                let created = post(&host.url("/my-http/items"), r#"{"name":"tea","quantity":2}"#);
                assert_eq!(created.status, 201, "{}", created.body);
            }
            "cron" => {
                let fired = host.cli_ok(&["invoke", "my_cron/heartbeat", "--cron"]);
                assert!(fired.contains(": succeeded (attempt 1, manual)"), "{fired}");
            }
            "queue" => {
                let queued = post(&host.url("/my-queue/jobs"), r#"{"id":7,"task":"resize"}"#);
                assert_eq!(queued.status, 202, "{}", queued.body);
                poll_until("the queued job to be worked off", Duration::from_secs(20), || {
                    host.logs().lines().any(|l| l.contains("delivery ok") && l.contains("my_queue/work"))
                });
            }
            "webhook" => {
                let body = br#"{"action":"opened"}"#;
                let signature = {
                    use hmac::Mac as _;
                    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"new-user-secret").expect("key");
                    mac.update(body);
                    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
                };
                let url = host.url("/my-webhook/webhook");
                let accepted = send("POST", &url, &[("x-hub-signature-256", &signature)], body);
                assert_eq!(accepted.status, 200, "{}", accepted.body);
                assert_eq!(send("POST", &url, &[], body).status, 401);
            }
            _ => unreachable!(),
        }
    }
}
