//! The ModelHub custom resources (`modelhub.io/v1alpha1`) as Rust types.
//!
//! These types are the single source of truth: `crdgen` renders them into `crds/*.yaml`,
//! the controllers read them, and their doc comments become the descriptions that
//! `kubectl explain` shows. Cross-field rules are CEL expressions (`x_kube(validation)`),
//! evaluated by the API server, so a bad spec is rejected before any controller sees it.

pub mod backup;
pub mod common;
pub mod inference_service;
pub mod traffic_policy;
pub mod vector_collection;

pub use backup::*;
pub use common::*;
pub use inference_service::*;
pub use traffic_policy::*;
pub use vector_collection::*;

/// API group of every ModelHub resource.
pub const GROUP: &str = "modelhub.io";
/// API version served and stored.
pub const VERSION: &str = "v1alpha1";
