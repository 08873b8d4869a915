//! What both proxies share: the current routing table (replaced whole by the policy
//! source), the upstream clients, the mirror queue, the per-client rate-limit buckets
//! (kept across policy reloads), and the draining flag that turns `/readyz` to 503 on
//! shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use http::HeaderMap;
use tokio::sync::watch;

use crate::bucket::{Buckets, Limit};
use crate::guard::{self, Refusal};
use crate::mirror::Mirror;
use crate::router::{self, Decision};
use crate::table::Table;
use crate::upstream::Upstreams;

/// Why a request could not be routed (503 / UNAVAILABLE).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("the gateway has not loaded its TrafficPolicy yet")]
    NoPolicy,
    #[error(transparent)]
    AllWeightsZero(#[from] router::AllWeightsZero),
}

/// Shared gateway state.
pub struct Gateway {
    pub table: watch::Receiver<Option<Arc<Table>>>,
    pub upstreams: Arc<Upstreams>,
    pub mirror: Mirror,
    pub buckets: Buckets,
    draining: AtomicBool,
}

impl Gateway {
    pub fn new(
        table: watch::Receiver<Option<Arc<Table>>>,
        upstreams: Arc<Upstreams>,
        mirror: Mirror,
    ) -> Self {
        Self {
            table,
            upstreams,
            mirror,
            buckets: Buckets::default(),
            draining: AtomicBool::new(false),
        }
    }

    /// The table in force now.
    pub fn current(&self) -> Option<Arc<Table>> {
        self.table.borrow().clone()
    }

    /// Routes a request: the table it was routed with, the decision and, for inference
    /// requests, the mirror backend if this one gets a copy.
    pub fn route(
        &self,
        headers: &HeaderMap,
        is_infer: bool,
    ) -> Result<(Arc<Table>, Decision, Option<usize>), RouteError> {
        let table = self.current().ok_or(RouteError::NoPolicy)?;
        let mut rng = rand::rng();
        let decision = router::route(&table.policy, headers, &mut rng)?;
        let mirror = if is_infer {
            router::mirror(&table.policy, decision.backend, &mut rng)
        } else {
            None
        };
        Ok((table, decision, mirror))
    }

    /// Admits or refuses a request before routing (API key, then rate limit), counting
    /// refusals. Without a policy there is nothing to check; routing answers 503.
    pub fn admit(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), Refusal> {
        let Some(table) = self.current() else {
            return Ok(());
        };
        let policy = &table.policy;
        let result = guard::authenticate(policy, headers).and_then(|()| {
            let Some(rl) = &policy.rate_limit else {
                return Ok(());
            };
            let limit = Limit {
                per_second: rl.per_second,
                burst: rl.burst,
            };
            let key = guard::client_key(policy, headers, peer);
            self.buckets
                .take(&key, limit, Instant::now())
                .map_err(guard::rate_limited)
        });
        if let Err(refusal) = &result {
            self.upstreams
                .stats
                .refused
                .with_label_values(&[refusal.reason()])
                .inc();
            tracing::debug!(reason = refusal.reason(), %refusal, "request refused");
        }
        result
    }

    /// Ready: a policy is loaded, a backend that takes its traffic has a ready pod, and
    /// the gateway is not shutting down.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
            && self.table.borrow().as_ref().is_some_and(|t| t.serves())
    }

    /// Starts draining: `/readyz` answers 503 from now on.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}
