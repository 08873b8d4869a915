//! vectorforge: the vector database engine behind VectorCollection.
//!
//! One shard of a collection: vectors in memory-mapped storage, an HNSW graph,
//! JSON payloads with a roaring-bitmap payload index, Qdrant-style filters, and
//! durability through a write-ahead log plus atomic snapshots.

pub mod collection;
pub mod distance;
pub mod error;
pub mod filter;
pub mod hnsw;
pub mod npy;
pub mod ops;
pub mod payload;
pub mod point_id;
pub mod quantization;
pub mod snapshot;
pub mod storage;
pub mod types;
pub mod wal;

pub use error::{Error, Result};
pub use types::*;

pub use collection::{
    Applied, Collection, CollectionInfo, QuantizationSearchParams, ScrollRequest, ScrollResult,
    SearchRequest,
};
pub use filter::Filter;
pub use ops::Operation;
pub use payload::index::PayloadSchemaType;
