//! The original system's quick start ("Register a Model", "Request Production Promotion"),
//! written against Vigil's Rust API. Run: `cargo run -p vigil-store --example seed_quick_start`.
//!
//! Differences from the Python original, all deliberate: actors are authenticated users, the
//! approver re-enters a password and states the meaning of the signature (21 CFR Part 11), and
//! the default Production policy needs a second, clinical approval. Production also needs a
//! passing validation of the version on a labelled holdout (the original promotes on the
//! logged metrics alone); the seed's card lists only three fields, so an administrator
//! waives card completeness for this model, on record.

use std::sync::Arc;
use vigil_core::approval::{Meaning, ServerKey};
use vigil_core::auth::{Password, Role};
use vigil_core::card::{CardField, ModelCard};
use vigil_core::ids::{ModelName, Sha256Digest, SystemClock, UserId, UuidV7Ids};
use vigil_core::model::{Lineage, Metrics, ModelType, Stage, VersionContent};
use vigil_core::registry::{NewModelVersion, Registry};
use vigil_core::semver::Version;
use vigil_core::validate::{PolicyScope, ValidationData, ValidationPolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("vigil-seed-example-{}", std::process::id()));
    let store = vigil_store::open_sqlite(&dir)?;
    let registry = Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::generate()?));

    // People (the original passes bare ids; Vigil needs accounts with roles).
    let pw = Password::new("example-password");
    let admin = UserId::parse("admin")?;
    registry.init_admin(&admin, "Ada Admin", &pw)?;
    let admin = registry.authenticate(&admin, &pw)?;
    for (id, name, role) in [
        ("data_scientist_123", "Dana Scientist", Role::DataScientist),
        ("ml_lead_456", "Lee Lead", Role::MlLead),
        ("clinician_789", "Dr. Cleo Reviewer", Role::ClinicalReviewer),
    ] {
        registry.add_user(&admin, &UserId::parse(id)?, name, role, &pw)?;
    }
    let requester = registry.authenticate(&UserId::parse("data_scientist_123")?, &pw)?;

    // Register model with full lineage
    let mut metrics = Metrics::new();
    metrics.set("accuracy", 0.92)?.set("auc_roc", 0.95)?.set("precision", 0.89)?.set("recall", 0.91)?;
    let mut model_card = ModelCard::new();
    model_card.set(CardField::ModelName, "Diabetes Risk Classifier")?;
    model_card.set(CardField::IntendedUse, "Identify patients at risk for Type 2 diabetes")?;
    model_card.set(CardField::ClinicalValidationStatus, "Validated on 10,000 patient cohort")?;
    let model = registry.register_model(
        &requester,
        NewModelVersion {
            name: ModelName::parse("diabetes-risk-classifier")?,
            version: Version::parse("1.0.0")?,
            model_type: ModelType::Classification,
            content: VersionContent {
                artifact_uri: "s3://models/diabetes-classifier/v1.0.0".into(),
                artifact_sha256: Some(Sha256Digest::of(b"the model artifact bytes")),
                metrics,
                lineage: Lineage {
                    training_data_uri: Some("s3://data/diabetes-training-v3".into()),
                    training_data_version: Some("3.0.0".into()),
                    training_data_hash: Some("sha256:abc123".into()),
                    training_run_id: Some("run_456".into()),
                    ..Default::default()
                },
                card: model_card,
            },
            owner: None,
            description: None,
            tags: Default::default(),
        },
    )?;

    // Validate on a holdout (here synthetic: 1,000 patients, scores that separate the classes).
    let policy = ValidationPolicy { require_card_complete: false, ..ValidationPolicy::default() };
    registry.set_validation_policy(&admin, &PolicyScope::Model(ModelName::parse("diabetes-risk-classifier")?), &policy, "the seed's card lists three fields")?;
    let mut rng = vigil_stats::validation::SplitMix64(7);
    let mut u = move || (rng.next_u64() >> 11) as f64 / 9_007_199_254_740_992.0;
    let (mut labels, mut scores, mut sex) = (vec![], vec![], vec![]);
    for i in 0..1000 {
        let y = u() < 0.3;
        labels.push(y);
        scores.push((0.35 * f64::from(u8::from(y)) + 0.1 + 0.55 * u()).min(1.0));
        sex.push(if i % 2 == 0 { "female" } else { "male" }.to_owned());
    }
    let holdout = ValidationData { labels, scores, champion_scores: None, sensitive: vec![("sex".into(), sex)], threshold: 0.5, targets: None };
    let report = registry.validate(&requester, &model.id, &holdout, None)?;
    println!("validation {}: {}", report.id, if report.passed { "passed" } else { "FAILED" });

    // Request promotion with justification
    let request = registry.request_promotion(
        &requester,
        &model.id,
        Stage::Production,
        "Model exceeds performance thresholds, validated by clinical team",
    )?;

    // Approve promotion (requires appropriate permissions)
    registry.approve_promotion(&UserId::parse("ml_lead_456")?, &pw, &request.id, Meaning::Approval, "Approved after clinical validation review")?;
    let outcome = registry.approve_promotion(&UserId::parse("clinician_789")?, &pw, &request.id, Meaning::Approval, "Clinically appropriate")?;

    println!("{} is now {:?}; request {}", model.reference(), registry.get_version_by_id(&model.id)?.stage, outcome.request.status);
    println!("audit chain intact: {}", registry.verify_audit()?.ok());
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
