//! Spans of your own, in the trace the host exports (OpenTelemetry, when the host's `[otel]` is on).
//!
//! Each invocation is a span of the host's; [`span`] opens a child of it (or of the innermost span still open),
//! and what the function does while it is open (fetches, key-value operations, sends, publishes, invokes) is a
//! child of that. The span closes when its guard is dropped, or with [`Span::end`]:
//!
//! ```
//! let mut span = edgefn::trace::span("price the basket");
//! span.set("items", 3);
//! // ... the work ...
//! span.end();
//! // Or around a closure:
//! let total = edgefn::trace::in_span("sum", || 1 + 2);
//! # assert_eq!(total, 3);
//! ```
//!
//! When the host exports nothing, opening a span costs one host call and records nothing.
//! Natively (unit tests), finished spans are recorded per thread: `edgefn::testing::spans()` takes them.
//!
//! Spans nest as a stack per instance: on an instance that serves several requests at once (WASI 0.3 reuse), a span
//! opened by one request's task is the parent of what any task of the instance does while it is open.

use std::fmt::Display;

/// An open span: closed when dropped (or by [`Span::end`]), with the attributes set on it.
#[derive(Debug)]
#[must_use = "a span closes when it is dropped: bind it (`let _span = ...`) to keep it open"]
pub struct Span {
    handle: u64,
    name: String,
    attributes: Vec<(String, String)>,
    error: Option<String>,
}

/// Opens a span named `name` (see the module docs).
pub fn span(name: &str) -> Span {
    Span { handle: imp::enter(name), name: name.to_owned(), attributes: Vec::new(), error: None }
}

/// Runs `work` inside a span named `name`.
pub fn in_span<T>(name: &str, work: impl FnOnce() -> T) -> T {
    let _span = span(name);
    work()
}

impl Span {
    /// Sets attribute `key` (a later `set` of the same key adds another; the host keeps the first 16, values cut at 256 bytes).
    pub fn set(&mut self, key: &str, value: impl Display) {
        self.attributes.push((key.to_owned(), value.to_string()));
    }

    /// Marks the span failed, with `error` as its status message.
    pub fn fail(&mut self, error: impl Display) {
        self.error = Some(error.to_string());
    }

    /// Closes it now.
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        imp::exit(self.handle, &self.name, std::mem::take(&mut self.attributes), self.error.take());
    }
}

#[cfg(target_family = "wasm")]
mod imp {
    use crate::abi::bindings::edgefn::function::trace;

    pub(super) fn enter(name: &str) -> u64 {
        trace::enter(name)
    }

    pub(super) fn exit(handle: u64, _name: &str, attributes: Vec<(String, String)>, error: Option<String>) {
        if handle != 0 {
            trace::exit(handle, &attributes, error.as_deref());
        }
    }
}

#[cfg(not(target_family = "wasm"))]
pub(crate) mod imp {
    use std::cell::RefCell;

    /// A span finished natively, for `edgefn::testing::spans()`.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FinishedSpan {
        pub name: String,
        pub attributes: Vec<(String, String)>,
        pub error: Option<String>,
    }

    thread_local! {
        pub(crate) static FINISHED: RefCell<Vec<FinishedSpan>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn enter(_name: &str) -> u64 {
        1
    }

    pub(super) fn exit(_handle: u64, name: &str, attributes: Vec<(String, String)>, error: Option<String>) {
        let span = FinishedSpan { name: name.to_owned(), attributes, error };
        FINISHED.with(|finished| finished.borrow_mut().push(span));
    }
}

#[cfg(all(test, not(target_family = "wasm")))]
mod tests {
    use super::imp;

    #[test]
    fn a_span_records_its_attributes_and_failure_when_it_closes() {
        let take = || imp::FINISHED.with(|finished| std::mem::take(&mut *finished.borrow_mut()));
        take();
        {
            let mut outer = super::span("outer");
            outer.set("items", 3);
            super::in_span("inner", || ());
            outer.fail("out of stock");
        }
        let spans = take();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["inner", "outer"], "inner closes first");
        assert_eq!(spans[1].attributes, [("items".to_owned(), "3".to_owned())]);
        assert_eq!(spans[1].error.as_deref(), Some("out of stock"));
    }
}
