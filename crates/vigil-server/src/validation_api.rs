//! Validation and model cards in the native API: `POST …/validate` with the holdout as a CSV or
//! Parquet body (columns named in the query string) and `GET …/card?format=…`. The same use
//! case and renderers as `vigil validate` and `vigil card`.

use crate::AppState;
use crate::drift_api::{authorize_upload, stage, version};
use crate::http::{ApiError, Fields, authenticate, blocking};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;
use vigil_core::validate::{ArtifactCheck, PolicyScope};
use vigil_core::{Error, ErrorCode};

/// `POST …/validate?label=…&score=…[&champion_score=…][&sensitive=a,b][&threshold=…]`. The
/// model's validation policy decides the gates and the resamples. Artifacts in the server's
/// own store are re-hashed and compared with the recorded digest.
pub async fn validate(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery, body: Body) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let (label, score) = (f.str("label")?, f.str("score")?);
        let champion = f.opt_str("champion_score")?;
        let sensitive: Vec<String> = f.opt_str("sensitive")?.map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect()).unwrap_or_default();
        let threshold = match f.opt_str("threshold")? {
            Some(t) => t.trim().parse::<f64>().map_err(|_| Error::new(ErrorCode::InvalidValidationData, "threshold must be a number"))?,
            None => 0.5,
        };
        authorize_upload(&st, &p, &name, &ver, vigil_core::auth::Action::CheckDrift, "validation.run").await?;
        let staged = stage(&st, &headers, body).await?;
        let reg = st.registry.clone();
        let uri = {
            let (reg, name, ver) = (reg.clone(), name.clone(), ver.clone());
            blocking(move || Ok(version(&reg, &name, &ver)?.content.artifact_uri)).await?
        };
        let check = match crate::artifacts::tree_digest(&st, &uri).await {
            Ok(Some(d)) => Some(ArtifactCheck::Digest(d)),
            Ok(None) => None,
            Err(e) => Some(ArtifactCheck::Unreadable(e.message().to_owned())),
        };
        blocking(move || {
            let v = version(&reg, &name, &ver)?;
            let input = vigil_data::holdout_for(v.model_type, &staged.table()?, &label, &score, champion.as_deref(), &sensitive, threshold)?;
            let rec = reg.validate(&p, &v.id, &input, check)?;
            let mut out: serde_json::Value = serde_json::from_str(&rec.report).map_err(|_| Error::storage("stored report is not JSON"))?;
            out["report_id"] = json!(rec.id);
            Ok(out)
        })
        .await
    }
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}

/// `GET …/card?format=json|md|html|mct`.
pub async fn card(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, ver)): Path<(String, String)>, RawQuery(q): RawQuery) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let format = Fields::from_query(q.as_deref()).opt_str("format")?.unwrap_or_else(|| "json".into());
        if !matches!(format.as_str(), "json" | "md" | "html" | "mct") {
            return Err(Error::new(ErrorCode::InvalidText, "format is json, md, html or mct"));
        }
        let reg = st.registry.clone();
        let doc = blocking(move || {
            let v = version(&reg, &name, &ver)?;
            reg.audit_read(&p, vigil_core::phi::Read::Model(v.model_name.as_str()), "GET /api/v1/models/{name}/versions/{version}/card")?;
            let report = reg.card_evidence(&v.id)?;
            Ok(vigil_api::card::document(&v, report.as_ref()))
        })
        .await?;
        Ok((format, doc))
    }
    .await;
    match r {
        Ok((format, doc)) => match format.as_str() {
            "md" => ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], vigil_api::card::markdown(&doc)).into_response(),
            "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], vigil_api::card::html(&doc)).into_response(),
            "mct" => axum::Json(vigil_api::card::mct(&doc)).into_response(),
            _ => axum::Json(doc).into_response(),
        },
        Err(e) => ApiError::native(e).into_response(),
    }
}

fn policy_scope(scope: &str, target: &str) -> Result<(PolicyScope, String), Error> {
    match scope {
        "model" => Ok((PolicyScope::Model(vigil_core::ids::ModelName::parse(target)?), target.to_owned())),
        "model_type" => {
            let t = vigil_core::model::ModelType::parse(target)?;
            Ok((PolicyScope::ModelType(t), t.as_str().to_owned()))
        }
        _ => Err(Error::new(ErrorCode::InvalidPolicy, "the scope is model or model_type")),
    }
}

/// `GET /api/v1/validation-policies/{scope}/{target}`: the policy in force and its source.
pub async fn show_policy(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((scope, target)): Path<(String, String)>) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let (sc, name) = policy_scope(&scope, &target)?;
        let reg = st.registry.clone();
        let resolved = blocking(move || match &sc {
            PolicyScope::Model(n) => reg.validation_policy(n),
            PolicyScope::ModelType(t) => reg.type_validation_policy(*t),
        })
        .await?;
        Ok(vigil_api::validation_policy(&scope, &name, &resolved))
    }
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}

/// `PUT /api/v1/validation-policies/{scope}/{target}` with `{"policy": {…}, "reason": …}`.
pub async fn set_policy(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((scope, target)): Path<(String, String)>, body: axum::body::Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let v = crate::http::json_body(&body)?;
        let reason = Fields(v.clone()).str("reason")?;
        let policy = v.get("policy").cloned().ok_or_else(|| Error::new(ErrorCode::InvalidPolicy, "policy is required"))?;
        let (sc, name) = policy_scope(&scope, &target)?;
        let reg = st.registry.clone();
        let resolved = blocking(move || reg.set_validation_policy_json(&p, &sc, &policy, &reason)).await?;
        Ok(vigil_api::validation_policy(&scope, &name, &resolved))
    }
    .await;
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}
