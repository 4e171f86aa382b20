//! `vigil drift` through the binary: CSV and Parquet in, table/JSON/HTML out, errors named.

use crate::*;

fn write_csv(path: &Path, n: usize, glucose_shift: f64, seed: u64) {
    let mut s = seed;
    let mut u = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut out = String::from("pid,age,glucose,sex,score\n");
    for i in 0..n {
        let norm = |u: &mut dyn FnMut() -> f64| (0..12).map(|_| u()).sum::<f64>() - 6.0;
        let age = 50.0 + 12.0 * norm(&mut u);
        let glucose = 100.0 + glucose_shift + 15.0 * norm(&mut u);
        let sex = if u() < 0.5 { "F" } else { "M" };
        let score = 1.0 / (1.0 + (-(glucose - 110.0) / 10.0).exp());
        let age = if i % 97 == 0 { "NA".to_owned() } else { format!("{age:.2}") };
        out.push_str(&format!("p{seed}-{i},{age},{glucose:.2},{sex},{score:.5}\n"));
    }
    std::fs::write(path, out).unwrap();
}

fn setup() -> (Vigil, PathBuf) {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let train = v.data_dir().join("train.csv");
    write_csv(&train, 3000, 0.0, 1);
    v.as_user("ds", &["drift", "baseline", "m@1.0.0", "--data", train.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]).ok();
    (v, train)
}

#[test]
fn baseline_add_and_check_as_table_json_and_html() {
    let (v, _) = setup();
    let batch = v.data_dir().join("batch.csv");
    write_csv(&batch, 2000, 20.0, 2);
    let added = v.as_user("ds", &["--json", "drift", "add", "m@1.0.0", "--data", batch.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]).ok().json();
    assert_eq!(added["rows"], 2000);

    let table = v.as_user("clin", &["drift", "check", "m@1.0.0"]).ok().stdout;
    assert!(table.contains("status drift") && table.contains("glucose"), "{table}");
    let j = v.as_user("clin", &["--json", "drift", "check", "m@1.0.0"]).ok().json();
    assert_eq!(j["status"], "drift");
    let verdicts: std::collections::BTreeMap<String, String> =
        j["features"].as_array().unwrap().iter().map(|f| (f["feature"].as_str().unwrap().to_owned(), f["verdict"].as_str().unwrap().to_owned())).collect();
    assert_eq!(verdicts["glucose"], "drift");
    assert_ne!(verdicts["age"], "drift");
    assert_ne!(verdicts["sex"], "drift");
    assert_eq!(j["prediction"]["verdict"], "drift");
    assert!(j["conventions"]["binning"].as_str().unwrap().starts_with("reference_quantiles"));

    let html = v.data_dir().join("report.html");
    v.as_user("clin", &["drift", "check", "m@1.0.0", "--format", "html", "--output", html.to_str().unwrap()]).ok();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.starts_with("<!doctype html>") && page.contains("<svg") && page.contains("glucose — drift"));
    // Self-contained: no scripts, and the only URL is the SVG namespace (never fetched).
    assert!(!page.contains("<script"));
    assert_eq!(page.matches("http").count(), page.matches("xmlns=\"http://www.w3.org/2000/svg\"").count());

    // Ad-hoc check of a file against the baseline (a stable one).
    let stable = v.data_dir().join("stable.csv");
    write_csv(&stable, 1500, 0.0, 3);
    let j = v.as_user("clin", &["--json", "drift", "check", "m@1.0.0", "--data", stable.to_str().unwrap(), "--prediction-col", "score"]).ok().json();
    assert_eq!(j["status"], "no_drift", "{j}");
    let checks = v.run(&["--json", "audit", "log", "--action", "drift.check"]).ok().json();
    assert_eq!(checks.as_array().map(Vec::len), Some(4));
    assert_eq!(v.run(&["--json", "audit", "verify"]).ok().json()["ok"], true);
}

#[test]
fn parquet_baseline_and_seed_config() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vigil-data/tests/fixtures/types_zstd.parquet");
    let out = v.as_user("ds", &["--json", "drift", "baseline", "m@1.0.0", "--data", fixture.to_str().unwrap()]).ok().json();
    assert_eq!(out["features"], 6);
    let cfg = v.data_dir().join("cfg.json");
    std::fs::write(&cfg, r#"{"psi_threshold": 0.2, "ks_test_threshold": 0.05, "performance_drop_threshold": 0.05, "clinical_significance_threshold": 0.1, "alert_on_drift": true, "alert_cooldown_hours": 4, "features": {"age": {"effect": {"measure": "median_shift", "threshold": 10}}}}"#).unwrap();
    let c = v.as_user("ds", &["--json", "drift", "config", "m@1.0.0", "--set", cfg.to_str().unwrap()]).ok().json();
    assert_eq!(c["features"]["age"]["effect"]["measure"], "median_shift");
    std::fs::write(&cfg, r#"{"psi_treshold": 0.2}"#).unwrap();
    let bad = v.as_user("ds", &["drift", "config", "m@1.0.0", "--set", cfg.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("psi_treshold"), "{}", bad.stderr);
}

#[test]
fn bad_files_are_named_and_nothing_is_stored() {
    let (v, _) = setup();
    let f = v.data_dir().join("bad.csv");
    let cases: &[(&str, &str, i32, &str)] = &[
        ("pid,age,glucose,sex,score\np1,John Smith,100,F,0.4\n", "bad.csv", 2, "column 'age' must be numeric"),
        ("pid,glucose,sex,score\np1,100,F,0.4\n", "bad.csv", 2, "missing feature column 'age'"),
        ("", "bad.csv", 2, "no columns"),
        ("pid,age\np1,3,4\n", "bad.csv", 2, "different numbers of fields"),
    ];
    for (content, name, code, needle) in cases {
        std::fs::write(&f, content).unwrap();
        let r = v.as_user("ds", &["drift", "add", "m@1.0.0", "--data", f.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]);
        assert_eq!(r.code, *code, "{content:?}: {}", r.stderr);
        assert!(r.stderr.contains(needle) && r.stderr.contains(name), "{content:?}: {}", r.stderr);
        assert!(!r.stderr.contains("Smith"));
    }
    let corrupt = v.data_dir().join("x.parquet");
    std::fs::write(&corrupt, b"PAR1garbage").unwrap();
    let r = v.as_user("ds", &["drift", "add", "m@1.0.0", "--data", corrupt.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("x.parquet") && r.stderr.contains("not a readable Parquet file"), "{}", r.stderr);
    let r = v.as_user("ds", &["drift", "baseline", "nope@1.0.0", "--data", f.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("model_not_found"));
    let samples = v.run(&["--json", "audit", "log", "--action", "drift.samples"]).ok().json();
    assert_eq!(samples.as_array().map(Vec::len), Some(0), "nothing stored half-way");
    // No samples since the baseline: a clear insufficient_data, not an error.
    let j = v.as_user("ds", &["--json", "drift", "check", "m@1.0.0"]).ok().json();
    assert_eq!(j["status"], "insufficient_data");
}

#[test]
fn alerts_acknowledgement_and_retraining_command() {
    let (v, _) = setup();
    let marker = v.data_dir().join("retrain.txt");
    let cfg = v.data_dir().join("cfg.json");
    std::fs::write(&cfg, format!(r#"{{"retrain_after_windows": 1, "retrain_command": "echo \"$VIGIL_MODEL@$VIGIL_VERSION $VIGIL_REPORT_ID\" > '{}'"}}"#, marker.display())).unwrap();
    v.as_user("ds", &["drift", "config", "m@1.0.0", "--set", cfg.to_str().unwrap()]).ok();
    let batch = v.data_dir().join("batch.csv");
    write_csv(&batch, 2000, 25.0, 9);
    v.as_user("ds", &["drift", "add", "m@1.0.0", "--data", batch.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]).ok();
    let j = v.as_user("ds", &["--json", "drift", "check", "m@1.0.0"]).ok().json();
    assert!(j["retrain_requested"].as_str().unwrap().contains("consecutive"));
    let ran = std::fs::read_to_string(&marker).unwrap();
    assert!(ran.starts_with("m@1.0.0 dr_"), "{ran}");
    let runs = v.run(&["--json", "audit", "log", "--action", "drift.retrain_run"]).ok().json();
    assert_eq!(runs[0]["details"]["new"]["exit_code"], 0);

    let alerts = v.run(&["--json", "drift", "alerts", "m@1.0.0"]).ok().json();
    let glucose = alerts.as_array().unwrap().iter().find(|a| a["check"] == "feature:glucose").unwrap().clone();
    assert_eq!(glucose["state"], "open");
    let id = glucose["alert_id"].as_str().unwrap();
    v.as_user("clin", &["drift", "ack", id, "--comment", "lab recalibrated the analyser"]).ok();
    let again = v.as_user("clin", &["drift", "ack", id, "--comment", "twice"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("alert_not_open"));
    let table = v.run(&["drift", "alerts", "--all"]).ok().stdout;
    assert!(table.contains("acknowledged"), "{table}");
}

/// A one-request-at-a-time HTTP server on port 0 that records POST bodies.
fn webhook_server(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
            let _ = write!(stream, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, bodies)
}

#[test]
fn alerts_reach_webhooks_and_failures_are_retried_without_blocking_checks() {
    let (v, _) = setup();
    let (ok_url, bodies) = webhook_server(200);
    let (bad_url, _) = webhook_server(503);
    let cfg = v.data_dir().join("cfg.json");
    std::fs::write(&cfg, format!(r#"{{"webhooks": ["{ok_url}", "{bad_url}"]}}"#)).unwrap();
    v.as_user("ds", &["drift", "config", "m@1.0.0", "--set", cfg.to_str().unwrap()]).ok();
    let batch = v.data_dir().join("batch.csv");
    write_csv(&batch, 2000, 25.0, 11);
    v.as_user("ds", &["drift", "add", "m@1.0.0", "--data", batch.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]).ok();
    let r = v.as_user("ds", &["--json", "drift", "check", "m@1.0.0"]).ok();
    assert_eq!(r.json()["status"], "drift", "the check succeeds whatever the webhooks do");
    assert!(r.stderr.contains("could not be delivered"), "{}", r.stderr);
    let got = bodies.lock().unwrap().clone();
    assert!(!got.is_empty());
    let first: Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(first["model"], "m");
    assert!(first["alert_id"].as_str().unwrap().starts_with("al_"));
    let failures = v.run(&["--json", "audit", "log", "--action", "alert.delivery_failed"]).ok().json();
    let detail = failures[0]["details"]["reason"].as_str().unwrap().to_owned();
    assert!(detail.contains("503") && !detail.contains("127.0.0.1"), "{detail}");

    // Fix the endpoint: the next delivery run succeeds and nothing stays queued.
    std::fs::write(&cfg, format!(r#"{{"webhooks": ["{ok_url}"]}}"#)).unwrap();
    v.as_user("ds", &["drift", "config", "m@1.0.0", "--set", cfg.to_str().unwrap()]).ok();
    let d = v.run(&["--json", "drift", "deliver"]).ok().json();
    assert!(d["delivered"].as_u64().unwrap() >= 1 && d["failed"] == 0, "{d}");
    let again = v.run(&["--json", "drift", "deliver"]).ok().json();
    assert_eq!((again["delivered"].as_u64(), again["failed"].as_u64()), (Some(0), Some(0)));
}

#[test]
fn a_baseline_from_partitions_equals_one_from_the_whole() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    v.register("ds", ("m", "2.0.0")).ok();
    let (p1, p2, whole, current) = (v.data_dir().join("p1.csv"), v.data_dir().join("p2.csv"), v.data_dir().join("whole.csv"), v.data_dir().join("cur.csv"));
    write_csv(&p1, 1500, 0.0, 21);
    write_csv(&p2, 1500, 0.0, 22);
    let second = std::fs::read_to_string(&p2).unwrap();
    std::fs::write(&whole, std::fs::read_to_string(&p1).unwrap() + second.split_once('\n').unwrap().1).unwrap();
    write_csv(&current, 1000, 5.0, 23);
    let parts = v
        .as_user("ds", &["--json", "drift", "baseline", "m@1.0.0", "--data", p1.to_str().unwrap(), "--and-data", p2.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"])
        .ok()
        .json();
    assert_eq!(parts["rows"], 3000);
    v.as_user("ds", &["drift", "baseline", "m@2.0.0", "--data", whole.to_str().unwrap(), "--prediction-col", "score", "--id-col", "pid"]).ok();
    let check = |r: &str| {
        let mut j = v.as_user("ds", &["--json", "drift", "check", r, "--data", current.to_str().unwrap(), "--prediction-col", "score"]).ok().json();
        let features = j["features"].take();
        (features, j["prediction"]["statistic"].clone())
    };
    let (a, pa) = check("m@1.0.0");
    let (b, pb) = check("m@2.0.0");
    assert_eq!(a, b, "identical statistics from merged partition profiles");
    assert_eq!(pa, pb);
    assert!(a.as_array().unwrap().len() >= 3);
}

#[test]
fn a_schema_declares_kinds_and_ignores_identifiers() {
    let v = Vigil::with_team();
    v.register("ds", ("m", "1.0.0")).ok();
    let train = v.data_dir().join("train.csv");
    write_csv(&train, 500, 0.0, 31);
    let schema = v.data_dir().join("schema.json");
    std::fs::write(&schema, r#"{"ignore": ["pid"], "categorical": ["sex"], "numeric": ["age", "glucose"]}"#).unwrap();
    let out = v.as_user("ds", &["--json", "drift", "baseline", "m@1.0.0", "--data", train.to_str().unwrap(), "--prediction-col", "score", "--schema", schema.to_str().unwrap()]).ok().json();
    assert_eq!(out["features"], 3, "pid ignored, score is the prediction");
    std::fs::write(&schema, r#"{"numeric": ["sex"]}"#).unwrap();
    let bad = v.as_user("ds", &["drift", "baseline", "m@1.0.0", "--data", train.to_str().unwrap(), "--schema", schema.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("column 'sex' must be numeric"), "{}", bad.stderr);
    std::fs::write(&schema, r#"{"numerik": ["age"]}"#).unwrap();
    let bad = v.as_user("ds", &["drift", "baseline", "m@1.0.0", "--data", train.to_str().unwrap(), "--schema", schema.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("unknown schema key 'numerik'"), "{}", bad.stderr);
}
