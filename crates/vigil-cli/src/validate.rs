//! `vigil validate`: read a holdout, run the validation use case, print the gates.

use crate::cli::Global;
use crate::commands::{emit, open, principal};
use crate::table;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use vigil_core::model::parse_reference;
use vigil_core::validate::{ValidationData, ValidationPolicy};
use vigil_core::{Error, ErrorCode};
use vigil_data::RawColumn;

fn bad(m: String) -> anyhow::Error {
    Error::new(ErrorCode::InvalidValidationData, m).into()
}

fn column<'a>(t: &'a vigil_data::Table, name: &str, file: &Path) -> Result<&'a RawColumn> {
    t.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c).ok_or_else(|| bad(format!("{}: no column {}", file.display(), vigil_core::ids::quote_key(name))))
}

fn numbers(c: &RawColumn, name: &str) -> Result<Vec<f64>> {
    c.numbers().map(|v| v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect()).ok_or_else(|| bad(format!("column {} must be numeric scores", vigil_core::ids::quote_key(name))))
}

#[allow(clippy::too_many_arguments)]
pub fn run(g: &Global, reference: &str, data: &Path, label: &str, score: &str, champion: Option<&str>, sensitive: &[String], threshold: f64, resamples: usize) -> Result<ExitCode> {
    let reg = open(g, false)?;
    let (name, version) = parse_reference(reference)?;
    let v = reg.get_version(&name, &version)?;
    let t = vigil_data::read_table(data)?;
    let labels = column(&t, label, data)?
        .strings()
        .into_iter()
        .map(|s| match s.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref() {
            Some("1" | "1.0" | "true" | "yes") => Ok(true),
            Some("0" | "0.0" | "false" | "no") => Ok(false),
            _ => Err(bad(format!("label column {} must hold 1/0, true/false or yes/no in every row", vigil_core::ids::quote_key(label)))),
        })
        .collect::<Result<Vec<bool>>>()?;
    let scores = numbers(column(&t, score, data)?, score)?;
    let champion_scores = champion.map(|c| column(&t, c, data).and_then(|col| numbers(col, c))).transpose()?;
    let sensitive = sensitive
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| Ok((s.clone(), column(&t, s, data)?.strings().into_iter().map(|x| x.unwrap_or_else(|| "(missing)".into())).collect())))
        .collect::<Result<Vec<_>>>()?;
    let input = ValidationData { labels, scores, champion_scores, sensitive, threshold };
    let actor = principal(&reg, g)?;
    let policy = ValidationPolicy { resamples, ..Default::default() };
    let rec = reg.validate(&actor, &v.id, &input, &policy)?;
    let report: serde_json::Value = serde_json::from_str(&rec.report)?;
    let mut out = report.clone();
    out["report_id"] = serde_json::json!(rec.id);
    emit(g, &out, || {
        println!("{} validation {}: {} (content hash {})", v.reference(), rec.id, if rec.passed { "PASSED" } else { "FAILED" }, rec.content_hash);
        let rows: Vec<Vec<String>> = report["gates"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|gt| {
                let verdict = match gt["passed"].as_bool() {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "n/a",
                };
                vec![gt["gate"].as_str().unwrap_or("").to_owned(), verdict.to_owned(), gt["detail"].as_str().unwrap_or("").to_owned()]
            })
            .collect();
        table::print(&["GATE", "RESULT", "DETAIL"], &rows);
        let metric_rows: Vec<Vec<String>> = report["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                let f = |x: &serde_json::Value| x.as_f64().map_or("undefined".to_owned(), |v| format!("{v:.4}"));
                vec![m["metric"].as_str().unwrap_or("").to_owned(), f(&m["value"]), format!("[{}, {}]", f(&m["ci"]["low"]), f(&m["ci"]["high"]))]
            })
            .collect();
        table::print(&["METRIC", "VALUE", "95% CI"], &metric_rows);
    });
    Ok(if rec.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `vigil card`: the generated model card in one of four formats.
pub fn card(g: &Global, reference: &str, format: &str, output: Option<&Path>) -> Result<ExitCode> {
    if !matches!(format, "md" | "html" | "json" | "mct") {
        return Err(Error::new(ErrorCode::InvalidText, "--format is md, html, json or mct").into());
    }
    let reg = open(g, false)?;
    let (name, version) = parse_reference(reference)?;
    let v = reg.get_version(&name, &version)?;
    // Only evidence about exactly this content counts.
    let hash = v.content_hash.to_hex();
    let report = reg.validation_reports(&v.id)?.into_iter().find(|r| r.content_hash == hash);
    let doc = vigil_api::card::document(&v, report.as_ref());
    let text = match format {
        "md" => vigil_api::card::markdown(&doc),
        "html" => vigil_api::card::html(&doc),
        "mct" => format!("{}\n", vigil_api::card::mct(&doc)),
        _ => format!("{doc}\n"),
    };
    match output {
        Some(p) => {
            std::fs::write(p, &text).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
            eprintln!("wrote the {format} model card of {} to {}", v.reference(), p.display());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
