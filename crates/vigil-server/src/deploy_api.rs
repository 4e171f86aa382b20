//! The native deployment routes: what the gateway serves for a model (`GET`), changing it
//! (`PUT`, ML leads, with a reason), and its history. The rules are `Registry::set_deployment`'s.

use crate::AppState;
use crate::http::{ApiError, Fields, authenticate, blocking, json_body};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use vigil_core::deploy::DeploymentSpec;
use vigil_core::ids::ModelName;
use vigil_core::store::AuditQuery;
use vigil_core::{Error, ErrorCode};

fn reply(r: Result<serde_json::Value, Error>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}

/// `GET /api/v1/deployments/{model}`.
pub async fn show(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let name = ModelName::parse(&model)?;
        let reg = st.registry.clone();
        let (d, arms) = blocking(move || reg.resolved_deployment(&name)).await?;
        Ok(vigil_api::deployment(&d, &arms))
    }
    .await;
    reply(r)
}

/// `PUT /api/v1/deployments/{model}` with `{"deployment": {"arms": […], "unit_key", "full_spool"}, "reason"}`;
/// arms name their version as `production`, a version number or an id.
pub async fn set(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(model): Path<String>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let v = json_body(&body)?;
        let reason = Fields(v.clone()).str("reason")?;
        let spec = DeploymentSpec::from_json(v.get("deployment").ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "deployment is required"))?)?;
        let name = ModelName::parse(&model)?;
        let reg = st.registry.clone();
        let (d, arms) = blocking(move || {
            let spec = reg.pin_versions(&name, spec)?;
            reg.set_deployment(&p, &name, &spec, &reason)?;
            reg.resolved_deployment(&name)
        })
        .await?;
        Ok(vigil_api::deployment(&d, &arms))
    }
    .await;
    reply(r)
}

/// `GET /api/v1/deployments/{model}/history`.
pub async fn history(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let name = ModelName::parse(&model)?;
        let reg = st.registry.clone();
        let events = blocking(move || reg.audit_log(&AuditQuery { model: Some(name.to_string()), action: Some("deployment.update".into()), ..Default::default() })).await?;
        Ok(vigil_api::deployment_history(&events))
    }
    .await;
    reply(r)
}

/// `GET /api/v1/deployment-policy`: which stages pinned live and shadow arms may run.
pub async fn policy(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let p = blocking(move || reg.deployment_policy()).await?;
        Ok(p.to_json())
    }
    .await;
    reply(r)
}

/// `PUT /api/v1/deployment-policy` with `{"policy": {"live_stages": […], "shadow_stages": […]}, "reason"}`.
pub async fn set_policy(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let v = json_body(&body)?;
        let reason = Fields(v.clone()).str("reason")?;
        let policy = vigil_core::deploy::DeploymentPolicy::from_json(v.get("policy").ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "policy is required"))?)?;
        let reg = st.registry.clone();
        let saved = blocking(move || reg.set_deployment_policy(&p, &policy, &reason)).await?;
        Ok(saved.to_json())
    }
    .await;
    reply(r)
}

/// `POST /api/v1/predictions/labels` with `{"labels": [{"prediction_id": "req_…", "label": "1"}, …]}`:
/// outcomes that arrived after the gateway's predictions, matched by request id.
pub async fn prediction_labels(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let v = json_body(&body)?;
        let list = v.get("labels").and_then(serde_json::Value::as_array).ok_or_else(|| Error::new(ErrorCode::InvalidRequest, "labels must be a list of {prediction_id, label}"))?;
        let mut pairs = Vec::with_capacity(list.len());
        for item in list {
            let id = item.get("prediction_id").and_then(serde_json::Value::as_str);
            // Labels may be numbers or text; they are never echoed back.
            let label = match item.get("label") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(if *b { "1" } else { "0" }.to_owned()),
                _ => None,
            };
            match (id, label) {
                (Some(i), Some(l)) => pairs.push((i.to_owned(), l)),
                _ => return Err(Error::new(ErrorCode::InvalidRequest, "each label needs a prediction_id (text) and a label (text, number or boolean)")),
            }
        }
        let reg = st.registry.clone();
        let (matched, unmatched) = blocking(move || reg.add_prediction_labels(&p, &pairs)).await?;
        Ok(serde_json::json!({"matched": matched, "unmatched": unmatched}))
    }
    .await;
    reply(r)
}

/// `GET /api/v1/predictions/{request_id}`: the logged records of a request (the live answer and
/// its shadow runs, paired by request id), by the gateway's id or the caller's. Audited.
pub async fn prediction(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let found = blocking(move || reg.predictions(&p, &id)).await?;
        if found.is_empty() {
            return Err(Error::new(ErrorCode::PredictionNotFound, "no prediction is logged under that id"));
        }
        Ok(serde_json::json!({"predictions": found.iter().map(vigil_core::predlog::prediction_json).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}
