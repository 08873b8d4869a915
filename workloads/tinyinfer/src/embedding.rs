//! Text embedding pipeline: a BYTES tensor of sentences is tokenized offline with a
//! `tokenizer.json` (Rust `tokenizers`), run through a BERT-style encoder
//! (input_ids / attention_mask / token_type_ids) and pooled over the attention mask
//! into L2-normalised sentence embeddings.

use std::path::Path;

use oip::{DataType, Tensor, TensorData, TensorSpec};
use tokenizers::Tokenizer;

use crate::config::Pooling;
use crate::error::InferError;

/// Name of the pipeline's input (BYTES, one sentence per element).
pub const TEXT_INPUT: &str = "text";
/// Name of the pipeline's output (FP32, `[sentences, hidden]`).
pub const EMBEDDING_OUTPUT: &str = "embedding";

/// Name of the pipeline's second output: the token ids fed to the encoder (INT64,
/// `[sentences, tokens]`, zero-padded), for checking tokenization.
pub const IDS_OUTPUT: &str = "input_ids";

/// Sequences are padded up to a multiple of this, so requests of similar length batch.
const PAD_MULTIPLE: usize = 8;

/// Tokenizer plus pooling settings for one embedding model.
pub struct EmbeddingPipeline {
    tokenizer: Tokenizer,
    pooling: Pooling,
    max_tokens: usize,
    ids_input: String,
    mask_input: Option<String>,
    type_input: Option<String>,
    id_type: DataType,
    hidden_output: String,
    hidden_size: i64,
}

/// What pooling needs to know about an encoded request.
pub struct Encoded {
    sentences: usize,
    seq_len: usize,
    mask: Vec<u8>,
}

impl EmbeddingPipeline {
    /// Reads `tokenizer.json` and maps the graph's inputs and first output.
    pub fn new(
        tokenizer_path: &Path,
        pooling: Pooling,
        max_tokens: usize,
        inputs: &[TensorSpec],
        outputs: &[TensorSpec],
    ) -> Result<Self, String> {
        let mut tokenizer = Tokenizer::from_file(tokenizer_path)
            .map_err(|e| format!("tokenizer {}: {e}", tokenizer_path.display()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| format!("tokenizer {}: {e}", tokenizer_path.display()))?;
        let find = |names: &[&str]| {
            inputs
                .iter()
                .find(|s| names.contains(&s.name.as_str()))
                .map(|s| (s.name.clone(), s.datatype))
        };
        let (ids_input, id_type) =
            find(&["input_ids", "ids"]).ok_or("embedding model has no input_ids input")?;
        if !matches!(id_type, DataType::I64 | DataType::I32) {
            return Err(format!("input_ids must be INT64 or INT32, not {id_type}"));
        }
        let mask_input = find(&["attention_mask", "mask"]).map(|(n, _)| n);
        let type_input = find(&["token_type_ids", "segment_ids"]).map(|(n, _)| n);
        let known = 1 + usize::from(mask_input.is_some()) + usize::from(type_input.is_some());
        if known != inputs.len() {
            return Err(
                "embedding model has inputs besides input_ids / attention_mask / token_type_ids"
                    .into(),
            );
        }
        let hidden = outputs.first().ok_or("embedding model has no output")?;
        if hidden.datatype != DataType::F32 || hidden.shape.len() != 3 {
            return Err(format!(
                "embedding model output {} must be FP32 [batch, tokens, hidden], is {} {:?}",
                hidden.name, hidden.datatype, hidden.shape
            ));
        }
        Ok(Self {
            tokenizer,
            pooling,
            max_tokens,
            ids_input,
            mask_input,
            type_input,
            id_type,
            hidden_output: hidden.name.clone(),
            hidden_size: hidden.shape[2],
        })
    }

    pub fn input_spec(&self) -> TensorSpec {
        TensorSpec {
            name: TEXT_INPUT.into(),
            datatype: DataType::Bytes,
            shape: vec![-1],
        }
    }

    pub fn output_specs(&self) -> Vec<TensorSpec> {
        vec![
            TensorSpec {
                name: EMBEDDING_OUTPUT.into(),
                datatype: DataType::F32,
                shape: vec![-1, self.hidden_size],
            },
            TensorSpec {
                name: IDS_OUTPUT.into(),
                datatype: DataType::I64,
                shape: vec![-1, -1],
            },
        ]
    }

    /// The token ids of an encoded request as the `input_ids` output.
    pub fn ids_output(&self, graph_inputs: &[Tensor]) -> Option<Tensor> {
        let ids = graph_inputs.iter().find(|t| t.name == self.ids_input)?;
        let data = match &ids.data {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|x| i64::from(*x)).collect(),
            _ => return None,
        };
        Some(Tensor {
            name: IDS_OUTPUT.into(),
            shape: ids.shape.clone(),
            data: TensorData::I64(data),
        })
    }

    /// Token ids of one sentence (with [CLS]/[SEP]), truncated to `maxTokens`.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, InferError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| InferError::BadRequest(format!("cannot tokenize: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > self.max_tokens {
            // Keep the closing special token when truncating.
            let last = ids[ids.len() - 1];
            ids.truncate(self.max_tokens);
            if let Some(l) = ids.last_mut() {
                *l = last;
            }
        }
        Ok(ids)
    }

    /// Tokenizes the sentences of `text` into the graph's inputs.
    pub fn encode(&self, text: &Tensor) -> Result<(Vec<Tensor>, Encoded), InferError> {
        let TensorData::Bytes(sentences) = &text.data else {
            return Err(InferError::BadRequest("text input must be BYTES".into()));
        };
        if sentences.is_empty() {
            return Err(InferError::BadRequest("text input is empty".into()));
        }
        let mut all_ids = Vec::with_capacity(sentences.len());
        for s in sentences {
            let s = std::str::from_utf8(s)
                .map_err(|_| InferError::BadRequest("text input is not valid UTF-8".into()))?;
            all_ids.push(self.token_ids(s)?);
        }
        let longest = all_ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let seq_len = longest.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        let n = sentences.len();
        let mut ids = vec![0i64; n * seq_len];
        let mut mask = vec![0u8; n * seq_len];
        for (row, sentence) in all_ids.iter().enumerate() {
            for (col, id) in sentence.iter().enumerate() {
                ids[row * seq_len + col] = i64::from(*id);
                mask[row * seq_len + col] = 1;
            }
        }
        let shape = vec![n as i64, seq_len as i64];
        let as_ids = |v: Vec<i64>| match self.id_type {
            DataType::I32 => TensorData::I32(v.into_iter().map(|x| x as i32).collect()),
            _ => TensorData::I64(v),
        };
        let mut inputs = vec![Tensor {
            name: self.ids_input.clone(),
            shape: shape.clone(),
            data: as_ids(ids),
        }];
        if let Some(name) = &self.mask_input {
            inputs.push(Tensor {
                name: name.clone(),
                shape: shape.clone(),
                data: as_ids(mask.iter().map(|m| i64::from(*m)).collect()),
            });
        }
        if let Some(name) = &self.type_input {
            inputs.push(Tensor {
                name: name.clone(),
                shape,
                data: as_ids(vec![0; n * seq_len]),
            });
        }
        Ok((
            inputs,
            Encoded {
                sentences: n,
                seq_len,
                mask,
            },
        ))
    }

    /// Pools the encoder's token states into one L2-normalised vector per sentence.
    pub fn pool(&self, outputs: &[Tensor], encoded: &Encoded) -> Result<Tensor, InferError> {
        let hidden = outputs
            .iter()
            .find(|t| t.name == self.hidden_output)
            .ok_or_else(|| InferError::Internal("encoder output missing".into()))?;
        let TensorData::F32(states) = &hidden.data else {
            return Err(InferError::Internal("encoder output is not FP32".into()));
        };
        let (n, seq) = (encoded.sentences, encoded.seq_len);
        let dim = usize::try_from(self.hidden_size)
            .ok()
            .filter(|d| *d > 0)
            .or_else(|| hidden.shape.get(2).and_then(|d| usize::try_from(*d).ok()))
            .unwrap_or(0);
        if states.len() != n * seq * dim || dim == 0 {
            return Err(InferError::Internal(format!(
                "encoder output shape {:?} does not match {n} x {seq} tokens",
                hidden.shape
            )));
        }
        let mut out = vec![0f32; n * dim];
        for row in 0..n {
            let acc = &mut out[row * dim..(row + 1) * dim];
            match self.pooling {
                Pooling::Mean => {
                    let mut count = 0f32;
                    for tok in 0..seq {
                        if encoded.mask[row * seq + tok] == 0 {
                            continue;
                        }
                        count += 1.0;
                        let state = &states[(row * seq + tok) * dim..(row * seq + tok + 1) * dim];
                        acc.iter_mut().zip(state).for_each(|(a, s)| *a += s);
                    }
                    let count = count.max(1e-9);
                    acc.iter_mut().for_each(|a| *a /= count);
                }
                Pooling::Cls => {
                    acc.copy_from_slice(&states[row * seq * dim..(row * seq + 1) * dim])
                }
            }
            let norm = acc.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
            acc.iter_mut().for_each(|a| *a /= norm);
        }
        Ok(Tensor {
            name: EMBEDDING_OUTPUT.into(),
            shape: vec![n as i64, dim as i64],
            data: TensorData::F32(out),
        })
    }
}
