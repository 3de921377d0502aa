//! What a deploy or a switch of versions should do, decided without I/O: which live set a deploy makes (a canary or
//! not), whether a component's protected routes name authorizers the host has, and where a rollback goes. The
//! rollback rules are tested on their own (see the tests below). `Deployments` does the I/O (the database, the
//! loader, the triggers) around these.

use super::DeployError;
use crate::auth::Authorizers;
use crate::live::{Canary, ComponentVersion, LiveComponent, LiveSet};
use crate::storage::deployments::LiveRow;
use edgefn_manifest::record::{FunctionRecord, Trigger as TriggerKind};
use std::sync::Arc;

/// The live set with `version` of its component live (fully, or as a canary of what is live), and the row that
/// records it.
pub(super) fn candidate_set(
    current: &LiveSet,
    version: Arc<ComponentVersion>,
    canary_percent: Option<u8>,
) -> Result<(LiveSet, LiveRow), DeployError> {
    let active = current.component(&version.component).map(|c| c.active.clone());
    let (component, row) = match (canary_percent, active) {
        // A canary of the version that is live already is no canary: it simply stays live.
        (Some(percent), Some(active)) if active.version != version.version => {
            let row = LiveRow { version: active.version, canary: Some((version.version, percent)) };
            (LiveComponent::new(active, Some(Canary { version, percent })), row)
        }
        // A canary of nothing is simply live.
        _ => {
            let row = LiveRow { version: version.version, canary: None };
            (LiveComponent::new(version, None), row)
        }
    };
    Ok((current.with(component)?, row))
}

/// Fails closed: every authorizer the component `name`'s routes name must be configured. Returns whether any route
/// is protected.
pub(super) fn check_authorizers(
    authorizers: &Authorizers,
    name: &str,
    functions: &[FunctionRecord],
) -> Result<bool, DeployError> {
    let mut protected = false;
    for function in functions {
        let (TriggerKind::Http { auth: Some(auth), .. } | TriggerKind::WebSocket { auth: Some(auth), .. }) =
            &function.trigger
        else {
            continue;
        };
        if authorizers.get(&auth.authorizer).is_none() {
            let known = authorizers.names();
            return Err(DeployError::UnknownAuthorizer {
                component: name.to_owned(),
                function: function.name.clone(),
                authorizer: auth.authorizer.clone(),
                known: if known.is_empty() { "none".to_owned() } else { known.join(", ") },
            });
        }
        protected = true;
    }
    Ok(protected)
}

/// What is live for a component, as far as a rollback needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Live {
    /// The version serving its traffic (all of it, or all but its canary's share).
    pub active: u32,
    /// Whether a canary takes a share of its traffic.
    pub has_canary: bool,
}

impl Live {
    pub(super) fn of(live: &LiveComponent) -> Self {
        Self { active: live.active.version, has_canary: live.canary.is_some() }
    }
}

/// Where a rollback goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rollback {
    /// To this version.
    To(u32),
    /// To the newest version older than this one, the active one: see [`version_before`].
    BeforeActive(u32),
}

/// Where a rollback of `component` goes: to `to` when given (live or not, any recorded version); otherwise a running
/// canary ends (the active version stays), or, without one, the version before the active one takes over.
pub(super) fn rollback_target(component: &str, live: Option<Live>, to: Option<u32>) -> Result<Rollback, DeployError> {
    match (live, to) {
        (_, Some(version)) => Ok(Rollback::To(version)),
        (Some(Live { active, has_canary: true }), None) => Ok(Rollback::To(active)),
        (Some(Live { active, has_canary: false }), None) => Ok(Rollback::BeforeActive(active)),
        (None, None) => Err(DeployError::NotLive(component.to_owned())),
    }
}

/// The newest of `versions` (in any order) older than `active`: what "roll back" means without a version.
pub(super) fn version_before(
    component: &str,
    versions: impl IntoIterator<Item = u32>,
    active: u32,
) -> Result<u32, DeployError> {
    versions
        .into_iter()
        .filter(|version| *version < active)
        .max()
        .ok_or_else(|| DeployError::NothingToRollBackTo { component: component.to_owned(), version: active })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE_3: Live = Live { active: 3, has_canary: false };

    #[test]
    fn a_named_version_is_the_target_whatever_is_live() {
        assert_eq!(rollback_target("app", Some(LIVE_3), Some(1)).ok(), Some(Rollback::To(1)));
        assert_eq!(rollback_target("app", None, Some(2)).ok(), Some(Rollback::To(2)));
        let canary = Live { active: 3, has_canary: true };
        assert_eq!(rollback_target("app", Some(canary), Some(5)).ok(), Some(Rollback::To(5)));
    }

    #[test]
    fn without_a_version_a_canary_ends_and_otherwise_the_version_before_the_active_one_takes_over() {
        let canary = Live { active: 3, has_canary: true };
        assert_eq!(rollback_target("app", Some(canary), None).ok(), Some(Rollback::To(3)));
        assert_eq!(rollback_target("app", Some(LIVE_3), None).ok(), Some(Rollback::BeforeActive(3)));
    }

    #[test]
    fn nothing_live_and_no_version_is_refused_naming_the_component() {
        let error = rollback_target("app", None, None).expect_err("nothing to roll back");
        assert!(matches!(&error, DeployError::NotLive(name) if name == "app"), "{error}");
    }

    #[test]
    fn the_version_before_is_the_newest_older_one_in_any_order_across_gaps() {
        assert_eq!(version_before("app", [5, 2, 4, 1], 5).ok(), Some(4));
        // A rolled-back-to version is active while newer ones exist: "before" is below it, not below the newest.
        assert_eq!(version_before("app", [1, 2, 3, 4, 5], 3).ok(), Some(2));
        assert_eq!(version_before("app", [7, 2], 7).ok(), Some(2));
    }

    #[test]
    fn the_first_version_has_nothing_before_it() {
        let error = version_before("app", [1, 2], 1).expect_err("nothing before v1");
        assert!(
            matches!(&error, DeployError::NothingToRollBackTo { component, version: 1 } if component == "app"),
            "{error}"
        );
    }
}
