//! Sends to another node's WebSocket connections, over the cluster's NATS server (core request and reply, nothing
//! stored: a connection lives as long as its node's process, and so does what is sent to it).
//!
//! Every node listens on `edgefn.ws.<relay id>`, its relay id being random per process and part of each connection
//! id it hands out (`ws-<relay id>-<uuid>`). A send to a connection of another relay id is a request to that
//! subject; the node holding the connection queues the message exactly as a local send would (the same component
//! check, the same bounded queue) and answers an empty body, or the reason it could not. The cluster's NATS server
//! is trusted as its JetStream is: a node acts on what another node relays.

use super::{Connections, Outgoing};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a relayed send waits for the node holding the connection.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

fn subject(relay_id: &str) -> String {
    format!("edgefn.ws.{relay_id}")
}

/// One relayed send, as it travels.
#[derive(Debug, Serialize, Deserialize)]
struct Relayed {
    component: String,
    connection: String,
    #[serde(flatten)]
    message: Wire,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Wire {
    Text { text: String },
    Binary { base64: String },
    Close { code: u16, reason: String },
}

impl From<Outgoing> for Wire {
    fn from(message: Outgoing) -> Self {
        match message {
            Outgoing::Text(text) => Self::Text { text },
            Outgoing::Binary(bytes) => Self::Binary { base64: STANDARD.encode(bytes) },
            Outgoing::Close { code, reason } => Self::Close { code, reason },
        }
    }
}

impl TryFrom<Wire> for Outgoing {
    type Error = String;

    fn try_from(wire: Wire) -> Result<Self, String> {
        Ok(match wire {
            Wire::Text { text } => Self::Text(text),
            Wire::Binary { base64 } => {
                Self::Binary(STANDARD.decode(base64).map_err(|error| format!("a relayed binary message: {error}"))?)
            }
            Wire::Close { code, reason } => Self::Close { code, reason },
        })
    }
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
                let answer = match serde_json::from_slice::<Relayed>(&request.payload) {
                    Ok(relayed) => Outgoing::try_from(relayed.message)
                        .and_then(|message| connections.send_here(&relayed.component, &relayed.connection, message)),
                    Err(error) => Err(format!("a relayed WebSocket send that does not decode: {error}")),
                };
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
        let relayed =
            Relayed { component: component.to_owned(), connection: connection.to_owned(), message: message.into() };
        let body = serde_json::to_vec(&relayed).map_err(|error| error.to_string())?;
        let request = self.client.request(subject(relay_id), body.into());
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
            let relayed =
                Relayed { component: "chat".into(), connection: "ws-a-b".into(), message: message.clone().into() };
            let wire = serde_json::to_vec(&relayed).expect("encode");
            let back: Relayed = serde_json::from_slice(&wire).expect("decode");
            assert_eq!((back.component.as_str(), back.connection.as_str()), ("chat", "ws-a-b"));
            assert_eq!(Outgoing::try_from(back.message), Ok(message));
        }
        let bad: Relayed = serde_json::from_str(r#"{"component":"c","connection":"x","kind":"binary","base64":"!!"}"#)
            .expect("decode");
        assert!(Outgoing::try_from(bad.message).unwrap_err().contains("a relayed binary message"));
    }
}
