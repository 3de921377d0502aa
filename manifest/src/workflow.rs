//! What the host and a workflow function say to each other on every resume of a run: the host calls the function
//! with the run's input and its journal so far ([`Call`]); the function replays the journal (each journaled step
//! answers with its recorded result, never running again) and goes on from there. Each step it ends is journaled at
//! once through the host's `journal` import under the resume's [`Call::lease`] (one transaction per step), and the
//! function goes on to the next, until the run has to wait (a sleep, a wait for an event, a failed attempt's backoff),
//! ends, or the host says the resume has had its share ([`Journaled::go_on`]). It then answers what is left to
//! journal and what the run waits for next ([`Outcome`]); the host commits that in one transaction and resumes the
//! run, in a fresh instance, when it is due. Without a lease (a host that does not lend one, and the SDK's own unit
//! tests), each resume does one piece of new work and answers it in its outcome.
//!
//! A crash between a step's work and its journal write loses that step's work, which then runs again: a step's side
//! effects are at least once, its journaled result exactly once.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One resume of a run, as the workflow function receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The run's id: the correlation id of its logs and the prefix of its steps' idempotency keys.
    pub run: String,
    pub input: Value,
    /// What the run did so far, in order.
    pub journal: Vec<Entry>,
    /// The step after the journal's last entry when its earlier attempts failed and it is being retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// The host's clock at this resume, milliseconds since the Unix epoch.
    pub now_ms: i64,
    /// The run was cancelled: the code replays its journal to where it was, then runs the compensations it
    /// registered (newest first) instead of going on, and the run ends cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelling: bool,
    /// What lets this resume journal the steps it ends as it goes (the `journal` import), so that one resume runs
    /// several steps; absent: one piece of new work per resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
}

/// What the host answers a resume that journaled entries under its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journaled {
    /// The host's clock now, milliseconds since the Unix epoch: the resume's clock from here on.
    pub now_ms: i64,
    /// Whether the resume may go on to its next step; otherwise it ends (answering `Continue`) and the run resumes
    /// again at once in a fresh instance, so that one long run does not hold its instance, or others up, for long.
    pub go_on: bool,
}

/// A step being retried: its name and how many attempts failed so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    pub name: String,
    pub attempts: u32,
}

/// One entry of a run's journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    /// A step that ended: its result (`Ok`, JSON) or its error after its last attempt.
    Step {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<StepError>,
        /// How many attempts it took.
        attempts: u32,
    },
    /// A durable sleep until `until_ms`.
    Sleep { until_ms: i64 },
    /// A wait for the event `name` until `until_ms`: `resolved` once the event came (`value`, its payload) or the
    /// time ran out (`value` absent).
    Event {
        name: String,
        until_ms: i64,
        #[serde(default)]
        resolved: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Value>,
    },
    /// `wf.now()`: the time the run saw, the same on every replay.
    Now { ms: i64 },
    /// `wf.random()`: the number the run drew, the same on every replay.
    Random { value: u64 },
}

impl Entry {
    /// What the entry is, as the non-determinism error names it: `step \`charge\``, `sleep`, ...
    pub fn describe(&self) -> String {
        match self {
            Entry::Step { name, .. } => format!("step `{name}`"),
            Entry::Sleep { .. } => "a sleep".into(),
            Entry::Event { name, .. } => format!("a wait for event `{name}`"),
            Entry::Now { .. } => "wf.now()".into(),
            Entry::Random { .. } => "wf.random()".into(),
        }
    }
}

/// A step's error after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepError {
    pub status: u16,
    pub message: String,
}

/// What one resume came to: the entries to append to the journal, and the run's next state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    pub entries: Vec<Entry>,
    pub next: Next,
}

/// What a run does after a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Next {
    /// Resume again at once (a step just ended).
    Continue,
    /// Attempt `attempt` of step `name` failed with `error`: try again at `at_ms`.
    Retry { name: String, attempt: u32, error: StepError, at_ms: i64 },
    /// Sleeping until `until_ms`.
    Sleep { until_ms: i64 },
    /// Waiting for event `event` until `until_ms`.
    Wait { event: String, until_ms: i64 },
    /// Start child run `name` of the workflow `workflow` (of the same component, on the same version) with `input`,
    /// and wait for it to end: its end comes as the event [`child_event`]`(name)`, whose payload is a
    /// [`ChildEnd`]. The outcome's entries end with that wait (an unresolved [`Entry::Event`]).
    Child { name: String, workflow: String, input: Value },
    /// The function returned its result.
    Done { result: Value },
    /// The function returned an error.
    Failed { error: StepError },
    /// The code no longer does what the journal says it did: the run cannot go on.
    NonDeterministic { error: String },
    /// A cancelled run ran the compensations its code registered (`failed`: those that failed after their retries,
    /// by name): it ends cancelled.
    Cancelled {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        failed: Vec<String>,
    },
}

impl Next {
    /// This `next` with any time it waits until (a sleep's end, a wait's time-out, a retry's backoff) no later than
    /// `deadline`.
    pub fn due_by(self, deadline: i64) -> Self {
        match self {
            Self::Retry { name, attempt, error, at_ms } => {
                Self::Retry { name, attempt, error, at_ms: at_ms.min(deadline) }
            }
            Self::Sleep { until_ms } => Self::Sleep { until_ms: until_ms.min(deadline) },
            Self::Wait { event, until_ms } => Self::Wait { event, until_ms: until_ms.min(deadline) },
            other => other,
        }
    }
}

/// The prefix of the journaled steps a cancelled run's compensations take.
pub const COMPENSATION_PREFIX: &str = "compensate:";

/// The prefix of the retry a `join` of several steps takes: its steps are retried together, as one.
pub const JOIN_PREFIX: &str = "join:";

/// The event a parent run waits for while its child `name` runs.
pub fn child_event(name: &str) -> String {
    format!("child:{name}")
}

/// The id of the child run `name` of run `parent`.
pub fn child_run_id(parent: &str, name: &str) -> String {
    format!("{parent}:{name}")
}

/// How a child run ended, as its parent receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildEnd {
    /// The child run's id.
    pub run: String,
    /// `done`, `failed` or `cancelled`.
    pub state: String,
    /// What its function returned, when done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why it failed or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn calls_and_outcomes_travel_as_json_unchanged() {
        let call = Call {
            run: "r1".into(),
            input: json!({ "order": 7 }),
            journal: vec![
                Entry::Step { name: "charge".into(), value: Some(json!("ch_1")), error: None, attempts: 2 },
                Entry::Sleep { until_ms: 5 },
                Entry::Event { name: "approved".into(), until_ms: 9, resolved: true, value: None },
                Entry::Now { ms: 3 },
                Entry::Random { value: 42 },
            ],
            retry: Some(Retry { name: "ship".into(), attempts: 1 }),
            now_ms: 10,
            cancelling: true,
            lease: Some("l1".into()),
        };
        let text = serde_json::to_string(&call).expect("encode");
        assert_eq!(serde_json::from_str::<Call>(&text).expect("decode"), call);
        // A call from a host that lends no lease still decodes: one piece of work per resume.
        let old = text.replace(r#","lease":"l1""#, "");
        assert_eq!(serde_json::from_str::<Call>(&old).expect("decode").lease, None);
        assert!(text.contains(r#"{"kind":"step","name":"charge","value":"ch_1","attempts":2}"#), "{text}");
        let outcome = Outcome {
            entries: vec![],
            next: Next::Retry {
                name: "ship".into(),
                attempt: 2,
                error: StepError { status: 503, message: "down".into() },
                at_ms: 20,
            },
        };
        let text = serde_json::to_string(&outcome).expect("encode");
        assert_eq!(serde_json::from_str::<Outcome>(&text).expect("decode"), outcome);
        assert_eq!(
            Entry::Event { name: "a".into(), until_ms: 0, resolved: false, value: None }.describe(),
            "a wait for event `a`"
        );
    }
}
