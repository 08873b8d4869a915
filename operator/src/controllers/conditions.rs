//! Typed builders for status conditions that follow the Kubernetes conventions:
//! `lastTransitionTime` moves only when the status flips, `observedGeneration` records
//! the spec generation the condition was computed from.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// A condition as computed by a reconcile, before it is merged with the previous one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Observed {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// Merges freshly observed conditions with the previous ones: the transition time is
/// kept when the status did not change.
pub fn merge(
    previous: &[Condition],
    observed: Vec<Observed>,
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    observed
        .into_iter()
        .map(|o| {
            let status = status_str(o.status);
            let last_transition_time = previous
                .iter()
                .find(|p| p.type_ == o.type_ && p.status == status)
                .map(|p| p.last_transition_time.clone())
                .unwrap_or(Time(now));
            Condition {
                type_: o.type_.to_owned(),
                status: status.to_owned(),
                reason: o.reason.to_owned(),
                message: o.message,
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Whether `conditions` hold `type_` with status True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Conditions whose status differs between `before` and `after` (new ones included).
pub fn transitions<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    after
        .iter()
        .filter(|a| {
            !before
                .iter()
                .any(|b| b.type_ == a.type_ && b.status == a.status)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let first = merge(
            &[],
            vec![Observed::new("Ready", false, "Creating", "")],
            Some(1),
            ts(100),
        );
        assert_eq!(first[0].last_transition_time, Time(ts(100)));

        let same = merge(
            &first,
            vec![Observed::new("Ready", false, "WaitingForPods", "0/3")],
            Some(2),
            ts(200),
        );
        assert_eq!(same[0].last_transition_time, Time(ts(100)));
        assert_eq!(same[0].reason, "WaitingForPods");
        assert_eq!(same[0].observed_generation, Some(2));

        let flipped = merge(
            &same,
            vec![Observed::new("Ready", true, "Ready", "3/3")],
            Some(2),
            ts(300),
        );
        assert_eq!(flipped[0].last_transition_time, Time(ts(300)));
        assert_eq!(flipped[0].status, "True");
        assert!(is_true(&flipped, "Ready"));
    }

    #[test]
    fn transitions_lists_changed_and_new_conditions() {
        let before = merge(
            &[],
            vec![Observed::new("Ready", false, "Creating", "")],
            None,
            ts(1),
        );
        let after = merge(
            &before,
            vec![
                Observed::new("Ready", true, "Ready", ""),
                Observed::new("Degraded", false, "AsExpected", ""),
            ],
            None,
            ts(2),
        );
        let changed: Vec<_> = transitions(&before, &after)
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(changed, ["Ready", "Degraded"]);
        assert!(transitions(&after, &after).is_empty());
    }
}
