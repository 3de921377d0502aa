//! WebSocket connections in API Gateway's model: the host holds the socket, and each event (connect, message,
//! disconnect) is a normal invocation of the component's function for it: a fresh instance, metered, logged with
//! the connection's id as its correlation id.
//!
//! - **connect**: a GET with `Upgrade: websocket` to a route of `websocket` functions passes the route's authorizer
//!   (if any; a browser cannot set headers on a WebSocket, so the bearer token may come as the query's
//!   `access_token`, RFC 6750 section 2.3, which is then taken out of the query the functions see), then the `connect` function (if any) runs; its `Err` refuses the connection (403 with its message),
//!   otherwise the host answers 101 and the connection is open. What the connect function sends is queued and
//!   sent once it is.
//! - **message**: each text or binary message runs the `message` function, one at a time per connection, in order.
//!   Past `[limits] websocket_messages_per_s` (with as much burst) a message is refused: the connection is closed
//!   with 1008 (policy violation). A message or frame over its size limit closes it with 1009.
//! - **disconnect**: when the client closes, drops, or stays silent for `websocket_idle_timeout_s`, or a function
//!   closes it, the `disconnect` function runs once.
//!
//! Every event runs the version live at that moment: a connection survives a deploy, and its next event goes to the
//! new version. Connections are this node's; their ids name it, so a function on any node of a cluster reaches them
//! (`capabilities::websocket`).

use super::{HttpTrigger, auth, error_response};
use crate::capabilities::websocket::Outgoing;
use crate::config::BucketRule;
use crate::live::{ComponentVersion, LiveSet};
use crate::runtime::{GuestCall, InvokeError, SlotKind};
use crate::telemetry::otel;
use axum::extract::FromRequestParts as _;
use axum::extract::Request;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use edgefn_manifest::record::{Trigger, WebSocketEventKind};
use futures_util::{SinkExt as _, StreamExt as _};
use http::{HeaderMap, StatusCode, header};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether `request` asks to become a WebSocket.
pub(super) fn is_upgrade(request: &Request) -> bool {
    request.method() == http::Method::GET
        && request
            .headers()
            .get(header::UPGRADE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.eq_ignore_ascii_case("websocket"))
}

/// What an event's function gets (the SDK's `WebSocketEvent`).
#[derive(Debug, Clone, serde::Serialize)]
struct Event<'a> {
    connection_id: &'a str,
    event: &'a str,
    path: &'a str,
    query: &'a str,
    params: &'a [(String, String)],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    headers: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    binary_base64: Option<String>,
}

/// Where a connection is: its component, the route its functions declare, and the request's place on it.
#[derive(Debug, Clone)]
struct Place {
    component: String,
    route: String,
    path: String,
    query: String,
    params: Vec<(String, String)>,
    subject: Option<String>,
}

/// The function of `place`'s component that handles `event`, in the version live now.
fn handler(live: &LiveSet, place: &Place, event: WebSocketEventKind) -> Option<(Arc<ComponentVersion>, String)> {
    let handles = |version: &ComponentVersion| -> Option<String> {
        version
            .functions
            .iter()
            .find(|function| {
                matches!(&function.trigger, Trigger::WebSocket { route, on, .. } if *route == place.route && *on == event)
            })
            .map(|function| function.name.clone())
    };
    let component = live.component(&place.component)?;
    let version = component.pick(|version| handles(version).is_some())?.clone();
    let function = handles(&version)?;
    Some((version, function))
}

/// How long an event waits, in all, for an instance when the function's concurrency or the host's slots are busy
/// (a burst of disconnects after a network blip): past it, the event fails and is logged.
const EVENT_PATIENCE: Duration = Duration::from_secs(60);

/// Runs `function` of `version` for one event of connection `id`; its `Err` message on failure. An event that finds
/// the function busy (throttled, no free slot, the memory budget full) waits and tries again, within
/// [`EVENT_PATIENCE`]: every event of a connection runs, however many arrive at once.
async fn run_event(
    trigger: &HttpTrigger,
    version: &Arc<ComponentVersion>,
    function: &str,
    id: &str,
    event: &Event<'_>,
) -> Result<(), String> {
    let label = version.label(function);
    let payload = serde_json::to_vec(event).map_err(|error| error.to_string())?;
    let deadline = Instant::now() + EVENT_PATIENCE;
    let mut pause = Duration::from_millis(10);
    loop {
        let work = super::Work {
            correlation_id: Arc::from(id),
            trigger: "websocket",
            detail: format!("{} {}", event.event, event.path),
            parent: otel::Parent::default(),
        };
        let prepared =
            match trigger.runner.prepare(version, function, SlotKind::Request, vec![label.clone()], work).await {
                Ok(prepared) => prepared,
                Err(InvokeError::Throttled(_) | InvokeError::Busy(_) | InvokeError::MemoryBudget(_))
                    if Instant::now() + pause < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                    continue;
                }
                Err(error) => return Err(format!("`{label}` {error}")),
            };
        let call = GuestCall::Invoke { function: function.to_owned(), payload, correlation_id: id.to_owned() };
        let (outcome, _) =
            trigger.runner.runtime().call_guest(&prepared.component, &prepared.invocation, prepared.slot, call).await;
        return match outcome {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(message)) => Err(message),
            Err(error) => Err(format!("`{label}` {error}")),
        };
    }
}

/// Answers an upgrade request to the WebSocket route `target`: 101 and a connection,
/// or the refusal of its authorizer or its connect function.
pub(super) async fn accept(
    trigger: &Arc<HttpTrigger>,
    target: crate::live::WebSocketRoute,
    request: Request,
    request_id: &str,
    served: &mut super::Served,
) -> Response {
    let crate::live::WebSocketRoute { component, route, params } = target;
    let path = request.uri().path().to_owned();
    let (token, query) = split_access_token(request.uri().query().unwrap_or_default());
    let mut place = Place { component, route, path, query, params, subject: None };
    let (mut parts, _body) = request.into_parts();
    if let Some(token) = token
        && !parts.headers.contains_key(header::AUTHORIZATION)
        && let Ok(value) = http::HeaderValue::try_from(format!("Bearer {token}"))
    {
        parts.headers.insert(header::AUTHORIZATION, value);
    }
    // The route's authorizer, as an HTTP route's: any of its functions names it.
    let live = trigger.live.load();
    let guard = handler(&live, &place, WebSocketEventKind::Connect)
        .or_else(|| handler(&live, &place, WebSocketEventKind::Message))
        .or_else(|| handler(&live, &place, WebSocketEventKind::Disconnect));
    drop(live);
    let Some((guard_version, guard_function)) = guard else {
        return error_response(StatusCode::NOT_FOUND, "no WebSocket function here", request_id);
    };
    served.function = Some(guard_version.label(&guard_function));
    served.version = Some(guard_version.version);
    if let Err(refusal) =
        auth::gate(&trigger.authorizers, &guard_version, &guard_function, &mut parts.headers, request_id)
    {
        tracing::info!(request_id, path = %place.path, reason = %refusal.reason, "WebSocket connection refused");
        return *refusal.response;
    }
    place.subject = super::rate_limit::claim(&parts.headers, "sub");
    let id = trigger.connections.new_id();
    let limits = &trigger.limits;
    if trigger.connections.len() >= limits.max_websockets {
        let message = format!("this node holds its most WebSocket connections ({})", limits.max_websockets);
        return error_response(StatusCode::SERVICE_UNAVAILABLE, &message, request_id);
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // Registered before connect runs, so that what it sends waits for the connection.
    let outgoing = trigger.connections.register(&id, &place.component);
    let registration = Registration { connections: trigger.connections.clone(), id: id.clone() };
    let live = trigger.live.load();
    if let Some((version, function)) = handler(&live, &place, WebSocketEventKind::Connect) {
        drop(live);
        let headers = kept_headers(&parts.headers);
        let event = event(&id, "connect", &place, &headers);
        if let Err(message) = run_event(trigger, &version, &function, &id, &event).await {
            drop(registration);
            tracing::info!(request_id, connection = %id, %message, "WebSocket connect refused by its function");
            return error_response(StatusCode::FORBIDDEN, &message, request_id);
        }
    }
    let max_message = usize::try_from(limits.websocket_max_message_kb << 10).unwrap_or(usize::MAX);
    let max_frame = usize::try_from(limits.websocket_max_frame_kb << 10).unwrap_or(usize::MAX);
    let trigger = trigger.clone();
    upgrade
        .max_message_size(max_message)
        .max_frame_size(max_frame)
        .on_failed_upgrade({
            let id = id.clone();
            // The registration goes with the dropped `on_upgrade` callback.
            move |error| tracing::info!(connection = %id, %error, "WebSocket upgrade failed")
        })
        .on_upgrade(move |socket| async move { serve(trigger, socket, registration, place, outgoing).await })
}

/// The connect request's headers a function may see: no credentials, no host-internal ones (as a failed request
/// keeps them for replay), no handshake key.
/// The `access_token` of an upgrade's query (percent-decoded), and the query without it: the token is a
/// credential, so neither the functions' events nor anything they log ever see it.
fn split_access_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("access_token=") {
            Some(value) => token = Some(edgefn_manifest::route::percent_decode(value)),
            None => kept.push(pair),
        }
    }
    (token, kept.join("&"))
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut headers = headers.clone();
    headers.remove(header::SEC_WEBSOCKET_KEY);
    crate::triggers::replay::kept_headers(&headers, &[])
}

/// A connection's entry in the node's registry, removed when this is dropped, however the connection ends (a
/// refused connect, a failed upgrade, a client gone mid-handshake, the end of `serve`, a shutdown).
struct Registration {
    connections: Arc<crate::capabilities::websocket::Connections>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.connections.remove(&self.id);
    }
}

fn event<'a>(id: &'a str, kind: &'a str, place: &'a Place, headers: &'a [(String, String)]) -> Event<'a> {
    Event {
        connection_id: id,
        event: kind,
        path: &place.path,
        query: &place.query,
        params: &place.params,
        headers,
        subject: place.subject.as_deref(),
        text: None,
        binary_base64: None,
    }
}

/// Why a connection ended, for the log and its close frame.
enum Ending {
    ClientClosed,
    Dropped(String),
    Idle,
    TooFast,
    /// A message or frame over its size limit (the reader's error says which).
    TooBig(String),
    ClosedByFunction,
    NoHandler,
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ending::ClientClosed => f.write_str("the client closed it"),
            Ending::Dropped(why) => write!(f, "dropped: {why}"),
            Ending::Idle => f.write_str("idle past websocket_idle_timeout_s"),
            Ending::TooFast => f.write_str("more messages than websocket_messages_per_s"),
            Ending::TooBig(why) => write!(f, "over websocket_max_message_kb or websocket_max_frame_kb: {why}"),
            Ending::ClosedByFunction => f.write_str("a function closed it"),
            Ending::NoHandler => f.write_str("no function handles its messages"),
        }
    }
}

/// Runs one open connection until it ends, then its disconnect event.
async fn serve(
    trigger: Arc<HttpTrigger>,
    socket: WebSocket,
    registration: Registration,
    place: Place,
    mut outgoing: tokio::sync::mpsc::Receiver<Outgoing>,
) {
    let id = registration.id.clone();
    let limits = &trigger.limits;
    let idle = Duration::from_secs(limits.websocket_idle_timeout_s.max(1));
    let per_second = f64::from(limits.websocket_messages_per_s.max(1));
    let rate = BucketRule { per_second, burst: per_second };
    let (mut sink, mut stream) = socket.split();
    let (closing_tx, mut closing_rx) = tokio::sync::oneshot::channel::<(u16, String)>();
    // Tells the reader at once when a function closed the connection, however quiet the client is.
    let closed_by_function = Arc::new(tokio::sync::Notify::new());
    let activity = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let touch = {
        let activity = activity.clone();
        move || activity.store(started.elapsed().as_millis() as u64, std::sync::atomic::Ordering::Relaxed)
    };
    // The writer: what functions send, in order, until a close (a function's, or the reader's).
    let writer = {
        let touch = touch.clone();
        let closed_by_function = closed_by_function.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    message = outgoing.recv() => {
                        let Some(message) = message else { break };
                        touch();
                        let (frame, last) = match message {
                            Outgoing::Text(text) => (Message::Text(text.into()), false),
                            Outgoing::Binary(bytes) => (Message::Binary(bytes.into()), false),
                            Outgoing::Close { code, reason } => {
                                (Message::Close(Some(CloseFrame { code, reason: reason.into() })), true)
                            }
                        };
                        if sink.send(frame).await.is_err() || last {
                            if last {
                                closed_by_function.notify_one();
                            }
                            return last;
                        }
                    }
                    closing = &mut closing_rx => {
                        if let Ok((code, reason)) = closing {
                            let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                        }
                        break;
                    }
                }
            }
            false
        })
    };
    let mut bucket = crate::capabilities::ratelimit::Bucket::full(rate, Instant::now());
    let ending = loop {
        let quiet_for = started
            .elapsed()
            .saturating_sub(Duration::from_millis(activity.load(std::sync::atomic::Ordering::Relaxed)));
        let next = tokio::select! {
            next = tokio::time::timeout(idle.saturating_sub(quiet_for), stream.next()) => next,
            () = closed_by_function.notified() => break Ending::ClosedByFunction,
        };
        let frame = match next {
            Err(_elapsed) => {
                let quiet =
                    started.elapsed() - Duration::from_millis(activity.load(std::sync::atomic::Ordering::Relaxed));
                if quiet >= idle {
                    break Ending::Idle;
                }
                continue;
            }
            Ok(None) => break Ending::Dropped("the connection ended".into()),
            // tungstenite reports a message or frame over its bound as a capacity error ("Space limit exceeded");
            // its type is not ours to name (axum wraps it), so its words tell it from a dropped connection.
            Ok(Some(Err(error))) if error.to_string().contains("Space limit exceeded") => {
                break Ending::TooBig(error.to_string());
            }
            Ok(Some(Err(error))) => break Ending::Dropped(error.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        touch();
        let (text, binary) = match frame {
            Message::Text(text) => (Some(text.to_string()), None),
            Message::Binary(bytes) => (None, Some(base64::engine::general_purpose::STANDARD.encode(&bytes))),
            Message::Ping(_) | Message::Pong(_) => continue,
            Message::Close(_) => break Ending::ClientClosed,
        };
        if !bucket.take(Instant::now()) {
            break Ending::TooFast;
        }
        let live = trigger.live.load();
        let Some((version, function)) = handler(&live, &place, WebSocketEventKind::Message) else {
            break Ending::NoHandler;
        };
        drop(live);
        let mut message = event(&id, "message", &place, &[]);
        message.text = text.as_deref();
        message.binary_base64 = binary;
        if let Err(error) = run_event(&trigger, &version, &function, &id, &message).await {
            tracing::info!(connection = %id, %error, "a WebSocket message's function failed");
        }
        if writer.is_finished() {
            break Ending::ClosedByFunction;
        }
    };
    let close = match &ending {
        Ending::Idle => Some((1001, "idle".to_owned())),
        Ending::TooFast => Some((1008, "too many messages".to_owned())),
        Ending::TooBig(_) => Some((1009, "message too big".to_owned())),
        Ending::NoHandler => Some((1011, "no function handles messages here".to_owned())),
        _ => None,
    };
    if let Some(close) = close {
        let _ = closing_tx.send(close);
    } else {
        drop(closing_tx);
    }
    let _ = writer.await;
    drop(registration);
    tracing::info!(connection = %id, ending = %ending, "WebSocket connection ended");
    let live = trigger.live.load();
    if let Some((version, function)) = handler(&live, &place, WebSocketEventKind::Disconnect) {
        drop(live);
        if let Err(error) = run_event(&trigger, &version, &function, &id, &event(&id, "disconnect", &place, &[])).await
        {
            tracing::info!(connection = %id, %error, "a WebSocket disconnect's function failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_access_token;

    #[test]
    fn the_access_token_is_taken_out_of_the_query() {
        assert_eq!(split_access_token(""), (None, String::new()));
        assert_eq!(split_access_token("room=a&b=2"), (None, "room=a&b=2".into()));
        assert_eq!(split_access_token("access_token=abc.def"), (Some("abc.def".into()), String::new()));
        assert_eq!(
            split_access_token("room=a&access_token=a%2Eb&x=1"),
            (Some("a.b".into()), "room=a&x=1".into()),
            "decoded, and the rest kept in order"
        );
        // A name that merely starts alike is not the token.
        assert_eq!(split_access_token("access_token2=z"), (None, "access_token2=z".into()));
    }
}
