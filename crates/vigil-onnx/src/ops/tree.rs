//! `TreeEnsembleClassifier` and `TreeEnsembleRegressor` (ai.onnx.ml opsets 1 and 3): random
//! forests, gradient boosting and XGBoost as skl2onnx and onnxmltools write them.
//!
//! The trees are flattened at load into one node table (children resolved to indices, checked
//! to form trees), so scoring a row is a walk per tree with no lookups. Semantics follow
//! onnxruntime, which the fixtures check: float input is compared with float thresholds and
//! summed in float (double input in double), trees are summed in their order, base values
//! are added after the trees, and the two-class "binary" form (every vote for one class)
//! yields `[1 - s, s]` for non-negative weights and `[-s, s]` otherwise, before the
//! post-transform.

use super::linear::{Labels, Post, argmax};
use super::{Attrs, Kernel, arg};
use crate::error::{Error, Result};
use crate::tensor::{Data, Tensor, Value};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    mode: Mode,
    missing_true: bool,
    t32: f32,
    t64: f64,
    yes: u32,
    no: u32,
    /// Range in the vote table (leaves only).
    votes: (u32, u32),
}

/// The trees of an ensemble.
struct Forest {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// (class or target index, weight as float, weight as double), grouped per leaf.
    votes: Vec<(u32, f32, f64)>,
    /// The largest feature index any split reads.
    max_feature: usize,
}

fn need<T>(a: &Attrs<'_>, v: Option<T>, name: &str) -> Result<T> {
    v.ok_or_else(|| Error::invalid(format!("{}: attribute '{name}' is missing", a.op)))
}

fn id(v: i64, what: &str, op: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(format!("{op}: a negative or huge {what}")))
}

impl Forest {
    /// Reads the `nodes_*` attributes and the votes (`prefix` = `class` or `target`).
    fn parse(a: &Attrs<'_>, prefix: &str) -> Result<(Forest, Vec<u32>)> {
        let trees = need(a, a.ints("nodes_treeids")?, "nodes_treeids")?;
        let ids = need(a, a.ints("nodes_nodeids")?, "nodes_nodeids")?;
        let features = need(a, a.ints("nodes_featureids")?, "nodes_featureids")?;
        let modes = need(a, a.strings("nodes_modes")?, "nodes_modes")?;
        let yes = need(a, a.ints("nodes_truenodeids")?, "nodes_truenodeids")?;
        let no = need(a, a.ints("nodes_falsenodeids")?, "nodes_falsenodeids")?;
        let t64: Vec<f64> = match a.doubles("nodes_values_as_tensor")? {
            Some(v) => v,
            None => need(a, a.floats("nodes_values")?, "nodes_values")?.into_iter().map(f64::from).collect(),
        };
        let missing = a.ints("nodes_missing_value_tracks_true")?.unwrap_or_default();
        let n = trees.len();
        if [ids.len(), features.len(), modes.len(), yes.len(), no.len(), t64.len()].iter().any(|l| *l != n) || (!missing.is_empty() && missing.len() != n) || n == 0 {
            return Err(Error::invalid(format!("{}: the nodes_* attributes have different lengths", a.op)));
        }
        let mut index: HashMap<(i64, i64), u32> = HashMap::with_capacity(n);
        for (i, (t, nid)) in trees.iter().zip(&ids).enumerate() {
            if index.insert((*t, *nid), i as u32).is_some() {
                return Err(Error::invalid(format!("{}: a node id appears twice in one tree", a.op)));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut max_feature = 0usize;
        for i in 0..n {
            let mode = match modes[i].as_str() {
                "BRANCH_LEQ" => Mode::Leq,
                "BRANCH_LT" => Mode::Lt,
                "BRANCH_GTE" => Mode::Gte,
                "BRANCH_GT" => Mode::Gt,
                "BRANCH_EQ" => Mode::Eq,
                "BRANCH_NEQ" => Mode::Neq,
                "LEAF" => Mode::Leaf,
                _ => return Err(Error::unsupported(format!("{}: an unknown node mode", a.op))),
            };
            let child = |c: i64| -> Result<u32> {
                if mode == Mode::Leaf {
                    return Ok(0);
                }
                index.get(&(trees[i], c)).copied().ok_or_else(|| Error::invalid(format!("{}: a branch points at a node that does not exist", a.op)))
            };
            let feature = id(features[i], "feature index", a.op)?;
            if mode != Mode::Leaf {
                max_feature = max_feature.max(feature as usize);
            }
            nodes.push(Node {
                feature,
                mode,
                missing_true: missing.get(i).is_some_and(|m| *m != 0),
                t32: t64[i] as f32,
                t64: t64[i],
                yes: child(yes[i])?,
                no: child(no[i])?,
                votes: (0, 0),
            });
        }
        // Votes, grouped per leaf in their given order.
        let v_trees = need(a, a.ints(&format!("{prefix}_treeids"))?, &format!("{prefix}_treeids"))?;
        let v_nodes = need(a, a.ints(&format!("{prefix}_nodeids"))?, &format!("{prefix}_nodeids"))?;
        let v_ids = need(a, a.ints(&format!("{prefix}_ids"))?, &format!("{prefix}_ids"))?;
        let v_w64: Vec<f64> = match a.doubles(&format!("{prefix}_weights_as_tensor"))? {
            Some(v) => v,
            None => need(a, a.floats(&format!("{prefix}_weights"))?, &format!("{prefix}_weights"))?.into_iter().map(f64::from).collect(),
        };
        if v_nodes.len() != v_trees.len() || v_ids.len() != v_trees.len() || v_w64.len() != v_trees.len() {
            return Err(Error::invalid(format!("{}: the {prefix}_* attributes have different lengths", a.op)));
        }
        let mut per_leaf: Vec<Vec<(u32, f32, f64)>> = vec![Vec::new(); n];
        let mut class_ids = Vec::with_capacity(v_ids.len());
        for k in 0..v_trees.len() {
            let leaf = *index.get(&(v_trees[k], v_nodes[k])).ok_or_else(|| Error::invalid(format!("{}: a vote names a node that does not exist", a.op)))?;
            if nodes[leaf as usize].mode != Mode::Leaf {
                return Err(Error::invalid(format!("{}: a vote is attached to a branch, not a leaf", a.op)));
            }
            let cid = id(v_ids[k], "class or target id", a.op)?;
            class_ids.push(cid);
            per_leaf[leaf as usize].push((cid, v_w64[k] as f32, v_w64[k]));
        }
        let mut votes = Vec::with_capacity(v_trees.len());
        for (i, v) in per_leaf.into_iter().enumerate() {
            let start = votes.len() as u32;
            votes.extend(v);
            nodes[i].votes = (start, votes.len() as u32);
        }
        // Roots: per tree (in order of first appearance), the node no branch points at.
        let mut is_child = vec![false; n];
        for nd in &nodes {
            if nd.mode != Mode::Leaf {
                is_child[nd.yes as usize] = true;
                is_child[nd.no as usize] = true;
            }
        }
        let mut roots = Vec::new();
        let mut seen: HashMap<i64, ()> = HashMap::new();
        for i in 0..n {
            if seen.contains_key(&trees[i]) {
                continue;
            }
            let root = (i..n).find(|j| trees[*j] == trees[i] && !is_child[*j]).ok_or_else(|| Error::invalid(format!("{}: a tree has no root", a.op)))?;
            seen.insert(trees[i], ());
            roots.push(root as u32);
        }
        let forest = Forest { nodes, roots, votes, max_feature };
        forest.check_acyclic(a.op)?;
        Ok((forest, class_ids))
    }

    /// Every walk from a root ends at a leaf: no branch leads back up (a cycle would never end).
    fn check_acyclic(&self, op: &str) -> Result<()> {
        let mut state = vec![0u8; self.nodes.len()]; // 0 new, 1 on the path, 2 done
        for &r in &self.roots {
            let mut stack = vec![(r, false)];
            while let Some((i, leaving)) = stack.pop() {
                let i = i as usize;
                if leaving {
                    state[i] = 2;
                    continue;
                }
                match state[i] {
                    1 => return Err(Error::invalid(format!("{op}: a tree's branches form a cycle"))),
                    2 => continue,
                    _ => {}
                }
                state[i] = 1;
                stack.push((i as u32, true));
                let nd = self.nodes[i];
                if nd.mode != Mode::Leaf {
                    for c in [nd.yes, nd.no] {
                        if state[c as usize] == 1 {
                            return Err(Error::invalid(format!("{op}: a tree's branches form a cycle")));
                        }
                        stack.push((c, false));
                    }
                }
            }
        }
        Ok(())
    }

    /// The leaf a row reaches from a root, comparing in the input's precision (`thr` picks
    /// the node's threshold as f32 or f64).
    #[inline]
    fn leaf<T: Copy + PartialOrd>(&self, root: u32, x: &[T], thr: impl Fn(&Node) -> T, is_nan: impl Fn(T) -> bool) -> &Node {
        let mut nd = &self.nodes[root as usize];
        while nd.mode != Mode::Leaf {
            let v = x[nd.feature as usize];
            let t = thr(nd);
            let go = if is_nan(v) && nd.missing_true {
                true
            } else {
                match nd.mode {
                    Mode::Leq => v <= t,
                    Mode::Lt => v < t,
                    Mode::Gte => v >= t,
                    Mode::Gt => v > t,
                    Mode::Eq => v == t,
                    Mode::Neq => v != t,
                    Mode::Leaf => true,
                }
            };
            nd = &self.nodes[if go { nd.yes } else { nd.no } as usize];
        }
        nd
    }

    /// Per row, the summed votes of every tree (`k` sums per row, in float or in double as the
    /// input), handing each row's sums to `finish`.
    fn sums(&self, op: &str, x: &Tensor, k: usize, mut finish: impl FnMut(&mut [f64], usize)) -> Result<usize> {
        let (n, c) = x.rows_cols();
        if self.max_feature >= c && n > 0 {
            return Err(Error::input(format!("{op}: the model reads feature {}, but rows have {c}", self.max_feature + 1)));
        }
        let mut acc = vec![0f64; k];
        match &x.data {
            Data::F64(v) => {
                for r in 0..n {
                    let row = &v[r * c..(r + 1) * c];
                    acc.iter_mut().for_each(|a| *a = 0.0);
                    for &root in &self.roots {
                        let nd = self.leaf(root, row, |n| n.t64, f64::is_nan);
                        for &(cid, _, w) in &self.votes[nd.votes.0 as usize..nd.votes.1 as usize] {
                            if let Some(a) = acc.get_mut(cid as usize) {
                                *a += w;
                            }
                        }
                    }
                    finish(&mut acc, r);
                }
            }
            _ => {
                let xs = x.to_f32(op)?;
                let mut acc32 = vec![0f32; k];
                for r in 0..n {
                    let row = &xs[r * c..(r + 1) * c];
                    acc32.iter_mut().for_each(|a| *a = 0.0);
                    for &root in &self.roots {
                        let nd = self.leaf(root, row, |n| n.t32, f32::is_nan);
                        for &(cid, w, _) in &self.votes[nd.votes.0 as usize..nd.votes.1 as usize] {
                            if let Some(a) = acc32.get_mut(cid as usize) {
                                *a += w;
                            }
                        }
                    }
                    for (a, s) in acc.iter_mut().zip(&acc32) {
                        *a = f64::from(*s);
                    }
                    finish(&mut acc, r);
                }
            }
        }
        Ok(n)
    }
}

struct Classifier {
    forest: Forest,
    labels: Labels,
    base: Vec<f64>,
    post: Post,
    /// The two-class form with every vote for one class: (that class, all weights ≥ 0).
    binary: Option<(usize, bool)>,
    double: bool,
}

pub(crate) fn classifier(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let (forest, class_ids) = Forest::parse(a, "class")?;
    let labels = Labels::parse(a, "classlabels_int64s", "classlabels_strings")?;
    let k = labels.len();
    if class_ids.iter().any(|c| *c as usize >= k.max(1)) && k > 1 {
        return Err(Error::invalid("TreeEnsembleClassifier: a vote names a class that is not listed"));
    }
    let base = match a.doubles("base_values_as_tensor")? {
        Some(v) => v,
        None => a.floats("base_values")?.unwrap_or_default().into_iter().map(f64::from).collect(),
    };
    let one_class = class_ids.first().copied().filter(|c| class_ids.iter().all(|x| x == c));
    let binary = match (k, one_class) {
        (2, Some(c)) => Some((c as usize, forest.votes.iter().all(|v| v.2 >= 0.0))),
        _ => None,
    };
    if binary.is_none() && !base.is_empty() && base.len() != k {
        return Err(Error::invalid("TreeEnsembleClassifier: base_values must give one value per class"));
    }
    let double = a.has("nodes_values_as_tensor") || a.has("class_weights_as_tensor");
    Ok(Box::new(Classifier { forest, labels, base, post: Post::parse(a)?, binary, double }))
}

impl Kernel for Classifier {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("TreeEnsembleClassifier", inputs, 0)?;
        let k = self.labels.len().max(2);
        let mut scores: Vec<f32> = Vec::new();
        let mut idx = Vec::new();
        let mut row = vec![0f32; k];
        let single = self.double || matches!(x.data, Data::F64(_));
        self.forest.sums("TreeEnsembleClassifier", x, k, |acc, _| {
            match self.binary {
                Some((c, positive)) => {
                    let base = self.base.get(c).or(self.base.first()).copied().unwrap_or(0.0);
                    let s = if single { (acc[c] + base) as f32 } else { acc[c] as f32 + base as f32 };
                    let (pair, winner) = if positive { ([1.0 - s, s], usize::from(s > 0.5)) } else { ([-s, s], usize::from(s > 0.0)) };
                    row[..2].copy_from_slice(&pair);
                    self.post.apply(&mut row[..2]);
                    idx.push(winner);
                }
                None => {
                    for (j, r) in row.iter_mut().enumerate() {
                        let base = self.base.get(j).copied().unwrap_or(0.0);
                        *r = if single { (acc[j] + base) as f32 } else { acc[j] as f32 + base as f32 };
                    }
                    self.post.apply(&mut row);
                    idx.push(argmax(&row));
                }
            }
            scores.extend_from_slice(&row);
        })?;
        let n = idx.len();
        Ok(vec![Value::Tensor(self.labels.pick(&idx)), Value::Tensor(Tensor { shape: vec![n, k], data: Data::F32(scores) })])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

struct Regressor {
    forest: Forest,
    targets: usize,
    base: Vec<f64>,
    post: Post,
    aggregate: Aggregate,
}

pub(crate) fn regressor(a: &Attrs<'_>) -> Result<Box<dyn Kernel>> {
    let (forest, target_ids) = Forest::parse(a, "target")?;
    let targets = usize::try_from(a.int("n_targets", 1)?).ok().filter(|t| *t > 0).ok_or_else(|| Error::invalid("TreeEnsembleRegressor: n_targets must be positive"))?;
    if target_ids.iter().any(|t| *t as usize >= targets) {
        return Err(Error::invalid("TreeEnsembleRegressor: a vote names a target beyond n_targets"));
    }
    let aggregate = match a.string("aggregate_function", "SUM")?.as_str() {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        _ => return Err(Error::unsupported("TreeEnsembleRegressor: this aggregate_function is not supported")),
    };
    if aggregate != Aggregate::Sum && aggregate != Aggregate::Average {
        // MIN and MAX need per-tree values, not sums.
        return Err(Error::unsupported("TreeEnsembleRegressor: aggregate_function MIN and MAX are not supported by Vigil's engine"));
    }
    let base = match a.doubles("base_values_as_tensor")? {
        Some(v) => v,
        None => a.floats("base_values")?.unwrap_or_default().into_iter().map(f64::from).collect(),
    };
    if !base.is_empty() && base.len() != targets {
        return Err(Error::invalid("TreeEnsembleRegressor: base_values must give one value per target"));
    }
    Ok(Box::new(Regressor { forest, targets, base, post: Post::parse(a)?, aggregate }))
}

impl Kernel for Regressor {
    fn run(&self, inputs: &[Option<&Value>]) -> Result<Vec<Value>> {
        let x = arg("TreeEnsembleRegressor", inputs, 0)?;
        let mut out: Vec<f32> = Vec::new();
        let trees = self.forest.roots.len().max(1) as f64;
        let mut row = vec![0f32; self.targets];
        let double = matches!(x.data, Data::F64(_));
        self.forest.sums("TreeEnsembleRegressor", x, self.targets, |acc, _| {
            for (j, r) in row.iter_mut().enumerate() {
                let base = self.base.get(j).copied().unwrap_or(0.0);
                let v = match self.aggregate {
                    Aggregate::Average => acc[j] / trees,
                    _ => acc[j],
                };
                *r = if double { (v + base) as f32 } else { v as f32 + base as f32 };
            }
            self.post.apply(&mut row);
            out.extend_from_slice(&row);
        })?;
        let n = out.len() / self.targets;
        Ok(vec![Value::Tensor(Tensor { shape: vec![n, self.targets], data: Data::F32(out) })])
    }
}
