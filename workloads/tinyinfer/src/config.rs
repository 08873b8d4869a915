//! Server and model configuration: what the operator passes as `--model key=value,...`
//! flags, or as a JSON document (`--config FILE` / `TINYINFER_CONFIG`, a path or inline
//! JSON). The types live in the contract crate the operator builds them with
//! ([`modelhub_contract::tinyinfer`]), so both sides agree by construction.

pub use modelhub_contract::tinyinfer::*;
