//! Point ids (an unsigned integer or a UUID, as Qdrant accepts them). A leaf module:
//! the error and type modules both name point ids, so they live below both.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A JSON value that is not a point id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid point id: {0}")]
pub struct InvalidPointId(pub String);

/// A point id as Qdrant accepts it: an unsigned integer or a UUID string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PointId {
    Num(u64),
    Uuid(uuid::Uuid),
}

impl fmt::Debug for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

impl From<uuid::Uuid> for PointId {
    fn from(u: uuid::Uuid) -> Self {
        PointId::Uuid(u)
    }
}

impl PointId {
    /// Parses a JSON value (integer or UUID string) into a point id.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, InvalidPointId> {
        match v {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(PointId::Num)
                .ok_or_else(|| InvalidPointId(format!("{n} is not an unsigned integer"))),
            serde_json::Value::String(s) => uuid::Uuid::parse_str(s)
                .map(PointId::Uuid)
                .map_err(|e| InvalidPointId(format!("{s:?}: {e}"))),
            other => Err(InvalidPointId(format!(
                "{other} is neither an integer nor a UUID"
            ))),
        }
    }
}
