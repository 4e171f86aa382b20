//! KS statistic and p-values against SciPy 1.17: `ks_2samp` (exact and asymptotic, ties, tiny
//! samples, the 10,000 switch), `kstwo.sf` over every algorithm branch, `special.smirnov`.

use crate::fixtures::{close, load, sample};
use vigil_stats::kolmogorov::{kolmogn_sf, smirnov_sf};
use vigil_stats::ks::ks_2samp_sorted;

const RTOL: f64 = 1e-9;
const ATOL: f64 = 1e-15;

#[test]
fn ks_2samp_matches_scipy() {
    let f = load("ks.json");
    let cases = f["ks_2samp"].as_array().unwrap();
    assert!(cases.len() >= 80);
    for c in cases {
        let mut x = sample(&c["x"]);
        let mut y = sample(&c["y"]);
        x.sort_by(f64::total_cmp);
        y.sort_by(f64::total_cmp);
        let r = ks_2samp_sorted(&x, &y);
        let (d, _) = vigil_stats::ks::ks_statistic_and_wasserstein(&x, &y);
        if x.len().max(y.len()) > vigil_stats::ks::MAX_AUTO_N {
            // Unrounded statistic: the fused walk must give SciPy's exact float.
            assert_eq!(d, r.statistic);
        }
        let what = format!("n=({}, {}) {} seed {}", x.len(), y.len(), c["x"]["kind"], c["x"]["seed"]);
        close(r.statistic, c["statistic"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} statistic"));
        close(r.pvalue, c["pvalue"].as_f64().unwrap(), RTOL, ATOL, &format!("{what} pvalue ({})", r.method.as_str()));
    }
}

#[test]
fn kstwo_sf_matches_scipy_on_every_branch() {
    let f = load("ks.json");
    for row in f["kstwo_sf"].as_array().unwrap() {
        let (n, x) = (row["n"].as_u64().unwrap(), row["x"].as_f64().unwrap());
        close(kolmogn_sf(n, x), row["sf"].as_f64().unwrap(), RTOL, ATOL, &format!("kstwo.sf({x}, {n})"));
    }
}

#[test]
fn smirnov_matches_scipy() {
    let f = load("ks.json");
    for row in f["smirnov_sf"].as_array().unwrap() {
        let (n, x) = (row["n"].as_u64().unwrap(), row["x"].as_f64().unwrap());
        close(smirnov_sf(n, x), row["sf"].as_f64().unwrap(), RTOL, ATOL, &format!("smirnov({n}, {x})"));
    }
}
