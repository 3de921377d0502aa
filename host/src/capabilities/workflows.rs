//! `edgefn:function/workflows`: a function starts a durable workflow run of its own component, or sends one an
//! event, and a workflow function journals the steps it ends under its resume's lease ([`Workflows`], implemented by the workflow engine in `triggers::workflow`, plugged in after it is built
//! through [`DeferredWorkflows`]). A function reaches only its own component's workflows and runs: the ids it
//! chooses are scoped to its component (stored as `COMPONENT:ID`), and another component's run is answered as not
//! found, so run ids say nothing across tenants.

use super::BoxFuture;
use std::sync::{Arc, OnceLock, Weak};

/// Starts and signals workflow runs for a component.
pub trait Workflows: Send + Sync + 'static {
    /// Starts a run of `component/workflow` with `input` (JSON), named `id` if given; answers the run's id.
    fn start(
        &self,
        component: String,
        workflow: String,
        input: Vec<u8>,
        id: Option<String>,
    ) -> BoxFuture<'static, Result<String, String>>;

    /// Sends `event` with `payload` (JSON) to run `run` of `component`: `true` when delivered, `false` when kept.
    fn signal(
        &self,
        component: String,
        run: String,
        event: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, String>>;

    /// Journals `entries` (JSON) for the resume of a run of `component` that holds `lease`; answers the JSON
    /// `edgefn_manifest::workflow::Journaled`.
    fn journal(
        &self,
        component: String,
        lease: String,
        entries: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// A [`Workflows`] plugged in after it is built (the engine runs guests whose capabilities include it).
#[derive(Default)]
pub struct DeferredWorkflows(OnceLock<Weak<dyn Workflows>>);

impl std::fmt::Debug for DeferredWorkflows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeferredWorkflows").field("set", &self.0.get().is_some()).finish()
    }
}

impl DeferredWorkflows {
    /// Plugs in the implementation (held weakly: it owns what holds this). Later calls change nothing.
    pub fn set(&self, workflows: &Arc<dyn Workflows>) {
        let _ = self.0.set(Arc::downgrade(workflows));
    }

    fn get(&self) -> Result<Arc<dyn Workflows>, String> {
        self.0
            .get()
            .and_then(Weak::upgrade)
            .ok_or_else(|| "workflows are not available: the host is starting or stopping".to_owned())
    }
}

impl Workflows for DeferredWorkflows {
    fn start(
        &self,
        component: String,
        workflow: String,
        input: Vec<u8>,
        id: Option<String>,
    ) -> BoxFuture<'static, Result<String, String>> {
        match self.get() {
            Ok(workflows) => workflows.start(component, workflow, input, id),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn signal(
        &self,
        component: String,
        run: String,
        event: String,
        payload: Vec<u8>,
    ) -> BoxFuture<'static, Result<bool, String>> {
        match self.get() {
            Ok(workflows) => workflows.signal(component, run, event, payload),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn journal(
        &self,
        component: String,
        lease: String,
        entries: Vec<u8>,
    ) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        match self.get() {
            Ok(workflows) => workflows.journal(component, lease, entries),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }
}

/// What the workflow imports act on: borrowed from the invocation's store.
pub struct WorkflowsView<'a> {
    pub workflows: Option<&'a Arc<dyn Workflows>>,
    /// `component/function` of the caller: a function reaches only its own component's workflows.
    pub caller: Option<&'a str>,
}

impl std::fmt::Debug for WorkflowsView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowsView").field("caller", &self.caller).finish_non_exhaustive()
    }
}

use super::bindings::p2::edgefn::function::workflows as wit;

/// The [`wasmtime::component::HasData`] of the workflow imports.
#[derive(Debug)]
pub struct WorkflowsHost;

impl wasmtime::component::HasData for WorkflowsHost {
    type Data<'a> = WorkflowsView<'a>;
}

/// Links `edgefn:function/workflows`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
    view: fn(&mut T) -> WorkflowsView<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, WorkflowsHost>(linker, view)
}

impl WorkflowsView<'_> {
    fn scope(&self) -> Result<(Arc<dyn Workflows>, String), String> {
        let workflows = self.workflows.ok_or_else(|| super::unavailable("workflows"))?;
        Ok((workflows.clone(), super::caller_component(self.caller).to_owned()))
    }
}

/// `workflow` as the caller names it: a function of its own component (`name`, or `component/name` with its own
/// component).
fn own_workflow(component: &str, workflow: &str) -> Result<String, String> {
    match workflow.split_once('/') {
        None => Ok(workflow.to_owned()),
        Some((named, function)) if named == component => Ok(function.to_owned()),
        Some((named, _)) => Err(format!(
            "a function starts only its own component's workflows (`{component}`), not component `{named}`'s"
        )),
    }
}

impl wit::Host for WorkflowsView<'_> {
    async fn start(&mut self, workflow: String, input: Vec<u8>, id: Option<String>) -> Result<String, String> {
        let (workflows, component) = self.scope()?;
        let function = own_workflow(&component, &workflow)?;
        // Apart from the caller's store: the engine's work is its own (as for invoke).
        tokio::spawn(workflows.start(component, function, input, id))
            .await
            .unwrap_or_else(|join| Err(format!("the workflow start failed: {join}")))
    }

    async fn signal(&mut self, run: String, event: String, payload: Vec<u8>) -> Result<bool, String> {
        let (workflows, component) = self.scope()?;
        tokio::spawn(workflows.signal(component, run, event, payload))
            .await
            .unwrap_or_else(|join| Err(format!("the workflow signal failed: {join}")))
    }

    async fn journal(&mut self, lease: String, entries: Vec<u8>) -> Result<Vec<u8>, String> {
        // In the caller's task: one of these per step, and the write calls no guest.
        let (workflows, component) = self.scope()?;
        workflows.journal(component, lease, entries).await
    }
}

#[cfg(test)]
mod tests {
    use super::own_workflow;

    #[test]
    fn a_function_names_only_its_own_components_workflows() {
        assert_eq!(own_workflow("shop", "checkout").as_deref(), Ok("checkout"));
        assert_eq!(own_workflow("shop", "shop/checkout").as_deref(), Ok("checkout"));
        assert!(own_workflow("shop", "bank/transfer").unwrap_err().contains("`bank`"));
    }
}
