//! Typed tensors of the Open Inference Protocol: the datatypes (named as the protocol
//! names them, also in serde), their JSON and raw (little-endian binary) encodings, and
//! concatenation / splitting along the batch axis for dynamic batching.

use half::f16;
use serde_json::Value as Json;

/// A tensor datatype named as the Open Inference Protocol names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    F32,
    F64,
    Bytes,
}

impl DataType {
    /// Every datatype, in a stable order.
    pub const ALL: [DataType; 13] = [
        Self::Bool,
        Self::U8,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::I8,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::F16,
        Self::F32,
        Self::F64,
        Self::Bytes,
    ];

    /// The protocol's name (`FP32`, `INT64`, `BYTES`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "BOOL",
            Self::U8 => "UINT8",
            Self::U16 => "UINT16",
            Self::U32 => "UINT32",
            Self::U64 => "UINT64",
            Self::I8 => "INT8",
            Self::I16 => "INT16",
            Self::I32 => "INT32",
            Self::I64 => "INT64",
            Self::F16 => "FP16",
            Self::F32 => "FP32",
            Self::F64 => "FP64",
            Self::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name; `None` for datatypes this crate does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Size of one element in the raw encoding; `None` for BYTES (length-prefixed).
    pub fn element_size(self) -> Option<usize> {
        match self {
            Self::Bool | Self::U8 | Self::I8 => Some(1),
            Self::U16 | Self::I16 | Self::F16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::Bytes => None,
        }
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for DataType {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for DataType {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unsupported datatype {name:?}")))
    }
}

/// Why a tensor could not be decoded or combined.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("unsupported datatype {0:?}")]
    UnknownDatatype(String),
    #[error("tensor {name:?}: shape {shape:?} holds {expected} elements but {got} were given")]
    ElementCount {
        name: String,
        shape: Vec<i64>,
        expected: usize,
        got: usize,
    },
    #[error("tensor {name:?}: invalid shape {shape:?}")]
    BadShape { name: String, shape: Vec<i64> },
    #[error(
        "tensor {name:?}: raw data of {len} bytes is not a whole number of {datatype} elements"
    )]
    RawLength {
        name: String,
        len: usize,
        datatype: DataType,
    },
    #[error("tensor {name:?}: malformed BYTES element at offset {offset}")]
    RawBytes { name: String, offset: usize },
    #[error("tensor {name:?}: element {index} is not a valid {datatype} value")]
    JsonValue {
        name: String,
        index: usize,
        datatype: DataType,
    },
    #[error("cannot combine tensors: {0}")]
    Combine(String),
}

/// The elements of a tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any variant, binding it as `$v`.
#[macro_export]
#[doc(hidden)]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::tensor::TensorData::Bool($v) => $body,
            $crate::tensor::TensorData::U8($v) => $body,
            $crate::tensor::TensorData::U16($v) => $body,
            $crate::tensor::TensorData::U32($v) => $body,
            $crate::tensor::TensorData::U64($v) => $body,
            $crate::tensor::TensorData::I8($v) => $body,
            $crate::tensor::TensorData::I16($v) => $body,
            $crate::tensor::TensorData::I32($v) => $body,
            $crate::tensor::TensorData::I64($v) => $body,
            $crate::tensor::TensorData::F16($v) => $body,
            $crate::tensor::TensorData::F32($v) => $body,
            $crate::tensor::TensorData::F64($v) => $body,
            $crate::tensor::TensorData::Bytes($v) => $body,
        }
    };
}

/// Like [`with_tensor_data!`] but rebuilds the same variant from `$body`'s vector.
macro_rules! map_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => TensorData::Bool($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::U16($v) => TensorData::U16($body),
            TensorData::U32($v) => TensorData::U32($body),
            TensorData::U64($v) => TensorData::U64($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::I16($v) => TensorData::I16($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F64($v) => TensorData::F64($body),
            TensorData::Bytes($v) => TensorData::Bytes($body),
        }
    };
}

macro_rules! le_decode {
    ($bytes:expr, $t:ty, $n:expr) => {
        $bytes
            .chunks_exact($n)
            .map(|c| {
                let mut a = [0u8; $n];
                a.copy_from_slice(c);
                <$t>::from_le_bytes(a)
            })
            .collect()
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            Self::Bool(_) => DataType::Bool,
            Self::U8(_) => DataType::U8,
            Self::U16(_) => DataType::U16,
            Self::U32(_) => DataType::U32,
            Self::U64(_) => DataType::U64,
            Self::I8(_) => DataType::I8,
            Self::I16(_) => DataType::I16,
            Self::I32(_) => DataType::I32,
            Self::I64(_) => DataType::I64,
            Self::F16(_) => DataType::F16,
            Self::F32(_) => DataType::F32,
            Self::F64(_) => DataType::F64,
            Self::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decodes the raw (binary extension / gRPC raw contents) encoding: little-endian
    /// elements, BYTES as 4-byte little-endian length + bytes each.
    pub fn from_raw(name: &str, datatype: DataType, raw: &[u8]) -> Result<Self, TensorError> {
        if let Some(size) = datatype.element_size()
            && !raw.len().is_multiple_of(size)
        {
            return Err(TensorError::RawLength {
                name: name.to_owned(),
                len: raw.len(),
                datatype,
            });
        }
        Ok(match datatype {
            DataType::Bool => Self::Bool(raw.iter().map(|b| *b != 0).collect()),
            DataType::U8 => Self::U8(raw.to_vec()),
            DataType::I8 => Self::I8(raw.iter().map(|b| *b as i8).collect()),
            DataType::U16 => Self::U16(le_decode!(raw, u16, 2)),
            DataType::I16 => Self::I16(le_decode!(raw, i16, 2)),
            DataType::F16 => Self::F16(le_decode!(raw, f16, 2)),
            DataType::U32 => Self::U32(le_decode!(raw, u32, 4)),
            DataType::I32 => Self::I32(le_decode!(raw, i32, 4)),
            DataType::F32 => Self::F32(le_decode!(raw, f32, 4)),
            DataType::U64 => Self::U64(le_decode!(raw, u64, 8)),
            DataType::I64 => Self::I64(le_decode!(raw, i64, 8)),
            DataType::F64 => Self::F64(le_decode!(raw, f64, 8)),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut off = 0usize;
                while off < raw.len() {
                    let bad = || TensorError::RawBytes {
                        name: name.to_owned(),
                        offset: off,
                    };
                    let len_bytes: [u8; 4] = raw
                        .get(off..off + 4)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(bad)?;
                    let len = u32::from_le_bytes(len_bytes) as usize;
                    let item = raw.get(off + 4..off + 4 + len).ok_or_else(bad)?;
                    out.push(item.to_vec());
                    off += 4 + len;
                }
                Self::Bytes(out)
            }
        })
    }

    /// Encodes in the raw format read by [`TensorData::from_raw`].
    pub fn to_raw(&self) -> Vec<u8> {
        match self {
            Self::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
            Self::U8(v) => v.clone(),
            Self::I8(v) => v.iter().map(|x| *x as u8).collect(),
            Self::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Self::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
                for item in v {
                    out.extend_from_slice(&(item.len() as u32).to_le_bytes());
                    out.extend_from_slice(item);
                }
                out
            }
        }
    }

    /// Decodes JSON `data`: a flat or nested array of numbers / booleans / strings.
    pub fn from_json(name: &str, datatype: DataType, data: &Json) -> Result<Self, TensorError> {
        let mut flat = Vec::new();
        flatten(data, &mut flat);
        let bad = |index| TensorError::JsonValue {
            name: name.to_owned(),
            index,
            datatype,
        };
        macro_rules! ints {
            ($variant:ident, $t:ty) => {
                Self::$variant(
                    flat.iter()
                        .enumerate()
                        .map(|(i, v)| json_int::<$t>(v).ok_or_else(|| bad(i)))
                        .collect::<Result<_, _>>()?,
                )
            };
        }
        Ok(match datatype {
            DataType::Bool => Self::Bool(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Json::Bool(b) => Ok(*b),
                        Json::Number(n) if n.as_u64() == Some(0) => Ok(false),
                        Json::Number(n) if n.as_u64() == Some(1) => Ok(true),
                        _ => Err(bad(i)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            DataType::U8 => ints!(U8, u8),
            DataType::U16 => ints!(U16, u16),
            DataType::U32 => ints!(U32, u32),
            DataType::U64 => ints!(U64, u64),
            DataType::I8 => ints!(I8, i8),
            DataType::I16 => ints!(I16, i16),
            DataType::I32 => ints!(I32, i32),
            DataType::I64 => ints!(I64, i64),
            DataType::F16 => Self::F16(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().map(f16::from_f64).ok_or_else(|| bad(i)))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::F32 => Self::F32(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().map(|x| x as f32).ok_or_else(|| bad(i)))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::F64 => Self::F64(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| v.as_f64().ok_or_else(|| bad(i)))
                    .collect::<Result<_, _>>()?,
            ),
            DataType::Bytes => Self::Bytes(
                flat.iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Json::String(s) => Ok(s.as_bytes().to_vec()),
                        _ => Err(bad(i)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// Encodes as a flat JSON array (BYTES as strings, lossily if not UTF-8).
    pub fn to_json(&self) -> Json {
        fn num<T: Into<f64> + Copy>(v: &[T]) -> Json {
            Json::Array(
                v.iter()
                    .map(|x| {
                        serde_json::Number::from_f64((*x).into()).map_or(Json::Null, Json::Number)
                    })
                    .collect(),
            )
        }
        match self {
            Self::Bool(v) => Json::Array(v.iter().map(|b| Json::Bool(*b)).collect()),
            Self::U8(v) => Json::from(v.clone()),
            Self::U16(v) => Json::from(v.clone()),
            Self::U32(v) => Json::from(v.clone()),
            Self::U64(v) => Json::from(v.clone()),
            Self::I8(v) => Json::from(v.clone()),
            Self::I16(v) => Json::from(v.clone()),
            Self::I32(v) => Json::from(v.clone()),
            Self::I64(v) => Json::from(v.clone()),
            Self::F16(v) => num(&v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
            Self::F32(v) => num(v),
            Self::F64(v) => num(v),
            Self::Bytes(v) => Json::Array(
                v.iter()
                    .map(|b| Json::String(String::from_utf8_lossy(b).into_owned()))
                    .collect(),
            ),
        }
    }

    /// Concatenates same-typed parts, in order.
    pub fn concat(parts: &[&TensorData]) -> Result<TensorData, TensorError> {
        let first = parts
            .first()
            .ok_or_else(|| TensorError::Combine("nothing to concatenate".into()))?;
        let mut out = map_tensor_data!(first, v => Vec::with_capacity(v.len() * parts.len()));
        for part in parts {
            if part.datatype() != out.datatype() {
                return Err(TensorError::Combine(format!(
                    "mixed datatypes {} and {}",
                    out.datatype(),
                    part.datatype()
                )));
            }
            append(&mut out, part);
        }
        Ok(out)
    }

    /// Splits into consecutive chunks of `sizes[i]` elements.
    pub fn split(&self, sizes: &[usize]) -> Result<Vec<TensorData>, TensorError> {
        if sizes.iter().sum::<usize>() != self.len() {
            return Err(TensorError::Combine(format!(
                "cannot split {} elements into {sizes:?}",
                self.len()
            )));
        }
        let mut out = Vec::with_capacity(sizes.len());
        let mut start = 0;
        for size in sizes {
            let range = start..start + size;
            out.push(map_tensor_data!(self, v => v[range.clone()].to_vec()));
            start += size;
        }
        Ok(out)
    }
}

fn append(out: &mut TensorData, part: &TensorData) {
    macro_rules! arms {
        ($($variant:ident),*) => {
            match (out, part) {
                $((TensorData::$variant(a), TensorData::$variant(b)) => a.extend_from_slice(b),)*
                _ => {}
            }
        };
    }
    arms!(
        Bool, U8, U16, U32, U64, I8, I16, I32, I64, F16, F32, F64, Bytes
    );
}

fn flatten<'a>(value: &'a Json, out: &mut Vec<&'a Json>) {
    match value {
        Json::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

fn json_int<T: TryFrom<i64> + TryFrom<u64>>(v: &Json) -> Option<T> {
    match v {
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                T::try_from(u).ok()
            } else if let Some(i) = n.as_i64() {
                T::try_from(i).ok()
            } else {
                // Integral floats (e.g. 3.0) are accepted, fractional ones are not.
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9.0e15)
                    .then(|| T::try_from(f as i64).ok())
                    .flatten()
            }
        }
        Json::Bool(b) => T::try_from(u64::from(*b)).ok(),
        _ => None,
    }
}

/// A named tensor: shape plus data.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    /// Checks that the shape is non-negative and matches the number of elements.
    pub fn validate(&self) -> Result<(), TensorError> {
        let expected = element_count(&self.shape).ok_or_else(|| TensorError::BadShape {
            name: self.name.clone(),
            shape: self.shape.clone(),
        })?;
        if expected != self.data.len() {
            return Err(TensorError::ElementCount {
                name: self.name.clone(),
                shape: self.shape.clone(),
                expected,
                got: self.data.len(),
            });
        }
        Ok(())
    }

    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// Product of the dimensions; `None` for negative dimensions or overflow.
pub fn element_count(shape: &[i64]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, d| {
        usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
    })
}

#[cfg(test)]
#[path = "tensor_tests.rs"]
mod tests;
