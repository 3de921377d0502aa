//! The admin API's errors, and the one place where the host's typed errors become HTTP statuses.

use crate::auth::AuthError;
use crate::capabilities::kv::KvError;
use crate::capabilities::messaging::MessagingError;
use crate::deployments::DeployError;
use crate::live::LookupError;
use crate::runtime::InvokeError;
use crate::storage::StorageError;
use crate::storage::kv::KvRefusal;
use crate::telemetry::TelemetryError;
use crate::triggers::cron::CronError;
use crate::triggers::invoke::InvokeFailure;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: a status and a message that names the thing and the reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), "admin API: {}", self.message);
        }
        (self.status, Json(json!({ "error": self.message, "status": self.status.as_u16() }))).into_response()
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        Self::new(storage_status(&error), error.to_string())
    }
}

/// The status of a storage failure: 503 when the cluster's NATS server did not answer (down, stalled or
/// unreachable: worth a retry, and a send retried may be stored twice, as any at-least-once queue), 413 for a
/// change too large for the cluster's messages, else 500.
fn storage_status(error: &StorageError) -> StatusCode {
    match error {
        StorageError::Cluster { .. } => StatusCode::SERVICE_UNAVAILABLE,
        StorageError::TooLargeForCluster { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        StorageError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<TelemetryError> for ApiError {
    fn from(error: TelemetryError) -> Self {
        match error {
            TelemetryError::Disabled => Self::new(StatusCode::CONFLICT, error.to_string()),
            TelemetryError::Storage(error) => error.into(),
        }
    }
}

impl From<crate::triggers::replay::ReplayError> for ApiError {
    fn from(error: crate::triggers::replay::ReplayError) -> Self {
        use crate::triggers::replay::ReplayError;
        let status = match error {
            ReplayError::InputNotKept { .. } | ReplayError::InputStreamed { .. } => StatusCode::CONFLICT,
            ReplayError::NoFunction { .. } => StatusCode::NOT_FOUND,
        };
        Self::new(status, error.to_string())
    }
}

impl From<LookupError> for ApiError {
    fn from(error: LookupError) -> Self {
        let status = match error {
            LookupError::NotFound { .. } => StatusCode::NOT_FOUND,
            LookupError::Ambiguous { .. } => StatusCode::CONFLICT,
        };
        Self::new(status, error.to_string())
    }
}

impl From<MessagingError> for ApiError {
    fn from(error: MessagingError) -> Self {
        let status = match error {
            MessagingError::InvalidName(_) | MessagingError::TooMany { .. } => StatusCode::BAD_REQUEST,
            MessagingError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            MessagingError::QueueFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            MessagingError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            MessagingError::Storage { ref source, .. } => storage_status(source),
        };
        Self::new(status, error.to_string())
    }
}

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        let status = match &error {
            KvError::NotGranted(_) => StatusCode::FORBIDDEN,
            KvError::Refused(KvRefusal::ValueTooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            KvError::Refused(KvRefusal::StoreFull { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            KvError::Refused(KvRefusal::NotAnInteger { .. } | KvRefusal::Overflow { .. }) => StatusCode::CONFLICT,
            KvError::Refused(KvRefusal::KeyTooLong { .. } | KvRefusal::EmptyKey) => StatusCode::BAD_REQUEST,
            KvError::Storage(source) => storage_status(source),
        };
        Self::new(status, error.to_string())
    }
}

impl From<CronError> for ApiError {
    fn from(error: CronError) -> Self {
        match error {
            CronError::Lookup(error) => error.into(),
            CronError::Storage(error) => error.into(),
        }
    }
}

impl From<InvokeFailure> for ApiError {
    fn from(error: InvokeFailure) -> Self {
        let status = match &error {
            InvokeFailure::Lookup(lookup) => return lookup.clone().into(),
            InvokeFailure::TooDeep { .. } => StatusCode::LOOP_DETECTED,
            InvokeFailure::Run { error: InvokeError::Busy(_) | InvokeError::MemoryBudget(_), .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InvokeFailure::Run { error: InvokeError::Throttled(_), .. } => StatusCode::TOO_MANY_REQUESTS,
            InvokeFailure::Run { error: InvokeError::Timeout(_), .. } => StatusCode::GATEWAY_TIMEOUT,
            // The function failed, not the admin API: the gateway's answer for a bad upstream.
            InvokeFailure::Run { .. } | InvokeFailure::Failed { .. } => StatusCode::BAD_GATEWAY,
        };
        Self::new(status, error.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        let status = match &error {
            AuthError::Unknown(_) => StatusCode::NOT_FOUND,
            // The file or the secret is wrong: the keys loaded before stay in use.
            AuthError::Config { .. } | AuthError::Keys { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Self::new(status, error.to_string())
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        let status = match &error {
            DeployError::InvalidName(_) | DeployError::CanaryPercent(_) | DeployError::InvalidMount { .. } => {
                StatusCode::BAD_REQUEST
            }
            // The upload was understood, and refused for what it is.
            DeployError::NotAComponent(_)
            | DeployError::NoManifest
            | DeployError::Config(_)
            | DeployError::Settings(_)
            | DeployError::Init(_)
            | DeployError::Compile(_)
            | DeployError::Link(_)
            | DeployError::Assets(_)
            | DeployError::UnknownAuthorizer { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            DeployError::Conflict(_) | DeployError::NothingToRollBackTo { .. } | DeployError::NoCanary(_) => {
                StatusCode::CONFLICT
            }
            DeployError::NotLive(_) | DeployError::UnknownComponent(_) | DeployError::NoSuchVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            DeployError::Storage(source) => storage_status(source),
            DeployError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            DeployError::Restore { .. } | DeployError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}
