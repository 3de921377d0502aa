//! How a message is addressed and labelled on JetStream: the subject of each queue and priority level, and the
//! headers that carry what JetStream has no field for (priority, enqueue time, correlation id, the due time of a
//! delayed message, and a dead letter's origin, attempts and error). Pure: the unit tests below pin the format,
//! which nodes of one cluster must agree on.

use super::subject_token;
use async_nats::HeaderMap;

/// Priority levels, pulled in this order.
pub(super) const LEVELS: [&str; 3] = ["hi", "mid", "lo"];
/// Where a delayed message waits until it is due.
pub(super) const LATER: &str = "later";

pub(super) const PRIORITY: &str = "Edgefn-Priority";
pub(super) const ENQUEUED_AT: &str = "Edgefn-Enqueued-At";
pub(super) const CORRELATION_ID: &str = "Edgefn-Correlation-Id";
/// The span that sent the message, 16 hex digits (see `telemetry::otel`).
pub(super) const PARENT_SPAN: &str = "Edgefn-Parent-Span";
pub(super) const NOT_BEFORE: &str = "Edgefn-Not-Before";
pub(super) const ORIGIN: &str = "Edgefn-Origin";
pub(super) const ERROR: &str = "Edgefn-Error";
pub(super) const ATTEMPTS: &str = "Edgefn-Attempts";
/// JetStream's de-duplication id: a message published again under the same id within two minutes is stored once.
pub(super) const MSG_ID: &str = "Nats-Msg-Id";

/// The level a message of `priority` is stored and pulled at.
pub(super) fn level(priority: i32) -> &'static str {
    match priority {
        1.. => "hi",
        0 => "mid",
        _ => "lo",
    }
}

/// Where a queue's messages of one level (or `later`) are stored. A dead letter's subject also names the queue it
/// came from (`origin`), so a re-drive can find the dead letters of one origin; `-` otherwise.
pub(super) fn queue_subject(queue: &str, level: &str, origin: Option<&str>) -> String {
    format!("edgefn.q.{}.{level}.{}", subject_token(queue), origin.map_or_else(|| "-".to_owned(), subject_token))
}

/// Where senders on any node tell consumers of `queue` that something arrived.
pub(super) fn wake_subject(queue: &str) -> String {
    format!("edgefn.wake.{}", subject_token(queue))
}

/// Header `name`, parsed; `None` when absent or not a `T`.
pub(super) fn header<T: std::str::FromStr>(headers: Option<&HeaderMap>, name: &str) -> Option<T> {
    headers?.get(name)?.as_str().parse().ok()
}

/// Header `name` as text, if present.
pub(super) fn header_text(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    Some(headers?.get(name)?.as_str().to_owned())
}

/// A copy of `headers` without `names`.
pub(super) fn without(headers: Option<&HeaderMap>, names: &[&str]) -> HeaderMap {
    let mut copy = HeaderMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        if names.iter().any(|removed| removed.eq_ignore_ascii_case(name.as_ref())) {
            continue;
        }
        for value in values {
            copy.append(name.clone(), value.clone());
        }
    }
    copy
}

/// The headers a message is stored with.
pub(super) fn headers_of(priority: i32, correlation_id: Option<&str>, parent_span: u64, now: i64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(PRIORITY, priority.to_string().as_str());
    headers.insert(ENQUEUED_AT, now.to_string().as_str());
    if let Some(id) = correlation_id {
        headers.insert(CORRELATION_ID, id);
    }
    if parent_span != 0 {
        headers.insert(PARENT_SPAN, format!("{parent_span:016x}").as_str());
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_three_levels_pulled_highest_first() {
        assert_eq!([level(7), level(1), level(0), level(-1), level(i32::MIN)], ["hi", "hi", "mid", "lo", "lo"]);
        assert_eq!(LEVELS, ["hi", "mid", "lo"]);
    }

    #[test]
    fn a_subject_names_queue_level_and_origin_with_dots_escaped() {
        assert_eq!(queue_subject("orders", "hi", None), "edgefn.q.orders.hi.-");
        assert_eq!(queue_subject("a.b", LATER, Some("src.q")), "edgefn.q.a~b.later.src~q");
        assert_eq!(wake_subject("a.b"), "edgefn.wake.a~b");
    }

    #[test]
    fn headers_carry_priority_time_and_correlation_and_read_back() {
        let headers = headers_of(-3, Some("req-1"), 0xab, 1_700_000_000_000);
        assert_eq!(header::<i32>(Some(&headers), PRIORITY), Some(-3));
        assert_eq!(header::<i64>(Some(&headers), ENQUEUED_AT), Some(1_700_000_000_000));
        assert_eq!(header_text(Some(&headers), CORRELATION_ID).as_deref(), Some("req-1"));
        assert_eq!(header_text(Some(&headers), PARENT_SPAN).as_deref(), Some("00000000000000ab"));
        assert_eq!(header_text(Some(&headers_of(0, None, 0, 1)), CORRELATION_ID), None);
        assert_eq!(header_text(Some(&headers_of(0, None, 0, 1)), PARENT_SPAN), None);
        assert_eq!(header::<i32>(None, PRIORITY), None);
    }

    #[test]
    fn without_drops_the_named_headers_whatever_their_case_and_keeps_every_value_of_the_rest() {
        let mut headers = HeaderMap::new();
        headers.insert(ERROR, "boom");
        headers.append("X-Multi", "1");
        headers.append("X-Multi", "2");
        let copy = without(Some(&headers), &["edgefn-error"]);
        assert_eq!(header_text(Some(&copy), ERROR), None);
        let values: Vec<&str> = copy.get_all("X-Multi").map(async_nats::header::HeaderValue::as_str).collect();
        assert_eq!(values, ["1", "2"]);
    }
}
