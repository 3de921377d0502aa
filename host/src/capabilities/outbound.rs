//! Outbound HTTP: a function's `wasi:http/outgoing-handler` requests pass through its [`OutboundPolicy`].

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};
use wasmtime_wasi_http::WasiHttpHooks;

/// The hosts a function may reach with outbound HTTP. Default: none.
///
/// - `host:port` allows that host on that port;
/// - `host` alone allows that host on its scheme's default port only (80 for http, 443 for https);
/// - `*` allows every host and port, except the host's own listeners (the HTTP server and the admin API, see
///   [`protect`]): a function reaches those only when an entry names them with their port.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
}

/// The host's own listening addresses, which `*` does not open to functions.
fn protected() -> &'static RwLock<Vec<SocketAddr>> {
    static PROTECTED: OnceLock<RwLock<Vec<SocketAddr>>> = OnceLock::new();
    PROTECTED.get_or_init(RwLock::default)
}

/// Marks `address` (one of the host's own listeners) as out of reach of functions unless named with its port.
pub fn protect(address: SocketAddr) {
    protected().write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(address);
}

/// Whether `host:port` is one of the host's own listeners. A listener on an unspecified address (`0.0.0.0`)
/// answers on every local address; one on a loopback address answers on every loopback name.
fn is_protected(host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: Option<IpAddr> = host.parse().ok();
    let local = host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback() || ip.is_unspecified());
    protected().read().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().any(|listener| {
        listener.port() == port
            && (Some(listener.ip()) == ip || (local && (listener.ip().is_loopback() || listener.ip().is_unspecified())))
    })
}

/// The port a URI without one means.
fn default_port(scheme: Option<&str>) -> u16 {
    match scheme {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => 443,
        _ => 80,
    }
}

impl OutboundPolicy {
    pub fn allow(hosts: impl IntoIterator<Item = String>) -> Self {
        Self { allowed_hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    /// Whether a request to `scheme://host[:port]` may go out.
    pub fn allows(&self, scheme: Option<&str>, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        let port = port.unwrap_or_else(|| default_port(scheme));
        let named = format!("{host}:{port}");
        if self.allowed_hosts.contains(&named) {
            return true;
        }
        let bare = self.allowed_hosts.contains(&host) && port == default_port(scheme);
        let wildcard = self.allowed_hosts.iter().any(|allowed| allowed == "*");
        (bare || wildcard) && !is_protected(&host, port)
    }
}

/// `wasi:http` hooks: outbound requests pass through the function's [`OutboundPolicy`], and those it lets through
/// carry the invocation's correlation id (`traceparent` and `x-request-id`, unless the function set its own), so
/// the service called can tie its logs to the work that called it.
#[derive(Debug)]
pub struct PolicyHooks {
    policy: OutboundPolicy,
    correlation_id: std::sync::Arc<str>,
}

impl PolicyHooks {
    pub fn new(policy: OutboundPolicy, correlation_id: std::sync::Arc<str>) -> Self {
        Self { policy, correlation_id }
    }

    /// The work the calls now made are part of (a reused instance's next request).
    pub fn set_correlation_id(&mut self, correlation_id: std::sync::Arc<str>) {
        self.correlation_id = correlation_id;
    }
}

type SendFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

/// The largest write a guest makes into a body it sends (a response, or an outbound request): with one chunk
/// buffered, the host holds at most two of these per body, whatever the guest writes at once.
const BODY_CHUNK: usize = 64 << 10;

impl WasiHttpHooks for PolicyHooks {
    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn p3_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }

    fn send_request(
        &mut self,
        mut request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: SendFuture,
    ) -> Box<
        dyn Future<
                Output = Result<(http::Response<wasmtime_wasi_http::WasiBody>, SendFuture), wasmtime_wasi_http::Error>,
            > + Send,
    > {
        let host = request.uri().host().unwrap_or_default().to_owned();
        let port = request.uri().port_u16();
        if !self.policy.allows(request.uri().scheme_str(), &host, port) {
            tracing::warn!(%host, ?port, "outbound request denied: not in the function's allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The request's own `x-request-id` names its work when the guest set one (the SDK does, per task, which is
        // what tells apart the requests of a reused instance); otherwise the invocation's.
        use crate::telemetry::correlation::{REQUEST_ID_HEADER, TRACEPARENT_HEADER, traceparent};
        let own = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let correlation_id = own.unwrap_or_else(|| self.correlation_id.to_string());
        if !correlation_id.is_empty() {
            let headers = request.headers_mut();
            if !headers.contains_key(TRACEPARENT_HEADER)
                && let Ok(value) = http::HeaderValue::try_from(traceparent(&correlation_id))
            {
                headers.insert(TRACEPARENT_HEADER, value);
            }
            if !headers.contains_key(REQUEST_ID_HEADER)
                && let Ok(value) = http::HeaderValue::try_from(&correlation_id)
            {
                headers.insert(REQUEST_ID_HEADER, value);
            }
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_without_a_port_means_the_default_port_only() {
        assert!(!OutboundPolicy::default().allows(Some("https"), "example.com", None));
        let policy = OutboundPolicy::allow(["Example.com".to_owned(), "127.0.0.1:9000".to_owned()]);
        assert!(policy.allows(Some("https"), "example.com", None));
        assert!(policy.allows(Some("https"), "example.com", Some(443)));
        assert!(policy.allows(Some("http"), "example.com", None));
        assert!(!policy.allows(Some("https"), "example.com", Some(8443)), "another port needs its own entry");
        assert!(!policy.allows(Some("http"), "example.com", Some(443)));
        assert!(policy.allows(Some("http"), "127.0.0.1", Some(9000)));
        assert!(!policy.allows(Some("http"), "127.0.0.1", Some(9001)));
        assert!(!policy.allows(Some("http"), "127.0.0.1", None));
    }

    #[test]
    fn the_hosts_own_listeners_are_out_of_reach_unless_named_with_their_port() {
        protect("127.0.0.1:47811".parse().unwrap());
        let everything = OutboundPolicy::allow(["*".to_owned()]);
        assert!(everything.allows(Some("https"), "anything.example", None));
        assert!(everything.allows(Some("http"), "127.0.0.1", Some(47812)));
        for host in ["127.0.0.1", "localhost", "127.0.0.2", "[::1]", "0.0.0.0"] {
            assert!(!everything.allows(Some("http"), host, Some(47811)), "{host}");
        }
        let named = OutboundPolicy::allow(["127.0.0.1:47811".to_owned()]);
        assert!(named.allows(Some("http"), "127.0.0.1", Some(47811)));
    }
}
