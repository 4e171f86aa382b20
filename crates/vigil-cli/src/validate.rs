//! `vigil validate`: read a holdout, run the validation use case, print the gates.

use crate::cli::Global;
use crate::commands::{emit, open, principal};
use crate::table;
use anyhow::Result;
use std::path::Path;
use std::process::ExitCode;
use crate::cli::{PolicyTarget, ValidationPolicyCmd};
use vigil_core::ids::ModelName;
use vigil_core::model::{ModelType, parse_reference};
use vigil_core::registry::Registry;
use vigil_core::validate::PolicyScope;
use vigil_core::{Error, ErrorCode};

#[allow(clippy::too_many_arguments)]
pub fn run(g: &Global, reference: &str, data: &Path, label: &str, score: &str, champion: Option<&str>, sensitive: &[String], threshold: f64) -> Result<ExitCode> {
    let reg = open(g, false)?;
    let (name, version) = parse_reference(reference)?;
    let v = reg.get_version(&name, &version)?;
    let t = vigil_data::read_table(data)?;
    let input = vigil_data::holdout_for(v.model_type, &t, label, score, champion, sensitive, threshold)?;
    let actor = principal(&reg, g)?;
    let check = vigil_store::artifacts::local_artifact_check(g.data_dir.as_deref(), &v.content.artifact_uri);
    let rec = reg.validate(&actor, &v.id, &input, check)?;
    let mut report: serde_json::Value = serde_json::from_str(&rec.report)?;
    report["report_id"] = serde_json::json!(rec.id);
    emit(g, &report, || print_report(&report));
    Ok(if rec.passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The human form of a validation report (with `report_id`), local or from a server.
pub fn print_report(report: &serde_json::Value) {
    let passed = report["passed"] == true;
    println!(
        "{}@{} validation {}: {} (content hash {})",
        report["model"].as_str().unwrap_or(""),
        report["version"].as_str().unwrap_or(""),
        report["report_id"].as_str().unwrap_or(""),
        if passed { "PASSED" } else { "FAILED" },
        report["content_hash"].as_str().unwrap_or("")
    );
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
}

/// Renders a card document in a format (md, html, json, mct).
pub fn render_card(doc: &serde_json::Value, format: &str) -> String {
    match format {
        "md" => vigil_api::card::markdown(doc),
        "html" => vigil_api::card::html(doc),
        "mct" => format!("{}\n", vigil_api::card::mct(doc)),
        _ => format!("{doc}\n"),
    }
}

/// Writes a rendered card to a file or standard output.
pub fn write_card(text: &str, format: &str, what: &str, output: Option<&Path>) -> Result<()> {
    match output {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| anyhow::anyhow!("writing {}: {e}", p.display()))?;
            eprintln!("wrote the {format} model card of {what} to {}", p.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `vigil card`: the generated model card in one of four formats.
pub fn card(g: &Global, reference: &str, format: &str, output: Option<&Path>) -> Result<ExitCode> {
    if !matches!(format, "md" | "html" | "json" | "mct") {
        return Err(Error::new(ErrorCode::InvalidText, "--format is md, html, json or mct").into());
    }
    let reg = open(g, false)?;
    let (name, version) = parse_reference(reference)?;
    let v = reg.get_version(&name, &version)?;
    crate::commands::audit_local_read(&reg, g, vigil_core::phi::Read::Model(name.as_str()), "vigil card")?;
    // Only evidence about exactly this content counts; a released card keeps its evidence.
    let report = reg.card_evidence(&v.id)?;
    let doc = vigil_api::card::document(&v, report.as_ref());
    write_card(&render_card(&doc, format), format, &v.reference(), output)?;
    Ok(ExitCode::SUCCESS)
}

fn scope(t: &PolicyTarget) -> Result<(PolicyScope, &'static str, String)> {
    match (&t.model, &t.model_type) {
        (Some(m), None) => Ok((PolicyScope::Model(ModelName::parse(m)?), "model", m.clone())),
        (None, Some(ty)) => {
            let ty = ModelType::parse(ty)?;
            Ok((PolicyScope::ModelType(ty), "model_type", ty.as_str().to_owned()))
        }
        _ => Err(crate::commands::usage("give --model NAME or --model-type TYPE")),
    }
}

/// Reads a policy file (JSON).
pub fn read_policy_file(file: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(file).map_err(|e| Error::new(ErrorCode::InvalidPolicy, format!("{}: {e}", file.display())))?;
    Ok(serde_json::from_str(&text).map_err(|e| Error::new(ErrorCode::InvalidPolicy, format!("{}: not JSON (line {})", file.display(), e.line())))?)
}

/// `vigil policy validation show|set` on a local store.
pub fn policy_cmd(g: &Global, reg: &Registry, c: ValidationPolicyCmd) -> Result<ExitCode> {
    let (target, set) = match c {
        ValidationPolicyCmd::Show { target } => (target, None),
        ValidationPolicyCmd::Set { target, file, reason } => (target, Some((file, reason))),
    };
    let (scope, kind, name) = scope(&target)?;
    let resolved = match set {
        Some((file, reason)) => {
            let policy = read_policy_file(&file)?;
            let actor = principal(reg, g)?;
            reg.set_validation_policy_json(&actor, &scope, &policy, &reason)?
        }
        None => match &scope {
            PolicyScope::Model(n) => reg.validation_policy(n)?,
            PolicyScope::ModelType(t) => reg.type_validation_policy(*t)?,
        },
    };
    let doc = vigil_api::validation_policy(kind, &name, &resolved);
    emit(g, &doc, || crate::views::validation_policy(&doc));
    Ok(ExitCode::SUCCESS)
}
