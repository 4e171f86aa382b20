//! Loading fixtures and regenerating their samples bit for bit.

use serde_json::Value;

pub fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

use vigil_stats::validation::SplitMix64;

fn uniform(r: &mut SplitMix64) -> f64 {
    (r.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// Must match `sample()` in make_fixtures.py.
pub fn sample(spec: &Value) -> Vec<f64> {
    let kind = spec["kind"].as_str().unwrap();
    let n = spec["n"].as_u64().unwrap() as usize;
    let a = spec["a"].as_f64().unwrap_or(0.0);
    let b = spec["b"].as_f64().unwrap_or(1.0);
    let mut rng = SplitMix64(spec["seed"].as_u64().unwrap());
    (0..n)
        .map(|_| match kind {
            "normal" => {
                let mut s = 0.0;
                for _ in 0..12 {
                    s += uniform(&mut rng);
                }
                (s - 6.0) * b + a
            }
            "uniform" => uniform(&mut rng) * b + a,
            "ties" => (uniform(&mut rng) * b).floor() + a,
            other => panic!("unknown sample kind {other}"),
        })
        .collect()
}

/// |got − want| ≤ rtol·|want| + atol.
#[track_caller]
pub fn close(got: f64, want: f64, rtol: f64, atol: f64, what: &str) {
    let ok = (got - want).abs() <= rtol * want.abs() + atol || (got.is_nan() && want.is_nan());
    assert!(ok, "{what}: got {got:e}, scipy {want:e}, rel err {:e}", ((got - want) / want).abs());
}
