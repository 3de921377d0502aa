//! Triggers: what makes the host invoke a function. One module per kind, each behind the small [`Trigger`] trait,
//! none reaching into another:
//!
//! - [`http`]: the HTTP server; every request routes through the live set it started with;
//! - [`cron`]: one schedule per cron function, with catch-up, overlap and retry policies, history in SQLite;
//! - [`queue`]: one consumer loop per queue (and per topic subscriber), leases, settlements, dead letters;
//! - [`stream`]: one loop per stream consumer and shard, in order, with checkpoints and an on-failure queue;
//! - [`invoke`]: calls by name, from functions (the [`crate::capabilities::Invoker`] they reach) and the admin API.
//!
//! Deployments drive them: when what is live for a component changes, each trigger is asked to [`Trigger::drain`]
//! the component (stop taking new work for it, finish what it holds) and then to [`Trigger::start`] it again from
//! the new live set. Request/response triggers (HTTP, invoke) have nothing to drain: each call holds the version
//! it started on, and the next one reads the new set.

pub mod cron;
pub mod http;
pub mod invoke;
pub mod queue;
pub mod replay;
pub mod stream;
pub mod workflow;

use crate::capabilities::invoke::{Caller, Origin};
use crate::capabilities::{BoxFuture, Capabilities};
use crate::live::{ComponentVersion, LiveSet};
use crate::runtime::{Invocation, InvokeError, Loader, PreparedComponent, Runtime, Slot, SlotKind, Start};
use crate::storage::telemetry::Level;
use crate::telemetry::{InvocationReport, Trace, otel};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;

/// What a trigger does when a component's live versions change.
pub trait Trigger: Send + Sync {
    /// The trigger's kind, for logs.
    fn kind(&self) -> &'static str;

    /// Serves `component` as `live` has it now: its live version and canary, or nothing if it is not in `live`
    /// (undeployed). Called after [`Trigger::drain`] of the same component.
    fn start(&self, component: &str, live: &Arc<LiveSet>);

    /// Stops taking new work for `component` and resolves once the work it holds is done, or at `deadline`
    /// (that work then goes on to its own end, and settles as it would have).
    fn drain(&self, component: &str, deadline: Instant) -> BoxFuture<'_, ()>;
}

/// What every trigger needs to run a function: the runtime, the loaded components, the capabilities guests reach.
#[derive(Debug, Clone)]
pub struct Runner {
    pub loader: Arc<Loader>,
    pub capabilities: Capabilities,
}

/// What an invocation is part of, as the trigger that starts it knows it.
#[derive(Debug, Clone)]
pub struct Work {
    /// See [`crate::telemetry::correlation`].
    pub correlation_id: Arc<str>,
    /// `http`, `cron`, `queue`, `topic` or `invoke`.
    pub trigger: &'static str,
    /// What the trigger runs it for, for the log: `GET /orders/42`, `3 messages from orders`.
    pub detail: String,
    /// The span it continues (see `telemetry::otel`).
    pub parent: otel::Parent,
}

/// A function of a version, ready to be called: its component loaded, a slot (with the function's concurrency
/// permit) held.
#[derive(Debug)]
pub struct Prepared {
    pub component: PreparedComponent,
    pub start: Start,
    pub slot: Slot,
    pub invocation: Invocation,
}

impl Runner {
    pub fn runtime(&self) -> &Runtime {
        self.loader.runtime()
    }

    /// Reserves what one invocation of `function` of `version` needs, in the order that keeps a waiting call from
    /// holding what others could use: its concurrency permit (bounded wait for requests, then
    /// [`InvokeError::Throttled`]), an instance slot, then its component (a cold start loads it).
    ///
    /// `work` says what the invocation is part of (its correlation id, trigger and detail); the function and
    /// version are filled in here. An invocation refused here is reported (as throttled, or as an error) under it.
    pub async fn prepare(
        &self,
        version: &Arc<ComponentVersion>,
        function: &str,
        kind: SlotKind,
        chain: Vec<String>,
        work: Work,
    ) -> Result<Prepared, InvokeError> {
        self.prepare_with(version, function, kind, chain, work, None).await
    }

    /// The component of `version`, loading it first for `function` if it is not (a cold start, which is logged).
    pub async fn load(
        &self,
        version: &ComponentVersion,
        function: &str,
    ) -> Result<(PreparedComponent, Start), InvokeError> {
        let loading = Instant::now();
        let label = format!("{} v{}", version.component, version.version);
        let (component, start) = self
            .loader
            .get(&version.artifact, &label)
            .await
            .map_err(|error| InvokeError::Host(format!("failed to load `{label}`: {error:#}")))?;
        if matches!(start, Start::Cold) {
            let took = loading.elapsed().as_secs_f64() * 1000.0;
            let message =
                format!("loaded v{} for {} (a cold start) in {took:.2} ms", version.version, version.label(function));
            self.runtime().telemetry().component_event(Level::Info, &version.component, Some(version.version), message);
        }
        Ok((component, start))
    }

    /// [`Runner::prepare`], for a component already [loaded](Runner::load).
    pub async fn prepare_with(
        &self,
        version: &Arc<ComponentVersion>,
        function: &str,
        kind: SlotKind,
        chain: Vec<String>,
        work: Work,
        loaded: Option<(PreparedComponent, Start)>,
    ) -> Result<Prepared, InvokeError> {
        let started = Instant::now();
        let trace = Arc::new(Trace {
            correlation_id: work.correlation_id,
            trigger: work.trigger,
            function: version.label(function),
            version: version.version,
            detail: work.detail,
            span_id: otel::invocation_span_id(),
            parent: work.parent,
            links: Vec::new(),
        });
        let prepared = self.reserve(version, function, kind, chain, trace.clone(), loaded).await;
        if let Err(error) = &prepared {
            let telemetry = self.runtime().telemetry();
            if telemetry.is_enabled() {
                let refused = InvocationReport::refused(trace, error.outcome(), error.to_string(), started.elapsed());
                telemetry.invocation(refused);
            }
        }
        prepared
    }

    async fn reserve(
        &self,
        version: &Arc<ComponentVersion>,
        function: &str,
        kind: SlotKind,
        chain: Vec<String>,
        trace: Arc<Trace>,
        loaded: Option<(PreparedComponent, Start)>,
    ) -> Result<Prepared, InvokeError> {
        let permit = self.permit(version, function, kind).await?;
        let label = version.label(function);
        let slot = self.runtime().acquire_slot(kind, &label).await?.holding(permit);
        let (component, start) = match loaded {
            Some(loaded) => loaded,
            None => self.load(version, function).await?,
        };
        let invocation = self.invocation(version, function, chain, trace, matches!(start, Start::Cold));
        Ok(Prepared { component, start, slot, invocation })
    }

    /// One of `function`'s `max_concurrency` permits, if it has a limit: a request waits `queue_timeout_ms` for it,
    /// then is [`InvokeError::Throttled`].
    pub async fn permit(
        &self,
        version: &ComponentVersion,
        function: &str,
        kind: SlotKind,
    ) -> Result<Option<OwnedSemaphorePermit>, InvokeError> {
        let Some(permits) = version.concurrency(function) else { return Ok(None) };
        let acquire = permits.clone().acquire_owned();
        let acquired = match kind {
            SlotKind::Background => acquire.await,
            SlotKind::Request => {
                tokio::time::timeout(self.runtime().limits().queue_timeout(), acquire).await.map_err(|_elapsed| {
                    InvokeError::Throttled(version.limits(function).max_concurrency.unwrap_or_default())
                })?
            }
        };
        Ok(Some(acquired.map_err(|_closed| InvokeError::Host("the function is shutting down".into()))?))
    }

    /// What an invocation of `function` of `version` runs with.
    pub fn invocation(
        &self,
        version: &Arc<ComponentVersion>,
        function: &str,
        chain: Vec<String>,
        trace: Arc<Trace>,
        cold_start: bool,
    ) -> Invocation {
        let origin: Origin = version.clone();
        Invocation {
            env: version.env.clone(),
            capabilities: self.capabilities.clone(),
            limits: version.limits(function).invocation,
            caller: Caller { chain, origin: Some(origin), ..Caller::default() },
            cold_start,
            trace,
        }
    }
}
