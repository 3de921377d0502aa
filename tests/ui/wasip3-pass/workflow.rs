use edgefn::prelude::*;
use edgefn::workflow::{StepOptions, Workflow};
use std::time::Duration;

#[derive(serde::Deserialize)]
struct Order {
    id: String,
}

#[function(trigger = workflow)]
async fn checkout(wf: Workflow, order: Order) -> Result<String> {
    let charge: String =
        wf.step("charge", StepOptions::default(), |attempt| async move { Ok(attempt.idempotency_key) }).await?;
    wf.sleep(Duration::from_secs(1)).await?;
    let approved = wf.wait_for_event::<bool>("approved", Duration::from_secs(60)).await?;
    Ok(format!("{} {charge} {approved:?} {}", order.id, wf.random()?))
}

#[function(trigger = workflow())]
async fn nothing_in(wf: Workflow, _input: ()) -> Result<u64> {
    wf.now().map(|_| 1)
}

fn main() {}
