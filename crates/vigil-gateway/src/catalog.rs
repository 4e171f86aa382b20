//! What the gateway serves: for every registered model with a version in Production, that
//! version's ONNX graph, loaded from the registry's artifact with its digest verified.
//!
//! The catalog is refreshed from the registry (every second by default): a promotion or a
//! rollback loads the new version beside the old one and swaps a pointer, so requests in
//! flight finish on the version they started with and none is dropped. A version whose bytes
//! no longer match their recorded digest, or whose graph Vigil's engine cannot run, is never
//! served; the model then answers 503 with the reason (no values in it), and the previous
//! version is not served either, because it is no longer the approved one.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
}

/// Why a model is not being served.
#[derive(Debug, Clone)]
pub struct Unavailable {
    /// The version that should be served.
    pub version: String,
    /// Why it is not (operator names, digest mismatch; never values).
    pub reason: String,
}

/// A model's serving state.
#[derive(Clone)]
pub enum Entry {
    /// Serving this version.
    Ready(Arc<Served>),
    /// The Production version could not be loaded.
    Failed(Unavailable),
}

/// Loaded models by name.
pub struct Catalog {
    registry: Arc<Registry>,
    artifacts: PathBuf,
    entries: RwLock<HashMap<String, Entry>>,
}

/// Reads the ONNX bytes of a version and checks them against the recorded digest.
pub fn load_version(artifacts: &Path, v: &ModelVersion) -> Result<Served, String> {
    let want = v.content.artifact_sha256.as_ref().ok_or("the version records no artifact digest, so its bytes cannot be verified")?;
    let want = hex::encode(want.as_bytes());
    let uri = v.content.artifact_uri.as_str();
    let bytes = if let Some(rel) = uri.strip_prefix("mlflow-artifacts:/") {
        // Vigil's artifact store: the digest covers the whole tree (path, size, SHA-256).
        let segs = vigil_store::artifacts::check_path(rel.trim_matches('/')).map_err(|e| e.message().to_owned())?;
        let root = vigil_store::artifacts::resolve(artifacts, &segs);
        let files = vigil_store::artifacts::hash_tree(&root).map_err(|e| e.message().to_owned())?;
        if files.is_empty() {
            return Err("the version's artifacts are not in this gateway's artifact store".into());
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
        let path = if pick.is_empty() { root } else { root.join(&pick) };
        let bytes = std::fs::read(&path).map_err(|_| "the model file could not be read".to_owned())?;
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
        let bytes = std::fs::read(path).map_err(|_| "the model file could not be read".to_owned())?;
        if hex::encode(Sha256::digest(&bytes)) != want {
            return Err("the artifact bytes no longer match the digest recorded at registration".into());
        }
        bytes
    };
    let model = Model::load(&bytes).map_err(|e| format!("the model cannot be served: {e}"))?;
    Ok(Served { name: v.model_name.to_string(), version: v.version.to_string(), version_id: v.id.clone(), digest: want, model })
}

impl Catalog {
    /// An empty catalog over a registry and the artifact root of its store.
    pub fn new(registry: Arc<Registry>, artifacts: PathBuf) -> Self {
        Catalog { registry, artifacts, entries: RwLock::new(HashMap::new()) }
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

    /// Brings the catalog in line with the registry: loads Production versions not yet
    /// loaded, drops models without one. Returns how many entries changed.
    pub fn refresh(&self) -> Result<usize, vigil_core::Error> {
        let listed = self.registry.list_models()?;
        let mut want: HashMap<String, ModelVersion> = HashMap::new();
        for (m, versions) in listed {
            if let Some(v) = versions.into_iter().find(|v| v.stage == Stage::Production) {
                want.insert(m.name.to_string(), v);
            }
        }
        let current = self.entries.read().map(|m| m.clone()).unwrap_or_default();
        let mut changes = Vec::new();
        for (name, v) in &want {
            let same = match current.get(name) {
                Some(Entry::Ready(s)) => s.version_id == v.id,
                Some(Entry::Failed(u)) => u.version == v.version.to_string(),
                None => false,
            };
            if !same {
                // Loading happens outside the lock: requests keep being answered meanwhile.
                let entry = match load_version(&self.artifacts, v) {
                    Ok(s) => Entry::Ready(Arc::new(s)),
                    Err(reason) => Entry::Failed(Unavailable { version: v.version.to_string(), reason }),
                };
                changes.push((name.clone(), Some(entry)));
            }
        }
        for name in current.keys().filter(|n| !want.contains_key(*n)) {
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
        Ok(n)
    }
}
