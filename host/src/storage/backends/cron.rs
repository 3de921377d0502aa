//! Where cron keeps what it ran: the data dir's SQLite file always (the last handled tick of each job, this
//! node's run history), and on a cluster also JetStream (`jetstream::cron`): the claim that makes one node run a
//! tick, and the history every node reads.

use super::jetstream::JetStreamCron;
use super::jetstream::cron::RENEW_RUNNING;
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

    /// Says, for as long as the run lasts, that this node runs `tick` of `job` (nothing on a single node): other
    /// nodes then skip overlapping ticks, and re-run this one if this node dies before [`RunningGuard::finish`].
    pub async fn begin_run(&self, job: &str, tick: i64) -> RunningGuard {
        let Some(cluster) = self.cluster.clone() else { return RunningGuard { renewal: None } };
        if let Err(error) = cluster.mark_running(job, tick, false).await {
            tracing::warn!(function = %job, scheduled_at = tick, %error, "cannot tell the cluster a cron run started");
        }
        let job = job.to_owned();
        let renewal = tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_RUNNING, RENEW_RUNNING);
            loop {
                every.tick().await;
                if let Err(error) = cluster.mark_running(&job, tick, false).await {
                    tracing::warn!(function = %job, scheduled_at = tick, %error, "cannot renew a running cron run");
                }
            }
        });
        RunningGuard { renewal: Some((renewal, self.cluster.clone(), tick)) }
    }

    /// On a cluster: whether another node is running `job` now (said so recently, and not done).
    pub async fn running_elsewhere(&self, job: &str) -> bool {
        let Some(cluster) = &self.cluster else { return false };
        match cluster.running(job).await {
            Ok(Some(marker)) => {
                !marker.done && marker.node != cluster.node() && !marker.is_stale(crate::storage::now_ms())
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(function = %job, %error, "cannot read whether another node runs this cron job");
                false
            }
        }
    }

    /// On a cluster: a tick of `job` whose node died in the middle of its run, claimed now by this node to run
    /// again (exactly one node gets it).
    pub async fn take_over_stale(&self, job: &str) -> Option<i64> {
        let cluster = self.cluster.as_ref()?;
        let marker = match cluster.running(job).await {
            Ok(marker) => marker?,
            Err(error) => {
                tracing::warn!(function = %job, %error, "cannot read whether a cron run lost its node");
                return None;
            }
        };
        if !marker.is_stale(crate::storage::now_ms()) {
            return None;
        }
        match cluster.claim_retake(job, marker.tick).await {
            Ok(true) => Some(marker.tick),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(function = %job, %error, "cannot claim a cron run that lost its node");
                None
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

/// A run this node tells the cluster about; [`RunningGuard::finish`] it when the run ends.
#[derive(Debug)]
pub struct RunningGuard {
    renewal: Option<(tokio::task::JoinHandle<()>, Option<Arc<JetStreamCron>>, i64)>,
}

impl RunningGuard {
    /// Stops renewing, and says the run is done.
    pub async fn finish(mut self, job: &str) {
        let Some((renewal, cluster, tick)) = self.renewal.take() else { return };
        renewal.abort();
        if let Some(cluster) = cluster
            && let Err(error) = cluster.mark_running(job, tick, true).await
        {
            tracing::warn!(function = %job, scheduled_at = tick, %error, "cannot tell the cluster a cron run ended");
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        // Dropped unfinished (a panic, a cancelled task): stop renewing, so other nodes see the run lost.
        if let Some((renewal, _, _)) = self.renewal.take() {
            renewal.abort();
        }
    }
}
