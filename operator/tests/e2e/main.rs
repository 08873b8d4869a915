//! End-to-end tests of the operator against the real local control plane (etcd,
//! kube-apiserver, kube-controller-manager). Run by `make test-operator-e2e`, which starts
//! the cluster and one operator binary (running as its own ServiceAccount through
//! impersonation) before these tests; each test works in a namespace of its own.
//!
//! They are `#[ignore]`d so `cargo test` alone needs no cluster.

mod harness;
mod invalid_specs;
mod leader_election;
mod reconcile;
mod rollout;
mod writes;
