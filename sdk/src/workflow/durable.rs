//! The workflow function's side of a run: [`Workflow`] (steps, sleeps, waits, journaled values) replaying and
//! extending the journal the host hands each resume (`edgefn_manifest::workflow` has the protocol).

use crate::rt::LocalBoxFuture;
use crate::{Error, Result};
use edgefn_manifest::workflow::{COMPENSATION_PREFIX, Call, Entry, Next, Outcome, Retry, StepError};
use join::JoinState;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The status of the error a workflow's futures return when the run must wait (propagate it with `?`).
const SUSPENDED_STATUS: u16 = 503;

/// How a step is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepOptions {
    /// Attempts after the first (3: four attempts in all).
    pub retries: u32,
    /// The wait before the first retry; each next one doubles, up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long one attempt may take; past it the attempt fails (504, retried like any other failure). None: the
    /// host's invocation timeout bounds it.
    pub timeout: Option<Duration>,
}

impl Default for StepOptions {
    fn default() -> Self {
        Self { retries: 3, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(300), timeout: None }
    }
}

impl StepOptions {
    /// No retries: one attempt.
    pub fn once() -> Self {
        Self { retries: 0, ..Self::default() }
    }

    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// Fails an attempt that takes longer than `limit` (a 504, retried as the other failures are).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// The first retry's wait, and the most any retry waits.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// The wait before attempt `next` (2 for the first retry).
    fn delay_before(&self, next: u32) -> Duration {
        let doublings = next.saturating_sub(2).min(32);
        self.backoff.saturating_mul(1u32 << doublings.min(31)).min(self.max_backoff)
    }
}

/// One attempt of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    /// `RUN:STEP:ATTEMPT`: the same for a re-run of an attempt that crashed, another for the next attempt.
    pub idempotency_key: String,
}

/// What a cancelled run does to undo a step: registered with [`Workflow::on_cancel`].
type Compensation = Box<dyn FnOnce() -> LocalBoxFuture<'static, Result<()>>>;

/// The compensations registered so far, oldest first.
#[derive(Default)]
struct Compensations(Vec<(String, Compensation)>);

impl std::fmt::Debug for Compensations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(name, _)| name)).finish()
    }
}

#[derive(Debug)]
struct State {
    run: String,
    journal: Vec<Entry>,
    /// The next journal entry replay reaches.
    cursor: usize,
    retry: Option<Retry>,
    now_ms: i64,
    /// Entries this call adds that are not journaled yet (`now` and `random` ones, and a step, sleep or wait).
    added: Vec<Entry>,
    /// What lets this call journal the steps it ends as it goes (see `edgefn_manifest::workflow`).
    lease: Option<String>,
    /// The run was cancelled: the code replays to where it was, then its compensations run.
    cancelling: bool,
    /// The compensations are running (replay goes through their journaled steps as usual).
    compensating: bool,
    compensations: Compensations,
    /// The `join` under way: its steps replay by name, not position, and are retried together.
    join: Option<JoinState>,
    /// Set once the call has done its new piece of work (or found the run must wait): it ends here.
    next: Option<Next>,
}

/// A run of a workflow, as its function sees it. Cheap to clone (a handle).
#[derive(Debug, Clone)]
pub struct Workflow {
    state: Rc<RefCell<State>>,
}

fn suspended() -> Error {
    Error::new(SUSPENDED_STATUS, "the workflow run waits here; it resumes in a fresh instance")
}

impl Workflow {
    fn new(call: Call) -> Self {
        let state = State {
            run: call.run,
            journal: call.journal,
            cursor: 0,
            retry: call.retry,
            now_ms: call.now_ms,
            added: Vec::new(),
            lease: call.lease,
            cancelling: call.cancelling,
            compensating: false,
            compensations: Compensations::default(),
            join: None,
            next: None,
        };
        Self { state: Rc::new(RefCell::new(state)) }
    }

    /// The run's id (its logs' correlation id).
    pub fn run_id(&self) -> String {
        self.state.borrow().run.clone()
    }

    /// The next journal entry on replay (checked against `expected`), `Ok(None)` when the journal is used up, or the
    /// error that ends the call (the run already waits, or the code asks for something else than the journal has).
    fn replay(&self, expected: &Entry) -> Result<Option<Entry>> {
        let mut state = self.state.borrow_mut();
        if state.next.is_some() {
            return Err(suspended());
        }
        if state.cancelling && !state.compensating {
            // A cancelled run's code stops where the run was: at the journal's end, or where its compensations
            // began journaling on an earlier resume.
            let at_compensation = match state.journal.get(state.cursor) {
                None => true,
                Some(Entry::Step { name, .. }) => name.starts_with(COMPENSATION_PREFIX),
                Some(_) => false,
            };
            if at_compensation && state.join.is_none() {
                return Err(suspended());
            }
        }
        if state.join.is_some() {
            return join::replay_member(&mut state, expected);
        }
        let Some(entry) = state.journal.get(state.cursor).cloned() else { return Ok(None) };
        let same = match (&entry, expected) {
            (Entry::Step { name: a, .. }, Entry::Step { name: b, .. }) => a == b,
            (Entry::Event { name: a, .. }, Entry::Event { name: b, .. }) => a == b,
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        };
        if !same {
            let error = format!(
                "non-deterministic: the journal has {} at position {} where the code now asks for {}",
                entry.describe(),
                state.cursor + 1,
                expected.describe()
            );
            state.next = Some(Next::NonDeterministic { error });
            return Err(suspended());
        }
        state.cursor += 1;
        Ok(Some(entry))
    }

    /// Ends this call with `next`, adding `entry` (if any) to the journal. A cancelled run that would wait (a sleep
    /// or an event it was waiting for when it was cancelled) stops here instead, for its compensations.
    fn stop(&self, entry: Option<Entry>, next: Next) -> Error {
        let mut state = self.state.borrow_mut();
        let waits = matches!(next, Next::Sleep { .. } | Next::Wait { .. } | Next::Retry { .. } | Next::Child { .. });
        if state.cancelling && !state.compensating && waits {
            return suspended();
        }
        state.added.extend(entry);
        state.next = Some(next);
        suspended()
    }

    /// Registers what undoes the work done so far if the run is cancelled (`edgefn workflows cancel`): on cancel,
    /// the code replays to where the run was, then each registered compensation runs as a step of its own
    /// (`compensate:NAME`, journaled once, retried like a step), newest first, and the run ends cancelled. Register
    /// right after the step it undoes; registering is not journaled, so it must happen on every replay alike.
    pub fn on_cancel<F, Fut>(&self, name: &str, undo: F)
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<()>> + 'static,
    {
        let undo: Compensation = Box::new(move || Box::pin(undo()));
        self.state.borrow_mut().compensations.0.push((name.to_owned(), undo));
    }

    /// Runs the compensations registered so far, newest first, each as a journaled step (`compensate:NAME`, retried,
    /// run once), and forgets them: what the code calls when it undoes its work itself (after a later step failed),
    /// so that a cancel meanwhile undoes nothing twice. Errs when one failed after its retries (naming it), or when
    /// the run must wait here (propagate that with `?`).
    pub async fn undo(&self) -> Result<()> {
        let failed = self.run_compensations().await?;
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::internal(format!("compensation {} failed after its retries", failed.join(", "))))
        }
    }

    /// Runs the registered compensations newest first, each as a journaled step, and forgets each as it goes;
    /// answers those that failed after their retries, or the error that ends the call when the run must wait.
    async fn run_compensations(&self) -> Result<Vec<String>> {
        let was_compensating = std::mem::replace(&mut self.state.borrow_mut().compensating, true);
        let mut failed = Vec::new();
        loop {
            let next = self.state.borrow_mut().compensations.0.pop();
            let Some((name, undo)) = next else { break };
            let step = format!("{COMPENSATION_PREFIX}{name}");
            match self.step(&step, StepOptions::default(), |_| undo()).await {
                Ok(()) => {}
                // Suspended: the resume ends here and goes on next time (the step is journaled or retried then).
                Err(error) if self.state.borrow().next.is_some() => return Err(error),
                Err(_) => failed.push(name),
            }
        }
        self.state.borrow_mut().compensating = was_compensating;
        Ok(failed)
    }

    /// A cancelled run's end: the compensations still registered run, and the run ends cancelled (or the call ends
    /// where one must wait).
    async fn compensate(&self) -> Result<Vec<u8>> {
        let failed = self.run_compensations().await.unwrap_or_default();
        let mut state = self.state.borrow_mut();
        let next = state.next.take().unwrap_or(Next::Cancelled { failed });
        encode(Outcome { entries: std::mem::take(&mut state.added), next })
    }

    /// Runs the step `name` once, ever: its journaled result on replay, else an attempt of `run` (retried as
    /// `options` says when it fails).
    pub async fn step<T, F, Fut>(&self, name: &str, options: StepOptions, run: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Attempt) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let expected = Entry::Step { name: name.to_owned(), value: None, error: None, attempts: 0 };
        if let Some(Entry::Step { value, error, .. }) = self.replay(&expected)? {
            return match (value, error) {
                (_, Some(error)) => Err(Error::new(error.status, error.message)),
                (value, None) => serde_json::from_value(value.unwrap_or(serde_json::Value::Null))
                    .map_err(|e| Error::internal(format!("step `{name}`: its journaled result does not decode: {e}"))),
            };
        }
        let (run_id, retry, now_ms) = {
            let state = self.state.borrow();
            (state.run.clone(), state.retry.clone(), state.now_ms)
        };
        // Inside a join, the join is what is retried (its steps together).
        let (retried_as, join_attempt) = match self.state.borrow().join.as_ref() {
            Some(join) => (join.retry_name(), Some(join.attempt())),
            None => (name.to_owned(), None),
        };
        let failed_before = match retry {
            Some(retry) if retry.name == retried_as => retry.attempts,
            Some(retry) => {
                let error = format!(
                    "non-deterministic: step `{}` was being retried where the code now asks for step `{name}`",
                    retry.name
                );
                return Err(self.stop(None, Next::NonDeterministic { error }));
            }
            None => 0,
        };
        // (A join counts its attempts from when it began: a step of it that journaled meanwhile ended the retry.)
        let failed_before = join_attempt.map_or(failed_before, |attempt| attempt - 1);
        let number = failed_before + 1;
        let attempt = Attempt { number, idempotency_key: format!("{run_id}:{name}:{number}") };
        let outcome = match options.timeout {
            None => run(attempt).await,
            Some(limit) => crate::rt::timeout(limit, run(attempt))
                .await
                .unwrap_or_else(|elapsed| Err(Error::new(504, format!("step `{name}`: attempt {number} {elapsed}")))),
        };
        let (entry, next) = match &outcome {
            Ok(value) => {
                let value = serde_json::to_value(value)
                    .map_err(|e| Error::internal(format!("step `{name}`: its result does not encode: {e}")))?;
                let entry = Entry::Step { name: name.to_owned(), value: Some(value), error: None, attempts: number };
                (Some(entry), Next::Continue)
            }
            Err(error) => {
                let retryable = !(400..500).contains(&error.status());
                let step_error = StepError { status: error.status(), message: error.message().to_owned() };
                if retryable && number <= options.retries {
                    let delay = options.delay_before(number + 1);
                    if let Some(join) = self.state.borrow_mut().join.as_mut() {
                        // Retried with the join's other failed steps once the join has run all of them.
                        join.failed(name, step_error, delay);
                        return Err(suspended());
                    }
                    let delay = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    let at_ms = now_ms.saturating_add(delay);
                    (None, Next::Retry { name: name.to_owned(), attempt: number, error: step_error, at_ms })
                } else {
                    let entry =
                        Entry::Step { name: name.to_owned(), value: None, error: Some(step_error), attempts: number };
                    (Some(entry), Next::Continue)
                }
            }
        };
        let lease = self.state.borrow().lease.clone();
        match (entry, next, lease) {
            (Some(entry), Next::Continue, Some(lease)) => {
                if self.journal_now(&lease, entry) {
                    outcome
                } else {
                    Err(suspended())
                }
            }
            (entry, next, _) => Err(self.stop(entry, next)),
        }
    }

    /// Journals `entry` (after what this call added before it) through the host under `lease`, and moves this call
    /// on past it: `true` when the code may go on to its next step. `false` when the host refused (the run moved on
    /// without this call: `entry` goes in the outcome, which the host then ignores) or once the call has had its
    /// share: the call then ends.
    fn journal_now(&self, lease: &str, entry: Entry) -> bool {
        let mut state = self.state.borrow_mut();
        let mut entries = std::mem::take(&mut state.added);
        entries.push(entry);
        match super::imp::journal(lease, &entries) {
            Ok(journaled) => {
                state.journal.extend(entries);
                state.cursor = state.journal.len();
                state.retry = None;
                state.now_ms = journaled.now_ms;
                if !journaled.go_on {
                    state.next = Some(Next::Continue);
                }
                journaled.go_on
            }
            Err(_) => {
                // Answered in the outcome instead, which the host takes only if the run is still where it was.
                state.added = entries;
                state.next = Some(Next::Continue);
                false
            }
        }
    }

    /// Calls the `invoke` function `function` with `payload` as step `name`: its answer is journaled like any step's
    /// (the call is made once, retried as `options` says, and never again once it answered).
    pub async fn invoke<R, P>(&self, name: &str, options: StepOptions, function: &str, payload: &P) -> Result<R>
    where
        R: Serialize + DeserializeOwned,
        P: Serialize + ?Sized,
    {
        let payload = serde_json::to_value(payload)
            .map_err(|e| Error::bad_request(format!("step `{name}`: the payload does not encode: {e}")))?;
        self.step(name, options, |_| crate::invoke::call::<R, _>(function, &payload)).await
    }

    /// Sleeps for `duration`, durably: the run holds no instance meanwhile and survives restarts.
    pub async fn sleep(&self, duration: Duration) -> Result<()> {
        let now = self.state.borrow().now_ms;
        self.sleep_until_ms(now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))).await
    }

    /// Sleeps until `time`, durably.
    pub async fn sleep_until(&self, time: SystemTime) -> Result<()> {
        self.sleep_until_ms(millis(time)).await
    }

    async fn sleep_until_ms(&self, until_ms: i64) -> Result<()> {
        match self.replay(&Entry::Sleep { until_ms })? {
            Some(Entry::Sleep { until_ms }) => {
                if self.state.borrow().now_ms >= until_ms {
                    Ok(())
                } else {
                    Err(self.stop(None, Next::Sleep { until_ms }))
                }
            }
            _ => Err(self.stop(Some(Entry::Sleep { until_ms }), Next::Sleep { until_ms })),
        }
    }

    /// Waits for the event `name` (`edgefn workflows signal RUN NAME PAYLOAD`) for at most `timeout`: its payload,
    /// or `None` when the time ran out. A signal sent before the run waits for it is kept for it.
    pub async fn wait_for_event<T: DeserializeOwned>(&self, name: &str, timeout: Duration) -> Result<Option<T>> {
        let now = self.state.borrow().now_ms;
        let until_ms = now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let expected = Entry::Event { name: name.to_owned(), until_ms, resolved: false, value: None };
        match self.replay(&expected)? {
            Some(Entry::Event { resolved: true, value, .. }) => match value {
                None => Ok(None),
                Some(value) => serde_json::from_value(value)
                    .map(Some)
                    .map_err(|e| Error::bad_request(format!("event `{name}`: its payload does not decode: {e}"))),
            },
            Some(Entry::Event { until_ms, .. }) => {
                Err(self.stop(None, Next::Wait { event: name.to_owned(), until_ms }))
            }
            _ => Err(self.stop(Some(expected), Next::Wait { event: name.to_owned(), until_ms })),
        }
    }

    /// The time, the same on every replay of this point of the run.
    pub fn now(&self) -> Result<SystemTime> {
        let now_ms = self.state.borrow().now_ms;
        let ms = match self.replay(&Entry::Now { ms: now_ms })? {
            Some(Entry::Now { ms }) => ms,
            _ => {
                self.state.borrow_mut().added.push(Entry::Now { ms: now_ms });
                now_ms
            }
        };
        Ok(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
    }

    /// A random number, the same on every replay of this point of the run.
    pub fn random(&self) -> Result<u64> {
        match self.replay(&Entry::Random { value: 0 })? {
            Some(Entry::Random { value }) => Ok(value),
            _ => {
                let value = crate::random::u64();
                self.state.borrow_mut().added.push(Entry::Random { value });
                Ok(value)
            }
        }
    }
}

fn millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Starts a call: the run as the host sent it, and its input; or, when the input does not decode, the answer that
/// fails the run (a bad input never gets better).
pub fn begin<T: DeserializeOwned>(payload: &[u8]) -> std::result::Result<(Workflow, T), Result<Vec<u8>>> {
    let call: Call = match serde_json::from_slice(payload) {
        Ok(call) => call,
        Err(error) => return Err(Err(Error::bad_request(format!("not a workflow call: {error}")))),
    };
    let input = serde_json::from_value::<T>(call.input.clone());
    let workflow = Workflow::new(call);
    match input {
        Ok(input) => Ok((workflow, input)),
        Err(error) => {
            let message = format!("the input is not a valid {}: {error}", std::any::type_name::<T>());
            let failed = Next::Failed { error: StepError { status: 400, message } };
            Err(encode(Outcome { entries: Vec::new(), next: failed }))
        }
    }
}

/// Ends a call: what the function's `result` and its workflow's state come to, for the host (for a cancelled
/// run: its compensations, run here).
pub async fn finish<R: Serialize, E: Into<Error>>(
    workflow: &Workflow,
    result: std::result::Result<R, E>,
) -> Result<Vec<u8>> {
    let compensate = {
        let state = workflow.state.borrow();
        state.cancelling && state.next.is_none()
    };
    if compensate {
        return workflow.compensate().await;
    }
    let mut state = workflow.state.borrow_mut();
    let entries = std::mem::take(&mut state.added);
    let next = match state.next.take() {
        Some(next) => next,
        None if state.cursor < state.journal.len() => Next::NonDeterministic {
            error: format!(
                "non-deterministic: the code ended after {} of the journal's {} entries (the next is {})",
                state.cursor,
                state.journal.len(),
                state.journal[state.cursor].describe()
            ),
        },
        None => match result {
            Ok(value) => match serde_json::to_value(&value) {
                Ok(result) => Next::Done { result },
                Err(e) => Next::Failed {
                    error: StepError { status: 500, message: format!("the result does not encode: {e}") },
                },
            },
            Err(error) => {
                let error: Error = error.into();
                Next::Failed { error: StepError { status: error.status(), message: error.message().to_owned() } }
            }
        },
    };
    encode(Outcome { entries, next })
}

fn encode(outcome: Outcome) -> Result<Vec<u8>> {
    serde_json::to_vec(&outcome).map_err(|e| Error::internal(format!("failed to encode the outcome: {e}")))
}

mod child;
mod join;
#[cfg(test)]
mod tests;
