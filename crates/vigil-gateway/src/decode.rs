//! Request bodies into model inputs, model outputs into response bodies, for both protocols.
//! Every error names the input, column or datatype at fault and never a submitted value
//! (values may be patient data).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value as Json;
#[cfg(test)]
use serde_json::json;
use vigil_onnx::{Data, ElemType, IoKind, Model, Tensor, Value};

/// The `visit_*` methods of a serde visitor that reads any JSON scalar as `$v` (a scalar where
/// it wants a list or an object: kept as "not what was asked for", refused when used).
macro_rules! scalars_as {
    ($t:ty, $v:expr) => {
        fn visit_bool<E>(self, _: bool) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_i64<E>(self, _: i64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_u64<E>(self, _: u64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_f64<E>(self, _: f64) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_str<E>(self, _: &str) -> Result<$t, E> {
            Ok($v)
        }
        fn visit_unit<E>(self) -> Result<$t, E> {
            Ok($v)
        }
    };
}
pub(crate) use scalars_as;

/// A client mistake, with a message safe to return.
#[derive(Debug)]
pub struct Bad(pub String);

fn bad(m: impl Into<String>) -> Bad {
    Bad(m.into())
}

type R<T> = Result<T, Bad>;

/// Flattens nested JSON arrays (row-major) into `out`.
fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>, depth: usize) -> R<()> {
    if depth > 32 {
        return Err(bad("the data is nested too deeply"));
    }
    match v {
        Json::Array(a) => {
            for x in a {
                flatten(x, out, depth + 1)?;
            }
        }
        other => out.push(other),
    }
    Ok(())
}

/// The model's declared element type and width (columns) of its input `name`.
fn input_type(model: &Model, name: &str) -> Option<(ElemType, Vec<Option<usize>>)> {
    model.inputs().into_iter().find(|i| i.name == name).and_then(|i| match &i.kind {
        IoKind::Tensor { elem, shape } => Some((*elem, shape.clone())),
        IoKind::Maps { .. } => None,
    })
}

/// JSON values (already flat) as tensor data of the model's element type. `missing_ok`: a
/// null becomes NaN (for models that impute); otherwise nulls are refused.
fn to_data(vals: &[&Json], elem: ElemType, what: &str, missing_ok: bool) -> R<Data> {
    let number = |v: &Json| -> R<f64> {
        match v {
            Json::Number(n) => n.as_f64().ok_or_else(|| bad(format!("{what}: a value is not a number"))),
            Json::Null if missing_ok => Ok(f64::NAN),
            Json::Null => Err(bad(format!("{what}: missing values are not accepted here (the model imputes none for this input)"))),
            Json::Bool(b) => Ok(f64::from(u8::from(*b))),
            _ => Err(bad(format!("{what}: the model takes numbers here"))),
        }
    };
    Ok(match elem {
        ElemType::F32 => Data::F32(vals.iter().map(|v| number(v).map(|x| x as f32)).collect::<R<_>>()?),
        ElemType::F64 => Data::F64(vals.iter().map(|v| number(v)).collect::<R<_>>()?),
        ElemType::I64 | ElemType::I32 => {
            let ints = vals
                .iter()
                .map(|v| match v {
                    Json::Number(n) => n.as_i64().ok_or_else(|| bad(format!("{what}: the model takes whole numbers here"))),
                    Json::Bool(b) => Ok(i64::from(*b)),
                    _ => Err(bad(format!("{what}: the model takes whole numbers here"))),
                })
                .collect::<R<Vec<i64>>>()?;
            if elem == ElemType::I64 {
                Data::I64(ints)
            } else {
                Data::I32(ints.into_iter().map(|x| i32::try_from(x).map_err(|_| bad(format!("{what}: a value is out of range for int32")))).collect::<R<_>>()?)
            }
        }
        ElemType::Bool => Data::Bool(
            vals.iter()
                .map(|v| match v {
                    Json::Bool(b) => Ok(*b),
                    Json::Number(n) if n.as_f64() == Some(0.0) || n.as_f64() == Some(1.0) => Ok(n.as_f64() == Some(1.0)),
                    _ => Err(bad(format!("{what}: the model takes booleans here"))),
                })
                .collect::<R<_>>()?,
        ),
        ElemType::Str => Data::Str(
            vals.iter()
                .map(|v| match v {
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(bad(format!("{what}: the model takes text here"))),
                })
                .collect::<R<_>>()?,
        ),
    })
}

fn check_nan(t: &Tensor, model: &Model, input: &str, what: &str) -> R<()> {
    let has_nan = match &t.data {
        Data::F32(v) => v.iter().any(|x| x.is_nan()),
        Data::F64(v) => v.iter().any(|x| x.is_nan()),
        _ => false,
    };
    if has_nan && !model.accepts_missing_in(input) {
        return Err(bad(format!("{what}: missing values are not accepted here (the model imputes none for this input)")));
    }
    Ok(())
}

/// Whether every value is one of the declared integer datatype's (a whole number in its
/// range; a missing value, `null`, is left to the model's rules); any value fits the others.
fn fits_datatype(cells: &Cells, dt: &str) -> bool {
    let (lo, hi): (i128, i128) = match dt {
        "INT8" => (i8::MIN.into(), i8::MAX.into()),
        "INT16" => (i16::MIN.into(), i16::MAX.into()),
        "INT32" => (i32::MIN.into(), i32::MAX.into()),
        "INT64" => (i64::MIN.into(), i64::MAX.into()),
        "UINT8" => (0, u8::MAX.into()),
        "UINT16" => (0, u16::MAX.into()),
        "UINT32" => (0, u32::MAX.into()),
        "UINT64" => (0, u64::MAX.into()),
        _ => return true,
    };
    // `hi + 1` as a float is exact for every type but the 64-bit ones, where it rounds to
    // `hi + 1` = 2^63 or 2^64 itself: below it is in range.
    let float = |x: f64| x.fract() == 0.0 && x >= lo as f64 && x < (hi + 1) as f64;
    match cells {
        Cells::Ints(v) => v.iter().all(|x| (lo..=hi).contains(&i128::from(*x))),
        Cells::Nums(v) => v.iter().all(|x| float(*x)),
        Cells::Mixed(v) => v.iter().all(|j| match j {
            Json::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)).map_or_else(|| n.as_f64().is_some_and(float), |x| (lo..=hi).contains(&x)),
            // (Refused later, each with its own message.)
            _ => true,
        }),
    }
}

/// The OIP datatypes that carry numbers.
fn oip_numeric(dt: &str) -> bool {
    matches!(dt, "FP32" | "FP64" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64")
}

/// An Open Inference Protocol request body, parsed without a JSON tree for the tensors' data:
/// each input's `data` goes straight into one flat list of values as it is read (a body of
/// 100 rows × 20 features is 2,000 numbers, and building, flattening and dropping a tree of
/// them was most of the time spent on such a request).
#[derive(Default)]
pub struct OipBody {
    /// `inputs`: `None` when absent.
    pub inputs: Option<OipInputs>,
    /// The caller's request id, if given.
    pub id: Option<Json>,
    /// The outputs asked for, if given.
    pub outputs: Option<Json>,
    /// The request's parameters, if given.
    pub parameters: Option<Json>,
}

/// `inputs` as given: a list of tensors, or something else (refused when used).
pub enum OipInputs {
    List(Vec<OipTensor>),
    NotAList,
}

/// One element of `inputs`: its fields as given (`None` for an element that is not an object,
/// which names no input).
#[derive(Default)]
pub struct OipTensor {
    pub name: Option<Json>,
    pub shape: Option<Json>,
    pub datatype: Option<Json>,
    pub data: Option<FlatData>,
}

impl OipTensor {
    /// The tensor's name, when it is text.
    pub fn name(&self) -> Option<&str> {
        self.name.as_ref().and_then(Json::as_str)
    }
}

/// A tensor's `data`, flattened row-major as it is read: whole numbers while every value is
/// one, numbers once one is not, JSON scalars once a value is not a number.
pub struct FlatData {
    pub cells: Cells,
    /// Some value sat deeper than 32 nested lists (refused; the rest was skipped).
    pub too_deep: bool,
    /// `data` was a list (not a single value).
    pub list: bool,
}

/// The values of a [`FlatData`] or a [`Frame`].
#[derive(Debug)]
pub enum Cells {
    Ints(Vec<i64>),
    Nums(Vec<f64>),
    /// Scalars (an object inside `data` is kept as an empty object: refused as a value).
    Mixed(Vec<Json>),
}

impl Cells {
    pub fn count(&self) -> usize {
        match self {
            Cells::Ints(v) => v.len(),
            Cells::Nums(v) => v.len(),
            Cells::Mixed(v) => v.len(),
        }
    }

    /// The values as JSON scalars.
    pub fn to_json(&self) -> Vec<Json> {
        match self {
            Cells::Ints(v) => v.iter().map(|x| Json::from(*x)).collect(),
            Cells::Nums(v) => v.iter().map(|x| Json::from(*x)).collect(),
            Cells::Mixed(v) => v.clone(),
        }
    }

    /// Column `k` of rows `width` values wide.
    pub fn column(&self, k: usize, width: usize) -> Cells {
        let width = width.max(1);
        match self {
            Cells::Ints(v) => Cells::Ints(v.iter().skip(k).step_by(width).copied().collect()),
            Cells::Nums(v) => Cells::Nums(v.iter().skip(k).step_by(width).copied().collect()),
            Cells::Mixed(v) => Cells::Mixed(v.iter().skip(k).step_by(width).cloned().collect()),
        }
    }

    /// The cells of the columns `pick` (indices into rows `width` wide), row by row.
    pub fn select(&self, pick: &[usize], width: usize) -> Cells {
        let width = width.max(1);
        fn rows<T: Clone>(v: &[T], pick: &[usize], width: usize) -> Vec<T> {
            v.chunks_exact(width).flat_map(|row| pick.iter().map(|&k| row[k].clone())).collect()
        }
        match self {
            Cells::Ints(v) => Cells::Ints(rows(v, pick, width)),
            Cells::Nums(v) => Cells::Nums(rows(v, pick, width)),
            Cells::Mixed(v) => Cells::Mixed(rows(v, pick, width)),
        }
    }

    /// Adds a JSON value as the parser would have read it: a whole number that fits `i64`, a
    /// number, or another value (a list or an object stays one, refused as a value).
    pub fn push_json(&mut self, v: Json) {
        match &v {
            Json::Number(n) if n.is_i64() => self.push_int(n.as_i64().unwrap_or_default()),
            Json::Number(n) if n.is_f64() => self.push_num(n.as_f64().unwrap_or_default()),
            _ => self.push_other(v),
        }
    }

    /// A whole number as read: one past `i64` is kept as JSON (refused where whole numbers
    /// are wanted, a number elsewhere).
    pub(crate) fn push_u64(&mut self, x: u64) {
        match i64::try_from(x) {
            Ok(i) => self.push_int(i),
            Err(_) => self.push_other(Json::from(x)),
        }
    }

    pub(crate) fn push_int(&mut self, x: i64) {
        match self {
            Cells::Ints(v) => v.push(x),
            Cells::Nums(v) => v.push(x as f64),
            Cells::Mixed(v) => v.push(Json::from(x)),
        }
    }

    pub(crate) fn push_num(&mut self, x: f64) {
        match self {
            Cells::Ints(v) => {
                let mut nums: Vec<f64> = Vec::with_capacity(v.capacity().max(v.len() + 1));
                nums.extend(v.iter().map(|i| *i as f64));
                nums.push(x);
                *self = Cells::Nums(nums);
            }
            Cells::Nums(v) => v.push(x),
            Cells::Mixed(v) => v.push(Json::from(x)),
        }
    }

    pub(crate) fn push_other(&mut self, x: Json) {
        if !matches!(self, Cells::Mixed(_)) {
            *self = Cells::Mixed(self.to_json());
        }
        if let Cells::Mixed(v) = self {
            v.push(x);
        }
    }

    /// As tensor data of the model's element type, with the same rules (and messages) as
    /// [`to_data`] has for JSON values.
    pub(crate) fn into_data(self, elem: ElemType, what: &str, missing_ok: bool) -> R<Data> {
        let whole = || bad(format!("{what}: the model takes whole numbers here"));
        let boolean = |x: f64| if x == 0.0 || x == 1.0 { Ok(x == 1.0) } else { Err(bad(format!("{what}: the model takes booleans here"))) };
        Ok(match (self, elem) {
            (Cells::Mixed(v), _) => return to_data(&v.iter().collect::<Vec<_>>(), elem, what, missing_ok),
            (c, _) if c.count() == 0 => return to_data(&[], elem, what, missing_ok),
            (_, ElemType::Str) => return Err(bad(format!("{what}: the model takes text here"))),
            (Cells::Ints(v), ElemType::F32) => Data::F32(v.iter().map(|x| *x as f64 as f32).collect()),
            (Cells::Ints(v), ElemType::F64) => Data::F64(v.iter().map(|x| *x as f64).collect()),
            (Cells::Ints(v), ElemType::I64) => Data::I64(v),
            (Cells::Ints(v), ElemType::I32) => Data::I32(v.into_iter().map(|x| i32::try_from(x).map_err(|_| bad(format!("{what}: a value is out of range for int32")))).collect::<R<_>>()?),
            (Cells::Ints(v), ElemType::Bool) => Data::Bool(v.iter().map(|x| boolean(*x as f64)).collect::<R<_>>()?),
            (Cells::Nums(v), ElemType::F32) => Data::F32(v.iter().map(|x| *x as f32).collect()),
            (Cells::Nums(v), ElemType::F64) => Data::F64(v),
            (Cells::Nums(_), ElemType::I64 | ElemType::I32) => return Err(whole()),
            (Cells::Nums(v), ElemType::Bool) => Data::Bool(v.iter().map(|x| boolean(*x)).collect::<R<_>>()?),
        })
    }
}

/// Parses an OIP request body; `None` when it is not a JSON object.
pub fn oip_body(body: &[u8]) -> Option<OipBody> {
    serde_json::from_slice::<OipBody>(body).ok()
}

mod parse {
    //! The deserializers behind [`super::oip_body`].
    use super::{Cells, FlatData, Json, OipBody, OipInputs, OipTensor};
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// How deep `data` may nest (as the tree-based decoding allowed).
    const MAX_DEPTH: usize = 32;

    impl<'de> serde::Deserialize<'de> for OipBody {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OipBody;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OipBody, A::Error> {
                    let mut b = OipBody::default();
                    // A repeated key: the last one counts (as in a JSON tree).
                    while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                        match &*k {
                            "inputs" => b.inputs = Some(m.next_value_seed(InputsSeed)?),
                            "id" => b.id = Some(m.next_value()?),
                            "outputs" => b.outputs = Some(m.next_value()?),
                            "parameters" => b.parameters = Some(m.next_value()?),
                            _ => {
                                m.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(b)
                }
            }
            d.deserialize_map(V)
        }
    }

    struct InputsSeed;

    impl<'de> DeserializeSeed<'de> for InputsSeed {
        type Value = OipInputs;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<OipInputs, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OipInputs;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a list of tensors")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<OipInputs, A::Error> {
                    let mut list = Vec::new();
                    while let Some(t) = s.next_element_seed(TensorSeed)? {
                        list.push(t);
                    }
                    Ok(OipInputs::List(list))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OipInputs, A::Error> {
                    while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    Ok(OipInputs::NotAList)
                }
                scalars_as!(OipInputs, OipInputs::NotAList);
            }
            d.deserialize_any(V)
        }
    }

    /// An element of `inputs`: an object's fields, anything else skipped (it names no input).
    struct TensorSeed;

    impl<'de> DeserializeSeed<'de> for TensorSeed {
        type Value = OipTensor;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<OipTensor, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OipTensor;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a tensor")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OipTensor, A::Error> {
                    let mut t = OipTensor::default();
                    while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                        match &*k {
                            "name" => t.name = Some(m.next_value()?),
                            "shape" => t.shape = Some(m.next_value()?),
                            "datatype" => t.datatype = Some(m.next_value()?),
                            "data" => {
                                let mut flat = FlatData { cells: Cells::Ints(Vec::new()), too_deep: false, list: false };
                                m.next_value_seed(DataSeed { flat: &mut flat, depth: 0 })?;
                                t.data = Some(flat);
                            }
                            _ => {
                                m.next_value::<IgnoredAny>()?;
                            }
                        }
                    }
                    Ok(t)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<OipTensor, A::Error> {
                    while s.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(OipTensor::default())
                }
                scalars_as!(OipTensor, OipTensor::default());
            }
            d.deserialize_any(V)
        }
    }

    /// A value of `data` at `depth` nested lists: a list's values are read in turn, a scalar is
    /// added to the flat values.
    struct DataSeed<'a> {
        flat: &'a mut FlatData,
        depth: usize,
    }

    impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            if self.depth > MAX_DEPTH {
                self.flat.too_deep = true;
                <IgnoredAny as serde::Deserialize>::deserialize(d)?;
                return Ok(());
            }
            d.deserialize_any(self)
        }
    }

    impl<'de> Visitor<'de> for DataSeed<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("tensor data")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            if self.depth == 0 {
                self.flat.list = true;
            }
            while s.next_element_seed(DataSeed { flat: &mut *self.flat, depth: self.depth + 1 })?.is_some() {}
            Ok(())
        }
        fn visit_i64<E>(self, x: i64) -> Result<(), E> {
            self.flat.cells.push_int(x);
            Ok(())
        }
        fn visit_u64<E>(self, x: u64) -> Result<(), E> {
            self.flat.cells.push_u64(x);
            Ok(())
        }
        fn visit_f64<E>(self, x: f64) -> Result<(), E> {
            self.flat.cells.push_num(x);
            Ok(())
        }
        fn visit_bool<E>(self, x: bool) -> Result<(), E> {
            self.flat.cells.push_other(Json::Bool(x));
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            self.flat.cells.push_other(Json::Null);
            Ok(())
        }
        fn visit_str<E>(self, x: &str) -> Result<(), E> {
            self.flat.cells.push_other(Json::String(x.to_owned()));
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            self.flat.cells.push_other(Json::Object(serde_json::Map::new()));
            Ok(())
        }
    }
}

/// Open Inference Protocol `inputs` into the model's inputs.
pub fn oip_inputs(model: &Model, inputs: OipInputs) -> R<Vec<(String, Tensor)>> {
    let OipInputs::List(mut list) = inputs else { return Err(bad("'inputs' must be a list of tensors")) };
    // Refused after the model's own inputs are checked.
    let extra = list.iter().filter_map(OipTensor::name).find(|n| !model.inputs().iter().any(|i| i.name == *n)).map(|extra| {
        let shown = if vigil_core::ids::quote_key(extra).starts_with('\'') { format!("'{extra}'") } else { "(a name)".into() };
        bad(format!("the model takes no input named {shown}"))
    });
    let mut out = Vec::with_capacity(list.len());
    for want in model.inputs() {
        let at = list.iter().position(|t| t.name() == Some(want.name.as_str())).ok_or_else(|| bad(format!("input '{}' is missing", want.name)))?;
        let given = list.swap_remove(at);
        let what = format!("input '{}'", want.name);
        let (elem, _) = input_type(model, &want.name).ok_or_else(|| bad(format!("{what} is not a tensor")))?;
        let shape: Vec<usize> = given
            .shape
            .as_ref()
            .and_then(Json::as_array)
            .ok_or_else(|| bad(format!("{what}: 'shape' must be a list of dimensions")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| bad(format!("{what}: dimensions are whole numbers ≥ 0"))))
            .collect::<R<_>>()?;
        let dt = given.datatype.as_ref().and_then(Json::as_str).ok_or_else(|| bad(format!("{what}: 'datatype' is required")))?;
        match (dt, elem) {
            ("FP16", _) => return Err(bad(format!("{what}: FP16 has no JSON form; send FP32"))),
            ("BYTES", ElemType::Str) | ("BOOL", ElemType::Bool) => {}
            (d, ElemType::F32 | ElemType::F64) if oip_numeric(d) => {}
            (d, ElemType::I64 | ElemType::I32) if d.starts_with("INT") || d.starts_with("UINT") => {}
            (d, e) if matches!(d, "BOOL" | "BYTES") || oip_numeric(d) => {
                return Err(bad(format!("{what}: datatype {d} does not fit the model, which takes {}", e.oip_name())));
            }
            _ => return Err(bad(format!("{what}: unknown datatype; use one of BOOL, UINT8…UINT64, INT8…INT64, FP32, FP64, BYTES"))),
        }
        let data = given.data.ok_or_else(|| bad(format!("{what}: 'data' is required")))?;
        if data.too_deep {
            return Err(bad("the data is nested too deeply"));
        }
        let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| bad(format!("{what}: the shape is too large")))?;
        if !fits_datatype(&data.cells, dt) {
            return Err(bad(format!("{what}: a value is not a {dt} (a whole number in its range)")));
        }
        if n != data.cells.count() {
            return Err(bad(format!("{what}: the shape {shape:?} needs {n} values, {} were given", data.cells.count())));
        }
        // JSON has no NaN: null is a missing value, for models that impute them.
        let data = data.cells.into_data(elem, &what, model.accepts_missing_in(&want.name))?;
        let t = Tensor::new(shape, data).map_err(|e| Bad(e.message().to_owned()))?;
        check_nan(&t, model, &want.name, &what)?;
        out.push((want.name.clone(), t));
    }
    extra.map_or(Ok(out), Err)
}

/// A tabular request (MLflow's formats, CSV, online features): named columns of row values.
#[derive(Debug)]
pub struct Frame {
    /// Column names in order.
    pub columns: Vec<String>,
    /// The values row by row, one per column.
    pub cells: Cells,
    /// How many rows.
    pub rows: usize,
}

impl Frame {
    /// A frame of rows of JSON values (each as wide as `columns`).
    pub fn from_rows(columns: Vec<String>, rows: Vec<Vec<Json>>) -> Frame {
        let n = rows.len();
        let mut cells = Cells::Ints(Vec::with_capacity(n * columns.len()));
        for v in rows.into_iter().flatten() {
            cells.push_json(v);
        }
        Frame { columns, cells, rows: n }
    }
}

/// A frame into the model's inputs: a model with one input per column (skl2onnx's
/// ColumnTransformer export) takes each by name, and other columns are ignored as MLflow does.
/// A model with one 2-D numeric input takes the columns as its features: by name when the
/// version's feature names are recorded (`features`) and the request names them (in any
/// order; other columns ignored; some named and some missing is refused, never filled by
/// position), else in the order given (as MLflow feeds a tensor model).
pub fn frame_inputs(model: &Model, frame: Frame, features: Option<&[String]>) -> R<Vec<(String, Tensor)>> {
    let n = frame.rows;
    if n == 0 {
        return Err(bad("the request has no rows"));
    }
    let ins = model.inputs();
    let by_name = ins.iter().all(|i| frame.columns.contains(&i.name));
    let mut out = Vec::new();
    let c = frame.columns.len();
    if by_name {
        for i in &ins {
            let k = frame.columns.iter().position(|c| *c == i.name).ok_or_else(|| bad(format!("column '{}' is missing", i.name)))?;
            let (elem, shape) = input_type(model, &i.name).ok_or_else(|| bad(format!("input '{}' is not a tensor", i.name)))?;
            let what = format!("column '{}'", i.name);
            let data = frame.cells.column(k, c).into_data(elem, &what, model.accepts_missing_in(&i.name))?;
            let shape = if shape.len() == 2 { vec![n, 1] } else { vec![n] };
            out.push((i.name.clone(), Tensor::new(shape, data).map_err(|e| Bad(e.message().to_owned()))?));
        }
        return Ok(out);
    }
    let [only] = ins.as_slice() else {
        let names: Vec<&str> = ins.iter().map(|i| i.name.as_str()).collect();
        return Err(bad(format!("the model takes the columns {names:?} by name")));
    };
    let (elem, shape) = input_type(model, &only.name).ok_or_else(|| bad("the model's input is not a tensor"))?;
    let frame = match features {
        Some(names) if frame.columns != names => by_feature_name(frame, names)?,
        _ => frame,
    };
    let c = frame.columns.len();
    if let Some(Some(want)) = shape.get(1)
        && *want != c
    {
        return Err(bad(format!("the model takes {want} feature columns, {c} were given")));
    }
    let data = frame.cells.into_data(elem, "a feature column", model.accepts_missing_in(&only.name))?;
    out.push((only.name.clone(), Tensor::new(vec![n, c], data).map_err(|e| Bad(e.message().to_owned()))?));
    Ok(out)
}

/// A frame's columns in the order of the recorded feature `names`, when it names any of them
/// (as it is when it names none: the caller's columns are positions, `0`, `1`, … for rows
/// given as lists, or names of its own).
fn by_feature_name(frame: Frame, names: &[String]) -> R<Frame> {
    let at: Vec<Option<usize>> = names.iter().map(|n| frame.columns.iter().position(|c| c == n)).collect();
    if at.iter().all(Option::is_none) {
        return Ok(frame);
    }
    let missing: Vec<&str> = names.iter().zip(&at).filter(|(_, a)| a.is_none()).map(|(n, _)| n.as_str()).collect();
    if !missing.is_empty() {
        return Err(bad(format!("the request names the model's features but not all of them: {missing:?} missing")));
    }
    let pick: Vec<usize> = at.into_iter().flatten().collect();
    let cells = frame.cells.select(&pick, frame.columns.len());
    Ok(Frame { columns: names.to_vec(), cells, rows: frame.rows })
}

/// An output as an OIP tensor, serialized as it is written (no JSON tree): ZipMap's maps
/// become an FP32 `[N, classes]` tensor with the classes in `parameters.classes`. Keys in
/// alphabetical order, as a JSON object has them.
pub struct OipOutput<'a>(pub &'a str, pub &'a Value);

impl Serialize for OipOutput<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let OipOutput(name, v) = *self;
        let mut m = s.serialize_map(None)?;
        match v {
            Value::Tensor(t) => {
                m.serialize_entry("data", &Cells_(&t.data))?;
                m.serialize_entry("datatype", t.elem_type().oip_name())?;
                m.serialize_entry("name", name)?;
                m.serialize_entry("shape", &t.shape)?;
            }
            Value::MapsI64(rows) => maps(&mut m, name, rows.len(), rows.first().map(|r| r.iter().map(|(k, _)| *k).collect::<Vec<_>>()), rows.iter().flat_map(|r| r.iter().map(|(_, v)| *v)))?,
            Value::MapsStr(rows) => maps(&mut m, name, rows.len(), rows.first().map(|r| r.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()), rows.iter().flat_map(|r| r.iter().map(|(_, v)| *v)))?,
        }
        m.end()
    }
}

fn maps<M: SerializeMap, K: Serialize>(m: &mut M, name: &str, n: usize, classes: Option<Vec<K>>, probs: impl Iterator<Item = f32>) -> Result<(), M::Error> {
    let classes = classes.unwrap_or_default();
    let probs: Vec<f64> = probs.map(f64::from).collect();
    m.serialize_entry("data", &probs)?;
    m.serialize_entry("datatype", "FP32")?;
    m.serialize_entry("name", name)?;
    m.serialize_entry("parameters", &Classes(&classes))?;
    m.serialize_entry("shape", &[n, classes.len()])
}

struct Classes<'a, K>(&'a [K]);

impl<K: Serialize> Serialize for Classes<'_, K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("classes", self.0)?;
        m.end()
    }
}

/// A tensor's values as a JSON list (an f32 written as the f64 it widens to).
struct Cells_<'a>(&'a Data);

impl Serialize for Cells_<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Data::F32(x) => s.collect_seq(x.iter().map(|v| f64::from(*v))),
            Data::F64(x) => s.collect_seq(x),
            Data::I64(x) => s.collect_seq(x),
            Data::I32(x) => s.collect_seq(x),
            Data::Str(x) => s.collect_seq(x),
            Data::Bool(x) => s.collect_seq(x),
        }
    }
}

/// Value `i` of a tensor.
struct Cell<'a>(&'a Data, usize);

impl Serialize for Cell<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.1;
        match self.0 {
            Data::F32(x) => s.serialize_f64(f64::from(x[i])),
            Data::F64(x) => s.serialize_f64(x[i]),
            Data::I64(x) => s.serialize_i64(x[i]),
            Data::I32(x) => s.serialize_i32(x[i]),
            Data::Str(x) => s.serialize_str(&x[i]),
            Data::Bool(x) => s.serialize_bool(x[i]),
        }
    }
}

/// Row `r` of an output, as [`per_row`] gives it: a value, a list of a wider tensor's values,
/// or a ZipMap's class → probability object (keys in alphabetical order).
struct RowOf<'a>(&'a Value, usize);

impl Serialize for RowOf<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let RowOf(v, r) = *self;
        match v {
            Value::Tensor(t) => {
                let w = t.data.len() / t.shape.first().copied().unwrap_or(1).max(1);
                if w == 1 { Cell(&t.data, r).serialize(s) } else { s.collect_seq((0..w).map(|j| Cell(&t.data, r * w + j))) }
            }
            Value::MapsI64(rows) => {
                let sorted: std::collections::BTreeMap<String, f64> = rows[r].iter().map(|(k, p)| (k.to_string(), f64::from(*p))).collect();
                sorted.serialize(s)
            }
            Value::MapsStr(rows) => {
                let sorted: std::collections::BTreeMap<&str, f64> = rows[r].iter().map(|(k, p)| (k.as_str(), f64::from(*p))).collect();
                sorted.serialize(s)
            }
        }
    }
}

/// How many rows [`per_row`] gives for an output.
fn rows_of(v: &Value) -> usize {
    match v {
        Value::Tensor(t) => t.shape.first().copied().unwrap_or(1).max(1),
        Value::MapsI64(rows) => rows.len(),
        Value::MapsStr(rows) => rows.len(),
    }
}

/// Outputs as MLflow `predictions`, serialized as they are written: with one output, one value
/// (or list) per row; with several, one record per row keyed by output name (in alphabetical
/// order; a ZipMap output as a class → probability object).
pub struct MlflowPredictions<'a>(pub &'a [(String, Value)]);

impl Serialize for MlflowPredictions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            [(_, v)] => s.collect_seq((0..rows_of(v)).map(|r| RowOf(v, r))),
            many => {
                // A repeated name: the last output counts (as in a JSON object).
                let mut by_name: Vec<&(String, Value)> = many.iter().rev().collect();
                by_name.sort_by(|a, b| a.0.cmp(&b.0));
                by_name.dedup_by(|a, b| a.0 == b.0);
                let n = many.first().map_or(0, |(_, v)| rows_of(v));
                s.collect_seq((0..n).map(|r| Record(&by_name, r)))
            }
        }
    }
}

/// Row `r` of several outputs, keyed by name (`null` for an output with fewer rows).
struct Record<'a>(&'a [&'a (String, Value)], usize);

impl Serialize for Record<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, v) in self.0.iter().copied() {
            if self.1 < rows_of(v) {
                m.serialize_entry(name, &RowOf(v, self.1))?;
            } else {
                m.serialize_entry(name, &())?;
            }
        }
        m.end()
    }
}

/// An output's values, one per row (a list per row for wider tensors, a class → probability
/// object per row for ZipMap). The reference the prediction log's writer is tested against.
#[cfg(test)]
pub fn per_row(v: &Value) -> Vec<Json> {
    match v {
        Value::Tensor(t) => {
            let n = t.shape.first().copied().unwrap_or(1).max(1);
            let w = t.data.len() / n;
            let cell = |i: usize| -> Json {
                match &t.data {
                    Data::F32(x) => json!(f64::from(x[i])),
                    Data::F64(x) => json!(x[i]),
                    Data::I64(x) => json!(x[i]),
                    Data::I32(x) => json!(x[i]),
                    Data::Str(x) => json!(x[i]),
                    Data::Bool(x) => json!(x[i]),
                }
            };
            (0..n).map(|r| if w == 1 { cell(r) } else { Json::Array((0..w).map(|j| cell(r * w + j)).collect()) }).collect()
        }
        Value::MapsI64(rows) => rows.iter().map(|r| Json::Object(r.iter().map(|(k, v)| (k.to_string(), json!(f64::from(*v)))).collect())).collect(),
        Value::MapsStr(rows) => rows.iter().map(|r| Json::Object(r.iter().map(|(k, v)| (k.clone(), json!(f64::from(*v)))).collect())).collect(),
    }
}

/// The dimensions of a nested JSON list (by its first elements); a scalar has none.
fn nested_shape(v: &Json) -> Vec<usize> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Json::Array(a) = cur {
        shape.push(a.len());
        match a.first() {
            Some(x) => cur = x,
            None => break,
        }
    }
    shape
}

/// MLflow's `inputs` object (tensor name → nested list) into the model's inputs. A flat list
/// for a `[N, 1]` input is one value per row.
pub fn named_inputs(model: &Model, named: &[(String, Json)]) -> R<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for i in model.inputs() {
        let (_, v) = named.iter().find(|(k, _)| *k == i.name).ok_or_else(|| bad(format!("input '{}' is missing", i.name)))?;
        let what = format!("input '{}'", i.name);
        let (elem, declared) = input_type(model, &i.name).ok_or_else(|| bad(format!("{what} is not a tensor")))?;
        let mut flat = Vec::new();
        flatten(v, &mut flat, 0)?;
        let mut shape = nested_shape(v);
        if shape.len() == 1 && declared.len() == 2 && declared[1] == Some(1) {
            shape.push(1);
        }
        let n: usize = shape.iter().product();
        if n != flat.len() {
            return Err(bad(format!("{what}: rows of different lengths")));
        }
        let data = to_data(&flat, elem, &what, model.accepts_missing_in(&i.name))?;
        out.push((i.name.clone(), Tensor::new(shape, data).map_err(|e| Bad(e.message().to_owned()))?));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // The tree-building output functions the serializers replace: the reference they are
    // checked against.
    /// An output as an OIP tensor: ZipMap's maps become an FP32 `[N, classes]` tensor with the
    /// classes in `parameters.classes`.
    pub(super) fn oip_output_by_tree(name: &str, v: &Value) -> Json {
        match v {
            Value::Tensor(t) => {
                let data: Json = match &t.data {
                    Data::F32(x) => x.iter().map(|v| json!(f64::from(*v))).collect(),
                    Data::F64(x) => x.iter().map(|v| json!(v)).collect(),
                    Data::I64(x) => x.iter().map(|v| json!(v)).collect(),
                    Data::I32(x) => x.iter().map(|v| json!(v)).collect(),
                    Data::Str(x) => x.iter().map(|v| json!(v)).collect(),
                    Data::Bool(x) => x.iter().map(|v| json!(v)).collect(),
                };
                json!({"name": name, "shape": t.shape, "datatype": t.elem_type().oip_name(), "data": data})
            }
            Value::MapsI64(rows) => maps(name, rows.iter().map(|r| r.iter().map(|(k, v)| (json!(k), *v)).collect()).collect()),
            Value::MapsStr(rows) => maps(name, rows.iter().map(|r| r.iter().map(|(k, v)| (json!(k), *v)).collect()).collect()),
        }
    }

    fn maps(name: &str, rows: Vec<Vec<(Json, f32)>>) -> Json {
        let k = rows.first().map_or(0, Vec::len);
        let classes: Vec<Json> = rows.first().map(|r| r.iter().map(|(c, _)| c.clone()).collect()).unwrap_or_default();
        let data: Vec<Json> = rows.iter().flat_map(|r| r.iter().map(|(_, v)| json!(f64::from(*v)))).collect();
        json!({"name": name, "shape": [rows.len(), k], "datatype": "FP32", "data": data, "parameters": {"classes": classes}})
    }

    /// Outputs as MLflow `predictions`: with one output, one value (or list) per row; with
    /// several, one record per row keyed by output name (a ZipMap output as a class → probability
    /// object).
    pub(super) fn mlflow_predictions_by_tree(outputs: &[(String, Value)]) -> Json {
        match outputs {
            [(_, v)] => Json::Array(per_row(v)),
            many => {
                let cols: Vec<(String, Vec<Json>)> = many.iter().map(|(n, v)| (n.clone(), per_row(v))).collect();
                let n = cols.first().map_or(0, |c| c.1.len());
                Json::Array((0..n).map(|r| Json::Object(cols.iter().map(|(name, vals)| (name.clone(), vals.get(r).cloned().unwrap_or(Json::Null))).collect::<serde_json::Map<_, _>>())).collect())
            }
        }
    }


    /// The tree-based decoding the typed parser replaces: a JSON tree, flattened, then converted.
    fn by_tree(data: &str, elem: ElemType, missing_ok: bool) -> Result<Data, String> {
        let tree: Json = serde_json::from_str(data).unwrap();
        let mut flat = Vec::new();
        flatten(&tree, &mut flat, 0).map_err(|b| b.0)?;
        to_data(&flat, elem, "input 'x'", missing_ok).map_err(|b| b.0)
    }

    fn typed(data: &str, elem: ElemType, missing_ok: bool) -> Result<Data, String> {
        let body = oip_body(format!(r#"{{"inputs": [{{"name": "x", "data": {data}}}]}}"#).as_bytes()).expect("an object");
        let Some(OipInputs::List(mut list)) = body.inputs else { panic!("a list") };
        let flat = list.remove(0).data.expect("data");
        if flat.too_deep {
            return Err("the data is nested too deeply".into());
        }
        flat.cells.into_data(elem, "input 'x'", missing_ok).map_err(|b| b.0)
    }

    #[test]
    fn tensor_data_decodes_as_the_json_tree_did() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        let mut cases: Vec<String> = [
            "[1, 2, 3]",
            "[[1, 2], [3, 4]]",
            "[[1, [2, 3]], 4]",
            "[1.5, 2]",
            "[1, 2.5, -3]",
            "[0, 1, 1]",
            "[0.0, 1.0]",
            "[0.5]",
            "[true, false]",
            "[1, true]",
            "[null, 1]",
            "[1, null, 2.5]",
            "[\"a\", \"b\"]",
            "[1, \"a\"]",
            "[{\"k\": 1}]",
            "[1, {\"k\": [1, 2]}]",
            "[]",
            "[[], []]",
            "5",
            "2.5",
            "\"a\"",
            "null",
            "[9223372036854775807, -9223372036854775808]",
            "[9223372036854775808]",
            "[1, 18446744073709551615]",
            "[2147483647, -2147483648]",
            "[2147483648]",
            "[16777217, 9007199254740993]",
            "[1e-5, -0.0, 3.4028235e38, 1e300]",
            "[1.0000001, 0.1, 123456.789]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        cases.extend([nested(32), nested(33), nested(34), format!("[1, {}]", nested(33))]);
        let elems = [ElemType::F32, ElemType::F64, ElemType::I64, ElemType::I32, ElemType::Bool, ElemType::Str];
        let mut compared = 0;
        for data in &cases {
            for elem in elems {
                for missing_ok in [false, true] {
                    let want = by_tree(data, elem, missing_ok);
                    let got = typed(data, elem, missing_ok);
                    match (&want, &got) {
                        // NaN (a null for a model that imputes) is equal to NaN here.
                        (Ok(Data::F32(a)), Ok(Data::F32(b))) => assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{data} as {elem:?}: {a:?} vs {b:?}"),
                        (Ok(Data::F64(a)), Ok(Data::F64(b))) => assert!(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()), "{data} as {elem:?}: {a:?} vs {b:?}"),
                        _ => assert_eq!(want, got, "{data} as {elem:?}, missing ok {missing_ok}"),
                    }
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, cases.len() * 12);
        // The cases cover each outcome: values of every kind, and refusals.
        assert!(matches!(typed("[1, 2]", ElemType::I64, false), Ok(Data::I64(v)) if v == [1, 2]));
        assert!(typed("[1.5]", ElemType::I64, false).unwrap_err().contains("whole numbers"));
        assert_eq!(typed(&nested(33), ElemType::F32, false).unwrap_err(), "the data is nested too deeply");
        assert!(typed(&nested(32), ElemType::F32, false).is_ok());
    }

    #[test]
    fn the_body_is_read_as_a_json_object_would_be() {
        for not_object in ["[]", "1", "\"inputs\"", "null", "{", "{\"inputs\": [}", ""] {
            assert!(oip_body(not_object.as_bytes()).is_none(), "{not_object}");
        }
        let b = oip_body(br#"{"id": "r1", "inputs": 7, "outputs": [{"name": "y"}], "parameters": {"p": 1}, "other": [1, {"x": 2}]}"#).unwrap();
        assert_eq!(b.id, Some(json!("r1")));
        assert_eq!(b.outputs, Some(json!([{"name": "y"}])));
        assert_eq!(b.parameters, Some(json!({"p": 1})));
        assert!(matches!(b.inputs, Some(OipInputs::NotAList)));
        assert!(oip_body(b"{}").unwrap().inputs.is_none());
        // A repeated key: the last one counts.
        let b = oip_body(br#"{"id": "a", "id": "b", "inputs": 1, "inputs": [{"name": "x", "name": "z", "data": [1], "data": [2, 3]}, 5, [1]]}"#).unwrap();
        assert_eq!(b.id, Some(json!("b")));
        let Some(OipInputs::List(list)) = b.inputs else { panic!("a list") };
        assert_eq!(list.len(), 3);
        assert_eq!(list[0].name(), Some("z"));
        assert!(matches!(&list[0].data, Some(FlatData { cells: Cells::Ints(v), list: true, too_deep: false }) if *v == [2, 3]));
        // Elements that are not objects name no input.
        assert!(list[1].name.is_none() && list[2].name.is_none() && list[2].data.is_none());
    }

    #[test]
    fn oip_inputs_refuse_as_before() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../vigil-onnx/tests/fixtures/lr20_binary.onnx")).unwrap();
        let model = Model::load(&bytes).unwrap();
        let input = model.inputs()[0].name.clone();
        let row: Vec<String> = (0..20).map(|i| format!("{i}.5")).collect();
        let body = |tensors: &str| oip_body(tensors.replace("IN", &input).as_bytes()).unwrap().inputs.unwrap();
        let ok = oip_inputs(&model, body(&format!(r#"{{"inputs": [{{"name": "IN", "shape": [1, 20], "datatype": "FP32", "data": [{}]}}]}}"#, row.join(",")))).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].1.shape, vec![1, 20]);
        assert!(matches!(&ok[0].1.data, Data::F32(v) if v[3] == 3.5));
        let refused = |tensors: String| oip_inputs(&model, body(&tensors)).unwrap_err().0;
        assert_eq!(refused(r#"{"inputs": {"name": "IN"}}"#.into()), "'inputs' must be a list of tensors");
        assert_eq!(refused(r#"{"inputs": [7]}"#.into()), format!("input '{input}' is missing"));
        assert_eq!(refused(r#"{"inputs": [{"name": "IN", "datatype": "FP32", "data": [1]}]}"#.into()), format!("input '{input}': 'shape' must be a list of dimensions"));
        assert_eq!(refused(r#"{"inputs": [{"name": "IN", "shape": [1, 20], "data": [1]}]}"#.into()), format!("input '{input}': 'datatype' is required"));
        // Values that are not of the declared datatype: refused, without the value. (The
        // input's name goes in as it is: `body` would also rewrite the "IN" of "INT8".)
        let typed = |dt: &str, v: &str| {
            let text = format!(r#"{{"inputs": [{{"name": "{input}", "shape": [1, 20], "datatype": "{dt}", "data": [{v}{}]}}]}}"#, ",1".repeat(19));
            oip_inputs(&model, oip_body(text.as_bytes()).unwrap().inputs.unwrap())
        };
        for (dt, v) in [("UINT8", "-5"), ("UINT8", "256"), ("INT8", "128"), ("INT64", "1.5"), ("UINT64", "-1"), ("INT32", "3000000000"), ("INT16", "2.5e9"), ("INT64", "9.223372036854775808e18"), ("UINT64", "18446744073709551616"), ("UINT64", "1.8446744073709551616e19")] {
            assert_eq!(typed(dt, v).unwrap_err().0, format!("input '{input}': a value is not a {dt} (a whole number in its range)"), "{dt} {v}");
        }
        // Whole numbers in range (written as integers or not) are taken, as are floats for FP32.
        for (dt, v) in [("UINT8", "255"), ("INT8", "-128"), ("INT64", "2.0"), ("UINT64", "18446744073709551615"), ("INT64", "-9.223372036854775808e18"), ("UINT64", "1.8446744073709550e19"), ("FP32", "1.5"), ("FP64", "-2.5e300")] {
            assert!(typed(dt, v).is_ok(), "{dt} {v}");
        }
        assert_eq!(refused(r#"{"inputs": [{"name": "IN", "shape": [1, 20], "datatype": "FP32"}]}"#.into()), format!("input '{input}': 'data' is required"));
        assert_eq!(refused(r#"{"inputs": [{"name": "IN", "shape": [1, 20], "datatype": "FP32", "data": [1, 2]}]}"#.into()), format!("input '{input}': the shape [1, 20] needs 20 values, 2 were given"));
        assert_eq!(refused(format!(r#"{{"inputs": [{{"name": "IN", "shape": [1, 20], "datatype": "FP32", "data": [null{}]}}]}}"#, ",1".repeat(19))), format!("input '{input}': missing values are not accepted here (the model imputes none for this input)"));
        // Another input is refused only once the model's own are in order (as before).
        assert_eq!(refused(r#"{"inputs": [{"name": "other"}]}"#.into()), format!("input '{input}' is missing"));
        assert_eq!(refused(format!(r#"{{"inputs": [{{"name": "other"}}, {{"name": "IN", "shape": [1, 20], "datatype": "FP64", "data": [{}]}}]}}"#, row.join(","))), "the model takes no input named 'other'");
        // No submitted value is ever in a message.
        let secret = refused(format!(r#"{{"inputs": [{{"name": "IN", "shape": [1, 20], "datatype": "FP32", "data": ["MRN-4471"{}]}}]}}"#, ",1".repeat(19)));
        assert!(!secret.contains("4471"), "{secret}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod output_tests {
    use super::tests::{mlflow_predictions_by_tree, oip_output_by_tree};
    use super::*;

    fn tensor(shape: Vec<usize>, data: Data) -> Value {
        Value::Tensor(Tensor::new(shape, data).unwrap())
    }

    #[test]
    fn responses_are_written_as_the_json_trees_were() {
        let outputs: Vec<(&str, Value)> = vec![
            ("label", tensor(vec![3], Data::I64(vec![0, 1, -7]))),
            ("probabilities", tensor(vec![3, 2], Data::F32(vec![0.1, 0.9, 0.333_333_34, 0.666_666_7, f32::NAN, f32::INFINITY]))),
            ("y", tensor(vec![3, 1], Data::F64(vec![1.5, -0.0, 1e300]))),
            ("i32", tensor(vec![3], Data::I32(vec![i32::MIN, 0, i32::MAX]))),
            ("text", tensor(vec![3], Data::Str(vec!["a".into(), "\"q\"\n".into(), "é".into()]))),
            ("flag", tensor(vec![3], Data::Bool(vec![true, false, true]))),
            ("empty", tensor(vec![0, 2], Data::F32(vec![]))),
            ("scalar", tensor(vec![], Data::F32(vec![2.5]))),
            ("zipmap", Value::MapsI64(vec![vec![(0, 0.25), (10, 0.5), (2, 0.25)], vec![(0, 1.0), (10, 0.0), (2, 0.0)], vec![(0, 0.1), (10, 0.2), (2, 0.7)]])),
            ("zipmap_str", Value::MapsStr(vec![vec![("no".into(), 0.4), ("Yes".into(), 0.6)]; 3])),
            ("zipmap_empty", Value::MapsStr(vec![])),
        ];
        for (name, v) in &outputs {
            let want = serde_json::to_string(&oip_output_by_tree(name, v)).unwrap();
            assert_eq!(serde_json::to_string(&OipOutput(name, v)).unwrap(), want, "OIP {name}");
            let one = [(name.to_string(), v.clone())];
            assert_eq!(serde_json::to_string(&MlflowPredictions(&one)).unwrap(), serde_json::to_string(&mlflow_predictions_by_tree(&one)).unwrap(), "MLflow {name}");
        }
        // Several outputs (out of alphabetical order, one with fewer rows, a repeated name).
        let owned = |names: &[usize]| names.iter().map(|i| (outputs[*i].0.to_string(), outputs[*i].1.clone())).collect::<Vec<_>>();
        for pick in [vec![1, 0], vec![8, 0, 2], vec![4, 5, 3, 9], vec![0, 7], vec![6, 1], vec![0, 1, 0]] {
            let many = owned(&pick);
            let want = serde_json::to_string(&mlflow_predictions_by_tree(&many)).unwrap();
            assert_eq!(serde_json::to_string(&MlflowPredictions(&many)).unwrap(), want, "{pick:?}");
        }
        assert_eq!(serde_json::to_string(&MlflowPredictions(&owned(&[1, 0]))).unwrap(), r#"[{"label":0,"probabilities":[0.10000000149011612,0.8999999761581421]},{"label":1,"probabilities":[0.3333333432674408,0.6666666865348816]},{"label":-7,"probabilities":[null,null]}]"#);
    }
}
