//! End-to-end scenarios of the whole stack against a running cluster: custom resources
//! are applied through the Kubernetes API, the operator reconciles them, the node agent
//! (or a real kubelet) runs the pods, and the tests talk to those pods over the network.
//!
//! `make test-e2e` (e2e/scenarios/run.sh) starts the operator and a node agent serving
//! `mh-e2e-*` namespaces on the local cluster, then runs the tests in `tests/`. This crate
//! holds what every scenario needs: a namespace per test ([`cluster::TestNs`]), bounded
//! waits, Events, model files put onto a claim ([`claims`]) and a load generator that
//! records what clients saw ([`load`]).

pub mod claims;
pub mod cluster;
pub mod load;
