//! The standard-domain operators converters put around the ONNX-ML ones: `Identity`, `Cast`,
//! `Concat`, `Reshape`, `Flatten`, `Add`/`Sub`/`Mul`/`Div` with broadcasting, `Sigmoid`,
//! `Softmax`, `Gather`, and ONNX-ML's `ArrayFeatureExtractor`.

use super::{Attrs, Kernel, arg};
use crate::error::{Error, Result};
use crate::tensor::{Data, ElemType, Tensor, Value};

struct Identity;

pub(crate) fn identity() -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Identity))
}

impl Kernel for Identity {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        Ok(vec![inputs.first().copied().flatten().ok_or_else(|| Error::input("Identity: the input is missing"))?.clone()])
    }
}

struct Cast(ElemType);

pub(crate) fn cast(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let to = a.int("to", 0)?;
    let t = i32::try_from(to).ok().and_then(ElemType::from_code).ok_or_else(|| Error::unsupported(format!("Cast to {} is not supported by Vigil's engine", crate::tensor::type_name(to as i32))))?;
    Ok(Box::new(Cast(t)))
}

fn cast_data(d: &Data, to: ElemType) -> Result<Data> {
    macro_rules! from {
        ($v:expr) => {
            match to {
                ElemType::F32 => Data::F32($v.iter().map(|x| *x as f32).collect()),
                ElemType::F64 => Data::F64($v.iter().map(|x| *x as f64).collect()),
                ElemType::I64 => Data::I64($v.iter().map(|x| *x as i64).collect()),
                ElemType::I32 => Data::I32($v.iter().map(|x| *x as i32).collect()),
                ElemType::Bool => Data::Bool($v.iter().map(|x| *x as f64 != 0.0).collect()),
                ElemType::Str => return Err(Error::unsupported("Cast from numbers to text is not supported by Vigil's engine")),
            }
        };
    }
    Ok(match d {
        Data::F32(v) => from!(v),
        Data::F64(v) => from!(v),
        Data::I64(v) => from!(v),
        Data::I32(v) => from!(v),
        Data::Bool(v) => {
            let n: Vec<u8> = v.iter().map(|b| u8::from(*b)).collect();
            from!(n)
        }
        Data::Str(v) => match to {
            ElemType::Str => Data::Str(v.clone()),
            _ => {
                let nums: Vec<f64> = v.iter().map(|s| s.trim().parse::<f64>().map_err(|_| Error::input("Cast: a text value is not a number"))).collect::<Result<_>>()?;
                from!(nums)
            }
        },
    })
}

impl Kernel for Cast {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Cast", inputs, 0)?;
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data: cast_data(&x.data, self.0)? })])
    }
}

fn axis_of(axis: i64, rank: usize, op: &str) -> Result<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(Error::input(format!("{op}: axis {axis} is outside the input's {rank} dimensions")));
    }
    Ok(a as usize)
}

struct Concat(i64);

pub(crate) fn concat(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    if !a.has("axis") {
        return Err(Error::invalid("Concat: attribute 'axis' is missing"));
    }
    Ok(Box::new(Concat(a.int("axis", 0)?)))
}

impl Kernel for Concat {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let ts: Vec<&Tensor> = (0..inputs.len()).map(|i| arg("Concat", inputs, i)).collect::<Result<_>>()?;
        let first = ts.first().ok_or_else(|| Error::input("Concat: no inputs"))?;
        let rank = first.shape.len();
        let axis = axis_of(self.0, rank, "Concat")?;
        for t in &ts {
            if t.shape.len() != rank || t.elem_type() != first.elem_type() || t.shape.iter().enumerate().any(|(i, d)| i != axis && *d != first.shape[i]) {
                return Err(Error::input("Concat: the inputs' shapes or types do not line up"));
            }
        }
        let outer: usize = first.shape[..axis].iter().product();
        let inner: usize = first.shape[axis + 1..].iter().product();
        let mut shape = first.shape.clone();
        shape[axis] = ts.iter().map(|t| t.shape[axis]).sum();
        macro_rules! join {
            ($variant:ident) => {{
                let mut out = Vec::with_capacity(shape.iter().product());
                for o in 0..outer {
                    for t in &ts {
                        let Data::$variant(v) = &t.data else { unreachable!() };
                        let block = t.shape[axis] * inner;
                        out.extend_from_slice(&v[o * block..(o + 1) * block]);
                    }
                }
                Data::$variant(out)
            }};
        }
        let data = match first.data {
            Data::F32(_) => join!(F32),
            Data::F64(_) => join!(F64),
            Data::I64(_) => join!(I64),
            Data::I32(_) => join!(I32),
            Data::Str(_) => join!(Str),
            Data::Bool(_) => join!(Bool),
        };
        Ok(vec![Value::Tensor(Tensor { shape, data })])
    }
}

struct Reshape {
    allowzero: bool,
}

pub(crate) fn reshape(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Reshape { allowzero: a.int("allowzero", 0)? != 0 }))
}

impl Kernel for Reshape {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Reshape", inputs, 0)?;
        let s = arg("Reshape", inputs, 1)?;
        let Data::I64(spec) = &s.data else { return Err(Error::input("Reshape: the shape must be int64")) };
        let total = x.data.len();
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, d) in spec.iter().enumerate() {
            match *d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    shape.push(1);
                }
                0 if !self.allowzero => shape.push(*x.shape.get(i).ok_or_else(|| Error::input("Reshape: a 0 copies a dimension the input does not have"))?),
                d if d >= 0 => shape.push(d as usize),
                _ => return Err(Error::input("Reshape: an invalid target shape")),
            }
        }
        if let Some(i) = infer {
            let known: usize = shape.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, d)| *d).product();
            if known == 0 || total % known != 0 {
                return Err(Error::input("Reshape: the input does not divide into the target shape"));
            }
            shape[i] = total / known;
        }
        Ok(vec![Value::Tensor(Tensor::new(shape, x.data.clone()).map_err(|_| Error::input("Reshape: the element count does not match the target shape"))?)])
    }
}

struct Flatten(i64);

pub(crate) fn flatten(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Flatten(a.int("axis", 1)?)))
}

impl Kernel for Flatten {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Flatten", inputs, 0)?;
        let r = x.shape.len() as i64;
        let axis = if self.0 < 0 { self.0 + r } else { self.0 };
        if axis < 0 || axis > r {
            return Err(Error::input("Flatten: axis outside the input's dimensions"));
        }
        let a = axis as usize;
        let shape = vec![x.shape[..a].iter().product(), x.shape[a..].iter().product()];
        Ok(vec![Value::Tensor(Tensor { shape, data: x.data.clone() })])
    }
}

#[derive(Clone, Copy)]
enum Arith {
    Add,
    Sub,
    Mul,
    Div,
}

struct Arithmetic(Arith);

pub(crate) fn arithmetic(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Arithmetic(match a.op {
        "Add" => Arith::Add,
        "Sub" => Arith::Sub,
        "Mul" => Arith::Mul,
        _ => Arith::Div,
    })))
}

/// The broadcast shape of two shapes (numpy rules), or None.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for i in 0..r {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// For each output position, the flat index into an input broadcast to `shape`.
fn source_index(shape: &[usize], input: &[usize]) -> Vec<usize> {
    let total: usize = shape.iter().product();
    let r = shape.len();
    let pad = r - input.len();
    let mut strides = vec![0usize; r];
    let mut s = 1;
    for i in (0..input.len()).rev() {
        strides[i + pad] = if input[i] == 1 { 0 } else { s };
        s *= input[i];
    }
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; r];
    for _ in 0..total {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
        for d in (0..r).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    out
}

impl Kernel for Arithmetic {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let (x, y) = (arg("Arithmetic", inputs, 0)?, arg("Arithmetic", inputs, 1)?);
        let shape = broadcast(&x.shape, &y.shape).ok_or_else(|| Error::input("Add/Sub/Mul/Div: the inputs' shapes do not broadcast"))?;
        let (ix, iy) = (source_index(&shape, &x.shape), source_index(&shape, &y.shape));
        macro_rules! apply {
            ($variant:ident, $a:expr, $b:expr) => {
                Data::$variant(
                    ix.iter()
                        .zip(&iy)
                        .map(|(i, j)| {
                            let (p, q) = ($a[*i], $b[*j]);
                            match self.0 {
                                Arith::Add => p + q,
                                Arith::Sub => p - q,
                                Arith::Mul => p * q,
                                Arith::Div => p / q,
                            }
                        })
                        .collect(),
                )
            };
        }
        let data = match (&x.data, &y.data) {
            (Data::F32(a), Data::F32(b)) => apply!(F32, a, b),
            (Data::F64(a), Data::F64(b)) => apply!(F64, a, b),
            (Data::I64(a), Data::I64(b)) => {
                if matches!(self.0, Arith::Div) && b.contains(&0) {
                    return Err(Error::input("Div: integer division by zero"));
                }
                Data::I64(
                    ix.iter()
                        .zip(&iy)
                        .map(|(i, j)| {
                            let (p, q) = (a[*i], b[*j]);
                            match self.0 {
                                Arith::Add => p.wrapping_add(q),
                                Arith::Sub => p.wrapping_sub(q),
                                Arith::Mul => p.wrapping_mul(q),
                                Arith::Div => p.wrapping_div(q),
                            }
                        })
                        .collect(),
                )
            }
            _ => return Err(Error::input("Add/Sub/Mul/Div: the inputs must be numbers of one type")),
        };
        Ok(vec![Value::Tensor(Tensor { shape, data })])
    }
}

struct Sigmoid;

pub(crate) fn sigmoid() -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Sigmoid))
}

impl Kernel for Sigmoid {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Sigmoid", inputs, 0)?;
        let data = match &x.data {
            Data::F64(v) => Data::F64(v.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect()),
            _ => Data::F32(x.to_f32("Sigmoid")?.iter().map(|z| super::linear::logistic(*z)).collect()),
        };
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data })])
    }
}

struct Softmax {
    axis: i64,
    /// Before opset 13 the input is coerced to 2-D at `axis`; from 13 on it runs along `axis`.
    legacy: bool,
}

pub(crate) fn softmax(a: &Attrs<'_>, opset: i64) -> Result<Box<dyn Kernel>> {
    let legacy = opset < 13;
    Ok(Box::new(Softmax { axis: a.int("axis", if legacy { 1 } else { -1 })?, legacy }))
}

impl Kernel for Softmax {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Softmax", inputs, 0)?;
        let axis = axis_of(self.axis, x.shape.len(), "Softmax")?;
        let mut v = x.to_f32("Softmax")?.into_owned();
        let (outer, len, inner) = if self.legacy {
            (x.shape[..axis].iter().product::<usize>(), x.shape[axis..].iter().product::<usize>(), 1)
        } else {
            (x.shape[..axis].iter().product(), x.shape[axis], x.shape[axis + 1..].iter().product())
        };
        let mut buf = vec![0f32; len];
        for o in 0..outer {
            for i in 0..inner {
                for (k, b) in buf.iter_mut().enumerate() {
                    *b = v[(o * len + k) * inner + i];
                }
                super::linear::softmax(&mut buf);
                for (k, b) in buf.iter().enumerate() {
                    v[(o * len + k) * inner + i] = *b;
                }
            }
        }
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data: Data::F32(v) })])
    }
}

fn indices(t: &Tensor, op: &str) -> Result<Vec<i64>> {
    match &t.data {
        Data::I64(v) => Ok(v.clone()),
        Data::I32(v) => Ok(v.iter().map(|x| i64::from(*x)).collect()),
        _ => Err(Error::input(format!("{op}: indices must be integers"))),
    }
}

/// Picks elements of `data` by flat indices.
fn take(data: &Data, idx: &[usize]) -> Data {
    match data {
        Data::F32(v) => Data::F32(idx.iter().map(|i| v[*i]).collect()),
        Data::F64(v) => Data::F64(idx.iter().map(|i| v[*i]).collect()),
        Data::I64(v) => Data::I64(idx.iter().map(|i| v[*i]).collect()),
        Data::I32(v) => Data::I32(idx.iter().map(|i| v[*i]).collect()),
        Data::Str(v) => Data::Str(idx.iter().map(|i| v[*i].clone()).collect()),
        Data::Bool(v) => Data::Bool(idx.iter().map(|i| v[*i]).collect()),
    }
}

struct ArrayFeatureExtractor;

pub(crate) fn array_feature_extractor() -> Result<Box<dyn Kernel>> {
    Ok(Box::new(ArrayFeatureExtractor))
}

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("ArrayFeatureExtractor", inputs, 0)?;
        let picks = indices(arg("ArrayFeatureExtractor", inputs, 1)?, "ArrayFeatureExtractor")?;
        let c = *x.shape.last().ok_or_else(|| Error::input("ArrayFeatureExtractor: the input has no dimensions"))?;
        let rows = x.data.len() / c.max(1);
        let mut idx = Vec::with_capacity(rows * picks.len());
        for r in 0..rows {
            for p in &picks {
                let p = usize::try_from(*p).ok().filter(|p| *p < c).ok_or_else(|| Error::input("ArrayFeatureExtractor: an index is outside the columns"))?;
                idx.push(r * c + p);
            }
        }
        let mut shape = x.shape.clone();
        if shape.len() == 1 {
            shape = vec![1, picks.len()];
        } else if let Some(l) = shape.last_mut() {
            *l = picks.len();
        }
        Ok(vec![Value::Tensor(Tensor { shape, data: take(&x.data, &idx) })])
    }
}

struct Gather(i64);

pub(crate) fn gather(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Gather(a.int("axis", 0)?)))
}

impl Kernel for Gather {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Gather", inputs, 0)?;
        let it = arg("Gather", inputs, 1)?;
        let picks = indices(it, "Gather")?;
        let axis = axis_of(self.0, x.shape.len(), "Gather")?;
        let d = x.shape[axis];
        let outer: usize = x.shape[..axis].iter().product();
        let inner: usize = x.shape[axis + 1..].iter().product();
        let mut idx = Vec::with_capacity(outer * picks.len() * inner);
        for o in 0..outer {
            for p in &picks {
                let p = if *p < 0 { *p + d as i64 } else { *p };
                let p = usize::try_from(p).ok().filter(|p| *p < d).ok_or_else(|| Error::input("Gather: an index is outside the axis"))?;
                idx.extend((0..inner).map(|i| (o * d + p) * inner + i));
            }
        }
        let mut shape = x.shape[..axis].to_vec();
        shape.extend_from_slice(&it.shape);
        shape.extend_from_slice(&x.shape[axis + 1..]);
        Ok(vec![Value::Tensor(Tensor { shape, data: take(&x.data, &idx) })])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(broadcast(&[3, 4], &[4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[3, 1], &[1, 4]), Some(vec![3, 4]));
        assert_eq!(broadcast(&[3, 4], &[3]), None);
        assert_eq!(source_index(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(source_index(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
    }
}
