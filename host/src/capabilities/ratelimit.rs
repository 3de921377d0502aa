//! Token buckets, in this node's memory: what HTTP routes with a `rate_limit` are counted by, and what functions
//! reach through `edgefn:function/ratelimit` (named limiters, `[rate_limits.NAME]`, each key scoped to the calling
//! component so that tenants never share a bucket).
//!
//! Per node: on a cluster of N nodes behind a load balancer, a client can get up to N times a limit through.

use crate::config::BucketRule;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept at most; past it, the ones that are full again (idle long enough) are forgotten first.
const MAX_BUCKETS: usize = 100_000;

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// The bucket's size.
    pub limit: u32,
    /// When refused: how long until a token is there.
    pub retry_after: Duration,
    /// How long until the bucket is full again.
    pub reset: Duration,
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
    rule: BucketRule,
}

impl Bucket {
    /// A bucket that starts full.
    pub fn full(rule: BucketRule, now: Instant) -> Self {
        Self { tokens: rule.burst, at: now, rule }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rule.per_second).min(self.rule.burst);
        self.at = now;
    }

    fn is_full(&self, now: Instant) -> bool {
        let mut copy = *self;
        copy.refill(now);
        copy.tokens >= copy.rule.burst
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Takes a token from the bucket of `key` under `rule`, if it has one.
    pub fn check(&self, key: &str, rule: BucketRule, now: Instant) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            buckets.retain(|_, bucket| !bucket.is_full(now));
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: rule.burst, at: now, rule });
        bucket.rule = rule;
        bucket.refill(now);
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let seconds = |tokens: f64| Duration::from_secs_f64((tokens.max(0.0) / rule.per_second).min(86_400.0));
        Decision {
            allowed,
            remaining: bucket.tokens.floor() as u32,
            limit: rule.burst as u32,
            retry_after: if allowed { Duration::ZERO } else { seconds(1.0 - bucket.tokens) },
            reset: seconds(rule.burst - bucket.tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_its_rate() {
        let limiter = RateLimiter::default();
        let rule = BucketRule { per_second: 2.0, burst: 3.0 };
        let start = Instant::now();
        let decisions: Vec<bool> = (0..4).map(|_| limiter.check("k", rule, start).allowed).collect();
        assert_eq!(decisions, [true, true, true, false]);
        let refused = limiter.check("k", rule, start);
        assert_eq!((refused.remaining, refused.limit), (0, 3));
        assert_eq!(refused.retry_after, Duration::from_millis(500), "one token at 2 per second");
        // Half a second later one token is back; another key has its own bucket.
        assert!(limiter.check("k", rule, start + Duration::from_millis(500)).allowed);
        assert!(!limiter.check("k", rule, start + Duration::from_millis(500)).allowed);
        assert!(limiter.check("other", rule, start).allowed);
        let full = limiter.check("k", rule, start + Duration::from_secs(10));
        assert_eq!(full.remaining, 2, "refilled to the burst, not past it");
    }
}

/// The named limiters functions call (`[rate_limits.NAME]`), over one [`RateLimiter`].
#[derive(Debug, Default)]
pub struct Limiters {
    limiter: RateLimiter,
    named: HashMap<String, BucketRule>,
}

impl Limiters {
    pub fn new(named: HashMap<String, BucketRule>) -> Self {
        Self { limiter: RateLimiter::default(), named }
    }

    /// Checks `key` of `limiter` for `component`: its buckets are its own, whatever keys other components use.
    pub fn check(&self, component: &str, limiter: &str, key: &str) -> Result<Decision, String> {
        let rule = self.named.get(limiter).ok_or_else(|| {
            let mut known: Vec<&str> = self.named.keys().map(String::as_str).collect();
            known.sort_unstable();
            format!(
                "no rate limiter `{limiter}`: the host configures [rate_limits.NAME] (it has: {})",
                known.join(", ")
            )
        })?;
        Ok(self.limiter.check(&format!("{component}\n{limiter}\n{key}"), *rule, Instant::now()))
    }
}

use super::bindings::p2::edgefn::function::ratelimit as wit;

/// What the rate-limit import of one invocation acts on.
#[derive(Debug)]
pub struct RateLimitView<'a> {
    pub limiters: Option<&'a std::sync::Arc<Limiters>>,
    /// `component/function` of the caller: the component scopes its keys.
    pub caller: Option<&'a str>,
}

/// The [`wasmtime::component::HasData`] of the rate-limit import.
#[derive(Debug)]
pub struct RateLimitHost;

impl wasmtime::component::HasData for RateLimitHost {
    type Data<'a> = RateLimitView<'a>;
}

/// Links `edgefn:function/ratelimit`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> RateLimitView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, RateLimitHost>(linker, view)
}

impl wit::Host for RateLimitView<'_> {
    async fn check(&mut self, limiter: String, key: String) -> Result<wit::Decision, String> {
        let limiters = self.limiters.ok_or_else(|| super::unavailable("rate limiting"))?;
        let component = super::caller_component(self.caller);
        let decision = limiters.check(component, &limiter, &key)?;
        Ok(wit::Decision {
            allowed: decision.allowed,
            remaining: decision.remaining,
            limit: decision.limit,
            retry_after_ms: decision.retry_after.as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod limiter_tests {
    use super::*;

    #[test]
    fn named_limiters_scope_keys_to_the_calling_component_and_name_what_they_know() {
        let limiters =
            Limiters::new(HashMap::from([("per-user".to_owned(), BucketRule { per_second: 0.001, burst: 1.0 })]));
        assert!(limiters.check("shop", "per-user", "ada").expect("known").allowed);
        assert!(!limiters.check("shop", "per-user", "ada").expect("known").allowed);
        assert!(limiters.check("blog", "per-user", "ada").expect("known").allowed, "another component, another bucket");
        let unknown = limiters.check("shop", "nope", "ada").unwrap_err();
        assert!(unknown.contains("no rate limiter `nope`") && unknown.contains("(it has: per-user)"), "{unknown}");
    }
}
