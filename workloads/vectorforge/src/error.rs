//! Typed errors returned by every public operation of the engine.

use std::path::PathBuf;

use crate::point_id::{InvalidPointId, PointId};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in vectorforge. Input errors are detected before
/// anything is applied, so an `Err` from a write means nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid dimension {0}: must be between 1 and 65536")]
    InvalidDimension(usize),
    #[error("wrong vector dimension for point {point}: expected {expected}, got {got}")]
    WrongDimension {
        point: PointId,
        expected: usize,
        got: usize,
    },
    #[error("vector of point {point} has a non-finite component at index {index}: {value}")]
    NonFiniteComponent {
        point: PointId,
        index: usize,
        value: f32,
    },
    #[error("query vector: wrong dimension, expected {expected}, got {got}")]
    WrongQueryDimension { expected: usize, got: usize },
    #[error("query vector has a non-finite component at index {index}")]
    NonFiniteQuery { index: usize },
    #[error("the cosine distance needs a non-zero vector (point {0})")]
    ZeroVector(PointId),
    #[error("duplicate point id {0} in one request")]
    DuplicatePoint(PointId),
    #[error(transparent)]
    InvalidPointId(#[from] InvalidPointId),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
    #[error("invalid payload key path {path:?}: {reason}")]
    InvalidKeyPath { path: String, reason: String },
    #[error(
        "unknown or unsupported payload index type {0:?} (supported: keyword, integer, float, bool, datetime, uuid)"
    )]
    UnknownIndexType(String),
    #[error("sequence number {got} is not after the last applied {last}")]
    StaleSequence { last: u64, got: u64 },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "write-ahead log corrupted in {path} at byte {offset}: {reason}; nothing was deleted, repair or remove the file by hand"
    )]
    WalCorrupted {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("snapshot {path} is invalid: {reason}")]
    SnapshotInvalid { path: PathBuf, reason: String },
    #[error("cannot recover: {0}")]
    Recovery(String),
    #[error("corrupted record: {0}")]
    Decode(String),
    #[error("quantization: {0}")]
    Quantization(#[from] crate::quantization::QuantError),
    #[error("the collection is closed after an earlier write failure: {0}")]
    Poisoned(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Attaches a path to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn at(self, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
