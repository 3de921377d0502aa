//! Durable workflows: several steps that survive crashes and restarts, sleep for days and wait for people.
//!
//! ```no_run
//! use edgefn::prelude::*;
//! use edgefn::workflow::{StepOptions, Workflow};
//! use std::time::Duration;
//!
//! #[derive(serde::Deserialize)]
//! struct Order { id: String, cents: u64 }
//!
//! #[function(trigger = workflow)]
//! async fn checkout(wf: Workflow, order: Order) -> Result<String> {
//!     let charge: String = wf.step("charge", StepOptions::default(), |attempt| async move {
//!         // Pass attempt.idempotency_key on, so the payment service charges once however often this runs.
//!         Ok(format!("ch_{}_{}", order.id, attempt.number))
//!     }).await?;
//!     let approved = wf.wait_for_event::<bool>("approved", Duration::from_secs(3 * 86_400)).await?;
//!     if approved != Some(true) {
//!         wf.step("refund", StepOptions::default(), |_| async { Ok(()) }).await?;
//!         return Err(Error::new(409, "not approved"));
//!     }
//!     wf.sleep(Duration::from_secs(60)).await?;
//!     Ok(charge)
//! }
//! ```
//!
//! How it runs: the host starts a run (`edgefn workflows start checkout '{"id": "o1", "cents": 500}'`) and calls
//! the function with the run's journal. The function replays it: each journaled step answers at once with its
//! recorded result, and the first thing not in the journal is done (a step's attempt) or begun (a sleep, a wait),
//! after which the call ends and the host records it. Every resume is a fresh instance that replays the journal,
//! which costs little here. So:
//!
//! - the code must be **deterministic**: the same steps, sleeps and waits in the same order on every replay. Read
//!   the time and draw random numbers with [`Workflow::now`] and [`Workflow::random`], which are journaled; do I/O
//!   only inside steps. A replay that asks for something else than the journal holds fails the run, naming both.
//! - a step's **result is journaled once** and never computed again; its side effects happen **at least once** (an
//!   attempt that crashed before its result was recorded runs again): pass [`Attempt::idempotency_key`] on.
//! - a failed attempt is retried with exponential backoff up to [`StepOptions::retries`] times; an error with a 4xx
//!   status (`Error::bad_request`, `Error::new(402, ..)`) is not retried. The step's last error is journaled too, and
//!   returned to the code, which may compensate (run other steps) before failing the run.
//! - while a run sleeps or waits it holds no instance.
//!
//! Every future this type returns ends the call with an error when the run has to wait: propagate it with `?`.
//!
//! Starting and signalling runs works from any function of the component, async or not (an HTTP route, a queue
//! consumer, a cron job), with [`start`], [`start_with_id`] and [`signal`]:
//!
//! ```no_run
//! # fn run() -> edgefn::Result<()> {
//! let run = edgefn::workflow::start_with_id("checkout", &serde_json::json!({"id": "o1", "cents": 500}), "order-o1")?;
//! edgefn::workflow::signal(&run, "approved", &true)?;
//! # Ok(()) }
//! ```

use crate::{Error, Result};
use serde::Serialize;

#[cfg(edgefn_async)]
mod durable;
#[cfg(edgefn_async)]
pub use durable::*;

/// Starts a run of the workflow function `workflow` of this component with `input`; returns the run's id.
pub fn start<T: Serialize + ?Sized>(workflow: &str, input: &T) -> Result<String> {
    imp::start(workflow, &encode("input", input)?, None)
}

/// [`start`] with the run's id chosen by the caller (1 to 128 letters, digits, `-_.:`): the same id twice starts
/// one run, and the second call answers the first run's id. Use the id of what the run is for (`order-42`).
pub fn start_with_id<T: Serialize + ?Sized>(workflow: &str, input: &T, id: &str) -> Result<String> {
    imp::start(workflow, &encode("input", input)?, Some(id))
}

/// Sends event `event` with `payload` to run `run` of this component. Returns `true` when the run waited for it
/// (it resumes now), `false` when it is kept until the run waits for it.
pub fn signal<T: Serialize + ?Sized>(run: &str, event: &str, payload: &T) -> Result<bool> {
    imp::signal(run, event, &encode("payload", payload)?)
}

fn encode<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::bad_request(format!("the workflow {what} does not encode: {e}")))
}

#[cfg(target_family = "wasm")]
mod imp {
    use crate::abi::bindings::edgefn::function::workflows;
    use crate::{Error, Result};

    pub(super) fn start(workflow: &str, input: &[u8], id: Option<&str>) -> Result<String> {
        workflows::start(workflow, input, id).map_err(Error::internal)
    }

    pub(super) fn signal(run: &str, event: &str, payload: &[u8]) -> Result<bool> {
        workflows::signal(run, event, payload).map_err(Error::internal)
    }

    /// Journals `entries` under `lease` (see `edgefn_manifest::workflow`).
    #[cfg(edgefn_async)]
    pub(super) fn journal(
        lease: &str,
        entries: &[edgefn_manifest::workflow::Entry],
    ) -> Result<edgefn_manifest::workflow::Journaled> {
        let entries = serde_json::to_vec(entries).map_err(|e| Error::internal(format!("journal entries: {e}")))?;
        let answer = workflows::journal(lease, &entries).map_err(Error::internal)?;
        serde_json::from_slice(&answer).map_err(|e| Error::internal(format!("the host's journal answer: {e}")))
    }
}

/// Natively (unit tests) there is no host to run workflows: starts and signals are refused, saying so.
#[cfg(not(target_family = "wasm"))]
mod imp {
    use crate::{Error, Result};

    pub(super) fn start(workflow: &str, _input: &[u8], _id: Option<&str>) -> Result<String> {
        Err(Error::internal(format!("cannot start workflow `{workflow}` natively: workflows run on an edgefn host")))
    }

    pub(super) fn signal(run: &str, _event: &str, _payload: &[u8]) -> Result<bool> {
        Err(Error::internal(format!("cannot signal run `{run}` natively: workflows run on an edgefn host")))
    }

    /// Natively there is no host to journal to (native calls carry no lease, so this is never reached).
    pub(super) fn journal(
        _lease: &str,
        _entries: &[edgefn_manifest::workflow::Entry],
    ) -> Result<edgefn_manifest::workflow::Journaled> {
        Err(Error::internal("workflows run on an edgefn host"))
    }
}
