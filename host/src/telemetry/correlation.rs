//! Correlation ids: one id follows a piece of work through every trigger it reaches (the HTTP request, the
//! messages it sends, their deliveries, the topics they publish to, the functions they invoke, the calls they make
//! out), so that `edgefn logs --id ID` shows all of it.
//!
//! An HTTP request takes its id from a W3C `traceparent` header (its trace id), else from `x-request-id`, else a
//! new one; a cron run starts a new one. Outbound calls carry it as `traceparent` and `x-request-id`.

use http::HeaderMap;

/// The header a request id is read from and answered in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The W3C Trace Context header.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The longest `x-request-id` taken as it is; a longer one is replaced by a new id.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A new id: 32 lowercase hex digits, which is also a valid W3C trace id. A UUIDv7 (a millisecond timestamp, then
/// random bits): ids of new work sort by time, so the log's index by id grows at its end instead of at random
/// places (which made every stored record rewrite a page of it).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// The id of an incoming request: see the module docs. An `x-request-id` is taken if it is 1 to 128 characters
/// of `A-Z a-z 0-9 - _ . : / + =` (it is echoed in headers and logs, so nothing else); otherwise a new id.
pub fn from_headers(headers: &HeaderMap) -> String {
    if let Some(trace_id) = headers.get(TRACEPARENT_HEADER).and_then(|v| v.to_str().ok()).and_then(trace_id) {
        return trace_id.to_owned();
    }
    match headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()) {
        Some(id) if is_acceptable_id(id) => id.to_owned(),
        _ => new_id(),
    }
}

/// Whether `id` may be used as a correlation id as it is (see [`from_headers`]).
pub fn is_acceptable_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'='))
}

/// The trace id of a `traceparent` value (`version-traceid-parentid-flags`), if it is well formed: version `00`
/// (or a later one, whose first four fields are read the same), 32 lowercase hex digits not all zero, a 16-digit
/// parent id not all zero, 2-digit flags.
fn trace_id(traceparent: &str) -> Option<&str> {
    let mut fields = traceparent.trim().split('-');
    let (version, trace, parent, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let lower_hex = |field: &str, len: usize| {
        field.len() == len && field.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let zeros = |field: &str| field.bytes().all(|b| b == b'0');
    let well_formed = lower_hex(version, 2)
        && version != "ff"
        && (version != "00" || fields.next().is_none())
        && lower_hex(trace, 32)
        && !zeros(trace)
        && lower_hex(parent, 16)
        && !zeros(parent)
        && lower_hex(flags, 2);
    well_formed.then_some(trace)
}

/// The trace id of the work `id`: `id` itself when it is one (32 hex digits, as edgefn's own ids are), else derived
/// from it (the first 16 bytes of its SHA-256), so that the same work always has the same trace id.
pub fn trace_id_of(id: &str) -> [u8; 16] {
    use sha2::Digest as _;
    let is_trace_id = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !id.bytes().all(|b| b == b'0');
    let mut bytes = [0; 16];
    if is_trace_id && hex::decode_to_slice(id, &mut bytes).is_ok() {
        return bytes;
    }
    bytes.copy_from_slice(&sha2::Sha256::digest(id)[..16]);
    bytes
}

/// The parent span id of an incoming request's well-formed `traceparent`, if it has one (the span in the caller
/// that this request continues).
pub fn parent_span(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(TRACEPARENT_HEADER)?.to_str().ok()?;
    trace_id(value)?;
    let parent = value.trim().split('-').nth(2)?;
    u64::from_str_radix(parent, 16).ok().filter(|id| *id != 0)
}

/// A `traceparent` for a call made on behalf of work `id` from the span `span` (see [`trace_id_of`]); sampled.
pub fn traceparent(id: &str, span: u64) -> String {
    format!("00-{}-{span:016x}-01", hex::encode(trace_id_of(id)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn a_traceparent_wins_then_a_request_id_then_a_new_id() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = format!("00-{trace}-00f067aa0ba902b7-01");
        assert_eq!(from_headers(&headers(&[("traceparent", &parent), ("x-request-id", "order-42")])), trace);
        assert_eq!(from_headers(&headers(&[("x-request-id", "order-42")])), "order-42");
        let fresh = from_headers(&HeaderMap::new());
        assert!(fresh.len() == 32 && fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
        assert_ne!(fresh, from_headers(&HeaderMap::new()), "each new id is new");
    }

    #[test]
    fn malformed_traceparents_and_request_ids_are_not_taken() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(
                from_headers(&headers(&[("traceparent", bad), ("x-request-id", "fallback")])),
                "fallback",
                "{bad}"
            );
        }
        let long = "a".repeat(129);
        for bad in ["with space", "semi;colon", "quote\"", long.as_str()] {
            let id = from_headers(&headers(&[("x-request-id", bad)]));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        // A later version may add fields.
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(from_headers(&headers(&[("traceparent", &format!("01-{trace}-00f067aa0ba902b7-01-more"))])), trace);
    }

    #[test]
    fn outbound_traceparents_carry_the_id_or_a_stable_derivation_of_it_and_the_calling_span() {
        let id = new_id();
        let out = traceparent(&id, 0xab);
        assert_eq!(trace_id(&out), Some(id.as_str()), "{out}");
        assert_eq!(out, format!("00-{id}-00000000000000ab-01"));
        let derived = traceparent("order-42", 1);
        assert_eq!(trace_id(&derived), trace_id(&traceparent("order-42", 2)), "the same id, the same trace");
        assert!(trace_id(&derived).is_some(), "{derived}");
    }

    #[test]
    fn an_incoming_traceparent_names_the_parent_span_only_when_well_formed() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let good = headers(&[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))]);
        assert_eq!(parent_span(&good), Some(0x00f0_67aa_0ba9_02b7));
        let zero = headers(&[("traceparent", &format!("00-{trace}-0000000000000000-01"))]);
        assert_eq!(parent_span(&zero), None);
        assert_eq!(parent_span(&headers(&[("traceparent", "garbage")])), None);
        assert_eq!(parent_span(&headers(&[])), None);
    }
}
