//! Validation and fairness metrics against scikit-learn 1.9, fairlearn 0.15 and a by-the-
//! definition DeLong (`tests/fixtures/make_validation_fixtures.py` → `validation.json`).

use crate::fixtures::load;
use serde_json::Value;
use vigil_stats::fairness::{Mode, by_group, intersect, summary, to_overall};
use vigil_stats::validation::{Confusion, average_precision, bootstrap, brier, calibration, delong, log_loss, regression, roc_auc};

#[track_caller]
fn close(got: Option<f64>, want: &Value, tol: f64, what: &str) {
    match (got, want.as_f64()) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() <= tol * w.abs().max(1.0), "{what}: got {g}, want {w}"),
        (g, _) => panic!("{what}: got {g:?}, want {want}"),
    }
}

fn bools(v: &Value) -> Vec<bool> {
    v.as_array().unwrap().iter().map(|x| x.as_bool().unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect()
}

#[test]
fn binary_metrics_match_scikit_learn() {
    let doc = load("validation.json");
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (y, s) = (bools(&c["labels"]), floats(&c["scores"]));
        let cm = Confusion::at(&y, &s, c["threshold"].as_f64().unwrap());
        close(cm.accuracy(), &c["accuracy"], 1e-12, &format!("{name} accuracy"));
        close(cm.precision(), &c["precision"], 1e-12, &format!("{name} precision"));
        close(cm.recall(), &c["recall"], 1e-12, &format!("{name} recall"));
        close(cm.f1(), &c["f1"], 1e-12, &format!("{name} f1"));
        close(roc_auc(&y, &s), &c["roc_auc"], 1e-12, &format!("{name} roc_auc"));
        close(average_precision(&y, &s), &c["average_precision"], 1e-12, &format!("{name} average_precision"));
        close(brier(&y, &s), &c["brier"], 1e-12, &format!("{name} brier"));
        close(log_loss(&y, &s), &c["log_loss"], 1e-12, &format!("{name} log_loss"));

        let (table, ece, mce) = calibration(&y, &s, 10).unwrap();
        let cal = &c["calibration"];
        assert_eq!(table.iter().map(|b| b.count).collect::<Vec<_>>(), cal["counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect::<Vec<_>>(), "{name} bins");
        for (b, (o, m)) in table.iter().zip(cal["observed"].as_array().unwrap().iter().zip(cal["mean_score"].as_array().unwrap())) {
            close(Some(b.observed), o, 1e-12, &format!("{name} bin observed"));
            close(Some(b.mean_score), m, 1e-12, &format!("{name} bin mean score"));
        }
        close(Some(ece), &cal["ece"], 1e-12, &format!("{name} ece"));
        close(Some(mce), &cal["mce"], 1e-12, &format!("{name} mce"));
    }
}

#[test]
fn delong_and_bootstrap_match_the_reference() {
    let doc = load("validation.json");
    let mut checked = 0;
    for c in doc["cases"].as_array().unwrap() {
        let Some(d) = c.get("delong") else { continue };
        let name = c["name"].as_str().unwrap();
        let (y, a, b) = (bools(&c["labels"]), floats(&c["scores"]), floats(&c["scores_b"]));
        let got = delong(&y, &a, &b).unwrap();
        close(Some(got.auc_a), &d["auc_a"], 1e-12, &format!("{name} auc_a"));
        close(Some(got.auc_b), &d["auc_b"], 1e-12, &format!("{name} auc_b"));
        close(Some(got.var_a), &d["var_a"], 1e-9, &format!("{name} var_a"));
        close(Some(got.var_b), &d["var_b"], 1e-9, &format!("{name} var_b"));
        close(Some(got.cov), &d["cov"], 1e-9, &format!("{name} cov"));
        close(got.z, &d["z"], 1e-9, &format!("{name} z"));
        close(got.p, &d["p"], 1e-9, &format!("{name} p"));
        // The bootstrap replays the fixture's Poisson multiplicities exactly.
        let bs = &c["bootstrap_auc"];
        let ci = bootstrap(&y, &a, 200, 20261128, 0.95, roc_auc).unwrap();
        assert_eq!((ci.used as u64, ci.skipped as u64), (bs["used"].as_u64().unwrap(), bs["skipped"].as_u64().unwrap()), "{name}");
        close(Some(ci.low), &bs["low"], 1e-12, &format!("{name} bootstrap low"));
        close(Some(ci.high), &bs["high"], 1e-12, &format!("{name} bootstrap high"));
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
}

#[test]
fn fairness_matches_fairlearn_in_its_mode() {
    let doc = load("validation.json");
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (y, s) = (bools(&c["labels"]), floats(&c["scores"]));
        let (ga, gb) = (strings(&c["group_a"]), strings(&c["group_b"]));
        for (key, groups) in [("fairness_a", ga.clone()), ("fairness_ab", intersect(&[&ga, &gb]))] {
            let want = &c[key];
            let (per, overall) = by_group(&y, &s, &groups, 0.5);
            let sm = summary(&per, Mode::Fairlearn);
            close(sm.demographic_parity.difference, &want["demographic_parity_difference"], 1e-12, &format!("{name} {key} dp difference"));
            close(sm.demographic_parity.ratio, &want["demographic_parity_ratio"], 1e-12, &format!("{name} {key} dp ratio"));
            close(sm.equalized_odds_difference, &want["equalized_odds_difference"], 1e-12, &format!("{name} {key} eo difference"));
            close(sm.equalized_odds_ratio, &want["equalized_odds_ratio"], 1e-12, &format!("{name} {key} eo ratio"));
            close(to_overall(&per, &overall, |g| g.tpr, Mode::Fairlearn, true).difference, &want["tpr_to_overall_difference"], 1e-12, &format!("{name} {key} tpr to overall"));
            close(to_overall(&per, &overall, |g| g.selection_rate, Mode::Fairlearn, false).ratio, &want["sr_to_overall_ratio"], 1e-12, &format!("{name} {key} sr ratio to overall"));
        }
    }
}

#[test]
fn strict_mode_excludes_and_lists_undefined_groups() {
    let doc = load("validation.json");
    let c = doc["cases"].as_array().unwrap().iter().find(|c| c["name"] == "c3_undefined_rates").unwrap();
    let (y, s) = (bools(&c["labels"]), floats(&c["scores"]));
    let (per, _) = by_group(&y, &s, &strings(&c["group_a"]), 0.5);
    let strict = summary(&per, Mode::Strict);
    let lenient = summary(&per, Mode::Fairlearn);
    assert_eq!(strict.equal_opportunity.excluded, vec!["D".to_string()], "D has no positives: its TPR is undefined");
    assert_eq!(strict.fpr.excluded, vec!["C".to_string()], "C has no negatives");
    // fairlearn's zeros make the disparity look larger; strict mode leaves them out.
    assert!(strict.equalized_odds_difference.unwrap() < lenient.equalized_odds_difference.unwrap());
}

#[test]
fn regression_metrics_match_scikit_learn() {
    let r = &load("validation.json")["regression"];
    let (t, p) = (floats(&r["truth"]), floats(&r["pred"]));
    let (mae, rmse, r2) = regression(&t, &p).unwrap();
    close(Some(mae), &r["mae"], 1e-12, "mae");
    close(Some(rmse), &r["rmse"], 1e-12, "rmse");
    close(Some(r2), &r["r2"], 1e-12, "r2");
    close(regression(&[1.0, 1.0, 1.0], &[1.0, 1.0, 2.0]).map(|x| x.2), &r["constant_truth_r2"], 0.0, "r2 with constant truth");
}

#[test]
fn one_pass_evaluation_equals_the_metrics_and_the_row_bootstrap() {
    use vigil_stats::validation::{evaluate, METRICS};
    let doc = load("validation.json");
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (y, s) = (bools(&c["labels"]), floats(&c["scores"]));
        let est = evaluate(&y, &s, 0.5, 200, 20261128, 0.95);
        assert_eq!(est.iter().map(|e| e.metric).collect::<Vec<_>>(), METRICS);
        let cm = Confusion::at(&y, &s, 0.5);
        let direct = [cm.accuracy(), cm.precision(), cm.recall(), cm.specificity(), cm.npv(), cm.f1(), roc_auc(&y, &s), average_precision(&y, &s), brier(&y, &s), log_loss(&y, &s), calibration(&y, &s, 10).map(|c| c.1)];
        for (e, d) in est.iter().zip(direct) {
            match (e.value, d) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{name} {}: {a} vs {b}", e.metric),
                (a, b) => assert_eq!(a, b, "{name} {}", e.metric),
            }
        }
        // Each metric's interval equals the row-copying bootstrap on the same multiplicities.
        type Stat = fn(&[bool], &[f64]) -> Option<f64>;
        let stats: [Stat; 4] = [roc_auc, average_precision, brier, |y, s| Confusion::at(y, s, 0.5).recall()];
        for (k, stat) in [6usize, 7, 8, 2].into_iter().zip(stats) {
            let slow = bootstrap(&y, &s, 200, 20261128, 0.95, stat);
            let fast = est[k].ci.clone();
            match (slow, fast) {
                (Some(a), Some(b)) => {
                    assert_eq!((a.used, a.skipped), (b.used, b.skipped), "{name} {}", METRICS[k]);
                    assert!((a.low - b.low).abs() < 1e-12 && (a.high - b.high).abs() < 1e-12, "{name} {}: {a:?} vs {b:?}", METRICS[k]);
                }
                (a, b) => assert_eq!(a.is_none(), b.is_none(), "{name} {}", METRICS[k]),
            }
        }
    }
}

#[test]
fn poisson_table_matches_the_exact_thresholds() {
    use vigil_stats::validation::POISSON1;
    let want: Vec<u64> = load("validation.json")["poisson1_thresholds"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(POISSON1.iter().map(|&t| u64::from(t)).collect::<Vec<_>>(), want);
}

#[test]
fn poisson_multiplicities_have_the_poisson_moments() {
    use vigil_stats::validation::poisson_weight;
    // 200,000 draws: mean 1 and variance 1 within 4 standard errors; P(0) = e^-1.
    let draws: Vec<f64> = (0..200_000u64).map(|i| f64::from(poisson_weight(7, i % 8, 25_000, i / 8))).collect();
    let n = draws.len() as f64;
    let mean = draws.iter().sum::<f64>() / n;
    let var = draws.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let zero = draws.iter().filter(|x| **x == 0.0).count() as f64 / n;
    assert!((mean - 1.0).abs() < 4.0 * (1.0 / n).sqrt(), "mean {mean}");
    assert!((var - 1.0).abs() < 4.0 * (3.0 / n).sqrt(), "variance {var}");
    assert!((zero - (-1.0f64).exp()).abs() < 4.0 * (0.25 / n).sqrt(), "P(0) {zero}");
}

#[test]
fn group_estimates_equal_the_group_rates_and_scikit_learn_on_the_same_resamples() {
    use vigil_stats::validation::{evaluate_groups, GROUP_METRICS};
    let doc = load("validation.json");
    let mut checked = 0;
    for c in doc["cases"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (y, s) = (bools(&c["labels"]), floats(&c["scores"]));
        let (ga, gb) = (strings(&c["group_a"]), strings(&c["group_b"]));
        let both = intersect(&[&ga, &gb]);
        let ev = evaluate_groups(&y, &s, 0.5, &[&ga, &both], 200, 20261128, 0.95);
        // The overall part is `evaluate`'s.
        assert_eq!(ev.overall, vigil_stats::validation::evaluate(&y, &s, 0.5, 200, 20261128, 0.95), "{name}");
        for (attr, groups) in ev.attributes.iter().zip([&ga, &both]) {
            let (per, _) = by_group(&y, &s, groups, 0.5);
            assert_eq!(per.iter().map(|g| &g.group).collect::<Vec<_>>(), attr.iter().map(|g| &g.group).collect::<Vec<_>>(), "{name}");
            for (want, got) in per.iter().zip(attr) {
                assert_eq!((want.n, want.n_pos, want.n_neg), (got.n, got.positives, got.negatives), "{name} {}", got.group);
                let rows: Vec<usize> = (0..y.len()).filter(|&i| groups[i] == got.group).collect();
                let (gy, gs): (Vec<bool>, Vec<f64>) = rows.iter().map(|&i| (y[i], s[i])).unzip();
                let cm = Confusion::at(&gy, &gs, 0.5);
                let direct = [cm.prevalence(), want.selection_rate, want.tpr, want.fpr, want.ppv, want.npv, want.auc, calibration(&gy, &gs, 10).map(|c| c.1)];
                for ((e, d), m) in got.estimates.iter().zip(direct).zip(GROUP_METRICS) {
                    assert_eq!(e.metric, *m);
                    match (e.value, d) {
                        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-12, "{name} {} {m}: {a} vs {b}", got.group),
                        (a, b) => assert_eq!(a, b, "{name} {} {m}", got.group),
                    }
                }
            }
        }
        // Intervals: scikit-learn on each group's rows repeated by the same multiplicities.
        if let Some(want) = c.get("group_bootstrap_a").and_then(Value::as_object) {
            for g in &ev.attributes[0] {
                for (metric, key) in [("tpr", "tpr"), ("fpr", "fpr"), ("selection_rate", "selection_rate"), ("roc_auc", "roc_auc"), ("ece", "ece")] {
                    let got = g.estimates.iter().find(|e| e.metric == metric).unwrap().ci.clone().unwrap();
                    let w = &want[&g.group][key];
                    assert_eq!((got.used as u64, got.skipped as u64), (w["used"].as_u64().unwrap(), w["skipped"].as_u64().unwrap()), "{name} {} {metric}", g.group);
                    close(Some(got.low), &w["low"], 1e-9, &format!("{name} {} {metric} low", g.group));
                    close(Some(got.high), &w["high"], 1e-9, &format!("{name} {} {metric} high", g.group));
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn regression_intervals_match_scikit_learn_on_the_same_resamples() {
    use vigil_stats::validation::evaluate_regression;
    let r = &load("validation.json")["regression"];
    let (t, p, c, g) = (floats(&r["truth"]), floats(&r["pred"]), floats(&r["champion"]), strings(&r["group"]));
    let ev = evaluate_regression(&t, &p, Some(&c), &[&g], 200, 20261128, 0.95);
    let b = &r["bootstrap"];
    let check = |e: &vigil_stats::validation::Estimate, key: &str| {
        let ci = e.ci.clone().unwrap();
        assert_eq!(ci.used as u64, b[key]["used"].as_u64().unwrap(), "{key}");
        close(Some(ci.low), &b[key]["low"], 1e-9, &format!("{key} low"));
        close(Some(ci.high), &b[key]["high"], 1e-9, &format!("{key} high"));
    };
    for (e, key) in ev.overall.iter().zip(["mae", "rmse", "r2"]) {
        assert_eq!(e.metric, key);
        close(e.value, &r[key], 1e-12, key);
        check(e, key);
    }
    let (champion_mae, increase) = ev.champion.clone().unwrap();
    assert!(champion_mae.value.unwrap() > ev.overall[0].value.unwrap(), "the champion is noisier");
    check(&increase, "relative_mae_increase");
    let groups = &ev.attributes[0];
    assert_eq!(groups.iter().map(|x| (x.group.as_str(), x.n)).collect::<Vec<_>>(), [("A", 33), ("B", 17)]);
    check(&groups[0].estimates[0], "A_mae");
    check(&groups[1].estimates[0], "B_mae");
    check(&groups[1].estimates[2], "B_mean_error");
}

#[test]
fn negative_zero_ties_with_zero() {
    use vigil_stats::validation::evaluate;
    let est = evaluate(&[true, false, true, false], &[0.0, -0.0, 0.9, 0.1], 0.5, 200, 1, 0.95);
    let auc = est.iter().find(|e| e.metric == "roc_auc").unwrap().value;
    assert_eq!(auc, roc_auc(&[true, false, true, false], &[0.0, -0.0, 0.9, 0.1]));
    assert_eq!(auc, Some(0.625), "(0.9 beats both, 0.0 ties -0.0: 2.5 of 4 pairs");
}
