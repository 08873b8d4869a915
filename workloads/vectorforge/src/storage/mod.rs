//! Vector storage: where the dense vectors live, behind the small `VectorSource` trait
//! the graph and the exact scorer read through.

mod codes;
mod vectors;

pub use codes::MmapCodes;
pub use vectors::MmapVectors;

use crate::types::Offset;

/// Read access to stored vectors by internal offset.
pub trait VectorSource: Sync {
    fn dim(&self) -> usize;
    /// Vectors stored so far (offsets `0..len()` are readable).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The vector at `offset`; an empty slice for an offset that was never written.
    fn vector(&self, offset: Offset) -> &[f32];
}

impl VectorSource for Vec<Vec<f32>> {
    fn dim(&self) -> usize {
        self.first().map_or(0, Vec::len)
    }
    fn len(&self) -> usize {
        <[Vec<f32>]>::len(self)
    }
    fn vector(&self, offset: Offset) -> &[f32] {
        self.get(offset as usize).map_or(&[], |v| v.as_slice())
    }
}
