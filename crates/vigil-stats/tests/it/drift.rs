//! Divergences, Wasserstein, chi-squared, z-test and corrections against SciPy/NumPy.

use crate::fixtures::{close, load, sample};
use std::collections::BTreeMap;
use vigil_stats::drift::*;
use vigil_stats::special::chi2_sf;

const RTOL: f64 = 1e-9;
const ATOL: f64 = 1e-12;

fn check_divergences(b: &Binned, want: &serde_json::Value, what: &str) {
    close(psi(b), want["psi"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} psi"));
    close(kl_divergence(b), want["kl"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} kl"));
    close(js_distance(b), want["js"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} js"));
    close(hellinger(b), want["hellinger"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} hellinger"));
}

#[test]
fn numeric_divergences_and_wasserstein_match() {
    let f = load("drift.json");
    let cases = f["numeric"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for c in cases {
        let mut x = sample(&c["x"]);
        let mut y = sample(&c["y"]);
        x.sort_by(f64::total_cmp);
        y.sort_by(f64::total_cmp);
        let what = format!("n=({}, {}) {} seed {}", x.len(), y.len(), c["x"]["kind"], c["x"]["seed"]);
        close(wasserstein(&x, &y), c["wasserstein"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} wasserstein"));
        close(std_pop(&x), c["std_ref"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} std"));
        check_divergences(&bin_numeric(&x, &y, Binning::default()), &c["quantile"], &format!("{what} quantile bins"));
        check_divergences(&bin_numeric(&x, &y, Binning::Evidently), &c["evidently"], &format!("{what} evidently bins"));
    }
}

#[test]
fn categorical_chi2_contingency_and_divergences_match() {
    let f = load("drift.json");
    for c in f["categorical"].as_array().unwrap() {
        let r: Vec<u64> = c["reference"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let k: Vec<u64> = c["current"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        let names = |counts: &[u64]| -> BTreeMap<String, u64> {
            counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(i, n)| (format!("c{i:02}"), *n)).collect()
        };
        let table = CategoryShares::new(&names(&r), &names(&k));
        let res = chi2_contingency(&table.reference_counts, &table.current_counts);
        let what = format!("{r:?} vs {k:?}");
        close(res.statistic, c["chi2"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} chi2"));
        close(res.pvalue, c["p"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} p"));
        assert_eq!(res.dof as u64, c["dof"].as_u64().unwrap(), "{what}");
        // Divergences over the category union; categories absent from both are dropped on
        // both sides, which leaves the shares unchanged.
        check_divergences(&table.binned(EmptyBins::Constant(1e-4)), &c["divergences"], &what);
    }
}

#[test]
fn unseen_and_vanished_categories_are_reported() {
    let r: BTreeMap<String, u64> = [("a".into(), 5), ("b".into(), 3)].into();
    let c: BTreeMap<String, u64> = [("b".into(), 4), ("z".into(), 1)].into();
    let t = CategoryShares::new(&r, &c);
    assert_eq!(t.categories, ["a", "b", "z"]);
    assert_eq!(t.unseen, ["z"]);
    assert_eq!(t.vanished, ["a"]);
}

#[test]
fn two_proportion_z_matches() {
    let f = load("drift.json");
    for c in f["ztest"].as_array().unwrap() {
        let g = |k: &str| c[k].as_u64().unwrap();
        let (z, p) = two_proportion_z(g("x1"), g("n1"), g("x2"), g("n2"));
        close(z, c["z"].as_f64().unwrap(), RTOL, ATOL, "z");
        close(p, c["p"].as_f64().unwrap(), RTOL, ATOL, "p");
    }
}

#[test]
fn corrections_match_scipy() {
    let f = load("drift.json");
    for c in f["corrections"].as_array().unwrap() {
        let p: Vec<f64> = c["p"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let want: Vec<f64> = c["bh"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        for (g, w) in benjamini_hochberg(&p).iter().zip(&want) {
            close(*g, *w, RTOL, ATOL, &format!("bh {p:?}"));
        }
        for (g, x) in bonferroni(&p).iter().zip(&p) {
            assert_eq!(*g, (x * p.len() as f64).min(1.0));
        }
    }
}

#[test]
fn chi2_sf_matches() {
    let f = load("drift.json");
    for c in f["special"].as_array().unwrap() {
        let (x, df) = (c["x"].as_f64().unwrap(), c["df"].as_f64().unwrap());
        close(chi2_sf(x, df), c["chi2_sf"].as_f64().unwrap(), RTOL, ATOL, &format!("chi2.sf({x}, {df})"));
    }
}
