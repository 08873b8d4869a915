//! The parts of the ONNX model format (`onnx.proto`, IR version 10) the quantization pass
//! reads and rewrites, as prost messages declared by hand (no protoc at build time).
//!
//! Every field of the messages declared here is listed, with its wire tag, so a decoded
//! model encodes back to an equivalent one. Sub-messages the pass never looks inside
//! (value infos, types, functions, sub-graphs, metadata, ...) are kept as their encoded
//! bytes, which round-trips them unchanged.

use prost::Message;

/// `TensorProto.DataType` values used by the pass.
pub mod data_type {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT8: i32 = 3;
}

/// `AttributeProto.AttributeType` values used by the pass.
pub mod attribute_type {
    pub const FLOAT: i32 = 1;
    pub const INT: i32 = 2;
}

/// `TensorProto.DataLocation.EXTERNAL`.
pub const DATA_LOCATION_EXTERNAL: i32 = 1;

#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    pub opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    pub producer_name: String,
    #[prost(string, tag = "3")]
    pub producer_version: String,
    #[prost(string, tag = "4")]
    pub domain: String,
    #[prost(int64, tag = "5")]
    pub model_version: i64,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
    #[prost(bytes = "vec", repeated, tag = "14")]
    pub metadata_props: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "20")]
    pub training_info: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "25")]
    pub functions: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "26")]
    pub configuration: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    pub domain: String,
    #[prost(int64, tag = "2")]
    pub version: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub sparse_initializer: Vec<Vec<u8>>,
    #[prost(string, tag = "10")]
    pub doc_string: String,
    /// Encoded `ValueInfoProto`s ([`value_info_name`] reads their names).
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub input: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "12")]
    pub output: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "13")]
    pub value_info: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "14")]
    pub quantization_annotation: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "16")]
    pub metadata_props: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(string, tag = "7")]
    pub domain: String,
    #[prost(string, tag = "8")]
    pub overload: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "6")]
    pub doc_string: String,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub metadata_props: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "10")]
    pub device_configurations: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "21")]
    pub ref_attr_name: String,
    #[prost(string, tag = "13")]
    pub doc_string: String,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(bytes = "vec", optional, tag = "5")]
    pub t: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "6")]
    pub g: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "22")]
    pub sparse_tensor: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "14")]
    pub tp: Option<Vec<u8>>,
    #[prost(float, repeated, packed = "false", tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "10")]
    pub tensors: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "11")]
    pub graphs: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "23")]
    pub sparse_tensors: Vec<Vec<u8>>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    pub type_protos: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(bytes = "vec", optional, tag = "3")]
    pub segment: Option<Vec<u8>>,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub string_data: Vec<Vec<u8>>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(string, tag = "12")]
    pub doc_string: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "13")]
    pub external_data: Vec<Vec<u8>>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(bytes = "vec", repeated, tag = "16")]
    pub metadata_props: Vec<Vec<u8>>,
}

/// Only the name of a `ValueInfoProto` (other fields are skipped when decoding).
#[derive(Clone, PartialEq, Message)]
struct ValueInfoName {
    #[prost(string, tag = "1")]
    name: String,
}

/// The name of an encoded `ValueInfoProto`, or `None` when the bytes are not one.
pub fn value_info_name(encoded: &[u8]) -> Option<String> {
    ValueInfoName::decode(encoded).ok().map(|v| v.name)
}

/// An encoded `ValueInfoProto` carrying only a name (for tests building small graphs).
pub fn encode_value_info_name(name: &str) -> Vec<u8> {
    ValueInfoName {
        name: name.to_owned(),
    }
    .encode_to_vec()
}

impl TensorProto {
    /// The values of a FLOAT tensor stored in the model (raw_data or float_data), or
    /// `None` for any other type or external data.
    pub fn floats(&self) -> Option<Vec<f32>> {
        if self.data_type != data_type::FLOAT || self.data_location == DATA_LOCATION_EXTERNAL {
            return None;
        }
        let count = self
            .dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))?;
        let values: Vec<f32> = if !self.raw_data.is_empty() {
            self.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            self.float_data.clone()
        };
        (values.len() == count).then_some(values)
    }

    /// A FLOAT tensor with `values` in raw_data.
    pub fn from_floats(name: &str, dims: Vec<i64>, values: &[f32]) -> Self {
        Self {
            name: name.to_owned(),
            dims,
            data_type: data_type::FLOAT,
            raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Self::default()
        }
    }

    /// An INT8 tensor with `values` in raw_data.
    pub fn from_i8(name: &str, dims: Vec<i64>, values: &[i8]) -> Self {
        Self {
            name: name.to_owned(),
            dims,
            data_type: data_type::INT8,
            raw_data: values.iter().map(|v| v.to_le_bytes()[0]).collect(),
            ..Self::default()
        }
    }

    /// The values of an INT8 tensor in raw_data (what the pass writes).
    pub fn int8s(&self) -> Option<Vec<i8>> {
        (self.data_type == data_type::INT8).then(|| {
            self.raw_data
                .iter()
                .map(|b| i8::from_le_bytes([*b]))
                .collect()
        })
    }
}

impl NodeProto {
    /// The attribute called `name`.
    pub fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.attribute.iter().find(|a| a.name == name)
    }

    /// An INT attribute, `default` when absent.
    pub fn attr_int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    /// A FLOAT attribute, `default` when absent.
    pub fn attr_float(&self, name: &str, default: f32) -> f32 {
        self.attr(name).map_or(default, |a| a.f)
    }
}
