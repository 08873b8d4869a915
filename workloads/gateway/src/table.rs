//! The routing table the proxies read: a validated [`Policy`] plus, per backend, its
//! ready pods with their outstanding-request counters. Within a backend the pod with the
//! fewest outstanding requests is picked (ties broken from a random start). A rebuilt
//! table keeps the counters of pods it still lists, so a policy or endpoint change does
//! not reset the balance. A pod that refused a connection is passed over for
//! [`EJECT_FOR`] unless every pod of its backend is (the Kubernetes source drops dead
//! pods from the EndpointSlices; this bridges the seconds until it does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::policy::{EndpointSpec, Policy};

/// How long a pod that refused a connection is passed over.
pub const EJECT_FOR: Duration = Duration::from_secs(3);

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Which port of a pod a request goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
}

impl Protocol {
    /// Label value for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Grpc => "grpc",
        }
    }
}

/// One ready pod of a backend.
#[derive(Debug)]
pub struct Pod {
    pub endpoint: EndpointSpec,
    outstanding: AtomicUsize,
    /// Milliseconds since [`EPOCH`] until which the pod is passed over.
    ejected_until: AtomicU64,
}

impl Pod {
    fn new(endpoint: EndpointSpec) -> Self {
        Self {
            endpoint,
            outstanding: AtomicUsize::new(0),
            ejected_until: AtomicU64::new(0),
        }
    }

    fn ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms()
    }

    /// Requests sent to this pod and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    fn addr(&self, proto: Protocol) -> Option<SocketAddr> {
        match proto {
            Protocol::Rest => self.endpoint.http,
            Protocol::Grpc => self.endpoint.grpc,
        }
    }
}

/// A request in flight to one pod; dropping it gives the slot back.
#[derive(Debug)]
pub struct InFlight {
    pod: Arc<Pod>,
    pub addr: SocketAddr,
}

impl InFlight {
    /// The pod refused the connection: pass it over for a while.
    pub fn eject(&self) {
        let until = now_ms().saturating_add(u64::try_from(EJECT_FOR.as_millis()).unwrap_or(0));
        self.pod.ejected_until.store(until, Ordering::Relaxed);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.pod.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A policy and its pods.
#[derive(Debug)]
pub struct Table {
    pub policy: Policy,
    /// `pods[i]` are the ready pods of `policy.backends[i]`.
    pub pods: Vec<Vec<Arc<Pod>>>,
}

impl Table {
    /// Builds the table for `policy`, reusing the pods (and their counters) of `previous`.
    pub fn new(policy: Policy, previous: Option<&Table>) -> Self {
        let old: Vec<&Arc<Pod>> = previous
            .map(|t| t.pods.iter().flatten().collect())
            .unwrap_or_default();
        let pods = policy
            .backends
            .iter()
            .map(|b| {
                b.endpoints
                    .iter()
                    .map(|e| {
                        old.iter()
                            .find(|p| p.endpoint == *e)
                            .map_or_else(|| Arc::new(Pod::new(*e)), |p| Arc::clone(p))
                    })
                    .collect()
            })
            .collect();
        Self { policy, pods }
    }

    /// The least-loaded pod of `backend` serving `proto`, skipping `exclude` (pods that
    /// already refused a connection for this request).
    pub fn pick(
        &self,
        backend: usize,
        proto: Protocol,
        exclude: &[SocketAddr],
        rng: &mut impl Rng,
    ) -> Option<InFlight> {
        let pods = self.pods.get(backend)?;
        if pods.is_empty() {
            return None;
        }
        let start = rng.random_range(0..pods.len());
        // (pod, address, (ejected, load)): healthy pods first, then the least loaded.
        let mut best: Option<(&Arc<Pod>, SocketAddr, (bool, usize))> = None;
        for k in 0..pods.len() {
            let pod = &pods[(start + k) % pods.len()];
            let Some(addr) = pod.addr(proto) else {
                continue;
            };
            if exclude.contains(&addr) {
                continue;
            }
            let key = (pod.ejected(), pod.outstanding());
            if best.is_none_or(|(_, _, k)| key < k) {
                best = Some((pod, addr, key));
            }
        }
        let (pod, addr, _) = best?;
        pod.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            pod: Arc::clone(pod),
            addr,
        })
    }

    /// Whether the table can serve: a backend that takes weighted traffic has a ready
    /// pod (or, when no backend has weight, as with rule-only policies, any backend).
    pub fn serves(&self) -> bool {
        let weighted = self.policy.backends.iter().any(|b| b.weight > 0);
        self.policy
            .backends
            .iter()
            .zip(&self.pods)
            .any(|(b, pods)| (b.weight > 0 || !weighted) && !pods.is_empty())
    }

    /// Number of pods of `backend` with an address for `proto`.
    pub fn ready_pods(&self, backend: usize, proto: Protocol) -> usize {
        self.pods
            .get(backend)
            .map_or(0, |p| p.iter().filter(|p| p.addr(proto).is_some()).count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{BackendSpec, PolicySpec};
    use rand::SeedableRng;

    fn ep(port: u16) -> EndpointSpec {
        EndpointSpec {
            http: Some(SocketAddr::from(([127, 0, 0, 1], port))),
            grpc: None,
        }
    }

    fn table(ports: &[u16], previous: Option<&Table>) -> Table {
        let spec = PolicySpec {
            backends: vec![BackendSpec {
                name: "a".into(),
                service: "a".into(),
                weight: 100,
                endpoints: ports.iter().map(|p| ep(*p)).collect(),
            }],
            ..Default::default()
        };
        Table::new(Policy::compile(&spec).unwrap(), previous)
    }

    #[test]
    fn a_table_serves_once_a_weighted_backend_has_a_pod() {
        assert!(!table(&[], None).serves(), "no pod yet");
        assert!(table(&[1], None).serves());
        let two = |stable: &[u16], canary: &[u16], canary_weight: i32| {
            let b = |name: &str, weight: i32, ports: &[u16]| BackendSpec {
                name: name.into(),
                service: name.into(),
                weight,
                endpoints: ports.iter().map(|p| ep(*p)).collect(),
            };
            let spec = PolicySpec {
                backends: vec![
                    b("stable", 100 - canary_weight, stable),
                    b("canary", canary_weight, canary),
                ],
                ..Default::default()
            };
            Table::new(Policy::compile(&spec).unwrap(), None)
        };
        // only an unweighted backend has pods: weighted traffic has nowhere to go
        assert!(!two(&[], &[5], 0).serves());
        assert!(two(&[1], &[], 10).serves());
        assert!(two(&[], &[5], 100).serves());
    }

    #[test]
    fn picks_the_pod_with_fewest_outstanding_requests() {
        let t = table(&[1, 2, 3], None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut held: Vec<InFlight> = (0..3)
            .map(|_| t.pick(0, Protocol::Rest, &[], &mut rng).unwrap())
            .collect();
        let mut ports: Vec<u16> = held.iter().map(|f| f.addr.port()).collect();
        ports.sort_unstable();
        assert_eq!(
            ports,
            [1, 2, 3],
            "three requests spread over three idle pods"
        );
        let two = held.iter().position(|f| f.addr.port() == 2).unwrap();
        drop(held.swap_remove(two));
        let next = t.pick(0, Protocol::Rest, &[], &mut rng).unwrap();
        assert_eq!(
            next.addr.port(),
            2,
            "the pod whose request finished is the least loaded"
        );
    }

    #[test]
    fn excluded_pods_and_missing_ports_are_skipped() {
        let t = table(&[1, 2], None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let excl = [SocketAddr::from(([127, 0, 0, 1], 1))];
        for _ in 0..10 {
            assert_eq!(
                t.pick(0, Protocol::Rest, &excl, &mut rng)
                    .unwrap()
                    .addr
                    .port(),
                2
            );
        }
        assert!(t.pick(0, Protocol::Grpc, &[], &mut rng).is_none());
        assert_eq!(t.ready_pods(0, Protocol::Rest), 2);
        assert_eq!(t.ready_pods(0, Protocol::Grpc), 0);
    }

    #[test]
    fn ejected_pods_are_passed_over_while_others_remain() {
        let t = table(&[1, 2], None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        loop {
            let f = t.pick(0, Protocol::Rest, &[], &mut rng).unwrap();
            if f.addr.port() == 1 {
                f.eject();
                break;
            }
        }
        let held: Vec<InFlight> = (0..5)
            .map(|_| t.pick(0, Protocol::Rest, &[], &mut rng).unwrap())
            .collect();
        assert!(
            held.iter().all(|f| f.addr.port() == 2),
            "busy but healthy beats ejected"
        );
        let excl = [SocketAddr::from(([127, 0, 0, 1], 2))];
        let last = t.pick(0, Protocol::Rest, &excl, &mut rng).unwrap();
        assert_eq!(
            last.addr.port(),
            1,
            "an ejected pod is still used when it is the only one"
        );
    }

    #[test]
    fn rebuilt_table_keeps_counters_of_pods_it_still_lists() {
        let t1 = table(&[1, 2], None);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let held = t1.pick(0, Protocol::Rest, &[], &mut rng).unwrap();
        let port = held.addr.port();
        let t2 = table(&[1, 2, 5], Some(&t1));
        let kept = t2.pods[0].iter().find(|p| p.endpoint == ep(port)).unwrap();
        assert_eq!(kept.outstanding(), 1);
        drop(held);
        assert_eq!(kept.outstanding(), 0);
    }
}
