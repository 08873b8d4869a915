//! Typed errors of the node agent library.

use std::path::PathBuf;

/// Everything that can go wrong while running pods.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("command `{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("no free pod address left in {0}")]
    AddressesExhausted(String),
    #[error("image {image:?} has no local binary: {reason}")]
    ImageNotMapped { image: String, reason: String },
    #[error("container config: {0}")]
    ContainerConfig(String),
    #[error("volume {volume:?}: {reason}")]
    Volume { volume: String, reason: String },
    #[error("invalid path {0:?}")]
    InvalidPath(PathBuf),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result alias of the node agent library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
