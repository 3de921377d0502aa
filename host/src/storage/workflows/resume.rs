//! What a resume does to its run: [`WorkflowDb::prepare_resume`] before the call, and [`WorkflowDb::apply_as`] for
//! each step it journals under its lease and for what it answers at the end; the other half of [`WorkflowDb`].

use super::{
    Answer, Applied, Command, MAX_JOURNAL_BYTES, MAX_JOURNAL_ENTRIES, Prepared, RunState, WorkflowDb, cancel_now,
    encode, ended, error_text, fail, load_run, read_journal, resolve_wait, retry_later, set_state, wait_for,
};
use crate::storage::StorageError;
use edgefn_manifest::workflow::{Entry, Next, Outcome, child_event, child_run_id};
use rusqlite::{OptionalExtension as _, params};

impl WorkflowDb {
    /// What a resume of run `id` at `now` starts from, in one transaction: a run past its age limit fails (before
    /// a wait it is in could time out and let it go on), a wait whose time ran out resolves with nothing, and then
    /// the run and its journal, if it is due.
    pub async fn prepare_resume(&self, id: &str, now: i64) -> Result<Prepared, StorageError> {
        match self.execute(Command::PrepareResume { id: id.to_owned(), now, max_age_ms: self.max_age_ms }).await? {
            Answer::Prepared(prepared) => Ok(prepared),
            other => Err(other.unexpected("resume")),
        }
    }

    /// Records what a resume of run `id` came to, if the run is where the resume found it (not finished, its
    /// journal `journal_len` entries long); `false` otherwise (a cancel or another resume came first: nothing is
    /// written). A journal past its limits fails the run instead, saying which.
    pub async fn apply(&self, id: &str, journal_len: usize, outcome: Outcome, now: i64) -> Result<bool, StorageError> {
        Ok(self.apply_as(id, journal_len, outcome, now, None).await? != Applied::Stale)
    }

    /// [`WorkflowDb::apply`] for a resume that was called `cancelling` or not (`None`: whatever the run is now). A
    /// run cancelled while a resume that did not know it was under way keeps what that resume did, but goes on to
    /// its compensation (due at once, `cancelling`) instead of waiting or retrying as the resume said.
    pub async fn apply_as(
        &self,
        id: &str,
        journal_len: usize,
        outcome: Outcome,
        now: i64,
        resume_cancelling: Option<bool>,
    ) -> Result<Applied, StorageError> {
        let id = id.to_owned();
        let command = Command::Apply { id, journal_len, outcome, now, resume_cancelling, max_age_ms: self.max_age_ms };
        match self.execute(command).await? {
            Answer::Applied(applied) => Ok(applied),
            other => Err(other.unexpected("journal write")),
        }
    }
}

/// [`WorkflowDb::prepare_resume`] in `tx`, for runs older than `max_age` failing.
pub(super) fn prepare_resume_in(
    tx: &rusqlite::Connection,
    id: &str,
    now: i64,
    max_age: i64,
) -> Result<Prepared, StorageError> {
    let Some(mut run) = load_run(tx, id)? else { return Ok(Prepared::NotDue) };
    if run.state.is_finished() || run.due_at.is_none_or(|due| due > now) {
        return Ok(Prepared::NotDue);
    }
    if now.saturating_sub(run.created_at) >= max_age {
        let error = format!("the run is older than its limit ([workflows] max_run_age_s = {})", max_age / 1000);
        fail(tx, id, &error, false, now)?;
        return Ok(Prepared::Expired);
    }
    if run.state == RunState::Waiting {
        resolve_wait(tx, id, None)?;
        set_state(tx, id, RunState::Ready, Some(now), now)?;
        run = load_run(tx, id)?.ok_or_else(|| StorageError::Corrupt(format!("run `{id}` vanished")))?;
    }
    let journal = read_journal(tx, id)?;
    Ok(Prepared::Resume(Box::new(run), journal))
}

/// [`WorkflowDb::apply_as`] in `tx`, for runs older than `max_age` failing.
pub(super) fn apply_in(
    tx: &rusqlite::Connection,
    id: &str,
    journal_len: usize,
    outcome: Outcome,
    now: i64,
    resume_cancelling: Option<bool>,
    max_age: i64,
) -> Result<Applied, StorageError> {
    if matches!(outcome.next, Next::Continue)
        && let Some(applied) = journal_and_go_on(tx, id, journal_len, &outcome.entries, now)?
    {
        return Ok(applied);
    }
    // Only what the check needs: not the run's input, which may be a megabyte of JSON.
    let found: Option<(String, i64, i64, i64)> = tx
        .prepare_cached("SELECT state, journal_entries, journal_bytes, created_at FROM workflow_runs WHERE id = ?1")?
        .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
        .optional()?;
    let Some((state, count, bytes, created_at)) = found else { return Ok(Applied::Stale) };
    // Nothing a run waits for ends after its age limit: it is due then, and fails (`prepare_resume`).
    let deadline = created_at.saturating_add(max_age);
    let outcome = Outcome { next: outcome.next.due_by(deadline), ..outcome };
    let (count, bytes) = (count.max(0) as usize, bytes.max(0) as usize);
    if RunState::parse(&state).is_none_or(RunState::is_finished) || count != journal_len {
        return Ok(Applied::Stale);
    }
    let cancelling = RunState::parse(&state) == Some(RunState::Cancelling);
    let applied = Applied::Applied { cancelling };
    let outcome = match outcome.next {
        Next::Done { .. } | Next::Failed { .. } | Next::NonDeterministic { .. } | Next::Cancelled { .. } => outcome,
        _ if cancelling && resume_cancelling == Some(false) => Outcome { next: Next::Continue, ..outcome },
        _ => outcome,
    };
    let mut added_bytes = 0;
    for (offset, entry) in outcome.entries.iter().enumerate() {
        let text = encode(entry);
        added_bytes += text.len();
        tx.prepare_cached("INSERT INTO workflow_journal (run, seq, entry, at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, (count + offset) as i64, text, now])?;
    }
    let entries = count + outcome.entries.len();
    let within_limits = entries <= MAX_JOURNAL_ENTRIES && bytes + added_bytes <= MAX_JOURNAL_BYTES;
    if !outcome.entries.is_empty() {
        tx.prepare_cached(
            "UPDATE workflow_runs SET journal_entries = journal_entries + ?2,
                 journal_bytes = journal_bytes + ?3 WHERE id = ?1",
        )?
        .execute(params![id, outcome.entries.len() as i64, added_bytes as i64])?;
    }
    if !within_limits {
        let error = format!(
            "the run's journal is past its limit ({entries} entries of at most {MAX_JOURNAL_ENTRIES}, \
             {} bytes of at most {MAX_JOURNAL_BYTES})",
            bytes + added_bytes
        );
        fail(tx, id, &error, false, now)?;
        return Ok(applied);
    }
    match outcome.next {
        // A cancelled run's compensation goes on (or a resume that began before the cancel ended): it
        // stays cancelling, due at once.
        Next::Continue if cancelling => set_state(tx, id, RunState::Cancelling, Some(now), now)?,
        // Code that sleeps or waits while cancelling does not run compensation (an SDK from before
        // it did): the run ends cancelled without it.
        Next::Sleep { .. } | Next::Wait { .. } | Next::Child { .. } if cancelling => {
            cancel_now(tx, id, "cancelled (its code ran no compensation)", now)?
        }
        // A compensation's attempt failed: retried at its backoff, the run still cancelling.
        Next::Retry { name, attempt, error, at_ms } if cancelling => {
            retry_later(tx, id, RunState::Cancelling, (&name, attempt, &error), at_ms, now)?
        }
        Next::Cancelled { failed } => {
            let error = if failed.is_empty() {
                "cancelled: its compensation ran".to_owned()
            } else {
                format!("cancelled: compensation {} failed after its retries", failed.join(", "))
            };
            cancel_now(tx, id, &error, now)?;
        }
        Next::Continue => set_state(tx, id, RunState::Ready, Some(now), now)?,
        Next::Retry { name, attempt, error, at_ms } => {
            retry_later(tx, id, RunState::Retrying, (&name, attempt, &error), at_ms, now)?
        }
        Next::Sleep { until_ms } => set_state(tx, id, RunState::Sleeping, Some(until_ms), now)?,
        Next::Wait { event, until_ms } => wait_for(tx, id, &event, until_ms, now)?,
        Next::Child { name, workflow, input } => {
            // Started in the same transaction as the parent's wait: once, however often this replays.
            let child = child_run_id(id, &name);
            // Not inserted: the id is another run's (this apply cannot have started it before: the
            // journal it checked would have had this wait).
            let started = tx.execute(
                "INSERT OR IGNORE INTO workflow_runs (id, component, function, input, state, due_at,
                     created_at, updated_at, version, parent, parent_event)
                 SELECT ?2, component, ?3, ?4, 'ready', ?5, ?5, ?5, version, id, ?6
                 FROM workflow_runs WHERE id = ?1",
                params![id, child, workflow, encode(&input), now, child_event(&name)],
            )?;
            if started == 1 {
                wait_for(tx, id, &child_event(&name), deadline, now)?;
            } else {
                fail(tx, id, &format!("child run id `{child}` is taken by another run"), false, now)?;
            }
        }
        Next::Done { result } => {
            tx.execute(
                "UPDATE workflow_runs SET state = 'done', due_at = NULL, waiting_for = NULL,
                     retry_step = NULL, result = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, encode(&result), now],
            )?;
            ended(tx, id, now)?;
        }
        Next::Failed { error } => fail(tx, id, &error_text(&error), false, now)?,
        Next::NonDeterministic { error } => fail(tx, id, &error, true, now)?,
    }
    Ok(applied)
}

/// The common case of [`WorkflowDb::apply_as`], a step ended and the run goes on (each step of a resume but its
/// last), in as little as SQLite can do it: one UPDATE that checks the run is where the resume found it and within
/// its limits, and the journal's inserts. It leaves `due_at` as it is (the run was due, so it stays due: a crash
/// before the resume's end resumes it at once) so that no index changes. `None` when the check fails: the caller
/// then takes the slow path, which says why.
fn journal_and_go_on(
    conn: &rusqlite::Connection,
    id: &str,
    journal_len: usize,
    entries: &[Entry],
    now: i64,
) -> Result<Option<Applied>, StorageError> {
    let texts: Vec<String> = entries.iter().map(encode).collect();
    let added_bytes: usize = texts.iter().map(String::len).sum();
    let state: Option<String> = conn
        .prepare_cached(
            "UPDATE workflow_runs SET journal_entries = journal_entries + ?2, journal_bytes = journal_bytes + ?3,
                 state = CASE state WHEN 'cancelling' THEN 'cancelling' ELSE 'ready' END, waiting_for = NULL,
                 retry_step = NULL, retry_attempts = 0, updated_at = ?4
             WHERE id = ?1 AND journal_entries = ?5 AND due_at IS NOT NULL AND due_at <= ?4
                 AND state NOT IN ('done', 'failed', 'cancelled')
                 AND journal_entries + ?2 <= ?6 AND journal_bytes + ?3 <= ?7
             RETURNING state",
        )?
        .query_row(
            params![
                id,
                texts.len() as i64,
                added_bytes as i64,
                now,
                journal_len as i64,
                MAX_JOURNAL_ENTRIES as i64,
                MAX_JOURNAL_BYTES as i64
            ],
            |row| row.get(0),
        )
        .optional()?;
    let Some(state) = state else { return Ok(None) };
    for (offset, text) in texts.iter().enumerate() {
        conn.prepare_cached("INSERT INTO workflow_journal (run, seq, entry, at) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, (journal_len + offset) as i64, text, now])?;
    }
    Ok(Some(Applied::Applied { cancelling: state == "cancelling" }))
}
