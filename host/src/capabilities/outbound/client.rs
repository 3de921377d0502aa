//! Sends an outbound request to addresses already checked: wasmtime-wasi-http 48's `default_send_request`, changed
//! in one place, the connect, which goes to the given addresses instead of resolving the request's host again (a
//! second resolution could answer differently from the one the policy checked: DNS rebinding). TLS still verifies
//! the certificate against the request's host name. Derived from wasmtime-wasi-http 48.0.8
//! (`src/default_send_request.rs`, Apache-2.0 WITH LLVM-exception).

use bytes::Bytes;
use http::uri::Scheme;
use http::{Request, Response};
use http_body::Body;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// What wasmtime's client waits for when the request sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T> Stream for T where T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}

/// The response, and the future that drives the connection to its end (see `WasiHttpHooks::send_request`).
pub(super) type Sent = (Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>);

/// Sends `request` over a connection to the first of `addresses` that accepts one.
pub(super) async fn send(
    mut request: Request<WasiBody>,
    options: Option<RequestOptions>,
    addresses: Vec<SocketAddr>,
) -> Result<Sent, Error> {
    let uri = request.uri();
    let host = uri.host().ok_or(Error::HttpRequestUriInvalid)?.to_owned();
    let use_tls = uri.scheme() == Some(&Scheme::HTTPS);
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_TIMEOUT);
    let first_byte_timeout = options.and_then(|o| o.first_byte_timeout).unwrap_or(DEFAULT_TIMEOUT);
    // Tokio panics on a zero interval: clamp to 1 ns, which is as good as zero.
    let between_bytes_timeout =
        options.and_then(|o| o.between_bytes_timeout).unwrap_or(DEFAULT_TIMEOUT).max(Duration::from_nanos(1));

    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&addresses[..])).await {
        Ok(stream) => stream.map_err(Error::Connect)?,
        Err(_elapsed) => return Err(Error::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = if use_tls {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.into() };
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let bare = super::address::bare_host(&host);
        let name = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => rustls::pki_types::ServerName::from(ip),
            Err(_) => rustls::pki_types::ServerName::try_from(bare.to_owned()).map_err(Error::InvalidDnsNameError)?,
        };
        Box::new(connector.connect(name, stream).await.map_err(Error::Tls)?)
    } else {
        Box::new(stream)
    };
    let handshake = hyper::client::conn::http1::Builder::new().handshake(wasmtime_wasi_http::io::TokioIo::new(stream));
    let (mut sender, connection) =
        tokio::time::timeout(connect_timeout, handshake).await.map_err(|_elapsed| Error::ConnectionTimeout)??;

    // The request carries its scheme and authority; on the wire, only a request to a proxy names them.
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
    *request.uri_mut() = http::Uri::builder().path_and_query(path).build().map_err(|_| Error::HttpRequestUriInvalid)?;

    let send = async move {
        let response = tokio::time::timeout(first_byte_timeout, sender.send_request(request))
            .await
            .map_err(|_elapsed| Error::ConnectionReadTimeout)?
            .map_err(Error::from)?;
        let mut timeout = tokio::time::interval(between_bytes_timeout);
        timeout.reset();
        Ok::<_, Error>(response.map(|incoming| IncomingBody { incoming, timeout }))
    };
    let mut send = pin!(send);
    let mut connection = Some(connection);
    // Wait for the response while driving the connection's I/O.
    let response = poll_fn(|cx| match send.as_mut().poll(cx) {
        Poll::Ready(result) => Poll::Ready(result),
        Poll::Pending => {
            let Some(driving) = connection.as_mut() else { return Poll::Pending };
            let ended = ready!(Pin::new(driving).poll(cx));
            connection = None;
            match ended {
                Ok(()) => send.as_mut().poll(cx),
                Err(error) => Poll::Ready(Err(Error::from(error))),
            }
        }
    })
    .await?;
    let rest = async move {
        let Some(connection) = connection.take() else { return Ok(()) };
        match connection.await {
            Err(error) if error.is_timeout() => Err(Error::HttpResponseTimeout),
            Err(error) => Err(error.into()),
            Ok(()) => Ok(()),
        }
    };
    Ok((response.map(http_body_util::BodyExt::boxed_unsync), Box::new(rest)))
}

/// A response body that fails once no byte came for the request's between-bytes timeout.
struct IncomingBody {
    incoming: hyper::body::Incoming,
    timeout: tokio::time::Interval,
}

impl Body for IncomingBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Err(error))) => {
                Poll::Ready(Some(Err(if error.is_timeout() { Error::HttpResponseTimeout } else { Error::from(error) })))
            }
            Poll::Ready(Some(Ok(frame))) => {
                self.timeout.reset();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(self.timeout.poll_tick(cx));
                Poll::Ready(Some(Err(Error::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
