//! What an operator reads and moves of the JetStream queues: counts, dead letters, re-drive. Apart from the
//! delivery path in `queues`, and read from the stream itself (subject counts, direct gets), so none of it needs a
//! consumer that could overlap the work-queue consumers.

use super::queues::JetStreamQueues;
use super::wire::{
    ATTEMPTS, ENQUEUED_AT, ERROR, LATER, LEVELS, MSG_ID, ORIGIN, PRIORITY, header, header_text, level, queue_subject,
    without,
};
use super::{cluster_error, consumer_name, from_subject_token, publish_stored, subject_token};
use crate::storage::StorageError;
use crate::storage::backends::{DeadLetter, DeadLetterPage, QueueStats};
use async_nats::jetstream;
use async_nats::jetstream::stream;
use futures_util::StreamExt as _;
use std::collections::{BTreeMap, HashMap};

impl JetStreamQueues {
    /// Counts of one queue's consumer, if it exists: (not delivered yet, pulled and not settled).
    async fn consumer_counts(stream: &stream::Stream, durable: &str) -> (u64, u64) {
        match stream.consumer_info(durable).await {
            Ok(info) => (info.num_pending, info.num_ack_pending as u64),
            Err(_) => (0, 0),
        }
    }

    /// The counts of every queue that has messages, plus `also`.
    pub(super) async fn stats_now(&self, also: Vec<String>) -> Result<Vec<QueueStats>, StorageError> {
        let mut by_name: BTreeMap<String, QueueStats> = also
            .iter()
            .map(|queue| (queue.clone(), QueueStats { queue: queue.clone(), ..QueueStats::default() }))
            .collect();
        // Held per queue (every level, in flight or not), from the subjects' message counts.
        let mut held: HashMap<String, u64> = HashMap::new();
        let mut subjects = self
            .queues
            .info_with_subjects("edgefn.q.>")
            .await
            .map_err(|error| cluster_error("read the queues", error))?;
        while let Some(subject) = subjects.next().await {
            let (subject, count) = subject.map_err(|error| cluster_error("read the queues", error))?;
            let mut tokens = subject.split('.').skip(2);
            let (Some(queue), Some(level), Some(origin)) = (tokens.next(), tokens.next(), tokens.next()) else {
                continue;
            };
            let queue = from_subject_token(queue);
            let stats = by_name
                .entry(queue.clone())
                .or_insert_with(|| QueueStats { queue: queue.clone(), ..Default::default() });
            if level == LATER {
                stats.delayed += count as u64;
            } else {
                *held.entry(queue).or_default() += count as u64;
            }
            if origin != "-" {
                let origin = from_subject_token(origin);
                by_name
                    .entry(origin.clone())
                    .or_insert_with(|| QueueStats { queue: origin, ..Default::default() })
                    .dead += count as u64;
            }
        }
        let subscribers: HashMap<String, String> = self.subscribers.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for stats in by_name.values_mut() {
            if subscribers.contains_key(&stats.queue) {
                let durable = format!("sub_{}", consumer_name(&stats.queue));
                let (pending, in_flight) = Self::consumer_counts(&self.topics, &durable).await;
                (stats.ready, stats.in_flight) = (pending, in_flight);
                continue;
            }
            let mut in_flight = 0;
            for level in LEVELS {
                let durable = format!("q_{}_{level}", consumer_name(&stats.queue));
                in_flight += Self::consumer_counts(&self.queues, &durable).await.1;
            }
            let held = held.get(&stats.queue).copied().unwrap_or(0);
            stats.in_flight = in_flight.min(held);
            stats.ready = held - stats.in_flight;
            if held + stats.delayed > 0 {
                let first = self
                    .queues
                    .direct_get_next_for_subject(format!("edgefn.q.{}.*.*", subject_token(&stats.queue)), None)
                    .await;
                stats.oldest_enqueued_at = first.ok().and_then(|message| header(Some(&message.headers), ENQUEUED_AT));
            }
        }
        Ok(by_name.into_values().collect())
    }

    /// A page of the dead letters of `origin_queue`.
    pub(super) async fn dead_letter_page(
        &self,
        origin_queue: &str,
        limit: u32,
        after: Option<String>,
        max_bytes: usize,
    ) -> Result<DeadLetterPage, StorageError> {
        let after = after.and_then(|after| after.parse().ok()).unwrap_or(0);
        let mut page = DeadLetterPage { dead_letters: Vec::new(), next_after: None };
        let mut bytes = 0usize;
        self.scan_dead_letters(origin_queue, after, |message| {
            if page.dead_letters.len() as u32 == limit || (!page.dead_letters.is_empty() && bytes >= max_bytes) {
                page.next_after = page.dead_letters.last().map(|letter| letter.id.clone());
                return false;
            }
            bytes += message.payload.len();
            page.dead_letters.push(dead_letter(&message));
            true
        })
        .await?;
        Ok(page)
    }

    /// Moves dead letters of `origin_queue` (all, or `ids`) back to it.
    pub(super) async fn redrive_now(
        &self,
        origin_queue: &str,
        ids: Option<Vec<String>>,
    ) -> Result<usize, StorageError> {
        let wanted: Option<std::collections::HashSet<u64>> =
            ids.map(|ids| ids.iter().filter_map(|id| id.parse().ok()).collect());
        let mut letters = Vec::new();
        self.scan_dead_letters(origin_queue, 0, |message| {
            if wanted.as_ref().is_none_or(|wanted| wanted.contains(&message.sequence)) {
                letters.push(message);
            }
            true
        })
        .await?;
        let mut moved = 0;
        for letter in letters {
            let mut headers = without(Some(&letter.headers), &[ORIGIN, ERROR, ATTEMPTS]);
            // Re-driving twice (a crash between the publish and the delete) stores it once.
            headers.insert(MSG_ID, format!("edgefn-redrive-{}", letter.sequence).as_str());
            let priority: i32 = header(Some(&headers), PRIORITY).unwrap_or(0);
            let subject = queue_subject(origin_queue, level(priority), None);
            publish_stored(&self.cluster.jetstream, subject, headers, letter.payload.clone())
                .await
                .map_err(|error| cluster_error(format!("re-drive to `{origin_queue}`"), error))?;
            self.queues
                .delete_message(letter.sequence)
                .await
                .map_err(|error| cluster_error(format!("remove a re-driven dead letter of `{origin_queue}`"), error))?;
            moved += 1;
        }
        if moved > 0 {
            self.wake(origin_queue).await;
        }
        Ok(moved)
    }

    /// Calls `keep` with every dead letter of `origin_queue` after stream sequence `after`, oldest first, until it
    /// returns `false` or there are no more.
    async fn scan_dead_letters(
        &self,
        origin_queue: &str,
        mut after: u64,
        mut keep: impl FnMut(jetstream::message::StreamMessage) -> bool,
    ) -> Result<(), StorageError> {
        let filter = format!("edgefn.q.*.*.{}", subject_token(origin_queue));
        loop {
            let message = match self.queues.direct_get_next_for_subject(&filter, Some(after + 1)).await {
                Ok(message) => message,
                Err(error) if matches!(error.kind(), stream::DirectGetErrorKind::NotFound) => return Ok(()),
                Err(error) => return Err(cluster_error(format!("read the dead letters of `{origin_queue}`"), error)),
            };
            after = message.sequence;
            if !keep(message) {
                return Ok(());
            }
        }
    }
}

/// A dead letter as the API lists it.
fn dead_letter(message: &jetstream::message::StreamMessage) -> DeadLetter {
    let headers = Some(&message.headers);
    // edgefn.q.<queue>.<level>.<origin>
    let mut tokens = message.subject.split('.').skip(2);
    let queue = tokens.next().map(from_subject_token).unwrap_or_default();
    let origin_queue = tokens.nth(1).map(from_subject_token).unwrap_or_default();
    DeadLetter {
        id: message.sequence.to_string(),
        queue,
        origin_queue,
        body: String::from_utf8(message.payload.to_vec()).ok(),
        body_len: message.payload.len(),
        attempts: header(headers, ATTEMPTS).unwrap_or(0),
        priority: header(headers, PRIORITY).unwrap_or(0),
        enqueued_at: header(headers, ENQUEUED_AT).unwrap_or(0),
        error: header_text(headers, ERROR),
    }
}
