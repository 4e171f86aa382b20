//! `vigil demo`: the README's main job. On an embedded store in `./vigil-demo` (or the given
//! data directory) it registers the original system's diabetes model, requests production,
//! collects the two approvals the default policy needs (ml_lead, clinical_reviewer),
//! shows the model in Production with its lineage, and verifies the audit trail.
//! Running it again registers the next version and promotes that one, archiving the previous.

use vigil_core::validate::{PolicyScope, ValidationData, ValidationPolicy};
use vigil_stats::validation::SplitMix64;
use crate::cli::Global;
use crate::commands;
use anyhow::Result;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use vigil_core::approval::Meaning;
use vigil_core::auth::{Password, Role};
use vigil_core::card::{CardField, ModelCard};
use vigil_core::ids::{ModelName, Sha256Digest, UserId};
use vigil_core::model::{Lineage, Metrics, ModelType, Stage, VersionContent};
use vigil_core::registry::NewModelVersion;
use vigil_core::semver::Version;
use vigil_store::{Location, keyfile};

/// The demo model's ONNX bytes (inputs: `features`, FP32 `[N, 3]`: age, BMI, glucose).
const DEMO_MODEL: &[u8] = include_bytes!("../assets/demo-diabetes-lr.onnx");

const TEAM: &[(&str, &str, Role, &str)] = &[
    ("dana", "Dana Scientist", Role::DataScientist, "demo-dana-password"),
    ("lee", "Lee Lead", Role::MlLead, "demo-lee-password"),
    ("cleo", "Dr. Cleo Reviewer", Role::ClinicalReviewer, "demo-cleo-password"),
];
const ADMIN_PW: &str = "demo-admin-password";

fn step(json: bool, t: &Instant, what: &str) {
    if !json {
        println!("[{:>7.1} ms] {what}", t.elapsed().as_secs_f64() * 1000.0);
    }
}

pub fn run(g: &Global) -> Result<ExitCode> {
    let t0 = Instant::now();
    let (location, key_path, shown) = match &g.database_url {
        Some(_) => {
            let t = commands::target(g)?;
            (t.location, t.key_path, "postgresql".to_owned())
        }
        None => {
            let dir = g.data_dir.clone().unwrap_or_else(|| PathBuf::from("vigil-demo"));
            let key = g.signing_key.clone().unwrap_or_else(|| keyfile::default_path(&dir));
            let shown = dir.display().to_string();
            (Location::DataDir(dir), key, shown)
        }
    };
    let reg = commands::registry_with(&location, keyfile::load_or_create(&key_path)?)?;
    if !g.json {
        println!("vigil demo on {} ({}), signing key {}", shown, reg.backend(), reg.key_id());
    }

    if !reg.is_initialized()? {
        let admin = reg.init_admin(&UserId::parse("admin")?, "Ada Admin", &Password::new(ADMIN_PW))?;
        let admin = reg.authenticate(&admin.id, &Password::new(ADMIN_PW))?;
        for (id, name, role, pw) in TEAM {
            reg.add_user(&admin, &UserId::parse(id)?, name, *role, &Password::new(*pw))?;
        }
        step(g.json, &t0, "created users admin, dana (data_scientist), lee (ml_lead), cleo (clinical_reviewer); demo passwords are demo-<user>-password");
    }
    let name = ModelName::parse("diabetes-risk-classifier")?;
    let existing = reg.list_models()?.into_iter().find(|(m, _)| m.name == name).map(|(_, v)| v.len()).unwrap_or(0);
    let version = Version::parse(&format!("1.{existing}.0"))?;

    let pw = |id: &str| Password::new(TEAM.iter().find(|t| t.0 == id).map(|t| t.3).unwrap_or_default());
    let dana = reg.authenticate(&UserId::parse("dana")?, &pw("dana"))?;

    let mut metrics = Metrics::new();
    for (k, v) in [("accuracy", 0.92), ("auc_roc", 0.95), ("precision", 0.89), ("recall", 0.91)] {
        metrics.set(k, v)?;
    }
    let mut card = ModelCard::new();
    card.set(CardField::ModelName, "Diabetes Risk Classifier")?;
    card.set(CardField::IntendedUse, "Identify patients at risk for Type 2 diabetes")?;
    card.set(CardField::ClinicalValidationStatus, "Validated on 10,000 patient cohort")?;
    card.set_not_available(CardField::ExternalValidationParty, "external validation scheduled for next quarter")?;
    // Age is an input: the card says so and how its use is checked (validation requires it).
    card.set(CardField::DemographicInputs, "age is an input (risk rises with age); performance is checked per age band and sex at every validation")?;
    // On an embedded store the model is a real ONNX file in the data directory (a scaler and a
    // logistic regression on age, BMI and glucose, from scripts/onnx_fixtures.py), so that
    // `vigil gateway` serves it; on PostgreSQL there is no data directory to put it in.
    let (artifact_uri, artifact_sha256) = match &location {
        Location::DataDir(dir) => {
            let file = dir.join("models").join(format!("diabetes-risk-classifier-{version}.onnx"));
            std::fs::create_dir_all(dir.join("models"))?;
            std::fs::write(&file, DEMO_MODEL)?;
            let path = std::fs::canonicalize(&file)?.display().to_string();
            (path, Sha256Digest::of(DEMO_MODEL))
        }
        _ => {
            let uri = format!("s3://models/diabetes-classifier/v{version}");
            let d = Sha256Digest::of(uri.as_bytes());
            (uri, d)
        }
    };
    let v = reg.register_model(
        &dana,
        NewModelVersion {
            name: name.clone(),
            version: version.clone(),
            model_type: ModelType::Classification,
            content: VersionContent {
                artifact_sha256: Some(artifact_sha256),
                artifact_uri,
                metrics,
                lineage: Lineage {
                    training_data_uri: Some("s3://data/diabetes-training-v3".into()),
                    training_data_version: Some("3.0.0".into()),
                    training_data_hash: Some("sha256:5f2b6d8e0c1a".into()),
                    training_run_id: Some("run_456".into()),
                    code_commit: Some("4e1c2a9".into()),
                    features: vec!["age".into(), "bmi".into(), "glucose".into()],
                    ..Default::default()
                },
                card,
            },
            owner: Some("clinical-ml-team".into()),
            description: Some("Type 2 diabetes risk within 3 years".into()),
            tags: Default::default(),
        },
    )?;
    step(g.json, &t0, &format!("dana registered {} in development (content hash {})", v.reference(), &v.content_hash.to_hex()[..16]));

    // Production needs evidence: a passing validation of exactly this content. The seed's card
    // lists a few fields only, so the demo model's policy waives card completeness (an
    // administrator's audited decision); every other gate is the built-in default.
    let model_policy = reg.validation_policy(&name)?;
    if model_policy.source != "model" {
        let admin = reg.authenticate(&UserId::parse("admin")?, &Password::new(ADMIN_PW))?;
        let policy = ValidationPolicy { require_card_complete: false, ..model_policy.policy };
        reg.set_validation_policy(&admin, &PolicyScope::Model(name.clone()), &policy, "demo: the seed's card lists only a few HTI-1 attributes")?;
        step(g.json, &t0, "admin set the model's validation policy: the built-in gates, card completeness waived for the demo");
    }
    let rec = reg.validate(&dana, &v.id, &demo_holdout(), None)?;
    let report: serde_json::Value = serde_json::from_str(&rec.report)?;
    let auc = report["metrics"].as_array().and_then(|m| m.iter().find(|m| m["metric"] == "roc_auc")).cloned().unwrap_or_default();
    step(g.json, &t0, &format!(
        "dana validated {} on a 4,000-row holdout: {} (AUC {:.3} [{:.3}, {:.3}], 2,000 resamples; fairness over sex, age band and both), report {}",
        v.reference(),
        if rec.passed { "PASSED" } else { "FAILED" },
        auc["value"].as_f64().unwrap_or(f64::NAN),
        auc["ci"]["low"].as_f64().unwrap_or(f64::NAN),
        auc["ci"]["high"].as_f64().unwrap_or(f64::NAN),
        rec.id
    ));

    let r = reg.request_promotion(&dana, &v.id, Stage::Production, "Model exceeds performance thresholds, validated by clinical team")?;
    step(g.json, &t0, &format!("dana requested production: request {}", r.id));

    let first = reg.approve_promotion(&UserId::parse("lee")?, &pw("lee"), &r.id, Meaning::Approval, "Approved after clinical validation review")?;
    step(g.json, &t0, &format!("lee signed (ml_lead, meaning approval, re-entered password): request still {}, {}", first.request.status, vigil_api::tally(&first.tally)));
    let second = reg.approve_promotion(&UserId::parse("cleo")?, &pw("cleo"), &r.id, Meaning::Approval, "Clinically appropriate for the intended population")?;
    step(g.json, &t0, &format!("cleo signed (clinical_reviewer): request {}", second.request.status));

    let prod = reg.production_version(&name)?.map(|p| p.reference()).unwrap_or_else(|| "(none)".into());
    step(g.json, &t0, &format!("production version is now {prod}"));

    let l = reg.lineage(&name, &version)?;
    for d in l.requests.iter().filter(|_| !g.json) {
        for (s, ok) in &d.signatures {
            println!("           signature: {} ({}) at {} UTC, meaning {}, {}", s.printed_name, s.role, s.signed_at, s.meaning, if ok.is_ok() { "valid" } else { "INVALID" });
        }
    }
    let chain = reg.verify_audit()?;
    let sigs = reg.verify_signatures()?;
    let records = reg.verify_records()?;
    let ok = chain.ok() && sigs.failures.is_empty() && records.is_empty();
    step(g.json, &t0, &format!(
        "audit verify: {} events, chain {}, {} signatures {}",
        chain.events,
        if chain.ok() { "intact" } else { "BROKEN" },
        sigs.checked,
        if sigs.failures.is_empty() { "valid" } else { "INVALID" }
    ));
    if g.json {
        let mut out = vigil_api::lineage(&l);
        out["audit"] = vigil_api::chain_report(&chain, &sigs, &records, reg.key_id());
        println!("{out}");
        return Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    println!();
    let dir_flag = match &location {
        Location::DataDir(d) => format!("--data-dir {}", d.display()),
        Location::Postgres { .. } => "--database-url …".into(),
    };
    println!("explore: vigil {dir_flag} model list | promote list | lineage {} | audit log", v.reference());
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A synthetic labelled holdout: 4,000 patients, prevalence about 0.3, the new version's
/// scores and the Production version's (weaker) scores, sex and age band. Deterministic.
fn demo_holdout() -> ValidationData {
    let mut r = SplitMix64(2026);
    let mut u = move || (r.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let (mut labels, mut scores, mut champion, mut sex, mut age) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..4000 {
        let y = u() < 0.3;
        let yf = f64::from(u8::from(y));
        labels.push(y);
        scores.push((0.3 * yf + 0.15 + 0.55 * u()).clamp(0.0, 1.0));
        champion.push((0.2 * yf + 0.15 + 0.65 * u()).clamp(0.0, 1.0));
        sex.push(if i % 2 == 0 { "female" } else { "male" }.to_owned());
        age.push(["18-44", "45-64", "65+"][(i / 2) % 3].to_owned());
    }
    ValidationData { labels, scores, champion_scores: Some(champion), sensitive: vec![("sex".into(), sex), ("age_band".into(), age)], threshold: 0.5, targets: None }
}
