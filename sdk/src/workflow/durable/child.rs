//! Child workflows: `wf.child(NAME, WORKFLOW, &input)` starts a run of another workflow of the same component (on
//! the parent's version) and waits, holding no instance, until it ends. The host starts the child in the same
//! transaction that journals the parent's wait, so a child starts exactly once, and tells the parent how it ended
//! as the event `child:NAME`. The child's id is `PARENT:NAME`; cancelling the parent cancels its children.

use super::Workflow;
use crate::{Error, Result};
use edgefn_manifest::workflow::{ChildEnd, Entry, Next, child_event, child_run_id};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest name of a child run.
const MAX_CHILD_NAME: usize = 64;

impl Workflow {
    /// Runs the workflow `workflow` (of this component) as this run's child `name` with `input`, and answers what
    /// it returned once it ends, however long that takes; its failure (or cancellation) is this call's error. The
    /// child is started once, ever: on replay this answers from the journal.
    pub async fn child<T, I>(&self, name: &str, workflow: &str, input: &I) -> Result<T>
    where
        T: DeserializeOwned,
        I: Serialize + ?Sized,
    {
        let valid = (1..=MAX_CHILD_NAME).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(Error::bad_request(format!(
                "child `{name}`: a child's name is 1 to {MAX_CHILD_NAME} letters, digits, `-`, `_` or `.`"
            )));
        }
        let event = child_event(name);
        let expected = Entry::Event { name: event.clone(), until_ms: i64::MAX, resolved: false, value: None };
        match self.replay(&expected)? {
            Some(Entry::Event { resolved: true, value, .. }) => {
                let run = child_run_id(&self.run_id(), name);
                let end: ChildEnd = value
                    .and_then(|value| serde_json::from_value(value).ok())
                    .ok_or_else(|| Error::internal(format!("child run `{run}` ended without saying how")))?;
                match (end.state.as_str(), end.result) {
                    ("done", result) => {
                        serde_json::from_value(result.unwrap_or(serde_json::Value::Null)).map_err(|e| {
                            Error::internal(format!("child run `{}`: its result does not decode: {e}", end.run))
                        })
                    }
                    ("cancelled", _) => Err(Error::new(
                        409,
                        format!("child run `{}` was cancelled: {}", end.run, end.error.unwrap_or_default()),
                    )),
                    (state, _) => Err(Error::new(
                        502,
                        format!("child run `{}` {state}: {}", end.run, end.error.unwrap_or_default()),
                    )),
                }
            }
            Some(Entry::Event { until_ms, .. }) => Err(self.stop(None, Next::Wait { event, until_ms })),
            _ => {
                let input = serde_json::to_value(input)
                    .map_err(|e| Error::bad_request(format!("child `{name}`: the input does not encode: {e}")))?;
                let next = Next::Child { name: name.to_owned(), workflow: workflow.to_owned(), input };
                Err(self.stop(Some(expected), next))
            }
        }
    }
}
