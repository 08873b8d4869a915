//! Why a protocol message could not be decoded: one typed error for the REST and gRPC
//! codecs, worded for the client that sent the message (servers answer it as a 400 /
//! INVALID_ARGUMENT).

use crate::tensor::TensorError;

/// Which side of an inference exchange a tensor belongs to, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Input => "input",
            Self::Output => "output",
        })
    }
}

/// A message that does not follow the protocol.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("invalid Inference-Header-Content-Length")]
    InvalidHeaderLength,
    #[error("Inference-Header-Content-Length exceeds the body")]
    HeaderLengthExceedsBody,
    /// The JSON part of a REST body (`what`: request or response) does not parse.
    #[error("invalid {what} JSON: {message}")]
    Json { what: &'static str, message: String },
    #[error("{role} {name:?}: unsupported datatype {datatype:?}")]
    UnsupportedDatatype {
        role: Role,
        name: String,
        datatype: String,
    },
    #[error("{role} {name:?}: binary data shorter than binary_data_size")]
    BinaryDataShort { role: Role, name: String },
    #[error("{role} {name:?} has no data")]
    NoData { role: Role, name: String },
    #[error("unused binary data after the declared {role}s")]
    UnusedBinaryData { role: Role },
    #[error("{raw} raw_{role}_contents for {tensors} {role}s")]
    RawContentsCount {
        role: Role,
        raw: usize,
        tensors: usize,
    },
    #[error("{role} {name:?} has no contents")]
    NoContents { role: Role, name: String },
    #[error("{role} {name:?}: value out of range")]
    OutOfRange { role: Role, name: String },
    #[error("{role} {name:?}: FP16 must be sent in raw_{role}_contents")]
    Fp16NotTyped { role: Role, name: String },
    #[error(transparent)]
    Tensor(#[from] TensorError),
}
