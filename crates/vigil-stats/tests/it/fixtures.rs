//! Loading fixtures and regenerating their samples bit for bit.

use serde_json::Value;

pub fn load(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
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
                    s += rng.uniform();
                }
                (s - 6.0) * b + a
            }
            "uniform" => rng.uniform() * b + a,
            "ties" => (rng.uniform() * b).floor() + a,
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
