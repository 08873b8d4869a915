//! The static policy source (`--policy-file`): a JSON [`PolicySpec`] with the backends'
//! pod addresses, re-read when its contents change, so the data plane runs and is tested
//! on loopback without a cluster. An invalid edit is logged and the previous table stays.
//! The file's `apiKey` wins over `GATEWAY_API_KEY`; `rateLimit` as in the TrafficPolicy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::policy::{ApiKey, Policy, PolicyError, PolicySpec};
use crate::table::Table;

/// Why the policy file could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a policy: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: PolicyError,
    },
}

/// Reads and validates the policy file; `env_key` is the API key when the file has none.
pub fn load(path: &Path, env_key: Option<&ApiKey>) -> Result<(Vec<u8>, Policy), FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let policy = parse(path, &bytes, env_key)?;
    Ok((bytes, policy))
}

fn parse(path: &Path, bytes: &[u8], env_key: Option<&ApiKey>) -> Result<Policy, FileError> {
    let mut spec: PolicySpec =
        serde_json::from_slice(bytes).map_err(|source| FileError::Parse {
            path: path.to_owned(),
            source,
        })?;
    if spec.api_key.is_none() {
        spec.api_key = env_key.cloned();
    }
    Policy::compile(&spec).map_err(|source| FileError::Invalid {
        path: path.to_owned(),
        source,
    })
}

/// Publishes a new table built from `policy`, keeping the pod counters of the old one.
pub fn publish(tx: &watch::Sender<Option<Arc<Table>>>, policy: Policy) {
    tx.send_modify(|cur| {
        let table = Table::new(policy, cur.as_deref());
        *cur = Some(Arc::new(table));
    });
}

/// Loads the file now (an error here stops the gateway), then polls it every `interval`.
pub fn start(
    path: PathBuf,
    tx: watch::Sender<Option<Arc<Table>>>,
    interval: Duration,
    env_key: Option<ApiKey>,
) -> Result<(), FileError> {
    let (mut last, policy) = load(&path, env_key.as_ref())?;
    publish(&tx, policy);
    tracing::info!(path = %path.display(), "policy loaded");
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(interval).await;
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "cannot read the policy file");
                    continue;
                }
            };
            if bytes == last {
                continue;
            }
            match parse(&path, &bytes, env_key.as_ref()) {
                Ok(policy) => {
                    publish(&tx, policy);
                    tracing::info!(path = %path.display(), "policy reloaded");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "policy edit rejected; keeping the previous one")
                }
            }
            last = bytes;
        }
    });
    Ok(())
}
