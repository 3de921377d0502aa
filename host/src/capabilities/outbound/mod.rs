//! Outbound HTTP: a function's `wasi:http/outgoing-handler` requests pass through its [`OutboundPolicy`], twice:
//! by name (is `host:port` in its allowlist), then by address (does every address the name resolves to stay out
//! of the protected ranges, see [`address`]); the connection then goes to exactly the addresses checked
//! ([`client`]).

pub mod address;
mod client;

pub use address::pin_names;

use crate::telemetry::otel;
use address::NamedAddresses;
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock, RwLock};
use wasmtime_wasi_http::WasiHttpHooks;

/// The hosts a function may reach with outbound HTTP. Default: none.
///
/// - `host:port` allows that host on that port;
/// - `host` alone allows that host on its scheme's default port only (80 for http, 443 for https);
/// - `*` allows every host and port, except the host's own listeners (the HTTP server and the admin API, see
///   [`protect`]): a function reaches those only when an entry names them with their port.
///
/// Whatever the name, a request whose host resolves to a protected address (loopback, private, shared,
/// link-local, unique-local, multicast, the cloud metadata service: [`address::protected_range`]) is refused
/// unless an entry names that address: an IP (`10.0.0.7`, `127.0.0.1:9000`), a range (`10.0.0.0/8`, any port) or
/// `localhost[:port]` (loopback).
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Arc<[String]>,
    /// The entries that name addresses.
    named_addresses: Arc<[NamedAddresses]>,
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
    let host = address::bare_host(host);
    match host.parse::<IpAddr>() {
        Ok(ip) => is_protected_ip(ip, port),
        Err(_) => host.eq_ignore_ascii_case("localhost") && a_listener_answers(None, true, port),
    }
}

/// [`is_protected`] for an address already parsed (what a name resolved to).
fn is_protected_ip(ip: IpAddr, port: u16) -> bool {
    a_listener_answers(Some(ip), ip.is_loopback() || ip.is_unspecified(), port)
}

/// Whether one of the host's listeners answers on `port` at `ip`, or, for a `local` destination, on any loopback
/// or unspecified address.
fn a_listener_answers(ip: Option<IpAddr>, local: bool, port: u16) -> bool {
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
        let allowed_hosts: Arc<[String]> = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let named_addresses = allowed_hosts.iter().filter_map(|entry| NamedAddresses::parse(entry)).collect();
        Self { allowed_hosts, named_addresses }
    }

    /// Whether a connection for a `scheme` request may use every one of `addresses` (what its host resolved to).
    /// The refusal names the first address out of reach and the rule that keeps it so.
    pub fn check_addresses(&self, scheme: Option<&str>, addresses: &[SocketAddr]) -> Result<(), (SocketAddr, String)> {
        let default = default_port(scheme);
        for &address in addresses {
            if self.named_addresses.iter().any(|named| named.names(address, default)) {
                continue;
            }
            if let Some(range) = address::protected_range(address.ip()) {
                return Err((
                    address,
                    format!("{range} addresses are reachable only when allowed_outbound_hosts names them"),
                ));
            }
            if is_protected_ip(address.ip(), address.port()) {
                return Err((address, "the host's own listeners are reachable only when named with their port".into()));
            }
        }
        Ok(())
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
/// the service called can tie its logs to the work that called it; each is a client span of the invocation's
/// span (see `telemetry::otel`), whose id its `traceparent` carries.
#[derive(Debug)]
pub struct PolicyHooks {
    policy: OutboundPolicy,
    correlation_id: std::sync::Arc<str>,
    /// The invocation's span: the parent of each call's span.
    span: u64,
}

impl PolicyHooks {
    pub fn new(policy: OutboundPolicy, correlation_id: std::sync::Arc<str>, span: u64) -> Self {
        Self { policy, correlation_id, span }
    }

    /// The work the calls now made are part of (a reused instance's next request), and its span.
    pub fn set_work(&mut self, correlation_id: std::sync::Arc<str>, span: u64) {
        self.correlation_id = correlation_id;
        self.span = span;
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
        let scheme = request.uri().scheme_str().map(str::to_owned);
        if !self.policy.allows(scheme.as_deref(), &host, port) {
            tracing::warn!(%host, ?port, "outbound request denied: not in the function's allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The request's own `x-request-id` names its work when the guest set one (the SDK does, per task, which is
        // what tells apart the requests of a reused instance); otherwise the invocation's.
        use crate::telemetry::correlation::{REQUEST_ID_HEADER, TRACEPARENT_HEADER, traceparent};
        let own = request.headers().get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()).map(std::sync::Arc::from);
        let correlation_id = own.unwrap_or_else(|| self.correlation_id.clone());
        let method = request.method().to_string();
        let span = otel::start(&correlation_id, self.span, SpanKind::Client, format!("{method} {host}"));
        // The call's span id, which the service called sees as its parent; a new one when spans are not exported.
        let parent_id = match span.id() {
            0 => otel::new_span_id(),
            id => id,
        };
        // Without the query or credentials: a collector is often a third party's, and they may hold tokens.
        let url = format!(
            "{}://{}{}",
            request.uri().scheme_str().unwrap_or("http"),
            request.uri().host().unwrap_or_default(),
            request.uri().port_u16().map(|port| format!(":{port}")).unwrap_or_default()
        ) + request.uri().path();
        if !correlation_id.is_empty() {
            let headers = request.headers_mut();
            if !headers.contains_key(TRACEPARENT_HEADER)
                && let Ok(value) = http::HeaderValue::try_from(traceparent(&correlation_id, parent_id))
            {
                headers.insert(TRACEPARENT_HEADER, value);
            }
            if !headers.contains_key(REQUEST_ID_HEADER)
                && let Ok(value) = http::HeaderValue::try_from(&*correlation_id)
            {
                headers.insert(REQUEST_ID_HEADER, value);
            }
        }
        drop(fut);
        let policy = self.policy.clone();
        let port = port.unwrap_or_else(|| default_port(scheme.as_deref()));
        Box::new(async move {
            let sent = send_checked(request, options, &policy, &host, port, scheme.as_deref()).await;
            let mut attributes = vec![
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.full", url),
                KeyValue::new("server.address", host),
                KeyValue::new("server.port", i64::from(port)),
            ];
            let error = match &sent {
                Ok((response, _)) => {
                    attributes.push(KeyValue::new("http.response.status_code", i64::from(response.status().as_u16())));
                    response.status().is_server_error().then(|| response.status().to_string())
                }
                Err(error) => Some(error.to_string()),
            };
            span.end(attributes, error);
            sent
        })
    }
}

/// Resolves `host`, checks every address against `policy`, and sends `request` to the first that answers.
async fn send_checked(
    request: http::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
    policy: &OutboundPolicy,
    host: &str,
    port: u16,
    scheme: Option<&str>,
) -> Result<(http::Response<wasmtime_wasi_http::WasiBody>, SendFuture), wasmtime_wasi_http::Error> {
    use wasmtime_wasi_http::Error;
    let addresses = address::resolve(host, port).await.map_err(|error| {
        tracing::warn!(%host, port, %error, "outbound request failed: its host did not resolve");
        Error::DnsError { rcode: Some(error.to_string()), info_code: None }
    })?;
    if addresses.is_empty() {
        tracing::warn!(%host, port, "outbound request failed: its host resolved to no address");
        return Err(Error::DestinationNotFound);
    }
    if let Err((address, rule)) = policy.check_addresses(scheme, &addresses) {
        tracing::warn!(%host, port, %address, %rule, "outbound request denied: its host resolves to a protected address");
        return Err(Error::DestinationIpProhibited);
    }
    client::send(request, options, addresses).await
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
    fn every_address_a_name_resolves_to_is_checked_and_only_named_ones_may_be_protected() {
        let at = |s: &str| s.parse::<SocketAddr>().expect("an address");
        let everything = OutboundPolicy::allow(["*".to_owned()]);
        assert_eq!(everything.check_addresses(Some("https"), &[at("93.184.216.34:443")]), Ok(()));
        let (address, rule) =
            everything.check_addresses(Some("http"), &[at("93.184.216.34:80"), at("10.1.2.3:80")]).unwrap_err();
        assert_eq!(address, at("10.1.2.3:80"), "one protected address refuses the request");
        assert!(rule.contains("private network"), "{rule}");
        let (_, rule) = everything.check_addresses(Some("http"), &[at("169.254.169.254:80")]).unwrap_err();
        assert!(rule.contains("metadata"), "{rule}");
        let named =
            OutboundPolicy::allow(["api.internal".to_owned(), "10.0.0.0/8".to_owned(), "localhost:8080".to_owned()]);
        assert_eq!(named.check_addresses(Some("http"), &[at("10.9.9.9:5432")]), Ok(()));
        assert_eq!(named.check_addresses(Some("http"), &[at("[::1]:8080")]), Ok(()));
        assert!(named.check_addresses(Some("http"), &[at("127.0.0.1:8081")]).is_err(), "another loopback port");
        assert!(named.check_addresses(Some("http"), &[at("192.168.0.1:80")]).is_err(), "outside the named range");
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
