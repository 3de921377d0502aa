//! Several steps at once: `wf.join(NAME, a, b)`, `wf.join3` and `wf.join_all` run their steps concurrently in one
//! resume. Each step's result is journaled as it ends, so the journal holds a join's steps in the order they ended,
//! which may differ from one run to the next: inside a join, replay finds each step by its name among the join's
//! entries instead of by position. A join's steps that fail are retried together, as one (`join:NAME`): the join
//! runs again, the steps already journaled answer from the journal, and every step that failed gets its next
//! attempt (each step's own `retries` still bound its attempts; the soonest of their backoffs is the join's).

use super::{State, Workflow, suspended};
use crate::{Error, Result};
use edgefn_manifest::workflow::{Entry, JOIN_PREFIX, Next, StepError};
use std::future::Future;
use std::time::Duration;

/// A join under way.
#[derive(Debug)]
pub(super) struct JoinState {
    name: String,
    /// Where its entries begin in the journal, and how many steps it has (at most that many entries).
    start: usize,
    size: usize,
    /// How long the journal was when it began: entries past that are its steps' new ones.
    journal_len: usize,
    /// Journal positions its steps replayed from.
    taken: Vec<usize>,
    /// Steps that asked to run (replayed or not).
    asked: usize,
    /// Which attempt of the join this is (1, or one more than its failed ones), counted before its steps journal.
    attempt: u32,
    /// Steps whose attempt failed and are retried with the join: name, error, and the wait they asked for.
    failed: Vec<(String, StepError, Duration)>,
}

impl JoinState {
    /// What the join's retry is called (its steps' attempts are counted together under it).
    pub(super) fn retry_name(&self) -> String {
        format!("{JOIN_PREFIX}{}", self.name)
    }

    pub(super) fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(super) fn failed(&mut self, step: &str, error: StepError, delay: Duration) {
        self.failed.push((step.to_owned(), error, delay));
    }
}

/// Replay inside a join: the join's entry for `expected` (a step, by name), `Ok(None)` for a step to run now, or
/// the error that ends the call when the code asks for something a join cannot hold.
pub(super) fn replay_member(state: &mut State, expected: &Entry) -> Result<Option<Entry>> {
    let Some(join) = state.join.as_mut() else { return Ok(None) };
    let Entry::Step { name: wanted, .. } = expected else {
        let error = format!(
            "join `{}` runs only steps (wf.step, wf.invoke) together; its code asks for {}",
            join.name,
            expected.describe()
        );
        state.next = Some(Next::Failed { error: StepError { status: 500, message: error } });
        return Err(suspended());
    };
    join.asked += 1;
    if join.asked > join.size {
        let error = format!(
            "join `{}` has {} futures but they ask for more steps: each future of a join is one step",
            join.name, join.size
        );
        state.next = Some(Next::Failed { error: StepError { status: 500, message: error } });
        return Err(suspended());
    }
    let window = join.start..(join.start + join.size).min(join.journal_len);
    let found = window.clone().find(|at| {
        !join.taken.contains(at) && matches!(&state.journal[*at], Entry::Step { name, .. } if name == wanted)
    });
    match found {
        Some(at) => {
            join.taken.push(at);
            Ok(Some(state.journal[at].clone()))
        }
        // A cancelled run stops where it was: it starts no step of a join it had not ended.
        None if state.cancelling && !state.compensating => Err(suspended()),
        None => Ok(None),
    }
}

impl Workflow {
    /// Runs the steps `a` and `b` (futures of `wf.step` or `wf.invoke`, one step each) at once, as join `name`:
    /// both their results, or the first error in their order (after both ended: a step that succeeded is journaled
    /// even when the other failed). See the module docs for how replay and retries work.
    pub async fn join<A, B>(
        &self,
        name: &str,
        a: impl Future<Output = Result<A>>,
        b: impl Future<Output = Result<B>>,
    ) -> Result<(A, B)> {
        self.begin_join(name, 2)?;
        let (a, b) = futures::future::join(a, b).await;
        self.end_join()?;
        Ok((a?, b?))
    }

    /// [`Workflow::join`] of three steps.
    pub async fn join3<A, B, C>(
        &self,
        name: &str,
        a: impl Future<Output = Result<A>>,
        b: impl Future<Output = Result<B>>,
        c: impl Future<Output = Result<C>>,
    ) -> Result<(A, B, C)> {
        self.begin_join(name, 3)?;
        let (a, b, c) = futures::future::join3(a, b, c).await;
        self.end_join()?;
        Ok((a?, b?, c?))
    }

    /// [`Workflow::join`] of any number of steps of one type: their results in their order.
    pub async fn join_all<T, F>(&self, name: &str, steps: Vec<F>) -> Result<Vec<T>>
    where
        F: Future<Output = Result<T>>,
    {
        self.begin_join(name, steps.len())?;
        let results = futures::future::join_all(steps).await;
        self.end_join()?;
        results.into_iter().collect()
    }

    fn begin_join(&self, name: &str, size: usize) -> Result<()> {
        let mut state = self.state.borrow_mut();
        if state.next.is_some() {
            return Err(suspended());
        }
        if let Some(outer) = &state.join {
            let error = format!("join `{name}` is inside join `{}`: joins do not nest", outer.name);
            state.next = Some(Next::Failed { error: StepError { status: 500, message: error } });
            return Err(suspended());
        }
        // Entries this call added but did not journal yet (a `wf.now()` just before) come before the join's.
        let start =
            if state.cursor >= state.journal.len() { state.journal.len() + state.added.len() } else { state.cursor };
        let journal_len = state.journal.len();
        let retry_name = format!("{JOIN_PREFIX}{name}");
        let attempt = match &state.retry {
            Some(retry) if retry.name == retry_name => retry.attempts + 1,
            _ => 1,
        };
        state.join = Some(JoinState {
            name: name.to_owned(),
            start,
            size,
            journal_len,
            taken: Vec::new(),
            asked: 0,
            attempt,
            failed: Vec::new(),
        });
        Ok(())
    }

    /// Ends the join: the call goes on past its entries, or ends to retry its failed steps (or because it must).
    fn end_join(&self) -> Result<()> {
        let mut state = self.state.borrow_mut();
        let Some(join) = state.join.take() else { return Err(Error::internal("no join under way")) };
        // Entries the join had before it began that no step of it took: the code's steps are not the journal's.
        let window = join.start..(join.start + join.size).min(join.journal_len);
        // (Only once every step asked: a step cut short, the call ending before it began, took nothing.)
        let all_asked = join.asked == join.size;
        if let Some(left) = window.clone().find(|at| !join.taken.contains(at))
            && all_asked
            && matches!(state.next, None | Some(Next::Continue))
        {
            let error = format!(
                "non-deterministic: the journal has {} in join `{}` (at position {}), which none of its steps now is",
                state.journal[left].describe(),
                join.name,
                left + 1
            );
            state.next = Some(Next::NonDeterministic { error });
        }
        if !join.failed.is_empty() && matches!(state.next, None | Some(Next::Continue)) {
            let attempt = join.attempt;
            let delay = join.failed.iter().map(|(_, _, delay)| *delay).min().unwrap_or_default();
            let at_ms = state.now_ms.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
            let (first, error, _) = &join.failed[0];
            let mut message = format!("step `{first}`: {}", error.message);
            if join.failed.len() > 1 {
                let others: Vec<&str> = join.failed[1..].iter().map(|(name, ..)| name.as_str()).collect();
                message.push_str(&format!(" (and steps `{}` failed too)", others.join("`, `")));
            }
            let error = StepError { status: error.status, message };
            state.next = Some(Next::Retry { name: join.retry_name(), attempt, error, at_ms });
        }
        if state.next.is_some() {
            return Err(suspended());
        }
        let past = join.start + join.taken.len();
        state.cursor = state.cursor.max(past);
        if state.retry.as_ref().is_some_and(|retry| retry.name == join.retry_name()) {
            state.retry = None;
        }
        Ok(())
    }
}
