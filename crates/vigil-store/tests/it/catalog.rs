//! The registry catalogue on each backend (MLflow's model registry over governed records):
//! integer numbers beside SemVer, versions registered from logged models and runs with their
//! evidence bound into the signed content, aliases with the Production guard, stage changes
//! refused outside the promotion workflow, searches, logged models frozen once finalised,
//! dataset inputs feeding lineage, and every refusal audited.

use crate::conformance;
use crate::support::new_version;
use vigil_core::ErrorCode;
use vigil_core::catalog::{DatasetInput, LoggedModelStatus, NewCatalogVersion};
use vigil_core::ids::Sha256Digest;
use vigil_core::model::Stage;
use vigil_core::search::{CatalogKind, parse_catalog_filter, parse_catalog_order};
use vigil_core::store::AuditQuery;
use vigil_core::tracking::{LogBatch, Metric, MetricPoint};

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

conformance!(versions_from_logged_models_and_runs_carry_numbers_and_evidence, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    let exp = reg.create_experiment(&ds, "sepsis", None, &[]).unwrap();
    let run = reg.create_run(&ds, exp.id, Some("fit"), None, &[kv("mlflow.source.git.commit", "abc123")]).unwrap();
    let metrics = vec![
        Metric { key: "auc_roc".into(), point: MetricPoint { value: 0.91, timestamp: 1, step: 0 } },
        Metric { key: "loss".into(), point: MetricPoint { value: f64::NAN, timestamp: 1, step: 0 } },
    ];
    reg.log_batch(&ds, &run.run_id, &LogBatch { metrics, ..Default::default() }).unwrap();
    let train = DatasetInput {
        name: "train".into(),
        digest: "d41d8cd9".into(),
        source_type: "s3".into(),
        source: "{\"uri\": \"s3://b/train.csv\"}".into(),
        schema: None,
        profile: None,
        tags: vec![kv("mlflow.data.context", "training")],
    };
    reg.log_run_inputs(&ds, &run.run_id, &[train.clone(), train.clone()]).unwrap();
    assert_eq!(reg.run_io(&run.run_id).unwrap().0, vec![train]);
    let other = reg.create_run(&ds, exp.id, Some("other"), None, &[]).unwrap();
    let found = |filter: &str| {
        let q = vigil_core::tracking::RunQuery {
            experiment_ids: vec![exp.id],
            filter: vigil_core::search::parse_filter(filter).unwrap(),
            view: vigil_core::tracking::ViewType::ActiveOnly,
            order_by: vec![],
            limit: 100,
            offset: 0,
        };
        reg.search_runs(&q).unwrap().0.into_iter().map(|r| r.info.run_id).collect::<Vec<_>>()
    };
    assert_eq!(found("datasets.name = 'train' AND datasets.context = 'training'"), vec![run.run_id.clone()]);
    assert_eq!(found("datasets.digest IN ('d41d8cd9', 'x')"), vec![run.run_id.clone()]);
    assert!(found("datasets.name = 'test'").is_empty());
    assert_eq!(found("datasets.name LIKE 'tr%'").len(), 1);
    assert_eq!(found("attributes.run_name = 'other'"), vec![other.run_id.clone()]);

    // A logged model: pending while its files are uploaded, then frozen.
    let lm = reg.create_logged_model(&ds, exp.id, Some("model"), Some(&run.run_id), None, &[], &[kv("C", "1")]).unwrap();
    assert_eq!(lm.artifact_uri, format!("mlflow-artifacts:/{}/models/{}/artifacts", exp.id, lm.id));
    reg.authorize_logged_model_write(&ds, &exp.id.to_string(), &lm.id).unwrap();
    reg.log_run_outputs(&ds, &run.run_id, &[(lm.id.clone(), 0)]).unwrap();
    assert_eq!(reg.run_io(&run.run_id).unwrap().1, vec![(lm.id.clone(), 0)]);

    reg.create_registered_model(&ds, "sepsis-risk", "early warning", &[kv("team", "icu"), kv("vigil.model_type", "classification")]).unwrap();
    assert_eq!(reg.create_registered_model(&ds, "sepsis-risk", "", &[]).unwrap_err().code(), ErrorCode::ModelExists);
    let from_lm = NewCatalogVersion { name: "sepsis-risk".into(), source: format!("models:/{}", lm.id), logged_model_id: Some(lm.id.clone()), ..Default::default() };
    // Not finalised yet: no version may point at artifacts that can still change.
    assert_eq!(reg.create_catalog_version(&ds, &from_lm).unwrap_err().code(), ErrorCode::InvalidSource);
    reg.finalize_logged_model(&ds, &lm.id, LoggedModelStatus::Ready).unwrap();
    assert_eq!(reg.authorize_logged_model_write(&ds, &exp.id.to_string(), &lm.id).unwrap_err().code(), ErrorCode::LoggedModelFinalized);
    assert_eq!(reg.finalize_logged_model(&ds, &lm.id, LoggedModelStatus::Failed).unwrap_err().code(), ErrorCode::LoggedModelFinalized);

    let digest = Sha256Digest::of(b"manifest");
    // Files in vigil's store must come with their digest, taken over the resolved location.
    assert_eq!(reg.create_catalog_version(&ds, &from_lm).unwrap_err().code(), ErrorCode::InvalidSource);
    let wrong_place = NewCatalogVersion { artifact_digest: Some(("mlflow-artifacts:/elsewhere".into(), digest)), ..from_lm.clone() };
    assert_eq!(reg.create_catalog_version(&ds, &wrong_place).unwrap_err().code(), ErrorCode::InvalidSource);
    let v1 = reg.create_catalog_version(&ds, &NewCatalogVersion { artifact_digest: Some((lm.artifact_uri.clone(), digest)), description: "first".into(), ..from_lm.clone() }).unwrap();
    assert_eq!((v1.version.number, v1.version.version.to_string(), v1.version.stage), (1, "1.0.0".into(), Stage::Development));
    assert_eq!(v1.version.content.artifact_uri, lm.artifact_uri);
    assert_eq!(v1.version.content.artifact_sha256, Some(digest));
    assert_eq!(v1.meta.run_id.as_deref(), Some(run.run_id.as_str()), "run id filled from the logged model");
    assert_eq!(v1.version.content.metrics.get("auc_roc"), Some(0.91));
    assert_eq!(v1.version.content.metrics.get("loss"), None, "non-finite metrics are not evidence");
    let lin = &v1.version.content.lineage;
    assert_eq!(lin.training_run_id.as_deref(), Some(run.run_id.as_str()));
    assert_eq!(lin.code_commit.as_deref(), Some("abc123"));
    assert_eq!(lin.training_data_hash.as_deref(), Some("mlflow-digest:d41d8cd9"));
    assert_eq!(v1.version.recompute_content_hash(), v1.version.content_hash);

    // A native registration takes the next number; an MLflow one then the next major.
    let native = reg.register_model(&ds, vigil_core::registry::NewModelVersion { model_type: vigil_core::model::ModelType::Classification, ..new_version("sepsis-risk", "1.1.0") }).unwrap();
    assert_eq!(native.number, 2);
    let model_dir = format!("{}/model", run.artifact_uri);
    let from_run = NewCatalogVersion { name: "sepsis-risk".into(), source: format!("runs:/{}/model", run.run_id), artifact_digest: Some((model_dir.clone(), digest)), ..Default::default() };
    let v3 = reg.create_catalog_version(&ds, &from_run).unwrap();
    assert_eq!((v3.version.number, v3.version.version.to_string()), (3, "2.0.0".into()));
    assert_eq!(v3.version.content.artifact_uri, format!("{}/model", run.artifact_uri));
    let chosen = NewCatalogVersion { tags: vec![kv("vigil.version", "2.1.0-rc.1"), kv("owner", "icu")], ..from_run.clone() };
    let v4 = reg.create_catalog_version(&ds, &chosen).unwrap();
    assert_eq!((v4.version.number, v4.version.version.to_string()), (4, "2.1.0-rc.1".into()));
    assert_eq!(v4.meta.tags, vec![kv("owner", "icu")]);

    // Refusals: local paths, another registered version, clients' vigil.* tags, traversal.
    for (source, code) in [
        ("/tmp/model", ErrorCode::InvalidSource),
        ("file:///tmp/model", ErrorCode::InvalidSource),
        ("models:/sepsis-risk/1", ErrorCode::InvalidSource),
        ("runs:/0123456789abcdef0123456789abcdef/model", ErrorCode::RunNotFound),
    ] {
        let bad = NewCatalogVersion { name: "sepsis-risk".into(), source: source.into(), ..Default::default() };
        assert_eq!(reg.create_catalog_version(&ds, &bad).unwrap_err().code(), code, "{source}");
    }
    let bad = NewCatalogVersion { tags: vec![kv("vigil.content_hash", "x")], ..from_run.clone() };
    assert_eq!(reg.create_catalog_version(&ds, &bad).unwrap_err().code(), ErrorCode::InvalidKey);
    let bad = NewCatalogVersion { source: format!("runs:/{}/../other", run.run_id), ..from_run.clone() };
    assert_eq!(reg.create_catalog_version(&ds, &bad).unwrap_err().code(), ErrorCode::InvalidSource);
    // A location in vigil's store only inside the run given (its evidence is what is signed),
    // and a logged model only with the run that logged it.
    let loose = NewCatalogVersion { name: "sepsis-risk".into(), source: model_dir.clone(), ..Default::default() };
    assert_eq!(reg.create_catalog_version(&ds, &loose).unwrap_err().code(), ErrorCode::InvalidSource);
    let other_run = NewCatalogVersion { run_id: Some(other.run_id.clone()), ..loose.clone() };
    assert_eq!(reg.create_catalog_version(&ds, &other_run).unwrap_err().code(), ErrorCode::InvalidSource);
    let lm_other_run = NewCatalogVersion { run_id: Some(other.run_id.clone()), artifact_digest: Some((lm.artifact_uri.clone(), digest)), ..from_lm.clone() };
    assert_eq!(reg.create_catalog_version(&ds, &lm_other_run).unwrap_err().code(), ErrorCode::InvalidSource);
    let sibling = NewCatalogVersion { source: format!("{}X", lm.artifact_uri), logged_model_id: Some(lm.id.clone()), ..Default::default() };
    assert_eq!(reg.create_catalog_version(&ds, &NewCatalogVersion { name: "sepsis-risk".into(), ..sibling }).unwrap_err().code(), ErrorCode::InvalidSource);
    // What a version was registered from is frozen; the rest of the run is not.
    let under = format!("{}/{}/artifacts/model/extra.txt", exp.id, run.run_id);
    assert_eq!(reg.authorize_artifact_write(&ds, &exp.id.to_string(), &run.run_id, &under).unwrap_err().code(), ErrorCode::ArtifactsFrozen);
    assert_eq!(reg.record_artifact_write(&ds, &run.run_id, &under, 1, "00").unwrap_err().code(), ErrorCode::ArtifactsFrozen);
    reg.authorize_artifact_write(&ds, &exp.id.to_string(), &run.run_id, &format!("{}/{}/artifacts/notes.txt", exp.id, run.run_id)).unwrap();
    let clin = env.login("clin");
    assert_eq!(reg.create_catalog_version(&clin, &from_run).unwrap_err().code(), ErrorCode::RoleNotPermitted);
    assert_eq!(reg.catalog_version("sepsis-risk", 5).unwrap_err().code(), ErrorCode::VersionNotFound);

    // Metadata edits are not signed content and leave the hash alone.
    let edited = reg.update_version_description(&ds, "sepsis-risk", 1, "recalibrated").unwrap();
    assert_eq!((edited.meta.description.as_str(), edited.version.content_hash), ("recalibrated", v1.version.content_hash));
    reg.set_version_tag(&ds, "sepsis-risk", 2, "reviewed", "yes").unwrap();
    assert_eq!(reg.catalog_version("sepsis-risk", 2).unwrap().meta.tags, vec![kv("reviewed", "yes")]);
    reg.delete_version_tag(&ds, "sepsis-risk", 2, "reviewed").unwrap();
    assert_eq!(reg.delete_version_tag(&ds, "sepsis-risk", 2, "reviewed").unwrap_err().code(), ErrorCode::TagNotFound);

    let denied = reg.audit_log(&AuditQuery { model: Some("sepsis-risk".into()), outcome: Some("denied".into()), ..Default::default() }).unwrap();
    assert!(denied.len() >= 8, "every refused registration is audited: {}", denied.len());
    assert!(env.verify().ok());
});

conformance!(aliases_and_stages_follow_the_promotion_workflow, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    let v1 = env.register("ds", "stroke", "1.0.0");
    env.register("ds", "stroke", "1.1.0");
    assert_eq!(v1.number, 1);

    // Free aliases move; reserved names are refused; unknown aliases are a client error.
    reg.set_alias(&ds, "stroke", "challenger", 1).unwrap();
    reg.set_alias(&ds, "stroke", "challenger", 2).unwrap();
    assert_eq!(reg.version_by_alias("stroke", "challenger").unwrap().version.number, 2);
    assert_eq!(reg.registered_model("stroke").unwrap().aliases, vec![("challenger".to_string(), 2)]);
    for bad in ["latest", "v2", "a b"] {
        assert_eq!(reg.set_alias(&ds, "stroke", bad, 1).unwrap_err().code(), ErrorCode::InvalidAlias, "{bad}");
    }
    assert_eq!(reg.version_by_alias("stroke", "nope").unwrap_err().code(), ErrorCode::AliasNotFound);
    assert_eq!(reg.set_alias(&ds, "stroke", "x", 9).unwrap_err().code(), ErrorCode::VersionNotFound);

    // Guarded aliases and stage changes need an approved promotion.
    for alias in ["production", "Champion"] {
        assert_eq!(reg.set_alias(&ds, "stroke", alias, 1).unwrap_err().code(), ErrorCode::GuardedAlias, "{alias}");
    }
    assert_eq!(reg.version_by_alias("stroke", "production").unwrap_err().code(), ErrorCode::AliasNotFound);
    let e = reg.request_stage_via_catalog(&ds, "stroke", 1, Stage::Production).unwrap_err();
    assert_eq!(e.code(), ErrorCode::PromotionRequired);
    assert!(e.message().contains("/api/v1/promotions"), "{}", e.message());
    assert_eq!(reg.request_stage_via_catalog(&ds, "stroke", 1, Stage::Development).unwrap().version.number, 1, "already there");
    assert_eq!(reg.delete_alias(&ds, "stroke", "production").unwrap_err().code(), ErrorCode::GuardedAlias);

    env.promote(&v1, Stage::Production);
    assert_eq!(reg.request_stage_via_catalog(&ds, "stroke", 1, Stage::Production).unwrap().version.stage, Stage::Production);
    reg.set_alias(&ds, "stroke", "champion", 1).unwrap();
    assert_eq!(reg.set_alias(&ds, "stroke", "production", 2).unwrap_err().code(), ErrorCode::GuardedAlias);
    let champ = reg.version_by_alias("stroke", "champion").unwrap();
    assert_eq!(champ.version.number, 1);
    assert!(champ.aliases.contains(&"production".to_string()) && champ.aliases.contains(&"champion".to_string()));
    let latest = reg.latest_versions("stroke", &[Stage::Production]).unwrap();
    assert_eq!(latest.iter().map(|v| v.version.number).collect::<Vec<_>>(), vec![1]);
    assert_eq!(reg.latest_versions("stroke", &[]).unwrap().len(), 2, "newest per stage: production 1, development 2");

    reg.delete_alias(&ds, "stroke", "challenger").unwrap();
    reg.delete_alias(&ds, "stroke", "challenger").unwrap();
    assert_eq!(reg.version_by_alias("stroke", "challenger").unwrap_err().code(), ErrorCode::AliasNotFound);
    assert_eq!(reg.set_alias(&env.login("clin"), "stroke", "challenger", 2).unwrap_err().code(), ErrorCode::RoleNotPermitted);

    let events = reg.audit_log(&AuditQuery { model: Some("stroke".into()), ..Default::default() }).unwrap();
    let count = |action: &str, outcome: &str| events.iter().filter(|e| e.action == action && e.outcome == outcome).count();
    assert_eq!(count("model.alias.set", "ok"), 3);
    assert_eq!(count("model.alias.set", "denied"), 8);
    assert_eq!(count("model_version.transition", "denied"), 1);
    assert_eq!(count("model.alias.delete", "denied"), 1);
    assert!(env.verify().ok());
});

conformance!(registry_searches_filter_order_and_page, |env| {
    env.with_team();
    let reg = &env.registry;
    for (name, n) in [("alpha", 3), ("beta", 1), ("gamma", 2)] {
        for i in 0..n {
            env.register("ds", name, &format!("1.{i}.0"));
        }
    }
    reg.create_registered_model(&env.login("ds"), "empty", "", &[kv("team", "icu")]).unwrap();
    let f = |s: &str, k| parse_catalog_filter(s, k).unwrap();
    let o = |s: &str, k| parse_catalog_order(s, k).unwrap();
    let names = |ms: Vec<vigil_core::catalog::CatalogModel>| ms.into_iter().map(|m| m.model.name.to_string()).collect::<Vec<_>>();

    let (all, more) = reg.search_registered_models(&[], &[], 100, 0).unwrap();
    assert_eq!((names(all), more), (vec!["alpha".to_string(), "beta".into(), "empty".into(), "gamma".into()], false));
    let (page1, more) = reg.search_registered_models(&[], &[o("name DESC", CatalogKind::Models)], 2, 0).unwrap();
    assert_eq!((names(page1), more), (vec!["gamma".to_string(), "empty".into()], true));
    let (page2, more) = reg.search_registered_models(&[], &[o("name DESC", CatalogKind::Models)], 2, 2).unwrap();
    assert_eq!((names(page2), more), (vec!["beta".to_string(), "alpha".into()], false));
    let (m, _) = reg.search_registered_models(&f("name LIKE '%a' AND tag.`mlflow.prompt.is_prompt` != 'true'", CatalogKind::Models), &[], 100, 0).unwrap();
    assert_eq!(names(m), vec!["alpha", "beta", "gamma"]);
    let (m, _) = reg.search_registered_models(&f("tags.team = 'icu'", CatalogKind::Models), &[], 100, 0).unwrap();
    assert_eq!(names(m), vec!["empty"]);
    // As in MLflow, a missing tag matches no condition on it, `!=` included.
    let (m, _) = reg.search_registered_models(&f("tags.team != 'er'", CatalogKind::Models), &[], 100, 0).unwrap();
    assert_eq!(names(m), vec!["empty"]);
    let (m, _) = reg.search_registered_models(&f("name ILIKE 'ALP%'", CatalogKind::Models), &[], 100, 0).unwrap();
    assert_eq!(names(m), vec!["alpha"]);
    let (m, _) = reg.search_registered_models(&[], &[o("last_updated_timestamp DESC", CatalogKind::Models)], 100, 0).unwrap();
    let times: Vec<i64> = m.iter().map(|m| m.last_updated_ms).collect();
    assert!(times.len() == 4 && times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");

    let (vs, _) = reg.search_catalog_versions(&f("name = 'alpha'", CatalogKind::Versions), &[], 100, 0).unwrap();
    assert_eq!(vs.iter().map(|v| v.version.number).collect::<Vec<_>>(), vec![3, 2, 1]);
    let (vs, _) = reg.search_catalog_versions(&f("name IN ('alpha', 'gamma') AND version_number >= 2", CatalogKind::Versions), &[o("version_number", CatalogKind::Versions)], 100, 0).unwrap();
    assert_eq!(vs.iter().map(|v| (v.version.model_name.to_string(), v.version.number)).collect::<Vec<_>>(), vec![("alpha".into(), 2), ("gamma".into(), 2), ("alpha".into(), 3)]);
    let (vs, more) = reg.search_catalog_versions(&[], &[], 4, 0).unwrap();
    assert_eq!((vs.len(), more), (4, true));
});

conformance!(experiments_search_by_name_time_and_tags, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    for (name, team) in [("icu-sepsis", "icu"), ("icu-aki", "icu"), ("ed-triage", "ed")] {
        reg.create_experiment(&ds, name, None, &[kv("team", team)]).unwrap();
    }
    let f = |s: &str| parse_catalog_filter(s, CatalogKind::Experiments).unwrap();
    let o = |s: &str| parse_catalog_order(s, CatalogKind::Experiments).unwrap();
    let names = |r: (Vec<vigil_core::tracking::Experiment>, bool)| r.0.into_iter().map(|e| e.name).collect::<Vec<_>>();
    let view = vigil_core::tracking::ViewType::ActiveOnly;
    assert_eq!(names(reg.search_experiments(view, &f("name LIKE 'icu-%'"), &[o("name")], 100, 0).unwrap()), vec!["icu-aki", "icu-sepsis"]);
    assert_eq!(names(reg.search_experiments(view, &f("tags.team = 'ed'"), &[], 100, 0).unwrap()), vec!["ed-triage"]);
    assert_eq!(names(reg.search_experiments(view, &f("creation_time >= 0 AND name != 'Default'"), &[o("experiment_id DESC")], 2, 0).unwrap()), vec!["ed-triage", "icu-aki"]);
    let (page, more) = reg.search_experiments(view, &[], &[o("name")], 2, 2).unwrap();
    assert_eq!((page.len(), more), (2, false));
    assert!(parse_catalog_filter("version_number = 1", CatalogKind::Experiments).is_err());
    assert!(parse_catalog_filter("creation_time = 'x'", CatalogKind::Experiments).is_err());
});
