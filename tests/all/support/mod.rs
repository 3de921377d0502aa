//! Test support: build the test components once per test binary, run real hosts on 127.0.0.1:0 with a temporary
//! data dir, and talk real HTTP to them.

#![allow(clippy::zombie_processes, reason = "the child is killed and waited for in Drop, or waited for on exit")]

mod collector;
mod components;
pub(crate) mod origin;
mod servers;
pub(crate) mod tools;
pub(crate) mod wire;

pub(crate) use collector::Collector;
pub(crate) use components::{Abi, component, component_arg, component_arg_for, components_target_dir, workspace};
pub(crate) use servers::{NatsServer, WasmtimeServe, free_port};
pub(crate) use tools::{Tool, which};

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A running `edgefn up`, killed on drop.
pub(crate) struct Host {
    child: Child,
    pub(crate) base: String,
    /// The data dir; a temporary one is removed with the host.
    pub(crate) data: std::path::PathBuf,
    _temp: Option<tempfile::TempDir>,
    /// Everything the host printed on stdout before it started listening.
    pub(crate) banner: String,
    /// Everything it printed on stdout since (its functions' stdout goes there), unless started undrained.
    stdout: std::sync::Arc<Mutex<Vec<u8>>>,
    /// The admin API's base URL and bearer token.
    pub(crate) admin: String,
    pub(crate) token: String,
    stderr: std::sync::Arc<Mutex<String>>,
}

/// What becomes of a started host's stdout once it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// Read into a buffer the test can look at (the functions' stdout arrives there).
    Kept,
    /// Read and thrown away.
    Discarded,
    /// Never read: the pipe fills.
    Stuck,
}

impl Host {
    /// Starts a host with `args` (after `up`) and waits until it listens.
    pub(crate) fn start(args: &[&str]) -> Self {
        Self::start_with_env(args, &[])
    }

    pub(crate) fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::try_start(args, env).unwrap_or_else(|(code, output)| panic!("host exited with {code:?}:\n{output}"))
    }

    /// Starts a host; on failure returns its exit code and everything it printed.
    pub(crate) fn try_start(args: &[&str], env: &[(&str, &str)]) -> Result<Self, (Option<i32>, String)> {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::try_start_in(temp.path(), args, env)?;
        host._temp = Some(temp);
        Ok(host)
    }

    /// Starts a host on an existing data dir, e.g. to restart on the state a previous host left.
    pub(crate) fn start_in(data: &Path, args: &[&str]) -> Self {
        Self::try_start_in(data, args, &[])
            .unwrap_or_else(|(code, output)| panic!("host exited with {code:?}:\n{output}"))
    }

    pub(crate) fn try_start_in(
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, (Option<i32>, String)> {
        Self::launch(data, args, env, Stdout::Kept, None)
    }

    /// Starts a host whose data dir is a tmpfs of `size_mb` MiB of its own, as a small disk that a test can fill
    /// ([`Host::fill_disk`]). The tmpfs lives in a mount namespace of the host process alone (made by `unshare`
    /// with a user namespace, so no root is needed), and goes away with it; the test reaches it through
    /// [`Host::data_view`].
    pub(crate) fn start_on_small_disk(size_mb: u32, args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host =
            Self::launch(temp.path(), args, &[], Stdout::Kept, Some(size_mb)).unwrap_or_else(|(code, output)| {
                panic!(
                    "the host on a {size_mb} MiB tmpfs exited with {code:?} (it needs `unshare` from util-linux and \
                 user namespaces):\n{output}"
                )
            });
        host._temp = Some(temp);
        host
    }

    /// The host's data dir as this process reaches it: through `/proc/PID/root` (the host's view of the file
    /// system), which on a host started with [`Host::start_on_small_disk`] is where its disk is mounted.
    pub(crate) fn data_view(&self) -> PathBuf {
        as_seen_by(self.child.id(), &self.data)
    }

    /// Writes a file to the host's data dir until its file system refuses more for want of space; returns the
    /// file's path (as [`Host::data_view`] sees it): removing it frees the space.
    pub(crate) fn fill_disk(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.data_view().join("test-filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        // Big chunks first, then ever smaller ones, so that not even a page is left.
        for chunk in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
            let bytes = vec![0xA5u8; chunk];
            loop {
                match file.write_all(&bytes) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(error) => panic!("filling {}: {error}", path.display()),
                }
            }
        }
        path
    }

    /// Starts a host whose stdout is read and thrown away once it listens, as a log collector that keeps up would
    /// take it: what the functions print costs the host, not this process (benchmarks of the host use it).
    #[allow(dead_code)] // Only the benchmarks use it.
    pub(crate) fn start_discarding_stdout(args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::launch(temp.path(), args, &[], Stdout::Discarded, None)
            .unwrap_or_else(|(code, output)| panic!("host exited with {code:?}:\n{output}"));
        host._temp = Some(temp);
        host
    }

    /// Starts a host whose stdout nobody reads once it listens: the pipe fills, as when the host's output is stuck.
    pub(crate) fn start_undrained(args: &[&str], env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::launch(temp.path(), args, env, Stdout::Stuck, None)
            .unwrap_or_else(|(code, output)| panic!("host exited with {code:?}:\n{output}"));
        host._temp = Some(temp);
        host
    }

    fn launch(
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdout_mode: Stdout,
        small_disk_mb: Option<u32>,
    ) -> Result<Self, (Option<i32>, String)> {
        let mut command = match small_disk_mb {
            None => Command::new(env!("CARGO_BIN_EXE_edgefn")),
            Some(size_mb) => {
                // `unshare` and `sh` exec in place: the child's id stays the host's.
                let mut command = Command::new("unshare");
                command
                    .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o size="$1" edgefn-test-disk "$2" && shift 2 && exec "$@""#)
                    .args(["sh", &format!("{size_mb}m")])
                    .arg(data)
                    .arg(env!("CARGO_BIN_EXE_edgefn"));
                command
            }
        };
        command
            .arg("up")
            // The host exits when this process does (a shared host lives in a static, which is never dropped).
            .arg("--exit-on-stdin-close")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--admin-listen")
            .arg("127.0.0.1:0")
            .arg("--data")
            .arg(data)
            .args(args)
            .env("CARGO_TARGET_DIR", components_target_dir())
            .env("EDGEFN_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn edgefn");
        let stderr = std::sync::Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr lock").push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut banner = String::new();
        loop {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let code = child.wait().ok().and_then(|s| s.code());
                // The host has exited, so its stderr reaches EOF: wait for the reader to have it all.
                let _ = reader.join();
                let output = format!("{banner}{}", stderr.lock().expect("stderr lock"));
                return Err((code, output));
            }
            banner.push_str(&line);
            if let Some(address) = line.trim().strip_prefix("edgefn listening on ") {
                let base = address.split_whitespace().next().expect("address").to_owned();
                // Keep draining stdout, into a buffer the tests can read (the functions' stdout arrives there).
                let printed: std::sync::Arc<Mutex<Vec<u8>>> = std::sync::Arc::default();
                if stdout_mode != Stdout::Stuck {
                    let sink = (stdout_mode == Stdout::Kept).then(|| printed.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                            if n == 0 {
                                break;
                            }
                            if let Some(sink) = &sink {
                                sink.lock().expect("stdout lock").extend_from_slice(&buf[..n]);
                            }
                        }
                    });
                } else {
                    // Held open and never read: the pipe fills.
                    std::mem::forget(stdout);
                }
                let admin = banner
                    .lines()
                    .find_map(|l| l.strip_prefix("edgefn admin API on "))
                    .expect("the host printed its admin address")
                    .trim()
                    .to_owned();
                let data_view = match small_disk_mb {
                    None => data.to_owned(),
                    Some(_) => as_seen_by(child.id(), data),
                };
                let token =
                    std::fs::read_to_string(data_view.join("admin-token")).expect("admin token").trim().to_owned();
                return Ok(Self {
                    child,
                    base,
                    data: data.to_owned(),
                    _temp: None,
                    banner,
                    stdout: printed,
                    admin,
                    token,
                    stderr,
                });
            }
        }
    }

    /// Calls the admin API with the host's token and `body` as it is; returns the reply whatever its status.
    pub(crate) fn admin_bytes(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        let auth = format!("Bearer {}", self.token);
        send(method, &format!("{}{path}", self.admin), &[("authorization", &auth)], body)
    }

    /// Calls the admin API with the host's token; returns the reply whatever its status.
    pub(crate) fn admin(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Reply {
        let auth = format!("Bearer {}", self.token);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        send(
            method,
            &format!("{}{path}", self.admin),
            &[("authorization", &auth), ("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    /// How many instances the host runs right now (its `edgefn_instances_in_use` gauge): a request that has
    /// begun holds one. (Waiting for its component's load no longer tells that: a deploy keeps it loaded.)
    pub(crate) fn instances_in_use(&self) -> u64 {
        let metrics = self.admin("GET", "/metrics", None).body;
        let line = metrics.lines().find(|l| l.starts_with("edgefn_instances_in_use ")).expect("the gauge");
        line.split_whitespace().nth(1).expect("a value").parse::<f64>().expect("a number") as u64
    }

    /// Runs the `edgefn` CLI against this host's admin API; returns what it printed, whatever its exit status.
    pub(crate) fn cli(&self, args: &[&str]) -> CliOutput {
        let output = Command::new(env!("CARGO_BIN_EXE_edgefn"))
            .args(args)
            .args(["--admin", &self.admin, "--token", &self.token])
            .env("CARGO_TARGET_DIR", components_target_dir())
            .output()
            .expect("run the edgefn CLI");
        CliOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs the CLI and fails the test, with everything it printed, unless it succeeds. Returns its stdout.
    pub(crate) fn cli_ok(&self, args: &[&str]) -> String {
        let output = self.cli(args);
        assert!(
            output.success,
            "edgefn {args:?} failed:\n{}{}\nhost log:\n{}",
            output.stdout,
            output.stderr,
            self.logs()
        );
        output.stdout
    }

    /// Kills the host with SIGKILL: no shutdown, no flushing, as in a crash.
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the host as an operator would (SIGTERM) and waits for it to exit; fails if it has not within 30 s.
    /// Its logs stay readable.
    pub(crate) fn terminate(&mut self) {
        // SAFETY: kill only sends a signal to the process this test started (and has not reaped yet).
        let sent = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM to the host: {}", std::io::Error::last_os_error());
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().expect("wait for the host").is_none() {
            assert!(Instant::now() < deadline, "the host did not exit within 30 s of SIGTERM:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host process's id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// What the host printed on stdout since it started listening: its functions' stdout.
    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().expect("stdout lock")).into_owned()
    }

    /// What the host logged so far.
    pub(crate) fn logs(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// The host's log line for the request that produced `reply` (found by its `x-request-id`).
    pub(crate) fn request_log_line(&self, reply: &Reply) -> String {
        let id = reply.header("x-request-id").expect("request id");
        // Other lines may name the request first (a refused token, say): wait for the request's own line.
        let logs = self.wait_for_log(&format!("request request_id={id}"));
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(id) && l.contains(" request ")).collect();
        assert_eq!(lines.len(), 1, "expected one log line for request {id}:\n{logs}");
        lines[0].to_owned()
    }

    /// Polls the logs until `needle` appears (the log line is written after the response is sent), and returns
    /// them; fails the test, with what the host logged, if it never does.
    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_logs(&format!("{needle:?}"), |logs| logs.contains(needle).then(|| logs.to_owned()))
    }

    /// The first line of the host's log that holds every one of `needles`, once there is one. Waiting for one
    /// needle and then looking for another in the whole log races the host writing the second line; this does not.
    /// Fails if no such line comes.
    pub(crate) fn wait_for_log_line(&self, needles: &[&str]) -> String {
        self.wait_for_logs(&format!("a line with all of {needles:?}"), |logs| {
            logs.lines().find(|line| needles.iter().all(|needle| line.contains(needle))).map(str::to_owned)
        })
    }

    /// Polls the logs until `found` finds something in them, and returns that; fails the test at the deadline,
    /// saying it waited for `what` and what the host logged.
    fn wait_for_logs<T>(&self, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let logs = self.logs();
            if let Some(found) = found(&logs) {
                return found;
            }
            assert!(Instant::now() < deadline, "the host never logged {what}; it logged:\n{logs}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every record the host's log store holds for the work `id`, once that work's invocation record is among them.
    /// Guest output and invocation records of one invocation go to the store in order, so once its invocation
    /// record is there, everything it printed is too: what this returns is complete. Fails if it never comes.
    pub(crate) fn work_log(&self, id: &str) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let reply = self.admin("GET", &format!("/v1/logs?id={id}&limit=1000"), None);
            assert_eq!(reply.status, 200, "{}", reply.body);
            let records = reply.json()["logs"].as_array().cloned().unwrap_or_default();
            if records.iter().any(|r| r["kind"] == "invocation") {
                return records;
            }
            assert!(
                Instant::now() < deadline,
                "no invocation record for {id} was ever stored; the log has {records:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a CLI command printed.
#[derive(Debug)]
pub(crate) struct CliOutput {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Absolute `path` as process `pid` sees it, reached from this process through `/proc/PID/root` (the same file
/// unless the process has a mount namespace of its own).
fn as_seen_by(pid: u32, path: &Path) -> PathBuf {
    Path::new(&format!("/proc/{pid}/root")).join(path.strip_prefix("/").expect("an absolute path"))
}

/// Polls `done` every 20 ms until it holds; fails the test with `what` after `timeout`.
pub(crate) fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The admin API's counts of `queue` on `host` (`/v1/queues`); fails the test when the queue is not listed.
pub(crate) fn queue_stats(host: &Host, queue: &str) -> serde_json::Value {
    let reply = host.admin("GET", "/v1/queues", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let queues = reply.json()["queues"].as_array().expect("queues").clone();
    queues.into_iter().find(|q| q["queue"] == queue).unwrap_or_else(|| panic!("no queue {queue} in {}", reply.body))
}

/// Polls until `queue` has dead letters on `host` and returns them; fails the test after 30 s without one.
pub(crate) fn wait_for_dead_letters(host: &Host, queue: &str) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = host.admin("GET", &format!("/v1/queues/{queue}/dead-letters"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        let letters = reply.json()["dead_letters"].as_array().expect("dead letters").clone();
        if !letters.is_empty() {
            return letters;
        }
        assert!(Instant::now() < deadline, "no dead letter in `{queue}` after 30 s: {}", queue_stats(host, queue));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A response, whatever its status.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Sends a request and returns the reply, 4xx and 5xx included.
pub(crate) fn send(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let response = match request.send_bytes(body) {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let status = response.status();
    let headers =
        response.headers_names().iter().map(|n| (n.clone(), response.header(n).unwrap_or("").to_owned())).collect();
    let body = response.into_string().expect("UTF-8 body");
    Reply { status, headers, body }
}

pub(crate) fn get(url: &str) -> Reply {
    send("GET", url, &[], b"")
}

pub(crate) fn post(url: &str, body: &str) -> Reply {
    send("POST", url, &[("content-type", "application/json")], body.as_bytes())
}

/// Defines a test that runs once for each guest ABI, as `NAME::wasip2` and `NAME::wasip3`: what holds for WASI 0.2
/// components must hold for WASI 0.3 ones. The body gets the ABI as `abi`.
macro_rules! for_both_abis {
    ($(#[$attr:meta])* fn $name:ident($abi:ident) $body:block) => {
        $(#[$attr])*
        mod $name {
            #[allow(unused_imports, reason = "the body may use anything of the module it was written in")]
            use super::*;

            fn run($abi: crate::support::Abi) $body

            #[test]
            fn wasip2() {
                run(crate::support::Abi::P2)
            }

            #[test]
            fn wasip3() {
                run(crate::support::Abi::P3)
            }
        }
    };
}
pub(crate) use for_both_abis;

/// Makes tests that load the whole machine (a gibibyte through a host, guests spinning on purpose) and tests that
/// read the clock closely (cron ticks across nodes) take turns: on two cores, one would make the other miss ticks.
/// Every other test runs alongside them as usual.
pub(crate) fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
