//! Vigil's HTTP server: one process that serves the native REST API under `/api/v1`, the
//! MLflow-compatible tracking API under `/api/2.0/mlflow` (so the stock `mlflow` client works
//! against it unchanged), MLflow's artifact proxy, health checks and Prometheus metrics.
//!
//! The server is thin: it authenticates, parses, calls one use case of
//! [`vigil_core::registry::Registry`] on the blocking pool, and renders the result. Every rule
//! (roles, separation of duties, immutability, audit) runs in the core, once.

pub mod artifacts;
pub mod deploy_api;
pub mod drift_api;
pub mod http;
pub mod metrics;
pub mod mlflow;
pub mod mlflow_registry;
pub mod native;
pub mod openapi;
pub mod tls;
pub mod validation_api;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use vigil_core::registry::Registry;

/// Shared by every request.
pub struct AppState {
    /// The use cases.
    pub registry: Arc<Registry>,
    /// Root directory of the local artifact store (with S3: the staging area only).
    pub artifacts: PathBuf,
    /// An S3-compatible artifact store, when configured (`s3://bucket/prefix`).
    pub remote: Option<artifacts::Remote>,
    /// Recently verified HTTP Basic credentials.
    pub basic_cache: http::BasicCache,
    /// Request counters and latencies.
    pub metrics: metrics::Metrics,
    /// Which requests get a log line: `all` (default), `errors` (status ≥ 400) or `off`
    /// (from `VIGIL_LOG`).
    pub log: LogLevel,
    next_request: AtomicU64,
    instance: String,
}

impl AppState {
    /// State over a registry and an artifact directory (created if missing).
    pub fn new(registry: Arc<Registry>, artifacts: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&artifacts)?;
        // Random per process, so request ids from replicas (often all PID 1) never collide.
        let mut b = [0u8; 4];
        if getrandom::getrandom(&mut b).is_err() {
            b = std::process::id().to_le_bytes();
        }
        Ok(AppState {
            registry,
            artifacts,
            remote: None,
            basic_cache: http::BasicCache::default(),
            metrics: metrics::Metrics::default(),
            log: LogLevel::from_env(),
            next_request: AtomicU64::new(1),
            instance: hex::encode(b),
        })
    }
}

impl AppState {
    /// Keeps artifacts in an S3-compatible store at `url` (`s3://bucket[/prefix]`), configured
    /// from the standard `AWS_*` environment (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP`).
    pub fn with_s3(self, url: &str) -> Result<Self, vigil_core::Error> {
        self.with_s3_options(url, &[])
    }

    /// As [`AppState::with_s3`], with explicit object_store options on top of the environment.
    pub fn with_s3_options(mut self, url: &str, options: &[(&str, &str)]) -> Result<Self, vigil_core::Error> {
        self.remote = Some(artifacts::Remote::from_url_with(url, options)?);
        Ok(self)
    }
}

/// Request logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Every request.
    All,
    /// Requests answered with status 400 or above.
    Errors,
    /// None.
    Off,
}

impl LogLevel {
    /// From `VIGIL_LOG` (`all`, `errors`, `off`; default `all`).
    pub fn from_env() -> Self {
        match std::env::var("VIGIL_LOG").as_deref() {
            Ok("off") => LogLevel::Off,
            Ok("errors") => LogLevel::Errors,
            _ => LogLevel::All,
        }
    }
}

/// Largest JSON request body (a full log-batch is far below this).
pub const MAX_JSON_BODY: usize = 16 * 1024 * 1024;

/// The route pattern a request matched, for logs and metrics (never the raw path, which may
/// name a model or a file).
#[derive(Debug, Clone)]
pub struct RouteLabel(pub String);

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::render))
        .route("/api/2.0/mlflow/{*rest}", any(mlflow::dispatch))
        .route("/ajax-api/2.0/mlflow/{*rest}", any(mlflow::dispatch))
        .route("/api/3.0/mlflow/server-info", get(|| async { axum::Json(mlflow_registry::server_info()) }))
        .route("/api/2.0/mlflow-artifacts/artifacts", get(artifacts::list))
        .route("/api/2.0/mlflow-artifacts/artifacts/{*path}", get(artifacts::download).put(artifacts::upload).layer(DefaultBodyLimit::disable()))
        .nest("/api/v1", native::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY))
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found(req: Request) -> Response {
    let e = vigil_core::Error::new(vigil_core::ErrorCode::RouteNotFound, "no such route");
    if req.uri().path().starts_with("/api/2.0") { http::ApiError::mlflow(e) } else { http::ApiError::native(e) }.into_response()
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let reg = st.registry.clone();
    match http::blocking(move || reg.is_initialized()).await {
        Ok(true) => (StatusCode::OK, "ready\n").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "store not initialised: run 'vigil init'\n").into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response(),
    }
}

/// Assigns a request id, times the request, counts it per route and status, and writes one
/// JSON log line to standard error: no query strings, bodies, credentials or record names.
async fn observe(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = format!("{}-{:08x}", st.instance, st.next_request.fetch_add(1, Ordering::Relaxed));
    let method = req.method().clone();
    let route = route_label(req.uri().path());
    req.extensions_mut().insert(RouteLabel(route.clone()));
    let mut resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    st.metrics.record(&route, status, elapsed);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if st.log == LogLevel::Off || (st.log == LogLevel::Errors && status < 400) {
        return resp;
    }
    let code = resp.extensions().get::<http::ErrorTag>().map(|t| t.0);
    let line = serde_json::json!({
        "ts": chrono_like_now(), "level": if status >= 500 { "error" } else { "info" }, "request_id": id,
        "method": method.as_str(), "route": route, "status": status, "ms": (elapsed.as_secs_f64() * 1e3 * 100.0).round() / 100.0,
        "error_code": code,
    });
    eprintln!("{line}");
    resp
}

fn chrono_like_now() -> String {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// The route pattern for a path: fixed segments kept, the variable tail replaced.
pub fn route_label(path: &str) -> String {
    if let Some(rest) = path.strip_prefix("/api/2.0/mlflow-artifacts/artifacts") {
        return if rest.is_empty() { "/api/2.0/mlflow-artifacts/artifacts".into() } else { "/api/2.0/mlflow-artifacts/artifacts/{path}".into() };
    }
    if path.starts_with("/api/2.0/mlflow/") || path.starts_with("/ajax-api/2.0/mlflow/") {
        // MLflow's paths are fixed except logged-models/{id}.
        return match mlflow::known_route(path) {
            Some(p) => p.to_owned(),
            None => "/api/2.0/mlflow/{unknown}".into(),
        };
    }
    if let Some(p) = native::known_route(path) {
        return p;
    }
    match path {
        "/healthz" | "/readyz" | "/metrics" | "/api/3.0/mlflow/server-info" => path.to_owned(),
        _ => "{unknown}".into(),
    }
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    serve_maybe_tls(listener, None, state, shutdown).await
}

/// Serves HTTP, or HTTPS when a TLS configuration is given, until `shutdown` completes.
pub async fn serve_maybe_tls(
    listener: tokio::net::TcpListener,
    tls: Option<tls::TlsConfig>,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Planner statistics: at start and every ten minutes, so that searches over a growing
    // store keep using the selective index.
    let reg = state.registry.clone();
    let maintenance = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            let r = reg.clone();
            let _ = http::blocking(move || r.optimize_store()).await;
        }
    });
    let app = router(state);
    let served = match tls {
        Some(config) => axum::serve(tls::TlsListener::new(listener, config)?, app).with_graceful_shutdown(shutdown).await,
        None => {
            let listener = listener.tap_io(|tcp| {
                // Small JSON responses must not wait for Nagle's algorithm.
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await
        }
    };
    maintenance.abort();
    served
}
