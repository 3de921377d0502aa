//! Switching what is live: rollback, promote (a canary), undeploy, each committed (to the database, and the
//! cluster's shared record when there is one) and then applied to the triggers, old version drained first.

use super::{DeployError, Deployments, SwitchOutcome, elapsed_ms, plan};
use crate::live::{ComponentVersion, LiveComponent, LiveSet};
use crate::storage::deployments::LiveRow;
use std::sync::Arc;
use std::time::Instant;

impl Deployments {
    /// Makes `set` live, then switches `component`'s triggers from what `previous` had to what `set` has.
    pub(super) async fn switch(&self, component: &str, previous: &LiveSet, set: LiveSet) {
        self.live.store(set);
        let live = self.live.load();
        let deadline = Instant::now() + self.config.limits.deploys.drain_timeout();
        // Each trigger switches on its own: queue consumers need not wait for a long cron run to end.
        let switches: Vec<_> = self
            .triggers
            .iter()
            .map(|trigger| {
                let (trigger, component, live) = (trigger.clone(), component.to_owned(), live.clone());
                tokio::spawn(async move {
                    trigger.drain(&component, deadline).await;
                    trigger.start(&component, &live);
                })
            })
            .collect();
        for switch in switches {
            if let Err(error) = switch.await {
                tracing::error!(%component, %error, "a trigger failed to switch versions");
            }
        }
        // Versions no longer live leave memory once their last invocation ends (each holds its own reference), and
        // their reused instances retire once what they serve is done.
        let still_live: Vec<&Arc<ComponentVersion>> = live.components().flat_map(|c| c.versions()).collect();
        if let Some(old) = previous.component(component) {
            for version in old.versions() {
                if !still_live.iter().any(|live| Arc::ptr_eq(live, version)) {
                    version.retire_reused_instances();
                }
                if !still_live.iter().any(|live| live.artifact == version.artifact) {
                    self.loader.unload(&version.artifact);
                }
            }
        }
    }

    pub(super) fn live_row_of(live: &LiveComponent) -> LiveRow {
        LiveRow { version: live.active.version, canary: live.canary.as_ref().map(|c| (c.version.version, c.percent)) }
    }

    /// Rolls `component` back: with a canary, ends it (the live version stays); otherwise to version `to`, or to
    /// the version before the live one. Instant: the artifact is cached, nothing compiles.
    pub async fn rollback(&self, component: &str, to: Option<u32>) -> Result<SwitchOutcome, DeployError> {
        let revision = self.cluster_revision(component).await?;
        let outcome = self.rollback_here(component, to).await?;
        self.share_live(component, revision).await;
        Ok(outcome)
    }

    /// [`Deployments::rollback`] on this node alone.
    pub(super) async fn rollback_here(&self, component: &str, to: Option<u32>) -> Result<SwitchOutcome, DeployError> {
        let started = Instant::now();
        let _switching = self.switching.lock().await;
        let current = self.live.load();
        let live = current.component(component).cloned();
        let target = match plan::rollback_target(component, live.as_deref().map(plan::Live::of), to)? {
            plan::Rollback::To(version) => version,
            plan::Rollback::BeforeActive(active) => {
                let versions = self.db.versions(component).await?;
                plan::version_before(component, versions.iter().map(|v| v.version), active)?
            }
        };
        let version = match live.as_ref().and_then(|l| l.versions().find(|v| v.version == target).cloned()) {
            Some(version) => version,
            None => Arc::new(self.load_version(component, target).await?),
        };
        let set = current.with(LiveComponent::new(version, None))?;
        let row = LiveRow { version: target, canary: None };
        self.commit_switch(component, &current, set, Some(row), started, format!("rolled back to v{target}")).await
    }

    /// Makes `component`'s canary its live version.
    pub async fn promote(&self, component: &str) -> Result<SwitchOutcome, DeployError> {
        let revision = self.cluster_revision(component).await?;
        let outcome = self.promote_here(component).await?;
        self.share_live(component, revision).await;
        Ok(outcome)
    }

    pub(super) async fn promote_here(&self, component: &str) -> Result<SwitchOutcome, DeployError> {
        let started = Instant::now();
        let _switching = self.switching.lock().await;
        let current = self.live.load();
        let live = current.component(component).ok_or_else(|| DeployError::NotLive(component.to_owned()))?;
        let canary = live.canary.clone().ok_or_else(|| DeployError::NoCanary(component.to_owned()))?;
        let set = current.with(LiveComponent::new(canary.version.clone(), None))?;
        let row = LiveRow { version: canary.version.version, canary: None };
        let message = format!("promoted the canary v{} to live", row.version);
        self.commit_switch(component, &current, set, Some(row), started, message).await
    }

    /// Takes `component` out of what is live: its routes answer 404, its triggers stop. Its versions, its queues
    /// and their messages stay.
    pub async fn undeploy(&self, component: &str) -> Result<SwitchOutcome, DeployError> {
        let revision = self.cluster_revision(component).await?;
        let outcome = self.undeploy_here(component).await?;
        self.share_live(component, revision).await;
        Ok(outcome)
    }

    pub(super) async fn undeploy_here(&self, component: &str) -> Result<SwitchOutcome, DeployError> {
        let started = Instant::now();
        let _switching = self.switching.lock().await;
        let current = self.live.load();
        if current.component(component).is_none() {
            return Err(DeployError::NotLive(component.to_owned()));
        }
        let set = current.without(component);
        self.commit_switch(component, &current, set, None, started, "undeployed".to_owned()).await
    }

    /// The end of a rollback, a promotion and an undeploy: records what is live for `component` (`row`, or nothing),
    /// switches from `current` to `set`, and logs `what` happened, in the host's log and the component's events.
    pub(super) async fn commit_switch(
        &self,
        component: &str,
        current: &LiveSet,
        set: LiveSet,
        row: Option<LiveRow>,
        started: Instant,
        what: String,
    ) -> Result<SwitchOutcome, DeployError> {
        match row {
            Some(row) => self.db.set_live(component, row).await?,
            None => {
                self.db.remove_live(component).await?;
            }
        }
        self.switch(component, current, set).await;
        let switch_ms = elapsed_ms(started);
        let version = row.map(|row| row.version);
        tracing::info!(%component, ?version, switch_ms, "{what}");
        self.event(component, version, what);
        Ok(SwitchOutcome { component: component.to_owned(), version, canary: None, switch_ms })
    }
}
