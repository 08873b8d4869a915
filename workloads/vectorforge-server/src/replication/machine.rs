//! The shard's collection as the Raft state machine: a committed command (a prepared
//! write, one engine operation per vector space) is applied to every engine at its log
//! index through the engines' `apply_at`, the same entry point WAL replay uses;
//! snapshots are the collection's snapshot archives; installing one restores the
//! collection from it (the registry swaps it in whole).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vectorforge_raft::StateMachine;

use crate::error::{ServiceError, ServiceResult};
use crate::registry::Registry;
use crate::store::write_atomic;

/// Collection `name` of the registry, as a Raft state machine.
pub struct ShardMachine {
    registry: Arc<Registry>,
    name: String,
    /// `floor.json`: the log index of the last installed snapshot, which may be past
    /// the last command in it (blank and membership entries follow commands).
    floor_file: PathBuf,
    floor: parking_lot::Mutex<u64>,
}

impl ShardMachine {
    pub fn open(registry: Arc<Registry>, name: &str, dir: &Path) -> ServiceResult<ShardMachine> {
        let floor_file = dir.join("floor.json");
        let floor = match std::fs::read(&floor_file) {
            Ok(b) => serde_json::from_slice::<u64>(&b)
                .map_err(|e| ServiceError::internal(format!("{}: {e}", floor_file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(ServiceError::internal(format!(
                    "{}: {e}",
                    floor_file.display()
                )));
            }
        };
        Ok(ShardMachine {
            registry,
            name: name.to_owned(),
            floor_file,
            floor: parking_lot::Mutex::new(floor),
        })
    }
}

impl StateMachine for ShardMachine {
    type Error = ServiceError;

    fn apply(&self, index: u64, command: &[u8]) -> Result<Vec<u8>, ServiceError> {
        self.registry
            .get(&self.name)?
            .apply_committed(index, command)?;
        Ok(Vec::new())
    }

    fn applied_index(&self) -> u64 {
        let engines = self
            .registry
            .get(&self.name)
            .map(|c| c.applied_index())
            .unwrap_or(0);
        engines.max(*self.floor.lock())
    }

    fn build_snapshot(&self, path: &Path) -> Result<u64, ServiceError> {
        let c = self.registry.get(&self.name)?;
        c.archive(path)?;
        Ok(self.applied_index())
    }

    fn install_snapshot(&self, path: &Path, index: u64) -> Result<(), ServiceError> {
        self.registry.restore(&self.name, path)?;
        let mut floor = self.floor.lock();
        write_atomic(&self.floor_file, index.to_string().as_bytes())?;
        *floor = index;
        tracing::info!(
            collection = self.name,
            index,
            "installed a snapshot from the leader"
        );
        Ok(())
    }
}
