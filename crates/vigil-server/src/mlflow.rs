//! MLflow's tracking REST API (`/api/2.0/mlflow/…`), as the stock client calls it
//! (`shared/reference/mlflow-api.md`): the same paths, field names, defaults, status codes
//! and error codes, over Vigil's tracking use cases. Every call is authenticated (HTTP Basic
//! from `MLFLOW_TRACKING_USERNAME/PASSWORD`, or a bearer token from `MLFLOW_TRACKING_TOKEN`);
//! every mutation is authorised by role and audited in the core.

use crate::AppState;
use crate::http::{ApiError, Fields, as_f64, as_i64, authenticate, bad_request, blocking, f64_json, json_body, pair};
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_core::auth::Principal;
use vigil_core::registry::Registry;
use vigil_core::phi::Read;
use vigil_core::search::{parse_filter, parse_order_by};
use vigil_core::tracking::{
    DEFAULT_EXPERIMENT_ID, Experiment, Lifecycle, LogBatch, Metric, MetricPoint, Run, RunInfo, RunQuery, RunStatus, ViewType, parse_experiment_id,
};
use vigil_core::{Error, ErrorCode, Result};
use crate::mlflow_registry as reg;

/// A tracking handler: the use case call behind one MLflow route.
pub type Op = fn(&Registry, &Principal, &Fields) -> Result<Value>;

/// How a route is handled: most through request fields and a JSON reply; the two hot paths
/// of tracking with their own typed parsing and encoding.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Fields from the query string (GET) or JSON body, a JSON tree back.
    Fields(Op),
    /// `runs/log-batch`: the body parsed straight into typed values.
    LogBatch,
    /// `metrics/get-history`: points written straight into the response text.
    History,
    /// `model-versions/create`: hashes the artifacts in the artifact store before registering.
    CreateVersion,
}

/// The routes: (method, path under `/api/2.0/mlflow/`, handler). The OpenAPI document lists them too.
pub const ROUTES: &[(&str, &str, Handler)] = &[
    ("POST", "experiments/create", Handler::Fields(experiments_create)),
    ("GET", "experiments/get", Handler::Fields(experiments_get)),
    ("GET", "experiments/get-by-name", Handler::Fields(experiments_get_by_name)),
    ("POST", "experiments/search", Handler::Fields(experiments_search)),
    ("GET", "experiments/search", Handler::Fields(experiments_search)),
    ("POST", "experiments/delete", Handler::Fields(experiments_delete)),
    ("POST", "experiments/restore", Handler::Fields(experiments_restore)),
    ("POST", "experiments/set-experiment-tag", Handler::Fields(experiments_set_tag)),
    ("POST", "runs/create", Handler::Fields(runs_create)),
    ("GET", "runs/get", Handler::Fields(runs_get)),
    ("POST", "runs/update", Handler::Fields(runs_update)),
    ("POST", "runs/delete", Handler::Fields(runs_delete)),
    ("POST", "runs/restore", Handler::Fields(runs_restore)),
    ("POST", "runs/log-parameter", Handler::Fields(runs_log_parameter)),
    ("POST", "runs/log-metric", Handler::Fields(runs_log_metric)),
    ("POST", "runs/log-batch", Handler::LogBatch),
    ("POST", "runs/set-tag", Handler::Fields(runs_set_tag)),
    ("POST", "runs/delete-tag", Handler::Fields(runs_delete_tag)),
    ("POST", "runs/search", Handler::Fields(runs_search)),
    ("GET", "metrics/get-history", Handler::History),
    ("POST", "runs/outputs", Handler::Fields(reg::runs_outputs)),
    ("POST", "runs/log-inputs", Handler::Fields(reg::runs_log_inputs)),
    ("POST", "logged-models", Handler::Fields(reg::logged_models_create)),
    ("POST", "logged-models/search", Handler::Fields(reg::logged_models_search)),
    ("GET", "logged-models/{model_id}", Handler::Fields(reg::logged_models_get)),
    ("PATCH", "logged-models/{model_id}", Handler::Fields(reg::logged_models_finalize)),
    ("PATCH", "logged-models/{model_id}/tags", Handler::Fields(reg::logged_models_set_tags)),
    ("POST", "registered-models/create", Handler::Fields(reg::registered_models_create)),
    ("GET", "registered-models/get", Handler::Fields(reg::registered_models_get)),
    ("GET", "registered-models/search", Handler::Fields(reg::registered_models_search)),
    ("DELETE", "registered-models/delete", Handler::Fields(reg::registered_models_delete)),
    ("POST", "registered-models/alias", Handler::Fields(reg::alias_set)),
    ("GET", "registered-models/alias", Handler::Fields(reg::alias_get)),
    ("DELETE", "registered-models/alias", Handler::Fields(reg::alias_delete)),
    ("POST", "registered-models/get-latest-versions", Handler::Fields(reg::latest_versions)),
    ("GET", "registered-models/get-latest-versions", Handler::Fields(reg::latest_versions)),
    ("POST", "model-versions/create", Handler::CreateVersion),
    ("GET", "model-versions/get", Handler::Fields(reg::versions_get)),
    ("GET", "model-versions/search", Handler::Fields(reg::versions_search)),
    ("POST", "model-versions/transition-stage", Handler::Fields(reg::versions_transition)),
    ("GET", "model-versions/get-download-uri", Handler::Fields(reg::versions_download_uri)),
    ("POST", "model-versions/set-tag", Handler::Fields(reg::versions_set_tag)),
    ("DELETE", "model-versions/delete-tag", Handler::Fields(reg::versions_delete_tag)),
    ("PATCH", "model-versions/update", Handler::Fields(reg::versions_update)),
    ("DELETE", "model-versions/delete", Handler::Fields(reg::versions_delete)),
];

/// Matches a route pattern against a path; a `{param}` segment matches one path segment,
/// which is returned.
fn route_match(pattern: &str, path: &str) -> Option<Option<(&'static str, String)>> {
    let (mut ps, mut xs) = (pattern.split('/'), path.split('/'));
    let mut param = None;
    loop {
        match (ps.next(), xs.next()) {
            (None, None) => return Some(param),
            (Some(p), Some(x)) if p.starts_with('{') && !x.is_empty() => {
                param = Some((if p == "{model_id}" { "model_id" } else { "id" }, x.to_owned()));
            }
            (Some(p), Some(x)) if p == x => {}
            _ => return None,
        }
    }
}

/// The route pattern of a path, if it is one of ours.
pub fn known_route(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/api/2.0/mlflow/").or_else(|| path.strip_prefix("/ajax-api/2.0/mlflow/"))?;
    ROUTES.iter().find(|(_, p, _)| route_match(p, rest).is_some()).map(|(_, p, _)| route_label(p))
}

fn route_label(p: &'static str) -> &'static str {
    // Labels are `/api/2.0/mlflow/<p>`, built once.
    static LABELS: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| ROUTES.iter().map(|(_, p, _)| (*p, format!("/api/2.0/mlflow/{p}"))).collect());
    labels.iter().find(|(k, _)| *k == p).map_or("/api/2.0/mlflow/{unknown}", |(_, v)| v.as_str())
}

/// Handles every `/api/2.0/mlflow/…` request.
pub async fn dispatch(State(st): State<Arc<AppState>>, method: Method, uri: Uri, headers: HeaderMap, RawQuery(q): RawQuery, body: Bytes) -> Response {
    match dispatch_inner(&st, &method, &uri, &headers, q.as_deref(), &body).await {
        Ok(Reply::Json(v)) => axum::Json(v).into_response(),
        Ok(Reply::Text(text)) => ([(axum::http::header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::mlflow(e).into_response(),
    }
}

/// A JSON tree, or JSON already encoded.
enum Reply {
    Json(Value),
    Text(String),
}

async fn dispatch_inner(st: &Arc<AppState>, method: &Method, uri: &Uri, headers: &HeaderMap, q: Option<&str>, body: &[u8]) -> Result<Reply> {
    let path = uri.path();
    let rest = path.strip_prefix("/api/2.0/mlflow/").or_else(|| path.strip_prefix("/ajax-api/2.0/mlflow/")).unwrap_or("");
    let Some((handler, param)) = ROUTES.iter().filter(|(m, _, _)| *m == method.as_str()).find_map(|(_, p, h)| route_match(p, rest).map(|param| (h, param))) else {
        return Err(Error::new(ErrorCode::RouteNotFound, "this MLflow endpoint is not served by vigil"));
    };
    let principal = authenticate(st, headers).await?;
    let reg = st.registry.clone();
    match *handler {
        Handler::LogBatch => {
            let (run_id, batch) = parse_batch(body)?;
            blocking(move || reg.log_batch(&principal, &run_id, &batch)).await.map(|()| Reply::Json(json!({})))
        }
        Handler::History => history(reg, principal, Fields::from_query(q)).await.map(Reply::Text),
        Handler::CreateVersion => crate::mlflow_registry::versions_create(st, principal, Fields(json_body(body)?)).await.map(Reply::Json),
        Handler::Fields(op) => {
            // GET carries fields in the query string; POST, PATCH and DELETE in a JSON body
            // (a DELETE without a body may use the query string).
            let mut fields = if *method == Method::GET || (*method == Method::DELETE && body.is_empty()) { Fields::from_query(q) } else { Fields(json_body(body)?) };
            if let (Some((k, v)), Value::Object(map)) = (param, &mut fields.0) {
                map.insert(k.to_owned(), Value::String(v));
            }
            blocking(move || op(&reg, &principal, &fields)).await.map(Reply::Json)
        }
    }
}

// ----- rendering ---------------------------------------------------------------------------

pub(crate) fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect())
}

fn experiment_json(e: &Experiment) -> Value {
    json!({
        "experiment_id": e.id.to_string(), "name": e.name, "artifact_location": e.artifact_location,
        "lifecycle_stage": e.lifecycle.as_str(), "creation_time": e.creation_time, "last_update_time": e.last_update_time,
        "tags": tags_json(&e.tags),
    })
}

fn run_info_json(i: &RunInfo) -> Value {
    let mut v = json!({
        "run_id": i.run_id, "run_uuid": i.run_id, "experiment_id": i.experiment_id.to_string(), "run_name": i.run_name,
        "user_id": i.user_id, "status": i.status.as_str(), "start_time": i.start_time, "artifact_uri": i.artifact_uri,
        "lifecycle_stage": i.lifecycle.as_str(),
    });
    if let Some(e) = i.end_time {
        v["end_time"] = json!(e);
    }
    v
}

fn metric_json(key: &str, p: &MetricPoint) -> Value {
    json!({"key": key, "value": f64_json(p.value), "timestamp": p.timestamp, "step": p.step})
}

fn run_json(r: &Run) -> Value {
    json!({
        "info": run_info_json(&r.info),
        "data": {
            "metrics": r.metrics.iter().map(|m| metric_json(&m.key, &m.point)).collect::<Vec<_>>(),
            "params": tags_json(&r.params),
            "tags": tags_json(&r.tags),
        },
        "inputs": {},
    })
}

pub(crate) fn page_token(offset: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

pub(crate) fn parse_page_token(t: Option<String>) -> Result<u64> {
    let Some(t) = t.filter(|t| !t.is_empty()) else { return Ok(0) };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse::<u64>().ok()))
        .filter(|n| *n <= vigil_core::tracking::MAX_SEARCH_OFFSET)
        .ok_or_else(|| Error::new(ErrorCode::InvalidFilter, "invalid page token"))
}

fn run_id(f: &Fields) -> Result<String> {
    match f.opt_str("run_id")?.filter(|s| !s.is_empty()) {
        Some(id) => Ok(id),
        None => f.str("run_uuid"),
    }
}

// ----- experiments -------------------------------------------------------------------------

fn experiments_create(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let name = f.str("name")?;
    let loc = f.opt_str("artifact_location")?.filter(|s| !s.is_empty());
    let e = r.create_experiment(p, &name, loc.as_deref(), &f.pairs("tags")?)?;
    Ok(json!({"experiment_id": e.id.to_string()}))
}

fn experiments_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let e = r.get_experiment(parse_experiment_id(&f.str("experiment_id")?)?)?;
    r.audit_read(p, Read::Experiment(e.id), "GET experiments/get")?;
    Ok(json!({"experiment": experiment_json(&e)}))
}

fn experiments_get_by_name(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let e = r.get_experiment_by_name(&f.str("experiment_name")?)?;
    r.audit_read(p, Read::Experiment(e.id), "GET experiments/get-by-name")?;
    Ok(json!({"experiment": experiment_json(&e)}))
}

fn experiments_search(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    use vigil_core::search::{CatalogKind, parse_catalog_filter, parse_catalog_order};
    let view = ViewType::parse(&f.opt_str("view_type")?.unwrap_or_default())?;
    let filter = parse_catalog_filter(&f.opt_str("filter")?.unwrap_or_default(), CatalogKind::Experiments)?;
    let order = f.str_list("order_by")?.iter().map(|s| parse_catalog_order(s, CatalogKind::Experiments)).collect::<Result<Vec<_>>>()?;
    let limit = f.opt_i64("max_results")?.unwrap_or(1000);
    if !(1..=50_000).contains(&limit) {
        return Err(Error::new(ErrorCode::InvalidFilter, "max_results must be between 1 and 50000"));
    }
    let offset = parse_page_token(f.opt_str("page_token")?)?;
    let (exps, more) = r.search_experiments(view, &filter, &order, limit as usize, offset as usize)?;
    for e in &exps {
        r.audit_read(p, Read::Experiment(e.id), "experiments/search")?;
    }
    let mut out = json!({"experiments": exps.iter().map(experiment_json).collect::<Vec<_>>()});
    if more {
        out["next_page_token"] = json!(page_token(offset + limit as u64));
    }
    Ok(out)
}

fn experiments_delete(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_experiment_lifecycle(p, parse_experiment_id(&f.str("experiment_id")?)?, Lifecycle::Deleted)?;
    Ok(json!({}))
}

fn experiments_restore(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_experiment_lifecycle(p, parse_experiment_id(&f.str("experiment_id")?)?, Lifecycle::Active)?;
    Ok(json!({}))
}

fn experiments_set_tag(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_experiment_tag(p, parse_experiment_id(&f.str("experiment_id")?)?, &f.str("key")?, &f.opt_str("value")?.unwrap_or_default())?;
    Ok(json!({}))
}

// ----- runs --------------------------------------------------------------------------------

fn runs_create(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let exp = match f.opt_str("experiment_id")?.filter(|s| !s.is_empty()) {
        Some(id) => parse_experiment_id(&id)?,
        None => DEFAULT_EXPERIMENT_ID,
    };
    let info = r.create_run(p, exp, f.opt_str("run_name")?.as_deref(), f.opt_i64("start_time")?, &f.pairs("tags")?)?;
    let run = r.get_run(&info.run_id)?;
    Ok(json!({"run": run_json(&run)}))
}

fn runs_get(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let id = run_id(f)?;
    let mut run = run_json(&r.get_run(&id)?);
    r.audit_read(p, Read::Run(&id), "GET runs/get")?;
    let (inputs, outputs) = r.run_io(&id)?;
    let (i, o) = reg::run_io_json(&inputs, &outputs);
    run["inputs"] = i;
    run["outputs"] = o;
    Ok(json!({"run": run}))
}

fn runs_update(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let status = f.opt_str("status")?.map(|s| RunStatus::parse(&s)).transpose()?;
    let info = r.update_run(p, &run_id(f)?, status, f.opt_i64("end_time")?, f.opt_str("run_name")?.as_deref())?;
    Ok(json!({"run_info": run_info_json(&info)}))
}

fn runs_delete(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_run_lifecycle(p, &run_id(f)?, Lifecycle::Deleted)?;
    Ok(json!({}))
}

fn runs_restore(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.set_run_lifecycle(p, &run_id(f)?, Lifecycle::Active)?;
    Ok(json!({}))
}

fn runs_log_parameter(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let batch = LogBatch { params: vec![(f.str("key")?, f.opt_str("value")?.unwrap_or_default())], ..Default::default() };
    r.log_batch(p, &run_id(f)?, &batch)?;
    Ok(json!({}))
}

fn metric_from(v: &Value) -> Result<Metric> {
    let key = v.get("key").and_then(Value::as_str).ok_or_else(|| bad_request("each metric needs a string 'key'"))?;
    let value = v.get("value").and_then(as_f64).ok_or_else(|| bad_request("each metric needs a numeric 'value'"))?;
    let timestamp = v.get("timestamp").and_then(as_i64).ok_or_else(|| bad_request("each metric needs an integer 'timestamp'"))?;
    let step = match v.get("step") {
        None | Some(Value::Null) => 0,
        Some(s) => as_i64(s).ok_or_else(|| bad_request("a metric's 'step' must be an integer"))?,
    };
    Ok(Metric { key: key.to_owned(), point: MetricPoint { value, timestamp, step } })
}

fn runs_log_metric(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let batch = LogBatch { metrics: vec![metric_from(&f.0)?], ..Default::default() };
    r.log_batch(p, &run_id(f)?, &batch)?;
    Ok(json!({}))
}

/// `runs/log-batch` bodies, parsed straight into typed values (a 1,000-metric batch is the
/// hot path of tracking; a generic JSON tree costs several times more).
#[derive(serde::Deserialize)]
struct BatchBody {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    run_uuid: Option<String>,
    #[serde(default)]
    metrics: Vec<MetricBody>,
    #[serde(default)]
    params: Vec<PairBody>,
    #[serde(default)]
    tags: Vec<PairBody>,
}

#[derive(serde::Deserialize)]
struct MetricBody {
    key: String,
    value: NumOrText,
    timestamp: NumOrText,
    #[serde(default)]
    step: Option<NumOrText>,
}

#[derive(serde::Deserialize)]
struct PairBody {
    key: String,
    #[serde(default)]
    value: Option<String>,
}

/// proto3 JSON: int64 may be a string; doubles may be "NaN" / "Infinity".
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Int(i64),
    Float(f64),
    Text(String),
}

impl NumOrText {
    fn f64(&self) -> Option<f64> {
        match self {
            NumOrText::Int(i) => Some(*i as f64),
            NumOrText::Float(f) => Some(*f),
            NumOrText::Text(t) => as_f64(&Value::String(t.clone())),
        }
    }

    fn i64(&self) -> Option<i64> {
        match self {
            NumOrText::Int(i) => Some(*i),
            NumOrText::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(*f as i64),
            NumOrText::Float(_) => None,
            NumOrText::Text(t) => t.trim().parse().ok(),
        }
    }
}

/// Parses a log-batch body; shape errors are 400s naming the field, never the values.
pub fn parse_batch(body: &[u8]) -> Result<(String, LogBatch)> {
    let b: BatchBody = serde_json::from_slice(body).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            bad_request(format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column()))
        } else {
            bad_request("a log-batch body has run_id, metrics [{key, value, timestamp, step}], params and tags [{key, value}] of those types")
        }
    })?;
    let run_id = b.run_id.filter(|s| !s.is_empty()).or(b.run_uuid).ok_or_else(|| Error::new(ErrorCode::InvalidRequest, "missing value for required parameter 'run_id'"))?;
    let metrics = b
        .metrics
        .into_iter()
        .map(|m| {
            let value = m.value.f64().ok_or_else(|| bad_request("each metric needs a numeric 'value'"))?;
            let timestamp = m.timestamp.i64().ok_or_else(|| bad_request("each metric needs an integer 'timestamp'"))?;
            let step = m.step.map(|s| s.i64().ok_or_else(|| bad_request("a metric's 'step' must be an integer"))).transpose()?.unwrap_or(0);
            Ok(Metric { key: m.key, point: MetricPoint { value, timestamp, step } })
        })
        .collect::<Result<Vec<_>>>()?;
    let pairs = |v: Vec<PairBody>| v.into_iter().map(|p| (p.key, p.value.unwrap_or_default())).collect();
    Ok((run_id, LogBatch { metrics, params: pairs(b.params), tags: pairs(b.tags) }))
}

fn runs_set_tag(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let (k, v) = pair(&f.0, "tag")?;
    r.log_batch(p, &run_id(f)?, &LogBatch { tags: vec![(k, v)], ..Default::default() })?;
    Ok(json!({}))
}

fn runs_delete_tag(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    r.delete_run_tag(p, &run_id(f)?, &f.str("key")?)?;
    Ok(json!({}))
}

fn runs_search(r: &Registry, p: &Principal, f: &Fields) -> Result<Value> {
    let experiment_ids = f.str_list("experiment_ids")?.iter().map(|s| parse_experiment_id(s)).collect::<Result<Vec<_>>>()?;
    if experiment_ids.is_empty() {
        return Err(Error::new(ErrorCode::InvalidFilter, "experiment_ids must name at least one experiment"));
    }
    let filter = parse_filter(&f.opt_str("filter")?.unwrap_or_default())?;
    let order_by = f.str_list("order_by")?.iter().map(|s| parse_order_by(s)).collect::<Result<Vec<_>>>()?;
    let limit = f.opt_i64("max_results")?.unwrap_or(1000);
    if !(1..=i64::from(vigil_core::tracking::MAX_SEARCH_RESULTS)).contains(&limit) {
        return Err(Error::new(ErrorCode::InvalidFilter, "max_results must be between 1 and 50000"));
    }
    let offset = parse_page_token(f.opt_str("page_token")?)?;
    let view = ViewType::parse(&f.opt_str("run_view_type")?.unwrap_or_default())?;
    let q = RunQuery { experiment_ids, filter, view, order_by, limit: limit as u32, offset };
    let (runs, more) = r.search_runs(&q)?;
    r.audit_read(p, Read::Runs(&runs), "POST runs/search")?;
    let mut out = json!({"runs": runs.iter().map(run_json).collect::<Vec<_>>()});
    if more {
        out["next_page_token"] = json!(page_token(offset + limit as u64));
    }
    Ok(out)
}

/// `metrics/get-history` written straight into a string: a page holds up to 25,000 points
/// and a JSON tree per point would dominate the request.
async fn history(reg: Arc<Registry>, principal: Principal, f: Fields) -> Result<String> {
    let key = f.str("metric_key")?;
    let run = run_id(&f)?;
    let limit = f.opt_i64("max_results")?.unwrap_or(25_000).clamp(1, 1_000_000) as u32;
    let offset = parse_page_token(f.opt_str("page_token")?)?;
    let key2 = key.clone();
    let points = match blocking(move || {
        let points = reg.metric_history(&run, &key2, limit + 1, offset)?;
        reg.audit_read(&principal, Read::Run(&run), "GET metrics/get-history")?;
        Ok(points)
    })
    .await
    {
        Ok(p) => p,
        // MLflow answers an unknown run with an empty body.
        Err(e) if e.code() == ErrorCode::RunNotFound => return Ok("{}".into()),
        Err(e) => return Err(e),
    };
    if points.is_empty() {
        return Ok("{}".into());
    }
    use std::fmt::Write;
    let key_json = serde_json::to_string(&key).map_err(|_| Error::storage("encoding a metric key"))?;
    let mut out = String::with_capacity(points.len() * (key_json.len() + 64) + 64);
    out.push_str("{\"metrics\":[");
    for (i, p) in points.iter().take(limit as usize).enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"key\":{key_json},\"value\":{},\"timestamp\":{},\"step\":{}}}", f64_json(p.value), p.timestamp, p.step);
    }
    out.push(']');
    if points.len() > limit as usize {
        let _ = write!(out, ",\"next_page_token\":\"{}\"", page_token(offset + u64::from(limit)));
    }
    out.push('}');
    Ok(out)
}
