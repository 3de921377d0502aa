//! The SQL of the durable queues on SQLite (the default backend, see `backends::sqlite`). Every method is one
//! transaction, run off the async threads. Ids are row ids; a lease's token is its end (`lease_until`).

use super::backends::{DeadLetter, DeadLetterPage, NewMessage, Outcome, QueueCapacity, QueueFull, QueueStats};
use super::{Database, StorageError};
use rusqlite::{Connection, OptionalExtension as _, params};

/// A message handed to a consumer.
#[derive(Debug, Clone)]
pub struct LeasedRow {
    pub id: i64,
    pub body: Vec<u8>,
    /// Deliveries so far, this one included.
    pub attempts: u32,
    pub priority: i32,
    pub enqueued_at: i64,
    /// The work that sent it, if it said.
    pub correlation_id: Option<String>,
    /// The span that sent it, 0 for none.
    pub parent_span: u64,
    /// The end of this lease: also its token. A settle only applies while the message still holds this lease, so
    /// a delivery whose lease expired (and was handed out again) or whose message was re-driven changes nothing.
    pub lease_until: i64,
}

/// One message's outcome, with the lease it was delivered under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleRow {
    pub id: i64,
    pub lease_until: i64,
    pub outcome: Outcome,
}

/// What a consumer finds when it looks at its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// Messages ready now, counted up to the batch size.
    pub ready: u32,
    /// Since when the oldest ready message has been ready.
    pub oldest_ready: Option<i64>,
    /// When the next message that is not ready yet (delayed, backing off or leased) becomes ready.
    pub next_visible: Option<i64>,
}

/// The queue tables, behind one connection.
#[derive(Debug, Clone)]
pub struct QueueDb {
    db: Database,
}

impl QueueDb {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Stores messages (one transaction: all or none) and returns their ids, unless `queue` would go past
    /// `capacity`.
    pub async fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
        now: i64,
        capacity: QueueCapacity,
    ) -> Result<Result<Vec<i64>, QueueFull>, StorageError> {
        let queue = queue.to_owned();
        self.db.call(move |conn| send(conn, &queue, &messages, now, capacity)).await
    }

    /// Stores one copy of `body` in each of `queues` (a topic's subscribers), in one transaction, unless one of them
    /// would go past `capacity` (then none gets it).
    pub async fn fan_out(
        &self,
        queues: Vec<String>,
        body: Vec<u8>,
        correlation_id: Option<String>,
        parent_span: u64,
        now: i64,
        capacity: QueueCapacity,
    ) -> Result<Result<(), QueueFull>, StorageError> {
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                for queue in &queues {
                    if let Some(full) = past_capacity(&tx, queue, 1, body.len() as u64, capacity)? {
                        return Ok(Err(full));
                    }
                }
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO queue_messages
                           (queue, body, priority, enqueued_at, visible_at, correlation_id, parent_span)
                         VALUES (?1, ?2, 0, ?3, ?3, ?4, ?5)",
                    )?;
                    for queue in &queues {
                        insert.execute(params![queue, body, now, correlation_id, span_column(parent_span)])?;
                    }
                }
                tx.commit()?;
                Ok(Ok(()))
            })
            .await
    }

    /// How many messages of `queue` are ready (up to `limit`), since when, and when the next one will be.
    pub async fn readiness(&self, queue: &str, now: i64, limit: u32) -> Result<Readiness, StorageError> {
        let queue = queue.to_owned();
        self.db
            .call(move |conn| {
                let (ready, oldest_ready) = conn
                    .prepare_cached(
                        "SELECT COUNT(*), MIN(visible_at) FROM (SELECT visible_at FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 LIMIT ?3)",
                    )?
                    .query_row(params![queue, now, limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
                let next_visible = if ready == 0 {
                    conn.prepare_cached(
                        "SELECT MIN(visible_at) FROM queue_messages WHERE queue = ?1 AND visible_at > ?2",
                    )?
                    .query_row(params![queue, now], |row| row.get(0))?
                } else {
                    None
                };
                Ok(Readiness { ready, oldest_ready, next_visible })
            })
            .await
    }

    /// Leases up to `limit` ready messages until `lease_until`, but only if a batch is due: `limit` messages are
    /// ready, or the oldest ready one has waited `max_wait` ms. `None` when none is due. One transaction, so a
    /// consumer under load pays one round trip per batch.
    pub async fn lease_if_due(
        &self,
        queue: &str,
        now: i64,
        limit: u32,
        max_wait: i64,
        lease_until: i64,
    ) -> Result<Option<Vec<LeasedRow>>, StorageError> {
        let queue = queue.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let (ready, oldest): (u32, Option<i64>) = tx
                    .prepare_cached(
                        "SELECT COUNT(*), MIN(visible_at) FROM (SELECT visible_at FROM queue_messages
                         WHERE queue = ?1 AND visible_at <= ?2 LIMIT ?3)",
                    )?
                    .query_row(params![queue, now, limit], |row| Ok((row.get(0)?, row.get(1)?)))?;
                let due = ready > 0 && (ready >= limit || oldest.is_some_and(|o| o.saturating_add(max_wait) <= now));
                if !due {
                    return Ok(None);
                }
                let leased = lease(&tx, &queue, now, limit, lease_until)?;
                tx.commit()?;
                Ok(Some(leased))
            })
            .await
    }

    /// Leases up to `limit` ready messages until `lease_until`, highest priority first, then oldest first.
    pub async fn lease(
        &self,
        queue: &str,
        now: i64,
        limit: u32,
        lease_until: i64,
    ) -> Result<Vec<LeasedRow>, StorageError> {
        let queue = queue.to_owned();
        self.db.call(move |conn| lease(conn, &queue, now, limit, lease_until)).await
    }

    /// Applies the outcomes of one delivery in one transaction. Returns how many outcomes no longer matched a
    /// lease and were ignored.
    pub async fn settle(&self, outcomes: Vec<SettleRow>, now: i64) -> Result<usize, StorageError> {
        self.db.call(move |conn| settle(conn, &outcomes, now)).await
    }

    /// Makes every leased message visible now. Only at start-up, when no lease can belong to a live invocation
    /// (the data dir is locked to one host): their invocations died with the previous process.
    pub async fn release_all_leases(&self, now: i64) -> Result<usize, StorageError> {
        self.db
            .call(move |conn| {
                Ok(conn.execute(
                    "UPDATE queue_messages SET leased = 0, visible_at = MIN(visible_at, ?1) WHERE leased = 1",
                    params![now],
                )?)
            })
            .await
    }

    /// The counts of every queue that has messages, plus `also` (deployed queues), by name.
    pub async fn stats(&self, now: i64, also: Vec<String>) -> Result<Vec<QueueStats>, StorageError> {
        self.db.call(move |conn| stats(conn, now, &also)).await
    }

    /// Dead letters of `origin_queue`, oldest first, after id `after`: at most `limit`, and no more once their
    /// bodies add up to `max_bytes` (always at least one).
    pub async fn dead_letters(
        &self,
        origin_queue: &str,
        limit: u32,
        after: i64,
        max_bytes: usize,
    ) -> Result<DeadLetterPage, StorageError> {
        let origin_queue = origin_queue.to_owned();
        self.db
            .call(move |conn| {
                let mut statement = conn.prepare_cached(
                    "SELECT id, queue, origin_queue, body, COALESCE(dead_after_attempts, attempts), priority,
                            enqueued_at, last_error
                     FROM queue_messages WHERE origin_queue = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                )?;
                let mut rows = statement.query(params![origin_queue, after, i64::from(limit) + 1])?;
                let mut page = DeadLetterPage { dead_letters: Vec::new(), next_after: None };
                let mut bytes = 0usize;
                while let Some(row) = rows.next()? {
                    let id: i64 = row.get(0)?;
                    if page.dead_letters.len() as u32 == limit || (!page.dead_letters.is_empty() && bytes >= max_bytes)
                    {
                        page.next_after = page.dead_letters.last().map(|l| l.id.clone());
                        break;
                    }
                    let body: Vec<u8> = row.get(3)?;
                    bytes += body.len();
                    page.dead_letters.push(DeadLetter {
                        id: id.to_string(),
                        queue: row.get(1)?,
                        origin_queue: row.get(2)?,
                        body_len: body.len(),
                        body: String::from_utf8(body).ok(),
                        attempts: row.get(4)?,
                        priority: row.get(5)?,
                        enqueued_at: row.get(6)?,
                        error: row.get(7)?,
                    });
                }
                Ok(page)
            })
            .await
    }

    /// Moves dead letters of `origin_queue` (all, or those in `ids`) back to it, ready now, attempts reset.
    pub async fn redrive(&self, origin_queue: &str, ids: Option<Vec<i64>>, now: i64) -> Result<usize, StorageError> {
        let origin_queue = origin_queue.to_owned();
        self.db
            .call(move |conn| {
                let tx = conn.transaction()?;
                let sql = "UPDATE queue_messages SET queue = origin_queue, origin_queue = NULL, attempts = 0,
                           dead_after_attempts = NULL, visible_at = ?2, leased = 0 WHERE origin_queue = ?1";
                let moved = match ids {
                    None => tx.execute(sql, params![origin_queue, now])?,
                    Some(ids) => {
                        let mut one = tx.prepare_cached(&format!("{sql} AND id = ?3"))?;
                        let mut moved = 0;
                        for id in ids {
                            moved += one.execute(params![origin_queue, now, id])?;
                        }
                        moved
                    }
                };
                tx.commit()?;
                Ok(moved)
            })
            .await
    }
}

/// `Some` when adding `messages` messages of `bytes` bytes would take `queue` past `capacity`.
fn past_capacity(
    conn: &Connection,
    queue: &str,
    messages: u64,
    bytes: u64,
    capacity: QueueCapacity,
) -> Result<Option<QueueFull>, StorageError> {
    let (held, held_bytes): (u64, u64) = conn
        .prepare_cached("SELECT messages, bytes FROM queue_sizes WHERE queue = ?1")?
        .query_row(params![queue], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .unwrap_or((0, 0));
    let full =
        held.saturating_add(messages) > capacity.max_messages || held_bytes.saturating_add(bytes) > capacity.max_bytes;
    Ok(full.then(|| QueueFull { queue: queue.to_owned(), messages: held, bytes: held_bytes }))
}

fn send(
    conn: &mut Connection,
    queue: &str,
    messages: &[NewMessage],
    now: i64,
    capacity: QueueCapacity,
) -> Result<Result<Vec<i64>, QueueFull>, StorageError> {
    let tx = conn.transaction()?;
    let bytes = messages.iter().map(|m| m.body.len() as u64).sum();
    if let Some(full) = past_capacity(&tx, queue, messages.len() as u64, bytes, capacity)? {
        return Ok(Err(full));
    }
    let mut ids = Vec::with_capacity(messages.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO queue_messages
               (queue, body, priority, enqueued_at, visible_at, correlation_id, parent_span)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for message in messages {
            let visible_at = now.saturating_add(i64::try_from(message.delay_ms).unwrap_or(i64::MAX));
            let span = span_column(message.parent_span);
            insert.execute(params![
                queue,
                message.body,
                message.priority,
                now,
                visible_at,
                message.correlation_id,
                span
            ])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(Ok(ids))
}

/// A span id as stored: its 64 bits as SQLite's signed integer, NULL for none.
fn span_column(span: u64) -> Option<i64> {
    (span != 0).then_some(span as i64)
}

fn lease(
    conn: &Connection,
    queue: &str,
    now: i64,
    limit: u32,
    lease_until: i64,
) -> Result<Vec<LeasedRow>, StorageError> {
    let mut statement = conn.prepare_cached(
        "UPDATE queue_messages SET visible_at = ?4, attempts = attempts + 1, leased = 1
         WHERE id IN (SELECT id FROM queue_messages WHERE queue = ?1 AND visible_at <= ?2
                      ORDER BY priority DESC, id LIMIT ?3)
         RETURNING id, body, attempts, priority, enqueued_at, correlation_id, parent_span",
    )?;
    let mut messages = statement
        .query_map(params![queue, now, limit, lease_until], |row| {
            Ok(LeasedRow {
                id: row.get(0)?,
                body: row.get(1)?,
                attempts: row.get(2)?,
                priority: row.get(3)?,
                enqueued_at: row.get(4)?,
                correlation_id: row.get(5)?,
                parent_span: row.get::<_, Option<i64>>(6)?.map_or(0, |span| span as u64),
                lease_until,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // RETURNING has no defined order.
    messages.sort_by_key(|m| (std::cmp::Reverse(m.priority), m.id));
    Ok(messages)
}

fn settle(conn: &mut Connection, outcomes: &[SettleRow], now: i64) -> Result<usize, StorageError> {
    let tx = conn.transaction()?;
    let mut stale = 0;
    {
        let mut ack =
            tx.prepare_cached("DELETE FROM queue_messages WHERE id = ?1 AND leased = 1 AND visible_at = ?2")?;
        let mut retry = tx.prepare_cached(
            "UPDATE queue_messages SET visible_at = ?3, leased = 0, last_error = ?4
             WHERE id = ?1 AND leased = 1 AND visible_at = ?2",
        )?;
        // A dead letter keeps the queue it first died in (a message dead-lettered again from a dead-letter queue's
        // own consumer still re-drives to its origin) and starts its attempts over in the new queue.
        let mut dead = tx.prepare_cached(
            "UPDATE queue_messages SET origin_queue = COALESCE(origin_queue, queue), queue = ?3, visible_at = ?4,
             leased = 0, dead_after_attempts = attempts, attempts = 0, last_error = ?5
             WHERE id = ?1 AND leased = 1 AND visible_at = ?2",
        )?;
        for SettleRow { id, lease_until, outcome } in outcomes {
            let applied = match outcome {
                Outcome::Ack => ack.execute(params![id, lease_until])?,
                Outcome::Retry { at, error } => retry.execute(params![id, lease_until, at, error])?,
                Outcome::DeadLetter { queue, reason } => dead.execute(params![id, lease_until, queue, now, reason])?,
            };
            stale += 1 - applied.min(1);
        }
    }
    tx.commit()?;
    Ok(stale)
}

fn stats(conn: &mut Connection, now: i64, also: &[String]) -> Result<Vec<QueueStats>, StorageError> {
    let mut by_name: std::collections::BTreeMap<String, QueueStats> = also
        .iter()
        .map(|queue| (queue.clone(), QueueStats { queue: queue.clone(), ..QueueStats::default() }))
        .collect();
    let mut statement = conn.prepare_cached(
        "SELECT queue, SUM(visible_at <= ?1), SUM(leased = 1 AND visible_at > ?1), SUM(leased = 0 AND visible_at > ?1),
                MIN(enqueued_at)
         FROM queue_messages GROUP BY queue",
    )?;
    let rows = statement.query_map(params![now], |row| {
        let counts = (row.get::<_, u64>(1)?, row.get::<_, u64>(2)?, row.get::<_, u64>(3)?);
        Ok((row.get::<_, String>(0)?, counts, row.get::<_, Option<i64>>(4)?))
    })?;
    for row in rows {
        let (queue, (ready, in_flight, delayed), oldest) = row?;
        let stats = by_name.entry(queue.clone()).or_insert_with(|| QueueStats { queue, ..QueueStats::default() });
        (stats.ready, stats.in_flight, stats.delayed, stats.oldest_enqueued_at) = (ready, in_flight, delayed, oldest);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(body: &str, priority: i32) -> NewMessage {
        NewMessage { body: body.as_bytes().to_vec(), delay_ms: 0, priority, correlation_id: None, parent_span: 0 }
    }

    const ROOMY: QueueCapacity = QueueCapacity { max_messages: 1_000, max_bytes: 1 << 20 };

    #[tokio::test]
    async fn a_settle_applies_only_under_the_lease_that_delivered_the_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = QueueDb::new(Database::open(dir.path()).expect("db"));
        let ids =
            queues.send("q", vec![message("a", 0), message("b", 5)], 1_000, ROOMY).await.expect("send").expect("room");
        let leased = queues.lease("q", 1_000, 10, 2_000).await.expect("lease");
        // Highest priority first.
        assert_eq!(leased.iter().map(|m| m.id).collect::<Vec<_>>(), vec![ids[1], ids[0]]);
        let stale_lease = SettleRow { id: ids[0], lease_until: 1_999, outcome: Outcome::Ack };
        let good = SettleRow { id: ids[1], lease_until: 2_000, outcome: Outcome::Ack };
        assert_eq!(queues.settle(vec![stale_lease, good], 1_500).await.expect("settle"), 1);
        let stats = queues.stats(1_500, vec![]).await.expect("stats");
        assert_eq!((stats[0].in_flight, stats[0].ready), (1, 0), "{stats:?}");
    }

    #[tokio::test]
    async fn a_message_keeps_the_span_that_sent_it_all_64_bits_of_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = QueueDb::new(Database::open(dir.path()).expect("db"));
        // A span id with its top bit set is a negative number to SQLite: it must come back as it went in.
        let high = 0xf00d_0000_0000_00ab_u64;
        let sent = NewMessage { parent_span: high, correlation_id: Some("work".into()), ..message("a", 0) };
        queues.send("q", vec![sent, message("b", 0)], 1_000, ROOMY).await.expect("send").expect("room");
        queues.fan_out(vec!["r".into()], b"c".to_vec(), None, 7, 1_000, ROOMY).await.expect("fan out").expect("room");
        let leased = queues.lease("q", 1_000, 10, 2_000).await.expect("lease");
        assert_eq!(leased.iter().map(|m| m.parent_span).collect::<Vec<_>>(), [high, 0]);
        let leased = queues.lease("r", 1_000, 10, 2_000).await.expect("lease");
        assert_eq!(leased[0].parent_span, 7);
    }

    #[tokio::test]
    async fn dead_letters_keep_their_origin_and_redrive_back_to_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = QueueDb::new(Database::open(dir.path()).expect("db"));
        let ids = queues.send("q", vec![message("poison", 0)], 1_000, ROOMY).await.expect("send").expect("room");
        let leased = queues.lease("q", 1_000, 10, 2_000).await.expect("lease");
        let dead = Outcome::DeadLetter { queue: "q-dlq".into(), reason: "bad".into() };
        queues
            .settle(vec![SettleRow { id: ids[0], lease_until: leased[0].lease_until, outcome: dead }], 1_100)
            .await
            .expect("settle");
        let letters = queues.dead_letters("q", 10, 0, 1 << 20).await.expect("letters").dead_letters;
        assert_eq!((letters[0].queue.as_str(), letters[0].error.as_deref()), ("q-dlq", Some("bad")));
        assert_eq!(queues.redrive("q", None, 1_200).await.expect("redrive"), 1);
        let readiness = queues.readiness("q", 1_200, 10).await.expect("readiness");
        assert_eq!(readiness.ready, 1);
    }

    #[tokio::test]
    async fn a_queue_at_its_capacity_refuses_a_send_whole_and_counts_follow_every_move() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = QueueDb::new(Database::open(dir.path()).expect("db"));
        let small = QueueCapacity { max_messages: 3, max_bytes: 1 << 20 };
        queues.send("q", vec![message("a", 0), message("b", 0)], 1, small).await.expect("send").expect("room");
        let full = queues.send("q", vec![message("c", 0), message("d", 0)], 1, small).await.expect("send");
        assert_eq!(full, Err(QueueFull { queue: "q".into(), messages: 2, bytes: 2 }));
        // Nothing of the refused send was stored; one more still fits.
        queues.send("q", vec![message("c", 0)], 1, small).await.expect("send").expect("room");
        let leased = queues.lease("q", 1, 10, 100).await.expect("lease");
        let settles: Vec<SettleRow> =
            leased.iter().map(|m| SettleRow { id: m.id, lease_until: m.lease_until, outcome: Outcome::Ack }).collect();
        queues.settle(settles, 2).await.expect("settle");
        // Acked messages leave the count: the queue takes three again.
        let ids = queues.send("q", vec![message("x", 0); 3], 3, small).await.expect("send").expect("room");
        assert_eq!(ids.len(), 3);
        let bytes = QueueCapacity { max_messages: 100, max_bytes: 4 };
        let full =
            queues.fan_out(vec!["q".into(), "r".into()], b"yy".to_vec(), None, 0, 4, bytes).await.expect("fan out");
        assert!(matches!(full, Err(QueueFull { ref queue, .. }) if queue == "q"), "{full:?}");
        assert_eq!(
            queues.stats(5, vec![]).await.expect("stats").iter().map(|s| s.queue.as_str()).collect::<Vec<_>>(),
            ["q"]
        );
    }

    #[tokio::test]
    async fn dead_letters_come_in_pages_bounded_by_count_and_bytes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let queues = QueueDb::new(Database::open(dir.path()).expect("db"));
        let bodies: Vec<NewMessage> = (0..5).map(|n| message(&"z".repeat(100 * (n + 1)), 0)).collect();
        queues.send("q", bodies, 1, ROOMY).await.expect("send").expect("room");
        let leased = queues.lease("q", 1, 10, 100).await.expect("lease");
        let dead = |m: &LeasedRow| SettleRow {
            id: m.id,
            lease_until: m.lease_until,
            outcome: Outcome::DeadLetter { queue: "q-dlq".into(), reason: "no".into() },
        };
        queues.settle(leased.iter().map(dead).collect(), 2).await.expect("settle");
        let first = queues.dead_letters("q", 2, 0, 1 << 20).await.expect("page");
        assert_eq!(first.dead_letters.len(), 2);
        let second = queues
            .dead_letters("q", 10, first.next_after.expect("more").parse().expect("a row id"), 250)
            .await
            .expect("page");
        // 300 + ... bytes: the byte bound stops the page after the first letter that reaches it.
        assert_eq!(
            second.dead_letters.len(),
            1,
            "{:?}",
            second.dead_letters.iter().map(|l| l.body_len).collect::<Vec<_>>()
        );
        let rest = queues
            .dead_letters("q", 10, second.next_after.expect("more").parse().expect("a row id"), 1 << 20)
            .await
            .expect("page");
        assert_eq!((rest.dead_letters.len(), rest.next_after), (2, None));
    }
}
