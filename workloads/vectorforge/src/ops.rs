//! Write operations as deterministic, self-contained records. Every change to a
//! collection is one `Operation` with a sequence number: the WAL stores them,
//! replay re-applies them, and a replicated log (Raft) can ship them as they are.
//! The binary codec keeps vectors as raw little-endian f32 (payloads as JSON).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::payload::index::PayloadSchemaType;
use crate::types::{Payload, PointId, PointStruct};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Insert or replace whole points (vector and payload).
    Upsert(Vec<PointStruct>),
    Delete(Vec<PointId>),
    /// Merge top-level keys into the payloads.
    SetPayload {
        ids: Vec<PointId>,
        payload: Payload,
    },
    /// Merge keys into the object at a nested key (`a.b`) of the payloads, creating the
    /// objects on the way (a non-object value on the way is replaced by an object).
    SetPayloadAt {
        ids: Vec<PointId>,
        key: String,
        payload: Payload,
    },
    /// Replace the payloads.
    OverwritePayload {
        ids: Vec<PointId>,
        payload: Payload,
    },
    /// Delete keys (nested paths `a.b` allowed).
    DeletePayloadKeys {
        ids: Vec<PointId>,
        keys: Vec<String>,
    },
    ClearPayload {
        ids: Vec<PointId>,
    },
    CreateIndex {
        key: String,
        kind: PayloadSchemaType,
    },
    DropIndex {
        key: String,
    },
}

fn put_id(out: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Uuid(u) => {
            out.push(1);
            out.extend_from_slice(u.as_bytes());
        }
    }
}

fn put_ids(out: &mut Vec<u8>, ids: &[PointId]) {
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    ids.iter().for_each(|i| put_id(out, i));
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_json<T: Serialize>(out: &mut Vec<u8>, v: &T) -> Result<()> {
    let b = serde_json::to_vec(v).map_err(|e| Error::InvalidPayload(e.to_string()))?;
    put_bytes(out, &b);
    Ok(())
}

/// Little-endian reader over a record.
pub(crate) struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Cursor { b, p: 0 }
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let s = self
            .b
            .get(self.p..self.p.saturating_add(n))
            .ok_or_else(|| Error::Decode("record too short".into()))?;
        self.p += n;
        Ok(s)
    }
    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn id(&mut self) -> Result<PointId> {
        match self.u8()? {
            0 => Ok(PointId::Num(self.u64()?)),
            1 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.bytes(16)?);
                Ok(PointId::Uuid(uuid::Uuid::from_bytes(a)))
            }
            t => Err(Error::Decode(format!("bad point id tag {t}"))),
        }
    }
    fn ids(&mut self) -> Result<Vec<PointId>> {
        let n = self.u32()? as usize;
        let mut v = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            v.push(self.id()?);
        }
        Ok(v)
    }
    fn json<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T> {
        let n = self.u32()? as usize;
        serde_json::from_slice(self.bytes(n)?).map_err(|e| Error::Decode(e.to_string()))
    }
    fn string(&mut self) -> Result<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|e| Error::Decode(e.to_string()))
    }
    pub(crate) fn done(&self) -> bool {
        self.p == self.b.len()
    }
}

impl Operation {
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        match self {
            Operation::Upsert(points) => {
                out.push(1);
                out.extend_from_slice(&(points.len() as u32).to_le_bytes());
                for p in points {
                    put_id(&mut out, &p.id);
                    out.extend_from_slice(&(p.vector.len() as u32).to_le_bytes());
                    p.vector
                        .iter()
                        .for_each(|x| out.extend_from_slice(&x.to_le_bytes()));
                    match &p.payload {
                        None => out.push(0),
                        Some(pl) => {
                            out.push(1);
                            put_json(&mut out, pl)?;
                        }
                    }
                }
            }
            Operation::Delete(ids) => {
                out.push(2);
                put_ids(&mut out, ids);
            }
            Operation::SetPayload { ids, payload } => {
                out.push(3);
                put_ids(&mut out, ids);
                put_json(&mut out, payload)?;
            }
            Operation::OverwritePayload { ids, payload } => {
                out.push(4);
                put_ids(&mut out, ids);
                put_json(&mut out, payload)?;
            }
            Operation::DeletePayloadKeys { ids, keys } => {
                out.push(5);
                put_ids(&mut out, ids);
                out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
                keys.iter().for_each(|k| put_bytes(&mut out, k.as_bytes()));
            }
            Operation::ClearPayload { ids } => {
                out.push(6);
                put_ids(&mut out, ids);
            }
            Operation::CreateIndex { key, kind } => {
                out.push(7);
                put_bytes(&mut out, key.as_bytes());
                put_json(&mut out, kind)?;
            }
            Operation::DropIndex { key } => {
                out.push(8);
                put_bytes(&mut out, key.as_bytes());
            }
            Operation::SetPayloadAt { ids, key, payload } => {
                out.push(9);
                put_ids(&mut out, ids);
                put_bytes(&mut out, key.as_bytes());
                put_json(&mut out, payload)?;
            }
        }
        Ok(out)
    }

    pub fn decode(b: &[u8]) -> Result<Operation> {
        let mut c = Cursor::new(b);
        let op = match c.u8()? {
            1 => {
                let n = c.u32()? as usize;
                let mut points = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    let id = c.id()?;
                    let dim = c.u32()? as usize;
                    let raw = c.bytes(
                        dim.checked_mul(4)
                            .ok_or_else(|| Error::Decode("dimension overflow".into()))?,
                    )?;
                    let vector = raw
                        .chunks_exact(4)
                        .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                        .collect();
                    let payload = match c.u8()? {
                        0 => None,
                        _ => Some(c.json()?),
                    };
                    points.push(PointStruct {
                        id,
                        vector,
                        payload,
                    });
                }
                Operation::Upsert(points)
            }
            2 => Operation::Delete(c.ids()?),
            3 => Operation::SetPayload {
                ids: c.ids()?,
                payload: c.json()?,
            },
            4 => Operation::OverwritePayload {
                ids: c.ids()?,
                payload: c.json()?,
            },
            5 => {
                let ids = c.ids()?;
                let n = c.u32()? as usize;
                let keys = (0..n).map(|_| c.string()).collect::<Result<_>>()?;
                Operation::DeletePayloadKeys { ids, keys }
            }
            6 => Operation::ClearPayload { ids: c.ids()? },
            9 => Operation::SetPayloadAt {
                ids: c.ids()?,
                key: c.string()?,
                payload: c.json()?,
            },
            7 => Operation::CreateIndex {
                key: c.string()?,
                kind: c.json()?,
            },
            8 => Operation::DropIndex { key: c.string()? },
            t => return Err(Error::Decode(format!("unknown operation tag {t}"))),
        };
        if !c.done() {
            return Err(Error::Decode("trailing bytes after operation".into()));
        }
        Ok(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn codec_roundtrip() {
        let pl = json!({"a": [1, "x", null], "b": {"c": true}})
            .as_object()
            .cloned()
            .unwrap();
        let u = PointId::Uuid(uuid::Uuid::from_u128(42));
        let ops = vec![
            Operation::Upsert(vec![
                PointStruct {
                    id: 1.into(),
                    vector: vec![1.0, -2.5],
                    payload: Some(pl.clone()),
                },
                PointStruct {
                    id: u,
                    vector: vec![0.0, 3.0],
                    payload: None,
                },
            ]),
            Operation::Delete(vec![1.into(), u]),
            Operation::SetPayload {
                ids: vec![2.into()],
                payload: pl.clone(),
            },
            Operation::OverwritePayload {
                ids: vec![],
                payload: pl,
            },
            Operation::DeletePayloadKeys {
                ids: vec![3.into()],
                keys: vec!["a.b".into(), "c".into()],
            },
            Operation::ClearPayload { ids: vec![u] },
            Operation::CreateIndex {
                key: "a".into(),
                kind: PayloadSchemaType::Datetime,
            },
            Operation::DropIndex { key: "a".into() },
            Operation::SetPayloadAt {
                ids: vec![PointId::Num(3)],
                key: "meta.inner".into(),
                payload: serde_json::json!({"x": 1})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            },
        ];
        for op in ops {
            let b = op.encode().unwrap();
            assert_eq!(Operation::decode(&b).unwrap(), op);
            assert!(Operation::decode(&b[..b.len() - 1]).is_err());
        }
        assert!(Operation::decode(&[99]).is_err());
    }
}
