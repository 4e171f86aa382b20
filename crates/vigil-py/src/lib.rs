//! `vigil._vigil`: the compiled half of the Python package. Every function is a thin call into
//! the same use cases the CLI and the server call (`vigil-core`), returning the same JSON
//! documents (`vigil-api`) as text, so the Python layer builds one set of objects for the
//! embedded and the remote mode. Errors carry Vigil's stable code; the Python layer maps them
//! to exception classes. Column data comes in as numpy arrays (read in place), Arrow arrays
//! through the PyCapsule interface, or Python sequences; each is copied once, into the
//! column the statistics sort and store.

use numpy::{PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods};
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use vigil_core::approval::Meaning;
use vigil_core::auth::{Password, Principal, Role};
use vigil_core::ids::{ModelName, SystemClock, UserId, UuidV7Ids};
use vigil_core::model::{Stage, parse_reference};
use vigil_core::monitor::{Batch, Column, Window};
use vigil_core::phi::Read;
use vigil_core::registry::Registry;
use vigil_core::{Error, ErrorCode};

// As in the CLI (and as polars does in its Python module): the module's own allocations go
// through mimalloc, which keeps freed memory for reuse. A drift check allocates and frees a
// sorted copy of every column; with the system allocator each is returned to the kernel and
// faulted in again. Python's allocations are untouched.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pyo3::create_exception!(_vigil, VigilError, PyException, "A Vigil error: args are (code, message, kind).");

fn err(e: Error) -> PyErr {
    let kind = match e.code().kind() {
        vigil_core::ErrorKind::InvalidInput => "invalid_input",
        vigil_core::ErrorKind::Unauthenticated => "unauthenticated",
        vigil_core::ErrorKind::Denied => "denied",
        vigil_core::ErrorKind::NotFound => "not_found",
        vigil_core::ErrorKind::Conflict => "conflict",
        vigil_core::ErrorKind::Internal => "internal",
    };
    VigilError::new_err((e.code().as_str(), e.message().to_owned(), kind))
}

fn invalid(code: ErrorCode, m: impl Into<String>) -> PyErr {
    err(Error::new(code, m.into()))
}

fn text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(s: &str) -> PyResult<Value> {
    serde_json::from_str(s).map_err(|_| invalid(ErrorCode::InvalidManifest, "not valid JSON"))
}

/// A signed-in user of an embedded store (authenticated once; signatures re-authenticate).
#[pyclass(frozen, module = "vigil._vigil")]
struct Session {
    principal: Principal,
}

#[pymethods]
impl Session {
    /// The user id.
    #[getter]
    fn user(&self) -> String {
        self.principal.user_id().to_string()
    }
}

/// An embedded store: SQLite in a data directory, or PostgreSQL with a signing-key file.
#[pyclass(frozen, module = "vigil._vigil")]
struct Store {
    registry: Arc<Registry>,
    /// The data directory (artifacts in Vigil's own store are re-hashed from it).
    data_dir: Option<PathBuf>,
}

/// The route named in `phi.read` events for an embedded read: the Python call, prefixed.
fn python_route(call: &str) -> String {
    let call: String = call.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_')).take(80).collect();
    format!("python: {call}")
}

fn user_id(s: &str) -> PyResult<UserId> {
    UserId::parse(s).map_err(err)
}

/// Releases the GIL around a use case (they read and write the database).
fn run<T: Send>(py: Python<'_>, f: impl FnOnce() -> vigil_core::Result<T> + Send) -> PyResult<T> {
    py.detach(f).map_err(err)
}

#[pymethods]
impl Store {
    /// Opens (creating if needed) the store in `data_dir`, or on PostgreSQL at `database_url`
    /// with the signing key at `signing_key` (created if missing).
    #[new]
    #[pyo3(signature = (data_dir=None, database_url=None, signing_key=None))]
    fn new(py: Python<'_>, data_dir: Option<PathBuf>, database_url: Option<String>, signing_key: Option<PathBuf>) -> PyResult<Store> {
        let dir = data_dir.clone();
        let (location, key_path) = match (data_dir, database_url) {
            (_, Some(url)) => {
                let key = signing_key.ok_or_else(|| invalid(ErrorCode::InvalidText, "a PostgreSQL store needs signing_key (the same key file on every replica)"))?;
                (vigil_store::Location::Postgres { url, schema: None }, key)
            }
            (Some(dir), None) => {
                let key = signing_key.unwrap_or_else(|| vigil_store::keyfile::default_path(&dir));
                (vigil_store::Location::DataDir(dir), key)
            }
            (None, None) => return Err(invalid(ErrorCode::InvalidText, "give data_dir or database_url")),
        };
        let registry = run(py, move || {
            let key = vigil_store::keyfile::load_or_create(&key_path)?;
            let store = vigil_store::open(&location)?;
            Ok(Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(key)))
        })?;
        Ok(Store { registry: Arc::new(registry), data_dir: dir })
    }

    /// Whether an administrator exists.
    fn is_initialized(&self, py: Python<'_>) -> PyResult<bool> {
        let r = self.registry.clone();
        run(py, move || r.is_initialized())
    }

    /// Creates the first administrator.
    fn init_admin(&self, py: Python<'_>, user: &str, name: &str, password: &str) -> PyResult<String> {
        let (r, id, name, pw) = (self.registry.clone(), user_id(user)?, name.to_owned(), Password::new(password));
        let u = run(py, move || r.init_admin(&id, &name, &pw))?;
        Ok(text(&vigil_api::user(&u)))
    }

    /// Signs a user in (Argon2id; failures are audited and count towards lockout).
    fn login(&self, py: Python<'_>, user: &str, password: &str) -> PyResult<Session> {
        let (r, id, pw) = (self.registry.clone(), user_id(user)?, Password::new(password));
        let principal = run(py, move || r.authenticate(&id, &pw))?;
        Ok(Session { principal })
    }

    /// Adds a user (administrators only).
    fn add_user(&self, py: Python<'_>, session: &Session, user: &str, name: &str, role: &str, password: &str) -> PyResult<String> {
        let (r, p, id, name, role, pw) = (self.registry.clone(), session.principal.clone(), user_id(user)?, name.to_owned(), Role::parse(role).map_err(err)?, Password::new(password));
        let u = run(py, move || r.add_user(&p, &id, &name, role, &pw))?;
        Ok(text(&vigil_api::user(&u)))
    }

    /// Registers a version from a manifest (the native API's JSON body).
    fn register(&self, py: Python<'_>, session: &Session, manifest: &str) -> PyResult<String> {
        let new = vigil_api::manifest::Manifest::from_json(&parse_json(manifest)?).and_then(|m| m.into_new_version()).map_err(err)?;
        let (r, p) = (self.registry.clone(), session.principal.clone());
        let v = run(py, move || r.register_model(&p, new))?;
        Ok(text(&vigil_api::version(&v)))
    }

    /// A version by its id (`mv_…`) or by `NAME@VERSION`, read by a signed-in user (reads of
    /// models marked `vigil.phi` are audited, as the server's are).
    /// `route` names the Python call in `phi.read` events (prefixed `python: `).
    fn version(&self, py: Python<'_>, session: &Session, reference: &str, route: &str) -> PyResult<String> {
        let (r, p, reference, route) = (self.registry.clone(), session.principal.clone(), reference.to_owned(), python_route(route));
        let v = run(py, move || {
            let v = if reference.contains('@') {
                let (n, v) = parse_reference(&reference)?;
                r.get_version(&n, &v)?
            } else {
                r.get_version_by_id(&reference)?
            };
            r.audit_read(&p, Read::Model(v.model_name.as_str()), &route)?;
            Ok(v)
        })?;
        Ok(text(&vigil_api::version(&v)))
    }

    /// Every model with its versions (reads of marked models are audited).
    fn models(&self, py: Python<'_>, session: &Session) -> PyResult<String> {
        let (r, p) = (self.registry.clone(), session.principal.clone());
        let all = run(py, move || {
            let all = r.list_models()?;
            let names: Vec<String> = all.iter().map(|(m, _)| m.name.to_string()).collect();
            r.audit_read(&p, Read::Models(&names), "python: ModelRegistry.list_models")?;
            Ok(all)
        })?;
        Ok(text(&json!(all.iter().map(|(m, vs)| {
            let mut j = vigil_api::model(m);
            j["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
            j
        }).collect::<Vec<_>>())))
    }

    /// One model with its versions, by name (the read is audited when the model is marked).
    fn model(&self, py: Python<'_>, session: &Session, name: &str, route: &str) -> PyResult<String> {
        let (r, p, name, route) = (self.registry.clone(), session.principal.clone(), ModelName::parse(name).map_err(err)?, python_route(route));
        let (m, vs) = run(py, move || {
            let m = r.get_model(&name)?;
            let vs = r.list_models()?.into_iter().find(|(x, _)| x.id == m.id).map(|(_, v)| v).unwrap_or_default();
            r.audit_read(&p, Read::Model(name.as_str()), &route)?;
            Ok((m, vs))
        })?;
        let mut j = vigil_api::model(&m);
        j["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
        Ok(text(&j))
    }

    /// Opens a promotion request for a version (by id).
    fn request_promotion(&self, py: Python<'_>, session: &Session, version_id: &str, to_stage: &str, justification: &str) -> PyResult<String> {
        let (r, p, id, stage, j) = (self.registry.clone(), session.principal.clone(), version_id.to_owned(), Stage::parse(to_stage).map_err(err)?, justification.to_owned());
        let req = run(py, move || r.request_promotion(&p, &id, stage, &j))?;
        Ok(text(&vigil_api::request(&req)))
    }

    /// Signs a request (approve or reject), re-authenticating the signer (21 CFR Part 11).
    #[pyo3(signature = (signer, password, request_id, approve, meaning, comment))]
    #[allow(clippy::too_many_arguments)]
    fn sign(&self, py: Python<'_>, signer: &str, password: &str, request_id: &str, approve: bool, meaning: &str, comment: &str) -> PyResult<String> {
        let (r, id, pw, rid, meaning, c) = (self.registry.clone(), user_id(signer)?, Password::new(password), request_id.to_owned(), Meaning::parse(meaning).map_err(err)?, comment.to_owned());
        let out = run(py, move || if approve { r.approve_promotion(&id, &pw, &rid, meaning, &c) } else { r.reject_promotion(&id, &pw, &rid, meaning, &c) })?;
        let mut j = vigil_api::request(&out.request);
        j["signature"] = vigil_api::signature(&out.signature);
        j["tally"] = vigil_api::tally(&out.tally);
        Ok(text(&j))
    }

    /// A request with its signatures and tally: for any signed-in user (the session is the
    /// proof; requests hold no patient data, so the read is not PHI-audited, as on the server).
    fn request(&self, py: Python<'_>, session: &Session, request_id: &str) -> PyResult<String> {
        let _signed_in = &session.principal;
        let (r, id) = (self.registry.clone(), request_id.to_owned());
        let d = run(py, move || r.get_request(&id))?;
        Ok(text(&vigil_api::request_detail(&d)))
    }

    /// Lineage of `NAME@VERSION` (audited for marked models).
    fn lineage(&self, py: Python<'_>, session: &Session, reference: &str) -> PyResult<String> {
        let (r, p, (n, v)) = (self.registry.clone(), session.principal.clone(), parse_reference(reference).map_err(err)?);
        let l = run(py, move || {
            let l = r.lineage(&n, &v)?;
            r.audit_read(&p, Read::Model(n.as_str()), "python: ModelRegistry.get_lineage")?;
            Ok(l)
        })?;
        Ok(text(&vigil_api::lineage(&l)))
    }

    /// Verifies the audit chain, every signature seal and every record.
    fn verify_audit(&self, py: Python<'_>) -> PyResult<String> {
        let r = self.registry.clone();
        let (chain, sigs, records) = run(py, move || Ok((r.verify_audit()?, r.verify_signatures()?, r.verify_records()?)))?;
        Ok(text(&vigil_api::chain_report(&chain, &sigs, &records, self.registry.key_id())))
    }

    /// A version's stored drift configuration (the built-in one if none was set).
    fn drift_config(&self, py: Python<'_>, session: &Session, version_id: &str) -> PyResult<String> {
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        let c = run(py, move || {
            let c = r.drift_config(&id)?;
            r.audit_read(&p, Read::Model(r.get_version_by_id(&id)?.model_name.as_str()), "python: drift configuration")?;
            Ok(c)
        })?;
        Ok(text(&vigil_core::monitor::config_to_json(&c)))
    }

    /// Sets a version's drift configuration (the JSON of `vigil drift config`).
    fn set_drift_config(&self, py: Python<'_>, session: &Session, version_id: &str, config: &str) -> PyResult<()> {
        let cfg = vigil_core::monitor::config_from_json(&parse_json(config)?).map_err(err)?;
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        run(py, move || r.set_drift_config(&p, &id, &cfg))
    }

    /// Sets the drift baseline of a version from feature columns.
    #[pyo3(signature = (session, version_id, features, predictions=None))]
    fn set_baseline(&self, py: Python<'_>, session: &Session, version_id: &str, features: &Bound<'_, PyDict>, predictions: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let batch = batch(features, predictions)?;
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        let b = run(py, move || r.set_baseline(&p, &id, &batch))?;
        Ok(text(&json!({"baseline_id": b.id, "version": b.baseline_version, "rows": b.rows})))
    }

    /// Adds production samples.
    #[pyo3(signature = (session, version_id, features, predictions=None))]
    fn add_samples(&self, py: Python<'_>, session: &Session, version_id: &str, features: &Bound<'_, PyDict>, predictions: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
        let batch = batch(features, predictions)?;
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        let b = run(py, move || r.add_samples(&p, &id, &batch))?;
        Ok(text(&json!({"batch_id": b.id, "rows": b.rows})))
    }

    /// Checks the samples since the newest baseline (or the newest `last_rows` rows).
    #[pyo3(signature = (session, version_id, last_rows=None))]
    fn detect_drift(&self, py: Python<'_>, session: &Session, version_id: &str, last_rows: Option<i64>) -> PyResult<String> {
        let window = match last_rows {
            Some(n) if n > 0 => Window::LastRows(n),
            _ => Window::SinceBaseline,
        };
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        let c = run(py, move || {
            let c = r.detect_drift(&p, &id, window)?;
            r.audit_read(&p, Read::Model(r.get_version_by_id(&id)?.model_name.as_str()), "python: DriftDetector.detect_drift")?;
            Ok(c)
        })?;
        Ok(text(&vigil_core::monitor::report_json(&c)))
    }

    /// Validates a version on a holdout: binary `labels` (or numeric `targets` for a
    /// regressor), the version's `scores`, optionally the Production version's scores, and
    /// sensitive attribute columns. Returns the stored report (with `report_id`).
    #[pyo3(signature = (session, version_id, scores, labels=None, targets=None, champion_scores=None, sensitive=None, threshold=0.5))]
    #[allow(clippy::too_many_arguments)]
    fn validate(
        &self,
        py: Python<'_>,
        session: &Session,
        version_id: &str,
        scores: &Bound<'_, PyAny>,
        labels: Option<&Bound<'_, PyAny>>,
        targets: Option<&Bound<'_, PyAny>>,
        champion_scores: Option<&Bound<'_, PyAny>>,
        sensitive: Option<&Bound<'_, PyDict>>,
        threshold: f64,
    ) -> PyResult<String> {
        let numbers = |name: &str, v: &Bound<'_, PyAny>| -> PyResult<Vec<f64>> {
            match column(name, v)? {
                Column::Numeric(x) => Ok(x),
                Column::Categorical { .. } => Err(PyTypeError::new_err(format!("column {name:?} must be numeric"))),
            }
        };
        // Labels and group names go through the same column reader as features (and as the
        // remote mode's upload), so lists, numpy, pandas and Arrow mean the same everywhere.
        let labels = match labels {
            None => Vec::new(),
            Some(l) => binary_labels(l)?,
        };
        let data = vigil_core::validate::ValidationData {
            labels,
            scores: numbers("scores", scores)?,
            champion_scores: champion_scores.map(|c| numbers("champion_scores", c)).transpose()?,
            sensitive: match sensitive {
                None => Vec::new(),
                Some(d) => d
                    .iter()
                    .map(|(k, v)| {
                        let name: String = k.extract().map_err(|_| PyTypeError::new_err("sensitive attribute names must be strings"))?;
                        let vals = vigil_data::column_strings(&column(&name, &v)?).into_iter().map(|x| x.unwrap_or_else(|| "(missing)".to_owned())).collect();
                        Ok((name, vals))
                    })
                    .collect::<PyResult<Vec<_>>>()?,
            },
            threshold,
            targets: targets.map(|t| numbers("targets", t)).transpose()?,
        };
        let (r, p, id, dir) = (self.registry.clone(), session.principal.clone(), version_id.to_owned(), self.data_dir.clone());
        let rec = run(py, move || {
            // The artifact's bytes re-hashed where they are readable, as the CLI does.
            let uri = r.get_version_by_id(&id)?.content.artifact_uri;
            let check = vigil_store::artifacts::local_artifact_check(dir.as_deref(), &uri);
            r.validate(&p, &id, &data, check)
        })?;
        let mut report = parse_json(&rec.report)?;
        report["report_id"] = json!(rec.id);
        Ok(text(&report))
    }

    /// Sets a validation policy (`scope` is `model` or `model_type`) from its JSON form.
    fn set_validation_policy(&self, py: Python<'_>, session: &Session, scope: &str, target: &str, policy: &str, reason: &str) -> PyResult<String> {
        use vigil_core::validate::PolicyScope;
        let sc = match scope {
            "model" => PolicyScope::Model(ModelName::parse(target).map_err(err)?),
            "model_type" => PolicyScope::ModelType(vigil_core::model::ModelType::parse(target).map_err(err)?),
            _ => return Err(invalid(ErrorCode::InvalidPolicy, "the scope is model or model_type")),
        };
        let (r, p, policy, reason, scope, target) = (self.registry.clone(), session.principal.clone(), parse_json(policy)?, reason.to_owned(), scope.to_owned(), target.to_owned());
        let resolved = run(py, move || r.set_validation_policy_json(&p, &sc, &policy, &reason))?;
        Ok(text(&vigil_api::validation_policy(&scope, &target, &resolved)))
    }

    /// The model card of a version (Vigil's JSON; render with `vigil card` for other formats).
    fn card(&self, py: Python<'_>, session: &Session, version_id: &str) -> PyResult<String> {
        let (r, p, id) = (self.registry.clone(), session.principal.clone(), version_id.to_owned());
        let (v, rep) = run(py, move || {
            let v = r.get_version_by_id(&id)?;
            let rep = r.card_evidence(&id)?;
            r.audit_read(&p, Read::Model(v.model_name.as_str()), "python: ModelRegistry.model_card")?;
            Ok((v, rep))
        })?;
        Ok(text(&vigil_api::card::document(&v, rep.as_ref())))
    }

    /// Audit events, oldest first, matching a query (the server's `GET /api/v1/audit`
    /// parameters as a JSON object: model, version, actor, action, outcome, since, until,
    /// limit, after_seq).
    fn audit_trail(&self, py: Python<'_>, session: &Session, query: &str) -> PyResult<String> {
        let q = parse_json(query)?;
        let s = |k: &str| -> PyResult<Option<String>> {
            match q.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(v)) => Ok(Some(v.clone())),
                Some(_) => Err(invalid(ErrorCode::InvalidText, format!("{k} must be text"))),
            }
        };
        let n = |k: &str| -> PyResult<Option<i64>> {
            match q.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| invalid(ErrorCode::InvalidText, format!("{k} must be an integer"))),
            }
        };
        let time = |k: &str| -> PyResult<Option<vigil_core::ids::Timestamp>> { s(k)?.as_deref().map(vigil_core::ids::Timestamp::parse).transpose().map_err(err) };
        let query = vigil_core::store::AuditQuery {
            model: s("model")?,
            version: s("version")?,
            actor: s("actor")?,
            action: s("action")?,
            outcome: s("outcome")?,
            since: time("since")?,
            until: time("until")?,
            limit: Some(n("limit")?.unwrap_or(1000).clamp(1, 10_000) as u32),
            after_seq: n("after_seq")?,
        };
        let (r, p) = (self.registry.clone(), session.principal.clone());
        let events = run(py, move || r.read_audit(&p, &query))?;
        Ok(text(&json!({"events": events.iter().map(vigil_api::audit_event).collect::<Vec<_>>()})))
    }
}

/// One column from Arrow chunks (received through the Arrow PyCapsule interface): integers
/// and floats as numbers, strings, dictionaries and booleans as categories, nulls as missing.
fn arrow_column(name: &str, chunks: &[arrow::array::ArrayRef]) -> PyResult<Column> {
    use arrow::array::{Array, Float64Array, StringArray};
    use arrow::datatypes::DataType as T;
    let bad = |t: &T| PyTypeError::new_err(format!("column {name:?}: Arrow type {t} is not supported; use numbers or strings"));
    let Some(first) = chunks.first() else { return Ok(Column::Numeric(Vec::new())) };
    let numeric = match first.data_type() {
        T::Int8 | T::Int16 | T::Int32 | T::Int64 | T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 | T::Float16 | T::Float32 | T::Float64 => true,
        T::Utf8 | T::LargeUtf8 | T::Utf8View | T::Boolean => false,
        T::Dictionary(_, v) if matches!(**v, T::Utf8 | T::LargeUtf8) => false,
        t => return Err(bad(t)),
    };
    let target = if numeric { T::Float64 } else { T::Utf8 };
    let cast = |c: &arrow::array::ArrayRef| arrow::compute::cast(c, &target).map_err(|_| bad(c.data_type()));
    if numeric {
        let mut out = Vec::with_capacity(chunks.iter().map(|c| c.len()).sum());
        for c in chunks {
            let c = cast(c)?;
            let f = c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| bad(c.data_type()))?;
            if f.null_count() == 0 {
                out.extend_from_slice(f.values());
            } else {
                out.extend(f.iter().map(|x| x.unwrap_or(f64::NAN)));
            }
        }
        return Ok(Column::Numeric(out));
    }
    let mut vals: Vec<Option<String>> = Vec::new();
    for c in chunks {
        let c = cast(c)?;
        let s = c.as_any().downcast_ref::<StringArray>().ok_or_else(|| bad(c.data_type()))?;
        vals.extend(s.iter().map(|x| x.map(str::to_owned)));
    }
    Ok(Column::categorical(vals))
}

/// One column from numpy (float64 or any other numeric dtype is refused unless float64/int64;
/// strings and objects are categories) or from a Python sequence.
fn column(name: &str, v: &Bound<'_, PyAny>) -> PyResult<Column> {
    // Arrow objects (pyarrow, polars, arro3, …) through the PyCapsule interface.
    if v.hasattr("__arrow_c_stream__")? && !v.hasattr("__array_interface__")? {
        let chunked: pyo3_arrow::PyChunkedArray = v.extract()?;
        return arrow_column(name, chunked.chunks());
    }
    if v.hasattr("__arrow_c_array__")? && !v.hasattr("__array_interface__")? {
        let array: pyo3_arrow::PyArray = v.extract()?;
        return arrow_column(name, std::slice::from_ref(array.array()));
    }
    if let Ok(a) = v.cast::<numpy::PyArray1<f64>>() {
        let ro: PyReadonlyArray1<f64> = a.readonly();
        // A contiguous array is read in place; a strided one through its view.
        return Ok(match ro.as_slice() {
            Ok(s) => Column::Numeric(s.to_vec()),
            Err(_) => Column::Numeric(ro.as_array().iter().copied().collect()),
        });
    }
    if let Ok(a) = v.cast::<numpy::PyArray1<i64>>() {
        return Ok(Column::Numeric(a.readonly().as_array().iter().map(|x| *x as f64).collect()));
    }
    if let Ok(a) = v.cast::<numpy::PyArray1<bool>>() {
        // Booleans are categories, as Arrow and Parquet booleans are.
        let codes = a.readonly().as_array().iter().map(|&b| u32::from(b)).collect();
        return Ok(Column::Categorical { dictionary: vec!["false".into(), "true".into()], codes });
    }
    if let Ok(a) = v.cast::<numpy::PyUntypedArray>() {
        let dtype = a.dtype().to_string();
        if a.ndim() != 1 {
            return Err(PyTypeError::new_err(format!("column {name:?}: a 1-dimensional array is needed")));
        }
        if !dtype.starts_with("<U") && dtype != "object" {
            return Err(PyTypeError::new_err(format!("column {name:?}: dtype {dtype} is not supported; use float64, int64, strings or objects")));
        }
        let items: Vec<Bound<'_, PyAny>> = v.try_iter()?.collect::<PyResult<_>>()?;
        return categorical_or_numeric(name, &items);
    }
    let items: Vec<Bound<'_, PyAny>> = v.try_iter().map_err(|_| PyTypeError::new_err(format!("column {name:?}: expected a sequence or a numpy array")))?.collect::<PyResult<_>>()?;
    categorical_or_numeric(name, &items)
}

fn categorical_or_numeric(name: &str, items: &[Bound<'_, PyAny>]) -> PyResult<Column> {
    // Numbers (None is missing) make a numeric column; strings and booleans (None missing) a
    // categorical one.
    let is_bool = |x: &Bound<'_, PyAny>| x.is_instance_of::<pyo3::types::PyBool>() || x.get_type().name().is_ok_and(|n| n == "bool" || n == "bool_");
    let numeric = items.iter().all(|x| x.is_none() || (x.extract::<f64>().is_ok() && !x.is_instance_of::<pyo3::types::PyString>() && !is_bool(x)));
    if numeric {
        let vals: Vec<Option<f64>> = items.iter().map(|x| if x.is_none() { None } else { x.extract::<f64>().ok() }).collect();
        return Ok(Column::numeric(vals));
    }
    let mut vals: Vec<Option<String>> = Vec::with_capacity(items.len());
    for x in items {
        if x.is_none() {
            vals.push(None);
        } else if let Ok(s) = x.extract::<String>() {
            vals.push(Some(s));
        } else if is_bool(x) {
            vals.push(Some(if x.is_truthy()? { "true" } else { "false" }.to_owned()));
        } else {
            return Err(PyTypeError::new_err(format!("column {name:?}: mixes numbers and text; a column is numeric or categorical")));
        }
    }
    Ok(Column::categorical(vals))
}

fn batch(features: &Bound<'_, PyDict>, predictions: Option<&Bound<'_, PyAny>>) -> PyResult<Batch> {
    let mut cols = BTreeMap::new();
    for (k, v) in features.iter() {
        let name: String = k.extract().map_err(|_| PyTypeError::new_err("feature names must be strings"))?;
        let c = column(&name, &v)?;
        cols.insert(name, c);
    }
    let predictions = match predictions {
        None => None,
        Some(p) if p.is_none() => None,
        Some(p) => match column("predictions", p)? {
            Column::Numeric(v) => Some(v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect()),
            Column::Categorical { .. } => return Err(PyTypeError::new_err("predictions must be numbers")),
        },
    };
    Ok(Batch { features: cols, predictions, prediction_ids: None, labels: None })
}

/// Binary labels from any column form: 1/0 or true/false in every row, else an error that
/// shows no value. One rule for both modes (the remote mode uploads what this returns).
#[pyfunction]
fn binary_labels(values: &Bound<'_, PyAny>) -> PyResult<Vec<bool>> {
    let bad = || invalid(ErrorCode::InvalidValidationData, "labels must be 1/0 or true/false in every row");
    match column("labels", values)? {
        Column::Numeric(v) => v.iter().map(|&x| if x == 1.0 { Ok(true) } else if x == 0.0 { Ok(false) } else { Err(bad()) }).collect(),
        c @ Column::Categorical { .. } => vigil_data::column_strings(&c)
            .into_iter()
            .map(|x| match x.as_deref() {
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                _ => Err(bad()),
            })
            .collect(),
    }
}

/// Columns (a dict of name → column, read exactly as `set_baseline` reads them) encoded as
/// a Parquet file: what the remote mode uploads, so that both modes see the same columns with
/// the same kinds.
#[pyfunction]
fn encode_columns(py: Python<'_>, columns: &Bound<'_, PyDict>) -> PyResult<Py<pyo3::types::PyBytes>> {
    let mut cols = Vec::with_capacity(columns.len());
    for (k, v) in columns.iter() {
        let name: String = k.extract().map_err(|_| PyTypeError::new_err("column names must be strings"))?;
        let c = column(&name, &v)?;
        cols.push((name, c));
    }
    let bytes = py.detach(|| vigil_data::write_parquet(&cols)).map_err(err)?;
    Ok(pyo3::types::PyBytes::new(py, &bytes).unbind())
}

/// Every error code with its kind (for the Python exception map and its tests).
#[pyfunction]
fn error_codes() -> Vec<(String, String)> {
    ErrorCode::ALL.iter().map(|c| (c.as_str().to_owned(), format!("{:?}", c.kind()))).collect()
}

/// The built-in drift configuration as JSON (the seed's defaults).
#[pyfunction]
fn default_drift_config() -> String {
    text(&vigil_core::monitor::config_to_json(&vigil_core::drift::DriftDetectorConfig::default()))
}

/// Checks a model name (raises on a bad one).
#[pyfunction]
fn check_model_name(name: &str) -> PyResult<String> {
    Ok(ModelName::parse(name).map_err(err)?.to_string())
}

/// The compiled module.
#[pymodule]
fn _vigil(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_class::<Session>()?;
    m.add("VigilError", m.py().get_type::<VigilError>())?;
    m.add_function(wrap_pyfunction!(error_codes, m)?)?;
    m.add_function(wrap_pyfunction!(default_drift_config, m)?)?;
    m.add_function(wrap_pyfunction!(check_model_name, m)?)?;
    m.add_function(wrap_pyfunction!(encode_columns, m)?)?;
    m.add_function(wrap_pyfunction!(binary_labels, m)?)?;
    Ok(())
}
