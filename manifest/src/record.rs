//! Manifest records: one per `#[function]`, concatenated in the `edgefn-manifest` custom section.
//!
//! The linker concatenates the section contents of every static that names the section, in no fixed order, so each
//! record must stand on its own:
//!
//! ```text
//! b"EFN" | version: u8 | payload length: u32 little-endian | payload: UTF-8 JSON of FunctionRecord
//! ```
//!
//! The version byte lets a host refuse records written by an SDK it does not know. A record is written with the
//! lowest version that can carry it: version 1 unless it uses something a version-1 host would misread. A route's
//! `auth` is such a thing: version-1 hosts ignore unknown keys, and would serve a protected route open, so a record
//! with `auth` is version 2, which they refuse. From version 2 on, unknown keys are refused too
//! (`deny_unknown_fields`), so a later key fails closed on this host without another version bump. An `object`
//! trigger is version 3, a `stream` trigger version 4, a `websocket` trigger 5 and a `workflow` 6, so an older host
//! says "upgrade the host" instead of "unknown variant".

use serde::{Deserialize, Serialize};

/// Leading bytes of every record; a section that does not start with them is not ours (or is corrupt).
pub const MAGIC: &[u8; 3] = b"EFN";
/// The newest record format this crate writes and reads (it reads every version from 1).
pub const VERSION: u8 = 6;
const HEADER_LEN: usize = MAGIC.len() + 1 + 4;

/// One function of a component: its exported name and what triggers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRecord {
    /// The Rust function's name, unique within a component.
    pub name: String,
    /// What makes the host invoke it.
    pub trigger: Trigger,
}

/// The trigger kinds a function can declare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Trigger {
    /// An HTTP route, e.g. `/hello/{name}`, the method it answers (`*` for any), and the authorizer that must
    /// admit a request before the function runs (none: the route is public).
    Http {
        route: String,
        method: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<RouteAuth>,
    },
    /// `#[edgefn::init]`: runs once at deploy, and the memory it leaves becomes every instance's starting state.
    Init,
    /// A schedule: a cron expression (5 or 6 fields, or an `@alias`) in an IANA time zone.
    Cron {
        expression: String,
        #[serde(default = "utc")]
        timezone: String,
        #[serde(default)]
        policy: CronPolicy,
    },
    /// The consumer of a durable queue. A queue has at most one consumer function.
    Queue {
        queue: String,
        #[serde(default)]
        delivery: Delivery,
    },
    /// A subscriber of a topic: every subscriber gets its own durable copy of each published message.
    Topic {
        topic: String,
        #[serde(default)]
        delivery: Delivery,
    },
    /// A command: called by name with a JSON payload (`edgefn::invoke`, the admin API, `edgefn invoke`), answers
    /// with a JSON result.
    Invoke,
    /// Changes to the objects of a bucket: each change whose kind is in `events` (empty: every kind) and whose key
    /// starts with `prefix` is delivered at least once, as a message, through the same retries and dead letters as
    /// a queue's (the consumed queue is [`object_queue`]).
    Object {
        bucket: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<String>,
        #[serde(default, skip_serializing_if = "String::is_empty")]
        prefix: String,
        #[serde(default)]
        delivery: Delivery,
    },
    /// The consumer of an ordered stream: records in put order per partition key, one batch in flight per shard,
    /// a checkpoint per shard after each success (see [`StreamDelivery`]).
    Stream {
        stream: String,
        #[serde(default)]
        delivery: StreamDelivery,
    },
    /// One event of the WebSocket connections at `route` (a GET upgraded to a WebSocket): the host holds the
    /// connections and runs this function for each `on` event; `auth` guards the connect as it guards an HTTP
    /// route.
    WebSocket {
        route: String,
        on: WebSocketEventKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        auth: Option<RouteAuth>,
    },
    /// A durable workflow: runs started by name (the admin API, `edgefn workflows start`), each resumed in a fresh
    /// instance that replays its journal (see [`crate::workflow`]).
    Workflow,
}

/// Which event of a WebSocket connection a function handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebSocketEventKind {
    /// The client asks to connect: the function's `Err` refuses it.
    Connect,
    /// A text or binary message from the client.
    Message,
    /// The connection ended (the client closed or dropped it, it stayed idle, or a function closed it).
    Disconnect,
}

impl WebSocketEventKind {
    /// The names a trigger may give, as written in `on = "..."`.
    pub const NAMES: &[&str] = &["connect", "message", "disconnect"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "connect" => Some(Self::Connect),
            "message" => Some(Self::Message),
            "disconnect" => Some(Self::Disconnect),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Message => "message",
            Self::Disconnect => "disconnect",
        }
    }
}

/// Where a stream consumer with no checkpoint yet starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StreamStart {
    /// At the records put after the consumer first started (the default).
    #[default]
    Latest,
    /// At the oldest record the stream still keeps.
    Oldest,
}

impl StreamStart {
    pub const NAMES: &[&str] = &["latest", "oldest"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "latest" => Some(Self::Latest),
            "oldest" => Some(Self::Oldest),
            _ => None,
        }
    }
}

/// How a stream delivers its records to a consumer: per shard, in order, one batch at a time. A failed batch is
/// retried (split in halves first when `bisect`), and a record that still fails after `max_retries`, or is older
/// than `max_record_age_ms`, goes to the `on_failure` queue so the shard moves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamDelivery {
    /// At most this many records per invocation.
    pub batch_size: u32,
    /// How long a partial batch waits for more records before it is delivered anyway.
    pub max_wait_ms: u64,
    /// Where a consumer without a checkpoint starts.
    pub start: StreamStart,
    /// Retries of a failing record (a batch of one) before it goes to the on-failure queue.
    pub max_retries: u32,
    /// A failing record older than this goes to the on-failure queue without more retries (0: no age limit).
    pub max_record_age_ms: u64,
    /// Split a failing batch in halves to find the record that fails, delivering the good ones.
    pub bisect: bool,
    /// The queue failed records go to; `<stream>-failed` when not set.
    pub on_failure: Option<String>,
    /// The first retry waits this long; each next one twice as long (capped at 15 minutes).
    pub backoff_ms: u64,
}

impl Default for StreamDelivery {
    fn default() -> Self {
        Self {
            batch_size: 100,
            max_wait_ms: 500,
            start: StreamStart::Latest,
            max_retries: 3,
            max_record_age_ms: 0,
            bisect: true,
            on_failure: None,
            backoff_ms: 1_000,
        }
    }
}

impl StreamDelivery {
    /// Checks the settings of a consumer of `stream`; the error names the setting.
    pub fn validate(&self, stream: &str) -> Result<(), String> {
        let as_queue = Delivery {
            batch_size: self.batch_size,
            max_wait_ms: self.max_wait_ms,
            max_retries: self.max_retries,
            dead_letter: None,
            concurrency: 1,
            backoff_ms: self.backoff_ms,
        };
        as_queue.validate(stream)?;
        if let Some(queue) = &self.on_failure {
            validate_queue_name("on_failure queue", queue)?;
            if queue.starts_with(RESERVED_QUEUE_PREFIX) {
                return Err(format!(
                    "on_failure `{queue}` is the host's own (queues starting with `{RESERVED_QUEUE_PREFIX}` carry object changes)"
                ));
            }
        }
        Ok(())
    }

    /// The queue `stream`'s failed records go to.
    pub fn on_failure_queue(&self, stream: &str) -> String {
        self.on_failure.clone().unwrap_or_else(|| format!("{stream}-failed"))
    }
}

/// The kinds of object change a trigger can ask for.
pub const OBJECT_EVENTS: &[&str] = &["created", "deleted"];

/// Queue names starting with this are the host's own (object triggers' queues): functions cannot send to them.
pub const RESERVED_QUEUE_PREFIX: &str = "objects.";

/// The queue that holds the change events of `bucket` for `function` of `component`: one per follower, so two
/// components whose functions share a name can follow one bucket.
pub fn object_queue(bucket: &str, component: &str, function: &str) -> String {
    format!("{RESERVED_QUEUE_PREFIX}{bucket}@{component}.{function}")
}

/// Checks the name of a store of `kind` (an object bucket, a key-value store): 1 to 64 letters, digits, `-`, `_` and
/// `.`, starting with a letter or a digit.
pub fn validate_store_name(kind: &str, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid {kind} name `{name}`: use 1 to 64 letters, digits, `-`, `_` and `.`"))
    }
}

/// Checks an object bucket name (see [`validate_store_name`]).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    validate_store_name("object bucket", name)
}

/// Checks an object trigger's settings; the error names the setting.
pub fn validate_object_trigger(bucket: &str, events: &[String], prefix: &str) -> Result<(), String> {
    validate_bucket_name(bucket)?;
    if let Some(unknown) = events.iter().find(|event| !OBJECT_EVENTS.contains(&event.as_str())) {
        return Err(format!("unknown object event `{unknown}`: use {}", OBJECT_EVENTS.join(" or ")));
    }
    if prefix.len() > 1024 || prefix.chars().any(char::is_control) {
        return Err("an object trigger's prefix must be at most 1024 bytes with no control characters".to_owned());
    }
    Ok(())
}

/// The header with which an edgefn host tells a component that it verified the request's token: the value is the
/// component's own host-auth token, which the component also finds in its environment as [`HOST_AUTH_ENV`]. A
/// protected route refuses a request without it, so under a host that does not enforce `auth` it fails closed.
pub const HOST_AUTH_HEADER: &str = "x-edgefn-auth";
/// The environment variable holding the component's host-auth token (a secret: masked in what it prints).
pub const HOST_AUTH_ENV: &str = "EDGEFN_HOST_AUTH";
/// The header carrying a verified token's claims to the component: base64url (no padding) of their JSON.
pub const CLAIMS_HEADER: &str = "x-edgefn-claims";

/// A protected route: the host's authorizer that verifies the bearer token, and the scopes of which the token needs
/// at least one (none: any valid token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuth {
    pub authorizer: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl FunctionRecord {
    /// The lowest record version that carries this record faithfully.
    pub fn required_version(&self) -> u8 {
        match &self.trigger {
            Trigger::Workflow => 6,
            Trigger::WebSocket { .. } => 5,
            Trigger::Stream { .. } => 4,
            Trigger::Object { .. } => 3,
            Trigger::Http { auth: Some(_), .. } => 2,
            _ => 1,
        }
    }
}

fn utc() -> String {
    "UTC".to_owned()
}

/// What a cron trigger does about missed ticks, overlapping runs and failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CronPolicy {
    /// Ticks missed while the host was down.
    pub catch_up: CatchUp,
    /// With [`CatchUp::All`], at most this many missed ticks run (the latest ones).
    pub catch_up_limit: u32,
    /// A tick that arrives while the previous run is still going.
    pub overlap: Overlap,
    /// How many times a failed run (an `Err`, a trap, a timeout) is retried before it is recorded as failed.
    pub retries: u32,
    /// The first retry waits this long; each next one twice as long.
    pub backoff_ms: u64,
}

impl Default for CronPolicy {
    fn default() -> Self {
        Self { catch_up: CatchUp::One, catch_up_limit: 10, overlap: Overlap::Skip, retries: 3, backoff_ms: 1_000 }
    }
}

/// Missed-tick policy of a cron trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Run once for the latest missed tick (the default).
    One,
    /// Run nothing for missed ticks.
    Skip,
    /// Run every missed tick, up to `catch_up_limit`.
    All,
}

impl CatchUp {
    pub const NAMES: &[&str] = &["one", "skip", "all"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "one" => Some(Self::One),
            "skip" => Some(Self::Skip),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// Overlap policy of a cron trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overlap {
    /// A tick that arrives while a run is going is recorded as skipped (the default).
    Skip,
    /// Runs may overlap.
    Allow,
}

impl Overlap {
    pub const NAMES: &[&str] = &["skip", "allow"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "skip" => Some(Self::Skip),
            "allow" => Some(Self::Allow),
            _ => None,
        }
    }
}

/// How a queue or topic delivers messages to its consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Delivery {
    /// At most this many messages per invocation.
    pub batch_size: u32,
    /// How long a partial batch waits for more messages before it is delivered anyway.
    pub max_wait_ms: u64,
    /// A message that failed this many retries (so `max_retries + 1` deliveries) goes to the dead-letter queue.
    pub max_retries: u32,
    /// The dead-letter queue; `<queue>-dlq` when not set.
    pub dead_letter: Option<String>,
    /// Invocations of this consumer that may run at once.
    pub concurrency: u32,
    /// The first retry of a message waits this long; each next one twice as long (capped at 15 minutes).
    pub backoff_ms: u64,
}

impl Default for Delivery {
    fn default() -> Self {
        Self { batch_size: 10, max_wait_ms: 100, max_retries: 3, dead_letter: None, concurrency: 2, backoff_ms: 1_000 }
    }
}

/// Limits the macro and the host both enforce on trigger settings.
pub mod bounds {
    /// The most retries of a failed cron run.
    pub const MAX_CRON_RETRIES: u32 = 100;
    /// The most retries of a message before it is dead-lettered.
    pub const MAX_MESSAGE_RETRIES: u32 = 1_000;
    /// The longest first backoff, cron or queue: one day.
    pub const MAX_BACKOFF_MS: u64 = 24 * 60 * 60 * 1000;
    /// The longest a partial batch may wait: one hour.
    pub const MAX_WAIT_MS: u64 = 60 * 60 * 1000;
    /// The most missed ticks one catch-up runs.
    pub const MAX_CATCH_UP_LIMIT: u32 = 1_000;
    /// The largest `batch_size`.
    pub const MAX_BATCH_SIZE: u32 = 1_000;
    /// The largest `concurrency` of one consumer.
    pub const MAX_CONCURRENCY: u32 = 256;
    /// The longest queue, topic or dead-letter queue name.
    pub const MAX_QUEUE_NAME: usize = 200;
}

/// The longest partition key of a stream record, in bytes.
pub const MAX_PARTITION_KEY: usize = 256;

/// Checks a stream record's partition key: 1 to [`MAX_PARTITION_KEY`] bytes, no control characters.
pub fn validate_partition_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_PARTITION_KEY || key.chars().any(char::is_control) {
        return Err(format!(
            "a partition key must be 1 to {MAX_PARTITION_KEY} bytes with no control characters (got {} bytes)",
            key.len()
        ));
    }
    Ok(())
}

/// Checks a queue or topic name: 1 to 200 characters from `A-Z a-z 0-9 . _ - @ /`, starting with a letter or a
/// digit, with no empty, `.` or `..` part between slashes (a name is never a path).
pub fn validate_queue_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if name.len() > bounds::MAX_QUEUE_NAME {
        return Err(format!("{kind} name `{name}` is longer than {} characters", bounds::MAX_QUEUE_NAME));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@/".contains(*c))) {
        return Err(format!("{kind} name `{name}` contains `{bad}`; use letters, digits and `. _ - @ /`"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!("{kind} name `{name}` must start with a letter or a digit"));
    }
    if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err(format!("{kind} name `{name}` has an empty, `.` or `..` part between slashes"));
    }
    Ok(())
}

impl CronPolicy {
    /// Checks the policy's numbers; the error names the setting and its range.
    pub fn validate(&self) -> Result<(), String> {
        if self.retries > bounds::MAX_CRON_RETRIES {
            return Err(format!("retries must be at most {} (it is {})", bounds::MAX_CRON_RETRIES, self.retries));
        }
        if self.backoff_ms > bounds::MAX_BACKOFF_MS {
            return Err(format!(
                "backoff_ms must be at most {} (one day; it is {})",
                bounds::MAX_BACKOFF_MS,
                self.backoff_ms
            ));
        }
        if self.catch_up_limit == 0 || self.catch_up_limit > bounds::MAX_CATCH_UP_LIMIT {
            return Err(format!(
                "catch_up_limit must be between 1 and {} (it is {})",
                bounds::MAX_CATCH_UP_LIMIT,
                self.catch_up_limit
            ));
        }
        Ok(())
    }
}

impl Delivery {
    /// Checks the settings of the consumer of `queue`; the error names the setting.
    pub fn validate(&self, queue: &str) -> Result<(), String> {
        if self.batch_size == 0 || self.batch_size > bounds::MAX_BATCH_SIZE {
            return Err(format!("batch_size must be between 1 and {}", bounds::MAX_BATCH_SIZE));
        }
        if self.concurrency == 0 || self.concurrency > bounds::MAX_CONCURRENCY {
            return Err(format!("concurrency must be between 1 and {}", bounds::MAX_CONCURRENCY));
        }
        if self.max_retries > bounds::MAX_MESSAGE_RETRIES {
            return Err(format!(
                "max_retries must be at most {} (it is {})",
                bounds::MAX_MESSAGE_RETRIES,
                self.max_retries
            ));
        }
        if self.backoff_ms > bounds::MAX_BACKOFF_MS {
            return Err(format!(
                "backoff_ms must be at most {} (one day; it is {})",
                bounds::MAX_BACKOFF_MS,
                self.backoff_ms
            ));
        }
        if self.max_wait_ms > bounds::MAX_WAIT_MS {
            return Err(format!(
                "max_wait_ms must be at most {} (one hour; it is {})",
                bounds::MAX_WAIT_MS,
                self.max_wait_ms
            ));
        }
        if let Some(dead_letter) = &self.dead_letter {
            validate_queue_name("dead_letter queue", dead_letter)?;
            if dead_letter.starts_with(RESERVED_QUEUE_PREFIX) {
                return Err(format!(
                    "dead_letter `{dead_letter}` is the host's own (queues starting with `{RESERVED_QUEUE_PREFIX}` carry object changes)"
                ));
            }
            if dead_letter == queue {
                return Err(format!("dead_letter is `{queue}` itself: a failing message would never leave it"));
            }
        }
        Ok(())
    }

    /// The dead-letter queue of `queue`.
    pub fn dead_letter_queue(&self, queue: &str) -> String {
        self.dead_letter.clone().unwrap_or_else(|| format!("{queue}-dlq"))
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trigger::Http { route, method, auth: None } => write!(f, "http {method} {route}"),
            Trigger::Http { route, method, auth: Some(auth) } => {
                write!(f, "http {method} {route} (auth: {}", auth.authorizer)?;
                if !auth.scopes.is_empty() {
                    write!(f, ", scopes: {}", auth.scopes.join(" | "))?;
                }
                f.write_str(")")
            }
            Trigger::Init => f.write_str("init (runs once at deploy; instances start from its snapshot)"),
            Trigger::Cron { expression, timezone, .. } => write!(f, "cron \"{expression}\" ({timezone})"),
            Trigger::Queue { queue, .. } => write!(f, "queue {queue}"),
            Trigger::Topic { topic, .. } => write!(f, "topic {topic}"),
            Trigger::Invoke => f.write_str("invoke"),
            Trigger::Object { bucket, events, prefix, .. } => {
                let events = if events.is_empty() { "created | deleted".to_owned() } else { events.join(" | ") };
                write!(f, "object {bucket}/{prefix}* ({events})")
            }
            Trigger::Stream { stream, .. } => write!(f, "stream {stream}"),
            Trigger::WebSocket { route, on, .. } => write!(f, "websocket {route} ({})", on.as_str()),
            Trigger::Workflow => f.write_str("workflow"),
        }
    }
}

/// Why a custom section could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The bytes at `offset` do not start with the `EFN` magic.
    BadMagic { offset: usize },
    /// The record at `offset` was written by a newer (or unknown) SDK.
    UnsupportedVersion { offset: usize, version: u8 },
    /// The section ends in the middle of the record at `offset`.
    Truncated { offset: usize },
    /// The record at `offset` holds a payload this version cannot read.
    BadPayload { offset: usize, reason: String },
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::BadMagic { offset } => {
                write!(f, "manifest record at byte {offset} does not start with `EFN`")
            }
            ManifestError::UnsupportedVersion { offset, version } => write!(
                f,
                "manifest record at byte {offset} has version {version}, this host reads versions 1 to {VERSION}; \
                 rebuild the function with a matching edgefn SDK or upgrade the host"
            ),
            ManifestError::Truncated { offset } => {
                write!(f, "manifest record at byte {offset} is truncated")
            }
            ManifestError::BadPayload { offset, reason } => {
                write!(f, "manifest record at byte {offset} is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ManifestError {}

/// Encodes one record, ready to be placed in the custom section.
pub fn encode_record(record: &FunctionRecord) -> Vec<u8> {
    let payload = serde_json::to_vec(record).expect("a FunctionRecord always serializes");
    let len = u32::try_from(payload.len()).expect("a manifest record is far below 4 GiB");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(record.required_version());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

/// Decodes every record of a (possibly concatenated) section, in section order.
pub fn decode_section(mut bytes: &[u8]) -> Result<Vec<FunctionRecord>, ManifestError> {
    let mut records = Vec::new();
    let mut offset = 0;
    while !bytes.is_empty() {
        if bytes.len() < HEADER_LEN {
            return Err(ManifestError::Truncated { offset });
        }
        if &bytes[..3] != MAGIC {
            return Err(ManifestError::BadMagic { offset });
        }
        let version = bytes[3];
        if !(1..=VERSION).contains(&version) {
            return Err(ManifestError::UnsupportedVersion { offset, version });
        }
        let len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let Some(payload) = bytes.get(HEADER_LEN..HEADER_LEN + len) else {
            return Err(ManifestError::Truncated { offset });
        };
        let record =
            serde_json::from_slice(payload).map_err(|e| ManifestError::BadPayload { offset, reason: e.to_string() })?;
        records.push(record);
        bytes = &bytes[HEADER_LEN + len..];
        offset += HEADER_LEN + len;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(name: &str, route: &str) -> FunctionRecord {
        FunctionRecord {
            name: name.into(),
            trigger: Trigger::Http { route: route.into(), method: "GET".into(), auth: None },
        }
    }

    #[test]
    fn concatenated_records_decode_in_order() {
        let a = http("a", "/a");
        let b = http("b", "/b/{id}");
        let mut section = encode_record(&b);
        section.extend(encode_record(&a));
        assert_eq!(decode_section(&section).unwrap(), vec![b, a]);
    }

    #[test]
    fn a_workflow_record_round_trips_and_needs_version_6() {
        let record = FunctionRecord { name: "checkout".into(), trigger: Trigger::Workflow };
        assert_eq!(record.required_version(), 6);
        assert_eq!(decode_section(&encode_record(&record)).unwrap(), vec![record]);
        assert_eq!(Trigger::Workflow.to_string(), "workflow");
    }

    #[test]
    fn a_websocket_record_round_trips_and_needs_version_5() {
        let record = FunctionRecord {
            name: "said".into(),
            trigger: Trigger::WebSocket {
                route: "/chat/{room}".into(),
                on: WebSocketEventKind::Message,
                auth: Some(RouteAuth { authorizer: "main".into(), scopes: vec!["chat".into()] }),
            },
        };
        assert_eq!(record.required_version(), 5);
        assert_eq!(decode_section(&encode_record(&record)).unwrap(), vec![record]);
        let minimal: Trigger = serde_json::from_str(r#"{"kind":"websocket","route":"/ws","on":"connect"}"#).unwrap();
        assert_eq!(minimal, Trigger::WebSocket { route: "/ws".into(), on: WebSocketEventKind::Connect, auth: None });
        assert_eq!(WebSocketEventKind::parse("disconnect").map(WebSocketEventKind::as_str), Some("disconnect"));
        assert_eq!(WebSocketEventKind::parse("open"), None);
    }

    #[test]
    fn new_trigger_kinds_round_trip_and_fill_defaults() {
        let cron = FunctionRecord {
            name: "tick".into(),
            trigger: Trigger::Cron {
                expression: "*/5 * * * * *".into(),
                timezone: "Europe/Berlin".into(),
                policy: CronPolicy { catch_up: CatchUp::All, ..CronPolicy::default() },
            },
        };
        let queue = FunctionRecord {
            name: "process".into(),
            trigger: Trigger::Queue { queue: "orders".into(), delivery: Delivery::default() },
        };
        let mut section = encode_record(&cron);
        section.extend(encode_record(&queue));
        assert_eq!(decode_section(&section).unwrap(), vec![cron, queue]);
        let minimal: Trigger = serde_json::from_str(r#"{"kind":"cron","expression":"@hourly"}"#).unwrap();
        assert_eq!(
            minimal,
            Trigger::Cron { expression: "@hourly".into(), timezone: "UTC".into(), policy: CronPolicy::default() }
        );
    }

    #[test]
    fn a_stream_trigger_is_version_4_fills_its_defaults_and_checks_its_settings() {
        let minimal: Trigger = serde_json::from_str(r#"{"kind":"stream","stream":"clicks"}"#).unwrap();
        assert_eq!(minimal, Trigger::Stream { stream: "clicks".into(), delivery: StreamDelivery::default() });
        let record = FunctionRecord { name: "count".into(), trigger: minimal };
        assert_eq!(record.required_version(), 4);
        assert_eq!(encode_record(&record)[3], 4);
        let delivery = StreamDelivery { on_failure: Some("objects.x".into()), ..StreamDelivery::default() };
        assert!(delivery.validate("clicks").unwrap_err().contains("host's own"));
        assert!(StreamDelivery { batch_size: 0, ..StreamDelivery::default() }.validate("clicks").is_err());
        assert_eq!(StreamDelivery::default().on_failure_queue("clicks"), "clicks-failed");
    }

    #[test]
    fn a_queue_cannot_dead_letter_into_itself() {
        let delivery = Delivery { dead_letter: Some("orders".into()), ..Delivery::default() };
        assert!(delivery.validate("orders").unwrap_err().contains("itself"));
        assert!(delivery.validate("payments").is_ok());
    }

    #[test]
    fn cron_and_delivery_numbers_are_bounded() {
        let huge = CronPolicy { retries: u32::MAX - 1, backoff_ms: u64::MAX - 1, ..CronPolicy::default() };
        assert!(huge.validate().unwrap_err().contains("retries must be at most 100"));
        let slow = CronPolicy { backoff_ms: u64::MAX, ..CronPolicy::default() };
        assert!(slow.validate().unwrap_err().contains("backoff_ms"));
        assert!(CronPolicy { catch_up_limit: 0, ..CronPolicy::default() }.validate().is_err());
        assert!(CronPolicy::default().validate().is_ok());
        let delivery = Delivery { max_retries: 5_000, ..Delivery::default() };
        assert!(delivery.validate("q").unwrap_err().contains("max_retries"));
        let delivery = Delivery { max_wait_ms: u64::MAX, ..Delivery::default() };
        assert!(delivery.validate("q").unwrap_err().contains("max_wait_ms"));
    }

    #[test]
    fn queue_names_are_checked() {
        assert!(validate_queue_name("queue", "orders-dlq").is_ok());
        assert!(validate_queue_name("topic", "order.created").is_ok());
        assert!(validate_queue_name("queue", "").unwrap_err().contains("empty"));
        assert!(validate_queue_name("queue", "a b").unwrap_err().contains("` `"));
        assert!(validate_queue_name("queue", "../../etc").unwrap_err().contains("must start with"));
        assert!(validate_queue_name("queue", "a/../etc").unwrap_err().contains("`..`"));
        assert!(validate_queue_name("queue", "a//b").is_err());
        assert!(validate_queue_name("queue", "tenant/orders").is_ok());
    }

    #[test]
    fn empty_section_has_no_records() {
        assert_eq!(decode_section(&[]).unwrap(), vec![]);
    }

    #[test]
    fn truncated_record_is_reported_with_its_offset() {
        let mut section = encode_record(&http("a", "/a"));
        let first_len = section.len();
        section.extend(encode_record(&http("b", "/b")));
        section.pop();
        assert_eq!(decode_section(&section), Err(ManifestError::Truncated { offset: first_len }));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut section = encode_record(&http("a", "/a"));
        section[3] = 9;
        assert_eq!(decode_section(&section), Err(ManifestError::UnsupportedVersion { offset: 0, version: 9 }));
    }

    #[test]
    fn foreign_bytes_are_refused() {
        assert_eq!(decode_section(b"hello world!"), Err(ManifestError::BadMagic { offset: 0 }));
    }

    #[test]
    fn bad_payload_is_refused() {
        let mut section = b"EFN\x01".to_vec();
        section.extend(2u32.to_le_bytes());
        section.extend(b"{}");
        assert!(matches!(decode_section(&section), Err(ManifestError::BadPayload { offset: 0, .. })));
    }

    fn record_with_payload(version: u8, payload: &str) -> Vec<u8> {
        let mut section = MAGIC.to_vec();
        section.push(version);
        section.extend(u32::try_from(payload.len()).unwrap().to_le_bytes());
        section.extend(payload.as_bytes());
        section
    }

    #[test]
    fn a_protected_route_is_a_version_2_record() {
        let protected = FunctionRecord {
            name: "create".into(),
            trigger: Trigger::Http {
                route: "/todos".into(),
                method: "POST".into(),
                auth: Some(RouteAuth { authorizer: "main".into(), scopes: vec!["todos:write".into()] }),
            },
        };
        let section = encode_record(&protected);
        // A version-1 host refuses version 2, so it can never serve this route open.
        assert_eq!(section[3], 2);
        assert_eq!(decode_section(&section).unwrap(), vec![protected]);
        // A public route stays version 1: a version-1 host still loads it.
        assert_eq!(encode_record(&http("a", "/a"))[3], 1);
    }

    #[test]
    fn an_object_trigger_is_a_version_3_record_and_its_settings_are_checked() {
        let follower = FunctionRecord {
            name: "thumbnail".into(),
            trigger: Trigger::Object {
                bucket: "photos".into(),
                events: vec!["created".into()],
                prefix: "uploads/".into(),
                delivery: Delivery::default(),
            },
        };
        let section = encode_record(&follower);
        // A version-2 host refuses it with "upgrade the host", never a misread trigger.
        assert_eq!(section[3], 3);
        assert_eq!(decode_section(&section).unwrap(), vec![follower]);
        assert_eq!(object_queue("photos", "gallery", "thumbnail"), "objects.photos@gallery.thumbnail");
        assert!(validate_queue_name("queue", &object_queue("photos", "gallery", "thumbnail")).is_ok());
        assert!(validate_object_trigger("photos", &["created".into(), "deleted".into()], "a/").is_ok());
        let unknown = validate_object_trigger("photos", &["updated".into()], "").unwrap_err();
        assert!(unknown.contains("unknown object event `updated`"), "{unknown}");
        assert!(validate_object_trigger("no/slash", &[], "").unwrap_err().contains("invalid object bucket name"));
        assert!(validate_object_trigger("photos", &[], "a\nb").is_err());
        // A queue's dead letters cannot be aimed at an object trigger's queue: that would forge changes.
        let aimed = Delivery { dead_letter: Some("objects.photos@gallery.thumbnail".into()), ..Delivery::default() };
        assert!(aimed.validate("mine").unwrap_err().contains("is the host's own"));
    }

    #[test]
    fn unknown_keys_are_refused_not_ignored() {
        let unknown_trigger_key =
            r#"{"name":"a","trigger":{"kind":"http","route":"/a","method":"GET","authx":"main"}}"#;
        let error = decode_section(&record_with_payload(2, unknown_trigger_key)).unwrap_err();
        assert!(error.to_string().contains("authx"), "{error}");
        let unknown_auth_key = r#"{"name":"a","trigger":{"kind":"http","route":"/a","method":"GET","auth":{"authorizer":"m","role":"x"}}}"#;
        assert!(decode_section(&record_with_payload(2, unknown_auth_key)).is_err());
        let unknown_record_key = r#"{"name":"a","trigger":{"kind":"invoke"},"priority":1}"#;
        assert!(decode_section(&record_with_payload(1, unknown_record_key)).is_err());
    }
}
