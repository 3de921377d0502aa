//! Where cron keeps what it ran: the data dir's SQLite file always (the last handled tick of each job, this
//! node's run history), and on a cluster also JetStream (`jetstream::cron`): the claim that makes one node run a
//! tick, and the history every node reads.

use super::jetstream::JetStreamCron;
use crate::storage::StorageError;
use crate::storage::cron::{CronDb, RunRecord};
use std::sync::Arc;

/// See the module docs.
#[derive(Debug, Clone)]
pub struct CronBackend {
    db: CronDb,
    cluster: Option<Arc<JetStreamCron>>,
}

impl CronBackend {
    /// One node: every tick is this node's.
    pub fn local(db: CronDb) -> Self {
        Self { db, cluster: None }
    }

    /// A cluster member: ticks are claimed, history is shared.
    pub fn clustered(db: CronDb, cluster: Arc<JetStreamCron>) -> Self {
        Self { db, cluster: Some(cluster) }
    }

    /// Whether this node runs `tick` of `job`: always alone; on a cluster, if it claimed the tick first. A claim
    /// that fails (the server is away) runs nothing: a tick may be missed, never run twice.
    pub async fn claim(&self, job: &str, tick: i64) -> bool {
        let Some(cluster) = &self.cluster else { return true };
        match cluster.claim(job, tick).await {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(function = %job, scheduled_at = tick, %error, "cannot claim a cron tick; not running it");
                false
            }
        }
    }

    /// The last tick of `function` this node handled.
    pub async fn last_tick(&self, function: &str) -> Result<Option<i64>, StorageError> {
        self.db.last_tick(function).await
    }

    /// Records that every tick of `function` up to `tick` is handled; never moves backwards.
    pub async fn set_last_tick(&self, function: &str, tick: i64) -> Result<(), StorageError> {
        self.db.set_last_tick(function, tick).await
    }

    /// Records the start of an attempt (or a skipped tick, finished at once, which a cluster hears of at once);
    /// returns the run's id.
    pub async fn start_run(&self, run: RunRecord) -> Result<i64, StorageError> {
        let finished = run.finished_at.is_some();
        let id = self.db.start_run(run.clone()).await?;
        if finished {
            self.share(&RunRecord { id, ..run }).await;
        }
        Ok(id)
    }

    /// Records the end of an attempt.
    pub async fn finish_run(&self, run: &RunRecord) -> Result<(), StorageError> {
        let finished_at = run.finished_at.unwrap_or_default();
        self.db.finish_run(run.id, finished_at, run.outcome.clone(), run.error.clone()).await?;
        self.share(run).await;
        Ok(())
    }

    async fn share(&self, run: &RunRecord) {
        let Some(cluster) = &self.cluster else { return };
        if let Err(error) = cluster.record(run).await {
            tracing::error!(function = %run.function, %error, "failed to add a cron run to the cluster's history");
        }
    }

    /// The latest runs of `function`, newest first: this node's alone, or on a cluster every node's finished runs
    /// with this node's running ones.
    pub async fn runs(&self, function: &str, limit: u32) -> Result<Vec<RunRecord>, StorageError> {
        let Some(cluster) = &self.cluster else { return self.db.runs(function, limit).await };
        let mut runs = cluster.runs(function, limit).await?;
        let node = cluster.node().to_owned();
        let running = self.db.runs(function, limit).await?.into_iter().filter(|run| run.finished_at.is_none());
        runs.extend(running.map(|run| RunRecord { node: Some(node.clone()), ..run }));
        runs.sort_by_key(|run| std::cmp::Reverse((run.started_at, run.attempt)));
        runs.truncate(limit as usize);
        Ok(runs)
    }
}
