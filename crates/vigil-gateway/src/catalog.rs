//! What the gateway serves: for every registered model with a version in Production, that
//! version's ONNX graph, loaded from the registry's artifact with its digest verified.
//!
//! The catalog is refreshed from the registry (every second by default): a promotion or a
//! rollback loads the new version beside the old one and swaps a pointer, so requests in
//! flight finish on the version they started with and none is dropped. A version whose bytes
//! no longer match their recorded digest, or whose graph Vigil's engine cannot run, is never
//! served; the model then answers 503 with the reason (no values in it), and the previous
//! version is not served either, because it is no longer the approved one. A load that failed
//! is tried again 2 s later, then after waits that double up to 5 minutes (an artifact store
//! that did not answer, a file being replaced); so is an arm left out as degraded.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use std::sync::{Arc, RwLock};
use vigil_core::model::{ModelVersion, Stage};
use vigil_core::registry::Registry;
use vigil_onnx::Model;

/// A loaded version.
pub struct Served {
    /// Model name.
    pub name: String,
    /// Version string (`1.2.0`).
    pub version: String,
    /// Version id (`mv_…`).
    pub version_id: String,
    /// The artifact digest that was verified at load (hex).
    pub digest: String,
    /// The graph.
    pub model: Model,
    /// The prediction log's column names of each input, in the graph's input order (see
    /// `spool::column_names`).
    pub columns: Vec<Vec<String>>,
    /// The graph's input names, in the same order (the log looks a tensor's columns up by
    /// name for every record; this spares it building the graph's input list each time).
    pub input_names: Vec<String>,
    /// Whether those are real feature names (each input's own, or the recorded features),
    /// which online feature lookups need.
    pub columns_named: bool,
}

impl Served {
    /// The log's column names of an input, if the model has that input.
    pub fn columns_of(&self, input: &str) -> Option<&[String]> {
        self.input_names.iter().position(|n| n == input).and_then(|i| self.columns.get(i)).map(Vec::as_slice)
    }
}

/// Why a model is not being served.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The version that should be served.
    pub version: String,
    /// Why it is not (operator names, digest mismatch; never values).
    pub reason: String,
    /// When it was last tried, and how many times in a row it failed: a load that failed
    /// (an artifact store that did not answer, a file being replaced) is tried again after
    /// [`retry_after`] (the registry's state unchanged).
    tried: Instant,
    failures: u32,
}

/// How long after its `failures`-th failure in a row a model's load is tried again: 2 s,
/// doubling, at most 5 minutes (a graph with an operator the engine does not run fails
/// every time; trying it costs a read and a parse).
pub fn retry_after(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1u64 << failures.saturating_sub(1).min(16))).min(RETRY_LONGEST)
}

/// What the entry a build replaces had failed in a row (see [`Catalog::refresh`]).
#[derive(Default, Clone, Copy)]
struct InARow {
    failures: u32,
    degraded_builds: u32,
}

/// The longest wait between tries of a load that keeps failing.
const RETRY_LONGEST: Duration = Duration::from_secs(300);

/// A live arm: answers the callers whose bucket is in `lo..hi`.
pub struct LiveArm {
    /// Arm name (shared: every logged answer and shadow copy names it).
    pub name: Arc<str>,
    /// Bucket range start (inclusive).
    pub lo: u32,
    /// Bucket range end (exclusive).
    pub hi: u32,
    /// Its version.
    pub served: Arc<Served>,
}

/// A shadow arm: gets a copy of `share` buckets' worth of requests.
pub struct ShadowArm {
    /// Arm name.
    pub name: Arc<str>,
    /// Share of requests copied to it, in buckets of 10,000.
    pub share: u32,
    /// Its version.
    pub served: Arc<Served>,
}

/// A model's endpoint as the gateway serves it: its deployment resolved and loaded.
pub struct Endpoint {
    /// Model name (shared: every logged answer and shadow copy names it).
    pub name: Arc<str>,
    /// The deployment revision (0: the default, Production only).
    pub revision: i64,
    /// How units are recognised.
    pub unit_key: Option<vigil_core::deploy::UnitKey>,
    /// What happens to an answer when the prediction log's spool is full.
    pub full_spool: vigil_core::deploy::FullSpool,
    /// The online feature lookup, if the deployment has one (or why it cannot work).
    pub features: Option<Result<Arc<crate::features::Lookup>, String>>,
    /// Live arms in bucket order; together they cover every bucket.
    pub live: Vec<LiveArm>,
    /// Shadow arms.
    pub shadows: Vec<ShadowArm>,
    /// Arms that could not be served (not permitted now, or not loadable): name and reason.
    /// Their buckets are answered by the Production version.
    pub degraded: Vec<(String, String)>,
    /// What this endpoint was built from (to skip rebuilding an unchanged one).
    signature: String,
    /// When it was built, and how many builds in a row left some arm degraded (such an
    /// endpoint is built again as a failed load is, see [`retry_after`]).
    built: Instant,
    degraded_builds: u32,
}

impl Endpoint {
    /// The live arm for a bucket.
    pub fn arm_for(&self, bucket: u32) -> &LiveArm {
        self.live.iter().find(|a| bucket >= a.lo && bucket < a.hi).unwrap_or(&self.live[0])
    }

    /// The live arm running `version` (for per-version routes).
    pub fn live_version(&self, version: &str) -> Option<&LiveArm> {
        self.live.iter().find(|a| a.served.version == version)
    }
}

/// A model's serving state.
#[derive(Clone)]
pub enum Entry {
    /// Serving.
    Ready(Arc<Endpoint>),
    /// The Production version could not be loaded.
    Failed(Unavailable),
}

/// Loaded models by name.
pub struct Catalog {
    registry: Arc<Registry>,
    artifacts: Artifacts,
    entries: RwLock<HashMap<String, Entry>>,
    /// Loaded versions by id, reused across refreshes.
    loaded: std::sync::Mutex<HashMap<String, Arc<Served>>>,
}

/// Where the gateway reads artifacts from: the registry's local artifact directory, or its
/// S3-compatible store (with a runtime of its own for the S3 client, driven from the
/// catalog's refresh, which runs off the request threads).
pub struct Artifacts {
    /// The local artifact directory (used when there is no S3 store).
    pub local: PathBuf,
    remote: Option<(vigil_store::s3::Remote, tokio::runtime::Runtime)>,
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        // The gateway may be dropped on an async thread, where a runtime may not block.
        if let Some((_, rt)) = self.remote.take() {
            rt.shutdown_background();
        }
    }
}

impl Artifacts {
    /// A local artifact directory.
    pub fn local(dir: PathBuf) -> Self {
        Artifacts { local: dir, remote: None }
    }

    /// An S3-compatible store (`s3://bucket[/prefix]`, configured like the server's).
    pub fn s3(remote: vigil_store::s3::Remote) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name("vigil-gw-s3").enable_all().build()?;
        Ok(Artifacts { local: PathBuf::new(), remote: Some((remote, rt)) })
    }
}

/// Largest model file the gateway loads.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Files (path, size, SHA-256) and a reader of one of them.
type FileTree<'a> = (Vec<(String, u64, String)>, Box<dyn Fn(&str) -> Result<Vec<u8>, String> + 'a>);

/// The files of an `mlflow-artifacts:/` location with their SHA-256, and a reader of one of
/// them; from the local directory or S3.
fn tree_of<'a>(artifacts: &'a Artifacts, segs: &[&str]) -> Result<FileTree<'a>, String> {
    match &artifacts.remote {
        None => {
            let root = vigil_store::artifacts::resolve(&artifacts.local, segs);
            let files = vigil_store::artifacts::hash_tree(&root).map_err(|e| e.message().to_owned())?;
            let read = move |rel: &str| -> Result<Vec<u8>, String> {
                let path = if rel.is_empty() { root.clone() } else { root.join(rel) };
                std::fs::read(&path).map_err(|_| "the model file could not be read".to_owned())
            };
            Ok((files, Box::new(read)))
        }
        Some((remote, rt)) => {
            let listed = rt.block_on(remote.tree(segs)).map_err(|e| e.message().to_owned())?;
            let mut files = Vec::with_capacity(listed.len());
            for (rel, size, key) in &listed {
                files.push((rel.clone(), *size, rt.block_on(remote.sha256(key)).map_err(|e| e.message().to_owned())?));
            }
            let read = move |rel: &str| -> Result<Vec<u8>, String> {
                let key = listed.iter().find(|(r, _, _)| r == rel).map(|(_, _, k)| k.clone()).ok_or("the model file is gone")?;
                rt.block_on(remote.read(&key, MAX_MODEL_BYTES)).map_err(|e| e.message().to_owned())
            };
            Ok((files, Box::new(read)))
        }
    }
}

/// Why a version whose artifacts are not where this gateway looks cannot be loaded.
const NOT_IN_STORE: &str = "the version's artifacts are not in this gateway's artifact store";
const NO_FILE: &str = "the model file is not on this machine";

/// Whether a version can be deployed (the registry's `ServableCheck`): loaded as a gateway
/// loads it. With `absent_ok`, a version whose artifacts are not in `artifacts` at all (a
/// CLI beside a data directory whose gateway reads another store) is not refused: the gateway
/// that serves it checks it when it loads it.
pub fn deployable(artifacts: &Artifacts, v: &ModelVersion, absent_ok: bool) -> Result<(), String> {
    match load_version(artifacts, v) {
        Ok(_) => Ok(()),
        Err(m) if absent_ok && (m == NOT_IN_STORE || m == NO_FILE) => Ok(()),
        Err(m) => Err(m),
    }
}

/// Reads the ONNX bytes of a version and checks them against the recorded digest.
pub fn load_version(artifacts: &Artifacts, v: &ModelVersion) -> Result<Served, String> {
    let want = v.content.artifact_sha256.as_ref().ok_or("the version records no artifact digest, so its bytes cannot be verified")?;
    let want = hex::encode(want.as_bytes());
    let uri = v.content.artifact_uri.as_str();
    let bytes = if let Some(rel) = uri.strip_prefix("mlflow-artifacts:/") {
        // Vigil's artifact store: the digest covers the whole tree (path, size, SHA-256).
        let segs = vigil_store::artifacts::check_path(rel.trim_matches('/')).map_err(|e| e.message().to_owned())?;
        let (files, read) = tree_of(artifacts, &segs)?;
        if files.is_empty() {
            return Err(NOT_IN_STORE.into());
        }
        let got = vigil_store::artifacts::manifest_digest(files.clone()).map_err(|e| e.message().to_owned())?;
        if hex::encode(got.as_bytes()) != want {
            return Err("the artifact bytes no longer match the digest recorded at registration".into());
        }
        let onnx: Vec<&String> = files.iter().map(|(p, _, _)| p).filter(|p| p.is_empty() || p.ends_with(".onnx")).collect();
        let pick = match onnx.as_slice() {
            [one] => (*one).clone(),
            [] => return Err("the version's artifacts hold no .onnx file".into()),
            many => many.iter().find(|p| p.as_str() == "model.onnx" || p.ends_with("/model.onnx")).map(|p| (*p).clone()).ok_or("the version's artifacts hold several .onnx files and none is model.onnx")?,
        };
        let bytes = read(&pick)?;
        // The file read now must be the file that was hashed.
        let again = files.iter().find(|(p, _, _)| *p == pick).map(|(_, _, h)| h.clone()).unwrap_or_default();
        if hex::encode(Sha256::digest(&bytes)) != again {
            return Err("the model file changed while it was being loaded".into());
        }
        bytes
    } else {
        let path = match uri.strip_prefix("file://") {
            Some(p) => p,
            None if !uri.contains(':') => uri,
            None => return Err("the gateway loads models from Vigil's artifact store or a local file; this version's artifact is elsewhere".into()),
        };
        let bytes = std::fs::read(path).map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { NO_FILE } else { "the model file could not be read" }.to_owned())?;
        if hex::encode(Sha256::digest(&bytes)) != want {
            return Err("the artifact bytes no longer match the digest recorded at registration".into());
        }
        bytes
    };
    let model = Model::load(&bytes).map_err(|e| format!("the model cannot be served: {e}"))?;
    let columns = crate::spool::column_names(&model.inputs(), &v.content.lineage.features);
    let columns_named = columns.iter().zip(model.inputs()).all(|(c, io)| (c.len() == 1 && c[0] == io.name) || (!c.is_empty() && *c == v.content.lineage.features));
    let input_names = model.inputs().iter().map(|io| io.name.clone()).collect();
    Ok(Served { name: v.model_name.to_string(), version: v.version.to_string(), version_id: v.id.clone(), digest: want, model, columns, input_names, columns_named })
}

/// Whether a request decoded for `prod` is one `s` takes as it is: the same inputs, the same
/// recorded feature names where both record them (a frame's columns are taken by them; a
/// version that records none takes them in the Production version's order, as before), and
/// the same inputs taking missing values.
fn same_requests(s: &Served, prod: &Served) -> bool {
    s.model.inputs() == prod.model.inputs()
        && (!s.columns_named || !prod.columns_named || s.columns == prod.columns)
        && prod.model.inputs().iter().all(|i| s.model.accepts_missing_in(&i.name) == prod.model.accepts_missing_in(&i.name))
}

/// What an endpoint is built from: the deployment revision, the Production version, and each
/// arm's version and permission.
fn signature(d: &vigil_core::deploy::Deployment, production: &ModelVersion, arms: &[vigil_core::deploy::ResolvedArm]) -> String {
    let arms: Vec<String> = arms.iter().map(|a| format!("{}:{}:{}", a.arm.name, a.version.as_ref().map_or("", |v| v.id.as_str()), a.permitted.is_ok())).collect();
    format!("{}|{}|{}", d.revision, production.id, arms.join(","))
}

impl Catalog {
    /// An empty catalog over a registry and its artifact store. `refresh` loads models: call
    /// it off the async runtime's threads (`spawn_blocking`), as [`crate::follow_registry`] does.
    pub fn new(registry: Arc<Registry>, artifacts: Artifacts) -> Self {
        Catalog { registry, artifacts, entries: RwLock::new(HashMap::new()), loaded: std::sync::Mutex::new(HashMap::new()) }
    }

    /// The registry the catalog follows.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A model's state.
    pub fn get(&self, name: &str) -> Option<Entry> {
        self.entries.read().ok()?.get(name).cloned()
    }

    /// Every model's state, by name.
    pub fn all(&self) -> Vec<(String, Entry)> {
        let mut v: Vec<(String, Entry)> = self.entries.read().map(|m| m.iter().map(|(k, e)| (k.clone(), e.clone())).collect()).unwrap_or_default();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn load(&self, v: &ModelVersion) -> Result<Arc<Served>, String> {
        if let Some(s) = self.loaded.lock().ok().and_then(|m| m.get(&v.id).cloned()) {
            return Ok(s);
        }
        let s = Arc::new(load_version(&self.artifacts, v)?);
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(v.id.clone(), s.clone());
        }
        Ok(s)
    }

    /// Builds a model's endpoint from its resolved deployment. The Production version must
    /// load; another arm that may not run now or cannot load is left out and its buckets go
    /// to the Production version (the approved one), reported as degraded.
    fn build(&self, name: &str, d: &vigil_core::deploy::Deployment, arms: &[vigil_core::deploy::ResolvedArm], production: &ModelVersion, signature: String, before: InARow) -> Entry {
        use vigil_core::deploy::{ArmVersion, BUCKETS, Role};
        let prod = match self.load(production) {
            Ok(s) => s,
            Err(reason) => return Entry::Failed(Unavailable { version: production.version.to_string(), reason, tried: Instant::now(), failures: before.failures + 1 }),
        };
        let (mut live, mut shadows, mut degraded) = (Vec::new(), Vec::new(), Vec::new());
        let mut lo = 0u32;
        for r in arms {
            let loaded = match (&r.permitted, &r.version) {
                (Err(why), _) => Err(why.clone()),
                (Ok(()), None) => Err("no version to run".into()),
                (Ok(()), Some(_)) if r.arm.version == ArmVersion::Production => Ok(prod.clone()),
                (Ok(()), Some(v)) => self.load(v).and_then(|s| {
                    // Every arm must take the requests the Production version takes: the
                    // request is decoded once, against it (its inputs, its recorded feature
                    // names, which inputs may hold missing values).
                    if same_requests(&s, &prod) { Ok(s) } else { Err(format!("{} takes other inputs than the Production version (their names, types, recorded feature names or missing-value rules differ)", s.version)) }
                }),
            };
            match r.arm.role {
                Role::Live => {
                    let served = match loaded {
                        Ok(s) => s,
                        Err(why) => {
                            degraded.push((r.arm.name.clone(), why));
                            prod.clone()
                        }
                    };
                    live.push(LiveArm { name: r.arm.name.as_str().into(), lo, hi: lo + r.arm.weight, served });
                    lo += r.arm.weight;
                }
                Role::Shadow => match loaded {
                    Ok(served) => shadows.push(ShadowArm { name: r.arm.name.as_str().into(), share: r.arm.weight, served }),
                    Err(why) => degraded.push((r.arm.name.clone(), why)),
                },
            }
        }
        if live.is_empty() || lo != BUCKETS {
            live = vec![LiveArm { name: "production".into(), lo: 0, hi: BUCKETS, served: prod.clone() }];
        }
        let features = d.spec.features.clone().map(|spec| {
            if prod.columns_named {
                Ok(Arc::new(crate::features::Lookup::new(spec, prod.columns.concat())))
            } else {
                Err(format!("version {} records no feature names (lineage.features) to look its inputs up by", prod.version))
            }
        });
        let degraded_builds = if degraded.is_empty() { 0 } else { before.degraded_builds + 1 };
        Entry::Ready(Arc::new(Endpoint { name: name.into(), revision: d.revision, unit_key: d.spec.unit_key.clone(), full_spool: d.spec.full_spool, features, live, shadows, degraded, signature, built: Instant::now(), degraded_builds }))
    }

    /// Brings the catalog in line with the registry: every model with a Production version is
    /// served as its deployment says; models without one are dropped. Returns how many
    /// entries changed.
    pub fn refresh(&self) -> Result<usize, vigil_core::Error> {
        let listed = self.registry.list_models()?;
        let current = self.entries.read().map(|m| m.clone()).unwrap_or_default();
        let mut changes = Vec::new();
        let mut keep = std::collections::HashSet::new();
        for (m, versions) in listed {
            let Some(production) = versions.into_iter().find(|v| v.stage == Stage::Production) else { continue };
            let name = m.name.to_string();
            keep.insert(name.clone());
            let (d, arms) = self.registry.resolved_deployment(&m.name)?;
            let signature_now = signature(&d, &production, &arms);
            // A load that failed is tried again in a while (see `retry_after`), the registry
            // unchanged; so is an endpoint with a degraded arm. Failures in a row wait longer
            // each time: those of the same version, or builds of the same deployment and
            // versions left degraded.
            let (same, before) = match current.get(&name) {
                Some(Entry::Ready(e)) if e.signature == signature_now => (e.degraded.is_empty() || e.built.elapsed() < retry_after(e.degraded_builds), InARow { degraded_builds: e.degraded_builds, failures: 0 }),
                Some(Entry::Failed(u)) if u.version == production.version.to_string() => (u.tried.elapsed() < retry_after(u.failures), InARow { failures: u.failures, degraded_builds: 0 }),
                _ => (false, InARow::default()),
            };
            if !same {
                // Loading happens outside the lock: requests keep being answered meanwhile.
                changes.push((name, Some(self.build(m.name.as_str(), &d, &arms, &production, signature_now, before))));
            }
        }
        for name in current.keys().filter(|n| !keep.contains(*n)) {
            changes.push((name.clone(), None));
        }
        let n = changes.len();
        if n > 0
            && let Ok(mut m) = self.entries.write()
        {
            for (name, e) in changes {
                match e {
                    Some(e) => m.insert(name, e),
                    None => m.remove(&name),
                };
            }
        }
        // Versions no endpoint uses any more are unloaded.
        if let (Ok(entries), Ok(mut loaded)) = (self.entries.read(), self.loaded.lock()) {
            let used: std::collections::HashSet<String> = entries
                .values()
                .filter_map(|e| match e {
                    Entry::Ready(ep) => Some(ep.live.iter().map(|a| a.served.version_id.clone()).chain(ep.shadows.iter().map(|a| a.served.version_id.clone())).collect::<Vec<_>>()),
                    Entry::Failed(_) => None,
                })
                .flatten()
                .collect();
            loaded.retain(|id, _| used.contains(id));
        }
        Ok(n)
    }
}
