//! The collector: a tiny HTTP server on 127.0.0.1 that records what the functions under test POST to it.

use std::io::{BufRead as _, BufReader, Read as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A tiny HTTP server on 127.0.0.1 that records every POST body by path: the functions under test report to it
/// with outbound HTTP, so the tests see what really ran.
pub(crate) struct Collector {
    pub(crate) url: String,
    /// `host:port`, for `allowed_outbound_hosts`.
    pub(crate) authority: String,
    received: std::sync::Arc<Mutex<Vec<Received>>>,
    /// The gates opened so far: a GET of `/gate/<name>` answers `open` once `<name>` is in here, else `closed`.
    open_gates: std::sync::Arc<Mutex<Vec<String>>>,
}

/// One request the collector received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) body: serde_json::Value,
    /// The body as it came (an OTLP export is protobuf, not JSON).
    pub(crate) raw: Vec<u8>,
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
        let open_gates = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (sink, gates) = (received.clone(), open_gates.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (sink, gates) = (sink.clone(), gates.clone());
                std::thread::spawn(move || serve_one(stream, &sink, &gates));
            }
        });
        Self { url: format!("http://{authority}"), authority, received, open_gates }
    }

    /// Opens the gate `name`: a function polling `/gate/<name>` (to hold a request in flight for as long as the
    /// test needs, however slow the machine) sees `open` from now on.
    pub(crate) fn open_gate(&self, name: &str) {
        self.open_gates.lock().expect("collector lock").push(name.to_owned());
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

fn serve_one(stream: std::net::TcpStream, sink: &Mutex<Vec<Received>>, open_gates: &Mutex<Vec<String>>) {
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
        if let Some(gate) = path.strip_prefix("/gate/") {
            let open = open_gates.lock().expect("collector lock").iter().any(|g| g == gate);
            let answer = if open { "open" } else { "closed" };
            let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{answer}", answer.len());
            let _ = reader.get_mut().write_all(reply.as_bytes());
            continue;
        }
        let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        sink.lock().expect("collector lock").push(Received { path, body: value, raw: body, headers });
        let _ = reader.get_mut().write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    }
}
