//! Server-sent events: `Response::sse(|mut events| async move { events.send(Event::data("hi")).await })`.
//!
//! The response is `text/event-stream`, never cached, and each [`Event`] is written to the client as soon as it is
//! sent (an LLM's tokens, a live feed). While the function sends nothing, a comment line (`: keep-alive`) goes out
//! every [`DEFAULT_KEEP_ALIVE`] (or the interval set with `Response::with_keep_alive`), so proxies and browsers do
//! not close an idle stream. When the client hangs up, the next `send` fails, and `?` ends the function's work.

use crate::body::{BodyWriter, client_gone};
use crate::{Error, Result};
use futures::channel::mpsc;
use std::time::Duration;

/// How often a comment goes out while the function sends nothing, unless set otherwise.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How many events may wait for the client before `send` waits too.
const QUEUED_EVENTS: usize = 16;

/// One event: `data` (split into `data:` lines), and optionally its `event` type, `id` and `retry` hint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    event: Option<String>,
    id: Option<String>,
    retry: Option<Duration>,
    data: String,
}

impl Event {
    /// An event carrying `data` (several lines become several `data:` lines, and arrive joined by `\n`).
    pub fn data(data: impl Into<String>) -> Self {
        Self { data: data.into(), ..Self::default() }
    }

    /// An event whose data is `value` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<Self> {
        let data = serde_json::to_string(value)
            .map_err(|e| Error::internal(format!("failed to encode the event as JSON: {e}")))?;
        Ok(Self::data(data))
    }

    /// The event's type (`event:`), which the browser dispatches on (`source.addEventListener("tick", ..)`).
    pub fn event(mut self, name: impl Into<String>) -> Self {
        self.event = Some(one_line(name.into()));
        self
    }

    /// The event's id (`id:`): a browser that reconnects sends the last one in `Last-Event-ID`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(one_line(id.into()));
        self
    }

    /// How long a browser waits before it reconnects (`retry:`).
    pub fn retry(mut self, after: Duration) -> Self {
        self.retry = Some(after);
        self
    }

    /// The event's data.
    pub fn data_str(&self) -> &str {
        &self.data
    }

    /// The event's type, if it has one.
    pub fn event_type(&self) -> Option<&str> {
        self.event.as_deref()
    }

    /// The event's id, if it has one.
    pub fn event_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The event as it goes on the wire, ending with its blank line.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Some(event) = &self.event {
            out.push_str(&format!("event: {event}\n"));
        }
        if let Some(id) = &self.id {
            out.push_str(&format!("id: {id}\n"));
        }
        if let Some(retry) = self.retry {
            out.push_str(&format!("retry: {}\n", retry.as_millis()));
        }
        for line in self.data.split('\n') {
            out.push_str("data: ");
            out.push_str(line.strip_suffix('\r').unwrap_or(line));
            out.push('\n');
        }
        out.push('\n');
        out
    }

    /// Parses a stream of events as a browser would (comments and unknown fields skipped): for tests.
    pub fn parse_all(text: &str) -> Vec<Event> {
        let mut events = Vec::new();
        let mut current = Event::default();
        let mut data: Option<String> = None;
        for line in text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line)) {
            if line.is_empty() {
                if let Some(data) = data.take() {
                    current.data = data;
                    events.push(std::mem::take(&mut current));
                }
                current = Event::default();
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                "event" => current.event = Some(value.to_owned()),
                "id" => current.id = Some(value.to_owned()),
                "retry" => current.retry = value.parse().ok().map(Duration::from_millis),
                _ => {}
            }
        }
        events
    }
}

/// Event types and ids are one line each: a line break would end the field and start another.
fn one_line(value: String) -> String {
    if value.contains(['\n', '\r']) { value.replace(['\n', '\r'], " ") } else { value }
}

/// What an SSE handler sends its events through.
#[derive(Debug)]
pub struct Events {
    sender: mpsc::Sender<String>,
}

impl Events {
    /// Sends `event`; waits while the client is behind by more than a few events. Fails once the client has gone.
    pub async fn send(&mut self, event: Event) -> Result<()> {
        self.push(event.encode()).await
    }

    /// Sends a comment line (ignored by browsers; a heartbeat of your own, or a note for a human reading the stream).
    pub async fn comment(&mut self, text: &str) -> Result<()> {
        let mut out = String::new();
        for line in text.split('\n') {
            out.push_str(&format!(": {line}\n"));
        }
        out.push('\n');
        self.push(out).await
    }

    async fn push(&mut self, frame: String) -> Result<()> {
        futures::SinkExt::send(&mut self.sender, frame).await.map_err(|_| client_gone())
    }
}

/// The events channel of a handler, and its receiving end for [`pump`].
pub(crate) fn channel() -> (Events, mpsc::Receiver<String>) {
    let (sender, receiver) = mpsc::channel(QUEUED_EVENTS);
    (Events { sender }, receiver)
}

/// Writes what the handler sends to the client, with a keep-alive comment whenever it has been quiet for
/// `keep_alive`. Ends when the handler is done (its [`Events`] dropped) or the client is gone.
pub(crate) async fn pump(mut frames: mpsc::Receiver<String>, writer: &mut BodyWriter, keep_alive: Duration) {
    use futures::future::{Either, select};
    loop {
        let next = futures::StreamExt::next(&mut frames);
        let quiet = std::pin::pin!(crate::rt::sleep(keep_alive));
        let frame = match select(next, quiet).await {
            Either::Left((Some(frame), _)) => frame,
            Either::Left((None, _)) => return,
            Either::Right(((), _)) => ": keep-alive\n\n".to_owned(),
        };
        if writer.write(frame).await.is_err() {
            // The client is gone: dropping `frames` makes the handler's next send fail.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_encodes_every_field_and_splits_its_data_into_lines() {
        let event = Event::data("first\nsecond").event("tick").id("7").retry(Duration::from_millis(1500));
        assert_eq!(event.encode(), "event: tick\nid: 7\nretry: 1500\ndata: first\ndata: second\n\n");
        assert_eq!(Event::data("").encode(), "data: \n\n");
        // A line break in a one-line field cannot start a field of its own.
        assert_eq!(Event::data("x").event("a\nid: 9").encode(), "event: a id: 9\ndata: x\n\n");
    }

    #[test]
    fn parsing_what_was_encoded_gives_the_events_back_and_skips_comments() {
        let events = [Event::data("a\nb").event("tick").id("1"), Event::data("{\"n\":2}")];
        let mut wire = String::from(": keep-alive\n\n");
        for event in &events {
            wire.push_str(&event.encode());
            wire.push_str(": keep-alive\n\n");
        }
        assert_eq!(Event::parse_all(&wire), events);
    }
}
