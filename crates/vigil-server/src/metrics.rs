//! Prometheus metrics: requests and latency per route and status, the audit chain's length,
//! open drift alerts, and the database backend.

use crate::AppState;
use crate::http::blocking;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default, Clone)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters keyed by (route, status).
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, u16), Series>>,
}

impl Metrics {
    /// Records one request.
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Ok(mut m) = self.series.lock() {
            let s = m.entry((route.to_owned(), status)).or_default();
            s.count += 1;
            s.sum += secs;
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    s.buckets[i] += 1;
                }
            }
        }
    }

    fn snapshot(&self) -> BTreeMap<(String, u16), Series> {
        self.series.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render(State(st): State<Arc<AppState>>) -> Response {
    let reg = st.registry.clone();
    let pool = st.registry.pool_stats();
    let store = blocking(move || Ok((reg.audit_length()?, reg.list_alerts(None, true)?.len(), reg.backend()))).await;
    let mut out = String::new();
    let snap = st.metrics.snapshot();
    out.push_str("# HELP vigil_http_requests_total HTTP requests by route pattern and status.\n# TYPE vigil_http_requests_total counter\n");
    for ((route, status), s) in &snap {
        let _ = writeln!(out, "vigil_http_requests_total{{route=\"{}\",status=\"{status}\"}} {}", label(route), s.count);
    }
    out.push_str("# HELP vigil_http_request_duration_seconds Request latency by route pattern.\n# TYPE vigil_http_request_duration_seconds histogram\n");
    let mut per_route: BTreeMap<&str, Series> = BTreeMap::new();
    for ((route, _), s) in &snap {
        let r = per_route.entry(route.as_str()).or_default();
        r.count += s.count;
        r.sum += s.sum;
        for i in 0..BUCKETS.len() {
            r.buckets[i] += s.buckets[i];
        }
    }
    for (route, s) in &per_route {
        let l = label(route);
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(out, "vigil_http_request_duration_seconds_bucket{{route=\"{l}\",le=\"{b}\"}} {}", s.buckets[i]);
        }
        let _ = writeln!(out, "vigil_http_request_duration_seconds_bucket{{route=\"{l}\",le=\"+Inf\"}} {}", s.count);
        let _ = writeln!(out, "vigil_http_request_duration_seconds_sum{{route=\"{l}\"}} {}", s.sum);
        let _ = writeln!(out, "vigil_http_request_duration_seconds_count{{route=\"{l}\"}} {}", s.count);
    }
    match store {
        Ok((chain, alerts, backend)) => {
            let _ = writeln!(out, "# HELP vigil_audit_chain_length Events in the hash-chained audit trail.\n# TYPE vigil_audit_chain_length gauge\nvigil_audit_chain_length {chain}");
            let _ = writeln!(out, "# HELP vigil_drift_alerts_open Drift alerts open or acknowledged.\n# TYPE vigil_drift_alerts_open gauge\nvigil_drift_alerts_open {alerts}");
            let _ = writeln!(out, "# HELP vigil_store_up Whether the store answered.\n# TYPE vigil_store_up gauge\nvigil_store_up{{backend=\"{backend}\"}} 1");
            let (idle, in_use) = pool;
            let _ = writeln!(
                out,
                "# HELP vigil_db_connections Database connections of this process by state.\n# TYPE vigil_db_connections gauge\nvigil_db_connections{{state=\"idle\"}} {idle}\nvigil_db_connections{{state=\"in_use\"}} {in_use}"
            );
        }
        Err(_) => {
            out.push_str("# HELP vigil_store_up Whether the store answered.\n# TYPE vigil_store_up gauge\nvigil_store_up 0\n");
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
