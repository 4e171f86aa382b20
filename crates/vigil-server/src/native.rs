//! Vigil's native REST API under `/api/v1`. Errors use the one catalogue of stable codes
//! (`{"error": {"code", "message", "status"}}`).
//!
//! Served so far: login and logout (session tokens), API tokens, the caller's identity,
//! models and versions (read), and audit verification. The rest of the registry, approval,
//! lineage and drift operations are listed as open work in the server issue.

use crate::AppState;
use crate::http::{ApiError, Fields, authenticate, blocking, credentials, json_body};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_core::auth::Password;
use vigil_core::ids::UserId;
use vigil_core::session::ApiToken;
use vigil_core::{Error, ErrorCode};

/// The `/api/v1` routes.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/auth/login", post(login))
        .route("/auth/logout", post(logout))
        .route("/me", get(me))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/models", get(list_models))
        .route("/audit/verify", get(verify_audit))
}

/// The route pattern of a native path.
pub fn known_route(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1")?;
    Some(match rest {
        "/auth/login" | "/auth/logout" | "/me" | "/tokens" | "/models" | "/audit/verify" => format!("/api/v1{rest}"),
        r if r.starts_with("/tokens/") => "/api/v1/tokens/{id}".into(),
        _ => "/api/v1/{unknown}".into(),
    })
}

fn reply(r: Result<Value, Error>) -> Response {
    match r {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => ApiError::native(e).into_response(),
    }
}

fn token_json(t: &ApiToken) -> Value {
    json!({
        "id": t.id, "user": t.user_id.as_str(), "name": t.name, "kind": t.kind.as_str(),
        "created_at": t.created_at.to_rfc3339(), "expires_at": t.expires_at.map(|x| x.to_rfc3339()),
        "revoked_at": t.revoked_at.map(|x| x.to_rfc3339()),
    })
}

async fn login(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = async {
        let f = Fields(json_body(&body)?);
        let user = UserId::parse(&f.str("user")?).map_err(|_| Error::new(ErrorCode::AuthenticationFailed, "unknown user or wrong password"))?;
        let pw = Password::new(f.str("password")?);
        let reg = st.registry.clone();
        let (p, t, secret) = blocking(move || reg.login(&user, &pw)).await?;
        Ok(json!({
            "token": secret, "token_id": t.id, "expires_at": t.expires_at.map(|x| x.to_rfc3339()),
            "user": {"id": p.user_id().as_str(), "role": p.role().as_str(), "printed_name": p.printed_name()},
        }))
    }
    .await;
    reply(r)
}

async fn logout(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        if let Some(crate::http::Credentials::Bearer(secret)) = credentials(&headers)? {
            let reg = st.registry.clone();
            blocking(move || reg.logout(&p, &secret)).await?;
        }
        Ok(json!({}))
    }
    .await;
    reply(r)
}

async fn me(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        Ok(json!({"id": p.user_id().as_str(), "role": p.role().as_str(), "printed_name": p.printed_name()}))
    }
    .await;
    reply(r)
}

async fn list_tokens(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let tokens = blocking(move || reg.list_tokens(&p)).await?;
        Ok(json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}

async fn create_token(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields(json_body(&body)?);
        let name = f.str("name")?;
        let days = f.opt_i64("expires_in_days")?.map(|d| u32::try_from(d).map_err(|_| Error::new(ErrorCode::InvalidText, "expires_in_days is out of range"))).transpose()?;
        let reg = st.registry.clone();
        let (t, secret) = blocking(move || reg.create_token(&p, &name, days)).await?;
        let mut v = token_json(&t);
        v["token"] = json!(secret);
        Ok(v)
    }
    .await;
    reply(r)
}

async fn revoke_token(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let t = blocking(move || reg.revoke_token(&p, &id)).await?;
        Ok(token_json(&t))
    }
    .await;
    reply(r)
}

async fn list_models(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let models = blocking(move || reg.list_models()).await?;
        Ok(json!({"models": models.iter().map(|(m, vs)| {
            let mut v = vigil_api::model(m);
            v["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
            v
        }).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}

async fn verify_audit(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        vigil_core::auth::authorize(p.role(), vigil_core::auth::Action::ReadAudit)?;
        let reg = st.registry.clone();
        let (chain, sigs, records) = blocking(move || Ok((reg.verify_audit()?, reg.verify_signatures()?, reg.verify_records()?))).await?;
        Ok(vigil_api::chain_report(&chain, &sigs, &records))
    }
    .await;
    reply(r)
}
