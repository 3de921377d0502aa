//! WebSockets in API Gateway's model (issue 24, item 5), on a real host with real WebSocket clients: a connect the
//! function refuses, messages echoed in order, a close from the function, a connection that survives a deploy, and
//! 1,000 connections each getting a message another function sends, then every one's disconnect event; and on a
//! cluster, a function on one node sending to and closing a connection another node holds.

use crate::support::{Host, component_arg, send};
use futures_util::{SinkExt as _, StreamExt as _};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const CONFIG: &str = "[components.gateway_probe]\nkey_value_stores = [\"default\"]\n";

fn start_host(config: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("edgefn.toml");
    std::fs::write(&path, config).expect("write config");
    let host = Host::start(&["--config", path.to_str().expect("utf-8"), &component_arg("gateway_probe")]);
    (dir, host)
}

fn ws_url(host: &Host, path: &str) -> String {
    format!("{}{path}", host.base.replacen("http://", "ws://", 1))
}

async fn connect(url: &str) -> Client {
    tokio_tungstenite::connect_async(url).await.unwrap_or_else(|error| panic!("connect {url}: {error}")).0
}

/// The next text message, within 10 s; anything else fails the test.
async fn next_text(client: &mut Client) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return text.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio")
}

/// How many keys of the `default` store start with `prefix`, through the admin API.
fn count_keys(host: &Host, prefix: &str) -> usize {
    let reply = host.admin("GET", &format!("/v1/kv/default/keys?prefix={prefix}&limit=5000"), None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let page: serde_json::Value = serde_json::from_str(&reply.body).expect("json");
    page["keys"].as_array().map_or(0, Vec::len)
}

/// Waits until `count_keys(prefix)` is `wanted`; fails naming what it saw when it does not get there in 60 s.
fn wait_for_keys(host: &Host, prefix: &str, wanted: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen = count_keys(host, prefix);
        if seen == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{seen} keys `{prefix}*`, not {wanted}, after 60 s:\n{}", host.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn connections_are_refused_echoed_closed_by_a_function_and_survive_a_deploy() {
    let (_dir, host) = start_host(CONFIG);
    let runtime = runtime();
    runtime.block_on(async {
        // The connect function refuses: the handshake gets its 403, no connection opens.
        match tokio_tungstenite::connect_async(ws_url(&host, "/ws/closed")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403);
                let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
                assert!(body.contains("room `closed` is closed"), "{body}");
            }
            other => panic!("a refused connect should fail the handshake, got {other:?}"),
        }
        let mut client = connect(&ws_url(&host, "/ws/lobby")).await;
        assert_eq!(next_text(&mut client).await, "welcome", "what connect sent waited for the connection");
        for n in 0..20 {
            client.send(Message::text(format!("m{n}"))).await.expect("send");
        }
        for n in 0..20 {
            assert_eq!(next_text(&mut client).await, format!("echo m{n} from generation 1"), "in order");
        }
        // A deploy of a new version: the connection stays, its next message runs the new version.
        let deploy = host.cli(&["deploy", &component_arg("gateway_probe"), "--env", "GENERATION=2"]);
        assert!(deploy.success, "{}", deploy.stderr);
        client.send(Message::text("after")).await.expect("send");
        assert_eq!(next_text(&mut client).await, "echo after from generation 2");
        // The function closes it: the client gets the code and reason, and the disconnect event runs.
        client.send(Message::text("close me")).await.expect("send");
        match tokio::time::timeout(Duration::from_secs(10), client.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4000, "asked to"));
            }
            other => panic!("expected the function's close, got {other:?}"),
        }
    });
    wait_for_keys(&host, "gone:", 1);
    wait_for_keys(&host, "ws:", 0);
    host.wait_for_log("WebSocket connection ended");
    // Each event is an invocation, logged under the connection's id.
    let logs = host.admin("GET", "/v1/logs?limit=500", None).body;
    assert!(logs.contains("gateway_probe/ws_message"), "{logs}");
    // A plain GET to the route (no upgrade) is no WebSocket: no function answers it over HTTP.
    assert_eq!(send("GET", &host.url("/ws/lobby"), &[], b"").status, 404);
}

#[test]
fn a_thousand_connections_each_get_a_message_another_function_sends_and_every_disconnect_runs() {
    let (_dir, host) = start_host(CONFIG);
    let runtime = runtime();
    let url = ws_url(&host, "/ws/crowd");
    let mut clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..20 {
            let batch = futures_util::future::join_all((0..50).map(|_| connect(&url))).await;
            clients.extend(batch);
        }
        for client in &mut clients {
            assert_eq!(next_text(client).await, "welcome");
        }
        clients
    });
    assert_eq!(clients.len(), 1000);
    wait_for_keys(&host, "ws:", 1000);
    let sent = send("POST", &host.url("/broadcast"), &[], b"hello, everyone");
    assert_eq!((sent.status, sent.body.as_str()), (200, "1000"));
    runtime.block_on(async {
        for client in &mut clients {
            assert_eq!(next_text(client).await, "hello, everyone");
        }
    });
    // The clients drop (no close frame): every connection's disconnect runs.
    drop(runtime.block_on(async { futures_util::future::join_all(clients.into_iter().map(drop_later)).await }));
    wait_for_keys(&host, "gone:", 1000);
    wait_for_keys(&host, "ws:", 0);
}

/// Drops a client's socket without a close frame, as a browser tab that is killed does.
async fn drop_later(client: Client) {
    drop(client.into_inner());
}

#[test]
fn idle_flooding_and_oversized_connections_are_closed_with_their_codes_and_disconnect_runs() {
    let config = format!(
        "{CONFIG}\n[limits]\nwebsocket_idle_timeout_s = 1\nwebsocket_messages_per_s = 5\nwebsocket_max_message_kb = 1\n"
    );
    let (_dir, host) = start_host(&config);
    let runtime = runtime();
    runtime.block_on(async {
        let close_code = |message: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>| match message {
            Some(Ok(Message::Close(Some(frame)))) => Some(u16::from(frame.code)),
            _ => None,
        };
        // Silent past the idle timeout: closed with 1001.
        let mut idle = connect(&ws_url(&host, "/ws/quiet")).await;
        assert_eq!(next_text(&mut idle).await, "welcome");
        let ended = tokio::time::timeout(Duration::from_secs(10), idle.next()).await.expect("closed within 10 s");
        assert_eq!(close_code(ended), Some(1001));
        // More messages than websocket_messages_per_s at once: closed with 1008 before the sixth is handled.
        let mut flood = connect(&ws_url(&host, "/ws/loud")).await;
        assert_eq!(next_text(&mut flood).await, "welcome");
        for n in 0..20 {
            flood.send(Message::text(format!("m{n}"))).await.expect("send");
        }
        let mut echoed = 0;
        let code = loop {
            match tokio::time::timeout(Duration::from_secs(10), flood.next()).await.expect("an answer within 10 s") {
                Some(Ok(Message::Text(_))) => echoed += 1,
                other => break close_code(other),
            }
        };
        assert_eq!(code, Some(1008));
        assert!(echoed <= 5, "{echoed} messages were handled past the limit");
        // A message over websocket_max_message_kb: the connection ends without handling it.
        let mut big = connect(&ws_url(&host, "/ws/big")).await;
        assert_eq!(next_text(&mut big).await, "welcome");
        let _ = big.send(Message::text("x".repeat(4096))).await;
        let ended = tokio::time::timeout(Duration::from_secs(10), big.next()).await.expect("ended within 10 s");
        assert!(!matches!(ended, Some(Ok(Message::Text(_)))), "an oversized message was handled: {ended:?}");
        assert_eq!(close_code(ended), Some(1009), "closed as too big");
    });
    wait_for_keys(&host, "gone:", 3);
    host.wait_for_log("idle past websocket_idle_timeout_s");
    host.wait_for_log("more messages than websocket_messages_per_s");
    host.wait_for_log("over websocket_max_message_kb or websocket_max_frame_kb");
}

#[test]
fn a_function_on_one_node_sends_to_and_closes_a_connection_another_node_holds() {
    let test = "a_function_on_one_node_sends_to_and_closes_a_connection_another_node_holds";
    let Some(cluster) = crate::cluster::Cluster::new(test) else { return };
    let a = cluster.node_configured("a", &["gateway_probe"], CONFIG);
    let b = cluster.node_configured("b", &["gateway_probe"], CONFIG);
    let runtime = runtime();
    runtime.block_on(async {
        let mut client = connect(&ws_url(&a, "/ws/lobby")).await;
        assert_eq!(next_text(&mut client).await, "welcome");
        client.send(Message::text("who am i")).await.expect("send");
        let id = next_text(&mut client).await;
        assert!(id.starts_with("ws-"), "a connection id: {id}");

        // A function on node b sends to the connection node a holds.
        let sent = send("POST", &b.url(&format!("/send/{id}")), &[], b"hello from b");
        assert_eq!((sent.status, sent.body.as_str()), (200, "sent"));
        assert_eq!(next_text(&mut client).await, "hello from b");
        // Node a's own functions still reach it as before.
        let sent = send("POST", &a.url(&format!("/send/{id}")), &[], b"hello from a");
        assert_eq!((sent.status, sent.body.as_str()), (200, "sent"));
        assert_eq!(next_text(&mut client).await, "hello from a");

        // An id no node holds is refused with the reason.
        let nowhere = send(
            "POST",
            &b.url("/send/ws-00000000000000000000000000000000-0123456789abcdef0123456789abcdef"),
            &[],
            b"lost",
        );
        assert_eq!(nowhere.status, 404, "{}", nowhere.body);
        assert!(nowhere.body.contains("no node of the cluster holds it"), "{}", nowhere.body);

        // Node b closes it; the client gets the code, and its disconnect runs on node a.
        let closed = send("POST", &b.url(&format!("/send/{id}?close=4001")), &[], b"");
        assert_eq!((closed.status, closed.body.as_str()), (200, "sent"));
        let ended = loop {
            match tokio::time::timeout(Duration::from_secs(10), client.next()).await.expect("closed within 10 s") {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => break other,
            }
        };
        match ended {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4001, "closed from afar"));
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        wait_for_keys(&a, "gone:", 1);
        // Once node a has let go of it, a send says it is not open (before that, that it is closing).
        let gone = format!("no WebSocket connection `{id}` is open");
        crate::support::poll_until("node a to let go of the connection", Duration::from_secs(10), || {
            let after = send("POST", &b.url(&format!("/send/{id}")), &[], b"too late");
            assert_eq!(after.status, 404, "{}", after.body);
            assert!(!after.body.contains("no node of the cluster"), "node a answers for it: {}", after.body);
            after.body.contains(&gone)
        });
    });
}
