//! Leader election through a `coordination.k8s.io/v1` Lease, so that several operator
//! replicas can run and only one reconciles.
//!
//! The holder renews the lease every third of its duration. Optimistic concurrency
//! (`resourceVersion` on replace) makes acquisition race-free: of two candidates only one
//! update succeeds, the other gets 409 Conflict and stays a follower.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// One candidate for a named Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    duration: Duration,
}

/// Whether `spec` lets `identity` take (or keep) the lease at `now`.
pub fn can_acquire(spec: &LeaseSpec, identity: &str, now: Timestamp) -> bool {
    match spec.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == identity => true,
        Some(_) => match (&spec.renew_time, spec.lease_duration_seconds) {
            (Some(renewed), Some(secs)) => {
                renewed.0 + SignedDuration::from_secs(i64::from(secs)) < now
            }
            // A lease without renew time or duration cannot be proven alive.
            _ => true,
        },
    }
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: String, identity: String, duration: Duration) -> Self {
        Self {
            api,
            name,
            identity,
            duration,
        }
    }

    /// How often the holder renews.
    pub fn renew_period(&self) -> Duration {
        self.duration / 3
    }

    fn spec(&self, previous: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let ours =
            previous.and_then(|p| p.holder_identity.as_deref()) == Some(self.identity.as_str());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if ours {
                previous.and_then(|p| p.acquire_time.clone())
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                previous.and_then(|p| p.lease_transitions).unwrap_or(0)
                    + i32::from(!ours && previous.is_some()),
            ),
            ..LeaseSpec::default()
        }
    }

    /// Takes or renews the lease. `Ok(true)` when this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let result = match self.api.get_opt(&self.name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.spec(None, now)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                let current = lease.spec.clone().unwrap_or_default();
                if !can_acquire(&current, &self.identity, now) {
                    return Ok(false);
                }
                lease.spec = Some(self.spec(Some(&current), now));
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            // Another candidate won the race.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// Gives the lease up so a standby takes over at once, if this candidate holds it.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs: Option<i64>, duration: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: renewed_secs.map(|s| MicroTime(Timestamp::from_second(s).unwrap())),
            lease_duration_seconds: duration,
            ..LeaseSpec::default()
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn free_or_own_lease_can_be_taken() {
        assert!(can_acquire(&spec(None, None, None), "a", at(0)));
        assert!(can_acquire(&spec(Some(""), Some(0), Some(15)), "a", at(1)));
        assert!(can_acquire(
            &spec(Some("a"), Some(100), Some(15)),
            "a",
            at(101)
        ));
    }

    #[test]
    fn live_lease_of_another_holder_is_respected_until_it_expires() {
        let held = spec(Some("b"), Some(100), Some(15));
        assert!(!can_acquire(&held, "a", at(110)));
        assert!(!can_acquire(&held, "a", at(115)));
        assert!(can_acquire(&held, "a", at(116)));
    }
}
