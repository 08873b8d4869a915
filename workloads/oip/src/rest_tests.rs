//! Round trips and rejected bodies of the REST codec.

use std::time::Duration;

use half::f16;
use serde_json::json;

use super::*;
use crate::tensor::TensorError;

fn tensor(name: &str, shape: Vec<i64>, data: TensorData) -> Tensor {
    Tensor {
        name: name.into(),
        shape,
        data,
    }
}

fn sample_inputs() -> Vec<Tensor> {
    vec![
        tensor(
            "f32",
            vec![2, 2],
            TensorData::F32(vec![1.25, -0.5, 3.0, 0.0]),
        ),
        tensor("i64", vec![3], TensorData::I64(vec![i64::MIN, 0, 7])),
        tensor("u8", vec![2], TensorData::U8(vec![0, 255])),
        tensor("b", vec![2], TensorData::Bool(vec![true, false])),
        tensor(
            "f16",
            vec![2],
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
        ),
        tensor("f64", vec![1], TensorData::F64(vec![0.1])),
        tensor(
            "text",
            vec![2],
            TensorData::Bytes(vec![b"hello".to_vec(), "wörld".as_bytes().to_vec()]),
        ),
    ]
}

fn sample_request() -> InferRequest {
    InferRequest {
        id: Some("req-1".into()),
        inputs: sample_inputs(),
        outputs: vec!["out".into(), "ids".into()],
        timeout: Some(Duration::from_micros(2500)),
    }
}

fn header(body: &Body) -> Option<Vec<u8>> {
    body.header_length.map(|n| n.to_string().into_bytes())
}

#[test]
fn json_request_round_trips() {
    let binary = BinaryOutputs {
        all: false,
        outputs: vec![("out".into(), true), ("ids".into(), false)],
    };
    let body = encode_request(&sample_request(), &binary, false);
    assert_eq!(body.header_length, None);
    assert_eq!(body.content_type(), "application/json");
    let decoded = decode_request(None, &body.bytes).unwrap();
    assert_eq!(decoded.request, sample_request());
    assert_eq!(decoded.binary_outputs, binary);
}

#[test]
fn binary_request_round_trips_with_the_header_length() {
    let binary = BinaryOutputs {
        all: true,
        outputs: vec![("out".into(), true), ("ids".into(), true)],
    };
    let body = encode_request(&sample_request(), &binary, true);
    let head_len = body.header_length.expect("binary inputs add blobs");
    assert_eq!(body.content_type(), "application/octet-stream");
    // The JSON part alone parses and declares each blob's size.
    let head: Json = serde_json::from_slice(&body.bytes[..head_len]).unwrap();
    assert_eq!(head["inputs"][0]["parameters"]["binary_data_size"], 16);
    assert_eq!(head["parameters"]["binary_data_output"], true);
    let decoded = decode_request(header(&body).as_deref(), &body.bytes).unwrap();
    assert_eq!(decoded.request, sample_request());
    assert_eq!(decoded.binary_outputs, binary);
}

#[test]
fn response_round_trips_with_mixed_json_and_binary_outputs() {
    let response = InferResponse {
        model_name: "mlp".into(),
        model_version: "2".into(),
        id: Some("r".into()),
        outputs: sample_inputs(),
    };
    let binary = BinaryOutputs {
        all: false,
        outputs: vec![("i64".into(), true), ("text".into(), true)],
    };
    let body = encode_response(&response, &binary);
    let head_len = body.header_length.expect("two outputs are binary");
    let head: Json = serde_json::from_slice(&body.bytes[..head_len]).unwrap();
    assert_eq!(head["outputs"][0]["data"], json!([1.25, -0.5, 3.0, 0.0]));
    assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 24);
    assert!(head["outputs"][1].get("data").is_none());
    assert_eq!(
        decode_response(header(&body).as_deref(), &body.bytes).unwrap(),
        response
    );
    // Without binary outputs the whole body is JSON.
    let plain = encode_response(&response, &BinaryOutputs::default());
    assert_eq!(plain.header_length, None);
    assert_eq!(decode_response(None, &plain.bytes).unwrap(), response);
}

#[test]
fn request_as_clients_write_it_decodes() {
    let body = json!({
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}],
        "outputs": [{"name": "y"}],
        "parameters": {"binary_data_output": true, "timeout": 0}
    });
    let decoded = decode_request(None, &serde_json::to_vec(&body).unwrap()).unwrap();
    let r = &decoded.request;
    assert_eq!(r.id, None);
    assert_eq!(r.timeout, None, "a zero timeout means none");
    assert_eq!(r.inputs[0].data, TensorData::I32(vec![1, 2, 3, 4]));
    assert!(decoded.binary_outputs.is_binary("y"));
    assert!(
        decoded.binary_outputs.is_binary("z"),
        "binary_data_output covers outputs not listed"
    );
}

fn err(header_length: Option<&str>, body: &[u8]) -> CodecError {
    decode_request(header_length.map(str::as_bytes), body).unwrap_err()
}

#[test]
fn malformed_framing_is_a_clear_error() {
    let body = br#"{"inputs": []}"#;
    assert_eq!(err(Some("abc"), body), CodecError::InvalidHeaderLength);
    assert_eq!(err(Some("999"), body), CodecError::HeaderLengthExceedsBody);
    assert_eq!(
        err(Some("14"), br#"{"inputs": []}xyz"#).to_string(),
        "unused binary data after the declared inputs"
    );
    let bad_json = err(None, b"{not json").to_string();
    assert!(bad_json.starts_with("invalid request JSON: "), "{bad_json}");
    let bad_response = decode_response(None, b"[]").unwrap_err().to_string();
    assert!(
        bad_response.starts_with("invalid response JSON: "),
        "{bad_response}"
    );
}

#[test]
fn bad_tensors_are_named_in_the_error() {
    let one = |input: Json| {
        let body = serde_json::to_vec(&json!({ "inputs": [input] })).unwrap();
        decode_request(None, &body).unwrap_err().to_string()
    };
    assert_eq!(
        one(json!({"name": "x", "shape": [1], "datatype": "FP8", "data": [1]})),
        r#"input "x": unsupported datatype "FP8""#
    );
    assert_eq!(
        one(json!({"name": "x", "shape": [1], "datatype": "FP32"})),
        r#"input "x" has no data"#
    );
    assert_eq!(
        one(json!({"name": "x", "shape": [1], "datatype": "UINT8", "data": [300]})),
        TensorError::JsonValue {
            name: "x".into(),
            index: 0,
            datatype: DataType::U8
        }
        .to_string()
    );
    let head = br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&[0, 0, 0, 0]);
    let len = head.len().to_string();
    assert_eq!(
        err(Some(&len), &body).to_string(),
        r#"input "x": binary data shorter than binary_data_size"#
    );
    // A blob that is not a whole number of elements.
    let head = br#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 3}}]}"#;
    let mut body = head.to_vec();
    body.extend_from_slice(&[0, 0, 0]);
    let len = head.len().to_string();
    assert!(matches!(
        err(Some(&len), &body),
        CodecError::Tensor(TensorError::RawLength { len: 3, .. })
    ));
}

#[test]
fn response_errors_name_outputs() {
    let body =
        json!({"model_name": "m", "outputs": [{"name": "y", "shape": [1], "datatype": "FP32"}]});
    assert_eq!(
        decode_response(None, &serde_json::to_vec(&body).unwrap())
            .unwrap_err()
            .to_string(),
        r#"output "y" has no data"#
    );
}
