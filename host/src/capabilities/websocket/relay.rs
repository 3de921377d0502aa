//! Sends to another node's WebSocket connections, over the cluster's NATS server (core request and reply, nothing
//! stored: a connection lives as long as its node's process, and so does what is sent to it).
//!
//! Every node listens on `edgefn.ws.<relay id>`, its relay id being random per process (128 bits) and part of each
//! connection id it hands out (`ws-<relay id>-<uuid>`). A send to a connection of another relay id is a request to that
//! subject; the node holding the connection queues the message exactly as a local send would (the same component
//! check, the same bounded queue) and answers an empty body, or the reason it could not. The cluster's NATS server
//! is trusted as its JetStream is: a node acts on what another node relays.

use super::{Connections, Outgoing};
use async_nats::HeaderMap;
use futures_util::StreamExt as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a relayed send waits for the node holding the connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The headers a relayed send travels with; its payload is the message's bytes as they are (text, binary, or a
/// close's reason), so a relayed message is as large as the NATS server's `max_payload` allows (1 MiB by default).
const COMPONENT: &str = "Edgefn-Component";
const CONNECTION: &str = "Edgefn-Connection";
const KIND: &str = "Edgefn-Kind";
const CLOSE_CODE: &str = "Edgefn-Close-Code";

fn subject(relay_id: &str) -> String {
    format!("edgefn.ws.{relay_id}")
}

/// One relayed send as it travels: its headers and payload.
fn encode(component: &str, connection: &str, message: Outgoing) -> (HeaderMap, Vec<u8>) {
    let mut headers = HeaderMap::new();
    headers.insert(COMPONENT, component);
    headers.insert(CONNECTION, connection);
    let payload = match message {
        Outgoing::Text(text) => {
            headers.insert(KIND, "text");
            text.into_bytes()
        }
        Outgoing::Binary(bytes) => {
            headers.insert(KIND, "binary");
            bytes
        }
        Outgoing::Close { code, reason } => {
            headers.insert(KIND, "close");
            headers.insert(CLOSE_CODE, code.to_string().as_str());
            reason.into_bytes()
        }
    };
    (headers, payload)
}

/// The component, connection and message of a relayed send, or why it does not decode.
fn decode(headers: Option<&HeaderMap>, payload: &[u8]) -> Result<(String, String, Outgoing), String> {
    let header = |name: &str| {
        headers
            .and_then(|headers| headers.get(name))
            .map(|value| value.as_str().to_owned())
            .ok_or_else(|| format!("a relayed WebSocket send without its {name} header"))
    };
    let text =
        || String::from_utf8(payload.to_vec()).map_err(|_| "a relayed text message that is not UTF-8".to_owned());
    let message = match header(KIND)?.as_str() {
        "text" => Outgoing::Text(text()?),
        "binary" => Outgoing::Binary(payload.to_vec()),
        "close" => {
            let code = header(CLOSE_CODE)?.parse().map_err(|_| "a relayed close with a bad code".to_owned())?;
            Outgoing::Close { code, reason: text()? }
        }
        other => return Err(format!("a relayed WebSocket send of unknown kind `{other}`")),
    };
    Ok((header(COMPONENT)?, header(CONNECTION)?, message))
}

/// This node's side of the relay: its client of the cluster's NATS server.
#[derive(Debug, Clone)]
pub struct Relay {
    client: async_nats::Client,
}

impl Relay {
    /// Starts answering relayed sends to `connections` (this node's, under its relay id); stops when they are
    /// dropped.
    pub async fn start(client: async_nats::Client, connections: &Arc<Connections>) -> Result<Self, String> {
        let subject = subject(connections.relay_id());
        let mut requests = client
            .subscribe(subject.clone())
            .await
            .map_err(|error| format!("subscribe to {subject} on the cluster's NATS server: {error}"))?;
        let (answering, held) = (client.clone(), Arc::downgrade(connections));
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let Some(connections) = Weak::upgrade(&held) else { break };
                let answer =
                    decode(request.headers.as_ref(), &request.payload).and_then(|(component, connection, message)| {
                        connections.send_here(&component, &connection, message)
                    });
                if let Some(reply) = request.reply {
                    let body = answer.err().unwrap_or_default();
                    if let Err(error) = answering.publish(reply, body.into()).await {
                        tracing::warn!(%error, "could not answer a relayed WebSocket send");
                    }
                }
            }
        });
        Ok(Self { client })
    }

    /// Sends `message` to `connection` of `component`, held by the node of `relay_id`.
    pub async fn send(
        &self,
        relay_id: &str,
        component: &str,
        connection: &str,
        message: Outgoing,
    ) -> Result<(), String> {
        let (headers, payload) = encode(component, connection, message);
        let request = self.client.request_with_headers(subject(relay_id), headers, payload.into());
        let answer = match tokio::time::timeout(ANSWER_TIMEOUT, request).await {
            Err(_) => {
                return Err(format!(
                    "the node holding WebSocket connection `{connection}` did not answer in {}s",
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
            Ok(Err(error)) if error.kind() == async_nats::RequestErrorKind::NoResponders => {
                return Err(format!(
                    "no WebSocket connection `{connection}` is open: no node of the cluster holds it (its node may \
                     have stopped, closing it)"
                ));
            }
            Ok(Err(error)) => {
                return Err(format!("relaying to WebSocket connection `{connection}` failed: {error}"));
            }
            Ok(Ok(answer)) => answer,
        };
        if answer.payload.is_empty() { Ok(()) } else { Err(String::from_utf8_lossy(&answer.payload).into_owned()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_travels_unchanged() {
        for message in [
            Outgoing::Text("héllo".into()),
            Outgoing::Binary(vec![0, 1, 254, 255]),
            Outgoing::Close { code: 4001, reason: "bye".into() },
        ] {
            let (headers, payload) = encode("chat", "ws-a-b", message.clone());
            assert_eq!(decode(Some(&headers), &payload), Ok(("chat".into(), "ws-a-b".into(), message)));
        }
        let (mut headers, _) = encode("chat", "ws-a-b", Outgoing::Text(String::new()));
        assert!(decode(Some(&headers), &[0xff]).unwrap_err().contains("not UTF-8"));
        headers.insert(KIND, "smoke");
        assert!(decode(Some(&headers), b"").unwrap_err().contains("unknown kind `smoke`"));
        assert!(decode(None, b"").unwrap_err().contains("without its Edgefn-Kind header"));
    }
}
