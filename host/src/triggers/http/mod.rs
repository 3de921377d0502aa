//! The HTTP trigger: an axum app whose one fallback handler routes every request through the live set it started
//! with, verifies the bearer token of a protected route ([`auth`]), reads the body within its bounds ([`body`]),
//! runs the function, hands its response to the client through
//! a bounded buffer, and logs one line per request. [`server`] runs it with connection and header-time bounds.

mod assets;
mod auth;
pub mod body;
pub mod cache;
mod cors;
mod objects;
mod rate_limit;
pub mod server;
mod websocket;

use super::{Runner, Trigger, Work, replay};
use crate::auth::Authorizers;
use crate::capabilities::BoxFuture;
use crate::config::HttpLimits;
use crate::live::{ComponentVersion, LiveHandle, LiveSet, RouteLookup};
use crate::runtime::{Abi, InvokeError, PreparedComponent, RequestBody, Reuse, ReusePool, SlotKind, Start};
use crate::storage::telemetry::FailedInput;
use crate::telemetry::{InvocationReport, Outcome, Trace};
use crate::telemetry::{correlation, otel};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, Uri, header};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: &str = correlation::REQUEST_ID_HEADER;

/// The header that tells a mounted component which prefix was stripped from its paths.
pub const FORWARDED_PREFIX_HEADER: &str = "x-forwarded-prefix";

/// Everything the HTTP trigger needs to answer requests.
#[derive(Debug)]
pub struct HttpTrigger {
    live: LiveHandle,
    runner: Runner,
    bodies: body::BodyBudget,
    authorizers: Arc<Authorizers>,
    /// Connections, bodies and slow clients (`[limits]`).
    limits: HttpLimits,
    /// Signed object URLs, which the host serves itself.
    objects: Arc<objects::ObjectRoutes>,
    /// The buckets of routes' rate limits.
    rate_limiter: crate::capabilities::ratelimit::RateLimiter,
    /// Responses functions let a shared cache keep ([`cache`]).
    cache: Option<Arc<crate::capabilities::cache::ResponseCache>>,
    /// The WebSocket connections this node holds ([`websocket`]).
    connections: Arc<crate::capabilities::websocket::Connections>,
}

impl HttpTrigger {
    pub fn new(
        live: LiveHandle,
        runner: Runner,
        authorizers: Arc<Authorizers>,
        limits: HttpLimits,
        objects: Option<Arc<crate::capabilities::objects::Objects>>,
        cache: Option<Arc<crate::capabilities::cache::ResponseCache>>,
        connections: Arc<crate::capabilities::websocket::Connections>,
    ) -> Arc<Self> {
        let bodies = body::BodyBudget::new(usize::try_from(limits.max_buffered_body_mb << 20).unwrap_or(usize::MAX));
        let body_read_timeout = Duration::from_millis(limits.body_read_timeout_ms);
        let objects = Arc::new(objects::ObjectRoutes { objects, body_read_timeout });
        let rate_limiter = crate::capabilities::ratelimit::RateLimiter::default();
        Arc::new(Self { live, runner, bodies, authorizers, limits, objects, rate_limiter, cache, connections })
    }

    /// The bounds of the listener that serves this trigger.
    pub fn server_limits(&self) -> server::ServerLimits {
        server::ServerLimits {
            max_connections: self.limits.max_connections,
            header_read_timeout: Duration::from_millis(self.limits.header_read_timeout_ms),
        }
    }

    /// The axum app: `/healthz`, signed object URLs (`/_edgefn/objects/...`), and every function route.
    pub fn app(self: Arc<Self>) -> axum::Router {
        let objects = axum::Router::new()
            .route("/_edgefn/objects/{bucket}/{*key}", axum::routing::put(objects::put).get(objects::get))
            .with_state(self.objects.clone());
        axum::Router::new()
            .route("/healthz", axum::routing::get(|| async { "ok" }))
            .fallback(handle)
            .with_state(self)
            .merge(objects)
    }
}

impl Trigger for HttpTrigger {
    fn kind(&self) -> &'static str {
        "http"
    }

    /// Each request reads the live set when it arrives; what the cache kept of the component's versions before
    /// goes.
    fn start(&self, component: &str, _live: &Arc<LiveSet>) {
        if let Some(cache) = &self.cache {
            cache.purge_component(component);
        }
    }

    /// A request in flight holds the version it started on until it ends; the cache forgets the component (an
    /// undeploy starts nothing after).
    fn drain(&self, component: &str, _deadline: Instant) -> BoxFuture<'_, ()> {
        if let Some(cache) = &self.cache {
            cache.purge_component(component);
        }
        Box::pin(async {})
    }
}

/// What the request log line says about who answered.
#[derive(Default)]
struct Served {
    function: Option<String>,
    version: Option<u32>,
    start: Option<Start>,
    /// The function's CORS policy, if it has one.
    cors: Option<Arc<crate::config::CorsPolicy>>,
    /// What its rate limit decided, if it has one.
    rate: Option<crate::capabilities::ratelimit::Decision>,
}

async fn handle(State(trigger): State<Arc<HttpTrigger>>, request: Request) -> Response {
    let started = Instant::now();
    let request_id = correlation::from_headers(request.headers());
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut served = Served::default();
    let origin = cors::origin(&request);
    let websocket_route =
        websocket::is_upgrade(&request).then(|| trigger.live.load().websocket_route(request.uri().path())).flatten();
    let mut response = match websocket_route {
        Some(target) => websocket::accept(&trigger, target, request, &request_id, &mut served).await,
        None => route_and_invoke(&trigger, request, &request_id, &mut served).await,
    };
    if let Some(decision) = served.rate.filter(|decision| decision.allowed) {
        rate_limit::add_headers(&mut response, &decision);
    }
    if let (Some(origin), Some(policy), Some(function)) = (&origin, &served.cors, &served.function) {
        response = cors::decorate(&trigger, policy, function, origin, response);
    }
    if let Ok(value) = HeaderValue::try_from(request_id.as_str()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    tracing::info!(
        request_id = %request_id,
        function = served.function.as_deref().unwrap_or("-"),
        version = served.version.unwrap_or(0),
        start = %served.start.map_or("-", Start::label),
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

/// Routes, reads the body under its cap and invokes; fills in who served it.
async fn route_and_invoke(
    trigger: &HttpTrigger,
    mut request: Request,
    request_id: &str,
    served: &mut Served,
) -> Response {
    // The set live now serves this request to its end, whatever deploys happen meanwhile.
    let live = trigger.live.load();
    if let Some(answer) = cors::preflight(trigger, &live, &request, request_id) {
        return answer;
    }
    let (version, function) = match live.route(request.method().as_str(), request.uri().path()) {
        RouteLookup::Found { version, function, .. } => (version, function),
        RouteLookup::MethodNotAllowed { allowed } => {
            let message = format!("method {} is not allowed here; allowed: {}", request.method(), allowed.join(", "));
            let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED, &message, request_id);
            if let Ok(allow) = HeaderValue::try_from(allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            return response;
        }
        RouteLookup::NotFound => {
            // The same words as the SDK's own 404, so that `wasmtime serve` answers alike.
            let message = format!("no function at {}", request.uri().path());
            // No function answers: a component's static files may.
            let static_files = (request.method() == http::Method::GET || request.method() == http::Method::HEAD)
                .then(|| live.assets_for(request.uri().path()))
                .flatten();
            drop(live);
            if let Some(version) = static_files
                && let Some(site) = &version.assets
            {
                served.function = Some(format!("{}:static", version.component));
                served.version = Some(version.version);
                if let Some(response) = assets::serve(site, request).await {
                    return response;
                }
            }
            return error_response(StatusCode::NOT_FOUND, &message, request_id);
        }
    };
    drop(live);
    let label = version.label(&function);
    served.function = Some(label.clone());
    served.version = Some(version.version);
    served.cors = version.cors(&function).cloned();
    let gated = Instant::now();
    if let Err(refusal) = auth::gate(&trigger.authorizers, &version, &function, request.headers_mut(), request_id) {
        let status = refusal.response.status();
        let outcome = if status.is_client_error() { Outcome::Unauthorized } else { Outcome::Error };
        let refused = Refused { outcome, reason: refusal.reason, status, since: gated };
        report_refused(trigger, &version, &label, &request, request_id, refused);
        return *refusal.response;
    }
    if let Some(limit) = version.rate_limit(&function) {
        // After the gate: a limit by subject or claim counts what the authorizer verified.
        let key = format!("{label}\n{}", rate_limit::client_key(limit, &request));
        let decision = trigger.rate_limiter.check(&key, limit.rule(), Instant::now());
        served.rate = Some(decision);
        if !decision.allowed {
            let response = rate_limit::too_many(&decision, &label, request_id);
            let reason = format!(
                "over its rate_limit ({} requests per {} s, burst {})",
                limit.requests, limit.window_s, decision.limit
            );
            let refused = Refused { outcome: Outcome::Throttled, reason, status: response.status(), since: gated };
            report_refused(trigger, &version, &label, &request, request_id, refused);
            return response;
        }
    }
    // Credentials: what makes a response one user's (RFC 9111 3.5), a cookie included.
    let credentials = [header::AUTHORIZATION, header::PROXY_AUTHORIZATION, header::COOKIE]
        .iter()
        .any(|name| request.headers().contains_key(name))
        || version.route_auth(&function).is_some();
    // A write that succeeds makes what the cache holds for its path stale (RFC 9111 4.4).
    let unsafe_write =
        (!request.method().is_safe()).then(|| (version.component.clone(), request.uri().path().to_owned()));
    let mut caching = cache::Caching::for_request(trigger.cache.as_ref(), &version, &request, credentials);
    if let Some(answer) = caching.as_mut().and_then(cache::Caching::fresh_answer) {
        return answer;
    }
    let response = run_function(trigger, request, request_id, served, version, function, label).await;
    if let (Some((component, path)), Some(cache)) = (unsafe_write, &trigger.cache)
        && response.status().as_u16() < 400
    {
        cache.purge(&component, &crate::capabilities::cache::Purge::Path(path));
    }
    match caching {
        Some(caching) => caching.finish(response),
        None => response,
    }
}

/// Runs `function` of `version` for `request`: its instance, its body read or streamed, its answer handed over.
async fn run_function(
    trigger: &HttpTrigger,
    request: Request,
    request_id: &str,
    served: &mut Served,
    version: Arc<ComponentVersion>,
    function: String,
    label: String,
) -> Response {
    let limits = &trigger.limits;
    let work = Work {
        correlation_id: Arc::from(request_id),
        trigger: "http",
        detail: format!("{} {}", request.method(), request.uri().path()),
        parent: otel::Parent::of_request(request.headers()),
    };
    let loaded = match trigger.runner.load(&version, &function).await {
        Ok(loaded) => loaded,
        Err(error) => return invoke_error(error, &label, request_id),
    };
    // A WASI 0.2 function gets its body whole, read before it takes an instance slot (a slow upload holds no
    // slot); a WASI 0.3 one reads it as it arrives, from its instance.
    let abi = loaded.0.abi();
    if abi == Abi::P3
        && let Some(reuse) = version.limits(&function).reuse
    {
        served.start = Some(loaded.1);
        return serve_reused(trigger, request, request_id, &version, &function, work, &loaded.0, reuse).await;
    }
    let (request, body_bytes) = match abi {
        Abi::P2 => match read_request(request, trigger, request_id, &version).await {
            Ok((request, held)) => (request.map(RequestBody::Whole), held),
            Err(response) => return response,
        },
        Abi::P3 => match stream_request(request, trigger, request_id, &version) {
            Ok(request) => (request, None),
            Err(response) => return *response,
        },
    };
    let chain = vec![label.clone()];
    let prepared =
        match trigger.runner.prepare_with(&version, &function, SlotKind::Request, chain, work, Some(loaded)).await {
            Ok(prepared) => prepared,
            Err(error) => return invoke_error(error, &label, request_id),
        };
    served.start = Some(prepared.start);
    let runtime = trigger.runner.runtime();
    // The body's bytes stay counted against the budget until the function is done with them.
    let slot = prepared.slot.holding(body_bytes);
    // What a failure keeps for replay, when the version records failures (cheap: the body is shared). A body the
    // function read as it arrived is not kept (`None`), and the failure says so.
    let kept = version.env.record_failures.then(|| {
        let secrets = &version.env.secrets;
        let uri = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let headers = replay::kept_headers(request.headers(), secrets);
        let body = match request.body() {
            RequestBody::Whole(bytes) => Some(bytes.clone()),
            RequestBody::Streaming(_) => None,
        };
        (request.method().to_string(), uri, headers, body)
    });
    let answer = runtime.invoke_http(&prepared.component, &prepared.invocation, slot, request).await;
    if let Some((method, uri, headers, body)) = kept {
        let failed = match &answer {
            Ok(response) if response.status().is_server_error() => {
                Some(format!("the function answered {}", response.status().as_u16()))
            }
            Ok(_) => None,
            Err(error) => Some(error.to_string()),
        };
        if let Some(error) = failed {
            let secrets = version.env.secrets.clone();
            let bytes = body.as_ref().map_or(0, |body| body.len() as u64);
            trigger.runner.record_failure(&version, &function, request_id, "http", &error, bytes, || {
                body.map(|body| FailedInput::Http { method, uri, headers, body: replay::kept_body(&body, &secrets) })
            });
        }
    }
    match answer {
        Ok(response) => {
            let buffer = limits.response_buffer_kib << 10;
            let write_timeout = Duration::from_millis(limits.response_write_timeout_ms);
            let (parts, function_body) = response.into_parts();
            Response::from_parts(parts, body::hand_over(function_body, buffer, write_timeout).await)
        }
        Err(error) => invoke_error(error, &label, request_id),
    }
}

/// Why the host answered a routed request itself, without running its function.
struct Refused {
    outcome: Outcome,
    reason: String,
    status: StatusCode,
    since: Instant,
}

/// Counts a request the host refused before its function ran like any invocation (log, usage, metrics), under
/// its own outcome: unauthorized, throttled (a rate limit), or error.
fn report_refused(
    trigger: &HttpTrigger,
    version: &ComponentVersion,
    label: &str,
    request: &Request,
    request_id: &str,
    refused: Refused,
) {
    let telemetry = trigger.runner.runtime().telemetry();
    if !telemetry.is_enabled() {
        return;
    }
    let trace = Arc::new(Trace {
        correlation_id: Arc::from(request_id),
        trigger: "http",
        function: label.to_owned(),
        version: version.version,
        detail: format!("{} {}", request.method(), request.uri().path()),
        span_id: otel::invocation_span_id(),
        parent: otel::Parent::of_request(request.headers()),
        links: Vec::new(),
    });
    let mut report = InvocationReport::refused(trace, refused.outcome, refused.reason, refused.since.elapsed());
    report.status = Some(refused.status.as_u16());
    telemetry.invocation(report);
}

/// Serves a request of a WASI 0.3 function that reuses its instances (see `runtime::ReusePool`).
#[expect(clippy::too_many_arguments, reason = "the parts of one routed request, each used once")]
async fn serve_reused(
    trigger: &HttpTrigger,
    request: Request,
    request_id: &str,
    version: &Arc<ComponentVersion>,
    function: &str,
    work: Work,
    component: &PreparedComponent,
    reuse: Reuse,
) -> Response {
    let runner = &trigger.runner;
    let runtime = runner.runtime();
    let label = version.label(function);
    let request = match stream_request(request, trigger, request_id, version) {
        Ok(request) => request.map(|body| match body {
            RequestBody::Streaming(body) => body,
            RequestBody::Whole(bytes) => http_body_util::BodyExt::boxed_unsync(http_body_util::BodyExt::map_err(
                http_body_util::Full::new(bytes),
                |never| match never {},
            )),
        }),
        Err(response) => return *response,
    };
    let trace = Arc::new(Trace {
        correlation_id: work.correlation_id,
        trigger: work.trigger,
        function: label.clone(),
        version: version.version,
        detail: work.detail,
        span_id: otel::invocation_span_id(),
        parent: work.parent,
        links: Vec::new(),
    });
    let started = Instant::now();
    let _permit = match runner.permit(version, function, SlotKind::Request).await {
        Ok(permit) => permit,
        Err(error) => {
            if runtime.telemetry().is_enabled() {
                let refused = InvocationReport::refused(trace, error.outcome(), error.to_string(), started.elapsed());
                runtime.telemetry().invocation(refused);
            }
            return invoke_error(error, &label, request_id);
        }
    };
    let pool = version.reuse_pool(function, || {
        let template = runner.invocation(version, function, vec![label.clone()], trace.clone(), false);
        ReusePool::new(runtime.clone(), component, template, reuse)
    });
    let answer = match pool {
        Ok(pool) => pool.handle(request, trace, version.limits(function).invocation.timeout).await,
        Err(error) => Err(error),
    };
    match answer {
        Ok(response) => {
            let limits = &trigger.limits;
            let buffer = limits.response_buffer_kib << 10;
            let write_timeout = Duration::from_millis(limits.response_write_timeout_ms);
            let (parts, function_body) = response.into_parts();
            let function_body = crate::runtime::ResponseBody::P3(function_body);
            Response::from_parts(parts, body::hand_over(function_body, buffer, write_timeout).await)
        }
        Err(error) => invoke_error(error, &label, request_id),
    }
}

/// The request a WASI 0.3 function reads as it arrives: refused at once (413) if its declared length is over
/// `max_body_bytes`, and otherwise bounded as it streams (see [`body::streaming`]).
fn stream_request(
    request: Request,
    trigger: &HttpTrigger,
    request_id: &str,
    version: &ComponentVersion,
) -> Result<http::Request<RequestBody>, Box<Response>> {
    let limits = &trigger.limits;
    let max_body = limits.max_body_bytes;
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        let message = format!("request body is larger than the {max_body}-byte limit (limits.max_body_bytes)");
        return Err(Box::new(error_response(StatusCode::PAYLOAD_TOO_LARGE, &message, request_id)));
    }
    let (mut parts, body) = request.into_parts();
    rebuild_head(&mut parts, request_id, version)?;
    let idle = Duration::from_millis(limits.body_read_timeout_ms);
    Ok(http::Request::from_parts(parts, RequestBody::Streaming(body::streaming(body, max_body, idle))))
}

/// Reads the body within its bounds (413, 408, or 503 when the budget of buffered bodies stays full) and rebuilds
/// the request the guest will see: with its request id, a host, and for a mount that strips its prefix, the path
/// below the prefix. Returns the permit that keeps the body's bytes counted.
async fn read_request(
    request: Request,
    trigger: &HttpTrigger,
    request_id: &str,
    version: &ComponentVersion,
) -> Result<(http::Request<Bytes>, Option<tokio::sync::OwnedSemaphorePermit>), Response> {
    let limits = &trigger.limits;
    let max_body = limits.max_body_bytes;
    let too_large = || {
        let message = format!("request body is larger than the {max_body}-byte limit");
        error_response(StatusCode::PAYLOAD_TOO_LARGE, &message, request_id)
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return Err(too_large());
    }
    let (mut parts, body) = request.into_parts();
    let body_limits = body::BodyLimits {
        max_bytes: max_body,
        read_timeout: Duration::from_millis(limits.body_read_timeout_ms),
        queue_timeout: trigger.runner.runtime().limits().queue_timeout(),
    };
    let (body, held) = match body::read(body, body_limits, &trigger.bodies).await {
        Ok(read) => read,
        Err(body::BodyError::TooLarge) => return Err(too_large()),
        Err(body::BodyError::Timeout) => {
            let message = format!("the request body did not arrive within {} ms", limits.body_read_timeout_ms);
            return Err(error_response(StatusCode::REQUEST_TIMEOUT, &message, request_id));
        }
        Err(body::BodyError::Busy) => {
            let message = "the host is buffering too many request bodies; retry shortly";
            tracing::warn!(request_id = %request_id, "request refused: the budget of buffered bodies is full");
            let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, message, request_id);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Err(response);
        }
        Err(body::BodyError::Read(error)) => {
            let message = format!("failed to read the request body: {error}");
            return Err(error_response(StatusCode::BAD_REQUEST, &message, request_id));
        }
    };
    rebuild_head(&mut parts, request_id, version).map_err(|response| *response)?;
    Ok((http::Request::from_parts(parts, body), held))
}

/// The request head as the guest sees it: with its request id, an absolute URI (`http://` and the authority the
/// client sent in `Host`, so a function can build absolute links), and for a mount that strips its prefix, the path
/// below the prefix. A `Host` that is not an authority is the client's error: 400.
fn rebuild_head(
    parts: &mut http::request::Parts,
    request_id: &str,
    version: &ComponentVersion,
) -> Result<(), Box<Response>> {
    if let Ok(value) = HeaderValue::try_from(request_id) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    // wasi:http needs an authority: HTTP/1.0 clients may send no Host header.
    if !parts.headers.contains_key(header::HOST) {
        parts.headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    }
    // An absolute-form request (`GET http://a/b HTTP/1.1`) already names its authority, which wins over `Host`.
    if parts.uri.authority().is_none() {
        let host = parts.headers.get(header::HOST).and_then(|value| value.to_str().ok());
        let Some(authority) = host.and_then(|host| host.parse::<http::uri::Authority>().ok()) else {
            let message = "the Host header is not a valid host[:port]";
            return Err(Box::new(error_response(StatusCode::BAD_REQUEST, message, request_id)));
        };
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.scheme = Some(http::uri::Scheme::HTTP);
        uri.authority = Some(authority);
        if uri.path_and_query.is_none() {
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        parts.uri = Uri::from_parts(uri).map_err(|error| {
            let message = format!("the request target cannot be made absolute: {error}");
            Box::new(error_response(StatusCode::BAD_REQUEST, &message, request_id))
        })?;
    }
    if let Some(mount) = version.mount.as_ref().filter(|m| m.strip_prefix && m.route != "/") {
        parts.uri = strip_prefix(&parts.uri, &mount.route);
        if let Ok(prefix) = HeaderValue::try_from(mount.route.as_str()) {
            parts.headers.insert(FORWARDED_PREFIX_HEADER, prefix);
        }
    }
    Ok(())
}

/// `uri` with `prefix` taken off its path: `/sample/echo?x=1` under `/sample` is `/echo?x=1`, `/sample` is `/`.
fn strip_prefix(uri: &Uri, prefix: &str) -> Uri {
    let path = uri.path().strip_prefix(prefix).unwrap_or(uri.path());
    let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The response for an invocation that produced none of its own, logged with the full error.
fn invoke_error(error: InvokeError, label: &str, request_id: &str) -> Response {
    let status = match &error {
        InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        InvokeError::Busy(_) | InvokeError::MemoryBudget(_) => StatusCode::SERVICE_UNAVAILABLE,
        InvokeError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        InvokeError::Trap(_) | InvokeError::NoResponse | InvokeError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // The full error (trap code, guest backtrace) goes to the log; the caller gets the request id.
    if matches!(error, InvokeError::Busy(_) | InvokeError::Throttled(_) | InvokeError::MemoryBudget(_)) {
        tracing::warn!(request_id = %request_id, function = %label, "{error}");
    } else {
        tracing::error!(request_id = %request_id, function = %label, "{error}");
    }
    let message = match &error {
        InvokeError::Timeout(deadline) => format!("the function did not answer within {deadline:?}"),
        InvokeError::Busy(_) | InvokeError::MemoryBudget(_) => "the host is at capacity; retry shortly".to_owned(),
        InvokeError::Throttled(limit) => {
            format!("the function is at its limit of {limit} concurrent invocations; retry shortly")
        }
        _ => "the function failed; see the host log for this request id".to_owned(),
    };
    let mut response = error_response(status, &message, request_id);
    if matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The JSON error body, the same shape the SDK produces inside a component.
pub fn error_response(status: StatusCode, message: &str, request_id: &str) -> Response {
    let body = serde_json::json!({ "error": message, "status": status.as_u16(), "request_id": request_id });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripped_prefix_leaves_the_path_below_it_and_the_query() {
        let uri: Uri = "/sample/echo?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&uri, "/sample").to_string(), "/echo?x=1");
        assert_eq!(strip_prefix(&"/sample".parse().unwrap(), "/sample").to_string(), "/");
        assert_eq!(strip_prefix(&"/sample/".parse().unwrap(), "/sample").to_string(), "/");
    }
}
