//! The error every inference path returns, and how it maps onto HTTP statuses and gRPC
//! codes (400 bad input, 404 unknown model, 503 not ready, 429 queue full...).

use oip::{CodecError, TensorError};

use crate::runtime::RuntimeError;

/// Why an inference or repository request failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum InferError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotReady(String),
    #[error("queue of model {0} is full")]
    QueueFull(String),
    #[error("request deadline exceeded")]
    DeadlineExceeded,
    #[error("request cancelled")]
    Cancelled,
    #[error("server is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

impl InferError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::NotFound(_) => 404,
            Self::NotReady(_) | Self::ShuttingDown => 503,
            Self::QueueFull(_) => 429,
            Self::DeadlineExceeded => 504,
            Self::Cancelled => 499,
            Self::Internal(_) => 500,
        }
    }

    /// The gRPC status code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::BadRequest(_) => tonic::Code::InvalidArgument,
            Self::NotFound(_) => tonic::Code::NotFound,
            Self::NotReady(_) | Self::ShuttingDown => tonic::Code::Unavailable,
            Self::QueueFull(_) => tonic::Code::ResourceExhausted,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
            Self::Cancelled => tonic::Code::Cancelled,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    /// A short label for the failures metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::NotReady(_) => "not_ready",
            Self::QueueFull(_) => "queue_full",
            Self::DeadlineExceeded => "deadline",
            Self::Cancelled => "cancelled",
            Self::ShuttingDown => "shutting_down",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<TensorError> for InferError {
    fn from(e: TensorError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<CodecError> for InferError {
    fn from(e: CodecError) -> Self {
        Self::BadRequest(e.to_string())
    }
}

impl From<RuntimeError> for InferError {
    fn from(e: RuntimeError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<InferError> for tonic::Status {
    fn from(e: InferError) -> Self {
        tonic::Status::new(e.grpc_code(), e.to_string())
    }
}
