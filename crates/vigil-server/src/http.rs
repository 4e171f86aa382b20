//! What every route shares: the two error formats (Vigil's and MLflow's), authentication from
//! `Authorization` headers, running blocking use cases off the async runtime, and reading
//! JSON bodies and query strings into clear 400s (never a framework's default rejection,
//! never the submitted values echoed back).

use crate::AppState;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::auth::{Password, Principal};
use vigil_core::ids::UserId;
use vigil_core::{Error, ErrorCode, ErrorKind};

/// Which wire format an error takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error": {"code", "message", "status"}}` under `/api/v1`.
    Native,
    /// `{"error_code", "message"}` under MLflow's `/api/2.0`.
    Mlflow,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    /// The domain error.
    pub error: Error,
    /// Its format.
    pub flavor: Flavor,
}

impl ApiError {
    /// A native-format error.
    pub fn native(error: Error) -> Self {
        ApiError { error, flavor: Flavor::Native }
    }

    /// An MLflow-format error.
    pub fn mlflow(error: Error) -> Self {
        ApiError { error, flavor: Flavor::Mlflow }
    }
}

/// MLflow's error code and HTTP status for a domain error. Policy refusals are 403 and
/// conflicts 400/409, never 429 or 5xx, which the MLflow client retries for minutes.
pub fn mlflow_code(e: &Error) -> (StatusCode, &'static str) {
    match (e.kind(), e.code()) {
        (_, ErrorCode::ExperimentExists | ErrorCode::ModelExists | ErrorCode::DuplicateVersion) => (StatusCode::BAD_REQUEST, "RESOURCE_ALREADY_EXISTS"),
        (_, ErrorCode::RouteNotFound) => (StatusCode::NOT_FOUND, "ENDPOINT_NOT_FOUND"),
        (ErrorKind::InvalidInput, _) => (StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE"),
        (ErrorKind::Unauthenticated, _) => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED"),
        (ErrorKind::Denied, _) => (StatusCode::FORBIDDEN, "PERMISSION_DENIED"),
        (ErrorKind::NotFound, _) => (StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST"),
        (ErrorKind::Conflict, _) => (StatusCode::CONFLICT, "RESOURCE_CONFLICT"),
        (ErrorKind::Internal, _) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR"),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self.error;
        let (status, body) = match self.flavor {
            Flavor::Native => {
                let status = StatusCode::from_u16(vigil_api::http_status(e.kind())).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, vigil_api::error(e))
            }
            Flavor::Mlflow => {
                let (status, code) = mlflow_code(e);
                (status, json!({"error_code": code, "message": format!("{} ({})", e.message(), e.code().as_str())}))
            }
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"vigil\", Bearer"));
        }
        // The error code, for logs and metrics (never the message: it may name a record).
        resp.extensions_mut().insert(ErrorTag(e.code().as_str()));
        resp
    }
}

/// The error code of a failed response, read by the request log.
#[derive(Debug, Clone, Copy)]
pub struct ErrorTag(pub &'static str);

/// Shorthand for a 400 with `invalid_request`.
pub fn bad_request(msg: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidRequest, msg)
}

/// Runs a blocking use case (the stores are synchronous) on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> vigil_core::Result<T> + Send + 'static) -> vigil_core::Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| Err(Error::storage("a request handler failed unexpectedly")))
}

/// Successful password checks, remembered briefly so that a client sending HTTP Basic on
/// every request (the MLflow client does) does not pay Argon2id each time. Keyed by a hash
/// of user and password; a failed check never enters it. Each use re-reads the user's
/// credential fingerprint (one indexed read), so a password change, lock, disablement or
/// role change takes effect immediately, on every replica.
#[derive(Default)]
pub struct BasicCache {
    entries: std::sync::Mutex<HashMap<[u8; 32], (Principal, String, Instant)>>,
}

const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

impl BasicCache {
    fn key(user: &str, password: &str) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(user.as_bytes());
        h.update([0]);
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn get(&self, k: &[u8; 32]) -> Option<(Principal, String)> {
        let map = self.entries.lock().ok()?;
        map.get(k).filter(|(_, _, at)| at.elapsed() < BASIC_CACHE_TTL).map(|(p, f, _)| (p.clone(), f.clone()))
    }

    fn put(&self, k: [u8; 32], p: Principal, fingerprint: String) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() > 10_000 {
                map.retain(|_, (_, _, at)| at.elapsed() < BASIC_CACHE_TTL);
            }
            map.insert(k, (p, fingerprint, Instant::now()));
        }
    }
}

/// The credentials of a request, if any.
pub enum Credentials {
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic <base64(user:password)>`.
    Basic(String, String),
}

/// Reads the `Authorization` header.
pub fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>, Error> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| Error::new(ErrorCode::AuthenticationFailed, "malformed Authorization header"))?;
    let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Ok(Some(Credentials::Bearer(rest.trim().to_owned()))),
        "basic" => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .map_err(|_| Error::new(ErrorCode::AuthenticationFailed, "malformed Basic credentials"))?;
            let text = String::from_utf8(raw).map_err(|_| Error::new(ErrorCode::AuthenticationFailed, "malformed Basic credentials"))?;
            let (u, p) = text.split_once(':').ok_or_else(|| Error::new(ErrorCode::AuthenticationFailed, "malformed Basic credentials"))?;
            Ok(Some(Credentials::Basic(u.to_owned(), p.to_owned())))
        }
        _ => Err(Error::new(ErrorCode::AuthenticationFailed, "use Bearer or Basic authentication")),
    }
}

/// Authenticates a request: a bearer token, or HTTP Basic with a user's password.
pub async fn authenticate(state: &Arc<AppState>, headers: &HeaderMap) -> Result<Principal, Error> {
    match credentials(headers)? {
        None => Err(Error::new(ErrorCode::AuthenticationFailed, "authentication required: send a Bearer token or HTTP Basic credentials")),
        Some(Credentials::Bearer(t)) => {
            let reg = state.registry.clone();
            blocking(move || reg.authenticate_token(&t)).await
        }
        Some(Credentials::Basic(u, p)) => {
            let key = BasicCache::key(&u, &p);
            let id = UserId::parse(&u).map_err(|_| Error::new(ErrorCode::AuthenticationFailed, "unknown user or wrong password"))?;
            let reg = state.registry.clone();
            if let Some((principal, fingerprint)) = state.basic_cache.get(&key) {
                let id2 = id.clone();
                let now = blocking(move || reg.credential_fingerprint(&id2)).await?;
                if now.as_deref() == Some(fingerprint.as_str()) {
                    return Ok(principal);
                }
            }
            let reg = state.registry.clone();
            let (principal, fingerprint) = blocking(move || {
                let p = reg.authenticate(&id, &Password::new(p))?;
                let f = reg.credential_fingerprint(&id)?.unwrap_or_default();
                Ok((p, f))
            })
            .await?;
            state.basic_cache.put(key, principal.clone(), fingerprint);
            Ok(principal)
        }
    }
}

/// Parses a JSON body; anything but a JSON object is a 400.
pub fn json_body(bytes: &[u8]) -> Result<Value, Error> {
    if bytes.is_empty() {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad_request(format!("the request body is not valid JSON (line {}, column {})", e.line(), e.column())))?;
    if !v.is_object() {
        return Err(bad_request("the request body must be a JSON object"));
    }
    Ok(v)
}

/// Query-string fields (repeated keys keep every value, in order).
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Request fields, whether they came as a JSON body or a query string.
pub struct Fields(pub Value);

impl Fields {
    /// From a query string: repeated keys become arrays.
    pub fn from_query(raw: Option<&str>) -> Self {
        let mut map = serde_json::Map::new();
        for (k, v) in query_pairs(raw) {
            match map.get_mut(&k) {
                Some(Value::Array(a)) => a.push(Value::String(v)),
                Some(old) => {
                    let first = old.take();
                    *old = Value::Array(vec![first, Value::String(v)]);
                }
                None => {
                    map.insert(k, Value::String(v));
                }
            }
        }
        Fields(Value::Object(map))
    }

    /// An optional string field.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.contains('\0') => Err(bad_request(format!("field '{}' may not contain NUL characters", field_name(key)))),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Array(a)) if a.len() == 1 => Fields(json!({key: a[0].clone()})).opt_str(key),
            Some(_) => Err(bad_request(format!("field '{}' must be a string", field_name(key)))),
        }
    }

    /// A required string field.
    pub fn str(&self, key: &str) -> Result<String, Error> {
        self.opt_str(key)?.ok_or_else(|| Error::new(ErrorCode::InvalidRequest, format!("missing value for required parameter '{}'", field_name(key))))
    }

    /// An optional int64 (a JSON number or a decimal string, as proto3 JSON allows).
    pub fn opt_i64(&self, key: &str) -> Result<Option<i64>, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => as_i64(v).map(Some).ok_or_else(|| bad_request(format!("field '{}' must be an integer", field_name(key)))),
        }
    }

    /// An optional array of strings (a single string counts as one).
    pub fn str_list(&self, key: &str) -> Result<Vec<String>, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(bad_request(format!("field '{}' must be a list of strings", field_name(key)))),
                })
                .collect(),
            Some(_) => Err(bad_request(format!("field '{}' must be a list of strings", field_name(key)))),
        }
    }

    /// An optional boolean (JSON bool or "true"/"false").
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(_) => Err(bad_request(format!("field '{}' must be a boolean", field_name(key)))),
        }
    }

    /// `[{key, value}]` pairs (tags, params).
    pub fn pairs(&self, key: &str) -> Result<Vec<(String, String)>, Error> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(|e| pair(e, key)).collect(),
            Some(_) => Err(bad_request(format!("field '{}' must be a list of {{key, value}} objects", field_name(key)))),
        }
    }
}

/// A `{key, value}` object.
pub fn pair(e: &Value, what: &str) -> Result<(String, String), Error> {
    let k = e.get("key").and_then(Value::as_str);
    let v = match e.get("value") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        None | Some(Value::Null) => Some(String::new()),
        _ => None,
    };
    match (k, v) {
        (Some(k), Some(v)) if k.contains('\0') || v.contains('\0') => Err(bad_request(format!("entries of '{}' may not contain NUL characters", field_name(what)))),
        (Some(k), Some(v)) => Ok((k.to_owned(), v)),
        _ => Err(bad_request(format!("each entry of '{}' needs a string key and a string value", field_name(what)))),
    }
}

/// An int64 from a JSON number or decimal string.
pub fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A double from a JSON number or one of proto3's strings ("NaN", "Infinity", "-Infinity").
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "Infinity" | "inf" => Some(f64::INFINITY),
            "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
            other => other.trim().parse().ok(),
        },
        _ => None,
    }
}

/// A double as proto3 JSON writes it.
pub fn f64_json(x: f64) -> Value {
    if x.is_nan() {
        json!("NaN")
    } else if x == f64::INFINITY {
        json!("Infinity")
    } else if x == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(x)
    }
}

/// Field names in messages: ours are fixed identifiers, but cap the length anyway.
fn field_name(key: &str) -> &str {
    if key.len() > 64 { &key[..64] } else { key }
}
