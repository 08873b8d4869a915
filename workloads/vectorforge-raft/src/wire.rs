//! Conversions between openraft's RPC structs and the protobuf messages of
//! `proto/raft.proto`: log ids and entries field by field (commands as `bytes`), the rest
//! as serde JSON inside `bytes` fields.

use bytes::Bytes;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, SnapshotMeta, Vote};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::log::Entry;
use crate::{Node, TypeConfig};

/// The generated protobuf types, client and server (`vectorforge.raft.v1`).
pub mod pb {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("vectorforge.raft.v1");
}

/// A message that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("decoding {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Bytes {
    // openraft's plain data structs always serialize (no maps with non-string keys, no
    // fallible serializers); an empty field would be refused by the peer's decoder
    match serde_json::to_vec(v) {
        Ok(b) => Bytes::from(b),
        Err(e) => {
            tracing::error!(error = %e, "encoding a Raft message as JSON");
            Bytes::new()
        }
    }
}

pub(crate) fn from_json<T: DeserializeOwned>(what: &'static str, b: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(b).map_err(|source| WireError::Json { what, source })
}

fn log_id_to_pb(l: &LogId<u64>) -> pb::LogId {
    pb::LogId {
        term: l.leader_id.term,
        node_id: l.leader_id.node_id,
        index: l.index,
    }
}

fn log_id_from_pb(l: &pb::LogId) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(l.term, l.node_id), l.index)
}

fn entry_to_pb(e: &Entry) -> pb::Entry {
    use pb::entry::Payload;
    let payload = match &e.payload {
        EntryPayload::Blank => Payload::Blank(true),
        EntryPayload::Normal(cmd) => Payload::Normal(Bytes::copy_from_slice(cmd)),
        EntryPayload::Membership(m) => Payload::MembershipJson(to_json(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&e.log_id)),
        payload: Some(payload),
    }
}

fn entry_from_pb(e: pb::Entry) -> Result<Entry, WireError> {
    use pb::entry::Payload;
    let log_id = e
        .log_id
        .as_ref()
        .ok_or(WireError::Malformed("entry without log id"))?;
    let payload = match e
        .payload
        .ok_or(WireError::Malformed("entry without payload"))?
    {
        Payload::Blank(_) => EntryPayload::Blank,
        Payload::Normal(b) => EntryPayload::Normal(b.to_vec()),
        Payload::MembershipJson(b) => EntryPayload::Membership(from_json("membership", &b)?),
    };
    Ok(Entry {
        log_id: log_id_from_pb(log_id),
        payload,
    })
}

pub(crate) fn append_to_pb(r: &AppendEntriesRequest<TypeConfig>) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        vote_json: to_json(&r.vote),
        prev_log_id: r.prev_log_id.as_ref().map(log_id_to_pb),
        leader_commit: r.leader_commit.as_ref().map(log_id_to_pb),
        entries: r.entries.iter().map(entry_to_pb).collect(),
    }
}

pub(crate) fn append_from_pb(
    r: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest<TypeConfig>, WireError> {
    let vote: Vote<u64> = from_json("vote", &r.vote_json)?;
    Ok(AppendEntriesRequest {
        vote,
        prev_log_id: r.prev_log_id.as_ref().map(log_id_from_pb),
        leader_commit: r.leader_commit.as_ref().map(log_id_from_pb),
        entries: r
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// Everything of an install-snapshot chunk but its bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    vote: Vote<u64>,
    meta: SnapshotMeta<u64, Node>,
    offset: u64,
    done: bool,
}

pub(crate) fn snapshot_to_pb(r: InstallSnapshotRequest<TypeConfig>) -> pb::InstallSnapshotRequest {
    let header = SnapshotHeader {
        vote: r.vote,
        meta: r.meta,
        offset: r.offset,
        done: r.done,
    };
    pb::InstallSnapshotRequest {
        header_json: to_json(&header),
        data: Bytes::from(r.data),
    }
}

pub(crate) fn snapshot_from_pb(
    r: pb::InstallSnapshotRequest,
) -> Result<InstallSnapshotRequest<TypeConfig>, WireError> {
    let h: SnapshotHeader = from_json("snapshot header", &r.header_json)?;
    Ok(InstallSnapshotRequest {
        vote: h.vote,
        meta: h.meta,
        offset: h.offset,
        data: r.data.to_vec(),
        done: h.done,
    })
}

/// A reply: openraft's response or the error it returned.
pub(crate) fn reply<T: Serialize, E: Serialize>(r: &Result<T, E>) -> pb::RaftReply {
    use pb::raft_reply::Result as R;
    pb::RaftReply {
        result: Some(match r {
            Ok(v) => R::OkJson(to_json(v)),
            Err(e) => R::ErrorJson(to_json(e)),
        }),
    }
}

/// Decodes a reply into openraft's response, or the remote error.
pub(crate) fn unreply<T: DeserializeOwned, E: DeserializeOwned>(
    r: pb::RaftReply,
) -> Result<Result<T, E>, WireError> {
    use pb::raft_reply::Result as R;
    match r.result.ok_or(WireError::Malformed("empty reply"))? {
        R::OkJson(b) => Ok(Ok(from_json("reply", &b)?)),
        R::ErrorJson(b) => Ok(Err(from_json("remote error", &b)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_with_commands_as_bytes() {
        let e = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 1), 7),
            payload: EntryPayload::Normal(vec![1, 2, 3]),
        };
        let p = entry_to_pb(&e);
        assert!(
            matches!(p.payload, Some(pb::entry::Payload::Normal(ref b)) if b.as_ref() == [1, 2, 3])
        );
        let back = entry_from_pb(p).expect("decodes");
        assert_eq!(back.log_id, e.log_id);
        assert!(matches!(back.payload, EntryPayload::Normal(ref c) if c == &[1, 2, 3]));
    }
}
