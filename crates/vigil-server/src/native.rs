//! Vigil's native REST API under `/api/v1`. Errors use the one catalogue of stable codes
//! (`{"error": {"code", "message", "status"}}`).
//!
//! Served: login and logout (session tokens), API tokens, the caller's identity; models and
//! versions (list, show, register from a manifest); promotion requests (open, list, show,
//! withdraw) and their Part 11 signatures (approve / reject, with the signer's password in
//! the request body whatever token authenticated it); lineage; the audit log and its
//! verification. Drift operations are open work in the server issue.

use crate::AppState;
use crate::http::{ApiError, Fields, authenticate, blocking, credentials, json_body};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use serde_json::{Value, json};
use std::sync::Arc;
use vigil_core::auth::Password;
use vigil_core::ids::UserId;
use vigil_core::session::ApiToken;
use vigil_core::{Error, ErrorCode};

/// One operation of the native API. The router and the OpenAPI document are both built from
/// [`OPERATIONS`], so what is served and what is documented cannot drift apart.
pub struct Operation {
    /// `get`, `post`, `put` or `delete`.
    pub method: &'static str,
    /// Path under `/api/v1`, with `{param}` segments.
    pub path: &'static str,
    /// One line for the docs.
    pub summary: &'static str,
    /// Who may call it (the rule itself lives in the core's permission table).
    pub who: &'static str,
    /// JSON body fields: (name, JSON type, required).
    pub body: &'static [(&'static str, &'static str, bool)],
    /// Query parameters: (name, JSON type).
    pub query: &'static [(&'static str, &'static str)],
    /// Whether credentials are required.
    pub auth: bool,
    handler: fn() -> MethodRouter<Arc<AppState>>,
}

const NONE: &[(&str, &str, bool)] = &[];
const NOQ: &[(&str, &str)] = &[];

/// Every native operation.
pub const OPERATIONS: &[Operation] = &[
    Operation { method: "post", path: "/auth/login", summary: "Check a password and open a 12-hour session; returns a bearer token", who: "anyone with an account", body: &[("user", "string", true), ("password", "string", true)], query: NOQ, auth: false, handler: || post(login) },
    Operation { method: "post", path: "/auth/logout", summary: "Revoke the bearer token of this request", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || post(logout) },
    Operation { method: "get", path: "/me", summary: "The authenticated user", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(me) },
    Operation { method: "get", path: "/tokens", summary: "Your API tokens (administrators: everyone's); never their secrets", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(list_tokens) },
    Operation { method: "post", path: "/tokens", summary: "Create an API token (secret shown once; expires after 1-366 days, default 90)", who: "any authenticated user", body: &[("name", "string", true), ("expires_in_days", "integer", false)], query: NOQ, auth: true, handler: || post(create_token) },
    Operation { method: "delete", path: "/tokens/{id}", summary: "Revoke a token (your own; administrators: any)", who: "the owner or an administrator", body: NONE, query: NOQ, auth: true, handler: || delete(revoke_token) },
    Operation { method: "get", path: "/models", summary: "Registered models with their versions", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(list_models) },
    Operation { method: "post", path: "/models", summary: "Register a model version from a manifest (name, version, model_type, artifact_uri, artifact_sha256, metrics, lineage, card)", who: "data_scientist, ml_lead", body: &[("name", "string", true), ("version", "string", true), ("model_type", "string", true), ("artifact_uri", "string", true), ("artifact_sha256", "string", false), ("metrics", "object", false), ("lineage", "object", false), ("card", "object", false)], query: NOQ, auth: true, handler: || post(register_model) },
    Operation { method: "get", path: "/models/{name}", summary: "One model with its versions", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(show_model) },
    Operation { method: "get", path: "/models/{name}/versions/{version}", summary: "One version: stage, content, content hash", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(show_version) },
    Operation { method: "get", path: "/versions/{id}", summary: "One version by its id (mv_…)", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(show_version_by_id) },
    Operation { method: "put", path: "/models/{name}/versions/{version}", summary: "Replace a Development version's signed content from a manifest (artifact, metrics, lineage, card) with a reason; pending requests are superseded", who: "data_scientist, ml_lead", body: &[("artifact_uri", "string", true), ("artifact_sha256", "string", false), ("metrics", "object", false), ("lineage", "object", false), ("card", "object", false), ("reason", "string", true)], query: NOQ, auth: true, handler: || put(update_version) },
    Operation { method: "get", path: "/lineage", summary: "Versions trained on the data with this hash", who: "any authenticated user", body: NONE, query: &[("data_hash", "string")], auth: true, handler: || get(lineage_by_data) },
    Operation { method: "get", path: "/models/{name}/versions/{version}/lineage", summary: "Lineage: data, run, code, parent, requests with their signatures, stage history", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(lineage) },
    Operation { method: "get", path: "/promotions", summary: "Promotion requests, newest first", who: "any authenticated user", body: NONE, query: &[("status", "string"), ("model", "string"), ("limit", "integer")], auth: true, handler: || get(list_promotions) },
    Operation { method: "post", path: "/promotions", summary: "Request a stage transition (staging, production, archived)", who: "data_scientist, ml_lead", body: &[("model", "string", true), ("version", "string", true), ("to_stage", "string", true), ("justification", "string", true)], query: NOQ, auth: true, handler: || post(request_promotion) },
    Operation { method: "get", path: "/promotions/{id}", summary: "A request with its signatures and tally", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(show_promotion) },
    Operation { method: "post", path: "/promotions/{id}/approve", summary: "Sign an approval (21 CFR 11.200: the signer's password in this request, whatever authenticated it)", who: "roles the stage's policy names; never the requester or the version's author", body: &[("password", "string", true), ("meaning", "string", true), ("comment", "string", false)], query: NOQ, auth: true, handler: || post(approve) },
    Operation { method: "post", path: "/promotions/{id}/reject", summary: "Sign a rejection (password in this request); the request ends", who: "roles the stage's policy names", body: &[("password", "string", true), ("meaning", "string", true), ("comment", "string", false)], query: NOQ, auth: true, handler: || post(reject) },
    Operation { method: "post", path: "/promotions/{id}/withdraw", summary: "Withdraw a pending request", who: "the requester", body: &[("reason", "string", true)], query: NOQ, auth: true, handler: || post(withdraw) },
    Operation { method: "get", path: "/models/{name}/versions/{version}/drift/config", summary: "The version's drift configuration (the seed's DriftDetectorConfig fields)", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(crate::drift_api::get_config) },
    Operation { method: "put", path: "/models/{name}/versions/{version}/drift/config", summary: "Set the drift configuration (JSON)", who: "data_scientist, ml_lead", body: &[("psi_threshold", "number", false), ("ks_test_threshold", "number", false), ("performance_drop_threshold", "number", false), ("clinical_significance_threshold", "number", false), ("alert_on_drift", "boolean", false), ("alert_cooldown_hours", "number", false), ("correction", "string", false), ("binning", "string", false), ("min_window", "integer", false), ("features", "object", false), ("alert_confirm_windows", "integer", false), ("alert_window_count", "integer", false), ("alert_exit_fraction", "number", false), ("retrain_after_windows", "integer", false), ("retrain_accuracy_floor", "number", false), ("retrain_command", "string", false), ("webhooks", "array", false)], query: NOQ, auth: true, handler: || put(crate::drift_api::put_config) },
    Operation { method: "post", path: "/models/{name}/versions/{version}/drift/baseline", summary: "Profile training data (CSV or Parquet body) as a new baseline", who: "data_scientist, ml_lead", body: NONE, query: &[("prediction_col", "string"), ("id_col", "string"), ("label_col", "string"), ("ignore", "string")], auth: true, handler: || post(crate::drift_api::baseline).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "post", path: "/models/{name}/versions/{version}/drift/samples", summary: "Append production samples (CSV or Parquet body)", who: "data_scientist, ml_lead", body: NONE, query: &[("prediction_col", "string"), ("id_col", "string"), ("label_col", "string"), ("ignore", "string")], auth: true, handler: || post(crate::drift_api::samples).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "post", path: "/models/{name}/versions/{version}/drift/labels", summary: "Record labels that arrived after the predictions (CSV or Parquet body)", who: "data_scientist, ml_lead", body: NONE, query: &[("id_col", "string"), ("label_col", "string")], auth: true, handler: || post(crate::drift_api::labels).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "post", path: "/models/{name}/versions/{version}/drift/check", summary: "Check stored samples (or the data in the body) for drift; stores the report, updates alerts", who: "data_scientist, ml_lead, clinical_reviewer, compliance_officer", body: NONE, query: &[("window_rows", "integer"), ("since", "string"), ("prediction_col", "string")], auth: true, handler: || post(crate::drift_api::check).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "post", path: "/models/{name}/versions/{version}/validate", summary: "Validate the version on a holdout (CSV or Parquet body) under the model's validation policy: gates, report bound to the content hash", who: "data_scientist, ml_lead, clinical_reviewer, compliance_officer", body: NONE, query: &[("label", "string"), ("score", "string"), ("champion_score", "string"), ("sensitive", "string"), ("threshold", "number")], auth: true, handler: || post(crate::validation_api::validate).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "get", path: "/models/{name}/versions/{version}/card", summary: "The generated model card (json, md, html or mct)", who: "any authenticated user", body: NONE, query: &[("format", "string")], auth: true, handler: || get(crate::validation_api::card) },
    Operation { method: "get", path: "/drift/alerts", summary: "Drift alerts (active ones unless all=true)", who: "any authenticated user", body: NONE, query: &[("model", "string"), ("version", "string"), ("all", "boolean")], auth: true, handler: || get(crate::drift_api::alerts) },
    Operation { method: "post", path: "/drift/alerts/{id}/ack", summary: "Acknowledge an open alert", who: "data_scientist, ml_lead, clinical_reviewer, compliance_officer", body: &[("comment", "string", true)], query: NOQ, auth: true, handler: || post(crate::drift_api::ack) },
    Operation { method: "put", path: "/policies/{stage}", summary: "Set the approval policy of a target stage (staging, production, archived) with a reason", who: "admin", body: &[("required_approvals", "integer", true), ("required_roles", "array", true), ("eligible_roles", "array", true), ("expires_after_hours", "integer", false), ("reason", "string", true)], query: NOQ, auth: true, handler: || put(set_policy) },
    Operation { method: "get", path: "/validation-policies/{scope}/{target}", summary: "The validation policy in force for a model (scope model) or a model type's default (scope model_type), and its source", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(crate::validation_api::show_policy) },
    Operation { method: "put", path: "/validation-policies/{scope}/{target}", summary: "Set a model's validation policy or a model type's default with a reason; keys left out take the built-in values", who: "admin", body: &[("policy", "object", true), ("reason", "string", true)], query: NOQ, auth: true, handler: || put(crate::validation_api::set_policy) },
    Operation { method: "get", path: "/deployments/{model}", summary: "What the gateway serves for a model: arms (live share or shadow copy), the version each runs now and whether it may be served, the unit key", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(crate::deploy_api::show) },
    Operation { method: "put", path: "/deployments/{model}", summary: "Set a model's deployment with a reason: arms name production, a version number or an id; pinned arms must be in a stage the deployment policy permits", who: "ml_lead", body: &[("deployment", "object", true), ("reason", "string", true)], query: NOQ, auth: true, handler: || put(crate::deploy_api::set) },
    Operation { method: "get", path: "/deployment-policy", summary: "Which stages pinned live and shadow arms may run (default: Production and Staging)", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(crate::deploy_api::policy) },
    Operation { method: "put", path: "/deployment-policy", summary: "Set which stages pinned live and shadow arms may run, with a reason", who: "admin", body: &[("policy", "object", true), ("reason", "string", true)], query: NOQ, auth: true, handler: || put(crate::deploy_api::set_policy) },
    Operation { method: "post", path: "/features/{feature_set}", summary: "Feature values for the gateway's embedded online store: a CSV or Parquet body with one row per entity, the `entity` query parameter naming its id column; the newest value wins", who: "data_scientist, ml_lead", body: NONE, query: &[("entity", "string")], auth: true, handler: || post(crate::drift_api::put_features).layer(axum::extract::DefaultBodyLimit::disable()) },
    Operation { method: "post", path: "/predictions/labels", summary: "Outcomes for logged predictions, by the gateway's request id or the caller's id (`#i` for row i of a multi-row request); stored for every version that made the prediction (live and shadow)", who: "data_scientist, ml_lead", body: &[("labels", "array", true)], query: NOQ, auth: true, handler: || post(crate::deploy_api::prediction_labels) },
    Operation { method: "get", path: "/predictions/{request_id}", summary: "The logged records of a request: the live answer and its shadow runs, with inputs, outputs, version, digest, arm and latency; every read is audited", who: "data_scientist, ml_lead, clinical_reviewer, compliance_officer", body: NONE, query: NOQ, auth: true, handler: || get(crate::deploy_api::prediction) },
    Operation { method: "get", path: "/deployments/{model}/history", summary: "Every change of a model's deployment and every refused attempt", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(crate::deploy_api::history) },
    Operation { method: "get", path: "/policies", summary: "The approval policies per target stage", who: "any authenticated user", body: NONE, query: NOQ, auth: true, handler: || get(show_policies) },
    Operation { method: "get", path: "/audit", summary: "Audit events, oldest first (page with after_seq)", who: "every role", body: NONE, query: &[("model", "string"), ("version", "string"), ("actor", "string"), ("action", "string"), ("outcome", "string"), ("since", "string"), ("until", "string"), ("limit", "integer"), ("after_seq", "integer")], auth: true, handler: || get(audit_log) },
    Operation { method: "get", path: "/audit/verify", summary: "Verify the hash chain, every signature seal and every released record", who: "every role", body: NONE, query: NOQ, auth: true, handler: || get(verify_audit) },
];

/// The `/api/v1` routes, built from [`OPERATIONS`], plus the OpenAPI document and docs page.
pub fn routes() -> Router<Arc<AppState>> {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for op in OPERATIONS {
        match by_path.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, mr)) => *mr = std::mem::take(mr).merge((op.handler)()),
            None => by_path.push((op.path, (op.handler)())),
        }
    }
    let mut router = Router::new().route("/openapi.json", get(crate::openapi::document)).route("/docs", get(crate::openapi::docs));
    for (path, mr) in by_path {
        router = router.route(path, mr);
    }
    router
}

/// The route pattern of a native path.
pub fn known_route(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1")?;
    Some(match rest {
        "/auth/login" | "/auth/logout" | "/me" | "/tokens" | "/models" | "/promotions" | "/policies" | "/lineage" | "/audit" | "/audit/verify" | "/openapi.json" | "/docs" => format!("/api/v1{rest}"),
        r if r.starts_with("/tokens/") => "/api/v1/tokens/{id}".into(),
        r if r.starts_with("/policies/") => "/api/v1/policies/{stage}".into(),
        r if r.starts_with("/validation-policies/") => "/api/v1/validation-policies/{scope}/{target}".into(),
        r if r.starts_with("/promotions/") => match r.rsplit('/').next() {
            Some(a @ ("approve" | "reject" | "withdraw")) => format!("/api/v1/promotions/{{id}}/{a}"),
            _ => "/api/v1/promotions/{id}".into(),
        },
        r if r.starts_with("/versions/") => "/api/v1/versions/{id}".into(),
        "/deployment-policy" | "/predictions/labels" => format!("/api/v1{rest}"),
        r if r.starts_with("/features/") => "/api/v1/features/{feature_set}".into(),
        r if r.starts_with("/predictions/") => "/api/v1/predictions/{request_id}".into(),
        r if r.starts_with("/deployments/") => if r.ends_with("/history") { "/api/v1/deployments/{model}/history".into() } else { "/api/v1/deployments/{model}".into() },
        "/drift/alerts" => "/api/v1/drift/alerts".into(),
        r if r.starts_with("/drift/alerts/") => "/api/v1/drift/alerts/{id}/ack".into(),
        r if r.starts_with("/models/") => match (r.matches('/').count(), r.rsplit('/').next()) {
            (2, _) => "/api/v1/models/{name}".into(),
            (4, _) => "/api/v1/models/{name}/versions/{version}".into(),
            (6, Some(op @ ("config" | "baseline" | "samples" | "labels" | "check"))) => format!("/api/v1/models/{{name}}/versions/{{version}}/drift/{op}"),
            (5, Some(op @ ("validate" | "card"))) => format!("/api/v1/models/{{name}}/versions/{{version}}/{op}"),
            _ => "/api/v1/models/{name}/versions/{version}/lineage".into(),
        },
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
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let models = blocking(move || {
            let models = reg.list_models()?;
            let names: Vec<String> = models.iter().map(|(m, _)| m.name.to_string()).collect();
            reg.audit_read(&p, vigil_core::phi::Read::Models(&names), "GET /api/v1/models")?;
            Ok(models)
        })
        .await?;
        Ok(json!({"models": models.iter().map(|(m, vs)| {
            let mut v = vigil_api::model(m);
            v["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
            v
        }).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}

async fn set_policy(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(stage): Path<String>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let v = json_body(&body)?;
        let stage = vigil_core::model::Stage::parse(&stage)?;
        let policy = vigil_core::approval::ApprovalPolicy::from_json(&v)?;
        let reason = Fields(v).str("reason")?;
        let reg = st.registry.clone();
        Ok(vigil_api::policies(&blocking(move || reg.set_policy(&p, stage, policy, &reason)).await?))
    }
    .await;
    reply(r)
}

async fn update_version(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, version)): Path<(String, String)>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let mut v = json_body(&body)?;
        let reason = Fields(v.clone()).str("reason")?;
        if let Value::Object(m) = &mut v {
            m.remove("reason");
        }
        let content = vigil_api::manifest::Manifest::from_json(&v)?.content()?;
        let (n, ver) = model_ref(&name, &version)?;
        let reg = st.registry.clone();
        let mv = blocking(move || {
            let mv = reg.get_version(&n, &ver)?;
            reg.update_version_content(&p, &mv.id, content, &reason)
        })
        .await?;
        Ok(vigil_api::version(&mv))
    }
    .await;
    reply(r)
}

async fn lineage_by_data(State(st): State<Arc<AppState>>, headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let hash = Fields::from_query(q.as_deref()).str("data_hash")?;
        let reg = st.registry.clone();
        let vs = blocking(move || {
            let vs = reg.versions_by_data_hash(&hash)?;
            let mut names: Vec<String> = vs.iter().map(|v| v.model_name.to_string()).collect();
            names.dedup();
            reg.audit_read(&p, vigil_core::phi::Read::Models(&names), "GET /api/v1/lineage")?;
            Ok(vs)
        })
        .await?;
        Ok(json!({"versions": vs.iter().map(vigil_api::version).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}

async fn show_policies(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        Ok(vigil_api::policies(&blocking(move || reg.policies()).await?))
    }
    .await;
    reply(r)
}

async fn verify_audit(State(st): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        vigil_core::auth::authorize(p.role(), vigil_core::auth::Action::ReadAudit)?;
        let reg = st.registry.clone();
        let key = reg.key_id().to_owned();
        let (chain, sigs, records) = blocking(move || Ok((reg.verify_audit()?, reg.verify_signatures()?, reg.verify_records()?))).await?;
        Ok(vigil_api::chain_report(&chain, &sigs, &records, &key))
    }
    .await;
    reply(r)
}

fn model_ref(name: &str, version: &str) -> Result<(vigil_core::ids::ModelName, vigil_core::semver::Version), Error> {
    Ok((vigil_core::ids::ModelName::parse(name)?, vigil_core::semver::Version::parse(version)?))
}

async fn register_model(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let manifest = vigil_api::manifest::Manifest::from_json(&json_body(&body)?)?;
        let new = manifest.into_new_version()?;
        let reg = st.registry.clone();
        let v = blocking(move || reg.register_model(&p, new)).await?;
        Ok(vigil_api::version(&v))
    }
    .await;
    reply(r)
}

async fn show_model(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let name = vigil_core::ids::ModelName::parse(&name)?;
        let reg = st.registry.clone();
        let (m, vs) = blocking(move || {
            let models = reg.list_models()?;
            let found = models.into_iter().find(|(m, _)| m.name == name).ok_or_else(|| Error::new(ErrorCode::ModelNotFound, "no model with that name"))?;
            reg.audit_read(&p, vigil_core::phi::Read::Model(name.as_str()), "GET /api/v1/models/{name}")?;
            Ok(found)
        })
        .await?;
        let mut v = vigil_api::model(&m);
        v["versions"] = Value::Array(vs.iter().map(vigil_api::version).collect());
        Ok(v)
    }
    .await;
    reply(r)
}

async fn show_version(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, version)): Path<(String, String)>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let (n, v) = model_ref(&name, &version)?;
        let reg = st.registry.clone();
        let mv = blocking(move || {
            let mv = reg.get_version(&n, &v)?;
            reg.audit_read(&p, vigil_core::phi::Read::Model(n.as_str()), "GET /api/v1/models/{name}/versions/{version}")?;
            Ok(mv)
        })
        .await?;
        Ok(vigil_api::version(&mv))
    }
    .await;
    reply(r)
}

async fn show_version_by_id(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let mv = blocking(move || {
            let mv = reg.get_version_by_id(&id)?;
            reg.audit_read(&p, vigil_core::phi::Read::Model(mv.model_name.as_str()), "GET /api/v1/versions/{id}")?;
            Ok(mv)
        })
        .await?;
        Ok(vigil_api::version(&mv))
    }
    .await;
    reply(r)
}

async fn lineage(State(st): State<Arc<AppState>>, headers: HeaderMap, Path((name, version)): Path<(String, String)>) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let (n, v) = model_ref(&name, &version)?;
        let reg = st.registry.clone();
        let l = blocking(move || {
            let l = reg.lineage(&n, &v)?;
            reg.audit_read(&p, vigil_core::phi::Read::Model(n.as_str()), "GET /api/v1/models/{name}/versions/{version}/lineage")?;
            Ok(l)
        })
        .await?;
        Ok(vigil_api::lineage(&l))
    }
    .await;
    reply(r)
}

async fn request_promotion(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields(json_body(&body)?);
        let (n, v) = model_ref(&f.str("model")?, &f.str("version")?)?;
        let to = vigil_core::model::Stage::parse(&f.str("to_stage")?)?;
        let justification = f.str("justification")?;
        let reg = st.registry.clone();
        let req = blocking(move || {
            let mv = reg.get_version(&n, &v)?;
            reg.request_promotion(&p, &mv.id, to, &justification)
        })
        .await?;
        Ok(vigil_api::request(&req))
    }
    .await;
    reply(r)
}

async fn list_promotions(State(st): State<Arc<AppState>>, headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let filter = vigil_core::store::RequestFilter {
            status: f.opt_str("status")?.as_deref().map(vigil_core::approval::RequestStatus::parse).transpose()?,
            model: f.opt_str("model")?.as_deref().map(vigil_core::ids::ModelName::parse).transpose()?,
            limit: f.opt_i64("limit")?.map(|l| l.clamp(1, 10_000) as u32),
        };
        let reg = st.registry.clone();
        let rs = blocking(move || reg.list_requests(&filter)).await?;
        Ok(json!({"promotions": rs.iter().map(vigil_api::request).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}

async fn show_promotion(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let r = async {
        authenticate(&st, &headers).await?;
        let reg = st.registry.clone();
        let d = blocking(move || reg.get_request(&id)).await?;
        Ok(vigil_api::request_detail(&d))
    }
    .await;
    reply(r)
}

/// Approve or reject: the signer is the authenticated user, and the password in the body is
/// checked again for this signature (21 CFR 11.200), whatever authenticated the request.
async fn sign(st: Arc<AppState>, headers: HeaderMap, id: String, body: Bytes, approve: bool) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields(json_body(&body)?);
        let password = Password::new(f.str("password")?);
        let meaning = vigil_core::approval::Meaning::parse(&f.str("meaning")?)?;
        let comment = f.opt_str("comment")?.unwrap_or_default();
        let reg = st.registry.clone();
        let signer = p.user_id().clone();
        let out = blocking(move || {
            if approve {
                reg.approve_promotion(&signer, &password, &id, meaning, &comment)
            } else {
                reg.reject_promotion(&signer, &password, &id, meaning, &comment)
            }
        })
        .await?;
        let mut j = vigil_api::request(&out.request);
        j["signature"] = vigil_api::signature(&out.signature);
        j["tally"] = vigil_api::tally(&out.tally);
        Ok(j)
    }
    .await;
    reply(r)
}

async fn approve(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    sign(st, headers, id, body, true).await
}

async fn reject(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    sign(st, headers, id, body, false).await
}

async fn withdraw(State(st): State<Arc<AppState>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields(json_body(&body)?);
        let reason = f.str("reason")?;
        let reg = st.registry.clone();
        let req = blocking(move || reg.withdraw_promotion(&p, &id, &reason)).await?;
        Ok(vigil_api::request(&req))
    }
    .await;
    reply(r)
}

async fn audit_log(State(st): State<Arc<AppState>>, headers: HeaderMap, axum::extract::RawQuery(q): axum::extract::RawQuery) -> Response {
    let r = async {
        let p = authenticate(&st, &headers).await?;
        let f = Fields::from_query(q.as_deref());
        let query = vigil_core::store::AuditQuery {
            model: f.opt_str("model")?,
            version: f.opt_str("version")?,
            actor: f.opt_str("actor")?,
            action: f.opt_str("action")?,
            outcome: f.opt_str("outcome")?,
            since: f.opt_str("since")?.as_deref().map(vigil_core::ids::Timestamp::parse).transpose()?,
            until: f.opt_str("until")?.as_deref().map(vigil_core::ids::Timestamp::parse).transpose()?,
            limit: Some(f.opt_i64("limit")?.unwrap_or(1000).clamp(1, 10_000) as u32),
            after_seq: f.opt_i64("after_seq")?,
        };
        let reg = st.registry.clone();
        let events = blocking(move || reg.read_audit(&p, &query)).await?;
        Ok(json!({"events": events.iter().map(vigil_api::audit_event).collect::<Vec<_>>()}))
    }
    .await;
    reply(r)
}
