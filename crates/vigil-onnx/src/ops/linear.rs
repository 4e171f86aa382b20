//! `LinearClassifier` and `LinearRegressor` (ai.onnx.ml), and the score post-transforms the
//! ONNX-ML classifiers share.

use super::{Attrs, Kernel, arg};
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor, Value};

/// How raw scores become the output scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Post {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

impl Post {
    pub fn parse(a: &Attrs<'_>) -> Result<Post> {
        Ok(match a.string("post_transform", "NONE")?.as_str() {
            "NONE" => Post::None,
            "LOGISTIC" => Post::Logistic,
            "SOFTMAX" => Post::Softmax,
            "SOFTMAX_ZERO" => Post::SoftmaxZero,
            "PROBIT" => Post::Probit,
            _ => return Err(Error::unsupported(format!("{}: this post_transform is not supported", a.op))),
        })
    }

    /// Applies the transform to one row of scores in place.
    pub fn apply(self, row: &mut [f32]) {
        match self {
            Post::None => {}
            Post::Logistic => row.iter_mut().for_each(|x| *x = logistic(*x)),
            Post::Softmax => softmax(row),
            Post::SoftmaxZero => {
                // Like softmax, but scores that are exactly zero stay zero.
                let max = row.iter().copied().filter(|x| *x != 0.0).fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0f32;
                for x in row.iter_mut() {
                    if *x != 0.0 {
                        *x = (*x - max).exp();
                        sum += *x;
                    }
                }
                if sum > 0.0 {
                    row.iter_mut().for_each(|x| *x /= sum);
                }
            }
            Post::Probit => row.iter_mut().for_each(|x| *x = std::f32::consts::SQRT_2 * erf_inv(2.0 * *x - 1.0)),
        }
    }
}

pub(crate) fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

pub(crate) fn softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    row.iter_mut().for_each(|x| *x /= sum);
}

/// The inverse error function (Giles' single-precision approximation, within 2e-7 on (-1, 1)).
fn erf_inv(x: f32) -> f32 {
    let x = f64::from(x);
    let w = -((1.0 - x) * (1.0 + x)).ln();
    let p = if w < 5.0 {
        let w = w - 2.5;
        let mut p = 2.810_226_36e-08;
        for c in [3.432_739_39e-07, -3.523_387_7e-06, -4.391_506_54e-06, 0.000_218_580_87, -0.001_253_725_03, -0.004_177_681_64, 0.246_640_727, 1.501_409_41] {
            p = c + p * w;
        }
        p
    } else {
        let w = w.sqrt() - 3.0;
        let mut p = -0.000_200_214_257;
        for c in [0.000_100_950_558, 0.001_349_343_22, -0.003_673_428_44, 0.005_739_507_73, -0.007_622_461_3, 0.009_438_870_47, 1.001_674_06, 2.832_976_82] {
            p = c + p * w;
        }
        p
    };
    (p * x) as f32
}

/// The index of the first largest score (ties go to the earlier class, as onnxruntime).
pub(crate) fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}

/// Class labels: integers or text.
#[derive(Debug, Clone)]
pub(crate) enum Labels {
    Ints(Vec<i64>),
    Strs(Vec<String>),
}

impl Labels {
    pub fn parse(a: &Attrs<'_>, ints: &str, strs: &str) -> Result<Labels> {
        match (a.ints(ints)?, a.strings(strs)?) {
            (Some(i), None) if !i.is_empty() => Ok(Labels::Ints(i)),
            (None, Some(s)) if !s.is_empty() => Ok(Labels::Strs(s)),
            (Some(i), Some(s)) if s.is_empty() && !i.is_empty() => Ok(Labels::Ints(i)),
            (Some(i), Some(s)) if i.is_empty() && !s.is_empty() => Ok(Labels::Strs(s)),
            _ => Err(Error::invalid(format!("{}: exactly one of {ints} and {strs} must list the classes", a.op))),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strs(v) => v.len(),
        }
    }

    /// The label tensor `[N]` for the chosen class indices.
    pub fn pick(&self, idx: &[usize]) -> Tensor {
        let n = idx.len();
        let data = match self {
            Labels::Ints(v) => Data::I64(idx.iter().map(|i| v[*i]).collect()),
            Labels::Strs(v) => Data::Str(idx.iter().map(|i| v[*i].clone()).collect()),
        };
        Tensor { shape: vec![n], data }
    }
}

struct LinearClassifier {
    coef: Vec<f32>,
    intercepts: Vec<f32>,
    rows: usize,
    labels: Labels,
    post: Post,
}

pub(crate) fn classifier(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let coef = a.floats("coefficients")?.ok_or_else(|| Error::invalid("LinearClassifier: coefficients are missing"))?;
    let labels = Labels::parse(a, "classlabels_ints", "classlabels_strings")?;
    // As onnxruntime: one intercept per row of coefficients (one row for two classes is the
    // binary form).
    let intercepts = a.floats("intercepts")?.unwrap_or_default();
    let rows = intercepts.len();
    if rows == 0 || coef.is_empty() || coef.len() % rows != 0 {
        return Err(Error::invalid("LinearClassifier: the coefficients do not divide into the classes"));
    }
    if rows != labels.len() && !(rows == 1 && labels.len() == 2) {
        return Err(Error::invalid("LinearClassifier: the coefficient rows do not match the classes"));
    }
    Ok(Box::new(LinearClassifier { coef, intercepts, rows, labels, post: Post::parse(a)? }))
}

impl Kernel for LinearClassifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("LinearClassifier", inputs, 0)?;
        let (n, c) = x.rows_cols();
        if c * self.rows != self.coef.len() {
            return Err(Error::input(format!("the model takes {} features, {c} were given", self.coef.len() / self.rows)));
        }
        let xs = x.to_f32("LinearClassifier")?;
        let k = if self.rows == 1 { 2 } else { self.rows };
        let mut scores = vec![0f32; n * k];
        let mut idx = Vec::with_capacity(n);
        for (row, out) in xs.chunks_exact(c.max(1)).take(n).zip(scores.chunks_exact_mut(k)) {
            for j in 0..self.rows {
                let w = &self.coef[j * c..(j + 1) * c];
                let s = row.iter().zip(w).fold(0f32, |acc, (a, b)| acc + a * b) + self.intercepts.get(j).copied().unwrap_or(0.0);
                if self.rows == 1 {
                    // One score for two classes: the first class gets its negation.
                    out[0] = -s;
                    out[1] = s;
                } else {
                    out[j] = s;
                }
            }
            self.post.apply(out);
            idx.push(argmax(out));
        }
        Ok(vec![Value::Tensor(self.labels.pick(&idx)), Value::Tensor(Tensor { shape: vec![n, k], data: Data::F32(scores) })])
    }
}

struct LinearRegressor {
    coef: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: Post,
}

pub(crate) fn regressor(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let coef = a.floats("coefficients")?.ok_or_else(|| Error::invalid("LinearRegressor: coefficients are missing"))?;
    let targets = usize::try_from(a.int("targets", 1)?).ok().filter(|t| *t > 0).ok_or_else(|| Error::invalid("LinearRegressor: targets must be positive"))?;
    if coef.is_empty() || coef.len() % targets != 0 {
        return Err(Error::invalid("LinearRegressor: the coefficients do not divide into the targets"));
    }
    Ok(Box::new(LinearRegressor { coef, intercepts: a.floats("intercepts")?.unwrap_or_default(), targets, post: Post::parse(a)? }))
}

impl Kernel for LinearRegressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("LinearRegressor", inputs, 0)?;
        let (n, c) = x.rows_cols();
        if c * self.targets != self.coef.len() {
            return Err(Error::input(format!("the model takes {} features, {c} were given", self.coef.len() / self.targets)));
        }
        let xs = x.to_f32("LinearRegressor")?;
        let mut out = vec![0f32; n * self.targets];
        for (row, o) in xs.chunks_exact(c.max(1)).take(n).zip(out.chunks_exact_mut(self.targets)) {
            for (j, v) in o.iter_mut().enumerate() {
                let w = &self.coef[j * c..(j + 1) * c];
                *v = row.iter().zip(w).fold(0f32, |acc, (a, b)| acc + a * b) + self.intercepts.get(j).copied().unwrap_or(0.0);
            }
            self.post.apply(o);
        }
        Ok(vec![Value::Tensor(Tensor { shape: vec![n, self.targets], data: Data::F32(out) })])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_inv_inverts_erf_at_known_points() {
        // erf(0.5) = 0.5204998778, erf(1.5) = 0.9661051465
        assert!((erf_inv(0.520_499_9) - 0.5).abs() < 1e-5);
        assert!((erf_inv(0.966_105_1) - 1.5).abs() < 1e-4);
        assert_eq!(erf_inv(0.0), 0.0);
    }

    #[test]
    fn softmax_zero_keeps_zeros_and_ties_pick_the_first_class() {
        let mut r = [0.0, 1.0, 1.0];
        Post::SoftmaxZero.apply(&mut r);
        assert_eq!(r[0], 0.0);
        assert!((r[1] - 0.5).abs() < 1e-7);
        assert_eq!(argmax(&r), 1);
    }
}
