//! WebSockets in API Gateway's model: the host holds the connections, and each event of one is a normal invocation
//! of a function of the component (a fresh instance, metered, logged under the connection's id):
//!
//! ```no_run
//! use edgefn::prelude::*;
//! use edgefn::websocket::{self, WebSocketEvent};
//!
//! #[function(trigger = websocket("/chat", on = "connect"))]
//! fn join(event: WebSocketEvent) -> Result<()> {
//!     if event.param("room").is_some() {
//!         return Err(Error::new(403, "rooms are closed"));   // an Err refuses the connection (403)
//!     }
//!     websocket::send(&event.connection_id, "welcome")   // queued: sent once the connection is open
//! }
//!
//! #[function(trigger = websocket("/chat", on = "message"))]
//! fn said(event: WebSocketEvent) -> Result<()> {
//!     websocket::send(&event.connection_id, &format!("you said: {}", event.text().unwrap_or_default()))
//! }
//! ```
//!
//! `send`, `send_binary` and `close` work from any function of the component (an HTTP route, a queue consumer), for
//! any of its connections, on any node of a cluster. A connection survives a deploy: its next event runs the new
//! version.

use crate::Result;

/// One event of a connection, as its function gets it.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct WebSocketEvent {
    /// The connection's id: what `send` and `close` name, and the correlation id of its events in the log.
    pub connection_id: String,
    /// `connect`, `message` or `disconnect`.
    pub event: String,
    /// The path the client connected to.
    pub path: String,
    /// Its query string, without the `?`.
    #[serde(default)]
    pub query: String,
    /// The route's parameters (`/rooms/{room}` gives `room`).
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// On `connect`: the request's headers (credentials left out).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// On a protected route: the verified token's subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// On `message`: a text message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// On `message`: a binary message, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_base64: Option<String>,
}

impl WebSocketEvent {
    /// The text of a text message.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// The bytes of the message: a binary one's, or a text one's UTF-8.
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine as _;
        match (&self.text, &self.binary_base64) {
            (Some(text), _) => text.as_bytes().to_vec(),
            (None, Some(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded).unwrap_or_default(),
            (None, None) => Vec::new(),
        }
    }

    /// A route parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// A header of the connect request (names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends a text message to connection `connection_id` of this component.
pub fn send(connection_id: &str, text: &str) -> Result<()> {
    imp::send(connection_id, text.as_bytes(), false)
}

/// Sends a binary message to connection `connection_id` of this component.
pub fn send_binary(connection_id: &str, data: &[u8]) -> Result<()> {
    imp::send(connection_id, data, true)
}

/// Closes connection `connection_id` of this component with a close `code` (1000: normal) and `reason`; its
/// `disconnect` event follows.
pub fn close(connection_id: &str, code: u16, reason: &str) -> Result<()> {
    imp::close(connection_id, code, reason)
}

#[cfg(target_family = "wasm")]
mod imp {
    use crate::abi::bindings::edgefn::function::websocket;
    use crate::{Error, Result};

    pub(super) fn send(connection_id: &str, data: &[u8], binary: bool) -> Result<()> {
        websocket::send(connection_id, data, binary).map_err(Error::internal)
    }

    pub(super) fn close(connection_id: &str, code: u16, reason: &str) -> Result<()> {
        websocket::close(connection_id, code, reason).map_err(Error::internal)
    }
}

/// Natively (unit tests) what is sent is kept per thread, for [`crate::testing::websocket_sent`].
#[cfg(not(target_family = "wasm"))]
mod imp {
    use crate::Result;
    use std::cell::RefCell;

    thread_local! {
        pub(crate) static SENT: RefCell<Vec<(String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn send(connection_id: &str, data: &[u8], _binary: bool) -> Result<()> {
        SENT.with(|sent| sent.borrow_mut().push((connection_id.to_owned(), data.to_vec())));
        Ok(())
    }

    pub(super) fn close(_connection_id: &str, _code: u16, _reason: &str) -> Result<()> {
        Ok(())
    }
}

/// What this thread's functions sent natively, oldest first (connection id, bytes).
#[cfg(not(target_family = "wasm"))]
pub(crate) fn sent() -> Vec<(String, Vec<u8>)> {
    imp::SENT.with(|sent| sent.borrow().clone())
}
