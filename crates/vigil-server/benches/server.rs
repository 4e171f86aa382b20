//! The tracking server under load, over real HTTP on loopback (keep-alive connections, the
//! MLflow wire format, HTTP Basic as the MLflow client sends it), on the embedded SQLite
//! store with `synchronous=FULL` (every acknowledged write is on disk).
//!
//!     cargo bench -p vigil-server --bench server [-- quick]
//!
//! Workloads (the server issue's targets in brackets):
//! 1. `runs/log-metric`, one client, 2,000 sequential calls: p50 and p99 latency [p50 ≤ 2 ms].
//! 2. `runs/log-batch` of 1,000 metrics, 8 concurrent clients, each on its own run: metric
//!    points per second [≥ 200,000/s].
//! 3. `metrics/get-history` of a 100,000-point metric, paged as the client does (25,000 per
//!    page) [≤ 200 ms].
//! 4. `runs/search` with a filter and an order_by over 100,000 runs (each with 2 params, 2
//!    metrics and a tag), first page of 100 runs: p50 [≤ 50 ms].
//! 5. `registered-models/alias` (what `load_model("models:/name@alias")` asks first) on a model
//!    with 50 versions and 5 aliases, one client, 2,000 calls: p50 [≤ 1 ms].

use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use vigil_core::approval::ServerKey;
use vigil_core::auth::{Password, Role};
use vigil_core::ids::{SystemClock, UserId, UuidV7Ids};
use vigil_core::registry::Registry;
use vigil_core::tracking::{LogBatch, Metric, MetricPoint};

const PW: &str = "benchmark-password";

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = vigil_store::open_sqlite(dir.path()).expect("store");
    let registry = Arc::new(Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::from_seed([9; 32]))));
    registry.init_admin(&UserId::parse("admin").expect("id"), "Admin", &Password::new(PW)).expect("init");
    let admin = registry.authenticate(&UserId::parse("admin").expect("id"), &Password::new(PW)).expect("auth");
    registry.add_user(&admin, &UserId::parse("ds").expect("id"), "Dana", Role::DataScientist, &Password::new(PW)).expect("user");
    let ds = registry.authenticate(&UserId::parse("ds").expect("id"), &Password::new(PW)).expect("auth");
    let mut state = vigil_server::AppState::new(registry.clone(), dir.path().join("artifacts")).expect("state");
    state.log = vigil_server::LogLevel::Off;
    let state = Arc::new(state);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            vigil_server::serve(listener, state, std::future::pending()).await.expect("serve");
        });
    });
    let url = format!("http://{}/api/2.0/mlflow", rx.recv().expect("addr"));
    let auth = format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("ds:{PW}")));
    let agent = || -> ureq::Agent { ureq::Agent::config_builder().http_status_as_error(false).build().into() };
    let post = |a: &ureq::Agent, path: &str, body: &Value| -> Value {
        let mut r = a.post(&format!("{url}/{path}")).header("authorization", &auth).header("content-type", "application/json").send(body.to_string()).expect("post");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
    };
    let get = |a: &ureq::Agent, path: &str| -> Value {
        let mut r = a.get(&format!("{url}/{path}")).header("authorization", &auth).call().expect("get");
        assert_eq!(r.status().as_u16(), 200, "{path}");
        serde_json::from_str(&r.body_mut().read_to_string().expect("body")).expect("json")
    };
    let a = agent();
    let exp = post(&a, "experiments/create", &json!({"name": "bench"}))["experiment_id"].as_str().expect("id").to_owned();
    let new_run = |a: &ureq::Agent| post(a, "runs/create", &json!({"experiment_id": exp}))["run"]["info"]["run_id"].as_str().expect("run").to_owned();

    // 1. Single durable writes.
    let run = new_run(&a);
    let n = if quick { 300 } else { 2000 };
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        post(&a, "runs/log-metric", &json!({"run_id": run, "key": "loss", "value": 1.0 / (i as f64 + 1.0), "timestamp": 1_700_000_000_000i64 + i as i64, "step": i}));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("server       log-metric, 1 client, {n} calls: p50 {:.2} ms, p99 {:.2} ms", pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99));

    // 2. Batches from 8 concurrent clients.
    let clients = 8;
    let per_client = if quick { 5 } else { 25 };
    let runs: Vec<String> = (0..clients).map(|_| new_run(&a)).collect();
    // Bodies are encoded before the clock starts: the clients share the server's two cores,
    // and their JSON encoding is not the server's work.
    let bodies: Vec<Vec<String>> = runs
        .iter()
        .map(|run| {
            (0..per_client)
                .map(|b| {
                    let metrics: Vec<Value> = (0..1000).map(|i| json!({"key": format!("m{}", i % 10), "value": i as f64 * 0.5, "timestamp": 1_700_000_000_000i64 + i, "step": b * 1000 + i})).collect();
                    json!({"run_id": run, "metrics": metrics}).to_string()
                })
                .collect()
        })
        .collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for bodies in &bodies {
            let a = agent();
            let (url, auth) = (&url, &auth);
            s.spawn(move || {
                for body in bodies {
                    let r = a.post(&format!("{url}/runs/log-batch")).header("authorization", auth).header("content-type", "application/json").send(body.as_str()).expect("post");
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    let points = clients * per_client * 1000;
    println!("server       log-batch x1000, {clients} clients, {points} points: {:.0} points/s ({secs:.2} s)", points as f64 / secs);

    // 3. A 100,000-point history, fetched as the client pages it.
    let run = new_run(&a);
    let total = if quick { 20_000 } else { 100_000 };
    for chunk in 0..total / 1000 {
        let metrics: Vec<Metric> = (0..1000).map(|i| Metric { key: "auc".into(), point: MetricPoint { value: i as f64, timestamp: 1, step: (chunk * 1000 + i) as i64 } }).collect();
        registry.log_batch(&ds, &run, &LogBatch { metrics, ..Default::default() }).expect("log");
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut got = 0;
        let mut token: Option<String> = None;
        loop {
            let page = get(&a, &format!("metrics/get-history?run_id={run}&metric_key=auc&max_results=25000{}", token.as_ref().map(|t| format!("&page_token={t}")).unwrap_or_default()));
            got += page["metrics"].as_array().map_or(0, Vec::len);
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        assert_eq!(got, total);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("server       get-history of {total} points (pages of 25,000): median {:.0} ms", pct(&mut times, 0.5));

    // 4. Search over many runs.
    let nruns = if quick { 10_000 } else { 100_000 };
    let search_exp = registry.create_experiment(&ds, "search-bench", None, &[]).expect("exp");
    let t = Instant::now();
    for i in 0..nruns {
        let r = registry.create_run(&ds, search_exp.id, Some(&format!("r{i}")), Some(1_700_000_000_000 + i as i64), &[]).expect("run");
        let b = LogBatch {
            metrics: vec![
                Metric { key: "acc".into(), point: MetricPoint { value: (i % 1000) as f64 / 1000.0, timestamp: 1, step: 0 } },
                Metric { key: "loss".into(), point: MetricPoint { value: (i % 777) as f64, timestamp: 1, step: 0 } },
            ],
            params: vec![("model".into(), ["lr", "rf", "gbm", "xgb"][i % 4].into()), ("C".into(), format!("{}", i % 10))],
            tags: vec![("team".into(), ["icu", "ed"][i % 2].into())],
        };
        registry.log_batch(&ds, &r.run_id, &b).expect("log");
    }
    eprintln!("  (created {nruns} runs in {:.0} s)", t.elapsed().as_secs_f64());
    // What the server's periodic maintenance does (every ten minutes and at start).
    registry.optimize_store().expect("optimize");
    let mut times = Vec::new();
    let body = json!({"experiment_ids": [search_exp.id.to_string()], "filter": "metrics.acc > 0.9 and params.model = 'rf'", "order_by": ["metrics.loss DESC"], "max_results": 100});
    for _ in 0..21 {
        let t = Instant::now();
        let r = post(&a, "runs/search", &body);
        assert_eq!(r["runs"].as_array().map_or(0, Vec::len), 100);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("server       search_runs (filter + order_by, first 100) over {nruns} runs: p50 {:.1} ms", pct(&mut times, 0.5));

    // 5. Alias lookups.
    post(&a, "registered-models/create", &json!({"name": "bench-model"}));
    for i in 0..50 {
        post(&a, "model-versions/create", &json!({"name": "bench-model", "source": format!("s3://models/bench/{i}")}));
    }
    for (alias, v) in [("challenger", 50), ("candidate", 49), ("shadow", 48), ("previous", 47), ("baseline", 1)] {
        post(&a, "registered-models/alias", &json!({"name": "bench-model", "alias": alias, "version": v.to_string()}));
    }
    let n = if quick { 300 } else { 2000 };
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let r = get(&a, "registered-models/alias?name=bench-model&alias=challenger");
        assert_eq!(r["model_version"]["version"], "50");
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!("server       alias lookup (50 versions, 5 aliases), {n} calls: p50 {:.2} ms, p99 {:.2} ms", pct(&mut lat.clone(), 0.5), pct(&mut lat, 0.99));
}
