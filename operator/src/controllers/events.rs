//! The one Event a reconcile publishes when conditions changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::EventType;

use super::{Context, conditions};

/// Publishes one Event when conditions changed between `before` and `after`: Warning
/// when the resource became Degraded, Normal otherwise; the note lists every change.
/// (One Event per reconcile, not per condition: a burst of new resources would
/// otherwise write three Events each.)
pub async fn publish_transitions<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    before: &[Condition],
    after: &[Condition],
) {
    if let Some((type_, reason, note)) = transition_event(before, after) {
        ctx.publish(obj, type_, &reason, "Reconcile", note).await;
    }
}

/// The Event summarising the condition changes, if any: the type, the reason of the
/// most telling change (Degraded, then Ready, then the rest) and a note listing all.
fn transition_event(
    before: &[Condition],
    after: &[Condition],
) -> Option<(EventType, String, String)> {
    use crate::api::condition_type::{DEGRADED, READY};
    let changed = conditions::transitions(before, after);
    let degraded = changed
        .iter()
        .any(|c| c.type_ == DEGRADED && c.status == "True");
    let lead = changed.iter().min_by_key(|c| match c.type_.as_str() {
        DEGRADED => 0,
        READY => 1,
        _ => 2,
    })?;
    let note = changed
        .iter()
        .map(|c| {
            if c.message.is_empty() {
                format!("{} is {} ({})", c.type_, c.status, c.reason)
            } else {
                format!("{} is {} ({}): {}", c.type_, c.status, c.reason, c.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let type_ = if degraded {
        EventType::Warning
    } else {
        EventType::Normal
    };
    Some((type_, lead.reason.clone(), note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
            observed_generation: None,
        }
    }

    #[test]
    fn one_event_sums_up_all_condition_changes() {
        let before = [cond("Ready", "True", "AllShardsReady")];
        let after = [
            cond("Ready", "False", "ShardsNotReady"),
            cond("Progressing", "True", "WaitingForPods"),
            cond("Degraded", "True", "QuorumLost"),
        ];
        let (type_, reason, note) = transition_event(&before, &after).unwrap();
        assert_eq!(type_, EventType::Warning);
        assert_eq!(reason, "QuorumLost");
        assert_eq!(
            note,
            "Ready is False (ShardsNotReady); Progressing is True (WaitingForPods); \
             Degraded is True (QuorumLost)"
        );
        let (type_, reason, _) = transition_event(&[], &after[..2]).unwrap();
        assert_eq!(
            (type_, reason.as_str()),
            (EventType::Normal, "ShardsNotReady")
        );
        assert!(transition_event(&after, &after).is_none());
    }
}
