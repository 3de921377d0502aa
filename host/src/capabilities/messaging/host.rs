//! The `send` and `publish` imports of a component (`edgefn:function/host`), forwarded to the invocation's
//! [`Messaging`] capability under its [`SendAllowance`]. They act on a [`MessagingView`]: what one invocation's
//! store lends them. `runtime` routes the imports here (the `host` interface also holds `settle` and `invoke`,
//! which belong to the delivery and to [`crate::capabilities::invoke`]).

use super::Messaging;
use crate::capabilities::bindings::p2::edgefn::function::types::SendOptions;
use crate::capabilities::invoke::Caller;
use crate::capabilities::unavailable;
use crate::storage::backends::NewMessage;
use crate::telemetry::otel;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::sync::Arc;

/// Messages and bytes one invocation may still send or publish.
#[derive(Debug, Clone, Copy, Default)]
pub struct SendAllowance {
    messages: u32,
    bytes: usize,
    /// The limits, for the error that says them.
    max_messages: u32,
    max_bytes: usize,
}

impl SendAllowance {
    pub fn new(max_messages: u32, max_bytes: usize) -> Self {
        Self { messages: max_messages, bytes: max_bytes, max_messages, max_bytes }
    }

    /// What `limits` allows one invocation.
    pub fn default_for(limits: &crate::config::QueueLimits) -> Self {
        Self::new(limits.max_sends_per_invocation, limits.max_send_bytes_per_invocation)
    }

    /// Takes one message of `len` bytes, or says which limit it would pass (and takes nothing).
    pub(crate) fn take(&mut self, len: usize) -> Result<(), String> {
        if self.messages == 0 {
            return Err(format!(
                "this invocation already sent {} messages, the most one may (limits.max_sends_per_invocation); nothing \
                 was sent",
                self.max_messages
            ));
        }
        if len > self.bytes {
            return Err(format!(
                "this invocation may send {} bytes in all (limits.max_send_bytes_per_invocation) and has {} left; \
                 this message is {len} bytes; nothing was sent",
                self.max_bytes, self.bytes
            ));
        }
        self.messages -= 1;
        self.bytes -= len;
        Ok(())
    }
}

/// What the messaging imports of one invocation act on, borrowed from its store.
pub struct MessagingView<'a> {
    /// The queues; `None` where there are none yet (a component's init at deploy).
    pub messaging: Option<&'a Arc<dyn Messaging>>,
    /// Who sends, and the work it does (what it sends carries that correlation id).
    pub caller: &'a Caller,
    /// What it may still send.
    pub sends: &'a mut SendAllowance,
}

impl std::fmt::Debug for MessagingView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagingView")
            .field("caller", &self.caller)
            .field("sends", &self.sends)
            .finish_non_exhaustive()
    }
}

impl MessagingView<'_> {
    /// `send(queue, body, options)`: the new message's id, or why nothing was sent.
    pub async fn send(mut self, queue: String, body: Vec<u8>, options: SendOptions) -> Result<String, String> {
        let messaging = self.messaging.cloned().ok_or_else(|| unavailable("send"))?;
        self.take(body.len())?;
        let span = self.span(SpanKind::Producer, format!("send {queue}"));
        let mut attributes = vec![
            KeyValue::new("messaging.system", "edgefn"),
            KeyValue::new("messaging.destination.name", queue.clone()),
            KeyValue::new("messaging.message.body.size", body.len() as i64),
        ];
        let message = NewMessage {
            body,
            delay_ms: options.delay_ms,
            priority: options.priority,
            correlation_id: correlation_id(self.caller),
            parent_span: span.id(),
        };
        let sent = messaging.send(sender(self.caller), queue, message).await.map_err(|e| e.to_string());
        if let Ok(id) = &sent {
            attributes.push(KeyValue::new("messaging.message.id", id.clone()));
        }
        span.end(attributes, sent.as_ref().err().cloned());
        sent
    }

    /// `publish(topic, body)`: how many subscribers it reached, or why nothing was published.
    pub async fn publish(mut self, topic: String, body: Vec<u8>) -> Result<u32, String> {
        let messaging = self.messaging.cloned().ok_or_else(|| unavailable("publish"))?;
        self.take(body.len())?;
        let span = self.span(SpanKind::Producer, format!("publish {topic}"));
        let mut attributes = vec![
            KeyValue::new("messaging.system", "edgefn"),
            KeyValue::new("messaging.destination.name", topic.clone()),
            KeyValue::new("messaging.message.body.size", body.len() as i64),
        ];
        let published = messaging
            .publish(sender(self.caller), topic, body, correlation_id(self.caller), span.id())
            .await
            .map_err(|e| e.to_string());
        if let Ok(subscribers) = &published {
            attributes.push(KeyValue::new("edgefn.subscribers", i64::from(*subscribers)));
        }
        span.end(attributes, published.as_ref().err().cloned());
        published
    }

    /// A child span of the sender's invocation.
    fn span(&self, kind: SpanKind, name: String) -> otel::Started {
        otel::start(&self.caller.correlation_id, self.caller.span_id, kind, name)
    }

    /// Counts a message of `len` bytes against the allowance; a refusal is logged as a warning.
    fn take(&mut self, len: usize) -> Result<(), String> {
        self.sends.take(len).inspect_err(|error| {
            tracing::warn!(function = %sender(self.caller), "a send was refused: {error}");
        })
    }
}

/// The function that sends: the last of the caller's chain.
fn sender(caller: &Caller) -> String {
    caller.chain.last().cloned().unwrap_or_default()
}

/// The id of the work the sender does, which what it sends carries; `None` outside any (init).
fn correlation_id(caller: &Caller) -> Option<String> {
    (!caller.correlation_id.is_empty()).then(|| caller.correlation_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allowance_refuses_past_either_limit_and_takes_nothing_then() {
        let mut allowance = SendAllowance::new(2, 10);
        assert!(allowance.take(11).is_err_and(|e| e.contains("max_send_bytes_per_invocation")));
        allowance.take(6).expect("within both limits");
        let refused = allowance.take(5).expect_err("5 bytes with 4 left");
        assert!(refused.contains("has 4 left"), "{refused}");
        allowance.take(4).expect("the bytes left, and the last message");
        let refused = allowance.take(0).expect_err("no message left");
        assert!(refused.contains("already sent 2 messages"), "{refused}");
    }
}
