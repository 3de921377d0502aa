//! Cron triggers: `#[function(trigger = cron("0 */5 * * * *"))] fn tick(event: CronEvent) -> Result<()>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One run of a cron function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronEvent {
    pub(crate) expression: String,
    pub(crate) timezone: String,
    pub(crate) scheduled_at_ms: i64,
    pub(crate) fired_at_ms: i64,
    pub(crate) attempt: u32,
    pub(crate) reason: String,
    pub(crate) correlation_id: String,
}

impl CronEvent {
    /// An event as the host would pass it, for native tests: scheduled and fired now, first attempt.
    pub fn new(expression: &str) -> Self {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
        Self {
            expression: expression.to_owned(),
            timezone: "UTC".to_owned(),
            scheduled_at_ms: now,
            fired_at_ms: now,
            attempt: 1,
            reason: "manual".to_owned(),
            correlation_id: crate::dispatch::new_request_id(),
        }
    }

    /// The id of this run's work: new for each run, and carried by everything it sends, publishes and invokes.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// The tick this run is for.
    pub fn scheduled_at(&self) -> SystemTime {
        at(self.scheduled_at_ms)
    }

    /// When the host started this attempt (after the tick; later for a catch-up run or a retry).
    pub fn fired_at(&self) -> SystemTime {
        at(self.fired_at_ms)
    }

    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The trigger's cron expression.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The IANA time zone the expression is evaluated in.
    pub fn timezone(&self) -> &str {
        &self.timezone
    }

    /// Why this run happens: `schedule`, `catch-up` (a tick missed while the host was down) or `manual`.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

fn at(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}
