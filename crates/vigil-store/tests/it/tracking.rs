//! Experiment tracking and API tokens on each backend: experiments and runs, immutable params,
//! metric histories with NaN and infinities, the latest-value rule, search with MLflow's
//! filter grammar, ordering and paging, soft deletes, every mutation audited, role checks,
//! and bearer tokens that expire and can be revoked.

use crate::conformance;
use vigil_core::ErrorCode;
use vigil_core::search::{parse_filter, parse_order_by};
use vigil_core::store::AuditQuery;
use vigil_core::tracking::{Lifecycle, LogBatch, Metric, MetricPoint, RunQuery, RunStatus, ViewType};

fn m(key: &str, value: f64, timestamp: i64, step: i64) -> Metric {
    Metric { key: key.into(), point: MetricPoint { value, timestamp, step } }
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

fn query(exp: i64, filter: &str, order: &[&str]) -> RunQuery {
    RunQuery {
        experiment_ids: vec![exp],
        filter: parse_filter(filter).unwrap(),
        view: ViewType::ActiveOnly,
        order_by: order.iter().map(|o| parse_order_by(o).unwrap()).collect(),
        limit: 1000,
        offset: 0,
    }
}

conformance!(runs_params_metrics_and_tags_round_trip, |env| {
    env.with_team();
    let ds = env.login("ds");
    let reg = &env.registry;
    let default = reg.get_experiment(0).unwrap();
    assert_eq!((default.name.as_str(), default.artifact_location.as_str()), ("Default", "mlflow-artifacts:/0"));
    let exp = reg.create_experiment(&ds, "sepsis", None, &[kv("team", "icu")]).unwrap();
    assert_eq!(exp.artifact_location, format!("mlflow-artifacts:/{}", exp.id));
    assert_eq!(reg.get_experiment_by_name("sepsis").unwrap().tags, vec![kv("team", "icu")]);
    assert_eq!(reg.create_experiment(&ds, "sepsis", None, &[]).unwrap_err().code(), ErrorCode::ExperimentExists);

    // The client's claimed user is ignored: the run belongs to who authenticated.
    let run = reg.create_run(&ds, exp.id, Some("baseline"), Some(1000), &[kv("mlflow.user", "mallory")]).unwrap();
    assert_eq!((run.user_id.as_str(), run.status, run.start_time), ("ds", RunStatus::Running, 1000));
    assert_eq!(run.artifact_uri, format!("mlflow-artifacts:/{}/{}/artifacts", exp.id, run.run_id));
    assert_eq!(run.run_id.len(), 32);

    let batch = LogBatch {
        metrics: vec![m("acc", 0.7, 10, 0), m("acc", 0.9, 11, 1), m("acc", 0.8, 12, 1), m("loss", f64::NAN, 10, 0), m("gain", f64::INFINITY, 10, 0), m("neg", f64::NEG_INFINITY, 10, 0)],
        params: vec![kv("model", "lr"), kv("C", "0.5")],
        tags: vec![kv("team", "icu"), kv("team", "sepsis")],
    };
    reg.log_batch(&ds, &run.run_id, &batch).unwrap();
    // Out-of-order step: an older step logged later does not replace the latest.
    reg.log_batch(&ds, &run.run_id, &LogBatch { metrics: vec![m("acc", 0.1, 99, 0)], ..Default::default() }).unwrap();
    let got = reg.get_run(&run.run_id).unwrap();
    assert_eq!(got.params, vec![kv("C", "0.5"), kv("model", "lr")]);
    assert!(got.tags.contains(&kv("team", "sepsis")) && got.tags.contains(&kv("mlflow.user", "ds")) && got.tags.contains(&kv("mlflow.runName", "baseline")));
    let latest = |k: &str| got.metrics.iter().find(|x| x.key == k).unwrap().point;
    // Greatest (step, timestamp): step 1 at t=12 (0.8) beats step 1 at t=11 (0.9).
    assert_eq!(latest("acc"), MetricPoint { value: 0.8, timestamp: 12, step: 1 });
    assert!(latest("loss").value.is_nan());
    assert_eq!(latest("gain").value, f64::INFINITY);
    assert_eq!(latest("neg").value, f64::NEG_INFINITY);
    let hist = reg.metric_history(&run.run_id, "acc", 100, 0).unwrap();
    assert_eq!(hist.iter().map(|p| p.value).collect::<Vec<_>>(), vec![0.7, 0.9, 0.8, 0.1], "logging order");
    assert_eq!(reg.metric_history(&run.run_id, "acc", 2, 2).unwrap().len(), 2);

    // Params are immutable; a refused batch writes nothing at all.
    reg.log_batch(&ds, &run.run_id, &LogBatch { params: vec![kv("model", "lr")], ..Default::default() }).unwrap();
    let refused = LogBatch { metrics: vec![m("acc", 0.0, 50, 9)], params: vec![kv("model", "rf")], tags: vec![kv("new", "x")] };
    assert_eq!(reg.log_batch(&ds, &run.run_id, &refused).unwrap_err().code(), ErrorCode::ParamImmutable);
    let after = reg.get_run(&run.run_id).unwrap();
    assert_eq!(after.params, got.params);
    assert!(!after.tags.iter().any(|(k, _)| k == "new"));
    assert_eq!(reg.metric_history(&run.run_id, "acc", 100, 0).unwrap().len(), 4);

    let ended = reg.update_run(&ds, &run.run_id, Some(RunStatus::Finished), Some(2000), None).unwrap();
    assert_eq!((ended.status, ended.end_time), (RunStatus::Finished, Some(2000)));

    // Every mutation is in the audit trail, and the chain verifies.
    let events = reg.audit_log(&AuditQuery { actor: Some("ds".into()), ..Default::default() }).unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    for a in ["experiment.create", "run.create", "run.log", "run.update"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    assert!(events.iter().any(|e| e.action == "run.log" && e.outcome.as_str() == "denied"), "refused batch audited");
    assert!(env.verify().ok());
});

conformance!(tracking_roles_and_deleted_runs, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let exp = reg.create_experiment(&ds, "e", None, &[]).unwrap();
    let run = reg.create_run(&ds, exp.id, None, None, &[]).unwrap();
    assert!(run.run_name.starts_with("run-"), "a generated name");
    // Reviewers, compliance officers and administrators read but do not write.
    for who in ["clin", "comp", "admin"] {
        let p = env.login(who);
        assert_eq!(reg.create_experiment(&p, &format!("x-{who}"), None, &[]).unwrap_err().code(), ErrorCode::RoleNotPermitted, "{who}");
        assert_eq!(reg.log_batch(&p, &run.run_id, &LogBatch { params: vec![kv("a", "b")], ..Default::default() }).unwrap_err().code(), ErrorCode::RoleNotPermitted);
        assert_eq!(reg.get_run(&run.run_id).unwrap().info.run_id, run.run_id);
    }
    // Deleted runs refuse logging until restored, and leave the active view.
    reg.set_run_lifecycle(&ds, &run.run_id, Lifecycle::Deleted).unwrap();
    assert_eq!(reg.log_batch(&ds, &run.run_id, &LogBatch { params: vec![kv("a", "b")], ..Default::default() }).unwrap_err().code(), ErrorCode::RunNotActive);
    assert!(reg.search_runs(&query(exp.id, "", &[])).unwrap().0.is_empty());
    let mut deleted = query(exp.id, "", &[]);
    deleted.view = ViewType::DeletedOnly;
    assert_eq!(reg.search_runs(&deleted).unwrap().0.len(), 1);
    reg.set_run_lifecycle(&ds, &run.run_id, Lifecycle::Active).unwrap();
    reg.log_batch(&ds, &run.run_id, &LogBatch { params: vec![kv("a", "b")], ..Default::default() }).unwrap();
    assert_eq!(reg.get_run("0123456789abcdef0123456789abcdef").unwrap_err().code(), ErrorCode::RunNotFound);
    assert_eq!(reg.get_run("../../etc").unwrap_err().code(), ErrorCode::RunNotFound);
    assert_eq!(reg.set_experiment_lifecycle(&ds, 0, Lifecycle::Deleted).unwrap_err().code(), ErrorCode::InvalidText);
});

conformance!(search_filters_order_and_pages_like_mlflow, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let exp = reg.create_experiment(&ds, "search", None, &[]).unwrap();
    let other = reg.create_experiment(&ds, "other", None, &[]).unwrap();
    let mut ids = Vec::new();
    for (i, (model, acc, team)) in [("lr", Some(0.61), "icu"), ("LR", Some(0.9), "ICU"), ("rf", Some(0.4), "ed"), ("lr2", None, "icu"), ("gbm", Some(f64::NAN), "ed")].iter().enumerate() {
        let r = reg.create_run(&ds, exp.id, Some(&format!("run{i}")), Some(1000 + i as i64), &[]).unwrap();
        let mut b = LogBatch { params: vec![kv("model", model)], tags: vec![kv("team", team)], ..Default::default() };
        if let Some(a) = acc {
            b.metrics.push(m("acc", *a, 1, 0));
        }
        reg.log_batch(&ds, &r.run_id, &b).unwrap();
        ids.push(r.run_id);
    }
    reg.create_run(&ds, other.id, Some("elsewhere"), None, &[]).unwrap();
    let names = |q: RunQuery| reg.search_runs(&q).unwrap().0.into_iter().map(|r| r.info.run_name).collect::<Vec<_>>();
    // Default order: start_time descending.
    assert_eq!(names(query(exp.id, "", &[])), vec!["run4", "run3", "run2", "run1", "run0"]);
    assert_eq!(names(query(exp.id, "metrics.acc > 0.5", &["metrics.acc DESC"])), vec!["run1", "run0"], "NaN never matches");
    assert_eq!(names(query(exp.id, "metrics.acc <= 0.61 and metrics.acc >= 0.61", &[])), vec!["run0"]);
    // LIKE is case-sensitive on both backends; ILIKE is not.
    assert_eq!(names(query(exp.id, "params.model LIKE 'l%'", &["attributes.start_time ASC"])), vec!["run0", "run3"]);
    assert_eq!(names(query(exp.id, "params.model ILIKE 'l%'", &["attributes.start_time ASC"])), vec!["run0", "run1", "run3"]);
    assert_eq!(names(query(exp.id, "params.model LIKE 'l_'", &[])), vec!["run0"]);
    assert_eq!(names(query(exp.id, "tags.team = 'icu' AND params.model != 'lr'", &[])), vec!["run3"]);
    assert_eq!(names(query(exp.id, "tags.missing IS NULL AND tags.team IS NOT NULL", &[])).len(), 5);
    assert_eq!(names(query(exp.id, &format!("attributes.run_id IN ('{}', '{}')", ids[0], ids[2]), &["run_name ASC"])), vec!["run0", "run2"]);
    assert_eq!(names(query(exp.id, "attributes.status = 'RUNNING' AND attributes.start_time >= 1003", &[])), vec!["run4", "run3"]);
    assert_eq!(names(query(exp.id, "run_name LIKE 'run*'", &[])), Vec::<String>::new(), "GLOB metacharacters are literal");
    // Runs lacking the ordered metric (or with NaN) sort last in both directions.
    assert_eq!(names(query(exp.id, "", &["metrics.acc ASC"])), vec!["run2", "run0", "run1", "run4", "run3"]);
    assert_eq!(names(query(exp.id, "", &["metrics.acc DESC"])), vec!["run1", "run0", "run2", "run4", "run3"]);
    assert_eq!(names(query(exp.id, "", &["params.model ASC"]))[0], "run1", "'LR' < 'gbm' bytewise");
    // Paging returns every run exactly once.
    let mut seen = Vec::new();
    let mut q = query(exp.id, "", &["metrics.acc DESC"]);
    q.limit = 2;
    loop {
        let (runs, more) = reg.search_runs(&q).unwrap();
        seen.extend(runs.into_iter().map(|r| r.info.run_name));
        if !more {
            break;
        }
        q.offset += 2;
    }
    assert_eq!(seen, vec!["run1", "run0", "run2", "run4", "run3"]);
    // Searching both experiments.
    let mut both = query(exp.id, "", &[]);
    both.experiment_ids.push(other.id);
    assert_eq!(reg.search_runs(&both).unwrap().0.len(), 6);
    // Data comes back with each run.
    let (runs, _) = reg.search_runs(&query(exp.id, "params.model = 'rf'", &[])).unwrap();
    assert_eq!(runs[0].params, vec![kv("model", "rf")]);
    assert_eq!(runs[0].metrics[0].point.value, 0.4);
});

conformance!(tokens_authenticate_until_revoked_or_expired, |env| {
    env.with_team();
    let reg = &env.registry;
    let ds = env.login("ds");
    let (tok, secret) = reg.create_token(&ds, "notebook", Some(1)).unwrap();
    assert!(secret.starts_with("vgt_"));
    let p = reg.authenticate_token(&secret).unwrap();
    assert_eq!(p.user_id().as_str(), "ds");
    // Stored hashed: the secret is nowhere in the database.
    let stored = env.raw().scalar(&format!("SELECT token_hash FROM api_tokens WHERE id = '{}'", tok.id));
    assert_ne!(stored, secret);
    assert!(!stored.contains(&secret[4..]));
    // Another user cannot revoke it; its owner can.
    assert_eq!(reg.revoke_token(&env.login("ds2"), &tok.id).unwrap_err().code(), ErrorCode::TokenNotFound);
    reg.revoke_token(&ds, &tok.id).unwrap();
    assert_eq!(reg.authenticate_token(&secret).unwrap_err().code(), ErrorCode::AuthenticationFailed);
    // Expiry.
    let (_, s2) = reg.create_token(&ds, "short", Some(1)).unwrap();
    env.clock.advance_hours(25);
    assert_eq!(reg.authenticate_token(&s2).unwrap_err().code(), ErrorCode::AuthenticationFailed);
    // Sessions from a login; a disabled user's tokens stop working.
    let (_, session, s3) = reg.login(&vigil_core::ids::UserId::parse("ds2").unwrap(), &vigil_core::auth::Password::new(crate::support::PW)).unwrap();
    assert_eq!(session.kind.as_str(), "session");
    assert!(reg.authenticate_token(&s3).is_ok());
    reg.disable_user(&env.login("admin"), &vigil_core::ids::UserId::parse("ds2").unwrap(), "left").unwrap();
    assert!(reg.authenticate_token(&s3).is_err());
    assert!(reg.authenticate_token("vgt_not-a-token").is_err());
    let denied = reg.audit_log(&AuditQuery { action: Some("auth.token".into()), ..Default::default() }).unwrap();
    assert!(denied.len() >= 4, "refused tokens are audited: {}", denied.len());
    assert!(denied.iter().all(|e| !e.details.to_string().contains(&s3[4..])), "secrets never reach the audit trail");
    assert_eq!(reg.list_tokens(&ds).unwrap().len(), 2);
    assert_eq!(reg.list_tokens(&env.login("admin")).unwrap().len(), 3);
    assert!(env.verify().ok());
});

conformance!(concurrent_creators_of_one_experiment_name_get_one_experiment, |env| {
    env.with_team();
    let regs: Vec<_> = (0..4).map(|_| env.second_registry()).collect();
    let ds = env.login("ds");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = regs.iter().map(|r| s.spawn(|| r.create_experiment(&ds, "race", None, &[]))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|e| e.code() == ErrorCode::ExperimentExists), "{results:?}");
    // Distinct names all succeed with distinct ids.
    let ids: Vec<i64> = std::thread::scope(|s| {
        let ds = &ds;
        let hs: Vec<_> = regs.iter().enumerate().map(|(i, r)| s.spawn(move || r.create_experiment(ds, &format!("e{i}"), None, &[]).unwrap().id)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4);
    assert!(env.verify().ok());
});
