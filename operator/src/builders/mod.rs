//! Resource builders: pure functions from a custom resource to the child objects it
//! needs. They read nothing but their arguments, so they are unit-tested without a
//! cluster and the controllers stay thin.

pub mod common;
pub mod inference_service;
pub mod traffic_policy;
pub mod vector_collection;

#[cfg(test)]
mod test_support;

pub use common::Images;
