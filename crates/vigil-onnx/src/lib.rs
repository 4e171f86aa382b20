//! Vigil's ONNX engine for the tabular models clinical teams export from scikit-learn and
//! XGBoost (skl2onnx, onnxmltools): linear models, random forests, gradient boosting and
//! XGBoost trees (classifiers and regressors), and pipelines with imputers, scalers and
//! one-hot encoders, with or without ZipMap.
//!
//! Why its own engine: `tract` does not run `Scaler`, `Imputer`, `OneHotEncoder`, `ZipMap` or
//! `TreeEnsembleRegressor` and fails on gradient-boosting base values; `ort` needs
//! onnxruntime's 35 MB shared library at run time and is a release candidate
//! (`shared/reference/rust-deps.md` §5). The operators these exports use are few and simple,
//! so a small interpreter with no dependencies gives exact control over the semantics
//! (onnxruntime's, checked against it by `tests/fixtures.rs`), a model loaded in
//! microseconds, and a few kilobytes of memory per model.
//!
//! A graph with an operator this engine does not run is refused by [`Model::load`] with a
//! message naming every such operator, so a deployment fails at deploy time, never on a
//! request. Messages never contain scored values.

mod error;
mod model;
mod ops;
mod proto;
mod tensor;

pub use error::{Error, ErrorKind, Result};
pub use model::{Inputs, Io, IoKind, Model, show_shape};
pub use tensor::{Data, ElemType, Tensor, Value};
