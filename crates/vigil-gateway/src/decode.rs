//! Request bodies into model inputs, model outputs into response bodies, for both protocols.
//! Every error names the input, column or datatype at fault and never a submitted value
//! (values may be patient data).

use serde_json::{Map, Value as Json, json};
use vigil_onnx::{Data, ElemType, IoKind, Model, Tensor, Value};

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
            Json::Null => Err(bad(format!("{what}: missing values are not accepted by this model (it has no imputer)"))),
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

fn check_nan(t: &Tensor, model: &Model, what: &str) -> R<()> {
    let has_nan = match &t.data {
        Data::F32(v) => v.iter().any(|x| x.is_nan()),
        Data::F64(v) => v.iter().any(|x| x.is_nan()),
        _ => false,
    };
    if has_nan && !model.accepts_missing {
        return Err(bad(format!("{what}: missing values are not accepted by this model (it has no imputer)")));
    }
    Ok(())
}

/// The OIP datatypes that carry numbers.
fn oip_numeric(dt: &str) -> bool {
    matches!(dt, "FP32" | "FP64" | "INT8" | "INT16" | "INT32" | "INT64" | "UINT8" | "UINT16" | "UINT32" | "UINT64")
}

/// Open Inference Protocol `inputs` into the model's inputs.
pub fn oip_inputs(model: &Model, inputs: &Json) -> R<Vec<(String, Tensor)>> {
    let list = inputs.as_array().ok_or_else(|| bad("'inputs' must be a list of tensors"))?;
    let mut out = Vec::with_capacity(list.len());
    for want in model.inputs() {
        let given = list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some(want.name.as_str()))
            .ok_or_else(|| bad(format!("input '{}' is missing", want.name)))?;
        let what = format!("input '{}'", want.name);
        let (elem, _) = input_type(model, &want.name).ok_or_else(|| bad(format!("{what} is not a tensor")))?;
        let shape: Vec<usize> = given
            .get("shape")
            .and_then(Json::as_array)
            .ok_or_else(|| bad(format!("{what}: 'shape' must be a list of dimensions")))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()).ok_or_else(|| bad(format!("{what}: dimensions are whole numbers ≥ 0"))))
            .collect::<R<_>>()?;
        let dt = given.get("datatype").and_then(Json::as_str).ok_or_else(|| bad(format!("{what}: 'datatype' is required")))?;
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
        let data = given.get("data").ok_or_else(|| bad(format!("{what}: 'data' is required")))?;
        let mut flat = Vec::new();
        flatten(data, &mut flat, 0)?;
        let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d)).ok_or_else(|| bad(format!("{what}: the shape is too large")))?;
        if n != flat.len() {
            return Err(bad(format!("{what}: the shape {shape:?} needs {n} values, {} were given", flat.len())));
        }
        // JSON has no NaN: null is a missing value, for models that impute them.
        let data = to_data(&flat, elem, &what, model.accepts_missing)?;
        let t = Tensor::new(shape, data).map_err(|e| Bad(e.message().to_owned()))?;
        check_nan(&t, model, &what)?;
        out.push((want.name.clone(), t));
    }
    if let Some(extra) = list.iter().filter_map(|t| t.get("name").and_then(Json::as_str)).find(|n| !model.inputs().iter().any(|i| i.name == *n)) {
        let shown = if vigil_core::ids::quote_key(extra).starts_with('\'') { format!("'{extra}'") } else { "(a name)".into() };
        return Err(bad(format!("the model takes no input named {shown}")));
    }
    Ok(out)
}

/// A tabular request (MLflow's formats, CSV): named columns of row values.
pub struct Frame {
    /// Column names in order.
    pub columns: Vec<String>,
    /// Rows of values, one per column.
    pub rows: Vec<Vec<Json>>,
}

/// A frame into the model's inputs: a model with one 2-D numeric input takes every column in
/// order as its features; a model with one input per column (skl2onnx's ColumnTransformer
/// export) takes each by name, and other columns are ignored as MLflow does.
pub fn frame_inputs(model: &Model, frame: &Frame) -> R<Vec<(String, Tensor)>> {
    let n = frame.rows.len();
    if n == 0 {
        return Err(bad("the request has no rows"));
    }
    let ins = model.inputs();
    let by_name = ins.iter().all(|i| frame.columns.contains(&i.name));
    let mut out = Vec::new();
    if by_name {
        for i in &ins {
            let k = frame.columns.iter().position(|c| *c == i.name).ok_or_else(|| bad(format!("column '{}' is missing", i.name)))?;
            let (elem, shape) = input_type(model, &i.name).ok_or_else(|| bad(format!("input '{}' is not a tensor", i.name)))?;
            let vals: Vec<&Json> = frame.rows.iter().map(|r| &r[k]).collect();
            let what = format!("column '{}'", i.name);
            let data = to_data(&vals, elem, &what, model.accepts_missing)?;
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
    let c = frame.columns.len();
    if let Some(Some(want)) = shape.get(1)
        && *want != c
    {
        return Err(bad(format!("the model takes {want} feature columns, {c} were given")));
    }
    let vals: Vec<&Json> = frame.rows.iter().flatten().collect();
    let data = to_data(&vals, elem, "a feature column", model.accepts_missing)?;
    out.push((only.name.clone(), Tensor::new(vec![n, c], data).map_err(|e| Bad(e.message().to_owned()))?));
    Ok(out)
}

/// An output as an OIP tensor: ZipMap's maps become an FP32 `[N, classes]` tensor with the
/// classes in `parameters.classes`.
pub fn oip_output(name: &str, v: &Value) -> Json {
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

/// An output's values, one per row (a list per row for wider tensors, a class → probability
/// object per row for ZipMap).
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

/// Outputs as MLflow `predictions`: with one output, one value (or list) per row; with
/// several, one record per row keyed by output name (a ZipMap output as a class → probability
/// object).
pub fn mlflow_predictions(outputs: &[(String, Value)]) -> Json {
    match outputs {
        [(_, v)] => Json::Array(per_row(v)),
        many => {
            let cols: Vec<(String, Vec<Json>)> = many.iter().map(|(n, v)| (n.clone(), per_row(v))).collect();
            let n = cols.first().map_or(0, |c| c.1.len());
            Json::Array((0..n).map(|r| Json::Object(cols.iter().map(|(name, vals)| (name.clone(), vals.get(r).cloned().unwrap_or(Json::Null))).collect::<Map<_, _>>())).collect())
        }
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
        let data = to_data(&flat, elem, &what, model.accepts_missing)?;
        out.push((i.name.clone(), Tensor::new(shape, data).map_err(|e| Bad(e.message().to_owned()))?));
    }
    Ok(out)
}
