//! Online features at request time: a request that carries only entity ids (the deployment's
//! join key) gets the model's inputs from the online store, assembled by name into the
//! model's order, with a status per feature and row for the prediction log.
//!
//! Sources: Vigil's embedded online store (a read of the registry's database) or a Feast
//! feature server (`POST /get-online-features`, answered column-wise in an order that is
//! neither the request's nor stable, so values are matched by name, never by position).

use crate::decode::Frame;
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_core::features::{FeatureLookup, FeatureSource, FeatureStatus, FeatureValue, MAX_ENTITIES, entity_text};
use vigil_core::registry::Registry;

/// An endpoint's lookup, resolved against its Production version's feature names.
pub struct Lookup {
    /// The deployment's settings.
    pub spec: FeatureLookup,
    /// Feature names in model order.
    pub names: Vec<String>,
    agent: Option<ureq::Agent>,
}

/// Why a lookup failed; each maps to a status and a stable code.
pub enum Failure {
    /// The entity ids are not usable (400).
    Bad(String),
    /// Required features are not present (422 `feature_missing`).
    Missing(String),
    /// The feature store did not answer usably (502 `feature_store_unavailable`).
    Unavailable(String),
}

/// Features assembled for a request.
pub struct Assembled {
    /// One row per entity, the model's feature names as columns (null where missing).
    pub frame: Frame,
    /// Per feature, the status of each row.
    pub statuses: BTreeMap<String, Vec<String>>,
    /// Time spent on the lookup (µs).
    pub micros: u64,
}

impl Lookup {
    /// Resolves a deployment's lookup for a version whose inputs are named `names`.
    pub fn new(spec: FeatureLookup, names: Vec<String>) -> Self {
        let agent = match &spec.source {
            FeatureSource::Feast { timeout_ms, .. } => Some(
                ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_millis(u64::from(*timeout_ms))))
                    .max_redirects(0)
                    .proxy(None)
                    .build()
                    .into(),
            ),
            FeatureSource::Embedded { .. } => None,
        };
        Lookup { spec, names, agent }
    }

    /// Fetches and assembles the features of `entities` (JSON strings or whole numbers).
    pub fn fetch(&self, registry: &Registry, entities: &[Json]) -> Result<Assembled, Failure> {
        let start = std::time::Instant::now();
        if entities.is_empty() || entities.len() > MAX_ENTITIES {
            return Err(Failure::Bad(format!("give 1 to {MAX_ENTITIES} entity ids in '{}'", self.spec.entity)));
        }
        let ids: Vec<String> = entities.iter().map(entity_text).collect::<Option<_>>().ok_or_else(|| Failure::Bad(format!("'{}' holds text or whole numbers only", self.spec.entity)))?;
        let table: Vec<Vec<FeatureValue>> = match &self.spec.source {
            FeatureSource::Embedded { feature_set } => {
                let max_age = self.spec.max_age_seconds;
                let read = || registry.lookup_online_features(feature_set, &ids, &self.names, max_age);
                // A read of the local SQLite file (tens of µs) runs on the runtime's worker, as
                // the model does; a PostgreSQL round trip leaves the runtime (`block_in_place`).
                // Either way the place is taken first, on the worker: a lookup waiting for one
                // starts no thread in its stead.
                EMBEDDED_LOOKUPS.run(|| if registry.backend() == "sqlite" { read() } else { blocking(read) }).map_err(|e| Failure::Unavailable(format!("feature_store_unavailable: the online store could not be read ({})", e.code().as_str())))?
            }
            FeatureSource::Feast { url, feature_view, feature_service, .. } => blocking(|| self.feast(url, feature_view.as_deref(), feature_service.as_deref(), entities))?,
        };
        let mut statuses: BTreeMap<String, Vec<String>> = self.names.iter().map(|n| (n.clone(), Vec::with_capacity(ids.len()))).collect();
        let mut problems: BTreeMap<&str, (&'static str, usize)> = BTreeMap::new();
        let mut rows = Vec::with_capacity(ids.len());
        for row in &table {
            let mut out = Vec::with_capacity(self.names.len());
            for (name, (value, status)) in self.names.iter().zip(row) {
                if let Some(s) = statuses.get_mut(name) {
                    s.push(status.as_str().to_owned());
                }
                if *status != FeatureStatus::Present && !self.spec.optional.contains(name) {
                    let e = problems.entry(name.as_str()).or_insert((status.as_str(), 0));
                    e.1 += 1;
                }
                out.push(if *status == FeatureStatus::Present { value.clone().unwrap_or(Json::Null) } else { Json::Null });
            }
            rows.push(out);
        }
        if !problems.is_empty() {
            let worst = problems.values().map(|(_, n)| *n).max().unwrap_or(0);
            let list: Vec<String> = problems.iter().map(|(n, (s, _))| format!("{n} ({s})")).collect();
            return Err(Failure::Missing(format!("feature_missing: required features not present for up to {worst} of {} entities: {}", ids.len(), list.join(", "))));
        }
        Ok(Assembled { frame: Frame::from_rows(self.names.clone(), rows), statuses, micros: start.elapsed().as_micros() as u64 })
    }

    /// `POST {url}/get-online-features`, answered column-wise: matched by name.
    fn feast(&self, url: &str, view: Option<&str>, service: Option<&str>, entities: &[Json]) -> Result<Vec<Vec<FeatureValue>>, Failure> {
        let unavailable = |m: &str| Failure::Unavailable(format!("feature_store_unavailable: the Feast feature server {m}"));
        let Some(agent) = &self.agent else { return Err(unavailable("is not configured")) };
        let mut body = json!({"entities": {self.spec.entity.as_str(): entities}, "full_feature_names": false});
        match (view, service) {
            (_, Some(s)) => body["feature_service"] = json!(s),
            (Some(v), None) => body["features"] = json!(self.names.iter().map(|n| format!("{v}:{n}")).collect::<Vec<_>>()),
            (None, None) => return Err(unavailable("has neither a feature view nor a service configured")),
        }
        let resp = agent.post(&format!("{url}/get-online-features")).header("content-type", "application/json").send(body.to_string()).map_err(|_| unavailable("did not answer in time"))?;
        let status = resp.status().as_u16();
        let text = resp.into_body().with_config().limit(64 << 20).read_to_string().map_err(|_| unavailable("sent an unreadable answer"))?;
        if status != 200 {
            // Feast's error bodies are not structured; its text may name features, never values
            // of ours, but it is not passed on.
            return Err(unavailable(&format!("answered HTTP {status}")));
        }
        let v: Json = serde_json::from_str(&text).map_err(|_| unavailable("sent an answer that is not JSON"))?;
        let names = v["metadata"]["feature_names"].as_array().ok_or_else(|| unavailable("sent an answer without metadata.feature_names"))?;
        let results = v["results"].as_array().ok_or_else(|| unavailable("sent an answer without results"))?;
        if names.len() != results.len() {
            return Err(unavailable("sent names and results of different lengths"));
        }
        let mut by_name: BTreeMap<&str, &Json> = BTreeMap::new();
        for (n, r) in names.iter().zip(results) {
            if let Some(n) = n.as_str() {
                by_name.insert(n, r);
            }
        }
        let n = entities.len();
        // The deployment's maximum age applies on top of Feast's own TTL, by each value's event
        // time (a value without a readable time is not trusted to be fresh).
        let now = chrono::Utc::now();
        let too_old = |c: &Json, j: usize| -> bool {
            self.spec.max_age_seconds.is_some_and(|max| {
                c["event_timestamps"].get(j).and_then(Json::as_str).and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()).is_none_or(|t| (now - t.with_timezone(&chrono::Utc)).num_seconds() > max as i64)
            })
        };
        let mut table: Vec<Vec<FeatureValue>> = vec![Vec::with_capacity(self.names.len()); n];
        for name in &self.names {
            let col = by_name.get(name.as_str());
            for (j, row) in table.iter_mut().enumerate() {
                let cell = col.map(|c| (c["values"].get(j).cloned().unwrap_or(Json::Null), c["statuses"].get(j).and_then(Json::as_str).unwrap_or("NOT_FOUND")));
                row.push(match cell {
                    Some((v, "PRESENT")) if !v.is_null() => {
                        if col.is_some_and(|c| too_old(c, j)) { (None, FeatureStatus::OutsideMaxAge) } else { (Some(v), FeatureStatus::Present) }
                    }
                    Some((_, "OUTSIDE_MAX_AGE")) => (None, FeatureStatus::OutsideMaxAge),
                    _ => (None, FeatureStatus::Missing),
                });
            }
        }
        Ok(table)
    }
}

/// How many embedded lookups run at once. Each holds a database connection, and each
/// connection keeps a page cache of its own: 16 connections of lookups at once held 16 of
/// them (about 40 MB more resident memory), and more lookups at once than CPUs make none of
/// them faster. A lookup over the limit waits for one to finish, on its runtime worker: had it
/// waited after leaving the runtime (`block_in_place`), the runtime would start a thread for
/// every waiting request (16 connections of lookups left the gateway with 71 threads and ~25
/// MB more memory).
static EMBEDDED_LOOKUPS: Gate = Gate { running: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() };

/// A counting gate for blocking work (on a thread that may block).
struct Gate {
    running: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Gate {
    /// Runs `f` once fewer than the CPUs (at least 2) run under the gate.
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        let limit = *LIMIT.get_or_init(|| std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(2));
        {
            let mut n = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while *n >= limit {
                n = self.freed.wait(n).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            *n += 1;
        }
        // Released even if `f` panics.
        struct Leave<'a>(&'a Gate);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                *self.0.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner) -= 1;
                self.0.freed.notify_one();
            }
        }
        let _leave = Leave(self);
        f()
    }
}

/// Runs blocking IO from a request handler without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::Gate;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_gate_lets_no_more_than_its_limit_run_at_once_and_every_caller_through() {
        let gate = Gate { running: std::sync::Mutex::new(0), freed: std::sync::Condvar::new() };
        let limit = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(2);
        let (inside, most, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..limit * 4 {
                s.spawn(|| {
                    gate.run(|| {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    });
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), limit * 4);
        assert_eq!(most.load(Ordering::SeqCst), limit, "the limit is reached and never passed");
        // A panic inside releases its place.
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| gate.run(|| panic!("boom")))).is_err());
        assert_eq!(*gate.running.lock().unwrap(), 0);
    }
}
