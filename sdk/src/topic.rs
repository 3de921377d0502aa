//! Topics: fan-out. [`publish`] gives every function with `trigger = topic("name")` its own durable copy, with
//! its own retries and dead letters; subscribers take `Batch<T>` like queue consumers.

use crate::Error;
use serde::Serialize;

/// Publishes `value` as JSON to every subscriber of `topic`; returns how many subscribers it reached (0 is not an
/// error: a topic nobody subscribes to drops the message, like SNS).
pub fn publish<T: Serialize + ?Sized>(topic: &str, value: &T) -> Result<u32, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error::internal(format!("failed to encode the message: {e}")))?;
    publish_bytes(topic, &body)
}

/// Publishes raw bytes.
pub fn publish_bytes(topic: &str, body: &[u8]) -> Result<u32, Error> {
    crate::host::publish(topic, body).map_err(Error::internal)
}
