//! OpenTelemetry export, end to end: a real host with `[otel]` on sends OTLP/HTTP (protobuf) to a receiver the test
//! starts, which decodes it with the `opentelemetry-proto` types. One order is followed as one trace through HTTP,
//! a queue, a topic and an invoke, with the spans of what each function did (sends, publishes, the invoke, a
//! webhook fetch, a span the function opened itself) hanging under the right parents; key-value operations are
//! spans too, a failed one with its reason; and the invocation metrics arrive.

use crate::support::{Collector, Host, component_arg, poll_until, send};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;
use serde_json::json;
use std::time::Duration;

/// One exported span, flattened.
#[derive(Debug, Clone)]
struct Exported {
    trace: String,
    id: String,
    parent: String,
    name: String,
    kind: SpanKind,
    attributes: Vec<(String, String)>,
    error: Option<String>,
    service: String,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

fn text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// Every span the receiver has decoded so far.
fn spans(receiver: &Collector) -> Vec<Exported> {
    let mut out = Vec::new();
    for request in receiver.requests("/v1/traces") {
        assert_eq!(request.header("content-type"), Some("application/x-protobuf"), "{:?}", request.headers);
        let export = ExportTraceServiceRequest::decode(request.raw.as_slice()).expect("an OTLP trace export");
        for resource_spans in export.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            let service = resource.attributes.iter().find(|a| a.key == "service.name").map(|a| text(a.value.as_ref()));
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let status = span.status.unwrap_or_default();
                    out.push(Exported {
                        trace: hex::encode(&span.trace_id),
                        id: hex::encode(&span.span_id),
                        parent: hex::encode(&span.parent_span_id),
                        kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                        attributes: span.attributes.iter().map(|a| (a.key.clone(), text(a.value.as_ref()))).collect(),
                        error: (status.code == 2).then_some(status.message),
                        name: span.name,
                        service: service.clone().unwrap_or_default(),
                    });
                }
            }
        }
    }
    out
}

/// The one span named `name`, among `all`.
fn one<'a>(all: &'a [Exported], name: &str) -> &'a Exported {
    let found: Vec<&Exported> = all.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one span `{name}`, in: {:#?}", all.iter().map(|s| &s.name).collect::<Vec<_>>());
    found[0]
}

#[test]
fn one_order_is_one_trace_through_http_queue_topic_and_invoke_exported_over_otlp() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    std::fs::write(
        &config,
        format!(
            "[otel]\nendpoint = \"{url}\"\nservice_name = \"edge-test\"\nexport_interval_ms = 200\n\n\
             [components.order-pipeline]\nenv = {{ INVOICE_WEBHOOK_URL = \"{url}/invoices\" }}\n\
             allowed_outbound_hosts = [\"{authority}\"]\n",
            url = receiver.url,
            authority = receiver.authority,
        ),
    )
    .expect("config");
    let host = Host::start(&["--config", config.to_str().expect("utf-8"), &component_arg("order_pipeline")]);

    // The caller is traced already: its traceparent's trace id is the work's, its span the request span's parent.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let order = json!({ "id": 42, "customer": "ada", "country": "FR",
        "items": [{ "sku": "tea", "quantity": 3, "unit_price_cents": 400 }] });
    let reply = send(
        "POST",
        &host.url("/pipeline/orders"),
        &[("traceparent", &format!("00-{trace}-{caller_span}-01")), ("content-type", "application/json")],
        order.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 202, "{}", reply.body);

    // Five invocations (accept, enrich, invoice, notify, tax), each exported when it ends.
    let wanted = [
        "http order_pipeline/accept",
        "queue order_pipeline/enrich",
        "topic order_pipeline/invoice",
        "topic order_pipeline/notify",
        "invoke order_pipeline/tax",
        "POST 127.0.0.1",
    ];
    poll_until("the spans of the order's five invocations and its webhook call", Duration::from_secs(30), || {
        let all = spans(&receiver);
        wanted.iter().all(|name| all.iter().any(|s| &s.name == name))
    });
    let all: Vec<Exported> = spans(&receiver).into_iter().filter(|s| s.trace == trace).collect();
    assert!(all.iter().all(|s| s.service == "edge-test"), "{all:#?}");

    let accept = one(&all, "http order_pipeline/accept");
    assert_eq!((accept.kind, accept.parent.as_str()), (SpanKind::Server, caller_span), "{accept:#?}");
    assert_eq!(accept.attribute("http.response.status_code"), Some("202"), "{accept:#?}");
    assert_eq!(accept.attribute("edgefn.outcome"), Some("ok"));

    let sent = one(&all, "send orders");
    assert_eq!((sent.kind, &sent.parent), (SpanKind::Producer, &accept.id), "{sent:#?}");
    let enrich = one(&all, "queue order_pipeline/enrich");
    assert_eq!((enrich.kind, &enrich.parent), (SpanKind::Consumer, &sent.id), "the delivery continues the send");

    // The span enrich opened itself, through the SDK.
    let priced = one(&all, "price order");
    assert_eq!(&priced.parent, &enrich.id, "{priced:#?}");
    assert_eq!(priced.attribute("order"), Some("42"));
    assert_eq!(priced.attribute("subtotal_cents"), Some("1200"));

    let published = one(&all, "publish order.created");
    assert_eq!((published.kind, &published.parent), (SpanKind::Producer, &enrich.id), "{published:#?}");
    assert_eq!(published.attribute("edgefn.subscribers"), Some("2"));
    for subscriber in ["topic order_pipeline/invoice", "topic order_pipeline/notify"] {
        let span = one(&all, subscriber);
        assert_eq!(&span.parent, &published.id, "{subscriber} continues the publish: {span:#?}");
    }
    let invoice = one(&all, "topic order_pipeline/invoice");
    let invoked = one(&all, "invoke tax");
    assert_eq!((invoked.kind, &invoked.parent), (SpanKind::Client, &invoice.id), "{invoked:#?}");
    let tax = one(&all, "invoke order_pipeline/tax");
    assert_eq!(&tax.parent, &invoked.id, "the invoked function continues the invoke: {tax:#?}");

    // The webhook call is a client span of invoice, and the request it made carried that span as its parent.
    let fetched = one(&all, "POST 127.0.0.1");
    assert_eq!((fetched.kind, &fetched.parent), (SpanKind::Client, &invoice.id), "{fetched:#?}");
    assert_eq!(fetched.attribute("http.response.status_code"), Some("200"));
    let webhook = &receiver.requests("/invoices")[0];
    assert_eq!(webhook.header("traceparent"), Some(format!("00-{trace}-{}-01", fetched.id).as_str()));

    // Nothing of this trace is a root: each span hangs under one of this trace (or the caller's).
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).chain([caller_span]).collect();
    for span in &all {
        assert!(ids.contains(&span.parent.as_str()), "an orphan: {span:#?}");
    }

    // The metrics: invocations counted by function, trigger and outcome; durations in seconds.
    poll_until("accept's invocation count and duration in a metrics export", Duration::from_secs(30), || {
        let (mut count, mut durations) = (0, 0);
        for request in receiver.requests("/v1/metrics") {
            let export = ExportMetricsServiceRequest::decode(request.raw.as_slice()).expect("an OTLP metrics export");
            let metrics = export.resource_metrics.into_iter().flat_map(|r| r.scope_metrics).flat_map(|s| s.metrics);
            for metric in metrics {
                let is_accept = |attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
                    let value = |key: &str| {
                        attributes.iter().find(|a| a.key == key).map(|a| text(a.value.as_ref())).unwrap_or_default()
                    };
                    value("edgefn.function") == "order_pipeline/accept"
                        && value("edgefn.trigger") == "http"
                        && value("edgefn.outcome") == "ok"
                };
                match metric.data {
                    Some(Data::Sum(sum)) if metric.name == "edgefn.invocations" => {
                        for point in sum.data_points.iter().filter(|p| is_accept(&p.attributes)) {
                            if let Some(number_data_point::Value::AsInt(n)) = point.value {
                                count = count.max(n);
                            }
                        }
                    }
                    Some(Data::Histogram(histogram)) if metric.name == "edgefn.invocation.duration" => {
                        assert_eq!(metric.unit, "s");
                        for point in histogram.data_points.iter().filter(|p| is_accept(&p.attributes)) {
                            assert!(point.explicit_bounds.first().is_some_and(|b| *b < 0.01), "{point:?}");
                            durations = durations.max(point.count);
                        }
                    }
                    _ => {}
                }
            }
        }
        count == 1 && durations == 1
    });
}

#[test]
fn key_value_operations_are_spans_and_a_failed_one_says_why_even_with_logs_and_metrics_off() {
    let receiver = Collector::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("edgefn.toml");
    // Spans do not depend on the log or the Prometheus metrics.
    let text = format!(
        "[logs]\nenabled = false\n\n[metrics]\nenabled = false\n\n[otel]\nendpoint = \"{}\"\nexport_interval_ms = 200\n",
        receiver.url
    );
    std::fs::write(&config, text).expect("config");
    let host = Host::start(&["--config", config.to_str().expect("utf-8")]);
    host.cli_ok(&["deploy", &component_arg("kv_probe"), "--name", "kv-a", "--kv-store", "a"]);
    let invoke = |op: serde_json::Value| host.admin("POST", "/v1/functions/kv-a%2Fkv/invoke", Some(op));
    let added = invoke(json!({"op": "incr", "store": "a", "key": "visits", "delta": 41}));
    assert_eq!(added.status, 200, "{}", added.body);
    let set = invoke(json!({"op": "set", "store": "a", "key": "name", "value": "ada"}));
    assert_eq!(set.status, 200, "{}", set.body);
    // Adding to a key that holds no number: the store refuses, the function fails.
    let refused = invoke(json!({"op": "incr", "store": "a", "key": "name", "delta": 1}));
    assert_ne!(refused.status, 200, "{}", refused.body);

    poll_until("the spans of the three invocations", Duration::from_secs(30), || {
        spans(&receiver).iter().filter(|s| s.name == "invoke kv-a/kv").count() == 3
    });
    let all = spans(&receiver);
    assert!(all.iter().all(|s| s.service == "edgefn"), "the default service name: {all:#?}");
    let parent_of = |span: &Exported| {
        all.iter().find(|s| s.id == span.parent).unwrap_or_else(|| panic!("no parent of {span:#?} in {all:#?}")).clone()
    };
    let adds: Vec<&Exported> = all.iter().filter(|s| s.name == "kv add a").collect();
    assert_eq!(adds.len(), 2, "{all:#?}");
    let (ok, failed) = if adds[0].error.is_none() { (adds[0], adds[1]) } else { (adds[1], adds[0]) };
    for span in [ok, failed] {
        let parent = parent_of(span);
        assert_eq!((parent.name.as_str(), &parent.trace), ("invoke kv-a/kv", &span.trace), "{span:#?}");
        assert_eq!(span.kind, SpanKind::Client);
        assert_eq!(span.attribute("db.operation.name"), Some("add"));
        assert_eq!(span.attribute("db.namespace"), Some("a"));
    }
    assert_eq!(ok.error, None, "{ok:#?}");
    let why = failed.error.as_deref().unwrap_or_default();
    assert!(why.contains("name"), "the failed add says which key and why: {failed:#?}");
    let failed_invocation = parent_of(failed);
    assert!(failed_invocation.error.is_some(), "{failed_invocation:#?}");
    assert_eq!(failed_invocation.attribute("edgefn.outcome"), Some("error"), "{failed_invocation:#?}");
    assert_eq!(parent_of(ok).error, None);
    let set = one(&all, "kv set a");
    assert_eq!(set.attribute("db.operation.name"), Some("set"));
}
