//! The ONNX-ML preprocessing operators of scikit-learn pipelines (`Scaler`, `Imputer`,
//! `OneHotEncoder`, `Normalizer`, `Binarizer`) and `ZipMap`, which turns class scores into
//! one class → probability map per row.

use super::linear::Labels;
use super::{Attrs, Kernel, arg};
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor, Value};
use std::collections::HashMap;

/// A per-column parameter: one value for all columns, or one per column.
fn per_column(v: &[f32], j: usize) -> f32 {
    if v.len() == 1 { v[0] } else { v.get(j).copied().unwrap_or(0.0) }
}

fn check_columns(op: &str, what: &str, len: usize, c: usize) -> Result<()> {
    if len != 1 && len != c {
        return Err(Error::input(format!("{op}: the model has {len} {what} but the rows have {c} columns")));
    }
    Ok(())
}

struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

pub(crate) fn scaler(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let offset = a.floats("offset")?.unwrap_or_else(|| vec![0.0]);
    let scale = a.floats("scale")?.unwrap_or_else(|| vec![1.0]);
    if offset.is_empty() || scale.is_empty() {
        return Err(Error::invalid("Scaler: offset and scale must not be empty"));
    }
    Ok(Box::new(Scaler { offset, scale }))
}

impl Kernel for Scaler {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Scaler", inputs, 0)?;
        let (_, c) = x.rows_cols();
        check_columns("Scaler", "offsets", self.offset.len(), c)?;
        check_columns("Scaler", "scales", self.scale.len(), c)?;
        let xs = x.to_f32("Scaler")?;
        let out = xs.iter().enumerate().map(|(i, v)| {
            let j = i % c.max(1);
            (v - per_column(&self.offset, j)) * per_column(&self.scale, j)
        });
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data: Data::F32(out.collect()) })])
    }
}

struct Imputer {
    values: Vec<f32>,
    ints: Vec<i64>,
    replaced: f32,
    replaced_int: i64,
}

pub(crate) fn imputer(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let values = a.floats("imputed_value_floats")?.unwrap_or_default();
    let ints = a.ints("imputed_value_int64s")?.unwrap_or_default();
    if values.is_empty() && ints.is_empty() {
        return Err(Error::invalid("Imputer: give imputed_value_floats or imputed_value_int64s"));
    }
    Ok(Box::new(Imputer { values, ints, replaced: a.float("replaced_value_float", 0.0)?, replaced_int: a.int("replaced_value_int64", 0)? }))
}

impl Kernel for Imputer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Imputer", inputs, 0)?;
        let (_, c) = x.rows_cols();
        let c = c.max(1);
        let data = match &x.data {
            Data::I64(v) => {
                if self.ints.is_empty() {
                    return Err(Error::input("Imputer: the model imputes numbers with decimals, but the input is integers"));
                }
                check_columns("Imputer", "imputed values", self.ints.len(), c)?;
                Data::I64(v.iter().enumerate().map(|(i, x)| if *x == self.replaced_int { if self.ints.len() == 1 { self.ints[0] } else { self.ints[i % c] } } else { *x }).collect())
            }
            _ => {
                if self.values.is_empty() {
                    return Err(Error::input("Imputer: the model imputes integers, but the input is not"));
                }
                check_columns("Imputer", "imputed values", self.values.len(), c)?;
                let xs = x.to_f32("Imputer")?;
                let nan = self.replaced.is_nan();
                Data::F32(xs.iter().enumerate().map(|(i, v)| if (nan && v.is_nan()) || *v == self.replaced { per_column(&self.values, i % c) } else { *v }).collect())
            }
        };
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data })])
    }
}

struct OneHot {
    ints: HashMap<i64, usize>,
    strs: HashMap<String, usize>,
    k: usize,
    zeros: bool,
}

pub(crate) fn one_hot(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let ints = a.ints("cats_int64s")?.unwrap_or_default();
    let strs = a.strings("cats_strings")?.unwrap_or_default();
    if ints.is_empty() == strs.is_empty() {
        return Err(Error::invalid("OneHotEncoder: exactly one of cats_int64s and cats_strings must list the categories"));
    }
    let k = ints.len().max(strs.len());
    Ok(Box::new(OneHot {
        ints: ints.iter().enumerate().map(|(i, v)| (*v, i)).collect(),
        strs: strs.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect(),
        k,
        zeros: a.int("zeros", 1)? != 0,
    }))
}

impl Kernel for OneHot {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("OneHotEncoder", inputs, 0)?;
        let n = x.data.len();
        let mut out = vec![0f32; n * self.k];
        let unknown = || Error::input("OneHotEncoder: a value is not one of the model's categories");
        let mut set = |i: usize, pos: Option<usize>| -> Result<()> {
            match pos {
                Some(p) => out[i * self.k + p] = 1.0,
                None if self.zeros => {}
                None => return Err(unknown()),
            }
            Ok(())
        };
        match &x.data {
            Data::Str(v) => {
                if self.strs.is_empty() {
                    return Err(Error::input("OneHotEncoder: the model's categories are numbers, the input is text"));
                }
                for (i, s) in v.iter().enumerate() {
                    set(i, self.strs.get(s).copied())?;
                }
            }
            Data::I64(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.ints.get(s).copied())?;
                }
            }
            Data::I32(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.ints.get(&i64::from(*s)).copied())?;
                }
            }
            Data::F32(_) | Data::F64(_) | Data::Bool(_) => {
                if self.ints.is_empty() {
                    return Err(Error::input("OneHotEncoder: the model's categories are text, the input is numbers"));
                }
                let xs = x.to_f32("OneHotEncoder")?;
                for (i, s) in xs.iter().enumerate() {
                    set(i, if s.fract() == 0.0 && s.is_finite() { self.ints.get(&(*s as i64)).copied() } else { None })?;
                }
            }
        }
        let mut shape = x.shape.clone();
        shape.push(self.k);
        Ok(vec![Value::Tensor(Tensor { shape, data: Data::F32(out) })])
    }
}

#[derive(Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

struct Normalizer(Norm);

pub(crate) fn normalizer(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Normalizer(match a.string("norm", "MAX")?.as_str() {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        _ => return Err(Error::unsupported("Normalizer: norm must be MAX, L1 or L2")),
    })))
}

impl Kernel for Normalizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Normalizer", inputs, 0)?;
        let (_, c) = x.rows_cols();
        let mut out = x.to_f32("Normalizer")?.into_owned();
        for row in out.chunks_exact_mut(c.max(1)) {
            let d = match self.0 {
                Norm::Max => row.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                Norm::L1 => row.iter().map(|v| v.abs()).sum(),
                Norm::L2 => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
            };
            if d != 0.0 {
                row.iter_mut().for_each(|v| *v /= d);
            }
        }
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data: Data::F32(out) })])
    }
}

struct Binarizer(f32);

pub(crate) fn binarizer(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(Binarizer(a.float("threshold", 0.0)?)))
}

impl Kernel for Binarizer {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("Binarizer", inputs, 0)?;
        let out = x.to_f32("Binarizer")?.iter().map(|v| if *v > self.0 { 1.0 } else { 0.0 }).collect();
        Ok(vec![Value::Tensor(Tensor { shape: x.shape.clone(), data: Data::F32(out) })])
    }
}

struct ZipMap(Labels);

pub(crate) fn zipmap(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    Ok(Box::new(ZipMap(Labels::parse(a, "classlabels_int64s", "classlabels_strings")?)))
}

impl Kernel for ZipMap {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("ZipMap", inputs, 0)?;
        let (n, c) = x.rows_cols();
        if c != self.0.len() {
            return Err(Error::input(format!("ZipMap: {} classes but {c} scores per row", self.0.len())));
        }
        let xs = x.to_f32("ZipMap")?;
        let rows = xs.chunks_exact(c.max(1)).take(n);
        Ok(vec![match &self.0 {
            Labels::Ints(l) => Value::MapsI64(rows.map(|r| l.iter().copied().zip(r.iter().copied()).collect()).collect()),
            Labels::Strs(l) => Value::MapsStr(rows.map(|r| l.iter().cloned().zip(r.iter().copied()).collect()).collect()),
        }])
    }
}
