//! modelhub-operator: reconciles ModelHub's custom resources into Kubernetes workloads.
//!
//! - [`api`]: the CRD types (`VectorCollection`, `InferenceService`, `TrafficPolicy`).
//! - [`builders`]: pure functions from a spec to the child objects it needs.
//! - [`controllers`]: one reconcile loop per kind (apply children, prune orphans,
//!   compute status from the children, publish Events).
//! - [`crdgen`]: renders `crds/*.yaml` from the types.

pub mod api;
pub mod builders;
pub mod controllers;
pub mod crdgen;
pub mod leader;
pub mod metrics;
