//! The one error type of the server: an HTTP status plus a message. REST renders it as
//! Qdrant's `{"status": {"error": ...}, "time": ..., "result": null}`; gRPC maps the
//! status to a gRPC code. Engine errors are classified here once.

use http::StatusCode;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn collection_not_found(name: &str) -> Self {
        Self::not_found(format!("Not found: Collection `{name}` doesn't exist!"))
    }

    /// The gRPC code for this error.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
                tonic::Code::InvalidArgument
            }
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::CONFLICT => tonic::Code::AlreadyExists,
            StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::ResourceExhausted,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => tonic::Code::Unauthenticated,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
                tonic::Code::DeadlineExceeded
            }
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.message)
    }
}

impl From<vectorforge::Error> for ApiError {
    fn from(e: vectorforge::Error) -> Self {
        use vectorforge::Error as E;
        match &e {
            E::InvalidDimension(_)
            | E::WrongDimension { .. }
            | E::NonFiniteComponent { .. }
            | E::WrongQueryDimension { .. }
            | E::NonFiniteQuery { .. }
            | E::ZeroVector(_)
            | E::DuplicatePoint(_)
            | E::InvalidPointId(_)
            | E::InvalidConfig(_)
            | E::InvalidFilter(_)
            | E::InvalidPayload(_)
            | E::InvalidKeyPath { .. }
            | E::UnknownIndexType(_) => ApiError::bad_request(format!("Wrong input: {e}")),
            _ => {
                tracing::error!(error = %e, "storage error");
                ApiError::internal(format!("Service internal error: {e}"))
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
