//! Cron, once per cluster: every node runs the schedules, and a tick runs on the node that claims it first.
//!
//! - A claim is a message on `edgefn.cron.claim.<job>.<tick>` in stream `EDGEFN_CRON_CLAIMS`, published with
//!   `Nats-Expected-Last-Subject-Sequence: 0`: the server stores the first and refuses every other, so exactly one
//!   node wins, whatever the clocks say. Claims are kept a week, longer than any catch-up reaches back.
//! - Finished runs (and skipped ticks) go to `edgefn.cron.runs.<job>` in stream `EDGEFN_CRON_RUNS`, the last
//!   1,000 per job, so `edgefn runs` on any node shows the whole cluster's history.
//! - While a node runs a tick (retries included) it renews `edgefn.cron.running.<job>` ([`RunningMarker`], the
//!   last one kept) every [`RENEW_RUNNING`], and marks it done at the end. Another node that claims the next tick
//!   sees the run going (`overlap = "skip"` then skips, cluster-wide), or sees it stale, its node dead in the middle
//!   of it: then it claims a retake of that tick and runs it again, as a catch-up.

use super::{Cluster, cluster_error, publish_stored, subject_token};
use crate::storage::StorageError;
use crate::storage::cron::RunRecord;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use futures_util::StreamExt as _;
use std::time::Duration;

const CLAIMS: &str = "EDGEFN_CRON_CLAIMS";
/// How often a node running a tick says so.
pub const RENEW_RUNNING: Duration = Duration::from_secs(2);
/// A run not renewed for this long lost its node.
const RUNNING_STALE_MS: i64 = 3 * 2_000;
const RUNS: &str = "EDGEFN_CRON_RUNS";
/// Runs kept per job, as on SQLite.
const HISTORY_PER_JOB: i64 = 1_000;

/// Which tick of a job a node is running, as it last said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunningMarker {
    pub node: String,
    pub tick: i64,
    /// When the node last said so (ms since the epoch).
    pub renewed_at: i64,
    /// The run ended (succeeded, or failed its last retry).
    pub done: bool,
}

impl RunningMarker {
    /// The node stopped renewing it in the middle of the run.
    pub fn is_stale(&self, now: i64) -> bool {
        !self.done && now.saturating_sub(self.renewed_at) > RUNNING_STALE_MS
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct JetStreamCron {
    cluster: Cluster,
    claims: stream::Stream,
    runs: stream::Stream,
}

impl JetStreamCron {
    pub async fn open(cluster: Cluster) -> Result<Self, StorageError> {
        let replicas = cluster.replicas;
        let claims = cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: CLAIMS.into(),
                subjects: vec!["edgefn.cron.claim.>".into(), "edgefn.cron.running.>".into()],
                storage: StorageType::File,
                num_replicas: replicas,
                max_age: Duration::from_secs(7 * 24 * 3600),
                max_messages_per_subject: 1,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {CLAIMS}"), error))?;
        let runs = cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: RUNS.into(),
                subjects: vec!["edgefn.cron.runs.>".into()],
                storage: StorageType::File,
                num_replicas: replicas,
                max_messages_per_subject: HISTORY_PER_JOB,
                discard: DiscardPolicy::Old,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {RUNS}"), error))?;
        Ok(Self { cluster, claims, runs })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.cluster.node
    }

    /// Claims `tick` of `job` for this node: `true` on exactly one node of the cluster.
    pub async fn claim(&self, job: &str, tick: i64) -> Result<bool, StorageError> {
        self.claim_subject(job, tick, format!("edgefn.cron.claim.{}.{tick}", subject_token(job))).await
    }

    /// Claims the re-run of `tick` of `job`, whose node died in the middle of it: `true` on exactly one node.
    pub async fn claim_retake(&self, job: &str, tick: i64) -> Result<bool, StorageError> {
        self.claim_subject(job, tick, format!("edgefn.cron.claim.{}.{tick}.retake", subject_token(job))).await
    }

    /// Says that this node runs (`done` false) or has run `tick` of `job`.
    pub async fn mark_running(&self, job: &str, tick: i64, done: bool) -> Result<(), StorageError> {
        let marker =
            RunningMarker { node: self.cluster.node.clone(), tick, renewed_at: crate::storage::now_ms(), done };
        let body = serde_json::to_vec(&marker).map_err(|error| cluster_error("encode a running marker", error))?;
        let subject = format!("edgefn.cron.running.{}", subject_token(job));
        publish_stored(&self.cluster.jetstream, subject, HeaderMap::new(), body.into())
            .await
            .map_err(|error| cluster_error(format!("say that tick {tick} of `{job}` runs"), error))?;
        Ok(())
    }

    /// The last thing a node said about running `job`, if any did.
    pub async fn running(&self, job: &str) -> Result<Option<RunningMarker>, StorageError> {
        let subject = format!("edgefn.cron.running.{}", subject_token(job));
        match self.claims.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => Ok(serde_json::from_slice(&message.payload).ok()),
            Err(error) if matches!(error.kind(), stream::LastRawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(error) => Err(cluster_error(format!("read whether `{job}` runs"), error)),
        }
    }

    async fn claim_subject(&self, job: &str, tick: i64, subject: String) -> Result<bool, StorageError> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        match publish_stored(&self.cluster.jetstream, subject, headers, self.cluster.node.clone().into()).await {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == PublishErrorKind::WrongLastSequence => Ok(false),
            Err(error) => Err(cluster_error(format!("claim tick {tick} of cron job `{job}`"), error)),
        }
    }

    /// Adds a finished run (or a skipped tick) to the cluster's history, as this node's.
    pub async fn record(&self, run: &RunRecord) -> Result<(), StorageError> {
        let run = RunRecord { node: Some(self.cluster.node.clone()), ..run.clone() };
        let subject = format!("edgefn.cron.runs.{}", subject_token(&run.function));
        let body = serde_json::to_vec(&run).map_err(|error| cluster_error("encode a cron run", error))?;
        publish_stored(&self.cluster.jetstream, subject, HeaderMap::new(), body.into())
            .await
            .map_err(|error| cluster_error(format!("record a run of `{}`", run.function), error))?;
        Ok(())
    }

    /// The latest `limit` finished runs of `job` on every node, newest first.
    pub async fn runs(&self, job: &str, limit: u32) -> Result<Vec<RunRecord>, StorageError> {
        let action = || format!("read the runs of `{job}`");
        // A consumer of our own for this one read: no acks, gone by itself a minute after.
        let consumer = self
            .runs
            .create_consumer(pull::Config {
                filter_subject: format!("edgefn.cron.runs.{}", subject_token(job)),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(action(), error))?;
        let mut batch = consumer
            .fetch()
            .max_messages(HISTORY_PER_JOB as usize)
            .messages()
            .await
            .map_err(|error| cluster_error(action(), error))?;
        let mut runs = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|error| cluster_error(action(), error))?;
            match serde_json::from_slice::<RunRecord>(&message.payload) {
                Ok(run) => runs.push(run),
                Err(error) => tracing::warn!(%job, %error, "an unreadable cron run in the cluster's history; skipped"),
            }
        }
        let _ = self.runs.delete_consumer(&consumer.cached_info().name).await;
        runs.reverse();
        runs.truncate(limit as usize);
        Ok(runs)
    }
}
