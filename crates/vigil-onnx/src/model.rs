//! A loaded model: the graph compiled into an ordered list of kernels over numbered value
//! slots, with its declared inputs and outputs.

use crate::error::{Error, Result};
use crate::ops::{self, Kernel};
use crate::proto::{self, TypeProto};
use crate::tensor::{ElemType, Tensor, Value, from_proto, type_name};
use std::collections::HashMap;

/// What a graph input or output carries.
#[derive(Debug, Clone, PartialEq)]
pub enum IoKind {
    /// A tensor of `elem` with `shape` (`None` for a dimension of any size).
    Tensor {
        /// Element type.
        elem: ElemType,
        /// Dimensions as declared; `None` where the model leaves the size open.
        shape: Vec<Option<usize>>,
    },
    /// A sequence of maps class → probability (ZipMap), keyed by `key` (int64 or string).
    Maps {
        /// The key type.
        key: ElemType,
    },
}

/// A named graph input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct Io {
    /// Name in the graph.
    pub name: String,
    /// What it carries.
    pub kind: IoKind,
}

struct Step {
    kernel: Box<dyn Kernel>,
    inputs: Vec<Option<usize>>,
    outputs: Vec<Option<usize>>,
}

/// A model ready to run. Loading checks everything that can be checked without data, so a
/// model that loads only fails on a request that does not fit it.
pub struct Model {
    inputs: Vec<(Io, usize)>,
    outputs: Vec<(Io, usize)>,
    constants: HashMap<usize, Value>,
    steps: Vec<Step>,
    slots: usize,
    /// Whether the graph replaces missing values (an `Imputer` of NaN) of some input (see
    /// [`Model::accepts_missing_in`]).
    pub accepts_missing: bool,
    /// Per input (in order), whether every path from it reaches such an `Imputer` before
    /// anything else reads its values.
    imputes: Vec<bool>,
    /// (domain, version) imported by the model; the default domain is "".
    pub opsets: Vec<(String, i64)>,
    /// The tool that wrote the model (e.g. `skl2onnx`).
    pub producer: String,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("inputs", &self.inputs()).field("outputs", &self.outputs()).field("steps", &self.steps.len()).finish()
    }
}

fn io(v: &proto::ValueInfo, what: &str) -> Result<Io> {
    let kind = match &v.ty {
        TypeProto::Tensor { elem_type, shape } => {
            let elem = ElemType::from_code(*elem_type)
                .ok_or_else(|| Error::unsupported(format!("{what} '{}' has element type {}, which Vigil's engine does not carry", v.name, type_name(*elem_type))))?;
            let shape = shape.as_ref().map(|d| d.iter().map(|x| x.and_then(|x| usize::try_from(x).ok()).filter(|x| *x > 0)).collect()).unwrap_or_default();
            IoKind::Tensor { elem, shape }
        }
        TypeProto::SequenceOfMaps { key_type } if what == "output" => IoKind::Maps {
            key: ElemType::from_code(*key_type).filter(|k| matches!(k, ElemType::I64 | ElemType::Str)).ok_or_else(|| Error::unsupported(format!("output '{}' is a map with an unusual key type", v.name)))?,
        },
        _ => return Err(Error::unsupported(format!("{what} '{}' is not a tensor; Vigil's engine takes tensors in", v.name))),
    };
    Ok(Io { name: v.name.clone(), kind })
}

impl Model {
    /// Loads a model from the bytes of an `.onnx` file.
    pub fn load(bytes: &[u8]) -> Result<Model> {
        let m = proto::model(bytes)?;
        let g = m.graph.ok_or_else(|| Error::invalid("not a valid ONNX model: it has no graph"))?;
        let version = |d: &str| m.opset_import.iter().filter(|(dom, _)| dom == d || (d.is_empty() && dom == "ai.onnx")).map(|(_, v)| *v).max();
        let default = version("").unwrap_or(1);
        let ml = version(ops::ML).unwrap_or(1);

        let mut slot: HashMap<String, usize> = HashMap::new();
        let mut next = 0usize;
        let mut constants = HashMap::new();
        for t in &g.initializers {
            let s = next;
            next += 1;
            slot.insert(t.name.clone(), s);
            constants.insert(s, Value::Tensor(from_proto(t)?));
        }
        let mut inputs = Vec::new();
        let real: Vec<&proto::ValueInfo> = g.inputs.iter().filter(|v| !slot.contains_key(&v.name)).collect();
        for v in real {
            let s = next;
            next += 1;
            slot.insert(v.name.clone(), s);
            inputs.push((io(v, "input")?, s));
        }
        if inputs.is_empty() {
            return Err(Error::invalid("the model takes no inputs"));
        }

        // Compile every node first, so that every operator that cannot run is named at once.
        let mut unsupported = Vec::new();
        let mut compiled = Vec::new();
        for n in &g.nodes {
            match ops::compile(n, default, ml) {
                Ok(k) => compiled.push(Some(k)),
                Err(e) if *e.kind() == crate::error::ErrorKind::Unsupported => {
                    if !unsupported.contains(&e.message().to_owned()) {
                        unsupported.push(e.message().to_owned());
                    }
                    compiled.push(None);
                }
                Err(e) => return Err(e),
            }
        }
        if !unsupported.is_empty() {
            return Err(Error::unsupported(unsupported.join("; ")));
        }

        // Order the nodes so that each runs after what it reads (files are usually in order).
        let mut produced: std::collections::HashSet<&str> = slot.keys().map(String::as_str).collect();
        let mut pending: Vec<usize> = (0..g.nodes.len()).collect();
        let mut order = Vec::with_capacity(pending.len());
        while !pending.is_empty() {
            let before = pending.len();
            pending.retain(|&i| {
                let ready = g.nodes[i].inputs.iter().all(|x| x.is_empty() || produced.contains(x.as_str()));
                if ready {
                    order.push(i);
                    produced.extend(g.nodes[i].outputs.iter().filter(|o| !o.is_empty()).map(String::as_str));
                }
                !ready
            });
            if pending.len() == before {
                return Err(Error::invalid("the graph reads values nothing produces (or has a cycle)"));
            }
        }
        let mut steps = Vec::with_capacity(order.len());
        let mut kernels: Vec<Option<Box<dyn Kernel>>> = compiled;
        for i in order {
            let n = &g.nodes[i];
            let ins = n.inputs.iter().map(|x| if x.is_empty() { None } else { slot.get(x).copied() }).collect();
            let outs = n
                .outputs
                .iter()
                .map(|o| {
                    if o.is_empty() {
                        return None;
                    }
                    let s = *slot.entry(o.clone()).or_insert_with(|| {
                        next += 1;
                        next - 1
                    });
                    Some(s)
                })
                .collect();
            let kernel = kernels[i].take().ok_or_else(|| Error::invalid("a node was compiled twice"))?;
            steps.push(Step { kernel, inputs: ins, outputs: outs });
        }
        let outputs = g
            .outputs
            .iter()
            .map(|v| Ok((io(v, "output")?, *slot.get(&v.name).ok_or_else(|| Error::invalid(format!("nothing produces the output '{}'", v.name)))?)))
            .collect::<Result<Vec<_>>>()?;
        let imputes = imputed_inputs(&g.nodes, inputs.iter().map(|(i, _)| i.name.as_str()));
        let accepts_missing = imputes.iter().any(|b| *b);
        Ok(Model { inputs, outputs, constants, steps, slots: next, accepts_missing, imputes, opsets: m.opset_import, producer: m.producer_name })
    }

    /// Whether the input `name` may hold missing values (NaN): only if every path from it
    /// reaches an `Imputer` of NaN through nodes that only move values (`Cast`, `Concat`,
    /// `Identity`, `Reshape`, `Flatten`) before anything else reads them. Elsewhere a NaN
    /// would silently take one branch of a tree, or make a score NaN.
    pub fn accepts_missing_in(&self, name: &str) -> bool {
        self.inputs.iter().position(|(i, _)| i.name == name).and_then(|k| self.imputes.get(k).copied()).unwrap_or(false)
    }

    /// The inputs a request must give.
    pub fn inputs(&self) -> Vec<&Io> {
        self.inputs.iter().map(|(i, _)| i).collect()
    }

    /// The outputs, in the graph's order.
    pub fn outputs(&self) -> Vec<&Io> {
        self.outputs.iter().map(|(o, _)| o).collect()
    }

    /// Runs the model. Every declared input must be given once, with its element type and a
    /// shape that fits the declared one. Returns the outputs in the graph's order.
    pub fn run(&self, given: Inputs) -> Result<Vec<(String, Value)>> {
        self.evaluate(given, false).map(|(outputs, _)| outputs)
    }

    /// Runs the model as [`Model::run`] does and gives the inputs back as well (in the
    /// model's input order), for a caller that still needs them after the run (to log them)
    /// without copying them first.
    pub fn run_keeping_inputs(&self, given: Inputs) -> Result<(Vec<(String, Value)>, Inputs)> {
        self.evaluate(given, true)
    }

    fn evaluate(&self, given: Inputs, keep: bool) -> Result<(Vec<(String, Value)>, Inputs)> {
        let mut values: Vec<Option<Value>> = (0..self.slots).map(|_| None).collect();
        // The names given, by input: kept to give back with the inputs (no copy of each).
        let mut names: Vec<Option<String>> = (0..self.inputs.len()).map(|_| None).collect();
        for (name, t) in given {
            let k = self.inputs.iter().position(|(i, _)| i.name == name).ok_or_else(|| Error::input("an input the model does not take was given"))?;
            if names[k].replace(name).is_some() {
                return Err(Error::input(format!("input '{}' was given twice", self.inputs[k].0.name)));
            }
            let (io, s) = &self.inputs[k];
            if let IoKind::Tensor { elem, shape } = &io.kind {
                if t.elem_type() != *elem {
                    return Err(Error::input(format!("input '{}' takes {}, not {}", io.name, elem.oip_name(), t.elem_type().oip_name())));
                }
                if !shape.is_empty() && (shape.len() != t.shape.len() || shape.iter().zip(&t.shape).any(|(want, got)| want.is_some_and(|w| w != *got))) {
                    return Err(Error::input(format!("input '{}' takes shape {}, not {:?}", io.name, show_shape(shape), t.shape)));
                }
            }
            values[*s] = Some(Value::Tensor(t));
        }
        if let Some(k) = names.iter().position(Option::is_none) {
            return Err(Error::input(format!("input '{}' is missing", self.inputs[k].0.name)));
        }
        for step in &self.steps {
            let outs = {
                let args: Vec<Option<&Value>> = step.inputs.iter().map(|s| s.and_then(|s| self.constants.get(&s).or(values[s].as_ref()))).collect();
                step.kernel.run(&args)?
            };
            for (slot, v) in step.outputs.iter().zip(outs) {
                if let Some(s) = slot {
                    values[*s] = Some(v);
                }
            }
        }
        // Inputs are read by the steps, never changed: taken back before the outputs (cloned
        // only where a graph returns an input as an output).
        let mut kept = Vec::new();
        if keep {
            kept.reserve(self.inputs.len());
            for ((io, s), name) in self.inputs.iter().zip(names) {
                let is_output = self.outputs.iter().any(|(_, o)| o == s);
                let v = if is_output { values[*s].clone() } else { values[*s].take() };
                if let Some(Value::Tensor(t)) = v {
                    kept.push((name.unwrap_or_else(|| io.name.clone()), t));
                }
            }
        }
        let outputs = self
            .outputs
            .iter()
            .map(|(io, s)| {
                let v = match self.constants.get(s) {
                    Some(c) => c.clone(),
                    None => values[*s].take().ok_or_else(|| Error::invalid(format!("output '{}' was not produced", io.name)))?,
                };
                Ok((io.name.clone(), v))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((outputs, kept))
    }
}

/// For each input, whether its values reach an `Imputer` of NaN before anything else reads
/// them (see [`Model::accepts_missing_in`]).
fn imputed_inputs<'g>(nodes: &'g [proto::NodeProto], inputs: impl Iterator<Item = &'g str>) -> Vec<bool> {
    let mut readers: HashMap<&str, Vec<&proto::NodeProto>> = HashMap::new();
    for n in nodes {
        for i in &n.inputs {
            readers.entry(i.as_str()).or_default().push(n);
        }
    }
    // Each value is judged once (`memo`): a graph of many paths that join again is walked in
    // time proportional to its size, not to its number of paths.
    fn imputed<'g>(value: &'g str, readers: &HashMap<&'g str, Vec<&'g proto::NodeProto>>, memo: &mut HashMap<&'g str, bool>, depth: usize) -> bool {
        if let Some(known) = memo.get(value) {
            return *known;
        }
        // (A graph is acyclic; the bound only keeps a malformed one from recursing forever.)
        let Some(ns) = readers.get(value).filter(|_| depth < 1024) else { return false };
        let ok = ns.iter().all(|n| match n.op_type.as_str() {
            "Imputer" => n.attributes.iter().any(|a| a.name == "replaced_value_float" && matches!(a.value, proto::AttrValue::Float(v) if v.is_nan())),
            "Cast" | "Concat" | "Identity" | "Reshape" | "Flatten" => n.outputs.iter().filter(|o| !o.is_empty()).all(|o| imputed(o, readers, memo, depth + 1)),
            _ => false,
        });
        memo.insert(value, ok);
        ok
    }
    let mut memo = HashMap::new();
    inputs.map(|i| imputed(i, &readers, &mut memo, 0)).collect()
}

/// Named input tensors.
pub type Inputs = Vec<(String, Tensor)>;

/// A declared shape for messages: `[-1, 8]`.
pub fn show_shape(shape: &[Option<usize>]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.map_or("-1".to_owned(), |d| d.to_string())).collect();
    format!("[{}]", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, inputs: &[&str], outputs: &[&str], nan: bool) -> proto::NodeProto {
        let attributes = if op == "Imputer" { vec![proto::Attribute { name: "replaced_value_float".into(), value: proto::AttrValue::Float(if nan { f32::NAN } else { 0.0 }) }] } else { vec![] };
        proto::NodeProto { inputs: inputs.iter().map(|s| (*s).to_owned()).collect(), outputs: outputs.iter().map(|s| (*s).to_owned()).collect(), op_type: op.into(), attributes, ..Default::default() }
    }

    #[test]
    fn an_input_takes_missing_values_only_if_every_path_from_it_is_imputed_first() {
        let imputes = |nodes: &[proto::NodeProto], inputs: &[&str]| imputed_inputs(nodes, inputs.iter().copied());
        // Straight into an Imputer of NaN, or through a Cast and a Concat with another input.
        assert_eq!(imputes(&[node("Imputer", &["x"], &["xi"], true), node("Scaler", &["xi"], &["y"], false)], &["x"]), [true]);
        assert_eq!(imputes(&[node("Cast", &["a"], &["ac"], false), node("Concat", &["ac", "b"], &["ab"], false), node("Imputer", &["ab"], &["y"], true)], &["a", "b"]), [true, true]);
        // An Imputer of another value (0 replaced) does not replace NaN.
        assert_eq!(imputes(&[node("Imputer", &["x"], &["y"], false)], &["x"]), [false]);
        // One path imputed, another straight to a tree: NaN would reach the tree.
        assert_eq!(imputes(&[node("Imputer", &["x"], &["xi"], true), node("TreeEnsembleClassifier", &["x"], &["y"], false)], &["x"]), [false]);
        // Only one of two inputs imputed; an input nothing reads is not said to take NaN.
        assert_eq!(imputes(&[node("Imputer", &["a"], &["ai"], true), node("Concat", &["ai", "b"], &["ab"], false), node("LinearClassifier", &["ab"], &["y"], false)], &["a", "b", "c"]), [true, false, false]);
        // Forty layers of diamonds (2^40 paths) are judged at once, value by value.
        let mut nodes = Vec::new();
        let mut from = "x".to_owned();
        for l in 0..40 {
            let (a, b, j) = (format!("a{l}"), format!("b{l}"), format!("j{l}"));
            nodes.push(node("Identity", &[&from], &[&a], false));
            nodes.push(node("Identity", &[&from], &[&b], false));
            nodes.push(node("Concat", &[&a, &b], &[&j], false));
            from = j;
        }
        nodes.push(node("Imputer", &[&from], &["y"], true));
        assert_eq!(imputes(&nodes, &["x"]), [true]);
        // A selection of columns is not a move of the whole input: not transparent.
        assert_eq!(imputes(&[node("ArrayFeatureExtractor", &["x", "k"], &["xs"], false), node("Imputer", &["xs"], &["y"], true)], &["x"]), [false]);
    }
}
