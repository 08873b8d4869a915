//! ModelHub's development node agent: a kubelet stand-in that runs a cluster's pods as
//! local processes, so the whole stack works on one machine without a container engine.
//!
//! The agent registers a Node with a heartbeat Lease ([`node`]), binds pods that have no
//! node ([`scheduler`]), and for each pod bound to it ([`kubelet`], [`pod`]) creates a
//! network namespace with its own address ([`network`]), prepares its volumes as
//! directories ([`volumes`]), and runs every container as a process ([`container`]) inside
//! a private mount namespace ([`sandbox`]), with probes ([`probe`]) driving readiness.

pub mod config;
pub mod container;
pub mod env;
pub mod error;
pub mod kubelet;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod process;
pub mod sandbox;
pub mod scheduler;
pub mod status;
pub mod volumes;

pub use config::AgentConfig;
pub use error::{Error, Result};
