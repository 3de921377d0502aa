use edgefn::prelude::*;
use edgefn::workflow::Workflow;

#[function(trigger = workflow)]
fn not_async(wf: Workflow, input: u32) -> Result<u32> {
    let _ = wf;
    Ok(input)
}

#[function(trigger = workflow)]
async fn one_argument(wf: Workflow) -> Result<u32> {
    let _ = wf;
    Ok(1)
}

#[function(trigger = workflow)]
async fn borrowed(wf: &Workflow, input: u32) -> Result<u32> {
    let _ = wf;
    Ok(input)
}

#[function(trigger = workflow("x"))]
async fn with_arguments(wf: Workflow, input: u32) -> Result<u32> {
    let _ = wf;
    Ok(input)
}

fn main() {}
