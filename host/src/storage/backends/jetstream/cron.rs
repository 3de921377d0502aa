//! Cron, once per cluster: every node runs the schedules, and a tick runs on the node that claims it first.
//!
//! - A claim is a message on `edgefn.cron.claim.<job>.<tick>` in stream `EDGEFN_CRON_CLAIMS`, published with
//!   `Nats-Expected-Last-Subject-Sequence: 0`: the server stores the first and refuses every other, so exactly one
//!   node wins, whatever the clocks say. Claims are kept a week, longer than any catch-up reaches back.
//! - Finished runs (and skipped ticks) go to `edgefn.cron.runs.<job>` in stream `EDGEFN_CRON_RUNS`, the last
//!   1,000 per job, so `edgefn runs` on any node shows the whole cluster's history.

use super::{Cluster, cluster_error, subject_token};
use crate::storage::StorageError;
use crate::storage::cron::RunRecord;
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use futures_util::StreamExt as _;
use std::time::Duration;

const CLAIMS: &str = "EDGEFN_CRON_CLAIMS";
const RUNS: &str = "EDGEFN_CRON_RUNS";
/// Runs kept per job, as on SQLite.
const HISTORY_PER_JOB: i64 = 1_000;

/// See the module docs.
#[derive(Debug)]
pub struct JetStreamCron {
    cluster: Cluster,
    runs: stream::Stream,
}

impl JetStreamCron {
    pub async fn open(cluster: Cluster) -> Result<Self, StorageError> {
        let replicas = cluster.replicas;
        cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: CLAIMS.into(),
                subjects: vec!["edgefn.cron.claim.>".into()],
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
        Ok(Self { cluster, runs })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.cluster.node
    }

    /// Claims `tick` of `job` for this node: `true` on exactly one node of the cluster.
    pub async fn claim(&self, job: &str, tick: i64) -> Result<bool, StorageError> {
        let subject = format!("edgefn.cron.claim.{}.{tick}", subject_token(job));
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let published =
            self.cluster.jetstream.publish_with_headers(subject, headers, self.cluster.node.clone().into()).await;
        let acked = match published {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match acked {
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
        self.cluster
            .jetstream
            .publish(subject, body.into())
            .await
            .map_err(|error| cluster_error(format!("record a run of `{}`", run.function), error))?
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
