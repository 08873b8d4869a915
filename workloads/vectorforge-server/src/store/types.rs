//! The server's own data types for one collection: points as clients write them
//! (one vector per vector space), write requests, selectors and returned points.

use std::collections::BTreeMap;

use vectorforge::{Filter, Payload, PayloadSchemaType, PointId};

/// A point as clients upsert it: one vector per vector space.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedPoint {
    pub id: PointId,
    pub vectors: BTreeMap<String, Vec<f32>>,
    pub payload: Option<Payload>,
}

/// Which points a write applies to.
#[derive(Clone, Debug)]
pub enum Selector {
    Ids(Vec<PointId>),
    Filter(Filter),
}

/// A write request against a collection.
#[derive(Clone, Debug)]
pub enum Write {
    Upsert(Vec<NamedPoint>),
    Delete(Selector),
    /// Merge into the payload, or into the object at `key` (a dotted path) when given.
    SetPayload {
        sel: Selector,
        payload: Payload,
        key: Option<String>,
    },
    OverwritePayload {
        sel: Selector,
        payload: Payload,
    },
    DeletePayload {
        sel: Selector,
        keys: Vec<String>,
    },
    ClearPayload(Selector),
    CreateIndex {
        key: String,
        kind: PayloadSchemaType,
    },
    DropIndex {
        key: String,
    },
}

/// Which vectors to return with points.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorSelection {
    None,
    All,
    Names(Vec<String>),
}

/// Vectors of a returned point: plain for an unnamed collection, else by name.
#[derive(Clone, Debug, PartialEq)]
pub enum VectorOut {
    Single(Vec<f32>),
    Named(BTreeMap<String, Vec<f32>>),
}

/// A point returned by retrieve / scroll / search.
#[derive(Clone, Debug, PartialEq)]
pub struct PointOut {
    pub id: PointId,
    pub score: Option<f32>,
    pub payload: Option<Payload>,
    pub vector: Option<VectorOut>,
}

/// Counts and state for CollectionInfo.
#[derive(Clone, Debug)]
pub struct Info {
    pub points: usize,
    pub indexed_vectors: usize,
    pub stored_vectors: usize,
    pub all_indexed: bool,
    pub last_seq: u64,
    /// Indexed payload fields and their types.
    pub indexed_fields: Vec<(String, PayloadSchemaType)>,
}
