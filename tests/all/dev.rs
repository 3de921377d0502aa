//! `edgefn dev` as a new user runs it: on a crate `edgefn new` wrote, it starts a host, deploys, redeploys on save,
//! shows cargo's errors for a broken save while the last good version keeps serving, prints the live log, and on
//! Ctrl-C stops the host it started.

use crate::support::{components_target_dir, get};
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the dev loop printed (its host's output included), collected as it comes.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<String>>);

impl Printed {
    fn collect(&self, stream: impl std::io::Read + Send + 'static) {
        let printed = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut all = printed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                all.push_str(&line);
                all.push('\n');
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Waits until the output holds `needle`; fails at the deadline with everything printed.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "`edgefn dev` never printed {needle:?} in {timeout:?}; it printed:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn dev_deploys_redeploys_on_save_keeps_serving_through_a_broken_build_and_stops_its_host_on_ctrl_c() {
    let outside = tempfile::tempdir().expect("temp dir");
    let dir = outside.path().join("my-dev");
    let written = Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .args(["new", "my-dev", "--template", "http", "--path"])
        .arg(&dir)
        .output()
        .expect("run edgefn new");
    assert!(written.status.success(), "{}", String::from_utf8_lossy(&written.stderr));
    let data = outside.path().join("data");
    let mut dev = Command::new(env!("CARGO_BIN_EXE_edgefn"))
        .arg("dev")
        .arg(&dir)
        .arg("--data")
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("CARGO_TARGET_DIR", components_target_dir())
        .env_remove("EDGEFN_ADMIN_URL")
        .env_remove("EDGEFN_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start edgefn dev");
    let printed = Printed::default();
    printed.collect(dev.stdout.take().expect("stdout"));
    printed.collect(dev.stderr.take().expect("stderr"));
    let build_timeout = Duration::from_secs(300);

    // Started a host, built, deployed: it answers.
    let text = printed.wait_for("deployed my_dev version 1", build_timeout);
    let base = text
        .lines()
        .find_map(|line| line.strip_prefix("edgefn listening on ")?.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in:\n{text}"))
        .to_owned();
    let url = format!("{base}/my-dev/hello/ada");
    assert_eq!(get(&url).body, "Hello, ada!");
    // Its live log, below: the request's invocation record.
    printed.wait_for("http GET /my-dev/hello/ada: ok 200", Duration::from_secs(10));

    // A save redeploys.
    let source = dir.join("src/lib.rs");
    let original = std::fs::read_to_string(&source).expect("read the source");
    let edited = original.replace(r#"format!("{greeting}, {name}!")"#, r#"format!("{greeting}, {name}! (edited)")"#);
    assert_ne!(edited, original, "the template's greeting moved: update this test");
    std::fs::write(&source, &edited).expect("save");
    printed.wait_for("deployed my_dev version 2", build_timeout);
    assert_eq!(get(&url).body, "Hello, ada! (edited)");

    // A broken save: cargo's error, and the last good version keeps serving.
    std::fs::write(&source, format!("{edited}\nfn broken( {{\n")).expect("save");
    let text = printed.wait_for("the live version keeps serving", build_timeout);
    assert!(text.contains("error"), "cargo's diagnostics are shown:\n{text}");
    assert_eq!(get(&url).body, "Hello, ada! (edited)");

    // Ctrl-C: the dev loop ends and takes its host with it.
    let admin = std::fs::read_to_string(data.join("admin-url")).expect("the host's admin-url").trim().to_owned();
    let pid = libc::pid_t::try_from(dev.id()).expect("pid");
    // SAFETY: kill(2) on the child this test spawned and has not reaped, with a valid signal.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = dev.try_wait().expect("wait for edgefn dev") {
            break status;
        }
        assert!(Instant::now() < deadline, "`edgefn dev` did not stop on Ctrl-C:\n{}", printed.text());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{}", printed.text());
    let address = admin.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect_timeout(&address.parse().expect("admin address"), Duration::from_secs(2)).is_err(),
        "the host `edgefn dev` started still listens at {admin} after Ctrl-C"
    );
}
