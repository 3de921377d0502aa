//! The `trace` import: spans a function opens itself (`edgefn::trace::span`), kept per invocation as a stack and
//! exported as children of the invocation's span (see `telemetry::otel`). While one is open, what the function
//! does (fetches, key-value operations, sends, invokes) is its child.
//!
//! A guest decides how many spans it opens, so every part is bounded: spans open at once, spans per invocation,
//! the length of names, the number and size of attributes, and the bytes of all of them in one invocation (what the
//! exporter's queue may hold for it). Past a bound a span is not opened (`enter` answers 0) or its extra
//! attributes are dropped; the function itself goes on.
//!
//! On a WASI 0.3 instance reused by several requests at once, the spans are one stack for the instance: what any
//! request does is a child of the innermost span open (or of the request that started last), as its log lines are
//! logged under the request that started last.

use crate::telemetry::otel;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::sync::Arc;

/// Spans open at once, at most.
const MAX_OPEN: usize = 32;
/// Spans one invocation opens, at most.
const MAX_PER_INVOCATION: u32 = 1000;
/// The longest span name, attribute key and attribute value kept (longer ones are cut).
const MAX_NAME_BYTES: usize = 128;
const MAX_VALUE_BYTES: usize = 256;
/// Attributes one span keeps, at most.
const MAX_ATTRIBUTES: usize = 16;
/// The bytes of names, attributes and errors one invocation's spans keep, all together.
const MAX_BYTES_PER_INVOCATION: usize = 64 << 10;

/// The spans one invocation opened and has not closed, innermost last.
#[derive(Debug, Default)]
pub struct GuestSpans {
    open: Vec<otel::Started>,
    /// The invocation's own span: the parent when none is open.
    base: u64,
    opened: u32,
    /// What its spans keep, in bytes (see [`MAX_BYTES_PER_INVOCATION`]).
    bytes: usize,
}

impl GuestSpans {
    /// No span open yet, in the invocation whose span is `base`.
    pub fn new(base: u64) -> Self {
        Self { open: Vec::new(), base, opened: 0, bytes: 0 }
    }

    /// Moves on to the request whose span is `base` (a reused instance's next one): spans still open stay open (a
    /// request still running may close them), and its own spans are counted afresh.
    pub fn rebase(&mut self, base: u64) {
        self.base = base;
        self.opened = 0;
        self.bytes = 0;
    }

    /// The span what the function does now belongs to: the innermost open one, else the invocation's.
    pub fn current(&self) -> u64 {
        self.open.last().map_or(self.base, otel::Started::id)
    }

    /// Opens a span named `name` under [`current`](Self::current) in the work `correlation_id`; its handle, or 0
    /// past a bound (or when nothing is exported: there is nothing to keep).
    pub fn enter(&mut self, correlation_id: &Arc<str>, name: String) -> u64 {
        let name = cut(name, MAX_NAME_BYTES);
        if !otel::enabled()
            || self.open.len() >= MAX_OPEN
            || self.opened >= MAX_PER_INVOCATION
            || self.bytes + name.len() > MAX_BYTES_PER_INVOCATION
        {
            return 0;
        }
        self.opened += 1;
        self.bytes += name.len();
        let span = otel::start(correlation_id, self.current(), SpanKind::Internal, name);
        let id = span.id();
        self.open.push(span);
        id
    }

    /// Closes span `id` (and those opened inside it that are still open); an unknown id closes nothing.
    pub fn exit(&mut self, id: u64, attributes: Vec<(String, String)>, error: Option<String>) {
        let Some(position) = self.open.iter().position(|span| span.id() == id) else { return };
        let inner = self.open.split_off(position + 1);
        for span in inner.into_iter().rev() {
            span.end(Vec::new(), Some("still open when its parent span closed".to_owned()));
        }
        let mut kept = Vec::new();
        for (key, value) in attributes.into_iter().take(MAX_ATTRIBUTES) {
            let (key, value) = (cut(key, MAX_NAME_BYTES), cut(value, MAX_VALUE_BYTES));
            if self.bytes + key.len() + value.len() > MAX_BYTES_PER_INVOCATION {
                break;
            }
            self.bytes += key.len() + value.len();
            kept.push(KeyValue::new(key, value));
        }
        let error = error.map(|e| cut(e, MAX_VALUE_BYTES));
        self.bytes += error.as_ref().map_or(0, String::len);
        if let Some(span) = self.open.pop() {
            span.end(kept, error);
        }
    }
}

impl Drop for GuestSpans {
    /// Spans still open when the invocation ends (or a reused instance moves on) end with it.
    fn drop(&mut self) {
        for span in self.open.drain(..).rev() {
            span.end(Vec::new(), Some("still open when the invocation ended".to_owned()));
        }
    }
}

/// `text`, cut to at most `max` bytes on a character boundary.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_nothing_is_opened_and_the_invocation_span_stays_current() {
        let mut spans = GuestSpans::new(7);
        assert_eq!(spans.enter(&Arc::from("work"), "step".into()), 0);
        assert_eq!(spans.current(), 7);
        spans.exit(0, vec![("k".into(), "v".into())], None);
        assert_eq!(spans.current(), 7);
    }

    #[test]
    fn names_are_cut_on_a_character_boundary() {
        assert_eq!(cut("ééé".to_owned(), 3), "é");
        assert_eq!(cut("short".to_owned(), 10), "short");
    }
}
