//! The native API's drift monitoring routes (`/api/v1/models/{name}/versions/{version}/drift/…`
//! and `/api/v1/drift/alerts…`): the same use cases as `vigil drift`, with data sent as a CSV or
//! Parquet request body (column roles in the query string). Bodies are streamed to a staging
//! file (at most 4 GiB) and read with the same reader as the CLI; error messages name "the
//! uploaded data", never a server path or a cell value.

use crate::AppState;
use crate::http::{ApiError, Fields, authenticate, blocking, json_body};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use vigil_core::ids::{ModelName, Timestamp};
use vigil_core::model::ModelVersion;
use vigil_core::monitor::{Batch, Window, config_from_json, config_to_json, report_json};
use vigil_core::phi::Read;
use vigil_core::registry::Registry;
use vigil_core::semver::Version;
use vigil_core::store::AlertRecord;
use vigil_core::{Error, ErrorCode};
use vigil_data::{Kind, Roles};

/// Largest data upload.
pub const MAX_DATA_BYTES: u64 = 4 << 30;

fn reply(r: Result<Value, Error>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}

pub(crate) fn version(reg: &Registry, name: &str, version: &str) -> Result<ModelVersion, Error> {
    reg.get_version(&ModelName::parse(name)?, &Version::parse(version)?)
}

/// The baseline's column kinds: new data is read with the kinds it was profiled with.
fn expected(reg: &Registry, v: &ModelVersion) -> Result<BTreeMap<String, Kind>, Error> {
    Ok(vigil_data::baseline_kinds(reg.baseline_features(&v.id)?))
}

fn roles(f: &Fields) -> Result<Roles, Error> {
    let ignore = f.opt_str("ignore")?.map(|s| s.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()).unwrap_or_default();
    Ok(Roles { prediction: f.opt_str("prediction_col")?, id: f.opt_str("id_col")?, label: f.opt_str("label_col")?, expected: BTreeMap::new(), ignore, strict_kinds: false })
}

/// Before any upload is staged: the version exists and the actor may act on it (refusals
/// audited), so that nobody without the right can make the server store and parse data.
pub(crate) async fn authorize_upload(st: &Arc<AppState>, p: &vigil_core::auth::Principal, name: &str, ver: &str, action: vigil_core::auth::Action, action_name: &'static str) -> Result<(), Error> {
    let (reg, p, name, ver) = (st.registry.clone(), p.clone(), name.to_owned(), ver.to_owned());
    blocking(move || {
        let v = version(&reg, &name, &ver)?;
        reg.authorize_on_version(&p, &v, action, action_name)
    })
    .await
}

/// A request body staged as a file the data reader understands.
pub(crate) struct Staged {
    path: std::path::PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Staged {
    /// Reads the staged table; reader errors name "the uploaded data" instead of the path.
    pub(crate) fn table(&self) -> Result<vigil_data::Table, Error> {
        vigil_data::read_table(&self.path).map_err(|e| self.scrub(e))
    }

    /// The staged data as a batch. Parquet columns keep their own kinds (`strict_kinds`): a
    /// client that typed its columns (the Python package) sees the same refusals as in
    /// process; CSV is read leniently.
    fn batch(&self, roles: &Roles) -> Result<Batch, Error> {
        let t = self.table()?;
        let typed = self.path.extension().is_some_and(|e| e == "parquet");
        let roles = Roles { strict_kinds: typed, ..roles.clone() };
        vigil_data::to_batch(t, &roles, &self.path).map_err(|e| self.scrub(e))
    }

    fn scrub(&self, e: Error) -> Error {
        Error::new(e.code(), e.message().replace(&self.path.display().to_string(), "the uploaded data"))
    }
}

/// Streams a CSV or Parquet body to a staging file. Parquet is recognised by its magic bytes
/// or a Parquet content type; anything else is read as CSV.
pub(crate) async fn stage(st: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Result<Staged, Error> {
    let dir = st.artifacts.join(".vigil-tmp");
    tokio::fs::create_dir_all(&dir).await.map_err(|_| Error::storage("cannot create the staging directory"))?;
    let mut name = [0u8; 16];
    getrandom::getrandom(&mut name).map_err(|_| Error::storage("no system randomness"))?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mut stream = body.into_data_stream();
    let mut first: Vec<u8> = Vec::new();
    let mut chunks: Vec<Bytes> = Vec::new();
    // Peek at the first bytes for Parquet's magic number.
    while first.len() < 4 {
        match stream.next().await {
            Some(c) => {
                let c = c.map_err(|_| Error::new(ErrorCode::InvalidRequest, "the upload was interrupted"))?;
                first.extend_from_slice(&c[..c.len().min(4 - first.len())]);
                chunks.push(c);
            }
            None => break,
        }
    }
    if chunks.iter().all(|c| c.is_empty()) {
        return Err(Error::new(ErrorCode::InvalidRequest, "send the data as the request body (CSV with a header row, or Parquet)"));
    }
    let parquet = first == b"PAR1" || ctype.contains("parquet");
    let path = dir.join(format!("{}.{}", hex::encode(name), if parquet { "parquet" } else { "csv" }));
    let staged = Staged { path };
    let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(&staged.path).await.map_err(|_| Error::storage("cannot stage the upload"))?;
    let mut size = 0u64;
    for c in chunks {
        size += c.len() as u64;
        file.write_all(&c).await.map_err(|_| Error::storage("cannot stage the upload"))?;
    }
    while let Some(c) = stream.next().await {
        let c = c.map_err(|_| Error::new(ErrorCode::InvalidRequest, "the upload was interrupted"))?;
        size += c.len() as u64;
        if size > MAX_DATA_BYTES {
            return Err(Error::new(ErrorCode::InvalidRequest, "data uploads are at most 4 GiB; split the data into batches"));
        }
        file.write_all(&c).await.map_err(|_| Error::storage("cannot stage the upload"))?;
    }
    file.flush().await.map_err(|_| Error::storage("cannot stage the upload"))?;
    Ok(staged)
}

fn alert_json(a: &AlertRecord) -> Value {
    json!({
        "alert_id": a.id, "model_version_id": a.model_version_id, "check": a.check_key, "state": a.state,
        "opened_at": a.opened_at.to_rfc3339(), "updated_at": a.updated_at.to_rfc3339(), "report_id": a.report_id, "detail": a.detail,
        "acknowledged_by": a.acknowledged_by, "acknowledged_at": a.acknowledged_at.map(|t| t.to_rfc3339()), "resolved_at": a.resolved_at.map(|t| t.to_rfc3339()),
    })
}

/// `GET …/drift/config`.
pub async fn get_config(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            reg.audit_read(&p, Read::Model(&name), "GET /api/v1/models/{name}/versions/{version}/drift/config")?;
            Ok(config_to_json(&reg.drift_config(&v.id)?))
        })
        .await
    }
    .await;
    reply(r)
}

/// `PUT …/drift/config`: the seed's DriftDetectorConfig fields as JSON.
pub async fn put_config(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let config = config_from_json(&json_body(&body)?)?;
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            reg.set_drift_config(&p, &v.id, &config)?;
            Ok(config_to_json(&reg.drift_config(&v.id)?))
        })
        .await
    }
    .await;
    reply(r)
}

/// `POST …/drift/baseline`: profiles the body (training data) as a new baseline.
pub async fn baseline(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let roles = roles(&f)?;
        authorize_upload(&st, &p, &name, &ver, vigil_core::auth::Action::Monitor, "drift.baseline").await?;
        let staged = stage(&st, &headers, body).await?;
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            let batch = staged.batch(&roles)?;
            let features = batch.features.len();
            let b = reg.set_baseline(&p, &v.id, &batch)?;
            Ok(json!({"baseline_id": b.id, "baseline_version": b.baseline_version, "rows": b.rows, "features": features}))
        })
        .await
    }
    .await;
    reply(r)
}

/// `POST …/drift/samples`: appends production samples.
pub async fn samples(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let mut roles = roles(&f)?;
        authorize_upload(&st, &p, &name, &ver, vigil_core::auth::Action::Monitor, "drift.samples").await?;
        let staged = stage(&st, &headers, body).await?;
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            roles.expected = expected(&reg, &v)?;
            let b = reg.add_samples(&p, &v.id, &staged.batch(&roles)?)?;
            Ok(json!({"batch_id": b.id, "batch_seq": b.batch_seq, "rows": b.rows}))
        })
        .await
    }
    .await;
    reply(r)
}

/// `POST …/drift/labels?id_col=…&label_col=…`: labels that arrived after the predictions.
pub async fn labels(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let (id_col, label_col) = (f.str("id_col")?, f.str("label_col")?);
        authorize_upload(&st, &p, &name, &ver, vigil_core::auth::Action::Monitor, "drift.labels").await?;
        let staged = stage(&st, &headers, body).await?;
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            let pairs = vigil_data::label_pairs(staged.table()?, &id_col, &label_col)
                .ok_or_else(|| Error::new(ErrorCode::InvalidManifest, "the uploaded data needs the id_col and label_col columns"))?;
            let n = reg.add_labels(&p, &v.id, &pairs)?;
            Ok(json!({"labels": n}))
        })
        .await
    }
    .await;
    reply(r)
}

/// `POST …/drift/check`: checks stored samples (since the newest baseline, `window_rows`, or
/// `since`), or the data in the body when there is one (not stored as samples). The report
/// is stored; alerts open, confirm or resolve; notifications are queued for delivery.
pub async fn check(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let window = match (f.opt_i64("window_rows")?, f.opt_str("since")?) {
            (Some(n), _) if n > 0 => Window::LastRows(n),
            (Some(_), _) => return Err(Error::new(ErrorCode::InvalidFilter, "window_rows must be positive")),
            (None, Some(t)) => Window::Since(Timestamp::parse(&t)?),
            (None, None) => Window::SinceBaseline,
        };
        let prediction = f.opt_str("prediction_col")?;
        let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        let has_body = length.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
        let staged = if has_body {
            authorize_upload(&st, &p, &name, &ver, vigil_core::auth::Action::CheckDrift, "drift.check").await?;
            Some(stage(&st, &headers, body).await?)
        } else {
            None
        };
        let reg = st.registry.clone();
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            let check = match &staged {
                Some(s) => {
                    let roles = Roles { prediction, expected: expected(&reg, &v)?, ..Default::default() };
                    reg.detect_drift_on(&p, &v.id, &s.batch(&roles)?)?
                }
                None => reg.detect_drift(&p, &v.id, window)?,
            };
            reg.audit_read(&p, Read::Model(&name), "POST /api/v1/models/{name}/versions/{version}/drift/check")?;
            Ok(report_json(&check))
        })
        .await
    }
    .await;
    reply(r)
}

/// `GET /drift/alerts?model=…&version=…&all=true`.
pub async fn alerts(State(st): State<Arc<AppState>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let (model, ver, all) = (f.opt_str("model")?, f.opt_str("version")?, f.opt_bool("all")?.unwrap_or(false));
        let reg = st.registry.clone();
        blocking(move || {
            let v = match (model, ver) {
                (Some(m), Some(v)) => {
                    reg.audit_read(&p, Read::Model(&m), "GET /api/v1/drift/alerts")?;
                    Some(version(&reg, &m, &v)?)
                }
                (None, None) => None,
                _ => return Err(Error::new(ErrorCode::InvalidRequest, "give both model and version, or neither")),
            };
            let alerts = reg.list_alerts(v.as_ref().map(|v| v.id.as_str()), !all)?;
            if v.is_none() {
                let mut names: Vec<String> = alerts.iter().filter_map(|a| reg.get_version_by_id(&a.model_version_id).ok()).map(|v| v.model_name.to_string()).collect();
                names.sort();
                names.dedup();
                reg.audit_read(&p, Read::Models(&names), "GET /api/v1/drift/alerts")?;
            }
            Ok(json!({"alerts": alerts.iter().map(alert_json).collect::<Vec<_>>()}))
        })
        .await
    }
    .await;
    reply(r)
}

/// `POST /drift/alerts/{id}/ack` with `{"comment": …}`.
pub async fn ack(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let comment = Fields(json_body(&body)?).str("comment")?;
        let reg = st.registry.clone();
        blocking(move || reg.acknowledge_alert(&p, &id, &comment).map(|a| alert_json(&a))).await
    }
    .await;
    reply(r)
}

/// `POST /api/v1/features/{feature_set}?entity=COLUMN`: feature values for the embedded online
/// store, one row per entity (CSV or Parquet body); the newest value wins per entity and
/// feature.
pub async fn put_features(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(set): Path<String>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let entity = f.str("entity")?;
        {
            let (reg, p, set) = (st.registry.clone(), p.clone(), set.clone());
            blocking(move || reg.authorize_feature_write(&p, &set)).await?;
        }
        let staged = stage(&st, &headers, body).await?;
        let reg = st.registry.clone();
        blocking(move || {
            let (entities, features) = reg.put_online_features(&p, &set, &entity, &staged.batch(&Roles::default())?)?;
            Ok(json!({"feature_set": set, "entities": entities, "features": features}))
        })
        .await
    }
    .await;
    reply(r)
}
