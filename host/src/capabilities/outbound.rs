//! Outbound HTTP: a function's `wasi:http/outgoing-handler` requests pass through its [`OutboundPolicy`].

use std::sync::Arc;
use wasmtime_wasi_http::WasiHttpHooks;

/// The hosts a function may reach with outbound HTTP. Default: none.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// `host` or `host:port` entries; `*` allows every host.
    allowed_hosts: Arc<[String]>,
}

impl OutboundPolicy {
    pub fn allow(hosts: impl IntoIterator<Item = String>) -> Self {
        Self { allowed_hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    /// Whether a request to `host` (and `port`, if the URI named one) may go out.
    pub fn allows(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allowed_hosts.iter().any(|allowed| {
            allowed == "*" || *allowed == host || port.is_some_and(|port| *allowed == format!("{host}:{port}"))
        })
    }
}

/// `wasi:http` hooks: outbound requests pass through the function's [`OutboundPolicy`].
#[derive(Debug)]
pub struct PolicyHooks {
    policy: OutboundPolicy,
}

impl PolicyHooks {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }
}

type SendFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: SendFuture,
    ) -> Box<
        dyn Future<
                Output = Result<(http::Response<wasmtime_wasi_http::WasiBody>, SendFuture), wasmtime_wasi_http::Error>,
            > + Send,
    > {
        let host = request.uri().host().unwrap_or_default().to_owned();
        let port = request.uri().port_u16();
        if !self.policy.allows(&host, port) {
            tracing::warn!(%host, "outbound request denied: host is not in the function's allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let default: &mut dyn WasiHttpHooks = Default::default();
        default.send_request(request, options, fut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbound_is_denied_by_default_and_allowed_by_host_or_host_port() {
        assert!(!OutboundPolicy::default().allows("example.com", None));
        let policy = OutboundPolicy::allow(["Example.com".to_owned(), "127.0.0.1:9000".to_owned()]);
        assert!(policy.allows("example.com", Some(443)));
        assert!(policy.allows("127.0.0.1", Some(9000)));
        assert!(!policy.allows("127.0.0.1", Some(9001)));
        assert!(OutboundPolicy::allow(["*".to_owned()]).allows("anything", None));
    }
}
