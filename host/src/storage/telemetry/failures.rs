//! Failed invocations kept for replay (`edgefn replay`): their input, size-capped, credentials left out.

use crate::storage::StorageError;
use rusqlite::{Connection, params};

/// A failed invocation, kept to be replayed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    /// Assigned when stored.
    pub id: i64,
    pub at: i64,
    pub correlation_id: String,
    pub component: String,
    /// The function's name in its component.
    pub function: String,
    pub version: u32,
    pub trigger: String,
    pub error: String,
    /// What it was called with; `None` when that was over the cap (see `input_bytes`), or when it was a request
    /// body the function read as a stream (then `input_bytes` is 0: the host never held it whole).
    pub input: Option<FailedInput>,
    /// The size of the input's bodies, kept or not; 0 for a streamed request body.
    pub input_bytes: u64,
}

impl Failure {
    /// Whether its input was a request body streamed to the function, and so never kept.
    pub fn input_was_streamed(&self) -> bool {
        self.input.is_none() && self.input_bytes == 0
    }
}

/// What a failed invocation was called with. Bodies are base64 in the JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailedInput {
    /// The request as the function got it, credentials left out.
    Http {
        method: String,
        /// Path and query.
        uri: String,
        headers: Vec<(String, String)>,
        #[serde(with = "base64_bytes")]
        body: Vec<u8>,
    },
    Messages {
        source: String,
        messages: Vec<FailedMessage>,
    },
    Cron {
        expression: String,
        timezone: String,
        scheduled_at: i64,
        attempt: u32,
        reason: String,
    },
    Invoke {
        #[serde(with = "base64_bytes")]
        payload: Vec<u8>,
    },
}

/// One message of a failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FailedMessage {
    pub id: String,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    pub correlation_id: String,
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub(super) fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text: String = serde::Deserialize::deserialize(deserializer)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Stores `failure` (its `id` is ignored); returns its id.
pub fn insert_failure(conn: &mut Connection, failure: &Failure) -> Result<i64, StorageError> {
    let input = match &failure.input {
        Some(input) => Some(serde_json::to_string(input).map_err(|e| StorageError::Corrupt(e.to_string()))?),
        None => None,
    };
    conn.prepare_cached(
        "INSERT INTO failures (at, correlation_id, component, function, version, trigger, error, input, input_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        failure.at,
        failure.correlation_id,
        failure.component,
        failure.function,
        failure.version,
        failure.trigger,
        failure.error,
        input,
        failure.input_bytes as i64,
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The failure `id`, or the newest failure of correlation id `id`.
pub fn find_failure(conn: &mut Connection, id: &str) -> Result<Option<Failure>, StorageError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, at, correlation_id, component, function, version, trigger, error, input, input_bytes
         FROM failures WHERE id = ?1 OR correlation_id = ?2 ORDER BY (id = ?1) DESC, id DESC LIMIT 1",
    )?;
    let numeric = id.parse::<i64>().ok();
    let mut rows = statement.query(params![numeric, id])?;
    let Some(row) = rows.next()? else { return Ok(None) };
    let input: Option<String> = row.get(8)?;
    let input = match input {
        Some(json) => Some(serde_json::from_str(&json).map_err(|e| StorageError::Corrupt(e.to_string()))?),
        None => None,
    };
    Ok(Some(Failure {
        id: row.get(0)?,
        at: row.get(1)?,
        correlation_id: row.get(2)?,
        component: row.get(3)?,
        function: row.get(4)?,
        version: row.get(5)?,
        trigger: row.get(6)?,
        error: row.get(7)?,
        input,
        input_bytes: row.get::<_, i64>(9)?.max(0) as u64,
    }))
}
