//! Unit tests of the quantization pass on small hand-built graphs: exact scales, zero
//! points and INT8 values for known weights, the rewritten graph's shape, what stays
//! FP32 and why, and the cache key.

use prost::Message;

use super::onnx::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    attribute_type, encode_value_info_name,
};
use super::*;

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        ..NodeProto::default()
    }
}

fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, inputs: &[&str]) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            name: "g".into(),
            node: nodes,
            initializer: initializers,
            input: inputs.iter().map(|n| encode_value_info_name(n)).collect(),
            output: vec![encode_value_info_name("y")],
            ..GraphProto::default()
        }),
        ..ModelProto::default()
    }
}

fn init<'a>(m: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
    m.graph
        .as_ref()?
        .initializer
        .iter()
        .find(|t| t.name == name)
}

const W: [f32; 4] = [1.0, -1.0, 0.25, 4.0]; // [[1, -1], [0.25, 4]]

#[test]
fn per_channel_scales_are_column_absmax_over_127() {
    let q = dynamic::quantize_weight(&W, 2, 2, true);
    assert_eq!(q.scales, vec![1.0 / 127.0, 4.0 / 127.0]);
    // 0.25 / (1/127) = 31.75 -> 32; -1 / (4/127) = -31.75 -> -32.
    assert_eq!(q.values, vec![127, -32, 32, 127]);
}

#[test]
fn per_tensor_scale_is_tensor_absmax_over_127() {
    let q = dynamic::quantize_weight(&W, 2, 2, false);
    assert_eq!(q.scales, vec![4.0 / 127.0]);
    assert_eq!(q.values, vec![32, -32, 8, 127]);
}

#[test]
fn all_zero_column_gets_scale_one_and_ties_round_to_even() {
    // Column 0 is zero; column 1 has absmax 2 so 1 maps to 63.5 exactly -> 64 (even).
    let w = [0.0, 2.0, 0.0, 1.0];
    let q = dynamic::quantize_weight(&w, 2, 2, true);
    assert_eq!(q.scales[0], 1.0);
    assert_eq!(q.values[0], 0);
    assert_eq!(q.values[2], 0);
    assert_eq!(q.values[1], 127);
    let half = 1.0 / (2.0f32 / 127.0);
    assert_eq!(q.values[3], half.round_ties_even() as i8);
}

#[test]
fn matmul_with_bias_add_becomes_one_fused_node() {
    let mut m = model(
        vec![
            node("MatMul", "mm", &["x", "w"], &["h"]),
            node("Add", "add", &["h", "b"], &["y"]),
        ],
        vec![
            TensorProto::from_floats("w", vec![2, 2], &W),
            TensorProto::from_floats("b", vec![2], &[0.5, -0.5]),
        ],
        &["x"],
    );
    let report = dynamic::quantize(&mut m, &DynamicOptions::default()).unwrap();
    assert_eq!(report.quantized, vec!["mm".to_owned()]);
    assert_eq!(report.folded_bias, 1);
    let g = m.graph.as_ref().unwrap();
    assert_eq!(g.node.len(), 1);
    let fused = &g.node[0];
    assert_eq!(
        (fused.op_type.as_str(), fused.domain.as_str()),
        ("DynamicQuantizeMatMul", "com.microsoft")
    );
    assert_eq!(
        fused.input,
        vec![
            "x",
            "w_0_quantized",
            "w_0_scale",
            "w_0_zero_point",
            "w_0_bias"
        ]
    );
    assert_eq!(fused.output, vec!["y"]);
    let q = init(&m, "w_0_quantized").unwrap();
    assert_eq!(q.dims, vec![2, 2]);
    assert_eq!(q.int8s().unwrap(), vec![127, -32, 32, 127]);
    let scale = init(&m, "w_0_scale").unwrap();
    assert_eq!(scale.dims, vec![2]);
    assert_eq!(scale.floats().unwrap(), vec![1.0 / 127.0, 4.0 / 127.0]);
    assert_eq!(
        init(&m, "w_0_zero_point").unwrap().int8s().unwrap(),
        vec![0, 0]
    );
    assert_eq!(
        init(&m, "w_0_bias").unwrap().floats().unwrap(),
        vec![0.5, -0.5]
    );
    // The FP32 weight and the folded bias are gone; the contrib domain is imported.
    assert!(init(&m, "w").is_none() && init(&m, "b").is_none());
    assert!(
        m.opset_import
            .iter()
            .any(|o| o.domain == "com.microsoft" && o.version == 1)
    );
}

#[test]
fn gemm_transposed_weight_alpha_and_beta_are_folded() {
    let mut gemm = node("Gemm", "fc", &["x", "w", "c"], &["y"]);
    let attr = |name: &str, f: f32, i: i64, ty: i32| AttributeProto {
        name: name.into(),
        f,
        i,
        r#type: ty,
        ..AttributeProto::default()
    };
    gemm.attribute = vec![
        attr("transB", 0.0, 1, attribute_type::INT),
        attr("alpha", 2.0, 0, attribute_type::FLOAT),
        attr("beta", 0.5, 0, attribute_type::FLOAT),
    ];
    // w is [n=2, k=2] = W transposed; after transB the [k, n] weight is W again.
    let mut m = model(
        vec![gemm],
        vec![
            TensorProto::from_floats("w", vec![2, 2], &[1.0, 0.25, -1.0, 4.0]),
            TensorProto::from_floats("c", vec![2], &[2.0, 4.0]),
        ],
        &["x"],
    );
    dynamic::quantize(&mut m, &DynamicOptions::default()).unwrap();
    assert_eq!(
        init(&m, "w_0_quantized").unwrap().int8s().unwrap(),
        vec![127, -32, 32, 127]
    );
    assert_eq!(
        init(&m, "w_0_scale").unwrap().floats().unwrap(),
        vec![2.0 / 127.0, 8.0 / 127.0]
    );
    assert_eq!(
        init(&m, "w_0_bias").unwrap().floats().unwrap(),
        vec![1.0, 2.0]
    );
}

#[test]
fn excluded_and_non_constant_weights_stay_fp32_with_reasons() {
    let nodes = vec![
        node("MatMul", "keep", &["x", "w"], &["h"]),
        node("MatMul", "dyn", &["h", "x2"], &["h2"]),
        node("MatMul", "q", &["h2", "w"], &["y"]),
    ];
    let mut m = model(
        nodes,
        vec![TensorProto::from_floats("w", vec![2, 2], &W)],
        &["x", "x2"],
    );
    let options = DynamicOptions {
        exclude: vec!["keep".into()],
        ..DynamicOptions::default()
    };
    let report = dynamic::quantize(&mut m, &options).unwrap();
    assert_eq!(report.quantized, vec!["q".to_owned()]);
    assert_eq!(report.kept[0], ("keep".into(), "excluded".into()));
    assert_eq!(report.kept[1].0, "dyn");
    assert!(
        report.kept[1].1.contains("not a constant"),
        "{:?}",
        report.kept
    );
    // "keep" still reads the FP32 weight: it stays.
    assert!(init(&m, "w").is_some());
    let ops: Vec<&str> = m
        .graph
        .as_ref()
        .unwrap()
        .node
        .iter()
        .map(|n| n.op_type.as_str())
        .collect();
    assert_eq!(ops, vec!["MatMul", "MatMul", "DynamicQuantizeMatMul"]);
}

#[test]
fn an_initializer_that_is_also_an_input_is_not_constant() {
    let mut m = model(
        vec![node("MatMul", "mm", &["x", "w"], &["y"])],
        vec![TensorProto::from_floats("w", vec![2, 2], &W)],
        &["x", "w"],
    );
    let err = dynamic::quantize(&mut m, &DynamicOptions::default()).unwrap_err();
    assert!(matches!(err, QuantizeError::NothingToQuantize { .. }));
    assert!(
        err.to_string()
            .contains("mm: input \"w\" is not a constant"),
        "{err}"
    );
}

#[test]
fn garbage_and_graphless_models_are_clear_errors() {
    let options = QuantizeOptions {
        mode: Quantization::Int8Dynamic,
        dynamic: DynamicOptions::default(),
    };
    let err = quantize_bytes(b"\xff\xff\xff not onnx", &options).unwrap_err();
    assert!(matches!(err, QuantizeError::Decode(_)), "{err}");
    let empty = ModelProto::default().encode_to_vec();
    assert!(matches!(
        quantize_bytes(&empty, &options).unwrap_err(),
        QuantizeError::NoGraph
    ));
}

#[test]
fn results_are_cached_beside_the_original_keyed_by_content_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("m.onnx");
    let m = model(
        vec![node("MatMul", "mm", &["x", "w"], &["y"])],
        vec![TensorProto::from_floats("w", vec![2, 2], &W)],
        &["x"],
    );
    std::fs::write(&original, m.encode_to_vec()).unwrap();
    let cache = dir.path().join("cache");
    let options = QuantizeOptions {
        mode: Quantization::Int8Dynamic,
        dynamic: DynamicOptions::default(),
    };
    let first = quantize_cached(&original, &cache, &options).unwrap();
    assert!(!first.cached);
    assert_eq!(first.path.parent(), Some(dir.path()));
    assert!(
        first
            .path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("m.int8-dynamic.")
    );
    let again = quantize_cached(&original, &cache, &options).unwrap();
    assert!(again.cached);
    assert_eq!(again.path, first.path);
    let per_tensor = QuantizeOptions {
        dynamic: DynamicOptions {
            per_channel: false,
            ..DynamicOptions::default()
        },
        ..options.clone()
    };
    let other = quantize_cached(&original, &cache, &per_tensor).unwrap();
    assert!(!other.cached);
    assert_ne!(other.path, first.path);
    // A changed original is quantized again.
    let mut changed = m.clone();
    changed.graph.as_mut().unwrap().initializer[0] =
        TensorProto::from_floats("w", vec![2, 2], &[1.0, 2.0, 3.0, 4.0]);
    std::fs::write(&original, changed.encode_to_vec()).unwrap();
    assert!(!quantize_cached(&original, &cache, &options).unwrap().cached);
    // The cached file decodes to the quantized graph.
    let stored = ModelProto::decode(std::fs::read(&first.path).unwrap().as_slice()).unwrap();
    assert_eq!(
        stored.graph.unwrap().node[0].op_type,
        "DynamicQuantizeMatMul"
    );
}
