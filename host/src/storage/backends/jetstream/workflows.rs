//! Workflow runs on a cluster: every change to the runs goes through one JetStream stream, the log
//! (`EDGEFN_WORKFLOWS`), and every node runs every change in the log's order on its own SQLite copy of the runs
//! (state-machine replication: see `storage::workflows::commands` for why the copies agree).
//!
//! - A change made on any node (a start, a signal, a cancel from a function, the CLI or the admin API; a step a
//!   resume journals) is published to the log, and answered once this node has run it: what the node reads next
//!   has it.
//! - One node at a time resumes the runs: the one holding the lease in KV bucket `edgefn_workflow_lease`, whose
//!   entry expires a lease period (the cluster's `ack_wait_ms`) after its last write. It renews it three times a
//!   period; a node takes it only when no node holds it, and resumes only once it has run the whole log. When the
//!   holder dies, another node takes the lease a period later and goes on with the runs from what the log holds.
//! - A resume on a node that lost the lease (it stalled past the period while another took over) may still publish
//!   a step: every node runs it after the new holder's, where the journal-length check refuses it. No step result
//!   is journaled twice; a step's side effects may run twice, as after a crash on one node.
//!
//! Each node remembers the last change it ran (`workflow_log` in its SQLite, written with the change), so a node
//! that restarts goes on from there. The log keeps every change: a node joining later builds its copy from the
//! first one.

use super::{Cluster, KvLease, cluster_error, publish_stored};
use crate::storage::StorageError;
use crate::storage::workflows::{Answer, Command, CommandLog, WorkflowDb};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, push};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, oneshot, watch};

const STREAM: &str = "EDGEFN_WORKFLOWS";
const SUBJECT: &str = "edgefn.workflows.log";
const LEASE_BUCKET: &str = "edgefn_workflow_lease";
const LEASE_KEY: &str = "runs";
/// The header naming a change's proposal, so the node that made it gets its answer.
const PROPOSAL: &str = "Edgefn-Proposal";
/// How long a change waits for this node to have run it.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Room left in a message for its headers and the server's own.
const HEADER_ROOM: usize = 1024;

type Waiter = oneshot::Sender<Result<Answer, StorageError>>;

/// See the module docs.
pub struct JetStreamWorkflowLog {
    cluster: Cluster,
    lease: kv::Store,
    period: Duration,
    /// This process, in proposal names (`<process>-<n>`): a restarted node never takes an old answer for its own.
    process: String,
    next_proposal: AtomicU64,
    waiting: Mutex<HashMap<String, Waiter>>,
    leading: AtomicBool,
    /// The revision of the runs' lease this node holds (0: none).
    held: AtomicU64,
    /// The node is stopping: it gave the lease back and takes it no more.
    stepped_down: AtomicBool,
    changes: Arc<Notify>,
    /// The last change of the log run here.
    applied: watch::Sender<u64>,
}

impl std::fmt::Debug for JetStreamWorkflowLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamWorkflowLog")
            .field("node", &self.cluster.node)
            .field("leading", &self.leading.load(Ordering::Relaxed))
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl JetStreamWorkflowLog {
    /// Opens the log and the lease bucket (made with `period` as the lease's life if new).
    pub async fn open(cluster: Cluster, period: Duration) -> Result<Arc<Self>, StorageError> {
        cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: STREAM.to_owned(),
                description: Some("edgefn workflow runs: every change, in order".to_owned()),
                subjects: vec![SUBJECT.to_owned()],
                storage: StorageType::File,
                num_replicas: cluster.replicas,
                // Every change is kept: a node builds its copy of the runs from the first.
                discard: DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|error| cluster_error(format!("create stream {STREAM}"), error))?;
        let lease = super::bucket(&cluster, LEASE_BUCKET, period).await?;
        Ok(Arc::new(Self {
            cluster,
            lease,
            period,
            process: uuid::Uuid::new_v4().simple().to_string(),
            next_proposal: AtomicU64::new(1),
            waiting: Mutex::default(),
            leading: AtomicBool::new(false),
            held: AtomicU64::new(0),
            stepped_down: AtomicBool::new(false),
            changes: Arc::new(Notify::new()),
            applied: watch::Sender::new(0),
        }))
    }

    /// Runs the log on `db` (this node's copy) and contends for the runs' lease, for the life of the process.
    pub fn spawn(self: &Arc<Self>, db: WorkflowDb) {
        tokio::spawn(self.clone().run_log(db));
        tokio::spawn(self.clone().hold_lease());
    }

    fn lock_waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs every change of the log on `db`, from the one after the last it ran; reads again after a failure.
    async fn run_log(self: Arc<Self>, db: WorkflowDb) {
        loop {
            if let Err(error) = self.run_log_once(&db).await {
                tracing::warn!(%error, "reading the cluster's workflow log stopped; reading on in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    async fn run_log_once(&self, db: &WorkflowDb) -> Result<(), StorageError> {
        let from = db.logged_until().await?;
        self.applied.send_if_modified(|applied| std::mem::replace(applied, from) != from);
        let reading = |error: &dyn std::fmt::Display| cluster_error("read the cluster's workflow log", error);
        let stream = self.cluster.jetstream.get_stream(STREAM).await.map_err(|error| reading(&error))?;
        let consumer = stream
            .create_consumer(push::OrderedConfig {
                deliver_subject: self.cluster.client.new_inbox(),
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: from + 1 },
                ..Default::default()
            })
            .await
            .map_err(|error| reading(&error))?;
        let mut messages = consumer.messages().await.map_err(|error| reading(&error))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|error| reading(&error))?;
            let seq = message.info().map_err(|error| reading(&error))?.stream_sequence;
            let proposal = message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(PROPOSAL))
                .map(|value| value.as_str().to_owned());
            let answer = match serde_json::from_slice::<Command>(&message.payload) {
                Ok(command) => self.run_change(db, seq, command).await?,
                Err(error) => {
                    // Every node skips it alike (a change from a newer edgefn than this one, say).
                    db.skip_logged(seq).await?;
                    tracing::error!(seq, %error, "a change in the cluster's workflow log is unreadable; skipped");
                    Err(StorageError::Corrupt(format!("workflow change {seq} is unreadable here: {error}")))
                }
            };
            self.applied.send_replace(seq);
            match proposal.and_then(|proposal| self.lock_waiting().remove(&proposal)) {
                // This node's own change: whoever made it here wakes the engine if it has to.
                Some(waiter) => drop(waiter.send(answer)),
                // Another node's (a start, a signal, a cancel): this node may have a run to resume now.
                None => self.changes.notify_one(),
            }
        }
        Err(reading(&"the server ended the reader"))
    }

    /// Runs change `seq` on `db`: its answer, or the error every node meets alike (the change is then skipped).
    /// An error of this node alone (its disk is full) is tried again until it passes: skipping it here only would
    /// leave this copy unlike the others.
    async fn run_change(
        &self,
        db: &WorkflowDb,
        seq: u64,
        command: Command,
    ) -> Result<Result<Answer, StorageError>, StorageError> {
        loop {
            match db.apply_logged(seq, command.clone()).await {
                Ok(Some(answer)) => return Ok(Ok(answer)),
                Ok(None) => return Ok(Err(StorageError::Corrupt(format!("workflow change {seq} ran here before")))),
                Err(error @ StorageError::Corrupt(_)) => {
                    db.skip_logged(seq).await?;
                    tracing::error!(seq, %error, "a change in the cluster's workflow log was refused; skipped");
                    return Ok(Err(error));
                }
                Err(error) => {
                    tracing::error!(seq, %error, "could not run a change of the cluster's workflow log here; again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Takes the runs' lease when no node holds it and keeps it while this node lives; leads once it has run the
    /// whole log.
    async fn hold_lease(self: Arc<Self>) {
        let node = self.cluster.node.clone();
        let lease = self.runs_lease(&node);
        let mut ticks = tokio::time::interval(self.period / 3);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let held = match self.held.load(Ordering::SeqCst) {
                0 => lease.take().await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "could not contend for the workflow runs' lease");
                    None
                }),
                // Lost (another node took it after it lapsed), or the server cannot say: either way this node must
                // not go on as if it held it.
                revision => lease.renew(revision).await.unwrap_or_else(|error| {
                    tracing::warn!(%error, "could not renew the workflow runs' lease");
                    None
                }),
            };
            self.held.store(held.unwrap_or(0), Ordering::SeqCst);
            if self.stepped_down.load(Ordering::SeqCst) {
                // Stepped down while this tick renewed it: give back what it renewed.
                if let Some(revision) = held.filter(|_| self.held.swap(0, Ordering::SeqCst) != 0) {
                    lease.release(revision).await;
                }
                return;
            }
            // A node that leads has run every change since (it makes the only ones that resume): it need not ask.
            let leading = held.is_some() && (self.leading.load(Ordering::SeqCst) || self.caught_up().await);
            let leading = leading && !self.stepped_down.load(Ordering::SeqCst);
            if self.leading.swap(leading, Ordering::SeqCst) != leading {
                tracing::info!(%node, leading, "{}", if leading { "this node resumes the workflow runs" } else { "another node resumes the workflow runs" });
                self.changes.notify_one();
            }
        }
    }

    fn runs_lease<'a>(&'a self, node: &'a str) -> KvLease<'a> {
        KvLease { bucket: &self.lease, key: LEASE_KEY.to_owned(), node, what: "the workflow runs" }
    }

    /// The node is stopping: it resumes no more runs and gives their lease back, so another node takes them at once
    /// instead of once the lease lapses. (A resume still under way may log its step; the new holder's journal-length
    /// check refuses it, as it does a stalled node's.)
    async fn give_the_runs_back(&self) {
        self.stepped_down.store(true, Ordering::SeqCst);
        if self.leading.swap(false, Ordering::SeqCst) {
            tracing::info!(node = %self.cluster.node, "this node stops resuming the workflow runs: it is stopping");
            self.changes.notify_one();
        }
        let revision = self.held.swap(0, Ordering::SeqCst);
        if revision != 0 {
            self.runs_lease(&self.cluster.node).release(revision).await;
        }
    }

    /// Whether this node has run every change the log held a moment ago (waiting up to a third of a period).
    async fn caught_up(&self) -> bool {
        let last = match self.cluster.jetstream.get_stream(STREAM).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => info.state.last_sequence,
                Err(_) => return false,
            },
            Err(_) => return false,
        };
        let mut applied = self.applied.subscribe();
        tokio::time::timeout(self.period / 3, applied.wait_for(|applied| *applied >= last))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }
}

impl CommandLog for JetStreamWorkflowLog {
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Answer, StorageError>> {
        Box::pin(async move {
            let logging = |error: &dyn std::fmt::Display| cluster_error("log a workflow change", error);
            let body = serde_json::to_vec(&command).map_err(|error| logging(&error))?;
            let max = self.cluster.client.server_info().max_payload;
            if body.len() + HEADER_ROOM > max {
                let action = "log a workflow change".to_owned();
                return Err(StorageError::TooLargeForCluster { action, size: body.len(), max });
            }
            let proposal = format!("{}-{}", self.process, self.next_proposal.fetch_add(1, Ordering::Relaxed));
            let (sender, answer) = oneshot::channel();
            self.lock_waiting().insert(proposal.clone(), sender);
            let mut headers = HeaderMap::new();
            headers.insert(PROPOSAL, proposal.as_str());
            if let Err(error) = publish_stored(&self.cluster.jetstream, SUBJECT.to_owned(), headers, body.into()).await
            {
                self.lock_waiting().remove(&proposal);
                return Err(logging(&error));
            }
            match tokio::time::timeout(ANSWER_WITHIN, answer).await {
                Ok(Ok(answer)) => answer,
                _ => {
                    self.lock_waiting().remove(&proposal);
                    Err(cluster_error(
                        "run a workflow change here",
                        format!("it is in the cluster's log, but this node has not run it within {ANSWER_WITHIN:?}"),
                    ))
                }
            }
        })
    }

    fn leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn step_down(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.give_the_runs_back())
    }

    fn changes(&self) -> Arc<Notify> {
        self.changes.clone()
    }
}
