//! Model cards generated from registry data: the human-authored fields come from the version's
//! signed card (each of the 31 HTI-1 source attributes shown as filled, not available with a
//! reason, or missing); the numbers come only from the stored validation report bound to the
//! version's current content hash, never typed by hand. Rendered as Vigil's JSON
//! (`vigil.model_card/1`), Markdown, a self-contained HTML page, and the Model Card Toolkit's
//! JSON schema.

use crate::html::esc;
use serde_json::{Value, json};
use vigil_core::model::ModelVersion;
use vigil_core::validate::ValidationRecord;

/// The card document. `evaluation` is the newest report bound to the current content hash.
pub fn document(v: &ModelVersion, evaluation: Option<&ValidationRecord>) -> Value {
    let eval = evaluation.map(|r| {
        let report: Value = serde_json::from_str(&r.report).unwrap_or(Value::Null);
        json!({
            "report_id": r.id, "passed": r.passed, "validated_at": r.created_at.to_rfc3339(), "validated_by": r.created_by,
            "rows": report["rows"], "threshold": report["threshold"], "threshold_rule": report["threshold_rule"], "bootstrap": report["bootstrap"],
            "metrics": report["metrics"], "champion": report["champion"], "fairness": report["fairness"], "gates": report["gates"],
            "curves": report["curves"], "policy": report["policy"],
        })
    });
    json!({
        "record": "vigil.model_card/1",
        "model": v.model_name.as_str(),
        "version": v.version.to_string(),
        "model_type": v.model_type.as_str(),
        "stage": v.stage.as_str(),
        "content_hash": v.content_hash.to_hex(),
        "artifact": {"uri": v.content.artifact_uri, "sha256": v.content.artifact_sha256.map(|d| d.to_hex())},
        "lineage": v.content.lineage.to_json(),
        "card": crate::card(&v.content.card),
        "evaluation": eval,
    })
}

fn field_text(f: &Value) -> String {
    match f["status"].as_str() {
        Some("value") => f["text"].as_str().unwrap_or("").to_owned(),
        Some("not_available") => format!("Not available: {}", f["text"].as_str().unwrap_or("")),
        _ => "MISSING".to_owned(),
    }
}

fn num(x: &Value) -> String {
    x.as_f64().map_or_else(|| "undefined".to_owned(), |v| format!("{v:.4}"))
}

/// "value [low, high]" of a group metric.
fn with_ci(m: &Value) -> String {
    if m["value"].is_null() {
        return "undefined".to_owned();
    }
    match (m["ci"]["low"].as_f64(), m["ci"]["high"].as_f64()) {
        (Some(lo), Some(hi)) => format!("{} [{lo:.3}, {hi:.3}]", num(&m["value"])),
        _ => num(&m["value"]),
    }
}

const GROUP_COLUMNS: &[(&str, &str)] =
    &[("prevalence", "Prevalence"), ("selection_rate", "Selection rate"), ("tpr", "TPR"), ("fpr", "FPR"), ("ppv", "PPV"), ("npv", "NPV"), ("roc_auc", "AUC"), ("ece", "ECE")];
const REGRESSION_GROUP_COLUMNS: &[(&str, &str)] = &[("mae", "MAE"), ("rmse", "RMSE"), ("mean_error", "Mean error (bias)")];

/// The group table's metric columns of a fairness block.
fn columns(f: &Value) -> &'static [(&'static str, &'static str)] {
    if f["criterion"] == "relative_mae_gap" { REGRESSION_GROUP_COLUMNS } else { GROUP_COLUMNS }
}

/// A group's row: name, n, then each metric with its interval (or why it is suppressed).
fn group_row(g: &Value, cols: &[(&str, &str)]) -> (String, Result<Vec<String>, String>) {
    let name = match g["suppressed_groups"].as_u64() {
        Some(k) => format!("{k} group(s)"),
        None => g["group"].as_str().unwrap_or("").to_owned(),
    };
    match g["suppressed"].as_str() {
        Some(why) => (name, Err(why.to_owned())),
        None => {
            let mut cells = vec![g["n"].to_string()];
            cells.extend(cols.iter().map(|(k, _)| with_ci(&g["metrics"][*k])));
            (name, Ok(cells))
        }
    }
}

fn fairness_summary(f: &Value) -> String {
    if f["criterion"] == "relative_mae_gap" {
        return format!("Gate criterion relative MAE gap (largest minus smallest group MAE, over the overall MAE) = {} (groups with sufficient evidence).", num(&f["criterion_value"]));
    }
    format!(
        "Gate criterion {} = {}; equalized-odds difference {}, demographic parity difference {}, equal opportunity difference {}, predictive parity difference {} (groups with sufficient evidence; undefined rates left out).",
        f["criterion"].as_str().unwrap_or("equalized_odds").replace('_', " "),
        num(&f["criterion_value"]),
        num(&f["equalized_odds_difference"]),
        num(&f["demographic_parity_difference"]),
        num(&f["equal_opportunity_difference"]),
        num(&f["predictive_parity_difference"])
    )
}

/// Inline SVG plots (no scripts, no external resources): the ROC curve and the calibration
/// (reliability) diagram of the evaluation.
fn svg_plot(title: &str, x_label: &str, y_label: &str, line: &[(f64, f64)], dots: &[(f64, f64, f64)]) -> String {
    let (w, h, m) = (300.0, 300.0, 40.0);
    let (pw, ph) = (w - m - 10.0, h - m - 30.0);
    let px = |x: f64| m + x.clamp(0.0, 1.0) * pw;
    let py = |y: f64| 20.0 + (1.0 - y.clamp(0.0, 1.0)) * ph;
    let mut out = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{}\">", esc(title));
    out.push_str(&format!("<text x=\"{}\" y=\"14\" font-size=\"12\" text-anchor=\"middle\">{}</text>", w / 2.0, esc(title)));
    out.push_str(&format!("<rect x=\"{m}\" y=\"20\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"));
    out.push_str(&format!("<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#bbb\" stroke-dasharray=\"4 3\"/>", px(0.0), py(0.0), px(1.0), py(1.0)));
    for t in [0.0, 0.5, 1.0] {
        out.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{t}</text>", px(t), 20.0 + ph + 12.0));
        out.push_str(&format!("<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{t}</text>", m - 4.0, py(t) + 3.0));
    }
    out.push_str(&format!("<text x=\"{:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text>", m + pw / 2.0, h - 4.0, esc(x_label)));
    out.push_str(&format!("<text x=\"12\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{}</text>", 20.0 + ph / 2.0, 20.0 + ph / 2.0, esc(y_label)));
    if !line.is_empty() {
        let pts: Vec<String> = line.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        out.push_str(&format!("<polyline fill=\"none\" stroke=\"#1f5fa8\" stroke-width=\"2\" points=\"{}\"/>", pts.join(" ")));
    }
    for (x, y, r) in dots {
        out.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r:.1}\" fill=\"#1f5fa8\" fill-opacity=\"0.6\"/>", px(*x), py(*y)));
    }
    out.push_str("</svg>");
    out
}

fn curves_svg(e: &Value) -> String {
    let roc: Vec<(f64, f64)> = e["curves"]["roc"].as_array().into_iter().flatten().filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?))).collect();
    let bins: Vec<(f64, f64, u64)> = e["curves"]["calibration"].as_array().into_iter().flatten().filter_map(|b| Some((b["mean_score"].as_f64()?, b["observed"].as_f64()?, b["count"].as_u64()?))).collect();
    if roc.is_empty() && bins.is_empty() {
        return String::new();
    }
    let auc = e["metrics"].as_array().into_iter().flatten().find(|m| m["metric"] == "roc_auc").map(|m| num(&m["value"])).unwrap_or_default();
    let max = bins.iter().map(|b| b.2).max().unwrap_or(1).max(1) as f64;
    let dots: Vec<(f64, f64, f64)> = bins.iter().map(|(x, y, c)| (*x, *y, 2.5 + 5.5 * (*c as f64 / max).sqrt())).collect();
    let line: Vec<(f64, f64)> = bins.iter().map(|(x, y, _)| (*x, *y)).collect();
    format!(
        "<div class=\"plots\">{}{}</div>",
        svg_plot(&format!("ROC curve (AUC {auc})"), "False positive rate", "True positive rate", &roc, &[]),
        svg_plot("Calibration (10 bins; dot area ~ rows)", "Mean predicted risk", "Observed rate", &line, &dots)
    )
}

/// Text for a Markdown table cell or heading: no table breaks, no raw HTML.
fn md_cell(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('|', "\\|").replace('\n', " ")
}

/// Markdown.
pub fn markdown(doc: &Value) -> String {
    let mut out = format!("# Model card: {} {}\n\n", doc["model"].as_str().unwrap_or(""), doc["version"].as_str().unwrap_or(""));
    out.push_str(&format!(
        "Stage **{}** · type {} · content hash `{}` · artifact `{}` (sha256 {})\n\n",
        doc["stage"].as_str().unwrap_or(""),
        doc["model_type"].as_str().unwrap_or(""),
        doc["content_hash"].as_str().unwrap_or(""),
        md_cell(doc["artifact"]["uri"].as_str().unwrap_or("")),
        doc["artifact"]["sha256"].as_str().unwrap_or("not recorded")
    ));
    let card = &doc["card"];
    out.push_str(&format!("## Source attributes (ONC HTI-1): {} missing\n\n| # | Attribute | Content |\n|---|---|---|\n", card["hti1_missing"].as_array().map_or(0, Vec::len)));
    for f in card["fields"].as_array().into_iter().flatten() {
        let n = f["hti1"].as_u64().map_or_else(|| "–".to_owned(), |n| n.to_string());
        out.push_str(&format!("| {n} | {} | {} |\n", md_cell(f["label"].as_str().unwrap_or("")), md_cell(&field_text(f))));
    }
    out.push('\n');
    match doc["evaluation"].as_object() {
        None => out.push_str("## Evaluation\n\nNo validation report is bound to this content hash: run `vigil validate`.\n"),
        Some(e) => {
            out.push_str(&format!(
                "## Evaluation ({} rows, report {}, {})\n\n{}; 95% bootstrap intervals ({} resamples).\n\n| Metric | Value | 95% CI |\n|---|---|---|\n",
                e["rows"],
                e["report_id"].as_str().unwrap_or(""),
                if e["passed"] == true { "all gates passed" } else { "a gate FAILED" },
                e["threshold_rule"].as_str().unwrap_or(""),
                e["bootstrap"]["resamples"]
            ));
            for m in e["metrics"].as_array().into_iter().flatten() {
                out.push_str(&format!("| {} | {} | [{}, {}] |\n", m["metric"].as_str().unwrap_or(""), num(&m["value"]), num(&m["ci"]["low"]), num(&m["ci"]["high"])));
            }
            for f in e["fairness"].as_array().into_iter().flatten() {
                let cols = columns(f);
                out.push_str(&format!("\n### Fairness by {}\n\n{}\n\n| Group | n |", md_cell(f["attribute"].as_str().unwrap_or("")).replace("\\|", "|"), fairness_summary(f)));
                for (_, label) in cols {
                    out.push_str(&format!(" {label} |"));
                }
                out.push_str(&format!("\n|---|---|{}\n", "---|".repeat(cols.len())));
                for g in f["groups"].as_array().into_iter().flatten() {
                    match group_row(g, cols) {
                        (name, Ok(cells)) => out.push_str(&format!("| {} | {} |\n", md_cell(&name), cells.join(" | "))),
                        (name, Err(why)) => out.push_str(&format!("| {} | suppressed: {} |{}\n", md_cell(&name), md_cell(&why), " |".repeat(cols.len()))),
                    }
                }
            }
            out.push_str("\n### Gates\n\n| Gate | Result | Detail |\n|---|---|---|\n");
            for g in e["gates"].as_array().into_iter().flatten() {
                let r = match g["passed"].as_bool() {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "n/a",
                };
                out.push_str(&format!("| {} | {r} | {} |\n", md_cell(g["gate"].as_str().unwrap_or("")), md_cell(g["detail"].as_str().unwrap_or(""))));
            }
        }
    }
    out
}

/// A self-contained HTML page (escaped text, no scripts, no external resources).
pub fn html(doc: &Value) -> String {
    let mut body = String::new();
    let title = format!("Model card: {} {}", doc["model"].as_str().unwrap_or(""), doc["version"].as_str().unwrap_or(""));
    body.push_str(&format!("<h1>{}</h1><p>Stage <b>{}</b> · content hash <code>{}</code></p>", esc(&title), esc(doc["stage"].as_str().unwrap_or("")), esc(doc["content_hash"].as_str().unwrap_or(""))));
    body.push_str("<h2>Source attributes (ONC HTI-1)</h2><table><tr><th>#</th><th>Attribute</th><th>Content</th></tr>");
    for f in doc["card"]["fields"].as_array().into_iter().flatten() {
        let n = f["hti1"].as_u64().map_or_else(|| "–".to_owned(), |n| n.to_string());
        let class = if f["status"] == "missing" { " class=\"missing\"" } else { "" };
        body.push_str(&format!("<tr{class}><td>{n}</td><td>{}</td><td>{}</td></tr>", esc(f["label"].as_str().unwrap_or("")), esc(&field_text(f))));
    }
    body.push_str("</table>");
    match doc["evaluation"].as_object() {
        None => body.push_str("<h2>Evaluation</h2><p>No validation report is bound to this content hash.</p>"),
        Some(e) => {
            body.push_str(&format!("<h2>Evaluation</h2><p>{} rows · report {} · {}</p><table><tr><th>Metric</th><th>Value</th><th>95% CI</th></tr>", e["rows"], esc(e["report_id"].as_str().unwrap_or("")), if e["passed"] == true { "all gates passed" } else { "a gate FAILED" }));
            for m in e["metrics"].as_array().into_iter().flatten() {
                body.push_str(&format!("<tr><td>{}</td><td>{}</td><td>[{}, {}]</td></tr>", esc(m["metric"].as_str().unwrap_or("")), num(&m["value"]), num(&m["ci"]["low"]), num(&m["ci"]["high"])));
            }
            body.push_str("</table>");
            body.push_str(&curves_svg(&serde_json::Value::Object(e.clone())));
            for f in e["fairness"].as_array().into_iter().flatten() {
                let cols = columns(f);
                body.push_str(&format!("<h3>Fairness by {}</h3><p>{}</p><table><tr><th>Group</th><th>n</th>", esc(f["attribute"].as_str().unwrap_or("")), esc(&fairness_summary(f))));
                for (_, label) in cols {
                    body.push_str(&format!("<th>{label}</th>"));
                }
                body.push_str("</tr>");
                for g in f["groups"].as_array().into_iter().flatten() {
                    match group_row(g, cols) {
                        (name, Ok(cells)) => body.push_str(&format!("<tr><td>{}</td>{}</tr>", esc(&name), cells.iter().map(|c| format!("<td>{}</td>", esc(c))).collect::<String>())),
                        (name, Err(why)) => body.push_str(&format!("<tr><td>{}</td><td colspan=\"{}\">suppressed: {}</td></tr>", esc(&name), cols.len() + 1, esc(&why))),
                    }
                }
                body.push_str("</table>");
            }
            body.push_str("<h3>Gates</h3><table><tr><th>Gate</th><th>Result</th><th>Detail</th></tr>");
            for g in e["gates"].as_array().into_iter().flatten() {
                let r = match g["passed"].as_bool() {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "n/a",
                };
                body.push_str(&format!("<tr><td>{}</td><td>{r}</td><td>{}</td></tr>", esc(g["gate"].as_str().unwrap_or("")), esc(g["detail"].as_str().unwrap_or(""))));
            }
            body.push_str("</table>");
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}.missing td{{color:#a00}}.plots svg{{margin:1em 1em 0 0}}</style></head><body>{body}</body></html>\n",
        esc(&title)
    )
}

/// The Model Card Toolkit's JSON schema (model_details, model_parameters,
/// quantitative_analysis, considerations), filled from the same document.
pub fn mct(doc: &Value) -> Value {
    let field = |key: &str| -> Option<String> {
        doc["card"]["fields"].as_array()?.iter().find(|f| f["key"] == key).filter(|f| f["status"] == "value").and_then(|f| f["text"].as_str()).map(str::to_owned)
    };
    let described = |key: &str| field(key).map(|t| vec![json!({"description": t})]).unwrap_or_default();
    let mut metrics = Vec::new();
    if let Some(e) = doc["evaluation"].as_object() {
        for m in e.get("metrics").and_then(Value::as_array).into_iter().flatten() {
            if let Some(v) = m["value"].as_f64() {
                let mut pm = json!({"type": m["metric"], "value": v.to_string()});
                if let (Some(lo), Some(hi)) = (m["ci"]["low"].as_f64(), m["ci"]["high"].as_f64()) {
                    pm["confidence_interval"] = json!({"lower_bound": lo.to_string(), "upper_bound": hi.to_string()});
                }
                metrics.push(pm);
            }
        }
    }
    json!({
        "model_details": {
            "name": field("model_name").unwrap_or_else(|| doc["model"].as_str().unwrap_or("").to_owned()),
            "overview": field("description").unwrap_or_default(),
            "version": {"name": doc["version"]},
            "owners": field("details.developer").map(|d| vec![json!({"name": d})]).unwrap_or_default(),
            "regulatory_requirements": field("regulatory_status").unwrap_or_default(),
        },
        "model_parameters": {
            "data": [{"name": "training", "link": doc["lineage"]["training_data_uri"], "sensitive": {"sensitive_data_used": []}}],
        },
        "quantitative_analysis": {"performance_metrics": metrics},
        "considerations": {
            "users": described("purpose.intended_users"),
            "use_cases": described("purpose.intended_use"),
            "limitations": described("out_of_scope.known_risks_limitations"),
            "ethical_considerations": field("ethical_considerations").map(|t| vec![json!({"name": t, "mitigation_strategy": field("fairness.bias_mitigation").unwrap_or_default()})]).unwrap_or_default(),
        },
    })
}
