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
