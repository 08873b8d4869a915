//! The contract between the ModelHub operator and its workloads, as types both sides
//! use: the operator builds these values and renders them into pod templates (env,
//! args); each workload parses the same types back. A change on one side that the other
//! does not follow fails to compile or fails a unit test here, not an end-to-end run.
//!
//! - [`tinyinfer`]: the `TINYINFER_CONFIG` JSON document (models, runtime options,
//!   batching) and its flag form.
//! - [`vectorforge`]: the args of a shard pod.
//! - [`gateway`]: the args of a gateway pod.
//! - [`schedule`]: cron schedules (snapshots), parsed the same way on both sides.

pub mod gateway;
pub mod schedule;
pub mod tinyinfer;
pub mod vectorforge;
