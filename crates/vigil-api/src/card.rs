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

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
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
                out.push_str(&format!(
                    "\n### Fairness by {}\n\nEqualized-odds difference {}, demographic parity difference {}.\n\n| Group | n | Selection rate | TPR | FPR |\n|---|---|---|---|---|\n",
                    md_cell(f["attribute"].as_str().unwrap_or("")),
                    num(&f["equalized_odds_difference"]),
                    num(&f["demographic_parity_difference"])
                ));
                for g in f["groups"].as_array().into_iter().flatten() {
                    if let Some(why) = g["insufficient_evidence"].as_str() {
                        out.push_str(&format!("| {} | {} | insufficient evidence: {} | | |\n", md_cell(g["group"].as_str().unwrap_or("")), g["n"], md_cell(why)));
                    } else {
                        out.push_str(&format!("| {} | {} | {} | {} | {} |\n", md_cell(g["group"].as_str().unwrap_or("")), g["n"], num(&g["selection_rate"]), num(&g["tpr"]), num(&g["fpr"])));
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
            for f in e["fairness"].as_array().into_iter().flatten() {
                body.push_str(&format!("<h3>Fairness by {}</h3><table><tr><th>Group</th><th>n</th><th>Selection rate</th><th>TPR</th><th>FPR</th></tr>", esc(f["attribute"].as_str().unwrap_or(""))));
                for g in f["groups"].as_array().into_iter().flatten() {
                    match g["insufficient_evidence"].as_str() {
                        Some(why) => body.push_str(&format!("<tr><td>{}</td><td>{}</td><td colspan=\"3\">insufficient evidence: {}</td></tr>", esc(g["group"].as_str().unwrap_or("")), g["n"], esc(why))),
                        None => body.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", esc(g["group"].as_str().unwrap_or("")), g["n"], num(&g["selection_rate"]), num(&g["tpr"]), num(&g["fpr"]))),
                    }
                }
                body.push_str("</table>");
            }
        }
    }
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}.missing td{{color:#a00}}</style></head><body>{body}</body></html>\n",
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
