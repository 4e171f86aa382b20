//! MLflow's model-registry and logged-model routes (`shared/reference/mlflow-api.md` §2–5)
//! over the core's registry catalogue. Versions travel as MLflow's integers; each one carries
//! its Vigil semantic version and content hash as the read-only tags `vigil.version` and
//! `vigil.content_hash`, so the two numbering schemes map onto each other visibly.
//! Governance answers in MLflow's terms: a refused stage change or guarded alias is
//! `403 PERMISSION_DENIED` with a message naming the promotion API (never 429/5xx, which
//! the client would retry for minutes).

use crate::AppState;
use crate::http::{Fields, bad_request, blocking};
use crate::mlflow::{page_token, parse_page_token, tags_json};
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_core::auth::Principal;
use vigil_core::catalog::{CatalogModel, CatalogVersion, DatasetInput, LoggedModel, LoggedModelStatus, NewCatalogVersion, mlflow_stage, parse_mlflow_stage};
use vigil_core::phi::Read;
use vigil_core::registry::Registry;
use vigil_core::search::{CatalogKind, parse_catalog_filter, parse_catalog_order};
use vigil_core::tracking::parse_experiment_id;
use vigil_core::{Error, ErrorCode, Result};

// ----- rendering ---------------------------------------------------------------------------

/// A version as MLflow's `ModelVersion` message.
pub fn version_json(cv: &CatalogVersion) -> Value {
    let v = &cv.version;
    let mut tags = tags_json(&cv.meta.tags);
    if let Value::Array(a) = &mut tags {
        a.push(json!({"key": "vigil.version", "value": v.version.to_string()}));
        a.push(json!({"key": "vigil.content_hash", "value": v.content_hash.to_hex()}));
    }
    let mut out = json!({
        "name": v.model_name.as_str(),
        "version": v.number.to_string(),
        "creation_timestamp": v.created_at.micros() / 1000,
        "last_updated_timestamp": cv.meta.updated_ms,
        "user_id": v.created_by.as_str(),
        "current_stage": mlflow_stage(v.stage),
        "description": cv.meta.description,
        "source": cv.meta.source,
        "status": "READY",
        "tags": tags,
        "aliases": cv.aliases,
    });
    if let Some(r) = &cv.meta.run_id {
        out["run_id"] = json!(r);
    }
    if let Some(m) = &cv.meta.logged_model_id {
        out["model_id"] = json!(m);
    }
    out
}

fn model_json(cm: &CatalogModel) -> Value {
    let m = &cm.model;
    let mut tags: Vec<(String, String)> = m.tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    tags.push(("vigil.model_type".into(), m.model_type.as_str().into()));
    json!({
        "name": m.name.as_str(),
        "creation_timestamp": m.created_at.micros() / 1000,
        "last_updated_timestamp": cm.last_updated_ms,
        "user_id": m.created_by.as_str(),
        "description": m.description,
        "tags": tags_json(&tags),
        "latest_versions": cm.latest_versions.iter().map(version_json).collect::<Vec<_>>(),
        "aliases": cm.aliases.iter().map(|(a, n)| json!({"alias": a, "version": n.to_string()})).collect::<Vec<_>>(),
    })
}

fn logged_model_json(lm: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": lm.id,
        "experiment_id": lm.experiment_id.to_string(),
        "name": lm.name,
        "artifact_uri": lm.artifact_uri,
        "status": lm.status.as_str(),
        "creation_timestamp_ms": lm.creation_ms,
        "last_updated_timestamp_ms": lm.updated_ms,
        "tags": tags_json(&lm.tags),
    });
    if let Some(r) = &lm.source_run_id {
        info["source_run_id"] = json!(r);
    }
    if let Some(t) = &lm.model_type {
        info["model_type"] = json!(t);
    }
    json!({"info": info, "data": {"params": tags_json(&lm.params), "metrics": []}})
}

/// A run's `inputs` and `outputs` blocks.
pub fn run_io_json(inputs: &[DatasetInput], outputs: &[(String, i64)]) -> (Value, Value) {
    let ins: Vec<Value> = inputs
        .iter()
        .map(|d| {
            let mut ds = json!({"name": d.name, "digest": d.digest, "source_type": d.source_type, "source": d.source});
            if let Some(s) = &d.schema {
                ds["schema"] = json!(s);
            }
            if let Some(p) = &d.profile {
                ds["profile"] = json!(p);
            }
            json!({"tags": tags_json(&d.tags), "dataset": ds})
        })
        .collect();
    let outs: Vec<Value> = outputs.iter().map(|(m, s)| json!({"model_id": m, "step": s})).collect();
    let inputs = if ins.is_empty() { json!({}) } else { json!({"dataset_inputs": ins}) };
    let outputs = if outs.is_empty() { json!({}) } else { json!({"model_outputs": outs}) };
    (inputs, outputs)
}

// ----- helpers -----------------------------------------------------------------------------

/// MLflow's version field: a positive integer as text.
fn number(f: &Fields) -> Result<i64> {
    let raw = match f.0.get("version") {
        Some(Value::Number(n)) => n.to_string(),
        _ => f.str("version")?,
    };
    raw.trim().parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| Error::new(ErrorCode::InvalidVersion, "a model version is a positive integer (MLflow's version number)"))
}

fn page(f: &Fields, default: i64, max: i64) -> Result<(usize, usize)> {
    let limit = f.opt_i64("max_results")?.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(Error::new(ErrorCode::InvalidFilter, format!("max_results must be between 1 and {max}")));
    }
    Ok((limit as usize, parse_page_token(f.opt_str("page_token")?)? as usize))
}

fn with_token(mut out: Value, more: bool, offset: usize, limit: usize) -> Value {
    if more {
        out["next_page_token"] = json!(page_token((offset + limit) as u64));
    }
    out
}

// ----- registered models -------------------------------------------------------------------

pub(crate) fn registered_models_create(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let cm = r.create_registered_model(p, &f.str("name")?, &f.opt_str("description")?.unwrap_or_default(), &f.pairs("tags")?)?;
    Ok(json!({"registered_model": model_json(&cm)}))
}

pub(crate) fn registered_models_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let name = f.str("name")?;
    let cm = r.registered_model(&name)?;
    r.audit_read(p, Read::Model(&name), "GET registered-models/get")?;
    Ok(json!({"registered_model": model_json(&cm)}))
}

pub(crate) fn registered_models_search(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let filter = parse_catalog_filter(&f.opt_str("filter")?.unwrap_or_default(), CatalogKind::Models)?;
    let order = f.str_list("order_by")?.iter().map(|s| parse_catalog_order(s, CatalogKind::Models)).collect::<Result<Vec<_>>>()?;
    let (limit, offset) = page(f, 100, 1000)?;
    let (models, more) = r.search_registered_models(&filter, &order, limit, offset)?;
    let names: Vec<String> = models.iter().map(|m| m.model.name.to_string()).collect();
    r.audit_read(p, Read::Models(&names), "GET registered-models/search")?;
    Ok(with_token(json!({"registered_models": models.iter().map(model_json).collect::<Vec<_>>()}), more, offset, limit))
}

pub(crate) fn registered_models_delete(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.refuse_deletion(p, "model", f.opt_str("name")?.as_deref()).map(|()| json!({}))
}

pub(crate) fn versions_delete(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.refuse_deletion(p, "model_version", f.opt_str("name")?.as_deref()).map(|()| json!({}))
}

pub(crate) fn alias_set(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_alias(p, &f.str("name")?, &f.str("alias")?, number(f)?)?;
    Ok(json!({}))
}

pub(crate) fn alias_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let name = f.str("name")?;
    let cv = r.version_by_alias(&name, &f.str("alias")?)?;
    r.audit_read(p, Read::Model(&name), "GET registered-models/alias")?;
    Ok(json!({"model_version": version_json(&cv)}))
}

pub(crate) fn alias_delete(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.delete_alias(p, &f.str("name")?, &f.str("alias")?)?;
    Ok(json!({}))
}

pub(crate) fn latest_versions(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let stages = f.str_list("stages")?.iter().map(|s| parse_mlflow_stage(s)).collect::<Result<Vec<_>>>()?;
    let name = f.str("name")?;
    let vs = r.latest_versions(&name, &stages)?;
    r.audit_read(p, Read::Model(&name), "registered-models/get-latest-versions")?;
    Ok(json!({"model_versions": vs.iter().map(version_json).collect::<Vec<_>>()}))
}

// ----- model versions ----------------------------------------------------------------------

/// `model-versions/create`: resolves the source, hashes the artifacts when Vigil stores them
/// (so the signed content binds the model's bytes), then registers.
pub(crate) async fn versions_create(st: &Arc<AppState>, p: Principal, f: Fields) -> Result<Value> {
    let new = NewCatalogVersion {
        name: f.str("name")?,
        source: f.str("source")?,
        run_id: f.opt_str("run_id")?.filter(|s| !s.is_empty()),
        logged_model_id: f.opt_str("model_id")?.filter(|s| !s.is_empty()),
        description: f.opt_str("description")?.unwrap_or_default(),
        tags: f.pairs("tags")?,
        artifact_digest: None,
    };
    // Permission first (audited), so that nobody without it makes the server hash anything.
    let reg = st.registry.clone();
    let (p2, name) = (p.clone(), new.name.clone());
    blocking(move || reg.authorize_registration(&p2, &name)).await?;
    let reg = st.registry.clone();
    let (source, run, lm) = (new.source.clone(), new.run_id.clone(), new.logged_model_id.clone());
    let hashed = async {
        let resolved = blocking(move || reg.resolve_source(&source, run.as_deref(), lm.as_deref())).await?;
        let digest = crate::artifacts::tree_digest(st, &resolved.artifact_uri).await?;
        Ok::<_, Error>(digest.map(|d| (resolved.artifact_uri, d)))
    }
    .await;
    let artifact_digest = match hashed {
        Ok(d) => d,
        Err(e) => {
            let (reg, p2, name) = (st.registry.clone(), p.clone(), new.name.clone());
            return Err(blocking(move || Ok(reg.refused(&p2, "model_version.register", "model_version", Some(&name), e))).await.unwrap_or_else(|e| e));
        }
    };
    let reg = st.registry.clone();
    let cv = blocking(move || reg.create_catalog_version(&p, &NewCatalogVersion { artifact_digest, ..new })).await?;
    Ok(json!({"model_version": version_json(&cv)}))
}

pub(crate) fn versions_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let name = f.str("name")?;
    let cv = r.catalog_version(&name, number(f)?)?;
    r.audit_read(p, Read::Model(&name), "GET model-versions/get")?;
    Ok(json!({"model_version": version_json(&cv)}))
}

pub(crate) fn versions_search(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let filter = parse_catalog_filter(&f.opt_str("filter")?.unwrap_or_default(), CatalogKind::Versions)?;
    let order = f.str_list("order_by")?.iter().map(|s| parse_catalog_order(s, CatalogKind::Versions)).collect::<Result<Vec<_>>>()?;
    let (limit, offset) = page(f, 10_000, 200_000)?;
    let (vs, more) = r.search_catalog_versions(&filter, &order, limit, offset)?;
    let mut names: Vec<String> = vs.iter().map(|v| v.version.model_name.to_string()).collect();
    names.dedup();
    r.audit_read(p, Read::Models(&names), "GET model-versions/search")?;
    Ok(with_token(json!({"model_versions": vs.iter().map(version_json).collect::<Vec<_>>()}), more, offset, limit))
}

pub(crate) fn versions_transition(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let stage = parse_mlflow_stage(&f.str("stage")?)?;
    f.opt_bool("archive_existing_versions")?;
    let name = f.str("name")?;
    let cv = r.request_stage_via_catalog(p, &name, number(f)?, stage)?;
    r.audit_read(p, Read::Model(&name), "POST model-versions/transition-stage")?;
    Ok(json!({"model_version": version_json(&cv)}))
}

pub(crate) fn versions_download_uri(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let name = f.str("name")?;
    let cv = r.catalog_version(&name, number(f)?)?;
    r.audit_read(p, Read::Model(&name), "GET model-versions/get-download-uri")?;
    Ok(json!({"artifact_uri": cv.version.content.artifact_uri}))
}

pub(crate) fn versions_set_tag(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_version_tag(p, &f.str("name")?, number(f)?, &f.str("key")?, &f.opt_str("value")?.unwrap_or_default())?;
    Ok(json!({}))
}

pub(crate) fn versions_delete_tag(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.delete_version_tag(p, &f.str("name")?, number(f)?, &f.str("key")?)?;
    Ok(json!({}))
}

pub(crate) fn versions_update(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let cv = r.update_version_description(p, &f.str("name")?, number(f)?, &f.opt_str("description")?.unwrap_or_default())?;
    Ok(json!({"model_version": version_json(&cv)}))
}

// ----- logged models -----------------------------------------------------------------------

pub(crate) fn logged_models_create(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let exp = parse_experiment_id(&f.str("experiment_id")?)?;
    let lm = r.create_logged_model(
        p,
        exp,
        f.opt_str("name")?.as_deref(),
        f.opt_str("source_run_id")?.as_deref(),
        f.opt_str("model_type")?.as_deref(),
        &f.pairs("tags")?,
        &f.pairs("params")?,
    )?;
    Ok(json!({"model": logged_model_json(&lm)}))
}

pub(crate) fn logged_models_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let id = f.str("model_id")?;
    let lm = r.get_logged_model(&id)?;
    r.audit_read(p, Read::LoggedModel(&id), "GET logged-models/{id}")?;
    Ok(json!({"model": logged_model_json(&lm)}))
}

pub(crate) fn logged_models_finalize(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let status = LoggedModelStatus::parse(&f.str("status")?)?;
    Ok(json!({"model": logged_model_json(&r.finalize_logged_model(p, &f.str("model_id")?, status)?)}))
}

pub(crate) fn logged_models_set_tags(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_logged_model_tags(p, &f.str("model_id")?, &f.pairs("tags")?)?;
    Ok(json!({}))
}

pub(crate) fn logged_models_search(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let exps = f.str_list("experiment_ids")?.iter().map(|s| parse_experiment_id(s)).collect::<Result<Vec<_>>>()?;
    // The client's own use is `name = '<x>'`; names and tags are supported, in MLflow's syntax.
    let filter = parse_catalog_filter(&f.opt_str("filter")?.unwrap_or_default(), CatalogKind::Models)?;
    let name = filter.iter().find_map(|c| match (&c.field, c.op, &c.operand) {
        (vigil_core::catalog::CatalogField::Name, vigil_core::search::Op::Eq, vigil_core::search::Operand::Text(t)) => Some(t.clone()),
        _ => None,
    });
    if filter.iter().any(|c| !matches!(c.field, vigil_core::catalog::CatalogField::Name) || c.op != vigil_core::search::Op::Eq) {
        return Err(Error::new(ErrorCode::InvalidFilter, "logged models are searched by `name = '…'` only"));
    }
    let (limit, offset) = page(f, 100, 1000)?;
    let (models, more) = r.search_logged_models(&exps, name.as_deref(), limit, offset)?;
    for m in &models {
        r.audit_read(p, Read::LoggedModel(&m.id), "POST logged-models/search")?;
    }
    Ok(with_token(json!({"models": models.iter().map(logged_model_json).collect::<Vec<_>>()}), more, offset, limit))
}

pub(crate) fn runs_outputs(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let run = match f.opt_str("run_id")? {
        Some(id) => id,
        None => f.str("run_uuid")?,
    };
    let models = match f.0.get("models") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                let id = m.get("model_id").and_then(Value::as_str).ok_or_else(|| bad_request("each output needs a string 'model_id'"))?;
                let step = match m.get("step") {
                    None | Some(Value::Null) => 0,
                    Some(s) => crate::http::as_i64(s).ok_or_else(|| bad_request("an output's 'step' must be an integer"))?,
                };
                Ok((id.to_owned(), step))
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(bad_request("field 'models' must be a list")),
    };
    r.log_run_outputs(p, &run, &models)?;
    Ok(json!({}))
}

pub(crate) fn runs_log_inputs(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let run = match f.opt_str("run_id")? {
        Some(id) => id,
        None => f.str("run_uuid")?,
    };
    let text = |v: &Value, k: &str, required: bool| -> Result<Option<String>> {
        match v.get(k) {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            None | Some(Value::Null) if !required => Ok(None),
            _ => Err(bad_request("each dataset needs string fields name, digest, source_type and source")),
        }
    };
    let inputs = match f.0.get("datasets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|d| {
                let ds = d.get("dataset").ok_or_else(|| bad_request("each dataset input needs a 'dataset'"))?;
                let tags = match d.get("tags") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(t)) => t.iter().map(|e| crate::http::pair(e, "tags")).collect::<Result<Vec<_>>>()?,
                    Some(_) => return Err(bad_request("a dataset input's 'tags' must be a list")),
                };
                Ok(DatasetInput {
                    name: text(ds, "name", true)?.unwrap_or_default(),
                    digest: text(ds, "digest", true)?.unwrap_or_default(),
                    source_type: text(ds, "source_type", false)?.unwrap_or_default(),
                    source: text(ds, "source", false)?.unwrap_or_default(),
                    schema: text(ds, "schema", false)?,
                    profile: text(ds, "profile", false)?,
                    tags,
                })
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(bad_request("field 'datasets' must be a list")),
    };
    if inputs.iter().any(|d| [&d.name, &d.digest, &d.source, &d.source_type].iter().any(|s| s.contains('\0'))) {
        return Err(bad_request("dataset fields may not contain NUL characters"));
    }
    r.log_run_inputs(p, &run, &inputs)?;
    Ok(json!({}))
}

/// `GET /api/3.0/mlflow/server-info`: no multipart artifact transfers (uploads are single
/// PUTs through the proxy, which hashes them).
pub(crate) fn server_info() -> Value {
    json!({
        "store_type": null, "workspaces_enabled": false, "trace_archival_enabled": false,
        "multipart_uploads_enabled": false, "multipart_downloads_enabled": false,
        "presigned_upload_run_id_supported": false, "presigned_upload_model_id_supported": false,
        "features_enabled": {},
    })
}
