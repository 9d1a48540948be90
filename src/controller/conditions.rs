//! kstatus conditions (https://github.com/kubernetes-sigs/cli-utils/tree/master/pkg/kstatus):
//! `Ready` says whether the last reconcile did its job, `Reconciling` that
//! hoist is retrying after a transient failure, `Stalled` that the spec
//! cannot work until someone changes it. Pure: the caller passes the time.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::Conditions;

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
/// An ImagePolicy with `spec.verify`: whether its latest tag's signature
/// verified (True), or every newer candidate failed verification (False).
pub const VERIFIED: &str = "Verified";
/// An ImageUpdateAutomation with `spec.sync.rollback`: its last rollout
/// failed and was rolled back (True), or ran healthy since (False).
pub const ROLLED_BACK: &str = "RolledBack";

/// What a reconcile came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done: `Ready=True`.
    Ready { reason: String, message: String },
    /// Not ready, for a reason that goes away by itself (a dependency not
    /// ready yet, no tag matching yet): `Ready=False`, nothing else.
    Waiting { reason: String, message: String },
    /// A transient failure retried with backoff: `Ready=False`,
    /// `Reconciling=True`.
    Retrying { reason: String, message: String },
    /// The spec cannot work: `Ready=False`, `Stalled=True`; not retried
    /// until the object changes.
    Stalled { reason: String, message: String },
}

impl Outcome {
    pub fn ready(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Ready {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn waiting(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Waiting {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn retrying(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Retrying {
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn stalled(reason: &str, message: impl Into<String>) -> Outcome {
        Outcome::Stalled {
            reason: reason.into(),
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Outcome::Ready { message, .. }
            | Outcome::Waiting { message, .. }
            | Outcome::Retrying { message, .. }
            | Outcome::Stalled { message, .. } => message,
        }
    }

    /// Whether the reconcile is retried with backoff.
    pub fn retried(&self) -> bool {
        matches!(self, Outcome::Retrying { .. })
    }
}

/// Sets or replaces condition `type_`, keeping its `lastTransitionTime`
/// when its status did not change.
pub fn set(
    conditions: &mut Conditions,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: &Time,
) {
    let since = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: since,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// The conditions after a reconcile with `outcome`.
pub fn apply(conditions: &mut Conditions, outcome: &Outcome, generation: Option<i64>, now: &Time) {
    let (ready, reason, message) = match outcome {
        Outcome::Ready { reason, message } => ("True", reason, message),
        Outcome::Waiting { reason, message }
        | Outcome::Retrying { reason, message }
        | Outcome::Stalled { reason, message } => ("False", reason, message),
    };
    set(conditions, READY, ready, reason, message, generation, now);
    conditions.retain(|c| c.type_ != RECONCILING && c.type_ != STALLED);
    match outcome {
        Outcome::Retrying { reason, message } => {
            set(
                conditions,
                RECONCILING,
                "True",
                reason,
                message,
                generation,
                now,
            );
        }
        Outcome::Stalled { reason, message } => {
            set(
                conditions, STALLED, "True", reason, message, generation, now,
            );
        }
        Outcome::Ready { .. } | Outcome::Waiting { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
    }

    fn summary(conditions: &Conditions) -> Vec<(String, String, String, i64)> {
        conditions
            .iter()
            .map(|c| {
                (
                    c.type_.clone(),
                    c.status.clone(),
                    c.reason.clone(),
                    c.last_transition_time.0.as_second(),
                )
            })
            .collect()
    }

    #[test]
    fn kstatus_conditions_follow_outcomes_and_keep_transition_times() {
        let mut c = Conditions::new();
        apply(
            &mut c,
            &Outcome::stalled("InvalidSpec", "spec.policy: bad"),
            Some(1),
            &at(10),
        );
        assert_eq!(
            summary(&c),
            [
                ("Ready".into(), "False".into(), "InvalidSpec".into(), 10),
                ("Stalled".into(), "True".into(), "InvalidSpec".into(), 10)
            ]
        );
        // Still failing, now transiently: Ready keeps its transition time.
        apply(
            &mut c,
            &Outcome::retrying("ScanFailed", "HTTP 500"),
            Some(2),
            &at(20),
        );
        assert_eq!(
            summary(&c),
            [
                ("Ready".into(), "False".into(), "ScanFailed".into(), 10),
                ("Reconciling".into(), "True".into(), "ScanFailed".into(), 20)
            ]
        );
        assert!(c.iter().all(|c| c.observed_generation == Some(2)));
        apply(
            &mut c,
            &Outcome::ready("Succeeded", "3 tags"),
            Some(2),
            &at(30),
        );
        assert_eq!(
            summary(&c),
            [("Ready".into(), "True".into(), "Succeeded".into(), 30)]
        );
        apply(
            &mut c,
            &Outcome::ready("Succeeded", "4 tags"),
            Some(2),
            &at(40),
        );
        assert_eq!(c[0].last_transition_time, at(30));
        assert_eq!(c[0].message, "4 tags");
        apply(
            &mut c,
            &Outcome::waiting("DependencyNotReady", "no scan"),
            Some(2),
            &at(50),
        );
        assert_eq!(
            summary(&c),
            [(
                "Ready".into(),
                "False".into(),
                "DependencyNotReady".into(),
                50
            )]
        );
    }
}
