//! The error type handlers return, and how it becomes a response.

use http::StatusCode;
use std::fmt;

/// `Result` with [`Error`] as the default error: handlers return `Result<Response>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error a handler returns. It carries the HTTP status it should produce: 500 unless said otherwise.
///
/// Any `std::error::Error` converts into it with `?` (as a 500); [`Error::new`] and the shorthands pick the status.
/// Client errors (4xx) show their message to the caller; server errors (5xx) show a generic message and the details
/// go to the function's log, so internals and secrets do not leak into responses.
pub struct Error {
    status: StatusCode,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error with an explicit status. A status that is not an error (below 400) is turned into 500.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self { status, message: message.into(), source: None }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 500 Internal Server Error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// Keeps `source` as the cause, reported in the log with the message.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The HTTP status this error produces.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The message, as written by whoever raised the error.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn status_code(&self) -> StatusCode {
        self.status
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(error: E) -> Self {
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, message: error.to_string(), source: Some(Box::new(error)) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(source) = &self.source {
            let source = source.to_string();
            if source != self.message {
                write!(f, ": {source}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("status", &self.status.as_u16())
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

/// `bytes` parsed as JSON into `T`; the error names the path of the field that failed (`at `a.b[2]`: ...`), or
/// is serde_json's own where the JSON itself is broken.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        // `.` is serde_path_to_error's name for the top level: no field to name there.
        if path == "." || inner.is_syntax() || inner.is_eof() {
            inner.to_string()
        } else {
            format!("at `{path}`: {inner}")
        }
    })?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_error_names_the_field_that_failed() {
        #[derive(Debug, serde::Deserialize)]
        struct Line {
            #[allow(dead_code)]
            qty: u64,
        }
        #[derive(Debug, serde::Deserialize)]
        struct Order {
            #[allow(dead_code)]
            lines: Vec<Line>,
        }
        let error = from_json::<Order>(br#"{"lines": [{"qty": 1}, {"qty": -1}]}"#).expect_err("negative qty");
        assert!(error.starts_with("at `lines[1].qty`: invalid value: integer `-1`, expected u64"), "{error}");
        let error = from_json::<Order>(br#"{"lines": [{"qty": 1}"#).expect_err("cut short");
        assert!(error.starts_with("EOF while parsing"), "{error}");
        let error = from_json::<Order>(br#"{"lines": []} trailing"#).expect_err("trailing");
        assert!(error.contains("trailing characters"), "{error}");
    }
}
