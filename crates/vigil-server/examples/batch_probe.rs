//! Splits the cost of a 1,000-metric log-batch: the use case alone on SQLite, without HTTP.
#![allow(missing_docs, clippy::unwrap_used)]
use std::sync::Arc;
use std::time::Instant;
use vigil_core::approval::ServerKey;
use vigil_core::auth::{Password, Role};
use vigil_core::ids::{SystemClock, UserId, UuidV7Ids};
use vigil_core::registry::Registry;
use vigil_core::tracking::{LogBatch, Metric, MetricPoint};
fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = vigil_store::open_sqlite(dir.path()).unwrap();
    let reg = Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::from_seed([9; 32])));
    let pw = Password::new("benchmark-password");
    reg.init_admin(&UserId::parse("admin").unwrap(), "A", &pw).unwrap();
    let admin = reg.authenticate(&UserId::parse("admin").unwrap(), &pw).unwrap();
    reg.add_user(&admin, &UserId::parse("ds").unwrap(), "D", Role::DataScientist, &pw).unwrap();
    let ds = reg.authenticate(&UserId::parse("ds").unwrap(), &pw).unwrap();
    let run = reg.create_run(&ds, 0, None, None, &[]).unwrap();
    let t = Instant::now();
    for b in 0..300 {
        let metrics = (0..1000).map(|i| Metric { key: format!("m{}", i % 10), point: MetricPoint { value: i as f64, timestamp: 1, step: b * 1000 + i } }).collect();
        reg.log_batch(&ds, &run.run_id, &LogBatch { metrics, ..Default::default() }).unwrap();
    }
    let s = t.elapsed().as_secs_f64();
    println!("use case only: 300 batches x 1000: {:.1} ms per batch, {:.0} points/s", s * 1e3 / 300.0, 300000.0 / s);
    let t = Instant::now();
    let h = reg.metric_history(&run.run_id, "m1", 1_000_000, 0).unwrap();
    println!("history of {} points from the store: {:.1} ms", h.len(), t.elapsed().as_secs_f64() * 1e3);
}
