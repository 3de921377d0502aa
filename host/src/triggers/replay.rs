//! Failures kept for replay, and replaying them.
//!
//! A component deployed with `record_failures = true` keeps the input of each invocation that fails (an HTTP
//! request answered 5xx or that trapped or timed out, a delivery whose function failed or retried or dead-lettered
//! a message, a failed cron run or invoke): in the telemetry store, with the log's retention, up to
//! `logs.replay_input_max_kb` of bodies. Credentials are never kept: `authorization`, `proxy-authorization`,
//! `cookie` and the host's own `x-edgefn-*` headers are left out, and the function's secret values are masked in
//! what is kept.
//!
//! [`Replayer::replay`] runs a kept input again on a version (the live one, or any other), for real: what the
//! function sends, publishes or writes while it runs happens. A replayed delivery settles nothing (its messages
//! are long settled); a replayed request of a route behind an authorizer carries no verified claims.

use super::{Runner, Work};
use crate::live::ComponentVersion;
use crate::runtime::redact::mask;
use crate::runtime::{CronEvent, Delivery, GuestCall, Message, RequestBody, SlotKind};
use crate::storage::now_ms;
use crate::storage::telemetry::{FailedInput, FailedMessage, Failure};
use crate::telemetry::correlation;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use std::sync::Arc;

/// The most of a replayed HTTP response's body that is shown.
const MAX_SHOWN_BODY: usize = 64 << 10;

/// Headers never kept with a failure.
fn is_credential(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie" | "x-request-id" | "traceparent")
        || name.starts_with("x-edgefn-")
}

/// The headers of a failed request as they are kept: credentials out, secret values masked.
pub fn kept_headers(headers: &http::HeaderMap, secrets: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !is_credential(name.as_str()))
        .map(|(name, value)| (name.as_str().to_owned(), mask(&String::from_utf8_lossy(value.as_bytes()), secrets)))
        .collect()
}

/// `bytes` with the secret values masked (as text when it is text; binary bodies are kept as they are).
pub fn kept_body(bytes: &[u8], secrets: &[(String, String)]) -> Vec<u8> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !secrets.is_empty() => mask(text, secrets).into_bytes(),
        _ => bytes.to_vec(),
    }
}

/// The messages of a delivery, as a failure keeps them.
pub fn kept_messages(messages: &[Message], secrets: &[(String, String)]) -> Vec<FailedMessage> {
    messages
        .iter()
        .map(|m| FailedMessage {
            id: m.id.clone(),
            body: kept_body(&m.body, secrets),
            attempts: m.attempts,
            priority: m.priority,
            enqueued_at: m.enqueued_at,
            correlation_id: m.correlation_id.clone(),
        })
        .collect()
}

impl Runner {
    /// Keeps a failed invocation of `function` of `version` for replay, if the version records failures. `input`
    /// is only built when `input_bytes` fits the cap; it is `None` for a request body the function read as a stream
    /// (with `input_bytes` 0: see `Failure::input_was_streamed`).
    #[allow(clippy::too_many_arguments)]
    pub fn record_failure(
        &self,
        version: &ComponentVersion,
        function: &str,
        correlation_id: &str,
        trigger: &str,
        error: &str,
        input_bytes: u64,
        input: impl FnOnce() -> Option<FailedInput>,
    ) {
        if !version.env.record_failures {
            return;
        }
        let telemetry = self.runtime().telemetry();
        let Some(cap) = telemetry.replay_input_cap() else { return };
        let input = (input_bytes <= cap).then(input).flatten();
        telemetry.failure(Failure {
            id: 0,
            at: now_ms(),
            correlation_id: correlation_id.to_owned(),
            component: version.component.clone(),
            function: function.to_owned(),
            version: version.version,
            trigger: trigger.to_owned(),
            error: mask(error, &version.env.secrets),
            input,
            input_bytes,
        });
    }
}

/// How a replay went.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReplayOutcome {
    /// The correlation id the replay ran under: its log.
    pub correlation_id: String,
    pub version: u32,
    pub ok: bool,
    /// The HTTP status, for a request.
    pub status: Option<u16>,
    /// The response body (a request; the first 64 KiB, as text) or the result (an invoke), or the error.
    pub output: String,
}

/// Why a failure cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "failure #{id} has no input to replay: it was {bytes} bytes, over the cap of {cap} bytes \
         (logs.replay_input_max_kb)"
    )]
    InputNotKept { id: i64, bytes: u64, cap: u64 },
    #[error(
        "failure #{id} has no input to replay: the function read its request body as a stream, as it arrived, so \
         the host never held it whole"
    )]
    InputStreamed { id: i64 },
    #[error("version {version} of `{component}` has no function `{function}`")]
    NoFunction { component: String, version: u32, function: String },
}

/// Runs kept inputs again. See the module docs.
#[derive(Debug, Clone)]
pub struct Replayer {
    runner: Runner,
}

impl Replayer {
    pub fn new(runner: Runner) -> Self {
        Self { runner }
    }

    /// Runs `failure`'s input on `version`, under a new correlation id.
    pub async fn replay(
        &self,
        failure: &Failure,
        version: &Arc<ComponentVersion>,
    ) -> Result<ReplayOutcome, ReplayError> {
        let Some(input) = &failure.input else {
            if failure.input_was_streamed() {
                return Err(ReplayError::InputStreamed { id: failure.id });
            }
            let cap = self.runner.runtime().telemetry().replay_input_cap().unwrap_or(0);
            return Err(ReplayError::InputNotKept { id: failure.id, bytes: failure.input_bytes, cap });
        };
        // A mounted plain component has no declared functions: its one handler takes every request.
        if version.mount.is_none() && !version.functions.iter().any(|f| f.name == failure.function) {
            return Err(ReplayError::NoFunction {
                component: version.component.clone(),
                version: version.version,
                function: failure.function.clone(),
            });
        }
        let correlation_id = format!("replay-{}", correlation::new_id());
        let work = Work {
            correlation_id: Arc::from(correlation_id.as_str()),
            trigger: trigger_of(input),
            detail: format!("replay of failure #{}", failure.id),
            parent: Default::default(),
        };
        let label = version.label(&failure.function);
        let kind = if matches!(input, FailedInput::Http { .. } | FailedInput::Invoke { .. }) {
            SlotKind::Request
        } else {
            SlotKind::Background
        };
        let outcome = |ok: bool, status: Option<u16>, output: String| ReplayOutcome {
            correlation_id: correlation_id.clone(),
            version: version.version,
            ok,
            status,
            output,
        };
        let prepared = match self.runner.prepare(version, &failure.function, kind, vec![label], work).await {
            Ok(prepared) => prepared,
            Err(error) => return Ok(outcome(false, None, error.to_string())),
        };
        let runtime = self.runner.runtime();
        let call = match input {
            FailedInput::Http { method, uri, headers, body } => {
                let mut request = http::Request::builder().method(method.as_str()).uri(uri.as_str());
                for (name, value) in headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                let request = request
                    .header(correlation::REQUEST_ID_HEADER, correlation_id.as_str())
                    .body(RequestBody::Whole(Bytes::from(body.clone())));
                let request = match request {
                    Ok(request) => request,
                    Err(error) => return Ok(outcome(false, None, format!("the kept request is invalid: {error}"))),
                };
                let answer = runtime.invoke_http(&prepared.component, &prepared.invocation, prepared.slot, request);
                return Ok(match answer.await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let body = match response.into_body().collect().await {
                            Ok(collected) => collected.to_bytes(),
                            Err(error) => Bytes::from(format!("[the body failed: {error}]")),
                        };
                        let shown = String::from_utf8_lossy(&body[..body.len().min(MAX_SHOWN_BODY)]).into_owned();
                        outcome(status < 500, Some(status), shown)
                    }
                    Err(error) => outcome(false, None, error.to_string()),
                });
            }
            FailedInput::Messages { source, messages } => GuestCall::Messages(Delivery {
                function: failure.function.clone(),
                source: source.clone(),
                messages: messages
                    .iter()
                    .map(|m| Message {
                        id: m.id.clone(),
                        body: m.body.clone(),
                        attempts: m.attempts,
                        priority: m.priority,
                        enqueued_at: m.enqueued_at,
                        correlation_id: m.correlation_id.clone(),
                    })
                    .collect(),
                correlation_id: correlation_id.clone(),
            }),
            FailedInput::Cron { expression, timezone, scheduled_at, attempt, reason } => GuestCall::Cron(CronEvent {
                function: failure.function.clone(),
                expression: expression.clone(),
                timezone: timezone.clone(),
                scheduled_at: *scheduled_at,
                fired_at: now_ms(),
                attempt: *attempt,
                reason: format!("replay of {reason}"),
                correlation_id: correlation_id.clone(),
            }),
            FailedInput::Invoke { payload } => GuestCall::Invoke {
                function: failure.function.clone(),
                payload: payload.clone(),
                correlation_id: correlation_id.clone(),
            },
        };
        let (result, _settlements) =
            runtime.call_guest(&prepared.component, &prepared.invocation, prepared.slot, call).await;
        Ok(match result {
            Ok(Ok(output)) => outcome(true, None, String::from_utf8_lossy(&output).into_owned()),
            Ok(Err(message)) => outcome(false, None, message),
            Err(error) => outcome(false, None, error.to_string()),
        })
    }
}

fn trigger_of(input: &FailedInput) -> &'static str {
    match input {
        FailedInput::Http { .. } => "http",
        FailedInput::Messages { .. } => "queue",
        FailedInput::Cron { .. } => "cron",
        FailedInput::Invoke { .. } => "invoke",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_kept_and_secrets_are_masked() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer abc"),
            ("cookie", "session=1"),
            ("x-edgefn-claims", "{}"),
            ("x-request-id", "r1"),
            ("content-type", "application/json"),
            ("x-api-note", "key is hunter2!"),
        ] {
            headers.insert(name, http::HeaderValue::from_static(value));
        }
        let secrets = [("API_KEY".to_owned(), "hunter2".to_owned())];
        let kept = kept_headers(&headers, &secrets);
        assert_eq!(
            kept,
            [
                ("content-type".to_owned(), "application/json".to_owned()),
                ("x-api-note".to_owned(), "key is [secret API_KEY]!".to_owned())
            ]
        );
        assert_eq!(kept_body(b"{\"k\":\"hunter2\"}", &secrets), b"{\"k\":\"[secret API_KEY]\"}");
        assert_eq!(kept_body(&[0xff, 0x00], &secrets), [0xff, 0x00], "binary bodies are kept as they are");
    }
}
