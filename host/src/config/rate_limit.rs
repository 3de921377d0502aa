//! `rate_limit = { ... }` of a component (`[components.NAME.rate_limit]`) or one function: how many requests a
//! client may make, as a token bucket, before the host answers `429` itself (`triggers::http::limits`); and the
//! named limiters functions call (`[rate_limits.NAME]`, `edgefn::ratelimit::check`).
//!
//! ```toml
//! [components.api.rate_limit]
//! requests = 10        # tokens added per window
//! window_s = 1         # default 1
//! burst = 20           # the bucket's size: requests allowed at once after a quiet spell (default: requests)
//! key = "ip"           # "ip", "subject" (the verified JWT's sub), "header:x-api-key" or "claim:tenant"
//! ```

use serde::Deserialize;

/// See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub requests: u32,
    #[serde(default = "one_second")]
    pub window_s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    #[serde(default = "by_ip")]
    pub key: String,
}

fn one_second() -> u64 {
    1
}

fn by_ip() -> String {
    "ip".to_owned()
}

/// What a rate limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// The client's IP address.
    Ip,
    /// The `sub` claim of the token the route's authorizer verified.
    Subject,
    /// A request header's value (an API key); requests without it share one bucket.
    Header(String),
    /// A claim of the verified token.
    Claim(String),
}

/// A token bucket's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketRule {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size.
    pub burst: f64,
}

impl RateLimitSettings {
    /// Checks the settings; the error names the setting and why.
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if self.requests == 0 {
            return Err(format!("{what}: rate_limit.requests must be at least 1"));
        }
        if !(1..=86_400).contains(&self.window_s) {
            return Err(format!("{what}: rate_limit.window_s must be 1 to 86400, not {}", self.window_s));
        }
        if self.burst == Some(0) {
            return Err(format!("{what}: rate_limit.burst must be at least 1"));
        }
        self.rate_key().map(|_| ()).map_err(|error| format!("{what}: {error}"))
    }

    /// What it counts by.
    pub fn rate_key(&self) -> Result<RateKey, String> {
        let named = |prefix: &str| self.key.strip_prefix(prefix).filter(|name| !name.is_empty());
        match self.key.as_str() {
            "ip" => Ok(RateKey::Ip),
            "subject" => Ok(RateKey::Subject),
            _ if named("header:").is_some_and(|name| http::HeaderName::from_bytes(name.as_bytes()).is_ok()) => {
                Ok(RateKey::Header(named("header:").unwrap_or_default().to_ascii_lowercase()))
            }
            _ if named("claim:").is_some() => Ok(RateKey::Claim(named("claim:").unwrap_or_default().to_owned())),
            other => Err(format!(
                "rate_limit.key `{other}` is not one of \"ip\", \"subject\", \"header:NAME\", \"claim:NAME\""
            )),
        }
    }

    /// The bucket it describes.
    pub fn rule(&self) -> BucketRule {
        BucketRule {
            per_second: f64::from(self.requests) / self.window_s as f64,
            burst: f64::from(self.burst.unwrap_or(self.requests)),
        }
    }
}
