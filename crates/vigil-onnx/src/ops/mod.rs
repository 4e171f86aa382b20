//! Operators. Each is compiled once when the model loads (attributes read and checked, tree
//! tables built), then run per request. An operator Vigil does not run, or an attribute form
//! it does not support, is refused at load with a message naming it.

mod basic;
mod linear;
mod preprocess;
mod tree;

use crate::error::{Error, Result};
use crate::proto::{AttrValue, NodeProto};
use crate::tensor::Value;

/// A compiled operator.
pub(crate) trait Kernel: Send + Sync {
    /// Runs on the node's inputs (`None` for an omitted optional input).
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>>;
}

/// The ONNX-ML domain.
pub(crate) const ML: &str = "ai.onnx.ml";

/// A node's attributes, read by name.
pub(crate) struct Attrs<'a> {
    pub op: &'a str,
    node: &'a NodeProto,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> Self {
        Attrs { op: &node.op_type, node }
    }

    fn get(&self, name: &str) -> Option<&'a AttrValue> {
        self.node.attributes.iter().find(|a| a.name == name).map(|a| &a.value)
    }

    fn wrong(&self, name: &str, what: &str) -> Error {
        Error::invalid(format!("{}: attribute '{name}' must be {what}", self.op))
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> Result<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Int(v)) => Ok(*v),
            Some(_) => Err(self.wrong(name, "an integer")),
        }
    }

    pub fn float(&self, name: &str, default: f32) -> Result<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(AttrValue::Float(v)) => Ok(*v),
            Some(_) => Err(self.wrong(name, "a number")),
        }
    }

    pub fn string(&self, name: &str, default: &str) -> Result<String> {
        match self.get(name) {
            None => Ok(default.to_owned()),
            Some(AttrValue::Bytes(v)) => String::from_utf8(v.clone()).map_err(|_| self.wrong(name, "UTF-8 text")),
            Some(_) => Err(self.wrong(name, "text")),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<Vec<f32>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Float(v)) => Ok(Some(vec![*v])),
            Some(AttrValue::Ints(v)) if v.is_empty() => Ok(Some(Vec::new())),
            Some(_) => Err(self.wrong(name, "a list of numbers")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(AttrValue::Int(v)) => Ok(Some(vec![*v])),
            Some(_) => Err(self.wrong(name, "a list of integers")),
        }
    }

    pub fn strings(&self, name: &str) -> Result<Option<Vec<String>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Strings(v)) => v.iter().map(|s| String::from_utf8(s.clone()).map_err(|_| self.wrong(name, "UTF-8 text"))).collect::<Result<Vec<_>>>().map(Some),
            Some(AttrValue::Ints(v)) if v.is_empty() => Ok(Some(Vec::new())),
            Some(_) => Err(self.wrong(name, "a list of text")),
        }
    }

    /// A double-precision tensor attribute (`…_as_tensor`) as f64 values.
    pub fn doubles(&self, name: &str) -> Result<Option<Vec<f64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(AttrValue::Tensor(t)) => match crate::tensor::from_proto(t)?.data {
                crate::tensor::Data::F64(v) => Ok(Some(v)),
                crate::tensor::Data::F32(v) => Ok(Some(v.into_iter().map(f64::from).collect())),
                _ => Err(self.wrong(name, "a tensor of numbers")),
            },
            Some(_) => Err(self.wrong(name, "a tensor")),
        }
    }

}

/// One input tensor of a node, required.
pub(crate) fn arg<'v>(op: &str, inputs: &[Option<&'v Value>], i: usize) -> Result<&'v crate::tensor::Tensor> {
    inputs.get(i).copied().flatten().ok_or_else(|| Error::input(format!("{op}: input {} is missing", i + 1)))?.tensor(op)
}

/// Compiles a node for the opset versions the model imports (`default`, `ml`).
pub(crate) fn compile(node: &NodeProto, default: i64, ml: i64) -> Result<Box<dyn Kernel>> {
    let a = Attrs::new(node);
    let domain = if node.domain == "ai.onnx" { "" } else { node.domain.as_str() };
    match (domain, node.op_type.as_str()) {
        (ML, "LinearClassifier") => linear::classifier(&a),
        (ML, "LinearRegressor") => linear::regressor(&a),
        (ML, "TreeEnsembleClassifier") => tree::classifier(&a),
        (ML, "TreeEnsembleRegressor") => tree::regressor(&a),
        (ML, "Scaler") => preprocess::scaler(&a),
        (ML, "Imputer") => preprocess::imputer(&a),
        (ML, "OneHotEncoder") => preprocess::one_hot(&a),
        (ML, "Normalizer") => preprocess::normalizer(&a),
        (ML, "Binarizer") => preprocess::binarizer(&a),
        (ML, "ZipMap") => preprocess::zipmap(&a),
        (ML, "ArrayFeatureExtractor") => basic::array_feature_extractor(),
        ("", "Identity") => basic::identity(),
        ("", "Cast") => basic::cast(&a),
        ("", "Concat") => basic::concat(&a),
        ("", "Reshape") => basic::reshape(&a),
        ("", "Flatten") => basic::flatten(&a),
        ("", "Add" | "Sub" | "Mul" | "Div") => basic::arithmetic(&a),
        ("", "Sigmoid") => basic::sigmoid(),
        ("", "Softmax") => basic::softmax(&a, default),
        ("", "Gather") => basic::gather(&a),
        (ML, "TreeEnsemble") => Err(Error::unsupported(format!(
            "operator ai.onnx.ml.TreeEnsemble (ai.onnx.ml opset {ml}) is not supported by Vigil's engine; convert with ai.onnx.ml opset 3 (TreeEnsembleClassifier/Regressor)"
        ))),
        (d, op) => {
            let name = if d.is_empty() { op.to_owned() } else { format!("{d}.{op}") };
            Err(Error::unsupported(format!("operator {name} is not supported by Vigil's engine")))
        }
    }
}
