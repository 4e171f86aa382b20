//! Human-readable output, printed from the JSON documents of `vigil-api` (the `--json` output
//! and the server's responses). Because the local commands and the remote ones (`--url`) print
//! the same documents through these functions, their output is the same by construction.

use crate::table;
use serde_json::Value;

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn or(v: &Value, default: &str) -> String {
    match v {
        Value::Null => default.to_owned(),
        Value::String(x) if x.is_empty() => default.to_owned(),
        other => s(other),
    }
}

fn list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default()
}

/// `model register`.
pub fn registered(v: &Value) {
    println!("registered {}@{} ({}) in development, content hash {}", s(&v["name"]), s(&v["version"]), s(&v["model_id"]), s(&v["content_hash"]));
}

/// `model update`.
pub fn updated(v: &Value) {
    println!("updated {}@{}: content hash {}", s(&v["name"]), s(&v["version"]), s(&v["content_hash"]));
}

/// `lineage --data-hash`: the versions trained on that data.
pub fn versions_by_data(vs: &Value) {
    let rows = vs
        .as_array()
        .map(|a| a.iter().map(|v| vec![format!("{}@{}", s(&v["name"]), s(&v["version"])), s(&v["stage"]), s(&v["model_id"])]).collect::<Vec<_>>())
        .unwrap_or_default();
    table::print(&["MODEL VERSION", "STAGE", "MODEL ID"], &rows);
}

/// `model show NAME@VERSION`.
pub fn version(v: &Value) {
    table::kv(&[
        ("model", s(&v["name"])),
        ("version", s(&v["version"])),
        ("model id", s(&v["model_id"])),
        ("type", s(&v["model_type"])),
        ("stage", s(&v["stage"])),
        ("artifact", s(&v["artifact_uri"])),
        ("artifact sha256", or(&v["artifact_sha256"], "(none)")),
        ("content hash", s(&v["content_hash"])),
        ("registered", format!("{} by {}", s(&v["created_at"]), s(&v["created_by"]))),
    ]);
    let metrics: Vec<String> = v["metrics"].as_object().map(|m| m.iter().map(|(k, x)| format!("{k}={}", fmt_number(x))).collect()).unwrap_or_default();
    println!("metrics          {}", if metrics.is_empty() { "(none)".into() } else { metrics.join(", ") });
    let fields = v["model_card"]["fields"].as_array().cloned().unwrap_or_default();
    let set: Vec<&Value> = fields.iter().filter(|f| f["status"] != "missing").collect();
    let missing = v["model_card"]["hti1_missing"].as_array().map_or(0, Vec::len);
    println!("model card       {} fields set; HTI-1 attributes {}/31 present", set.len(), 31 - missing);
    for f in set {
        if f["status"] == "value" {
            println!("  {:<40} {}", s(&f["key"]), s(&f["text"]));
        } else {
            println!("  {:<40} not available: {}", s(&f["key"]), s(&f["text"]));
        }
    }
}

/// A metric value as Rust prints an f64 (`0.9`, `1`, `1e-7`).
fn fmt_number(x: &Value) -> String {
    x.as_f64().map_or_else(|| s(x), |f| f.to_string())
}

/// `model list`: models with `versions: [{version, stage, …}]`.
pub fn model_list(models: &Value) {
    let rows = models
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let vs = m["versions"].as_array().cloned().unwrap_or_default();
                    let prod = vs.iter().find(|v| v["stage"] == "production").map(|v| s(&v["version"])).unwrap_or_else(|| "-".into());
                    let latest = vs
                        .iter()
                        .filter_map(|v| vigil_core::semver::Version::parse(v["version"].as_str().unwrap_or("")).ok())
                        .max()
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| "-".into());
                    vec![s(&m["name"]), s(&m["model_type"]), vs.len().to_string(), latest, prod, s(&m["owner"])]
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    table::print(&["MODEL", "TYPE", "VERSIONS", "LATEST", "PRODUCTION", "OWNER"], &rows);
}

/// `model show NAME`: the model with full versions.
pub fn model(m: &Value) {
    table::kv(&[("model", s(&m["name"])), ("type", s(&m["model_type"])), ("owner", s(&m["owner"])), ("description", s(&m["description"]))]);
    println!();
    let mut vs = m["versions"].as_array().cloned().unwrap_or_default();
    let key = |v: &Value| vigil_core::semver::Version::parse(v["version"].as_str().unwrap_or("")).ok();
    vs.sort_by_key(|v| std::cmp::Reverse(key(v)));
    let rows = vs
        .iter()
        .map(|v| vec![s(&v["version"]), s(&v["stage"]), s(&v["model_id"]), table::short(&s(&v["content_hash"]), 16), s(&v["created_at"])])
        .collect::<Vec<_>>();
    table::print(&["VERSION", "STAGE", "MODEL ID", "CONTENT HASH", "REGISTERED"], &rows);
}

/// A tally as one line (the JSON form, as before).
fn tally(t: &Value) -> String {
    t.to_string()
}

/// `promote request`.
pub fn request_opened(r: &Value) {
    println!("requested {} -> {} for {}: request {}", s(&r["from_stage"]), s(&r["to_stage"]), s(&r["model"]), s(&r["request_id"]));
    println!("needs {} approval(s) including {}", s(&r["policy"]["required_approvals"]), list(&r["policy"]["required_roles"]).join(" and "));
}

/// `promote approve|reject`: the request with `signature` and `tally`.
pub fn signed(j: &Value) {
    let sig = &j["signature"];
    println!(
        "signed by {} ({}) at {} UTC, meaning: {}, decision: {}",
        s(&sig["printed_name"]),
        s(&sig["role"]),
        s(&sig["signed_at"]),
        s(&sig["meaning"]),
        s(&sig["decision"])
    );
    println!("signed content hash {}", s(&sig["content_hash"]));
    println!("request {} is now {} ({})", s(&j["request_id"]), s(&j["status"]), tally(&j["tally"]));
}

/// `promote list`.
pub fn request_list(rs: &Value) {
    let rows = rs
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| vec![s(&r["request_id"]), s(&r["model"]), format!("{}->{}", s(&r["from_stage"]), s(&r["to_stage"])), s(&r["status"]), s(&r["requester"]), s(&r["created_at"])])
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    table::print(&["REQUEST", "MODEL", "TRANSITION", "STATUS", "REQUESTER", "OPENED"], &rows);
}

/// `promote show`.
pub fn request_detail(d: &Value) {
    table::kv(&[
        ("request", s(&d["request_id"])),
        ("model", s(&d["model"])),
        ("transition", format!("{} -> {}", s(&d["from_stage"]), s(&d["to_stage"]))),
        ("status", s(&d["status"])),
        ("requester", s(&d["requester"])),
        ("justification", s(&d["justification"])),
        ("content hash", s(&d["content_hash"])),
        ("validation", or(&d["validation_report_id"], "not required")),
        ("opened", s(&d["created_at"])),
        ("expires", or(&d["expires_at"], "never")),
        ("tally", tally(&d["tally"])),
    ]);
    println!();
    let rows = d["signatures"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|sig| {
                    vec![
                        s(&sig["printed_name"]),
                        s(&sig["role"]),
                        s(&sig["meaning"]),
                        s(&sig["decision"]),
                        s(&sig["signed_at"]),
                        if sig["counts"] == true { "yes".into() } else { format!("no: {}", s(&sig["invalid_reason"])) },
                    ]
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    table::print(&["SIGNED BY (PRINTED NAME)", "ROLE", "MEANING", "DECISION", "SIGNED AT (UTC)", "COUNTS"], &rows);
}

/// `policy show|set`.
pub fn policies(p: &Value) {
    let rows = ["staging", "production", "archived"]
        .iter()
        .map(|st| {
            let x = &p[*st];
            let expires = match x["expires_after_hours"].as_u64() {
                Some(h) => format!("{h}h"),
                None => "never".into(),
            };
            vec![st.to_string(), s(&x["required_approvals"]), list(&x["required_roles"]).join(","), list(&x["eligible_roles"]).join(","), expires]
        })
        .collect::<Vec<_>>();
    table::print(&["TARGET STAGE", "APPROVALS", "REQUIRED ROLES", "ELIGIBLE ROLES", "EXPIRES"], &rows);
}

/// `policy validation show|set`.
pub fn validation_policy(p: &Value) {
    let x = &p["policy"];
    println!("validation policy for {} {} (source: {})", s(&p["scope"]).replace('_', " "), s(&p["target"]), s(&p["source"]));
    let bounds = |k: &str, rel: &str| -> Vec<String> { x[k].as_object().map(|m| m.iter().map(|(n, v)| format!("{n} {rel} {v}")).collect()).unwrap_or_default() };
    let mut rows = vec![
        vec!["metric bounds".to_owned(), [bounds("floors", ">="), bounds("ceilings", "<=")].concat().join(", ")],
        vec!["max AUC drop vs Production".to_owned(), s(&x["max_auc_regression"])],
        vec!["fairness".to_owned(), format!("{} difference <= {}", s(&x["fairness_criterion"]), s(&x["fairness_tolerance"]))],
        vec!["minimum group".to_owned(), format!("{} rows, {} positives, {} negatives", s(&x["min_group"]["rows"]), s(&x["min_group"]["positives"]), s(&x["min_group"]["negatives"]))],
    ];
    for k in ["require_card_complete", "require_data_hash", "require_artifact_digest", "require_for_staging"] {
        rows.push(vec![k.replace('_', " "), s(&x[k])]);
    }
    rows.push(vec!["bootstrap".to_owned(), format!("{} resamples, seed {}", s(&x["resamples"]), s(&x["seed"]))]);
    table::print(&["RULE", "VALUE"], &rows);
}

/// `audit verify`.
pub fn chain_report(r: &Value) {
    match r["first_bad_position"].as_i64() {
        None => println!("audit chain intact: {} events, head {}", s(&r["events"]), s(&r["head_hash"])),
        Some(pos) => println!("audit chain BROKEN at position {pos}: {}", s(&r["problem"])),
    }
    let failures = r["signature_failures"].as_array().cloned().unwrap_or_default();
    if failures.is_empty() {
        println!("signatures intact: {} verified with key {}", s(&r["signatures_checked"]), s(&r["key_id"]));
    } else {
        for f in failures {
            println!("signature FAILED: {}: {}", s(&f["signature_id"]), s(&f["reason"]));
        }
    }
    let records = r["record_failures"].as_array().cloned().unwrap_or_default();
    if records.is_empty() {
        println!("records intact: every staging and production version is backed by a valid approval");
    } else {
        for f in records {
            println!("record FAILED: {} {}", s(&f["model_version"]), s(&f["problem"]));
        }
    }
}

/// `audit log`.
pub fn audit_events(events: &Value) {
    let rows = events
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    let d = &e["details"];
                    let note = d.get("code").or_else(|| d.get("reason")).and_then(Value::as_str).unwrap_or("").to_owned();
                    let target = match (e["model"].as_str(), e["version"].as_str()) {
                        (Some(m), Some(v)) => format!("{m}@{v}"),
                        (Some(m), None) => m.to_owned(),
                        _ => format!("{}:{}", s(&e["entity_type"]), s(&e["entity_id"])),
                    };
                    vec![s(&e["seq"]), s(&e["at"]), s(&e["actor"]), s(&e["action"]), s(&e["outcome"]), target, note]
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    table::print(&["SEQ", "AT (UTC)", "ACTOR", "ACTION", "OUTCOME", "TARGET", "CODE / REASON"], &rows);
}

/// `lineage NAME@VERSION`.
pub fn lineage(l: &Value) {
    let v = &l["model_version"];
    let li = &v["lineage"];
    let show = |x: &Value| or(x, "(not recorded)");
    let reference = format!("{}@{}", s(&v["name"]), s(&v["version"]));
    let ok = l["content_hash_ok"] == true;
    println!("{} [{}]  content hash {} ({})", reference, s(&v["stage"]), s(&v["content_hash"]), if ok { "verified" } else { "MISMATCH: altered outside vigil" });
    println!();
    println!("data");
    let features = list(&li["features"]);
    table::kv(&[
        ("  training data", show(&li["training_data_uri"])),
        ("  data version", show(&li["training_data_version"])),
        ("  data hash", show(&li["training_data_hash"])),
        ("  features", if features.is_empty() { "(not recorded)".into() } else { features.join(", ") }),
    ]);
    println!("run and code");
    table::kv(&[
        ("  training run", show(&li["training_run_id"])),
        ("  code commit", show(&li["code_commit"])),
        ("  environment", show(&li["environment_digest"])),
        ("  parent version", show(&li["parent_model_version"])),
        ("  artifact", format!("{} sha256 {}", s(&v["artifact_uri"]), or(&v["artifact_sha256"], "(none)"))),
    ]);
    let same = list(&l["same_training_data"]);
    if !same.is_empty() {
        println!("  also trained on this data: {}", same.join(", "));
    }
    println!("approvals");
    let requests = l["requests"].as_array().cloned().unwrap_or_default();
    if requests.is_empty() {
        println!("  (no promotion requests)");
    }
    for r in &requests {
        println!(
            "  {} {}->{} {} (requested by {} at {}: {})",
            s(&r["request_id"]),
            s(&r["from_stage"]),
            s(&r["to_stage"]),
            s(&r["status"]),
            s(&r["requester"]),
            s(&r["created_at"]),
            s(&r["justification"])
        );
        for sig in r["signatures"].as_array().cloned().unwrap_or_default() {
            println!(
                "    {} {} — {} ({}), meaning {}, at {} UTC{}",
                s(&sig["decision"]),
                s(&sig["signer_id"]),
                s(&sig["printed_name"]),
                s(&sig["role"]),
                s(&sig["meaning"]),
                s(&sig["signed_at"]),
                if sig["counts"] == true { String::new() } else { format!(" [does not count: {}]", s(&sig["invalid_reason"])) }
            );
        }
    }
    println!("stage history");
    for t in l["stage_history"].as_array().cloned().unwrap_or_default() {
        println!("  {} {} -> {} by {} ({})", s(&t["at"]), or(&t["from"], "-"), s(&t["to"]), s(&t["actor"]), s(&t["reason"]));
    }
}

/// `drift alerts`.
pub fn alerts(alerts: &Value) {
    let rows = alerts
        .as_array()
        .map(|a| a.iter().map(|x| vec![s(&x["alert_id"]), s(&x["check"]), s(&x["state"]), s(&x["opened_at"]), s(&x["detail"])]).collect::<Vec<_>>())
        .unwrap_or_default();
    table::print(&["ALERT", "CHECK", "STATE", "OPENED (UTC)", "DETAIL"], &rows);
}

/// `drift check` as a table, from the report document.
pub fn drift_report(reference: &str, r: &Value) {
    println!(
        "{} drift check {}: status {} (window {} rows, baseline v{})",
        reference,
        s(&r["report_id"]),
        s(&r["status"]),
        s(&r["window_rows"]),
        s(&r["baseline"]["baseline_version"])
    );
    let n = |x: &Value| match x.as_f64() {
        Some(f) if f.is_finite() => format!("{f:.3e}"),
        _ => "-".into(),
    };
    let rows = r["features"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| vec![s(&f["feature"]), s(&f["test"]), n(&f["statistic"]), n(&f["p_value"]), n(&f["adjusted_p"]), format!("{}={}", s(&f["effect"]), n(&f["effect_value"])), s(&f["verdict"])])
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    table::print(&["FEATURE", "TEST", "STATISTIC", "P", "P ADJ", "EFFECT", "VERDICT"], &rows);
    if r["prediction"].is_object() {
        println!("prediction drift: {} ({})", s(&r["prediction"]["verdict"]), s(&r["prediction"]["reason"]));
    }
    if let Some(p) = r["performance"].as_object() {
        let acc = p.get("accuracy").and_then(Value::as_f64).unwrap_or(f64::NAN);
        let base = match p.get("baseline_accuracy").and_then(Value::as_f64) {
            Some(b) => format!("Some({b:?})"),
            None => "None".into(),
        };
        let degraded = p.get("degraded").and_then(Value::as_bool).unwrap_or(false);
        println!("accuracy {:.4} on {} labelled rows (baseline {}){}", acc, p.get("labelled").map(s).unwrap_or_default(), base, if degraded { " — DEGRADED" } else { "" });
    }
    for rec in list(&r["recommendations"]) {
        println!("- {rec}");
    }
}
