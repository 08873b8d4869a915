//! Post-training quantization of ONNX models when they load (`runtime.quantization`):
//! decodes the graph ([`onnx`]), runs the pass ([`dynamic`]), and caches the result
//! beside the original (or in the cache directory when that is read-only), keyed by the
//! original's sha256 and the pass options, so restarts reuse it. Whether ONNX Runtime
//! accepts the result is checked by the caller opening a session on it.

pub mod dynamic;
pub mod onnx;

use std::io::Write;
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::{Digest, Sha256};

pub use crate::config::Quantization;
use crate::storage::hex;
pub use dynamic::{DynamicOptions, Report};

/// Bumped whenever the pass's output changes, so older cached results are not reused.
pub const PASS_VERSION: u32 = 1;

/// Why a model could not be quantized.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error("not a valid ONNX model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("the ONNX model has no graph")]
    NoGraph,
    #[error("nothing to quantize: no MatMul or Gemm with a constant FP32 weight{}", describe(.kept))]
    NothingToQuantize { kept: Vec<(String, String)> },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn describe(kept: &[(String, String)]) -> String {
    if kept.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = kept
        .iter()
        .take(3)
        .map(|(node, why)| format!("{node}: {why}"))
        .collect();
    let more = kept.len().saturating_sub(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    format!(" ({}{more})", listed.join("; "))
}

/// What to quantize to, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantizeOptions {
    pub mode: Quantization,
    pub dynamic: DynamicOptions,
}

impl QuantizeOptions {
    /// The options of a model's runtime config.
    pub fn from_runtime(runtime: &crate::config::RuntimeOptions) -> Self {
        Self {
            mode: runtime.quantization,
            dynamic: DynamicOptions {
                per_channel: true,
                exclude: runtime.quantization_exclude.clone(),
            },
        }
    }

    /// A canonical text of everything that changes the output (part of the cache key).
    fn key_text(&self) -> String {
        let mut exclude = self.dynamic.exclude.clone();
        exclude.sort();
        exclude.dedup();
        format!(
            "pass={PASS_VERSION};mode={};per_channel={};exclude={}",
            self.mode.as_str(),
            self.dynamic.per_channel,
            exclude.join("\u{1f}")
        )
    }
}

/// Quantizes an encoded ONNX model; returns the encoded result and what was done.
pub fn quantize_bytes(
    model: &[u8],
    options: &QuantizeOptions,
) -> Result<(Vec<u8>, Report), QuantizeError> {
    let mut proto = onnx::ModelProto::decode(model)?;
    let report = match options.mode {
        Quantization::None => Report::default(),
        Quantization::Int8Dynamic => dynamic::quantize(&mut proto, &options.dynamic)?,
    };
    Ok((proto.encode_to_vec(), report))
}

/// A quantized model on disk.
#[derive(Debug)]
pub struct Quantized {
    pub path: PathBuf,
    /// Found in the cache (the pass did not run).
    pub cached: bool,
    /// What the pass did (`None` when cached).
    pub report: Option<Report>,
}

/// The file name of the cached result: `<stem>.<mode>.<key>.onnx`, where key is the
/// first 16 hex digits of sha256(sha256(original) | options).
pub fn cache_name(original: &Path, original_sha256: &str, options: &QuantizeOptions) -> String {
    let key = Sha256::digest(format!("{original_sha256}|{}", options.key_text()));
    let stem = original
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    format!("{stem}.{}.{}.onnx", options.mode.as_str(), &hex(&key)[..16])
}

/// Writes `bytes` to `path` atomically (temporary file, then rename).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("onnx.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Returns the quantized form of `original`: from the cache beside it (or under
/// `cache_dir/quantized/`), else by running the pass and storing the result — beside the
/// original when its directory is writable, in `cache_dir/quantized/` otherwise.
pub fn quantize_cached(
    original: &Path,
    cache_dir: &Path,
    options: &QuantizeOptions,
) -> Result<Quantized, QuantizeError> {
    let bytes = std::fs::read(original).map_err(|source| QuantizeError::Io {
        what: "cannot read model",
        path: original.to_path_buf(),
        source,
    })?;
    let name = cache_name(original, &hex(&Sha256::digest(&bytes)), options);
    let beside = original.with_file_name(&name);
    let fallback_dir = cache_dir.join("quantized");
    let fallback = fallback_dir.join(&name);
    for candidate in [&beside, &fallback] {
        if candidate.is_file() {
            tracing::info!(model = %original.display(), cached = %candidate.display(), "quantized model found in cache");
            return Ok(Quantized {
                path: candidate.clone(),
                cached: true,
                report: None,
            });
        }
    }
    let started = std::time::Instant::now();
    let (out, report) = quantize_bytes(&bytes, options)?;
    drop(bytes);
    tracing::info!(
        model = %original.display(),
        mode = options.mode.as_str(),
        quantized = report.quantized.len(),
        kept_fp32 = report.kept.len(),
        folded_bias = report.folded_bias,
        seconds = started.elapsed().as_secs_f64(),
        "quantization pass done"
    );
    for (node, why) in &report.kept {
        tracing::debug!(%node, reason = %why, "node kept in FP32");
    }
    let path = match write_atomic(&beside, &out) {
        Ok(()) => beside,
        Err(e) => {
            tracing::info!(dir = %fallback_dir.display(), error = %e, "model directory not writable; caching the quantized model in the cache directory");
            std::fs::create_dir_all(&fallback_dir).map_err(|source| QuantizeError::Io {
                what: "cannot create",
                path: fallback_dir.clone(),
                source,
            })?;
            write_atomic(&fallback, &out).map_err(|source| QuantizeError::Io {
                what: "cannot write",
                path: fallback.clone(),
                source,
            })?;
            fallback
        }
    };
    Ok(Quantized {
        path,
        cached: false,
        report: Some(report),
    })
}

#[cfg(test)]
mod tests;
