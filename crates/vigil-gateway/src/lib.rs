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
//! A model's deployment decides which versions answer: live arms share the traffic by a keyed
//! hash of the unit key (sticky A/B, canary), shadow arms get copies on a bounded queue and a
//! thread of their own, so the caller's answer never waits for them or depends on them.
//!
//! Every answer and every shadow run is logged (module `spool`): a record per request and
//! arm with the request id, version, artifact digest, arm, hashed unit key, input vector,
//! outputs and latency, encoded on the request path into an in-memory buffer, written by a
//! thread of the spool to durable segment files and shipped into the registry, where it
//! feeds the drift monitor of that version.

mod catalog;
mod decode;
pub mod features;
mod mlflow;
mod shadow;
pub mod spool;

pub use catalog::{Artifacts, Catalog, Endpoint, Entry, LiveArm, Served, ShadowArm, deployable, load_version, retry_after};
pub use shadow::SHADOW_QUEUE;
pub use spool::{Spool, SpoolConfig};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value as Js, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use vigil_core::ids::IdGenerator;

/// Largest request body (bytes).
pub const MAX_BODY: usize = 16 << 20;

/// Counters, exposed at `/metrics`. The first cache line (the struct starts one, `repr(C)`
/// keeps the order) holds only what request threads count: a live request counts three of
/// them (answered, keyed or random, and queued for the log), so it takes that line from the
/// other CPU once; the shadow thread's and the log's threads' counters come after it. Until
/// 2026-12-02 the struct was not aligned and `log_queued` came after the shadow thread's
/// counters, most likely on another line than `answered`.
#[derive(Default)]
#[repr(C, align(64))]
pub struct Counters {
    /// Requests answered (2xx) by a live arm.
    pub answered: AtomicU64,
    /// Requests assigned by the unit key.
    pub keyed: AtomicU64,
    /// Requests assigned at random (no unit key given).
    pub random: AtomicU64,
    /// Prediction records queued for the spool.
    pub log_queued: AtomicU64,
    /// Copies queued for shadow arms.
    pub shadow_queued: AtomicU64,
    /// Copies dropped because the shadow queue was full.
    pub shadow_dropped: AtomicU64,
    /// Answers refused (503) because the spool was full and the endpoint's policy is `reject`.
    pub log_rejected: AtomicU64,
    /// Answers returned unlogged because the spool was full and the policy is `drop` (shadow
    /// records are always dropped, never refused).
    pub log_dropped: AtomicU64,
    /// Shadow runs that succeeded.
    pub shadow_ok: AtomicU64,
    /// Shadow runs that failed (never affecting the caller).
    pub shadow_failed: AtomicU64,
    /// Model runs (live or shadow) that failed on a request that fits the model (an operator
    /// form met only while running, or a panic in the engine, contained): a live request gets
    /// a 500 `model_fault`; a shadow run counts as failed too.
    pub model_faults: AtomicU64,
    /// Pauses the shadow thread took to hold itself to about 1% of a CPU while the CPUs were saturated.
    pub shadow_pauses: AtomicU64,
    /// Records written to spool files.
    pub log_spooled: AtomicU64,
    /// Records stored in the registry.
    pub log_stored: AtomicU64,
    /// Records that could not be written to the spool.
    pub log_failed: AtomicU64,
    /// Spool frames that could not be read back (cut short by a crash, or damaged).
    pub log_corrupt: AtomicU64,
    /// Shipping attempts that found the registry unavailable (retried).
    pub log_ship_retries: AtomicU64,
    /// Records in segments the registry refused, kept aside as `failed-…` files.
    pub log_quarantined: AtomicU64,
    /// Online feature lookups that succeeded, by duration: one counter per bucket of
    /// [`LOOKUP_BUCKETS_US`] (non-cumulative) and one past the last.
    pub lookup_buckets: [AtomicU64; LOOKUP_BUCKETS_US.len() + 1],
    /// Their total duration (µs).
    pub lookup_sum_us: AtomicU64,
}

const _: () = assert!(std::mem::align_of::<Counters>() == 64 && std::mem::offset_of!(Counters, log_dropped) + 8 <= 64 && std::mem::offset_of!(Counters, shadow_ok) >= 64);

/// Lowers the calling thread's scheduling priority (nice 10) so that background work that
/// must keep up (storing the prediction log) yields the CPUs to live requests. Linux only,
/// where the nice value belongs to the thread; elsewhere nothing changes.
pub(crate) fn background_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::nice(10) {
        eprintln!("vigil gateway: could not lower a background thread's priority: {e}");
    }
}

/// Puts the calling thread under `SCHED_IDLE` (Linux; elsewhere nothing changes): it runs only when no other thread wants
/// the CPU. Such a thread must never hold anything a request thread (or another writer of the
/// registry) could wait for: once there, an unprivileged thread cannot leave `SCHED_IDLE`.
pub(crate) fn idle_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) = thread_priority::set_thread_priority_and_policy(thread_priority::thread_native_id(), ThreadPriority::Min, idle) {
            eprintln!("vigil gateway: a background thread's priority could not be lowered: {e:?}");
        }
    }
}

/// Upper bounds (µs) of the online feature lookup histogram's buckets.
pub const LOOKUP_BUCKETS_US: [u64; 14] = [25, 50, 75, 100, 150, 200, 300, 500, 750, 1_000, 2_000, 5_000, 10_000, 50_000];

impl Counters {
    fn lookup_took(&self, micros: u64) {
        let i = LOOKUP_BUCKETS_US.iter().position(|b| micros <= *b).unwrap_or(LOOKUP_BUCKETS_US.len());
        self.lookup_buckets[i].fetch_add(1, Ordering::Relaxed);
        self.lookup_sum_us.fetch_add(micros, Ordering::Relaxed);
    }
}

/// Who asked: the gateway's request id and the caller's own, if it gave one.
#[derive(Clone)]
struct RequestIds {
    request_id: String,
    client_id: Option<String>,
}

/// How a request was routed.
struct Routed<'e> {
    arm: &'e LiveArm,
    how: &'static str,
    bucket: Option<u32>,
    unit_hash: Option<vigil_core::deploy::UnitHash>,
}

/// A routed request between routing and delivery (see `Gateway::pending`).
struct Pending<'e> {
    routed: Routed<'e>,
    ids: RequestIds,
    start: Instant,
    /// `Some` when the endpoint has shadow arms: the copy of the input they get (`None` if
    /// their queue was full).
    shadows: Option<Option<Vec<(String, vigil_onnx::Tensor)>>>,
    looked: Option<Looked>,
}

/// A model's answer to a live request, with its input when that is to be logged.
struct Answer {
    outputs: Vec<(String, vigil_onnx::Value)>,
    inputs: Option<vigil_onnx::Inputs>,
}

/// Why a model's run gave no answer: the request does not fit the model (the caller's
/// mistake: 400, `bad_input`), or the model failed on a request that fits it (ours: 500,
/// `model_fault`). Messages name inputs and operators, never a value.
pub(crate) enum RunFailure {
    Bad(String),
    Fault(String),
}

impl RunFailure {
    fn of(e: &vigil_onnx::Error) -> RunFailure {
        match e.kind() {
            vigil_onnx::ErrorKind::BadInput => RunFailure::Bad(e.message().to_owned()),
            // An operator or attribute form met only while running (a load checks what it can).
            vigil_onnx::ErrorKind::Unsupported | vigil_onnx::ErrorKind::Invalid => RunFailure::Fault(format!("model_fault: the model could not be run: {}", e.message())),
        }
    }

    /// Its message.
    pub(crate) fn message(self) -> String {
        match self {
            RunFailure::Bad(m) | RunFailure::Fault(m) => m,
        }
    }

    /// The refusal in the caller's protocol, with its stable code in `x-vigil-error`.
    fn response(self, oip: bool) -> Response {
        let (status, code, m) = match self {
            RunFailure::Bad(m) => (StatusCode::BAD_REQUEST, "bad_input", m),
            RunFailure::Fault(m) => (StatusCode::INTERNAL_SERVER_ERROR, "model_fault", m),
        };
        let mut r = if oip { oip_error(status, m) } else { mlflow_error(status, if status == StatusCode::BAD_REQUEST { "BAD_REQUEST" } else { "INTERNAL_ERROR" }, m) };
        r.headers_mut().insert("x-vigil-error", HeaderValue::from_static(code));
        r
    }
}

/// A model's run, its failure told apart (see [`RunFailure`]) and a panic in it contained:
/// faults (panics included) are counted in `model_faults`.
pub(crate) fn contained<T>(counters: &Counters, run: impl FnOnce() -> Result<T, vigil_onnx::Error>) -> Result<T, RunFailure> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(Ok(a)) => Ok(a),
        Ok(Err(e)) => {
            let f = RunFailure::of(&e);
            if matches!(f, RunFailure::Fault(_)) {
                counters.model_faults.fetch_add(1, Ordering::Relaxed);
            }
            Err(f)
        }
        Err(_) => {
            counters.model_faults.fetch_add(1, Ordering::Relaxed);
            Err(RunFailure::Fault(MODEL_PANICKED.into()))
        }
    }
}

/// The message of a run the engine broke off with a panic.
const MODEL_PANICKED: &str = "model_fault: the model failed while running this request (an internal fault, counted in vigil_gateway_model_faults_total)";

/// What an online feature lookup gave a request (for the log).
struct Looked {
    statuses: std::collections::BTreeMap<String, Vec<String>>,
    micros: u64,
}

/// The gateway: a catalog of served models and the model `/invocations` answers for.
pub struct Gateway {
    /// Loaded models.
    pub catalog: Catalog,
    /// The model MLflow's `/invocations` scores (default: the only model served).
    pub default_model: Option<String>,
    /// Counters.
    pub counters: Arc<Counters>,
    shadow: Arc<shadow::ShadowQueue>,
    spool: Option<Arc<Spool>>,
    ids: vigil_core::ids::UuidV7Ids,
    rng: AtomicU64,
}

impl Gateway {
    /// A gateway over a registry whose artifacts are under `artifacts`, without a prediction
    /// log (library use and tests of routing alone). Starts the shadow worker thread.
    pub fn new(registry: Arc<vigil_core::registry::Registry>, artifacts: Artifacts, default_model: Option<String>) -> Self {
        Self::build(registry, artifacts, default_model, Arc::new(Counters::default()), None)
    }

    /// A gateway that logs every prediction through a spool (see [`spool`]).
    pub fn with_log(registry: Arc<vigil_core::registry::Registry>, artifacts: Artifacts, default_model: Option<String>, spool: SpoolConfig) -> std::io::Result<Self> {
        let counters = Arc::new(Counters::default());
        let spool = Spool::open(spool, registry.clone(), counters.clone())?;
        Ok(Self::build(registry, artifacts, default_model, counters, Some(Arc::new(spool))))
    }

    fn build(registry: Arc<vigil_core::registry::Registry>, artifacts: Artifacts, default_model: Option<String>, counters: Arc<Counters>, spool: Option<Arc<Spool>>) -> Self {
        // Shadow copies run on a thread of their own at idle priority (see `shadow`).
        let shadow = shadow::start(counters.clone(), spool.as_ref().map(|s| s.background_log()));
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1;
        Gateway { catalog: Catalog::new(registry, artifacts), default_model, counters, shadow, spool, ids: vigil_core::ids::UuidV7Ids, rng: AtomicU64::new(seed) }
    }

    /// The prediction log's spool, if this gateway logs.
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        self.spool.as_ref()
    }

    /// A random bucket (SplitMix64 over an atomic counter).
    fn random_bucket(&self) -> u32 {
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % u64::from(vigil_core::deploy::BUCKETS)) as u32
    }

    /// Picks the live arm for a request: by the unit key when one is configured and given
    /// (its keyed hash kept for the log), else at random.
    fn route<'e>(&self, ep: &'e Endpoint, unit: Option<String>) -> Routed<'e> {
        let (bucket, how, unit_hash) = match unit {
            Some(u) => {
                self.counters.keyed.fetch_add(1, Ordering::Relaxed);
                if self.spool.is_some() {
                    let (h, b) = self.catalog.registry().unit_bucket(&ep.name, &u);
                    (b, "keyed", Some(h))
                } else {
                    (self.catalog.registry().unit_bucket_only(&ep.name, &u), "keyed", None)
                }
            }
            None => {
                self.counters.random.fetch_add(1, Ordering::Relaxed);
                (self.random_bucket(), "random", None)
            }
        };
        Routed { arm: ep.arm_for(bucket), how, bucket: Some(bucket), unit_hash }
    }

    /// Queues copies for the shadow arms whose share the request's bucket falls in (`inputs` is
    /// `None` when the queue was already full: those copies are counted as dropped).
    fn shadow_copies(&self, ep: &Endpoint, r: &Routed<'_>, inputs: Option<Vec<(String, vigil_onnx::Tensor)>>, ids: &RequestIds, statuses: Option<&std::collections::BTreeMap<String, Vec<String>>>) {
        let Some(bucket) = r.bucket else { return };
        let mut inputs = inputs;
        let mut arms = ep.shadows.iter().filter(|sh| bucket < sh.share).peekable();
        while let Some(sh) = arms.next() {
            // The last copy takes the tensors themselves.
            let copy = if arms.peek().is_some() { inputs.clone() } else { inputs.take() };
            let Some(copy) = copy else {
                self.counters.shadow_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let job = shadow::ShadowJob {
                served: sh.served.clone(),
                inputs: copy,
                endpoint: ep.name.clone(),
                arm: sh.name.clone(),
                ids: ids.clone(),
                how: r.how,
                bucket: r.bucket,
                unit_hash: r.unit_hash,
                feature_statuses: statuses.cloned(),
            };
            if self.shadow.offer(job) {
                self.counters.shadow_queued.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counters.shadow_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// What a routed request carries to its delivery: its ids, and the copy of its input the
    /// shadows need (made before the model consumes the tensors).
    fn pending<'e>(&self, ep: &Endpoint, routed: Routed<'e>, client: Option<String>, start: Instant, tensors: &[(String, vigil_onnx::Tensor)], looked: Option<Looked>) -> Pending<'e> {
        // No copy while the shadow queue is full (the copies are counted as dropped on delivery).
        let shadows = (!ep.shadows.is_empty() && routed.bucket.is_some()).then(|| (!self.shadow.full()).then(|| tensors.to_vec()));
        Pending { routed, ids: self.request_ids(client), start, shadows, looked }
    }

    /// Runs the routed arm's model on the request's input. When the answer is to be logged,
    /// the model gives the input back with the outputs (the log records it as the model saw
    /// it, without a copy made beforehand). A panic in the engine (a defect, never seen) is
    /// contained: the request gets a 500 and the gateway goes on.
    fn run_model(&self, p: &Pending<'_>, tensors: vigil_onnx::Inputs) -> Result<Answer, RunFailure> {
        let model = &p.routed.arm.served.model;
        let keep = self.spool.is_some();
        contained(&self.counters, || {
            if keep {
                model.run_keeping_inputs(tensors).map(|(outputs, inputs)| Answer { outputs, inputs: Some(inputs) })
            } else {
                model.run(tensors).map(|outputs| Answer { outputs, inputs: None })
            }
        })
    }

    /// Delivers a live answer (`resp`, in the caller's protocol): logs it (or refuses it with
    /// 503 when the spool is full and the endpoint does not answer unlogged), queues the shadow
    /// copies, and names what answered in the headers.
    fn deliver(&self, ep: &Endpoint, p: Pending<'_>, answer: Answer, mut resp: Response, oip: bool) -> Response {
        // (A refused answer is replaced whole, headers included.)
        answer_headers(&mut resp, &p.routed, &p.ids);
        if self.log_answer(ep, &p.routed, &p.ids, p.start, answer.inputs, &answer.outputs, p.looked.as_ref()).is_err() {
            return spool_full(StatusCode::SERVICE_UNAVAILABLE, oip);
        }
        if let Some(copy) = p.shadows {
            self.shadow_copies(ep, &p.routed, copy, &p.ids, p.looked.as_ref().map(|l| &l.statuses));
        }
        self.counters.answered.fetch_add(1, Ordering::Relaxed);
        resp
    }

    /// Logs a live answer (copied: the request frees its own input and outputs, see
    /// `spool::flat`). `Err(())` when the spool is full and the endpoint refuses to answer
    /// unlogged.
    #[allow(clippy::too_many_arguments)]
    fn log_answer(&self, ep: &Endpoint, r: &Routed<'_>, ids: &RequestIds, start: Instant, inputs: Option<Vec<(String, vigil_onnx::Tensor)>>, outputs: &[(String, vigil_onnx::Value)], looked_up: Option<&Looked>) -> Result<(), ()> {
        let (Some(log), Some(inputs)) = (&self.spool, inputs) else { return Ok(()) };
        let live = spool::Live {
            request_id: &ids.request_id,
            client_id: ids.client_id.as_deref(),
            endpoint: &ep.name,
            arm: &r.arm.name,
            served: &r.arm.served,
            assignment: r.how,
            unit_hash: r.unit_hash.as_ref().map(vigil_core::deploy::UnitHash::as_str),
            bucket: r.bucket,
            at_micros: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64),
            latency_us: start.elapsed().as_micros() as u64,
            lookup_us: looked_up.map(|l| l.micros),
            inputs: &inputs,
            outputs,
            feature_statuses: looked_up.map(|l| &l.statuses),
        };
        if log.offer(&live) {
            self.counters.log_queued.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match ep.full_spool {
            vigil_core::deploy::FullSpool::Reject => {
                self.counters.log_rejected.fetch_add(1, Ordering::Relaxed);
                Err(())
            }
            vigil_core::deploy::FullSpool::Drop => {
                self.counters.log_dropped.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// The request's ids: a new gateway id, and the caller's (`x-request-id`, or the OIP
    /// body's `id`) when given and well formed.
    fn request_ids(&self, client: Option<String>) -> RequestIds {
        RequestIds { request_id: self.ids.new_id("req"), client_id: client }
    }
}

/// A refusal: status, stable code, message.
type Refusal = (StatusCode, &'static str, String);

/// Looks up a request's features: `Ok(None)` when the endpoint has no lookup or the request
/// carries its inputs itself.
fn lookup(gw: &Gateway, ep: &Endpoint, entities: Option<Vec<Js>>) -> Result<Option<(decode::Frame, Looked)>, Refusal> {
    let (Some(cfg), Some(entities)) = (&ep.features, entities) else { return Ok(None) };
    let l = cfg.as_ref().map_err(|why| (StatusCode::SERVICE_UNAVAILABLE, "feature_lookup_unconfigured", format!("feature_lookup_unconfigured: {why}")))?;
    match l.fetch(gw.catalog.registry(), &entities) {
        Ok(a) => {
            gw.counters.lookup_took(a.micros);
            Ok(Some((a.frame, Looked { statuses: a.statuses, micros: a.micros })))
        }
        Err(features::Failure::Bad(m)) => Err((StatusCode::BAD_REQUEST, "bad_entity", m)),
        Err(features::Failure::Missing(m)) => Err((StatusCode::UNPROCESSABLE_ENTITY, "feature_missing", m)),
        Err(features::Failure::Unavailable(m)) => Err((StatusCode::BAD_GATEWAY, "feature_store_unavailable", m)),
    }
}

/// The entity ids of an OIP request that names only the endpoint's join key as input.
fn oip_entities(ep: &Endpoint, probe: &Served, inputs: &decode::OipInputs) -> Option<Vec<Js>> {
    let Some(Ok(l)) = &ep.features else { return None };
    let decode::OipInputs::List(list) = inputs else { return None };
    let [one] = list.as_slice() else { return None };
    if one.name() != Some(l.spec.entity.as_str()) || probe.model.inputs().iter().any(|i| i.name == l.spec.entity) {
        return None;
    }
    // The ids in row-major order, however the list nests them.
    one.data.as_ref().filter(|d| d.list && !d.too_deep).map(|d| d.cells.to_json())
}

fn feature_error(oip: bool, (status, code, m): Refusal) -> Response {
    let mut r = if oip { oip_error(status, m) } else { mlflow_error(status, if status == StatusCode::BAD_REQUEST || status == StatusCode::UNPROCESSABLE_ENTITY { "INVALID_PARAMETER_VALUE" } else { "TEMPORARILY_UNAVAILABLE" }, m) };
    r.headers_mut().insert("x-vigil-error", HeaderValue::from_static(code));
    r
}

/// The message of a refusal for a full spool.
const SPOOL_FULL: &str = "prediction_log_full: the prediction log is full and this endpoint does not answer unlogged; retry later";

/// A tabular request as the inputs of `s`'s model: when its one input takes the version's
/// recorded feature names as its columns, the columns are taken by those names.
fn frame_inputs(s: &Served, frame: decode::Frame) -> Result<Vec<(String, vigil_onnx::Tensor)>, decode::Bad> {
    let recorded = match s.columns.as_slice() {
        [only] if s.columns_named && only.len() > 1 => Some(only.as_slice()),
        _ => None,
    };
    decode::frame_inputs(&s.model, frame, recorded)
}

/// The caller's request id from `x-request-id`: `Ok(None)` when absent, `Err` when malformed.
fn client_request_id(headers: &HeaderMap) -> Result<Option<String>, &'static str> {
    match headers.get("x-request-id") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if valid_client_id(s) => Ok(Some(s.to_owned())),
            _ => Err("x-request-id must be 1-128 characters of letters, digits and . _ : -"),
        },
    }
}

fn valid_client_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The unit key of a request, from the configured header or request parameter.
fn unit_key(ep: &Endpoint, headers: &HeaderMap, params: Option<&Js>) -> Option<String> {
    match ep.unit_key.as_ref()? {
        vigil_core::deploy::UnitKey::Header(h) => headers.get(h.as_str()).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned),
        vigil_core::deploy::UnitKey::Field(f) => match params?.get(f.as_str())? {
            Js::String(s) if !s.is_empty() => Some(s.clone()),
            Js::Number(n) => Some(n.to_string()),
            _ => None,
        },
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
        .route("/metrics", get(metrics))
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

/// The endpoint of `name` (and, when a version is given, only if a live arm runs it).
fn endpoint(gw: &Gateway, name: &str, version: Option<&str>) -> Result<Arc<Endpoint>, (StatusCode, String)> {
    match gw.catalog.get(name) {
        None => Err((StatusCode::NOT_FOUND, "no model of that name is served (it needs a version in Production)".into())),
        Some(Entry::Failed(u)) => Err((StatusCode::SERVICE_UNAVAILABLE, format!("version {} is in Production but cannot be served: {}", u.version, u.reason))),
        Some(Entry::Ready(e)) => match version {
            Some(v) if e.live_version(v).is_none() => Err((StatusCode::NOT_FOUND, "that version is not served (only the deployment's live versions answer)".into())),
            _ => Ok(e),
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
    match endpoint(gw, m, v) {
        Ok(ep) => {
            let s = match v {
                Some(v) => ep.live_version(v).map_or(ep.live[0].served.clone(), |a| a.served.clone()),
                None => ep.live[0].served.clone(),
            };
            let mut versions: Vec<&str> = ep.live.iter().map(|a| a.served.version.as_str()).collect();
            versions.dedup();
            Json(json!({
            "name": s.name,
            "versions": versions,
            "platform": "onnx_onnxv1",
            "inputs": s.model.inputs().iter().map(|i| {
                let mut m = tensor_meta(i);
                m["parameters"]["accepts_missing_values"] = json!(s.model.accepts_missing_in(&i.name));
                m
            }).collect::<Vec<_>>(),
            "outputs": s.model.outputs().iter().map(|o| tensor_meta(o)).collect::<Vec<_>>(),
            "parameters": {
                "version_id": s.version_id, "artifact_sha256": s.digest, "accepts_missing_values": s.model.accepts_missing,
                "deployment_revision": ep.revision,
                "arms": ep.live.iter().map(|a| json!({"name": &*a.name, "version": a.served.version, "percent": f64::from(a.hi - a.lo) / 100.0})).collect::<Vec<_>>(),
                "shadows": ep.shadows.iter().map(|a| json!({"name": &*a.name, "version": a.served.version, "percent": f64::from(a.share) / 100.0})).collect::<Vec<_>>(),
                "degraded": ep.degraded.iter().map(|(n, why)| json!({"arm": n, "reason": why})).collect::<Vec<_>>(),
            },
        }))
        .into_response()
        }
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
    match endpoint(gw, m, v) {
        Ok(ep) => Json(json!({"name": &*ep.name, "ready": true})).into_response(),
        Err((st, msg)) => oip_error(st, msg),
    }
}

async fn model_ready(State(gw): State<Arc<Gateway>>, Path(m): Path<String>) -> Response {
    ready(&gw, &m, None)
}

async fn model_ready_v(State(gw): State<Arc<Gateway>>, Path((m, v)): Path<(String, String)>) -> Response {
    ready(&gw, &m, Some(&v))
}

/// The headers naming what answered: the version, the arm, how the arm was chosen, and the
/// request id the prediction is logged under.
fn answer_headers(resp: &mut Response, r: &Routed<'_>, ids: &RequestIds) {
    let (arm, how) = (r.arm, r.how);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        h.insert("x-vigil-request-id", v);
    }
    h.insert("x-vigil-model-version", HeaderValue::from_str(&format!("{}@{}", arm.served.name, arm.served.version)).unwrap_or(HeaderValue::from_static("unknown")));
    h.insert("x-vigil-arm", HeaderValue::from_str(&arm.name).unwrap_or(HeaderValue::from_static("unknown")));
    h.insert("x-vigil-assignment", HeaderValue::from_static(how));
}

fn run_oip(gw: &Gateway, m: &str, v: Option<&str>, headers: &HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let start = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return oip_error(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {} MiB", MAX_BODY >> 20)),
        Err(_) => return oip_error(StatusCode::BAD_REQUEST, "the body could not be read"),
    };
    let ep = match endpoint(gw, m, v) {
        Ok(e) => e,
        Err((st, msg)) => return oip_error(st, msg),
    };
    let Some(mut req) = decode::oip_body(&body) else { return oip_error(StatusCode::BAD_REQUEST, "the body must be a JSON object with 'inputs'") };
    let Some(inputs) = req.inputs.take() else { return oip_error(StatusCode::BAD_REQUEST, "'inputs' is required") };
    let client = match &req.id {
        Some(Js::String(i)) if valid_client_id(i) => Some(i.clone()),
        Some(_) => return oip_error(StatusCode::BAD_REQUEST, "'id' must be 1-128 characters of letters, digits and . _ : -"),
        None => match client_request_id(headers) {
            Ok(c) => c,
            Err(m) => return oip_error(StatusCode::BAD_REQUEST, m),
        },
    };
    // Every arm of an endpoint takes the Production version's inputs (the catalog leaves out
    // an arm that does not), so the request is decoded once.
    let probe = &ep.live[0].served;
    let (tensors, looked) = match lookup(gw, &ep, oip_entities(&ep, probe, &inputs)) {
        Err(e) => return feature_error(true, e),
        Ok(Some((frame, looked))) => (frame_inputs(probe, frame), Some(looked)),
        Ok(None) => (decode::oip_inputs(&probe.model, inputs), None),
    };
    let tensors = match tensors {
        Ok(t) => t,
        Err(decode::Bad(m)) => return oip_error(StatusCode::BAD_REQUEST, m),
    };
    let wanted: Option<Vec<String>> = match &req.outputs {
        None | Some(Js::Null) => None,
        Some(Js::Array(a)) => match a.iter().map(|o| o.get("name").and_then(Js::as_str).map(str::to_owned)).collect::<Option<Vec<_>>>() {
            Some(n) => Some(n),
            None => return oip_error(StatusCode::BAD_REQUEST, "each requested output needs a 'name'"),
        },
        Some(_) => return oip_error(StatusCode::BAD_REQUEST, "'outputs' must be a list"),
    };
    if let Some(w) = &wanted
        && w.iter().any(|n| !probe.model.outputs().iter().any(|o| o.name == *n))
    {
        return oip_error(StatusCode::BAD_REQUEST, "a requested output is not one of the model's outputs");
    }
    let routed = match v {
        Some(v) => match ep.live_version(v) {
            Some(a) => Routed { arm: a, how: "pinned", bucket: None, unit_hash: None },
            None => return oip_error(StatusCode::NOT_FOUND, "that version is not served"),
        },
        None => gw.route(&ep, unit_key(&ep, headers, req.parameters.as_ref())),
    };
    let p = gw.pending(&ep, routed, client, start, &tensors, looked);
    let s = &p.routed.arm.served;
    let answer = match gw.run_model(&p, tensors) {
        Ok(a) => a,
        Err(f) => return f.response(true),
    };
    let outputs: Vec<decode::OipOutput<'_>> = answer.outputs.iter().filter(|(n, _)| wanted.as_ref().is_none_or(|w| w.contains(n))).map(|(n, v)| decode::OipOutput(n, v)).collect();
    let id = p.ids.client_id.as_deref().unwrap_or(&p.ids.request_id);
    let resp = Json(OipAnswer { id, model_name: &s.name, model_version: &s.version, outputs }).into_response();
    gw.deliver(&ep, p, answer, resp, true)
}

/// An OIP inference response (fields in alphabetical order, as a JSON object has them).
#[derive(serde::Serialize)]
struct OipAnswer<'a> {
    id: &'a str,
    model_name: &'a str,
    model_version: &'a str,
    outputs: Vec<decode::OipOutput<'a>>,
}

/// An MLflow scoring response.
#[derive(serde::Serialize)]
struct MlflowAnswer<'a> {
    predictions: decode::MlflowPredictions<'a>,
}

/// The refusal for a full spool, in either protocol's format.
fn spool_full(status: StatusCode, oip: bool) -> Response {
    let mut r = if oip { oip_error(status, SPOOL_FULL) } else { mlflow_error(status, "TEMPORARILY_UNAVAILABLE", SPOOL_FULL) };
    r.headers_mut().insert("x-vigil-error", HeaderValue::from_static("prediction_log_full"));
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

async fn infer(State(gw): State<Arc<Gateway>>, Path(m): Path<String>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_oip(&gw, &m, None, &headers, body)
}

async fn infer_v(State(gw): State<Arc<Gateway>>, Path((m, v)): Path<(String, String)>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_oip(&gw, &m, Some(&v), &headers, body)
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    let c = &gw.counters;
    let mut out = String::new();
    for (name, help, v) in [
        ("vigil_gateway_answered_total", "Requests answered by a live arm", &c.answered),
        ("vigil_gateway_assigned_keyed_total", "Requests assigned by the unit key", &c.keyed),
        ("vigil_gateway_assigned_random_total", "Requests assigned at random (no unit key)", &c.random),
        ("vigil_gateway_shadow_queued_total", "Copies queued for shadow arms", &c.shadow_queued),
        ("vigil_gateway_shadow_dropped_total", "Shadow copies dropped because the queue was full", &c.shadow_dropped),
        ("vigil_gateway_shadow_ok_total", "Shadow runs that succeeded", &c.shadow_ok),
        ("vigil_gateway_shadow_failed_total", "Shadow runs that failed", &c.shadow_failed),
        ("vigil_gateway_model_faults_total", "Model runs that failed on a request that fits the model (500 model_fault; engine panics included, contained)", &c.model_faults),
        ("vigil_gateway_shadow_pauses_total", "Pauses of the shadow thread while the CPUs were saturated (it holds itself to about 1% of a CPU)", &c.shadow_pauses),
        ("vigil_gateway_log_queued_total", "Prediction records queued for the spool", &c.log_queued),
        ("vigil_gateway_log_spooled_total", "Prediction records written to spool files", &c.log_spooled),
        ("vigil_gateway_log_stored_total", "Prediction records stored in the registry", &c.log_stored),
        ("vigil_gateway_log_rejected_total", "Answers refused because the spool was full (policy reject)", &c.log_rejected),
        ("vigil_gateway_log_dropped_total", "Records dropped because the spool was full (policy drop, and shadow records)", &c.log_dropped),
        ("vigil_gateway_log_failed_total", "Records that could not be written to the spool", &c.log_failed),
        ("vigil_gateway_log_corrupt_total", "Spool frames that could not be read back (cut short or damaged)", &c.log_corrupt),
        ("vigil_gateway_log_ship_retries_total", "Segment shipments retried because the registry was unavailable", &c.log_ship_retries),
        ("vigil_gateway_log_quarantined_total", "Records in segments the registry refused (kept as failed files)", &c.log_quarantined),
    ] {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n", v.load(Ordering::Relaxed)));
    }
    let name = "vigil_gateway_feature_lookup_seconds";
    out.push_str(&format!("# HELP {name} Online feature lookups that succeeded, by duration\n# TYPE {name} histogram\n"));
    let mut cumulative = 0;
    for (i, n) in c.lookup_buckets.iter().enumerate() {
        cumulative += n.load(Ordering::Relaxed);
        let le = LOOKUP_BUCKETS_US.get(i).map_or_else(|| "+Inf".to_owned(), |us| format!("{}", *us as f64 / 1e6));
        out.push_str(&format!("{name}_bucket{{le=\"{le}\"}} {cumulative}\n"));
    }
    out.push_str(&format!("{name}_sum {}\n{name}_count {cumulative}\n", c.lookup_sum_us.load(Ordering::Relaxed) as f64 / 1e6));
    if let Some(sp) = &gw.spool {
        out.push_str(&format!("# HELP vigil_gateway_spool_bytes Bytes of prediction-log spool files on disk\n# TYPE vigil_gateway_spool_bytes gauge\nvigil_gateway_spool_bytes {}\n", sp.bytes_on_disk()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
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
    match default_model(&gw).map(|m| endpoint(&gw, &m, None)) {
        Some(Ok(_)) => ([(header::CONTENT_TYPE, "application/json")], "\n").into_response(),
        Some(Err((st, _))) => (st, "\n").into_response(),
        None => (StatusCode::NOT_FOUND, "\n").into_response(),
    }
}

fn run_mlflow(gw: &Gateway, m: Option<String>, headers: &HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let start = Instant::now();
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return mlflow_error(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", format!("the body is over {} MiB", MAX_BODY >> 20)),
        Err(_) => return mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "the body could not be read"),
    };
    let Some(m) = m else {
        return mlflow_error(StatusCode::NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", "several models are served: call /models/{name}/invocations, or start the gateway with a default model");
    };
    let ep = match endpoint(gw, &m, None) {
        Ok(e) => e,
        Err((st, msg)) => return mlflow_error(st, if st == StatusCode::NOT_FOUND { "RESOURCE_DOES_NOT_EXIST" } else { "TEMPORARILY_UNAVAILABLE" }, msg),
    };
    let client = match client_request_id(headers) {
        Ok(c) => c,
        Err(m) => return mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
    };
    let probe = &ep.live[0].served;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (mime, params) = ctype.split_once(';').map_or((ctype.as_str(), ""), |(a, b)| (a.trim(), b.trim()));
    if !params.is_empty() && !params.replace(' ', "").eq_ignore_ascii_case("charset=utf-8") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type parameters other than charset=utf-8 are not supported").into_response();
    }
    // A JSON body's `params` may hold the unit key.
    let (parsed, params) = match mime {
        "application/json" => match mlflow::parse_json(&body) {
            Ok((request, params)) => (Ok(request), params),
            Err(e) => (Err(e), None),
        },
        "text/csv" => (mlflow::parse_csv(&body).map(mlflow::Request::Frame), None),
        _ => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "send application/json or text/csv").into_response(),
    };
    // A frame (or named input) holding only the join key asks for online features.
    let entities = match (&ep.features, &parsed) {
        (Some(Ok(l)), Ok(mlflow::Request::Frame(f))) if f.columns.len() == 1 && f.columns[0] == l.spec.entity && !probe.model.inputs().iter().any(|i| i.name == l.spec.entity) => {
            Some(f.cells.to_json())
        }
        (Some(Ok(l)), Ok(mlflow::Request::Named(n))) if n.len() == 1 && n[0].0 == l.spec.entity => n[0].1.as_array().cloned(),
        _ => None,
    };
    let mut looked = None;
    let tensors = match lookup(gw, &ep, entities) {
        Err(e) => return feature_error(false, e),
        Ok(Some((frame, l))) => {
            looked = Some(l);
            frame_inputs(probe, frame)
        }
        Ok(None) => match parsed {
            Ok(mlflow::Request::Frame(f)) => frame_inputs(probe, f),
            Ok(mlflow::Request::Named(named)) => decode::named_inputs(&probe.model, &named),
            Err(e) => Err(e),
        },
    };
    let tensors = match tensors {
        Ok(t) => t,
        Err(decode::Bad(m)) => return mlflow_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", m),
    };
    let routed = gw.route(&ep, unit_key(&ep, headers, params.as_ref()));
    let p = gw.pending(&ep, routed, client, start, &tensors, looked);
    match gw.run_model(&p, tensors) {
        Ok(answer) => {
            let resp = Json(MlflowAnswer { predictions: decode::MlflowPredictions(&answer.outputs) }).into_response();
            gw.deliver(&ep, p, answer, resp, false)
        }
        Err(f) => f.response(false),
    }
}

async fn invocations(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    let m = default_model(&gw);
    run_mlflow(&gw, m, &headers, body)
}

async fn invocations_named(State(gw): State<Arc<Gateway>>, Path(m): Path<String>, headers: HeaderMap, body: Result<Bytes, axum::extract::rejection::BytesRejection>) -> Response {
    run_mlflow(&gw, Some(m), &headers, body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A run that panics is contained and answered as a fault (500), counted; a request the
    /// model refuses is the caller's mistake (400), not counted; an answer passes through.
    #[test]
    fn a_panic_in_a_run_is_contained_and_counted_as_a_fault() {
        let c = Counters::default();
        let panicked = contained::<()>(&c, || panic!("an engine defect"));
        assert!(matches!(&panicked, Err(RunFailure::Fault(m)) if m == MODEL_PANICKED));
        assert_eq!(c.model_faults.load(Ordering::Relaxed), 1);
        let r = panicked.err().unwrap().response(true);
        assert_eq!((r.status(), r.headers()["x-vigil-error"].to_str().unwrap()), (StatusCode::INTERNAL_SERVER_ERROR, "model_fault"));
        // What the engine refuses: a real refusal of a real model.
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../vigil-onnx/tests/fixtures/lr_binary.onnx")).unwrap();
        let model = vigil_onnx::Model::load(&bytes).unwrap();
        let refused = contained(&c, || model.run(vec![]));
        let r = refused.err().unwrap().response(false);
        assert_eq!((r.status(), r.headers()["x-vigil-error"].to_str().unwrap()), (StatusCode::BAD_REQUEST, "bad_input"));
        assert_eq!(c.model_faults.load(Ordering::Relaxed), 1, "a refused input is not a fault");
        assert_eq!(contained(&c, || Ok(7)).ok(), Some(7));
    }
}
