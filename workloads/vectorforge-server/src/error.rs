//! The server's error type, shared by the collection service, the store and the
//! registry: what went wrong, in terms every transport maps once at its edge (REST to
//! an HTTP status, gRPC to a status code). Messages keep Qdrant's wording ("Wrong
//! input: ...", "Not found: ...") because clients and their tests read them. Engine
//! errors are classified here once.

/// Everything a collection operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// A collection, point or snapshot that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is wrong; sent again unchanged it fails again.
    #[error("{0}")]
    Invalid(String),
    /// Something that is created already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// This node cannot order writes for the shard; `leader` (when known) can: forward
    /// the request there.
    #[error("Service unavailable: this node is not the shard's leader{}", .leader.as_ref().map(|l| format!("; the leader is {l}")).unwrap_or_default())]
    NotLeader { leader: Option<String> },
    /// The node cannot serve now (starting, shutting down, no quorum); the same request
    /// may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// A storage failure or a bug.
    #[error("{0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn invalid(message: impl Into<String>) -> Self {
        ServiceError::Invalid(message.into())
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ServiceError::NotFound(message.into())
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        ServiceError::AlreadyExists(message.into())
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ServiceError::Internal(message.into())
    }
    pub fn collection_not_found(name: &str) -> Self {
        Self::not_found(format!("Not found: Collection `{name}` doesn't exist!"))
    }

    /// The same error with `what: ` put before its message (e.g. which search of a batch).
    pub fn context(self, what: &str) -> Self {
        let at = |m: String| format!("{what}: {m}");
        match self {
            ServiceError::NotFound(m) => ServiceError::NotFound(at(m)),
            ServiceError::Invalid(m) => ServiceError::Invalid(at(m)),
            ServiceError::AlreadyExists(m) => ServiceError::AlreadyExists(at(m)),
            ServiceError::Unavailable(m) => ServiceError::Unavailable(at(m)),
            ServiceError::Internal(m) => ServiceError::Internal(at(m)),
            e @ ServiceError::NotLeader { .. } => e,
        }
    }

    /// True when the same request may succeed later (or on another node).
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            ServiceError::NotLeader { .. } | ServiceError::Unavailable(_)
        )
    }
}

impl From<vectorforge::Error> for ServiceError {
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
            | E::UnknownIndexType(_) => ServiceError::invalid(format!("Wrong input: {e}")),
            _ => {
                tracing::error!(error = %e, "storage error");
                ServiceError::internal(format!("Service internal error: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_are_classified_and_context_keeps_the_kind() {
        let e = ServiceError::from(vectorforge::Error::InvalidFilter("x".into()));
        assert_eq!(e, ServiceError::invalid("Wrong input: invalid filter: x"));
        let e = ServiceError::from(vectorforge::Error::Poisoned("disk".into()));
        assert!(matches!(e, ServiceError::Internal(_)) && !e.retryable());
        assert_eq!(
            e.clone().context("searches[2]").to_string(),
            format!("searches[2]: {e}")
        );
        let nl = ServiceError::NotLeader {
            leader: Some("vf-1".into()),
        };
        assert!(nl.retryable() && nl.to_string().ends_with("the leader is vf-1"));
    }
}
