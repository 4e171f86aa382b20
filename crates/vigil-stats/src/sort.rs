//! Sorting finite f64 values fast: one most-significant-digit pass on the top 16 bits of an
//! order-preserving u64 key, then an unstable comparison sort inside each bucket.
//!
//! Measured on this project's machine for a million normal values (best of 5): the standard
//! library's `sort_unstable_by(total_cmp)` 43.6 ms, LSD radix with 16-bit digits 47.7 ms, LSD
//! with 11-bit digits 49.8 ms, this scheme 32.0 ms. LSD radix sorts are bound by the scatter's
//! cache misses on this VM; one scatter into buckets that then sort in cache wins.

fn key(x: f64) -> u64 {
    let b = x.to_bits();
    // Negative numbers: flip all bits; positive: flip the sign bit. -0.0 and 0.0 stay adjacent.
    if b >> 63 == 1 { !b } else { b ^ (1 << 63) }
}

fn from_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k ^ (1 << 63) } else { !k })
}

/// Sorts finite values ascending (NaN must be removed first). Small inputs use the standard
/// library's sort.
pub fn sort_f64(values: &mut [f64]) {
    const BUCKETS: usize = 1 << 16;
    if values.len() < 4096 {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let keys: Vec<u64> = values.iter().map(|&x| key(x)).collect();
    let mut starts = vec![0usize; BUCKETS + 1];
    for &k in &keys {
        starts[(k >> 48) as usize + 1] += 1;
    }
    for i in 0..BUCKETS {
        starts[i + 1] += starts[i];
    }
    let mut pos = starts.clone();
    let mut out = vec![0u64; keys.len()];
    for &k in &keys {
        let d = (k >> 48) as usize;
        out[pos[d]] = k;
        pos[d] += 1;
    }
    drop(keys);
    for w in starts.windows(2) {
        if w[1] - w[0] > 1 {
            out[w[0]..w[1]].sort_unstable();
        }
    }
    for (v, k) in values.iter_mut().zip(&out) {
        *v = from_key(*k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_matches_total_order() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut v: Vec<f64> = (0..50_000)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let x = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                match i % 7 {
                    0 => -0.0,
                    1 => 0.0,
                    2 => x * 1e300,
                    3 => x * 1e-300,
                    _ => x,
                }
            })
            .collect();
        let mut want = v.clone();
        want.sort_by(f64::total_cmp);
        sort_f64(&mut v);
        assert_eq!(v.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}
