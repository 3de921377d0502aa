//! Configuration and secrets: what a function gets as its WASI environment, and which of those values must never
//! appear in what it prints.

use super::outbound::OutboundPolicy;
use std::sync::Arc;

/// What a function needs from the host at each invocation: its environment (config and secrets) and where it may
/// call out to.
#[derive(Debug, Clone, Default)]
pub struct FunctionEnv {
    /// `(name, value)` pairs, secrets included, handed to the guest as its environment.
    pub env: Vec<(String, String)>,
    /// `(name, value)` of the secret entries of `env`: masked in the function's stdout and stderr and in its
    /// error text.
    pub secrets: Arc<Vec<(String, String)>>,
    pub outbound: OutboundPolicy,
    /// The key-value stores the function may open.
    pub kv_stores: Arc<[String]>,
    /// The object buckets the function may use.
    pub object_buckets: Arc<[String]>,
    /// Whether a failed invocation keeps its input for replay.
    pub record_failures: bool,
}
