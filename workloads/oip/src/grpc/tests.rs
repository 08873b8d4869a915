//! Round trips and rejected messages of the gRPC conversions.

use half::f16;

use super::*;
use crate::tensor::TensorError;

fn every_datatype() -> Vec<Tensor> {
    let t = |name: &str, data: TensorData| Tensor {
        name: name.into(),
        shape: vec![1, data.len() as i64],
        data,
    };
    vec![
        t("bool", TensorData::Bool(vec![true, false])),
        t("u8", TensorData::U8(vec![0, 255])),
        t("u16", TensorData::U16(vec![1, u16::MAX])),
        t("u32", TensorData::U32(vec![7, u32::MAX])),
        t("u64", TensorData::U64(vec![9, u64::MAX])),
        t("i8", TensorData::I8(vec![i8::MIN, 127])),
        t("i16", TensorData::I16(vec![-3, 3])),
        t("i32", TensorData::I32(vec![i32::MIN, 5])),
        t("i64", TensorData::I64(vec![i64::MIN, 5])),
        t("f16", TensorData::F16(vec![f16::from_f32(0.5)])),
        t("f32", TensorData::F32(vec![1.25, -0.5])),
        t("f64", TensorData::F64(vec![1e300, -0.0])),
        t(
            "bytes",
            TensorData::Bytes(vec![b"a".to_vec(), vec![0xff, 0]]),
        ),
    ]
}

#[test]
fn request_round_trips_through_raw_contents() {
    let request = InferRequest {
        id: Some("id-7".into()),
        inputs: every_datatype(),
        outputs: vec!["y".into()],
        timeout: Some(Duration::from_millis(3)),
    };
    let wire = encode_request("mlp", "2", &request);
    assert_eq!(
        (wire.model_name.as_str(), wire.model_version.as_str()),
        ("mlp", "2")
    );
    assert_eq!(wire.raw_input_contents.len(), wire.inputs.len());
    assert_eq!(decode_request(&wire).unwrap(), request);
    // An empty id and no timeout stay absent.
    let bare = InferRequest {
        inputs: every_datatype(),
        ..Default::default()
    };
    assert_eq!(
        decode_request(&encode_request("m", "", &bare)).unwrap(),
        bare
    );
}

#[test]
fn response_round_trips_through_raw_contents() {
    let response = InferResponse {
        model_name: "mlp".into(),
        model_version: "1".into(),
        id: Some("x".into()),
        outputs: every_datatype(),
    };
    let wire = encode_response(response.clone());
    assert_eq!(wire.outputs[10].datatype, "FP32");
    assert_eq!(decode_response(&wire).unwrap(), response);
}

#[test]
fn typed_contents_decode_for_every_datatype_but_fp16() {
    let contents = pb::InferTensorContents {
        bool_contents: vec![true],
        int_contents: vec![-5],
        int64_contents: vec![-6],
        uint_contents: vec![7],
        uint64_contents: vec![8],
        fp32_contents: vec![1.5],
        fp64_contents: vec![2.5],
        bytes_contents: vec![bytes::Bytes::from_static(b"s")],
    };
    let want = [
        ("BOOL", TensorData::Bool(vec![true])),
        ("INT8", TensorData::I8(vec![-5])),
        ("INT16", TensorData::I16(vec![-5])),
        ("INT32", TensorData::I32(vec![-5])),
        ("INT64", TensorData::I64(vec![-6])),
        ("UINT8", TensorData::U8(vec![7])),
        ("UINT16", TensorData::U16(vec![7])),
        ("UINT32", TensorData::U32(vec![7])),
        ("UINT64", TensorData::U64(vec![8])),
        ("FP32", TensorData::F32(vec![1.5])),
        ("FP64", TensorData::F64(vec![2.5])),
        ("BYTES", TensorData::Bytes(vec![b"s".to_vec()])),
    ];
    for (datatype, data) in want {
        let req = pb::ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: "x".into(),
                datatype: datatype.into(),
                shape: vec![1],
                contents: Some(contents.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            decode_request(&req).unwrap().inputs[0].data,
            data,
            "{datatype}"
        );
        let resp = pb::ModelInferResponse {
            outputs: vec![InferOutputTensor {
                name: "y".into(),
                datatype: datatype.into(),
                shape: vec![1],
                contents: Some(contents.clone()),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            decode_response(&resp).unwrap().outputs[0].data,
            data,
            "{datatype}"
        );
    }
}

fn one_input(datatype: &str, contents: Option<pb::InferTensorContents>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: vec![1],
            contents,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn bad_requests_are_clear_errors() {
    let msg = |req: &pb::ModelInferRequest| decode_request(req).unwrap_err().to_string();
    assert_eq!(
        msg(&one_input("FP8", None)),
        r#"input "x": unsupported datatype "FP8""#
    );
    assert_eq!(
        msg(&one_input("FP32", None)),
        r#"input "x" has no contents"#
    );
    assert_eq!(
        msg(&one_input("FP16", Some(Default::default()))),
        r#"input "x": FP16 must be sent in raw_input_contents"#
    );
    let big = pb::InferTensorContents {
        int_contents: vec![300],
        ..Default::default()
    };
    assert_eq!(
        msg(&one_input("INT8", Some(big))),
        r#"input "x": value out of range"#
    );
    let mut two_raw = one_input("FP32", None);
    two_raw.raw_input_contents = vec![vec![0; 4].into(), vec![0; 4].into()];
    assert_eq!(msg(&two_raw), "2 raw_input_contents for 1 inputs");
    let mut short = one_input("FP32", None);
    short.raw_input_contents = vec![vec![0; 3].into()];
    assert!(matches!(
        decode_request(&short),
        Err(CodecError::Tensor(TensorError::RawLength { len: 3, .. }))
    ));
    let resp = pb::ModelInferResponse {
        outputs: vec![InferOutputTensor {
            name: "y".into(),
            datatype: "FP16".into(),
            contents: Some(Default::default()),
            ..Default::default()
        }],
        ..Default::default()
    };
    assert_eq!(
        decode_response(&resp).unwrap_err().to_string(),
        r#"output "y": FP16 must be sent in raw_output_contents"#
    );
}

#[test]
fn timeout_parameter_is_read_in_microseconds() {
    let with = |choice| {
        let mut req = one_input("FP32", Some(Default::default()));
        req.parameters.insert(
            "timeout".into(),
            pb::InferParameter {
                parameter_choice: Some(choice),
            },
        );
        decode_request(&req).unwrap().timeout
    };
    assert_eq!(
        with(ParameterChoice::Int64Param(1500)),
        Some(Duration::from_micros(1500))
    );
    assert_eq!(
        with(ParameterChoice::Uint64Param(20)),
        Some(Duration::from_micros(20))
    );
    assert_eq!(with(ParameterChoice::Int64Param(0)), None);
    assert_eq!(with(ParameterChoice::Int64Param(-1)), None);
    assert_eq!(with(ParameterChoice::StringParam("5".into())), None);
}

#[test]
fn grpc_timeout_header_units() {
    assert_eq!(parse_timeout("2S"), Some(Duration::from_secs(2)));
    assert_eq!(parse_timeout("1H"), Some(Duration::from_secs(3600)));
    assert_eq!(parse_timeout("3M"), Some(Duration::from_secs(180)));
    assert_eq!(parse_timeout("15m"), Some(Duration::from_millis(15)));
    assert_eq!(parse_timeout("7u"), Some(Duration::from_micros(7)));
    assert_eq!(parse_timeout("9n"), Some(Duration::from_nanos(9)));
    assert_eq!(parse_timeout(""), None);
    assert_eq!(parse_timeout("5x"), None);
    assert_eq!(parse_timeout("S"), None);
}

#[test]
fn metadata_converts_to_messages() {
    let meta = ModelMetadata {
        name: "m".into(),
        versions: vec!["1".into(), "2".into()],
        platform: "onnxruntime_onnx".into(),
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype: DataType::Bytes,
            shape: vec![-1],
        }],
        outputs: vec![],
    };
    let pb: pb::ModelMetadataResponse = meta.into();
    assert_eq!(pb.versions, vec!["1", "2"]);
    assert_eq!(pb.inputs[0].datatype, "BYTES");
    assert_eq!(pb.inputs[0].shape, vec![-1]);
    let server: pb::ServerMetadataResponse = ServerMetadata {
        name: "s".into(),
        version: "0.1.0".into(),
        extensions: vec!["binary_tensor_data".into()],
    }
    .into();
    assert_eq!(server.extensions, vec!["binary_tensor_data"]);
}
