//! Tensors and the other values that flow through a graph.

use crate::error::{Error, Result};
use crate::proto::TensorProto;

/// Element types this engine carries (ONNX `TensorProto.DataType` numbers in [`ElemType::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElemType {
    /// 32-bit float (`FLOAT`, 1).
    F32,
    /// 64-bit float (`DOUBLE`, 11).
    F64,
    /// 64-bit integer (`INT64`, 7).
    I64,
    /// 32-bit integer (`INT32`, 6).
    I32,
    /// Text (`STRING`, 8).
    Str,
    /// Boolean (`BOOL`, 9).
    Bool,
}

impl ElemType {
    /// From the ONNX data type number.
    pub fn from_code(code: i32) -> Option<ElemType> {
        Some(match code {
            1 => ElemType::F32,
            11 => ElemType::F64,
            7 => ElemType::I64,
            6 => ElemType::I32,
            8 => ElemType::Str,
            9 => ElemType::Bool,
            _ => return None,
        })
    }

    /// The ONNX data type number.
    pub fn code(self) -> i32 {
        match self {
            ElemType::F32 => 1,
            ElemType::F64 => 11,
            ElemType::I64 => 7,
            ElemType::I32 => 6,
            ElemType::Str => 8,
            ElemType::Bool => 9,
        }
    }

    /// The Open Inference Protocol datatype name.
    pub fn oip_name(self) -> &'static str {
        match self {
            ElemType::F32 => "FP32",
            ElemType::F64 => "FP64",
            ElemType::I64 => "INT64",
            ElemType::I32 => "INT32",
            ElemType::Str => "BYTES",
            ElemType::Bool => "BOOL",
        }
    }
}

/// The name of an ONNX data type number, for messages.
pub fn type_name(code: i32) -> &'static str {
    match code {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => "an unusual type",
    }
}

/// Tensor data, row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// float
    F32(Vec<f32>),
    /// double
    F64(Vec<f64>),
    /// int64
    I64(Vec<i64>),
    /// int32
    I32(Vec<i32>),
    /// string
    Str(Vec<String>),
    /// bool
    Bool(Vec<bool>),
}

impl Data {
    /// The element type.
    pub fn elem_type(&self) -> ElemType {
        match self {
            Data::F32(_) => ElemType::F32,
            Data::F64(_) => ElemType::F64,
            Data::I64(_) => ElemType::I64,
            Data::I32(_) => ElemType::I32,
            Data::Str(_) => ElemType::Str,
            Data::Bool(_) => ElemType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::Str(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor: a shape and as many elements as the shape's product.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Data,
}

impl Tensor {
    /// A tensor, checking that the data fills the shape.
    pub fn new(shape: Vec<usize>, data: Data) -> Result<Tensor> {
        let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| Error::input("the shape is too large"))?;
        if n != data.len() {
            return Err(Error::input(format!("the shape {shape:?} needs {n} elements, {} were given", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// The element type.
    pub fn elem_type(&self) -> ElemType {
        self.data.elem_type()
    }

    /// Rows and columns of a 2-D view: `[N, C]` as is, `[N]` as `[N, 1]`... as ONNX-ML
    /// operators read their input (a 1-D input is one row of features).
    pub(crate) fn rows_cols(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [] => (1, 1),
            [c] => (1, *c),
            [n, rest @ ..] => (*n, rest.iter().product()),
        }
    }

    /// The elements as f32 (numbers only), as ONNX-ML operators take their input.
    pub(crate) fn to_f32(&self, op: &str) -> Result<std::borrow::Cow<'_, [f32]>> {
        use std::borrow::Cow;
        Ok(match &self.data {
            Data::F32(v) => Cow::Borrowed(v.as_slice()),
            Data::F64(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
            Data::I64(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
            Data::I32(v) => Cow::Owned(v.iter().map(|x| *x as f32).collect()),
            Data::Bool(v) => Cow::Owned(v.iter().map(|x| f32::from(u8::from(*x))).collect()),
            Data::Str(_) => return Err(Error::input(format!("{op} takes numbers, not text"))),
        })
    }
}

/// A value in the graph: a tensor, or ZipMap's sequence of maps (one map per row, in the
/// classes' order).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A tensor.
    Tensor(Tensor),
    /// Rows of class → probability with integer class labels.
    MapsI64(Vec<Vec<(i64, f32)>>),
    /// Rows of class → probability with text class labels.
    MapsStr(Vec<Vec<(String, f32)>>),
}

impl Value {
    /// The tensor, or an error naming the operator that needed one.
    pub(crate) fn tensor(&self, op: &str) -> Result<&Tensor> {
        match self {
            Value::Tensor(t) => Ok(t),
            _ => Err(Error::input(format!("{op} takes a tensor, not a sequence of maps"))),
        }
    }
}

fn dims(t: &TensorProto) -> Result<Vec<usize>> {
    t.dims.iter().map(|d| usize::try_from(*d).map_err(|_| Error::invalid(format!("initializer '{}' has a negative dimension", t.name)))).collect()
}

fn le<const N: usize, T>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
    if !raw.len().is_multiple_of(N) {
        return Err(Error::invalid("raw tensor data of a wrong length"));
    }
    Ok(raw
        .chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect())
}

/// A stored tensor (an initializer or a tensor attribute) as a [`Tensor`].
pub(crate) fn from_proto(t: &TensorProto) -> Result<Tensor> {
    if t.external {
        return Err(Error::unsupported(format!("initializer '{}' keeps its data in an external file; save the model with all data inside", t.name)));
    }
    let shape = dims(t)?;
    let raw = !t.raw_data.is_empty();
    let data = match t.data_type {
        1 => Data::F32(if raw { le::<4, _>(&t.raw_data, f32::from_le_bytes)? } else { t.float_data.clone() }),
        11 => Data::F64(if raw { le::<8, _>(&t.raw_data, f64::from_le_bytes)? } else { t.double_data.clone() }),
        7 => Data::I64(if raw { le::<8, _>(&t.raw_data, i64::from_le_bytes)? } else { t.int64_data.clone() }),
        6 => Data::I32(if raw { le::<4, _>(&t.raw_data, i32::from_le_bytes)? } else { t.int32_data.iter().map(|x| *x as i32).collect() }),
        9 => Data::Bool(if raw { t.raw_data.iter().map(|b| *b != 0).collect() } else { t.int32_data.iter().map(|x| *x != 0).collect() }),
        8 => Data::Str(t.string_data.iter().map(|s| String::from_utf8(s.clone()).map_err(|_| Error::invalid("text in a tensor is not UTF-8"))).collect::<Result<_>>()?),
        other => return Err(Error::unsupported(format!("initializer '{}' has element type {}, which Vigil's engine does not carry", t.name, type_name(other)))),
    };
    Tensor::new(shape, data).map_err(|_| Error::invalid(format!("initializer '{}' does not fill its shape", t.name)))
}
