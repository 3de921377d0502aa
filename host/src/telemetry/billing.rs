//! What usage costs: a price table (AWS Lambda's published x86 prices by default) applied to the usage the
//! host metered. `edgefn usage` and the dashboard both bill with it.

use crate::storage::telemetry::{UsageCounts, UsageRow};
use std::collections::BTreeMap;

/// What usage costs. The defaults are AWS Lambda's published x86 prices: $0.20 per million requests and
/// $0.0000166667 per GB-second.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prices {
    pub per_million_requests: f64,
    pub per_gb_second: f64,
    pub per_million_cpu_ms: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self { per_million_requests: 0.20, per_gb_second: 0.000_016_666_7, per_million_cpu_ms: 0.0 }
    }
}

/// One function's usage over the period, and its estimated cost.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bill {
    pub function: String,
    /// Invocations that ran (throttled and unauthorized ones are not billed).
    pub requests: u64,
    /// HTTP answers 4xx (billed: the function ran).
    pub client_errors: u64,
    /// Errors, traps and timeouts.
    pub errors: u64,
    pub throttled: u64,
    /// Refused by the route's authorizer before the function ran.
    pub unauthorized: u64,
    pub cold_starts: u64,
    pub gb_seconds: f64,
    pub guest_cpu_ms: f64,
    pub cost_usd: f64,
}

impl Bill {
    pub fn new(function: String, counts: &UsageCounts, prices: &Prices) -> Self {
        let requests = counts.invocations.saturating_sub(counts.throttled + counts.unauthorized);
        let gb_seconds = counts.mb_ms as f64 / 1024.0 / 1000.0;
        let guest_cpu_ms = counts.guest_cpu_us as f64 / 1000.0;
        let cost_usd = requests as f64 / 1e6 * prices.per_million_requests
            + gb_seconds * prices.per_gb_second
            + guest_cpu_ms / 1e6 * prices.per_million_cpu_ms;
        Self {
            function,
            requests,
            client_errors: counts.client_errors,
            errors: counts.errors + counts.traps + counts.timeouts,
            throttled: counts.throttled,
            unauthorized: counts.unauthorized,
            cold_starts: counts.cold_starts,
            gb_seconds,
            guest_cpu_ms,
            cost_usd,
        }
    }
}

/// The bill of each function in `rows`, by name, then the total.
pub fn bills(rows: &[UsageRow], prices: &Prices) -> (Vec<Bill>, Bill) {
    let mut per_function: BTreeMap<&str, UsageCounts> = BTreeMap::new();
    let mut total = UsageCounts::default();
    for row in rows {
        per_function.entry(&row.key.function).or_default().add(&row.counts);
        total.add(&row.counts);
    }
    let bills = per_function.into_iter().map(|(function, counts)| Bill::new(function.to_owned(), &counts, prices));
    (bills.collect(), Bill::new("total".into(), &total, prices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::telemetry::UsageKey;

    #[test]
    fn a_bill_is_requests_plus_gb_seconds_at_lambda_prices_by_default() {
        let row = |function: &str, invocations, throttled, mb_ms| UsageRow {
            key: UsageKey { minute: 0, function: function.into(), version: 1, trigger: "http".into() },
            counts: UsageCounts { invocations, throttled, mb_ms, guest_cpu_us: 2_000_000, ..UsageCounts::default() },
        };
        // One million requests of 100 ms at 1024 MB: 100,000 GB-s.
        let rows = [row("a/f", 600_000, 0, 600_000 * 100 * 1024), row("a/f", 400_000, 0, 400_000 * 100 * 1024)];
        let (per_function, total) = bills(&rows, &Prices::default());
        assert_eq!(per_function.len(), 1);
        assert_eq!(total.requests, 1_000_000);
        assert!((total.gb_seconds - 100_000.0).abs() < 1e-6, "{}", total.gb_seconds);
        assert!((total.cost_usd - (0.20 + 100_000.0 * 0.000_016_666_7)).abs() < 1e-9, "{}", total.cost_usd);
        // Throttles are counted, not billed; a CPU price bills CPU time.
        let prices = Prices { per_million_requests: 0.0, per_gb_second: 0.0, per_million_cpu_ms: 0.02 };
        let (_, total) = bills(&[row("b/g", 10, 4, 0)], &prices);
        assert_eq!((total.requests, total.throttled), (6, 4));
        assert!((total.cost_usd - 2_000.0 / 1e6 * 0.02).abs() < 1e-12);
    }
}
