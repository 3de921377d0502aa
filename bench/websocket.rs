//! WebSocket broadcast (issue 24): 1,000 connections to a running host's gateway-probe guest (`/ws/{room}`), then
//! `POST /broadcast`, which sends one message to every connection from a function; the figure is the time from the
//! POST until the last connection has the message, per round.
//!
//! ```text
//! cargo bench -p edgefn-host --bench websocket -- http://127.0.0.1:18183 [connections] [rounds]
//! ```
//!
//! `bench/gateway.sh` starts the host and runs it.

use futures_util::StreamExt as _;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| !arg.starts_with("--")).collect();
    let base = args.first().cloned().unwrap_or_else(|| "http://127.0.0.1:18183".to_owned());
    let connections: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    let url = format!("{}/ws/bench", base.replacen("http://", "ws://", 1));
    let mut clients = runtime.block_on(async {
        let mut clients = Vec::with_capacity(connections);
        while clients.len() < connections {
            let batch = (connections - clients.len()).min(50);
            let opened =
                futures_util::future::join_all((0..batch).map(|_| tokio_tungstenite::connect_async(&url))).await;
            for client in opened {
                let (mut client, _) = client.expect("connect");
                assert!(matches!(client.next().await, Some(Ok(Message::Text(_)))), "welcome");
                clients.push(client);
            }
        }
        clients
    });
    let mut times = Vec::new();
    for round in 0..rounds {
        let text = format!("round {round}");
        let started = Instant::now();
        let sent = ureq::post(&format!("{base}/broadcast")).send_string(&text).expect("broadcast");
        let count: usize = sent.into_string().expect("body").parse().expect("a count");
        assert_eq!(count, connections, "the broadcast reached another number of connections");
        let last = runtime.block_on(async {
            let waits = clients.iter_mut().map(|client| async {
                loop {
                    match tokio::time::timeout(Duration::from_secs(30), client.next()).await {
                        Ok(Some(Ok(Message::Text(got)))) if got.as_str() == text => return Instant::now(),
                        Ok(Some(Ok(_))) => continue,
                        other => panic!("a connection did not get the broadcast: {other:?}"),
                    }
                }
            });
            futures_util::future::join_all(waits).await.into_iter().max().expect("clients")
        });
        let ms = last.duration_since(started).as_secs_f64() * 1000.0;
        println!("round {round}: the last of {connections} connections had the broadcast after {ms:.1} ms");
        times.push(ms);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("median over {rounds} rounds: {median:.1} ms");
    println!("figure: websocket_broadcast_{connections}_ms {median:.1}");
}
