//! The seam between the batcher and whatever computes: a [`Model`] runs one (possibly
//! merged) batch of validated inputs and describes its inputs, outputs and how many rows
//! one run may merge. ONNX Runtime sessions ([`crate::runtime::OrtModel`]) implement it;
//! quantized variants and test doubles plug in the same way.

use oip::{Tensor, TensorSpec};

use crate::error::InferError;

/// A loaded model the batcher can run. `run` is called from a blocking thread, one batch
/// at a time per model.
pub trait Model: Send + Sync + 'static {
    /// The graph's inputs, in the order [`Model::run`] receives them.
    fn inputs(&self) -> &[TensorSpec];

    /// The graph's outputs, in the order [`Model::run`] returns them.
    fn outputs(&self) -> &[TensorSpec];

    /// The most rows (first dimension) the batcher may merge into one run: `None` when the
    /// model sets no limit of its own (the batching config decides), `Some(1)` when
    /// requests must never be merged. By default a model whose inputs and outputs all have
    /// a dynamic first dimension is unlimited and any other is never merged.
    fn max_batch_size(&self) -> Option<usize> {
        let dynamic = self
            .inputs()
            .iter()
            .chain(self.outputs())
            .all(|s| s.shape.first() == Some(&-1));
        if dynamic { None } else { Some(1) }
    }

    /// Runs one batch: `inputs` match [`Model::inputs`] by name and order; every output is
    /// returned, in [`Model::outputs`] order, batched along the same first dimension.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, InferError>;
}
