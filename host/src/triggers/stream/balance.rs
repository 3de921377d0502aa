//! On a cluster, which shards of a stream consumer this node delivers. Every node that runs the consumer has a
//! balancer ([`balance`]) and a shard loop per shard; a loop delivers only while its [`Gate`] says this node holds
//! the shard's lease ([`ShardLeases`]).
//!
//! Each round (a third of a lease period) the balancer says the node consumes the stream, renews the leases it
//! holds, counts the nodes that consume it and takes free shards up to its share (the shard count divided by the
//! nodes, rounded up). A node holding more than its share (another node joined) asks the loops of the extra shards
//! to give them back; a loop does that between two batches, never during one, so one batch of a shard runs at a
//! time across the cluster. When a node dies its leases lapse and the others' next rounds take its shards, reading
//! on from the checkpoint it last wrote: records it was delivering are delivered again, in order.
//!
//! When the consumer stops (a deploy drains it, or the node shuts down), the loops finish their batches first;
//! then the balancer gives every lease back at once, so the shards move without waiting for a lapse.

use crate::storage::backends::jetstream::ShardLeases;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// What the balancer and one shard loop share.
#[derive(Debug)]
pub(super) struct Gate {
    /// The lease's revision while this node holds it.
    held: watch::Sender<Option<u64>>,
    /// The balancer asks the loop to give the shard back at its next batch boundary.
    give_back: AtomicBool,
    /// Notified when it asks, so a loop waiting for records gives the shard back at once.
    asked: Notify,
}

impl Gate {
    fn new() -> Self {
        Self { held: watch::Sender::new(None), give_back: AtomicBool::new(false), asked: Notify::new() }
    }

    fn revision(&self) -> Option<u64> {
        *self.held.borrow()
    }

    /// Sets the revision the lease has after a renewal or a claim, unless it went meanwhile (`from` no longer holds).
    fn replace(&self, from: Option<u64>, to: Option<u64>) {
        self.held.send_if_modified(|held| {
            let same = *held == from;
            if same {
                *held = to;
            }
            same
        });
    }
}

/// The leases of one consumer's shards on this node.
#[derive(Debug)]
pub(super) struct Shards {
    leases: Arc<ShardLeases>,
    stream: String,
    consumer: String,
    gates: Vec<Gate>,
}

impl Shards {
    pub(super) fn new(leases: Arc<ShardLeases>, stream: &str, consumer: &str, count: u32) -> Arc<Self> {
        let gates = (0..count).map(|_| Gate::new()).collect();
        Arc::new(Self { leases, stream: stream.to_owned(), consumer: consumer.to_owned(), gates })
    }

    /// Called by shard `shard`'s loop before each batch: gives the shard back if the balancer asked, then waits
    /// until this node holds it. `Some(true)` when it had to wait (the shard is newly this node's: whatever the loop
    /// read before is stale), `Some(false)` when it held it already, `None` when `stopped` came first.
    pub(super) async fn hold(&self, shard: u32, stopped: &mut watch::Receiver<bool>) -> Option<bool> {
        let gate = &self.gates[shard as usize];
        if gate.give_back.swap(false, Ordering::AcqRel)
            && let Some(revision) = gate.revision()
        {
            gate.replace(Some(revision), None);
            self.leases.release(&self.stream, &self.consumer, shard, revision).await;
            tracing::info!(stream = %self.stream, consumer = %self.consumer, shard,
                "gave the shard back so that another node delivers it");
        }
        if gate.revision().is_some() {
            return Some(false);
        }
        let mut held = gate.held.subscribe();
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => None,
            found = held.wait_for(Option::is_some) => found.is_ok().then_some(true),
        }
    }

    /// Resolves when the balancer asks shard `shard`'s loop to give the shard back (perhaps a while ago: the loop
    /// then finds nothing to give back, and goes on).
    pub(super) async fn asked_to_give_back(&self, shard: u32) {
        self.gates[shard as usize].asked.notified().await;
    }

    /// One round of the balancer: see the module docs.
    async fn round(&self) {
        if let Err(error) = self.leases.announce(&self.stream, &self.consumer).await {
            tracing::warn!(stream = %self.stream, consumer = %self.consumer, %error, "cannot announce this node as a consumer");
        }
        for (shard, gate) in (0u32..).zip(&self.gates) {
            let Some(revision) = gate.revision() else { continue };
            match self.leases.renew(&self.stream, &self.consumer, shard, revision).await {
                Ok(renewed) => {
                    if renewed.is_none() {
                        tracing::warn!(stream = %self.stream, consumer = %self.consumer, shard,
                            "this node's lease on the shard lapsed; it stops delivering it after its batch");
                    }
                    gate.replace(Some(revision), renewed);
                }
                Err(error) => tracing::warn!(stream = %self.stream, consumer = %self.consumer, shard, %error,
                    "cannot renew the shard's lease; trying again next round"),
            }
        }
        let nodes = match self.leases.consuming_nodes(&self.stream, &self.consumer).await {
            Ok(nodes) => nodes,
            Err(error) => {
                tracing::warn!(stream = %self.stream, %error, "cannot count the nodes consuming the stream");
                return;
            }
        };
        let share = share(self.gates.len(), nodes);
        let held: Vec<u32> =
            (0u32..).zip(&self.gates).filter(|(_, g)| g.revision().is_some()).map(|(s, _)| s).collect();
        // More than its share: the highest shards go back, each at its loop's next batch boundary.
        for (index, shard) in held.iter().enumerate() {
            let gate = &self.gates[*shard as usize];
            let was_asked = gate.give_back.swap(index >= share, Ordering::AcqRel);
            if index >= share && !was_asked {
                gate.asked.notify_one();
            }
        }
        let mut holding = held.len();
        for (shard, gate) in (0u32..).zip(&self.gates) {
            if holding >= share {
                break;
            }
            if gate.revision().is_some() {
                continue;
            }
            match self.leases.claim(&self.stream, &self.consumer, shard).await {
                Ok(Some(revision)) => {
                    tracing::info!(stream = %self.stream, consumer = %self.consumer, shard, "this node delivers the shard now");
                    gate.replace(None, Some(revision));
                    holding += 1;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(stream = %self.stream, shard, %error, "cannot claim a free shard");
                    break;
                }
            }
        }
    }

    /// Gives every lease back and says this node no longer consumes the stream (the loops have stopped).
    async fn release_all(&self) {
        for (shard, gate) in (0u32..).zip(&self.gates) {
            if let Some(revision) = gate.revision() {
                gate.replace(Some(revision), None);
                self.leases.release(&self.stream, &self.consumer, shard, revision).await;
            }
        }
        self.leases.withdraw(&self.stream, &self.consumer).await;
    }
}

/// How many of `shards` shards one of `nodes` nodes delivers: the count divided by the nodes, rounded up.
fn share(shards: usize, nodes: usize) -> usize {
    shards.div_ceil(nodes.max(1))
}

/// Runs the balancer of `shards` until `stopped`, then gives every lease back.
pub(super) async fn balance(shards: Arc<Shards>, mut stopped: watch::Receiver<bool>) {
    let every = (shards.leases.period() / 3).max(Duration::from_millis(100));
    loop {
        shards.round().await;
        tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    shards.release_all().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_node_takes_the_shard_count_over_the_nodes_rounded_up() {
        assert_eq!(share(4, 1), 4);
        assert_eq!(share(4, 2), 2);
        assert_eq!(share(4, 3), 2);
        assert_eq!(share(4, 8), 1);
        assert_eq!(share(1, 0), 1, "no node counted yet: this one");
    }

    #[test]
    fn a_gate_keeps_a_new_revision_only_if_the_lease_did_not_go_meanwhile() {
        let gate = Gate::new();
        gate.replace(None, Some(5));
        assert_eq!(gate.revision(), Some(5));
        gate.replace(Some(4), Some(9));
        assert_eq!(gate.revision(), Some(5), "a renewal of an older revision changes nothing");
        gate.replace(Some(5), None);
        gate.replace(Some(5), Some(6));
        assert_eq!(gate.revision(), None, "given back: a late renewal does not bring it back");
    }
}
