//! `vigil drift …`: read data files, call the monitoring use cases, print tables, JSON or HTML.

use crate::cli::{DataArgs, DriftCmd, Global};
use crate::commands::{emit, open, principal};
use crate::table;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use vigil_core::ids::Timestamp;
use vigil_core::model::{ModelVersion, parse_reference};
use vigil_core::monitor::{Batch, Window, config_from_json, config_to_json, report_json};
use vigil_core::registry::Registry;
use vigil_core::{Error, ErrorCode};
use vigil_data::{Kind, Roles, read_table, to_batch};

fn version(reg: &Registry, reference: &str) -> Result<ModelVersion> {
    let (name, v) = parse_reference(reference)?;
    Ok(reg.get_version(&name, &v)?)
}

fn expected(reg: &Registry, v: &ModelVersion) -> Result<BTreeMap<String, Kind>> {
    Ok(vigil_data::baseline_kinds(reg.baseline_features(&v.id)?))
}

fn load(path: &Path, args: Roles) -> Result<Batch> {
    let table = read_table(path)?;
    Ok(to_batch(table, &args, path)?)
}

/// Roles for a data file: the baseline's kinds (if any) win over a schema's, which win over
/// inference; the schema's `ignore` list is always applied.
fn roles(d: &DataArgs, baseline: BTreeMap<String, Kind>) -> Result<Roles> {
    let (mut expected, ignore) = match &d.schema {
        Some(p) => vigil_data::read_schema(p)?,
        None => (BTreeMap::new(), Vec::new()),
    };
    expected.extend(baseline);
    Ok(Roles { prediction: d.prediction_col.clone(), id: d.id_col.clone(), label: d.label_col.clone(), expected, ignore, strict_kinds: false })
}

pub fn run(g: &Global, c: DriftCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        DriftCmd::Baseline { reference, data, more } => {
            let v = version(&reg, &reference)?;
            let (b, features) = if more.is_empty() {
                let batch = load(&data.data, roles(&data, BTreeMap::new())?)?;
                let actor = principal(&reg, g)?;
                (reg.set_baseline(&actor, &v.id, &batch)?, batch.features.len())
            } else {
                // Partitions: profile each file, merge, keep only the merged profiles.
                let mut merged: Vec<(String, vigil_stats::profile::FeatureProfile)> = Vec::new();
                let mut rows = 0usize;
                for path in std::iter::once(&data.data).chain(&more) {
                    let kinds: BTreeMap<String, Kind> = merged
                        .iter()
                        .filter(|(k, _)| k != vigil_core::monitor::PREDICTION)
                        .map(|(k, p)| (k.clone(), if matches!(p, vigil_stats::profile::FeatureProfile::Numeric { .. }) { Kind::Numeric } else { Kind::Categorical }))
                        .collect();
                    let batch = load(path, roles(&data, kinds.clone())?)?;
                    if !kinds.is_empty() && batch.features.len() != kinds.len() {
                        return Err(Error::new(ErrorCode::InvalidManifest, format!("{}: the partitions have different columns", path.display())).into());
                    }
                    rows += batch.rows()?;
                    let profiles = Registry::profile_batch(&batch);
                    drop(batch);
                    if merged.is_empty() {
                        merged = profiles;
                    } else {
                        for ((k, acc), (k2, p)) in merged.iter_mut().zip(profiles) {
                            if *k != k2 {
                                return Err(Error::new(ErrorCode::InvalidManifest, format!("{}: the partitions have different columns", path.display())).into());
                            }
                            *acc = acc.merge(&p).ok_or_else(|| Error::new(ErrorCode::InvalidManifest, format!("{}: column {} changes type between partitions", path.display(), vigil_core::ids::quote_key(k))))?;
                        }
                    }
                }
                let actor = principal(&reg, g)?;
                let n = merged.iter().filter(|(k, _)| k != vigil_core::monitor::PREDICTION).count();
                (reg.set_baseline_profiles(&actor, &v.id, &merged, rows)?, n)
            };
            let out = serde_json::json!({"baseline_id": b.id, "baseline_version": b.baseline_version, "rows": b.rows, "features": features});
            emit(g, &out, || println!("baseline v{} for {}: {} rows, {features} features profiled", b.baseline_version, v.reference(), b.rows));
        }
        DriftCmd::Add { reference, data } => {
            let v = version(&reg, &reference)?;
            let batch = load(&data.data, roles(&data, expected(&reg, &v)?)?)?;
            let actor = principal(&reg, g)?;
            let b = reg.add_samples(&actor, &v.id, &batch)?;
            let out = serde_json::json!({"batch_id": b.id, "batch_seq": b.batch_seq, "rows": b.rows});
            emit(g, &out, || println!("added batch {} ({} rows) to {}", b.batch_seq, b.rows, v.reference()));
        }
        DriftCmd::Labels { reference, data, id_col, label_col } => {
            let v = version(&reg, &reference)?;
            let pairs = vigil_data::label_pairs(read_table(&data)?, &id_col, &label_col).ok_or_else(|| {
                Error::new(ErrorCode::InvalidManifest, format!("{}: needs columns {} and {}", data.display(), vigil_core::ids::quote_key(&id_col), vigil_core::ids::quote_key(&label_col)))
            })?;
            let actor = principal(&reg, g)?;
            let n = reg.add_labels(&actor, &v.id, &pairs)?;
            emit(g, &serde_json::json!({"labels": n}), || println!("recorded {n} labels for {}", v.reference()));
        }
        DriftCmd::Check { reference, data, prediction_col, window_rows, since, format, output } => {
            if !matches!(format.as_str(), "table" | "json" | "html") {
                return Err(Error::new(ErrorCode::InvalidFilter, "--format is table, json or html").into());
            }
            let v = version(&reg, &reference)?;
            let given = match &data {
                Some(p) => Some(load(p, Roles { prediction: prediction_col.clone(), expected: expected(&reg, &v)?, ..Default::default() })?),
                None => None,
            };
            let window = match (window_rows, since) {
                (Some(n), _) if n > 0 => Window::LastRows(n),
                (Some(_), _) => return Err(Error::new(ErrorCode::InvalidFilter, "--window-rows must be positive").into()),
                (None, Some(t)) => Window::Since(Timestamp::parse(&t)?),
                (None, None) => Window::SinceBaseline,
            };
            let actor = principal(&reg, g)?;
            let check = match &given {
                Some(b) => reg.detect_drift_on(&actor, &v.id, b)?,
                None => reg.detect_drift(&actor, &v.id, window)?,
            };
            reg.audit_read(&actor, vigil_core::phi::Read::Model(v.model_name.as_str()), "vigil drift check")?;
            let text = match format.as_str() {
                "html" => vigil_api::html::drift_report_html(&v.reference(), &check),
                "json" => format!("{}\n", report_json(&check)),
                _ => String::new(),
            };
            if let Some(path) = &output {
                let body = if format == "table" { format!("{}\n", report_json(&check)) } else { text.clone() };
                std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
            }
            if let (Some(reason), Some(cmd)) = (&check.retrain, &check.retrain_command) {
                // The rule fired: run the configured command, record its outcome.
                eprintln!("retraining requested ({reason}); running the configured command");
                let status = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(cmd)
                    .env("VIGIL_MODEL", v.model_name.as_str())
                    .env("VIGIL_VERSION", v.version.to_string())
                    .env("VIGIL_REPORT_ID", &check.report_id)
                    .env("VIGIL_RETRAIN_REASON", reason)
                    .stdout(std::process::Stdio::null())
                    .status();
                let code = status.as_ref().ok().and_then(|s| s.code());
                reg.record_retrain_run(&actor, &v.id, &check.report_id, code)?;
            }
            if format == "table" && !g.json {
                let r = &check.report;
                println!("{} drift check {}: status {} (window {} rows, baseline v{})", v.reference(), check.report_id, r.status.as_str(), check.window_rows, check.baseline.baseline_version);
                let rows: Vec<Vec<String>> = r
                    .features
                    .iter()
                    .map(|f| {
                        let n = |x: f64| if x.is_finite() { format!("{x:.3e}") } else { "-".into() };
                        vec![f.name.clone(), f.test.to_owned(), n(f.statistic), n(f.p_value), n(f.adjusted_p), format!("{}={}", f.effect.as_str(), n(f.effect_value)), f.verdict.as_str().to_owned()]
                    })
                    .collect();
                table::print(&["FEATURE", "TEST", "STATISTIC", "P", "P ADJ", "EFFECT", "VERDICT"], &rows);
                if let Some(p) = &check.prediction {
                    println!("prediction drift: {} ({})", p.verdict.as_str(), p.reason);
                }
                if let Some(p) = &check.performance {
                    println!("accuracy {:.4} on {} labelled rows (baseline {:?}){}", p.accuracy, p.labelled, p.baseline_accuracy, if p.degraded { " — DEGRADED" } else { "" });
                }
                for rec in &r.recommendations {
                    println!("- {rec}");
                }
            } else if output.is_none() || g.json {
                if g.json && format == "table" {
                    println!("{}", report_json(&check));
                } else {
                    print!("{text}");
                }
            } else if let Some(p) = &output {
                eprintln!("wrote {} report to {}", format, p.display());
            }
            if !check.alerts.is_empty() {
                // The check is stored; delivery comes after and never changes its outcome.
                match vigil_notify::deliver_pending(&reg, std::time::Duration::from_secs(3), 5, 100) {
                    Ok(r) if r.failed > 0 => eprintln!("{} alert notification(s) could not be delivered; 'vigil drift deliver' retries", r.failed),
                    Ok(_) => {}
                    Err(e) => eprintln!("alert delivery skipped: {}", e.message()),
                }
            }
        }
        DriftCmd::Alerts { reference, all } => {
            let v = reference.as_deref().map(|r| version(&reg, r)).transpose()?;
            let alerts = reg.list_alerts(v.as_ref().map(|v| v.id.as_str()), !all)?;
            let mut names = std::collections::BTreeSet::new();
            for id in alerts.iter().map(|a| a.model_version_id.as_str()).collect::<std::collections::BTreeSet<_>>() {
                names.insert(reg.get_version_by_id(id)?.model_name.to_string());
            }
            let names: Vec<String> = names.into_iter().collect();
            crate::commands::audit_local_read(&reg, g, vigil_core::phi::Read::Models(&names), "vigil drift alerts")?;
            let j: Vec<serde_json::Value> = alerts
                .iter()
                .map(|a| serde_json::json!({
                    "alert_id": a.id, "model_version_id": a.model_version_id, "check": a.check_key, "state": a.state,
                    "opened_at": a.opened_at.to_rfc3339(), "updated_at": a.updated_at.to_rfc3339(), "report_id": a.report_id, "detail": a.detail,
                    "acknowledged_by": a.acknowledged_by, "resolved_at": a.resolved_at.map(|t| t.to_rfc3339()),
                }))
                .collect();
            emit(g, &serde_json::Value::Array(j), || {
                let rows = alerts.iter().map(|a| vec![a.id.clone(), a.check_key.clone(), a.state.clone(), a.opened_at.to_string(), a.detail.clone()]).collect::<Vec<_>>();
                table::print(&["ALERT", "CHECK", "STATE", "OPENED (UTC)", "DETAIL"], &rows);
            });
        }
        DriftCmd::Deliver { timeout, max_attempts } => {
            let r = vigil_notify::deliver_pending(&reg, std::time::Duration::from_secs(timeout.clamp(1, 120)), max_attempts.max(1), 10_000)?;
            let j = serde_json::json!({"delivered": r.delivered, "failed": r.failed, "audit_only": r.audit_only});
            emit(g, &j, || println!("delivered {}, failed {} (queued for retry), audit-only {}", r.delivered, r.failed, r.audit_only));
            if r.failed > 0 {
                return Ok(ExitCode::from(1));
            }
        }
        DriftCmd::Ack { alert_id, comment } => {
            let actor = principal(&reg, g)?;
            let a = reg.acknowledge_alert(&actor, &alert_id, &comment)?;
            emit(g, &serde_json::json!({"alert_id": a.id, "state": a.state}), || println!("acknowledged {}", a.id));
        }
        DriftCmd::Config { reference, set } => {
            let v = version(&reg, &reference)?;
            if let Some(path) = set {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::new(ErrorCode::InvalidPolicy, format!("{}: not JSON (line {})", path.display(), e.line())))?;
                let config = config_from_json(&value)?;
                let actor = principal(&reg, g)?;
                reg.set_drift_config(&actor, &v.id, &config)?;
            }
            let c = reg.drift_config(&v.id)?;
            crate::commands::audit_local_read(&reg, g, vigil_core::phi::Read::Model(v.model_name.as_str()), "vigil drift config")?;
            let j = config_to_json(&c);
            emit(g, &j, || println!("{}", serde_json::to_string_pretty(&j).unwrap_or_default()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil features load`.
pub fn features(g: &Global, c: crate::cli::FeaturesCmd) -> Result<ExitCode> {
    let reg = open(g, false)?;
    match c {
        crate::cli::FeaturesCmd::Load { data, feature_set, entity } => {
            let actor = principal(&reg, g)?;
            reg.authorize_feature_write(&actor, &feature_set)?;
            let batch = load(&data, Roles::default())?;
            let (entities, features) = reg.put_online_features(&actor, &feature_set, &entity, &batch)?;
            let out = serde_json::json!({"feature_set": feature_set, "entities": entities, "features": features});
            emit(g, &out, || println!("feature set {feature_set}: {features} features for {entities} entities written"));
        }
    }
    Ok(ExitCode::SUCCESS)
}
