//! Access audit for records marked as containing protected health information (HIPAA
//! § 164.312(b), audit controls): an experiment, run or registered model carrying the tag
//! `vigil.phi = true` has every read recorded in the audit trail (who, what, through which
//! route), in addition to the writes that are always recorded. A run inherits the mark from
//! its experiment; a logged model and its artifacts from their run or experiment; a version
//! from its registered model.
//!
//! Entry points (HTTP, CLI) say what they read with [`Read`]; this module decides whether it
//! is marked and writes the event. A read whose audit event cannot be written fails: PHI is
//! never served unaudited.

use crate::auth::Principal;
use crate::error::Result;
use crate::ids::ModelName;
use crate::registry::Registry;
use crate::store::Tx;
use serde_json::json;

/// The tag that marks a record as containing PHI.
pub const PHI_TAG: &str = "vigil.phi";

/// The mark is one-way: `vigil.phi` may be set to `true` (again), never to anything else, and
/// never deleted, so that nobody can switch off the access audit of data already marked.
pub fn check_mark(key: &str, value: Option<&str>) -> Result<()> {
    if key == PHI_TAG && !value.is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Err(crate::error::Error::new(
            crate::error::ErrorCode::InvalidKey,
            "the PHI mark vigil.phi can only be set to true; once set it cannot be changed or removed",
        ));
    }
    Ok(())
}

/// Whether tags carry the PHI mark (`true`, any case).
pub fn is_marked<'a>(tags: impl IntoIterator<Item = (&'a String, &'a String)>) -> bool {
    tags.into_iter().any(|(k, v)| k == PHI_TAG && v.trim().eq_ignore_ascii_case("true"))
}

/// What an entry point read.
#[derive(Debug, Clone, Copy)]
pub enum Read<'a> {
    /// An experiment by id.
    Experiment(i64),
    /// A run (its data, history or artifacts) by id.
    Run(&'a str),
    /// Several runs (a search result page, with their tags).
    Runs(&'a [crate::tracking::Run]),
    /// A registered model or any of its versions, by name.
    Model(&'a str),
    /// Several registered models (a search result page), by name.
    Models(&'a [String]),
    /// A logged model by id.
    LoggedModel(&'a str),
    /// An artifact path (`<exp>/<run>/artifacts/…` or `<exp>/models/<id>/artifacts/…`).
    Artifact(&'a str),
}

const MAX_LISTED: usize = 100;

impl Registry {
    fn experiment_marked(tx: &mut dyn Tx, id: i64) -> Result<bool> {
        Ok(tx.get_experiment(id)?.is_some_and(|e| is_marked(e.tags.iter().map(|(k, v)| (k, v)))))
    }

    fn run_marked(tx: &mut dyn Tx, run_id: &str) -> Result<bool> {
        if crate::tracking::check_run_id(run_id).is_err() {
            return Ok(false);
        }
        let Some(run) = tx.get_run(run_id, false)? else { return Ok(false) };
        let tags = tx.run_tags(run_id)?;
        Ok(is_marked(tags.iter().map(|(k, v)| (k, v))) || Self::experiment_marked(tx, run.experiment_id)?)
    }

    fn model_marked(tx: &mut dyn Tx, name: &str) -> Result<bool> {
        let Ok(name) = ModelName::parse(name) else { return Ok(false) };
        Ok(tx.get_model_by_name(&name, false)?.is_some_and(|m| is_marked(m.tags.iter())))
    }

    fn logged_model_marked(tx: &mut dyn Tx, id: &str) -> Result<bool> {
        if crate::catalog::check_logged_model_id(id).is_err() {
            return Ok(false);
        }
        let Some(lm) = tx.get_logged_model(id)? else { return Ok(false) };
        if is_marked(lm.tags.iter().map(|(k, v)| (k, v))) || Self::experiment_marked(tx, lm.experiment_id)? {
            return Ok(true);
        }
        match &lm.source_run_id {
            Some(r) => Self::run_marked(tx, r),
            None => Ok(false),
        }
    }

    /// The marked records among what was read: (entity type, ids).
    fn marked(&self, what: Read<'_>) -> Result<Option<(&'static str, Vec<String>)>> {
        self.read(|tx| {
            Ok(match what {
                Read::Experiment(id) => Self::experiment_marked(tx, id)?.then(|| ("experiment", vec![id.to_string()])),
                Read::Run(r) => Self::run_marked(tx, r)?.then(|| ("run", vec![r.to_owned()])),
                Read::Runs(runs) => {
                    // The page carries each run's tags; experiments are looked up once each.
                    let mut exps: std::collections::HashMap<i64, bool> = std::collections::HashMap::new();
                    let mut hits = Vec::new();
                    for r in runs {
                        let exp_marked = match exps.get(&r.info.experiment_id) {
                            Some(m) => *m,
                            None => {
                                let m = Self::experiment_marked(tx, r.info.experiment_id)?;
                                exps.insert(r.info.experiment_id, m);
                                m
                            }
                        };
                        if exp_marked || is_marked(r.tags.iter().map(|(k, v)| (k, v))) {
                            hits.push(r.info.run_id.clone());
                        }
                    }
                    (!hits.is_empty()).then_some(("run", hits))
                }
                Read::Model(n) => Self::model_marked(tx, n)?.then(|| ("model", vec![n.to_owned()])),
                Read::Models(names) => {
                    let mut hits = Vec::new();
                    for n in names {
                        if Self::model_marked(tx, n)? {
                            hits.push(n.clone());
                        }
                    }
                    (!hits.is_empty()).then_some(("model", hits))
                }
                Read::LoggedModel(id) => Self::logged_model_marked(tx, id)?.then(|| ("logged_model", vec![id.to_owned()])),
                Read::Artifact(path) => {
                    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
                    match segs.as_slice() {
                        [_, "models", id, ..] => Self::logged_model_marked(tx, id)?.then(|| ("logged_model", vec![(*id).to_owned()])),
                        [exp, run, ..] if crate::tracking::check_run_id(run).is_ok() => Self::run_marked(tx, run)?.then(|| ("run", vec![(*run).to_owned()])),
                        [exp, ..] => match exp.parse::<i64>() {
                            Ok(id) => Self::experiment_marked(tx, id)?.then(|| ("experiment", vec![id.to_string()])),
                            Err(_) => None,
                        },
                        [] => None,
                    }
                }
            })
        })
    }

    /// Whether a read touches records marked as containing PHI (an entry point that does not
    /// otherwise sign its caller in must do so before reading them).
    pub fn reads_phi(&self, what: Read<'_>) -> Result<bool> {
        Ok(self.marked(what)?.is_some())
    }

    /// Records a read in the audit trail when the record read is marked as containing PHI.
    /// `route` names the operation (e.g. `GET /api/2.0/mlflow/runs/get`), never its arguments.
    pub fn audit_read(&self, actor: &Principal, what: Read<'_>, route: &str) -> Result<()> {
        let Some((entity_type, ids)) = self.marked(what)? else { return Ok(()) };
        let mut e = self.event(actor.user_id().as_str(), "phi.read", entity_type, ids.first().map_or("", String::as_str), json!({
            "route": route,
            "records": ids.len(),
            "ids": ids.iter().take(MAX_LISTED).collect::<Vec<_>>(),
        }));
        if entity_type == "model" {
            e.model = ids.first().cloned();
        }
        self.write(|tx| tx.append_audit(e.clone()))
    }
}
