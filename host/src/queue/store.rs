//! The SQL of the durable queues. Every method is one transaction.

use crate::storage::SharedConnection;
use rusqlite::params;

/// A message to enqueue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub body: Vec<u8>,
    pub delay_ms: u64,
    pub priority: i32,
}

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct LeasedMessage {
    pub id: i64,
    pub body: Vec<u8>,
    /// Deliveries so far, this one included.
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    /// The end of this lease: also its token. A settle only applies while the message still holds this lease, so
    /// a delivery whose lease expired (and was handed out again) or whose message was re-driven changes nothing.
    pub lease_until: i64,
}

/// What to do with one leased message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    Retry { at: i64, error: String },
    DeadLetter { queue: String, reason: String },
}

/// Counts of one queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub queue: String,
    /// Ready to deliver now.
    pub ready: u64,
    /// Leased by a running invocation.
    pub in_flight: u64,
    /// Waiting for a delay or a retry backoff.
    pub delayed: u64,
    /// Messages of this queue that were dead-lettered and not re-driven yet.
    pub dead: u64,
}

/// A dead-lettered message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeadLetter {
    pub id: i64,
    /// The dead-letter queue it sits in.
    pub queue: String,
    pub origin_queue: String,
    /// The body as UTF-8 text when it is, else `null` (see `body_base64`).
    pub body: Option<String>,
    pub body_len: usize,
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    pub error: Option<String>,
}

/// The queue tables, behind one connection.
#[derive(Debug)]
pub struct QueueStore {
    conn: SharedConnection,
}

impl QueueStore {
    pub fn new(conn: SharedConnection) -> Self {
        Self { conn }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn.lock()
    }

    /// Stores messages (one transaction: all or none) and returns their ids.
    pub fn send(&self, queue: &str, messages: &[NewMessage], now: i64) -> rusqlite::Result<Vec<i64>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ids = Vec::with_capacity(messages.len());
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO queue_messages (queue, body, priority, enqueued_at, visible_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for message in messages {
                let visible_at = now.saturating_add(i64::try_from(message.delay_ms).unwrap_or(i64::MAX));
                insert.execute(params![queue, message.body, message.priority, now, visible_at])?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(ids)
    }

    /// Stores one copy of `body` in each of `queues` (a topic's subscribers), in one transaction.
    pub fn fan_out(&self, queues: &[String], body: &[u8], now: i64) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO queue_messages (queue, body, priority, enqueued_at, visible_at) VALUES (?1, ?2, 0, ?3, ?3)",
            )?;
            for queue in queues {
                insert.execute(params![queue, body, now])?;
            }
        }
        tx.commit()
    }

    /// How many messages are ready (up to `limit`), and since when the oldest of them has been ready.
    pub fn ready(&self, queue: &str, now: i64, limit: u32) -> rusqlite::Result<(u32, Option<i64>)> {
        self.conn()
            .prepare_cached(
                "SELECT COUNT(*), MIN(visible_at) FROM (SELECT visible_at FROM queue_messages
             WHERE queue = ?1 AND visible_at <= ?2 LIMIT ?3)",
            )?
            .query_row(params![queue, now, limit], |row| Ok((row.get(0)?, row.get(1)?)))
    }

    /// When the next message that is not ready yet (delayed, backing off or leased) becomes ready.
    pub fn next_visible(&self, queue: &str, now: i64) -> rusqlite::Result<Option<i64>> {
        self.conn()
            .prepare_cached("SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1 AND visible_at > ?2")?
            .query_row(params![queue, now], |row| row.get(0))
    }

    /// Leases up to `limit` ready messages until `lease_until`, highest priority first, then oldest first.
    pub fn lease(&self, queue: &str, now: i64, limit: u32, lease_until: i64) -> rusqlite::Result<Vec<LeasedMessage>> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "UPDATE queue_messages SET visible_at = ?4, attempts = attempts + 1, leased = 1
             WHERE id IN (SELECT id FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2
                          ORDER BY priority DESC, id LIMIT ?3)
             RETURNING id, body, attempts, priority, enqueued_at",
        )?;
        let mut messages = statement
            .query_map(params![queue, now, limit, lease_until], |row| {
                Ok(LeasedMessage {
                    id: row.get(0)?,
                    body: row.get(1)?,
                    attempts: row.get(2)?,
                    priority: row.get(3)?,
                    enqueued_at: row.get(4)?,
                    lease_until,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // RETURNING has no defined order.
        messages.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id));
        Ok(messages)
    }

    /// Applies the outcomes of one delivery (each message with the lease it was delivered under) in one
    /// transaction. Returns how many outcomes no longer matched a lease and were ignored.
    pub fn settle(&self, outcomes: &[(i64, i64, Outcome)], now: i64) -> rusqlite::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut stale = 0;
        {
            let mut ack =
                tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1 AND leased = 1 AND visible_at = ?2")?;
            let mut retry = tx.prepare_cached(
                "UPDATE queue_messages SET visible_at = ?3, leased = 0, last_error = ?4
                 WHERE id = ?1 AND leased = 1 AND visible_at = ?2",
            )?;
            // A dead letter keeps the queue it first died in (a message dead-lettered again from a dead-letter
            // queue's own consumer still re-drives to its origin) and starts its attempts over in the new queue.
            let mut dead = tx.prepare_cached(
                "UPDATE queue_messages SET origin_queue = COALESCE(origin_queue, queue), queue = ?3, visible_at = ?4,
                 leased = 0, attempts = 0, last_error = ?5 WHERE id = ?1 AND leased = 1 AND visible_at = ?2",
            )?;
            for (id, lease, outcome) in outcomes {
                let applied = match outcome {
                    Outcome::Ack => ack.execute(params![id, lease])?,
                    Outcome::Retry { at, error } => retry.execute(params![id, lease, at, error])?,
                    Outcome::DeadLetter { queue, reason } => dead.execute(params![id, lease, queue, now, reason])?,
                };
                stale += 1 - applied.min(1);
            }
        }
        tx.commit()?;
        Ok(stale)
    }

    /// Makes every leased message visible now. Only at start-up, when no lease can belong to a live invocation
    /// (the data dir is locked to one host): their invocations died with the previous process.
    pub fn release_all_leases(&self, now: i64) -> rusqlite::Result<usize> {
        self.conn().execute(
            "UPDATE queue_messages SET leased = 0, visible_at = MIN(visible_at, ?1) WHERE leased = 1",
            params![now],
        )
    }

    /// The counts of every queue that has messages, plus `also` (deployed queues), by name.
    pub fn stats(&self, now: i64, also: &[String]) -> rusqlite::Result<Vec<QueueStats>> {
        let conn = self.conn();
        let mut by_name: std::collections::BTreeMap<String, QueueStats> = also
            .iter()
            .map(|queue| (queue.clone(), QueueStats { queue: queue.clone(), ..QueueStats::default() }))
            .collect();
        let mut statement = conn.prepare_cached(
            "SELECT queue, SUM(visible_at <= ?1), SUM(leased = 1 AND visible_at > ?1),
                    SUM(leased = 0 AND visible_at > ?1)
             FROM queue_messages GROUP BY queue",
        )?;
        let rows = statement.query_map(params![now], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?, row.get::<_, u64>(2)?, row.get::<_, u64>(3)?))
        })?;
        for row in rows {
            let (queue, ready, in_flight, delayed) = row?;
            let stats = by_name.entry(queue.clone()).or_insert_with(|| QueueStats { queue, ..QueueStats::default() });
            (stats.ready, stats.in_flight, stats.delayed) = (ready, in_flight, delayed);
        }
        let mut statement = conn.prepare_cached(
            "SELECT origin_queue, COUNT(*) FROM queue_messages WHERE origin_queue IS NOT NULL GROUP BY origin_queue",
        )?;
        let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, u64>(1)?)))?;
        for row in rows {
            let (queue, dead) = row?;
            by_name.entry(queue.clone()).or_insert_with(|| QueueStats { queue, ..QueueStats::default() }).dead = dead;
        }
        Ok(by_name.into_values().collect())
    }

    /// The dead letters of `origin_queue`, oldest first.
    pub fn dead_letters(&self, origin_queue: &str, limit: u32) -> rusqlite::Result<Vec<DeadLetter>> {
        let conn = self.conn();
        let mut statement = conn.prepare_cached(
            "SELECT id, queue, origin_queue, body, attempts, priority, enqueued_at, last_error FROM queue_messages
             WHERE origin_queue = ?1 ORDER BY id LIMIT ?2",
        )?;
        let rows = statement.query_map(params![origin_queue, limit], |row| {
            let body: Vec<u8> = row.get(3)?;
            Ok(DeadLetter {
                id: row.get(0)?,
                queue: row.get(1)?,
                origin_queue: row.get(2)?,
                body_len: body.len(),
                body: String::from_utf8(body).ok(),
                attempts: row.get(4)?,
                priority: row.get(5)?,
                enqueued_at: row.get(6)?,
                error: row.get(7)?,
            })
        })?;
        rows.collect()
    }

    /// Moves dead letters of `origin_queue` (all, or those in `ids`) back to it, ready now, attempts reset.
    pub fn redrive(&self, origin_queue: &str, ids: Option<&[i64]>, now: i64) -> rusqlite::Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let moved = {
            let sql = "UPDATE queue_messages SET queue = origin_queue, origin_queue = NULL, attempts = 0,
                       visible_at = ?2, leased = 0 WHERE origin_queue = ?1";
            match ids {
                None => tx.execute(sql, params![origin_queue, now])?,
                Some(ids) => {
                    let mut one = tx.prepare_cached(&format!("{sql} AND id = ?3"))?;
                    let mut moved = 0;
                    for id in ids {
                        moved += one.execute(params![origin_queue, now, id])?;
                    }
                    moved
                }
            }
        };
        tx.commit()?;
        Ok(moved)
    }
}
