//! Encodings, combination and validation of tensors.

use super::*;

#[test]
fn raw_round_trip_for_every_datatype() {
    let samples = [
        TensorData::Bool(vec![true, false]),
        TensorData::U8(vec![0, 255]),
        TensorData::U16(vec![1, 65535]),
        TensorData::U32(vec![7, u32::MAX]),
        TensorData::U64(vec![9, u64::MAX]),
        TensorData::I8(vec![-128, 127]),
        TensorData::I16(vec![-3, 3]),
        TensorData::I32(vec![i32::MIN, 5]),
        TensorData::I64(vec![i64::MIN, 5]),
        TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
        TensorData::F32(vec![1.25, -0.5]),
        TensorData::F64(vec![1e300, -0.0]),
        TensorData::Bytes(vec![b"hello".to_vec(), vec![], vec![0xff, 0]]),
    ];
    for data in samples {
        let raw = data.to_raw();
        let back = TensorData::from_raw("x", data.datatype(), &raw).unwrap();
        assert_eq!(back, data);
    }
}

#[test]
fn raw_rejects_truncated_data() {
    assert!(TensorData::from_raw("x", DataType::F32, &[0, 0, 0]).is_err());
    assert!(TensorData::from_raw("x", DataType::Bytes, &[5, 0, 0, 0, b'a']).is_err());
}

#[test]
fn json_accepts_nested_arrays_and_checks_ranges() {
    let v: Json = serde_json::json!([[1, 2], [3, 4]]);
    assert_eq!(
        TensorData::from_json("x", DataType::I32, &v).unwrap(),
        TensorData::I32(vec![1, 2, 3, 4])
    );
    let big: Json = serde_json::json!([300]);
    assert!(TensorData::from_json("x", DataType::U8, &big).is_err());
    let frac: Json = serde_json::json!([1.5]);
    assert!(TensorData::from_json("x", DataType::I64, &frac).is_err());
    let s: Json = serde_json::json!(["a", "b"]);
    assert_eq!(
        TensorData::from_json("x", DataType::Bytes, &s).unwrap(),
        TensorData::Bytes(vec![b"a".to_vec(), b"b".to_vec()])
    );
}

#[test]
fn concat_then_split_restores_parts() {
    let a = TensorData::F32(vec![1.0, 2.0]);
    let b = TensorData::F32(vec![3.0, 4.0, 5.0, 6.0]);
    let joined = TensorData::concat(&[&a, &b]).unwrap();
    assert_eq!(joined.len(), 6);
    assert_eq!(joined.split(&[2, 4]).unwrap(), vec![a, b]);
    let c = TensorData::I64(vec![1]);
    assert!(TensorData::concat(&[&joined, &c]).is_err());
}

#[test]
fn validate_checks_element_count() {
    let t = Tensor {
        name: "x".into(),
        shape: vec![2, 2],
        data: TensorData::F32(vec![0.0; 3]),
    };
    assert!(matches!(
        t.validate(),
        Err(TensorError::ElementCount { .. })
    ));
    let neg = Tensor {
        name: "x".into(),
        shape: vec![-1],
        data: TensorData::F32(vec![]),
    };
    assert!(matches!(neg.validate(), Err(TensorError::BadShape { .. })));
}
