//! Dynamic INT8 quantization of an ONNX graph: every MatMul / Gemm whose weight is a
//! constant FP32 initializer becomes ONNX Runtime's fused `com.microsoft`
//! `DynamicQuantizeMatMul` (activations quantized to UINT8 at run time, weights stored as
//! symmetric INT8 with one scale per output column, or one per tensor). A bias `Add` that
//! directly follows a MatMul, and a Gemm's `C`, are folded into the fused node's bias.
//! Nodes named in the exclude list (by name or op type) stay FP32.

use std::collections::{HashMap, HashSet};

use super::QuantizeError;
use super::onnx::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, value_info_name,
};

/// ONNX Runtime's contrib operator domain.
pub const MS_DOMAIN: &str = "com.microsoft";
/// Largest magnitude of a symmetric INT8 weight (-127..=127; -128 is never used).
pub const QMAX: f32 = 127.0;

/// Settings of the dynamic pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicOptions {
    /// One scale per output column (true) or one per weight tensor.
    pub per_channel: bool,
    /// Node names or op types kept in FP32.
    pub exclude: Vec<String>,
}

impl Default for DynamicOptions {
    fn default() -> Self {
        Self {
            per_channel: true,
            exclude: Vec::new(),
        }
    }
}

/// What the pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Names (or first outputs) of the nodes now running in INT8.
    pub quantized: Vec<String>,
    /// MatMul / Gemm nodes left in FP32, with the reason.
    pub kept: Vec<(String, String)>,
    /// Bias `Add` nodes folded into a quantized node.
    pub folded_bias: usize,
}

/// A weight quantized symmetrically: `w ≈ q * scale[column]` (zero point 0).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeight {
    pub values: Vec<i8>,
    /// One per column (`n` of them), or a single one per tensor.
    pub scales: Vec<f32>,
}

/// Quantizes a row-major `[k, n]` weight. Scale = max |w| / 127 over the column (or the
/// tensor), 1 where that is 0; values are `round_half_even(w / scale)`.
pub fn quantize_weight(w: &[f32], k: usize, n: usize, per_channel: bool) -> QuantizedWeight {
    let scale_of = |absmax: f32| if absmax > 0.0 { absmax / QMAX } else { 1.0 };
    let scales: Vec<f32> = if per_channel {
        let mut absmax = vec![0f32; n];
        for row in w.chunks_exact(n).take(k) {
            for (m, v) in absmax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        absmax.into_iter().map(scale_of).collect()
    } else {
        vec![scale_of(w.iter().fold(0f32, |m, v| m.max(v.abs())))]
    };
    let values = w
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let s = if per_channel {
                scales[i % n]
            } else {
                scales[0]
            };
            // Clamped to ±127 first, so the cast cannot truncate.
            (v / s).round_ties_even().clamp(-QMAX, QMAX) as i8
        })
        .collect();
    QuantizedWeight { values, scales }
}

/// Row-major `[rows, cols]` → `[cols, rows]`.
fn transpose(w: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = w[r * cols + c];
        }
    }
    out
}

/// A MatMul / Gemm the pass can rewrite: its activation, weight `[k, n]` and bias.
struct Candidate {
    activation: String,
    weight_name: String,
    weight: Vec<f32>,
    k: usize,
    n: usize,
    /// Gemm's alpha, folded into the scales.
    alpha: f32,
    bias: Option<Vec<f32>>,
    /// Index of a following bias `Add` folded in (its output becomes the node's).
    folded_add: Option<usize>,
    output: String,
}

struct Graph<'a> {
    initializers: HashMap<&'a str, &'a TensorProto>,
    consumers: HashMap<&'a str, Vec<usize>>,
    outputs: HashSet<String>,
}

impl<'a> Graph<'a> {
    fn new(graph: &'a GraphProto) -> Self {
        // Initializers that are also graph inputs can be overridden at run time: not constant.
        let inputs: HashSet<String> = graph
            .input
            .iter()
            .filter_map(|v| value_info_name(v))
            .collect();
        let initializers = graph
            .initializer
            .iter()
            .filter(|t| !inputs.contains(&t.name))
            .map(|t| (t.name.as_str(), t))
            .collect();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in graph.node.iter().enumerate() {
            for input in &node.input {
                consumers.entry(input.as_str()).or_default().push(i);
            }
        }
        let outputs = graph
            .output
            .iter()
            .filter_map(|v| value_info_name(v))
            .collect();
        Self {
            initializers,
            consumers,
            outputs,
        }
    }

    /// A constant FP32 tensor of the given rank, with its dims.
    fn constant(&self, name: &str, rank: usize) -> Result<(Vec<usize>, Vec<f32>), String> {
        let t = self
            .initializers
            .get(name)
            .ok_or_else(|| format!("input {name:?} is not a constant initializer"))?;
        if t.dims.len() != rank {
            return Err(format!("{name:?} has rank {}, not {rank}", t.dims.len()));
        }
        let values = t
            .floats()
            .ok_or_else(|| format!("{name:?} is not FP32 data stored in the model"))?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(format!("{name:?} holds non-finite values"));
        }
        let dims = t.dims.iter().map(|&d| d as usize).collect();
        Ok((dims, values))
    }

    /// A constant FP32 vector of length `n` (`[n]` or `[1, n]`).
    fn bias(&self, name: &str, n: usize) -> Option<Vec<f32>> {
        let t = self.initializers.get(name)?;
        let shape_ok = matches!(t.dims.as_slice(), [d] | [1, d] if *d as usize == n);
        let values = t.floats()?;
        (shape_ok && values.len() == n && values.iter().all(|v| v.is_finite())).then_some(values)
    }

    /// A single bias `Add` consuming `output`, if it can be folded.
    fn following_bias_add(
        &self,
        nodes: &[NodeProto],
        output: &str,
        n: usize,
    ) -> Option<(usize, Vec<f32>)> {
        if self.outputs.contains(output) {
            return None;
        }
        let [add] = self.consumers.get(output)?.as_slice() else {
            return None;
        };
        let node = &nodes[*add];
        if node.op_type != "Add" || !node.domain.is_empty() || node.input.len() != 2 {
            return None;
        }
        let other = if node.input[0] == output {
            &node.input[1]
        } else {
            &node.input[0]
        };
        Some((*add, self.bias(other, n)?))
    }

    fn candidate(&self, nodes: &[NodeProto], node: &NodeProto) -> Result<Candidate, String> {
        let output = node.output.first().cloned().unwrap_or_default();
        match node.op_type.as_str() {
            "MatMul" => {
                let [a, b] = node.input.as_slice() else {
                    return Err("MatMul without two inputs".into());
                };
                let (dims, weight) = self.constant(b, 2)?;
                let (k, n) = (dims[0], dims[1]);
                let folded = self.following_bias_add(nodes, &output, n);
                Ok(Candidate {
                    activation: a.clone(),
                    weight_name: b.clone(),
                    weight,
                    k,
                    n,
                    alpha: 1.0,
                    output: folded
                        .as_ref()
                        .and_then(|(i, _)| nodes[*i].output.first().cloned())
                        .unwrap_or(output),
                    folded_add: folded.as_ref().map(|(i, _)| *i),
                    bias: folded.map(|(_, b)| b),
                })
            }
            "Gemm" => {
                if node.attr_int("transA", 0) != 0 {
                    return Err("Gemm with transA".into());
                }
                let (a, b, c) = match node.input.as_slice() {
                    [a, b] => (a, b, None),
                    [a, b, c] if c.is_empty() => (a, b, None),
                    [a, b, c] => (a, b, Some(c)),
                    _ => return Err("Gemm without two or three inputs".into()),
                };
                let (dims, weight) = self.constant(b, 2)?;
                let (weight, k, n) = if node.attr_int("transB", 0) != 0 {
                    (transpose(&weight, dims[0], dims[1]), dims[1], dims[0])
                } else {
                    (weight, dims[0], dims[1])
                };
                let beta = node.attr_float("beta", 1.0);
                let bias = match c {
                    None => None,
                    Some(c) => Some(
                        self.bias(c, n)
                            .ok_or_else(|| format!("Gemm bias {c:?} is not a constant [{n}]"))?
                            .into_iter()
                            .map(|v| v * beta)
                            .collect(),
                    ),
                };
                Ok(Candidate {
                    activation: a.clone(),
                    weight_name: b.clone(),
                    weight,
                    k,
                    n,
                    alpha: node.attr_float("alpha", 1.0),
                    bias,
                    folded_add: None,
                    output,
                })
            }
            other => Err(format!("{other} is not quantized")),
        }
    }
}

fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    }
}

/// Rewrites `model` in place; fails when no node could be quantized.
pub fn quantize(model: &mut ModelProto, options: &DynamicOptions) -> Result<Report, QuantizeError> {
    let graph = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    let mut report = Report::default();
    // Sub-graphs (If / Loop bodies) are kept as bytes and may read outer initializers:
    // with any present, original weights are kept even when the pass replaced every use.
    let has_subgraphs = graph.node.iter().any(|n| {
        n.attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
    });
    let mut replaced: Vec<(usize, NodeProto)> = Vec::new();
    let mut removed_adds: HashSet<usize> = HashSet::new();
    let mut new_initializers: Vec<TensorProto> = Vec::new();
    {
        let view = Graph::new(graph);
        let nodes = &graph.node;
        for (index, node) in nodes.iter().enumerate() {
            if !matches!(node.op_type.as_str(), "MatMul" | "Gemm") || !node.domain.is_empty() {
                continue;
            }
            let label = node_label(node);
            if options
                .exclude
                .iter()
                .any(|e| *e == node.name || *e == node.op_type)
            {
                report.kept.push((label, "excluded".into()));
                continue;
            }
            let c = match view.candidate(nodes, node) {
                Ok(c) if c.folded_add.is_some_and(|a| removed_adds.contains(&a)) => {
                    report
                        .kept
                        .push((label, "its bias Add is already folded".into()));
                    continue;
                }
                Ok(c) => c,
                Err(reason) => {
                    report.kept.push((label, reason));
                    continue;
                }
            };
            let q = quantize_weight(&c.weight, c.k, c.n, options.per_channel);
            let base = format!("{}_{}", c.weight_name, index);
            let scale_dims = if options.per_channel {
                vec![c.n as i64]
            } else {
                vec![]
            };
            let scales: Vec<f32> = q.scales.iter().map(|s| s * c.alpha).collect();
            new_initializers.push(TensorProto::from_i8(
                &format!("{base}_quantized"),
                vec![c.k as i64, c.n as i64],
                &q.values,
            ));
            new_initializers.push(TensorProto::from_floats(
                &format!("{base}_scale"),
                scale_dims.clone(),
                &scales,
            ));
            new_initializers.push(TensorProto::from_i8(
                &format!("{base}_zero_point"),
                scale_dims,
                &vec![0; scales.len()],
            ));
            let mut inputs = vec![
                c.activation.clone(),
                format!("{base}_quantized"),
                format!("{base}_scale"),
                format!("{base}_zero_point"),
            ];
            if let Some(bias) = &c.bias {
                new_initializers.push(TensorProto::from_floats(
                    &format!("{base}_bias"),
                    vec![c.n as i64],
                    bias,
                ));
                inputs.push(format!("{base}_bias"));
            }
            if let Some(add) = c.folded_add {
                removed_adds.insert(add);
                report.folded_bias += 1;
            }
            replaced.push((
                index,
                NodeProto {
                    input: inputs,
                    output: vec![c.output.clone()],
                    name: format!("{label}_int8"),
                    op_type: "DynamicQuantizeMatMul".into(),
                    domain: MS_DOMAIN.into(),
                    ..NodeProto::default()
                },
            ));
            report.quantized.push(label);
        }
    }
    if replaced.is_empty() {
        return Err(QuantizeError::NothingToQuantize {
            kept: report.kept.clone(),
        });
    }
    for (index, node) in replaced {
        graph.node[index] = node;
    }
    let mut index = 0;
    graph.node.retain(|_| {
        let keep = !removed_adds.contains(&index);
        index += 1;
        keep
    });
    if !has_subgraphs {
        // Drop FP32 weights (and folded biases) nothing reads any more.
        let read: HashSet<&str> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().map(String::as_str))
            .collect();
        let outputs: HashSet<String> = graph
            .output
            .iter()
            .filter_map(|v| value_info_name(v))
            .collect();
        graph
            .initializer
            .retain(|t| read.contains(t.name.as_str()) || outputs.contains(&t.name));
    }
    graph.initializer.extend(new_initializers);
    if !model.opset_import.iter().any(|o| o.domain == MS_DOMAIN) {
        model.opset_import.push(OperatorSetIdProto {
            domain: MS_DOMAIN.into(),
            version: 1,
        });
    }
    Ok(report)
}
