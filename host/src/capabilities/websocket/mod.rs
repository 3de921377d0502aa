//! The WebSocket connections this node holds, by id, and the imports that let a function send to one of its
//! component's connections or close it (`edgefn::websocket::send` / `close`). The HTTP trigger
//! (`triggers::http::websocket`) accepts the connections, registers them here and runs their events.
//!
//! Each connection has a bounded queue of outgoing messages, which its writer drains into the socket: a send never
//! waits for a slow client, and a client that stops reading gets no more than the queue holds (the send then errs,
//! naming the connection). A function reaches only its own component's connections; another tenant's ids look like
//! ids that do not exist.
//!
//! On a cluster, a connection held by another node is reached through it ([`relay`]): a connection's id names the
//! node process that holds it, so a send goes straight to that node.

pub mod relay;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use tokio::sync::mpsc;

/// How many messages may wait for one connection's writer.
pub const OUTGOING_QUEUE: usize = 64;

/// What a function asks a connection's writer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Text(String),
    Binary(Vec<u8>),
    Close { code: u16, reason: String },
}

#[derive(Debug)]
struct Connection {
    component: String,
    outgoing: mpsc::Sender<Outgoing>,
}

/// See the module docs.
#[derive(Debug)]
pub struct Connections {
    open: Mutex<HashMap<String, Connection>>,
    /// Random per process, part of every connection id handed out here (`ws-<relay id>-<uuid>`).
    relay_id: String,
    /// How sends reach other nodes' connections, on a cluster.
    relay: OnceLock<relay::Relay>,
}

impl Default for Connections {
    fn default() -> Self {
        let relay_id = uuid::Uuid::new_v4().simple().to_string();
        Self { open: Mutex::default(), relay_id, relay: OnceLock::new() }
    }
}

impl Connections {
    /// A new connection id, naming this node process.
    pub fn new_id(&self) -> String {
        format!("ws-{}-{}", self.relay_id, uuid::Uuid::new_v4().simple())
    }

    /// This node process's part of its connection ids.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// Lets sends reach the connections of the cluster's other nodes.
    pub fn set_relay(&self, relay: relay::Relay) {
        // Set once at start; a second relay would be a second subscription for the same ids.
        let _ = self.relay.set(relay);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Connection>> {
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers connection `id` of `component`; returns what its writer drains.
    pub fn register(&self, id: &str, component: &str) -> mpsc::Receiver<Outgoing> {
        let (sender, receiver) = mpsc::channel(OUTGOING_QUEUE);
        self.lock().insert(id.to_owned(), Connection { component: component.to_owned(), outgoing: sender });
        receiver
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues `message` for connection `id` of `component`, here or, on a cluster, on the node that holds it.
    pub async fn send(&self, component: &str, id: &str, message: Outgoing) -> Result<(), String> {
        // Only an id of the form this host hands out is relayed: its relay id goes into a NATS subject.
        let holder = id
            .strip_prefix("ws-")
            .and_then(|rest| rest.split_once('-'))
            .map(|(relay_id, _)| relay_id)
            .filter(|relay_id| relay_id.len() == 32 && relay_id.bytes().all(|b| b.is_ascii_hexdigit()));
        match (holder, self.relay.get()) {
            (Some(relay_id), Some(relay)) if relay_id != self.relay_id => {
                relay.send(relay_id, component, id, message).await
            }
            _ => self.send_here(component, id, message),
        }
    }

    /// Queues `message` for connection `id` of `component`, if this node holds it.
    pub fn send_here(&self, component: &str, id: &str, message: Outgoing) -> Result<(), String> {
        let open = self.lock();
        let connection = open
            .get(id)
            .filter(|connection| connection.component == component)
            .ok_or_else(|| format!("no WebSocket connection `{id}` is open"))?;
        connection.outgoing.try_send(message).map_err(|error| match error {
            mpsc::error::TrySendError::Full(_) => {
                format!("WebSocket connection `{id}` is not reading: {OUTGOING_QUEUE} messages already wait for it")
            }
            mpsc::error::TrySendError::Closed(_) => format!("WebSocket connection `{id}` is closing"),
        })
    }
}

/// The view the WebSocket imports act on: the connections, and who calls.
#[derive(Debug)]
pub struct WebSocketView<'a> {
    pub connections: Option<&'a std::sync::Arc<Connections>>,
    /// `component/function` of the caller: a function reaches only its own component's connections.
    pub caller: Option<&'a str>,
}

use super::bindings::p2::edgefn::function::websocket as wit;

/// The [`wasmtime::component::HasData`] of the WebSocket imports.
#[derive(Debug)]
pub struct WebSocketHost;

impl wasmtime::component::HasData for WebSocketHost {
    type Data<'a> = WebSocketView<'a>;
}

/// Links `edgefn:function/websocket`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> WebSocketView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, WebSocketHost>(linker, view)
}

impl WebSocketView<'_> {
    fn scope(&self) -> Result<(&Connections, &str), String> {
        let connections = self.connections.ok_or_else(|| super::unavailable("WebSockets"))?;
        let component = super::caller_component(self.caller);
        Ok((connections, component))
    }
}

impl wit::Host for WebSocketView<'_> {
    async fn send(&mut self, connection: String, message: Vec<u8>, binary: bool) -> Result<(), String> {
        let (connections, component) = self.scope()?;
        let message = if binary {
            Outgoing::Binary(message)
        } else {
            Outgoing::Text(String::from_utf8(message).map_err(|_| "a text message must be UTF-8".to_owned())?)
        };
        connections.send(component, &connection, message).await
    }

    async fn close(&mut self, connection: String, code: u16, reason: String) -> Result<(), String> {
        if !(code == 1000 || (3000..=4999).contains(&code)) {
            return Err(format!("close code {code} is not one a function may send: use 1000, or 3000 to 4999"));
        }
        if reason.len() > 123 {
            return Err("a close reason is at most 123 bytes".into());
        }
        let (connections, component) = self.scope()?;
        connections.send(component, &connection, Outgoing::Close { code, reason }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_reaches_only_its_own_connections_and_a_full_queue_errs() {
        let connections = Connections::default();
        let mut receiver = connections.register("c1", "chat");
        connections.send_here("chat", "c1", Outgoing::Text("hi".into())).expect("queued");
        assert_eq!(receiver.try_recv().expect("received"), Outgoing::Text("hi".into()));
        let error = connections.send_here("other", "c1", Outgoing::Text("x".into())).unwrap_err();
        assert_eq!(error, "no WebSocket connection `c1` is open", "no hint it exists");
        for _ in 0..OUTGOING_QUEUE {
            connections.send_here("chat", "c1", Outgoing::Text("x".into())).expect("queued");
        }
        let error = connections.send_here("chat", "c1", Outgoing::Text("x".into())).unwrap_err();
        assert!(error.contains("is not reading"), "{error}");
        connections.remove("c1");
        assert!(connections.is_empty());
    }

    #[test]
    fn a_connection_id_names_its_node_process() {
        let (here, there) = (Connections::default(), Connections::default());
        let id = here.new_id();
        let (relay_id, uuid) = id.strip_prefix("ws-").and_then(|rest| rest.split_once('-')).expect("ws-<relay>-<uuid>");
        assert_eq!((relay_id, relay_id.len(), uuid.len()), (here.relay_id(), 32, 32));
        assert_ne!(here.relay_id(), there.relay_id(), "each process its own");
        assert_ne!(here.new_id(), id);
    }
}
