//! OpenTelemetry export: a span per invocation (with child spans for what it did: outbound fetches, key-value
//! operations, queue sends, publishes and invokes, and the spans the function opened through the SDK), and the
//! invocation metrics, sent as OTLP over HTTP/protobuf to the collector `[otel]` names. Off by default.
//!
//! Ids: a trace's id is the work's correlation id (`correlation::trace_id`), so `edgefn logs --id` and the tracing
//! system agree on what one piece of work is. Each invocation's span has an id of its own, made when its trigger
//! builds its [`Trace`]; its parent is the `traceparent` of the request, the span that sent its message, or the
//! span of the invoke that called it. What a function sends carries the id of the sending span (a queue message's
//! `parent_span`), so one trace runs HTTP -> queue -> topic -> invoke.
//!
//! Spans are recorded after the fact, with the times the host measured, and handed to the OTLP batch processor:
//! nothing is kept open across an `.await`, and the exporter is one process-wide handle (as OpenTelemetry's own
//! global provider is), installed once at start, so the capabilities deep in a store record spans without a handle
//! threaded through every call. When nothing is installed, recording is one atomic load.

use super::{InvocationReport, Outcome, Trace, correlation};
use crate::config::OtelConfig;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor as _};
use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// The installed exporter, if `[otel]` is on.
static EXPORTER: OnceLock<Exporter> = OnceLock::new();

struct Exporter {
    spans: BatchSpanProcessor,
    meters: SdkMeterProvider,
    invocations: opentelemetry::metrics::Counter<u64>,
    duration: opentelemetry::metrics::Histogram<f64>,
    scope: InstrumentationScope,
}

/// Starts exporting to `config.endpoint`. Errors name the setting at fault. Called once, at start; a second call
/// (a second host in one process, as unit tests make) keeps the first exporter.
pub fn install(config: &OtelConfig, node: &str) -> anyhow::Result<()> {
    let Some(endpoint) = config.endpoint.as_deref() else { return Ok(()) };
    let base = endpoint.trim_end_matches('/');
    let uri: http::Uri = base.parse().map_err(|e| anyhow::anyhow!("[otel] endpoint {endpoint:?} is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        anyhow::bail!("[otel] endpoint {endpoint:?} must be an http:// or https:// URL (OTLP over HTTP)");
    }
    let resource = Resource::builder_empty()
        .with_service_name(config.service_name.clone())
        .with_attributes([KeyValue::new("service.instance.id", node.to_owned())])
        .build();
    let timeout = Duration::from_millis(config.timeout_ms);
    let client = UreqClient(ureq::AgentBuilder::new().timeout(timeout).build());
    let span_exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_endpoint(format!("{base}/v1/traces"))
        .with_timeout(timeout)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()?;
    let batch = opentelemetry_sdk::trace::BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(config.export_interval_ms))
        .with_max_queue_size(config.max_queued_spans)
        .build();
    let mut spans = BatchSpanProcessor::builder(span_exporter).with_batch_config(batch).build();
    spans.set_resource(&resource);
    let metric_exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(format!("{base}/v1/metrics"))
        .with_timeout(timeout)
        .with_headers(config.headers.clone().into_iter().collect())
        .build()?;
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(metric_exporter)
        .with_interval(Duration::from_millis(config.export_interval_ms))
        .build();
    let meters = SdkMeterProvider::builder().with_reader(reader).with_resource(resource).build();
    let scope = InstrumentationScope::builder("edgefn").with_version(env!("CARGO_PKG_VERSION")).build();
    let meter = opentelemetry::metrics::MeterProvider::meter_with_scope(&meters, scope.clone());
    let invocations = meter
        .u64_counter("edgefn.invocations")
        .with_description("Invocations of functions, by function, trigger and outcome")
        .build();
    let duration = meter
        .f64_histogram("edgefn.invocation.duration")
        .with_unit("s")
        // In seconds (the SDK's default buckets are for milliseconds): 1 ms to 15 min, as functions take.
        .with_boundaries(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
        ])
        .with_description("Wall time of invocations, by function, trigger and outcome")
        .build();
    let exporter = Exporter { spans, meters, invocations, duration, scope };
    if EXPORTER.set(exporter).is_ok() {
        // Not the endpoint as written: it may carry credentials (`https://user:key@...`).
        let shown = format!("{}://{}", uri.scheme_str().unwrap_or("http"), uri.host().unwrap_or_default());
        tracing::info!(collector = %shown, "exporting traces and metrics over OTLP/HTTP");
    }
    Ok(())
}

/// Sends what is batched (at shutdown, so a host that stops loses no span it recorded); a failure is logged.
pub fn flush() {
    if let Some(exporter) = EXPORTER.get() {
        if let Err(error) = exporter.spans.force_flush() {
            tracing::warn!(%error, "could not send the last spans to the OpenTelemetry collector");
        }
        if let Err(error) = exporter.meters.force_flush() {
            tracing::warn!(%error, "could not send the last metrics to the OpenTelemetry collector");
        }
    }
}

/// Whether spans are recorded (so callers skip building what nobody exports).
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// The span an invocation continues: `span` 0 is none (a root).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Parent {
    pub span: u64,
    /// Whether it is in another process (an incoming request's `traceparent`).
    pub remote: bool,
}

impl Parent {
    /// A span of this process.
    pub fn local(span: u64) -> Self {
        Self { span, remote: false }
    }

    /// The caller's span that a request continues: its `traceparent`'s parent id, if it sent a well-formed one.
    pub fn of_request(headers: &http::HeaderMap) -> Self {
        correlation::parent_span(headers).map_or_else(Self::default, |span| Self { span, remote: true })
    }
}

/// A new span id: 64 random bits, never zero.
pub fn new_span_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0 | 1
}

/// The id of a new invocation's span: a new one when spans are exported, else 0 (none).
pub fn invocation_span_id() -> u64 {
    if enabled() { new_span_id() } else { 0 }
}

/// What one finished span says. `parent` 0 is a root.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    pub correlation_id: std::sync::Arc<str>,
    pub id: u64,
    pub parent: u64,
    /// Whether the parent span is in another process (an incoming `traceparent`).
    pub remote_parent: bool,
    pub kind: SpanKind,
    pub name: Cow<'static, str>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Other spans it continues besides its parent (a batch's messages sent from several spans): work id and span.
    pub links: Vec<(std::sync::Arc<str>, u64)>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// A span begun: its id is known (to hand on as a parent) before it ends. One dropped without [`Started::end`]
/// (its work was cancelled: a timeout, a client that left) is recorded then, failed as cancelled, so the slow
/// call that caused a timeout is in the trace.
#[derive(Debug)]
pub struct Started(Option<Open>);

#[derive(Debug)]
struct Open {
    correlation_id: std::sync::Arc<str>,
    parent: u64,
    id: u64,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
}

/// Begins a child span of `parent` in the work `correlation_id`. When nothing is exported it is empty (id 0) and
/// costs nothing, so callers do not branch.
pub fn start(
    correlation_id: &std::sync::Arc<str>,
    parent: u64,
    kind: SpanKind,
    name: impl Into<Cow<'static, str>>,
) -> Started {
    if !enabled() || correlation_id.is_empty() {
        return Started(None);
    }
    Started(Some(Open {
        correlation_id: correlation_id.clone(),
        parent,
        id: new_span_id(),
        kind,
        name: name.into(),
        start: SystemTime::now(),
    }))
}

impl Started {
    /// Its id (0 when nothing is exported): what the work it starts elsewhere names as its parent.
    pub fn id(&self) -> u64 {
        self.0.as_ref().map_or(0, |open| open.id)
    }

    /// Ends it now, with `attributes`, failed with `error` if there is one.
    pub fn end(mut self, attributes: Vec<KeyValue>, error: Option<String>) {
        if let Some(open) = self.0.take() {
            open.record(attributes, error);
        }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if let Some(open) = self.0.take() {
            open.record(Vec::new(), Some("cancelled before it ended".to_owned()));
        }
    }
}

impl Open {
    fn record(self, attributes: Vec<KeyValue>, error: Option<String>) {
        record(SpanRecord {
            correlation_id: self.correlation_id,
            id: self.id,
            parent: self.parent,
            remote_parent: false,
            kind: self.kind,
            name: self.name,
            start: self.start,
            end: SystemTime::now(),
            attributes,
            links: Vec::new(),
            error,
        });
    }
}

/// Hands one finished span to the exporter, if there is one.
pub fn record(span: SpanRecord) {
    let Some(exporter) = EXPORTER.get() else { return };
    let trace_id = TraceId::from_bytes(correlation::trace_id_of(&span.correlation_id));
    let context = SpanContext::new(
        trace_id,
        SpanId::from_bytes(span.id.to_be_bytes()),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let mut attributes = span.attributes;
    attributes.push(KeyValue::new("edgefn.correlation_id", span.correlation_id.to_string()));
    let status = match span.error {
        Some(error) => Status::error(error),
        None => Status::Unset,
    };
    let links = span
        .links
        .iter()
        .map(|(work, id)| {
            let trace_id = TraceId::from_bytes(correlation::trace_id_of(work));
            let linked = SpanContext::new(
                trace_id,
                SpanId::from_bytes(id.to_be_bytes()),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            );
            opentelemetry::trace::Link::with_context(linked)
        })
        .collect();
    // Non-exhaustive, with public fields: filled in, not built.
    let mut span_links = SpanLinks::default();
    span_links.links = links;
    exporter.spans.on_end(SpanData {
        span_context: context,
        parent_span_id: if span.parent == 0 { SpanId::INVALID } else { SpanId::from_bytes(span.parent.to_be_bytes()) },
        parent_span_is_remote: span.remote_parent,
        span_kind: span.kind,
        name: span.name,
        start_time: span.start,
        end_time: span.end.max(span.start),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: span_links,
        status,
        instrumentation_scope: exporter.scope.clone(),
    });
}

/// The span of a finished invocation, and its metrics.
pub fn invocation(report: &InvocationReport) {
    let Some(exporter) = EXPORTER.get() else { return };
    let trace = &report.trace;
    let labels = [
        KeyValue::new("edgefn.function", trace.function.clone()),
        KeyValue::new("edgefn.trigger", trace.trigger),
        KeyValue::new("edgefn.outcome", report.outcome.as_str()),
    ];
    exporter.invocations.add(1, &labels);
    exporter.duration.record(report.wall.as_secs_f64(), &labels);
    if trace.span_id == 0 || trace.correlation_id.is_empty() {
        return;
    }
    let end = SystemTime::now();
    let mut attributes = labels.to_vec();
    attributes.push(KeyValue::new("edgefn.version", i64::from(trace.version)));
    attributes.push(KeyValue::new("edgefn.detail", trace.detail.clone()));
    attributes.push(KeyValue::new("edgefn.cold_start", report.cold_start));
    attributes.push(KeyValue::new("edgefn.cpu_ms", report.guest_cpu.as_secs_f64() * 1000.0));
    if let Some(status) = report.status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    let error = match report.outcome {
        Outcome::Ok | Outcome::ClientError => None,
        _ => Some(report.error.clone().unwrap_or_else(|| report.outcome.as_str().to_owned())),
    };
    record(SpanRecord {
        correlation_id: trace.correlation_id.clone(),
        id: trace.span_id,
        parent: trace.parent.span,
        remote_parent: trace.parent.remote,
        kind: kind_of(trace),
        name: Cow::Owned(format!("{} {}", trace.trigger, trace.function)),
        start: end - report.wall,
        end,
        attributes,
        links: trace.links.clone(),
        error,
    });
}

/// A server span for a request, a consumer span for a delivery, internal for the rest.
fn kind_of(trace: &Trace) -> SpanKind {
    match trace.trigger {
        "http" => SpanKind::Server,
        "queue" | "topic" | "object" => SpanKind::Consumer,
        "invoke" => SpanKind::Server,
        _ => SpanKind::Internal,
    }
}

/// Sends OTLP requests with ureq (blocking). The batch processor and the periodic reader export from threads of
/// their own, outside tokio, and wait on the export's future there: a blocking client is what fits, and it is the
/// one the host already has.
#[derive(Debug, Clone)]
struct UreqClient(ureq::Agent);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for UreqClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut call = self.0.request(parts.method.as_str(), &parts.uri.to_string());
        for (name, value) in &parts.headers {
            if let Ok(value) = value.to_str() {
                call = call.set(name.as_str(), value);
            }
        }
        let answer = match call.send_bytes(&body) {
            Ok(answer) | Err(ureq::Error::Status(_, answer)) => answer,
            Err(error) => return Err(Box::new(error)),
        };
        let status = answer.status();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(answer.into_reader(), 1 << 20), &mut bytes)?;
        Ok(http::Response::builder().status(status).body(bytes::Bytes::from(bytes))?)
    }
}
