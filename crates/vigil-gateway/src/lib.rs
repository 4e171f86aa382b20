//! Vigil's inference gateway: the Production version of every registered model, served from
//! its verified ONNX artifact behind the Open Inference Protocol (KServe V2) and MLflow's
//! scoring protocol, on one port.
//!
//! Only an approved version answers: the catalog follows the registry's Production stage,
//! loading a promoted version (digest checked) and swapping it in without dropping a request.
//! Every answer names the version that produced it (`model_version` in the body, the
//! `x-vigil-model-version` header). Client mistakes get a 4xx in the protocol's error format
//! whose message never contains submitted values.
//!
//! Not here yet (issue 6 continues): deployments with A/B, canary and shadow arms, the
//! prediction log feeding drift monitoring, online features.

mod catalog;
mod decode;
mod mlflow;

pub use catalog::{Catalog, Entry, Served, load_version};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value as Js, json};
use std::sync::Arc;
use std::time::Duration;
use vigil_core::ids::IdGenerator;

/// Largest request body (bytes).
pub const MAX_BODY: usize = 16 << 20;

/// The gateway: a catalog of served models and the model `/invocations` answers for.
pub struct Gateway {
    /// Loaded models.
    pub catalog: Catalog,
    /// The model MLflow's `/invocations` scores (default: the only model served).
    pub default_model: Option<String>,
    ids: vigil_core::ids::UuidV7Ids,
}

impl Gateway {
    /// A gateway over a registry whose artifacts are under `artifacts`.
    pub fn new(registry: Arc<vigil_core::registry::Registry>, artifacts: std::path::PathBuf, default_model: Option<String>) -> Self {
        Gateway { catalog: Catalog::new(registry, artifacts), default_model, ids: vigil_core::ids::UuidV7Ids }
    }
}

/// Keeps the catalog in line with the registry, every `every` (run it as a task).
pub async fn follow_registry(gw: Arc<Gateway>, every: Duration) {
    loop {
        let g = gw.clone();
        // Loading parses files and hashes bytes: off the request threads.
        let _ = tokio::task::spawn_blocking(move || g.catalog.refresh()).await;
        tokio::time::sleep(every).await;
    }
}

/// The gateway's routes.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(|| async { Json(json!({"live": true})) }))
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/{m}", get(model_metadata))
        .route("/v2/models/{m}/ready", get(model_ready))
        .route("/v2/models/{m}/infer", post(infer))
        .route("/v2/models/{m}/versions/{v}", get(model_metadata_v))
        .route("/v2/models/{m}/versions/{v}/ready", get(model_ready_v))
        .route("/v2/models/{m}/versions/{v}/infer", post(infer_v))
        .route("/ping", get(ping))
        .route("/health", get(ping))
        .route("/version", get(|| async { ([(header::CONTENT_TYPE, "application/json")], format!("\"vigil {}\"", env!("CARGO_PKG_VERSION"))) }))
        .route("/invocations", post(invocations))
        .route("/models/{m}/invocations", post(invocations_named))
        .fallback(|| async { (StatusCode::NOT_FOUND, Json(json!({"error": "no such route"}))) })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(declared_length))
        .with_state(gw)
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, gw: Arc<Gateway>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(gw)).with_graceful_shutdown(shutdown).await
}

/// Refuses a body declared larger than the limit before reading any of it (the body limit
/// alone would only notice after reading that much).
async fn declared_length(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        let m = format!("the body is over {} MiB", MAX_BODY >> 20);
        return if req.uri().path().starts_with("/v2") { oip_error(StatusCode::PAYLOAD_TOO_LARGE, m) } else { mlflow_error(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", m) };
    }
    next.run(req).await
}

fn oip_error(status: StatusCode, m: impl Into<String>) -> Response {
    (status, Json(json!({"error": m.into()}))).into_response()
}

fn mlflow_error(status: StatusCode, code: &str, m: impl Into<String>) -> Response {
    (status, Json(json!({"error_code": code, "message": m.into()}))).into_response()
}

/// The served version of `name` (and, when given, only if it is that version).
fn served(gw: &Gateway, name: &str, version: Option<&str>) -> Result<Arc<Served>, (StatusCode, String)> {
    match gw.catalog.get(name) {
        None => Err((StatusCode::NOT_FOUND, "no model of that name is served (it needs a version in Production)".into())),
        Some(Entry::Failed(u)) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("version {} is in Production but cannot be served: {}", u.version, u.reason))),
        Some(Entry::Ready(s)) => match version {
            Some(v) if v != s.version => Err((StatusCode::NOT_FOUND, "that version is not served (only the Production version answers)".into())),
            _ => Ok(s),
        },
    }
}

fn tensor_meta(io: &vigil_onnx::Io) -> Js {
    match &io.kind {
        vigil_onnx::IoKind::Tensor { elem, shape } => {
            json!({"name": io.name, "datatype": elem.oip_name(), "shape": shape.iter().map(|d| d.map_or(-1, |d| d as i64)).collect::<Vec<_>>()})
        }
        vigil_onnx::IoKind::Maps { .. } => json!({"name": io.name, "datatype": "FP32", "shape": [-1, -1], "parameters": {"content": "class probabilities; classes in the response's parameters.classes"}}),
    }
}

async fn server_metadata() -> Json<Js> {
    Json(json!({"name": "vigil", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

async fn server_ready(State(gw): State<Arc<Gateway>>) -> Response {
    let all = gw.catalog.all();
    let failed: Vec<&String> = all.iter().filter(|(_, e)| matches!(e, Entry::Failed(_))).map(|(n, _)| n).collect();
    if failed.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "unavailable": failed}))).into_response()
    }
}

fn metadata(gw: &Gateway, m: &str, v: Option<&str>) -> Response {
    match served(gw, m, v) {
        Ok(s) => Json(json!({
            "name": s.name,
            "versions": [s.version],
            "platform": "onnx_onnxv1",
            "inputs": s.model.inputs().iter().map(|i| tensor_meta(i)).collect::<Vec<_>>(),
            "outputs": s.model.outputs().iter().map(|o| tensor_meta(o)).collect::<Vec<_>>(),
            "parameters": {"version_id": s.version_id, "artifact_sha256": s.digest, "accepts_missing_values": s.model.accepts_missing},
        }))
        .into_response(),
        Err((st, m)) => oip_error(st, m),
    }
}

async fn model_metadata(State(gw): State<Arc<Gateway>>, Path(m): Path<String>) -> Response {
    metadata(&gw, &m, None)
}

async fn model_metadata_v(State(gw): State<Arc<Gateway>>, Path((m, v)): Path<(String, String)>) -> Response {
    metadata(&gw, &m, Some(&v))
}

fn ready(gw: &Gateway, m: &str, v: Option<&str>) -> Response {
    match served(gw, m, v) {
        Ok(s) => Json(json!({"name": s.name, "ready": true})).into_response(),
        Err((st, msg)) => oip_error(st, msg),
    }
}

async fn model_ready(State(gw): State<Arc<Gateway>>, Path(m): Path<String>) -> Response {
    ready(&gw, &m, None)
}

async fn model_ready_v(State(gw): State<Arc<Gateway>>, Path((m, v)): Path<(String, String)>) -> Response {
    ready(&gw, &m, Some(&v))
}

fn version_header(s: &Served) -> HeaderValue {
    HeaderValue::from_str(&format!("{}@{}", s.name, s.version)).unwrap_or(HeaderValue::from_static("unknown"))
}

fn run_oip(gw: &Gateway, m: &str, v: Option<&str>, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return oip_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} MiB", MAX_BODY >> 20)),
        Err(_) => return oip_error(StatusCode::BAD_REQUEST, "the body could not be read"),
    };
    let s = match served(gw, m, v) {
        Ok(s) => s,
        Err((st, msg)) => return oip_error(st, msg),
    };
    let req: Js = match serde_json::from_slice(&body) {
        Ok(Js::Object(o)) => Js::Object(o),
        _ => return oip_error(StatusCode::BAD_REQUEST, "the body must be a JSON object with 'inputs'"),
    };
    let Some(inputs) = req.get("inputs") else { return oip_error(StatusCode::BAD_REQUEST, "'inputs' is required") };
    let tensors = match decode::oip_inputs(&s.model, inputs) {
        Ok(t) => t,
        Err(decode::Bad(m)) => return oip_error(StatusCode::BAD_REQUEST, m),
    };
    let outputs = match s.model.run(tensors) {
        Ok(o) => o,
        Err(e) => return oip_error(StatusCode::BAD_REQUEST, e.message()),
    };
    let wanted: Option<Vec<String>> = match req.get("outputs") {
        None | Some(Js::Null) => None,
        Some(Js::Array(a)) => match a.iter().map(|o| o.get("name").and_then(Js::as_str).map(str::to_owned)).collect::<Option<Vec<_>>>() {
            Some(n) => Some(n),
            None => return oip_error(StatusCode::BAD_REQUEST, "each requested output needs a 'name'"),
        },
        Some(_) => return oip_error(StatusCode::BAD_REQUEST, "'outputs' must be a list"),
    };
    if let Some(w) = &wanted
        && w.iter().any(|n| !outputs.iter().any(|(o, _)| o == n))
    {
        return oip_error(StatusCode::BAD_REQUEST, "a requested output is not one of the model's outputs");
    }
    let id = match req.get("id") {
        Some(Js::String(i)) if i.len() <= 256 => i.clone(),
        Some(_) => return oip_error(StatusCode::BAD_REQUEST, "'id' must be text of at most 256 characters"),
        None => gw.ids.new_id("req"),
    };
    let outs: Vec<Js> = outputs.iter().filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.contains(n))).map(|(n, v)| decode::oip_output(n, v)).collect();
    let mut resp = Json(json!({"model_name": s.name, "model_version": s.version, "id": id, "outputs": outs})).into_response();
    resp.headers_mut().insert("x-vigil-model-version", version_header(&s));
    resp
}

async fn infer(State(gw): State<Arc<Gateway>>, Path(m): Path<String>, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_oip(&gw, &m, None, body)
}

async fn infer_v(State(gw): State<Arc<Gateway>>, Path((m, v)): Path<(String, String)>, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_oip(&gw, &m, Some(&v), body)
}

fn default_model(gw: &Gateway) -> Option<String> {
    gw.default_model.clone().or_else(|| {
        let all = gw.catalog.all();
        match all.as_slice() {
            [(n, _)] => Some(n.clone()),
            _ => None,
        }
    })
}

async fn ping(State(gw): State<Arc<Gateway>>) -> Response {
    match default_model(&gw).map(|m| served(&gw, &m, None)) {
        Some(Ok(_)) => ([(header::CONTENT_TYPE, "application/json")], "\n").into_response(),
        Some(Err((st, _))) => (st, "\n").into_response(),
        None => (StatusCode::NOT_FOUND, "\n").into_response(),
    }
}

fn run_mlflow(gw: &Gateway, m: Option<String>, headers: &HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return mlflow_error(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", format!("the body is over {} MiB", MAX_BODY >> 20)),
        Err(_) => return mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the body could not be read"),
    };
    let Some(m) = m else {
        return mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "several models are served: call /models/{name}/invocations, or start the gateway with a default model");
    };
    let s = match served(gw, &m, None) {
        Ok(s) => s,
        Err((st, msg)) => return mlflow_error(st, if st == StatusCode::NOT_FOUND { "RESOURCE_DOES_NOT_EXIST" } else { "TEMPORARILY_UNAVAILABLE" }, msg),
    };
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (mime, params) = ctype.split_once(';').map_or((ctype.as_str(), ""), |(a, b)| (a.trim(), b.trim()));
    if !params.is_empty() && !params.replace(' ', "").eq_ignore_ascii_case("charset=utf-8") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type parameters other than charset=utf-8 are not supported").into_response();
    }
    let tensors = match mime {
        "application/json" => match mlflow::parse_json(&body) {
            Ok(mlflow::Request::Frame(f)) => decode::frame_inputs(&s.model, &f),
            Ok(mlflow::Request::Named(named)) => decode::named_inputs(&s.model, &named),
            Err(e) => Err(e),
        },
        "text/csv" => mlflow::parse_csv(&body).and_then(|f| decode::frame_inputs(&s.model, &f)),
        _ => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json or text/csv").into_response(),
    };
    let tensors = match tensors {
        Ok(t) => t,
        Err(decode::Bad(m)) => return mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
    };
    match s.model.run(tensors) {
        Ok(outputs) => {
            let mut resp = Json(json!({"predictions": decode::mlflow_predictions(&outputs)})).into_response();
            resp.headers_mut().insert("x-vigil-model-version", version_header(&s));
            resp
        }
        Err(e) => mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", e.message()),
    }
}

async fn invocations(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let m = default_model(&gw);
    run_mlflow(&gw, m, &headers, body)
}

async fn invocations_named(State(gw): State<Arc<Gateway>>, Path(m): Path<String>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_mlflow(&gw, Some(m), &headers, body)
}
