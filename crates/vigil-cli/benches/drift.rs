//! Drift check on the README workload from Parquet files (generate them first with
//! `python3 bench/drift_peers.py 1000000`, which also times scipy + numpy on the same files).
//!
//!     cargo bench -p vigil-cli --bench drift [-- ROWS]
//!
//! Reports: reading both files; the full one-shot check (profile reference and current, every
//! statistic on every column) on one thread and on all cores; fitting a stored baseline; a check
//! against the stored baseline (only the current window's work); peak resident memory.

use std::path::PathBuf;

// The same allocator as the `vigil` binary.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::sync::Arc;
use std::time::Instant;
use vigil_core::approval::ServerKey;
use vigil_core::auth::{Password, Role};
use vigil_core::ids::{ModelName, Sha256Digest, SystemClock, UserId, UuidV7Ids};
use vigil_core::model::{ModelType, VersionContent};
use vigil_core::monitor::{Batch, Column};
use vigil_core::registry::{NewModelVersion, Registry};
use vigil_core::semver::Version;
use vigil_stats::drift::Binning;
use vigil_stats::profile::{FeatureProfile, check_categorical, check_numeric};

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// CPU time this thread has run, from the scheduler's own accounting (ns precision). On a
/// shared VM the wall clock also counts time the host gave to others; this does not.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ns| ns / 1e9)
        .unwrap_or(f64::NAN)
}

fn check_one(name: &str, r: &Column, c: &Column) -> usize {
    let profile = |col: &Column| match col {
        Column::Numeric(v) => FeatureProfile::numeric(v.iter().map(|x| Some(*x))),
        Column::Categorical { dictionary, codes } => {
            let mut n = vec![0u64; dictionary.len()];
            for &k in codes {
                if let Some(x) = n.get_mut(k as usize) {
                    *x += 1;
                }
            }
            FeatureProfile::Categorical { counts: dictionary.iter().cloned().zip(n).filter(|(_, n)| *n > 0).collect(), missing: 0 }
        }
    };
    match (profile(r), profile(c)) {
        (FeatureProfile::Numeric { sorted: a, .. }, FeatureProfile::Numeric { sorted: b, .. }) => {
            usize::from(check_numeric(&a, &b, Binning::default()).is_ok())
        }
        (FeatureProfile::Categorical { counts: a, .. }, FeatureProfile::Categorical { counts: b, .. }) => usize::from(check_categorical(&a, &b).is_ok()),
        _ => panic!("{name}: kinds differ"),
    }
}

fn main() {
    let rows: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = PathBuf::from(std::env::var("VIGIL_DRIFT_BENCH_DIR").unwrap_or_else(|_| "/tmp/vigil-drift-bench".into()));
    let (rp, cp) = (dir.join(format!("reference_{rows}.parquet")), dir.join(format!("current_{rows}.parquet")));
    if !rp.exists() {
        eprintln!("missing {}; run: python3 bench/drift_peers.py {rows}", rp.display());
        std::process::exit(2);
    }
    let (t, cpu) = (Instant::now(), thread_cpu_s());
    let read = |p: &PathBuf| vigil_data::to_batch(vigil_data::read_table(p).expect("read"), &Default::default(), p).expect("batch");
    let (reference, current): (Batch, Batch) = (read(&rp), read(&cp));
    let (read_s, read_cpu) = (t.elapsed().as_secs_f64(), thread_cpu_s() - cpu);
    let raw_mb: f64 = [&reference, &current]
        .iter()
        .flat_map(|b| b.features.values())
        .map(|c| match c {
            Column::Numeric(v) => v.len() * 8,
            Column::Categorical { codes, .. } => codes.len() * 4,
        })
        .sum::<usize>() as f64
        / 1e6;
    eprintln!("  (peak after reading: {:.0} MB)", peak_rss_mb());
    println!(
        "drift        read both Parquet files ({} columns x {rows} rows each): {read_s:.2} s (CPU {read_cpu:.2} s); column data {raw_mb:.0} MB",
        reference.features.len()
    );

    let names: Vec<&String> = reference.features.keys().collect();
    // One thread, three runs: the first also pays for growing the heap (page faults on fresh
    // memory, a large share on this VM); the later ones show the steady cost of a check.
    let mut runs = Vec::new();
    let mut ok = 0;
    for _ in 0..3 {
        let (t, cpu) = (Instant::now(), thread_cpu_s());
        ok = names.iter().map(|n| check_one(n, &reference.features[*n], &current.features[*n])).sum();
        runs.push((t.elapsed().as_secs_f64(), thread_cpu_s() - cpu));
    }
    println!(
        "drift        one-shot check, 1 thread: {:.2} s first run, {:.2} s and {:.2} s after; CPU {:.2} / {:.2} / {:.2} s ({ok} columns)",
        runs[0].0, runs[1].0, runs[2].0, runs[0].1, runs[1].1, runs[2].1
    );
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let t = Instant::now();
    let chunk = names.len().div_ceil(threads);
    let ok: usize = std::thread::scope(|s| {
        names
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(|n| check_one(n, &reference.features[*n], &current.features[*n])).sum::<usize>()))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .sum()
    });
    eprintln!("  (peak after one-shot checks: {:.0} MB)", peak_rss_mb());
    println!("drift        one-shot check, {threads} threads: {:.2} s ({ok} columns)", t.elapsed().as_secs_f64());

    // Through the registry on an embedded store: fit once, then check the window.
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = vigil_store::open_sqlite(tmp.path()).expect("store");
    let reg = Registry::new(store, Arc::new(SystemClock), Arc::new(UuidV7Ids), Arc::new(ServerKey::from_seed([3; 32])));
    let pw = Password::new("benchmark-password");
    reg.init_admin(&UserId::parse("admin").expect("id"), "Admin", &pw).expect("init");
    let admin = reg.authenticate(&UserId::parse("admin").expect("id"), &pw).expect("auth");
    reg.add_user(&admin, &UserId::parse("ds").expect("id"), "DS", Role::DataScientist, &pw).expect("user");
    let ds = reg.authenticate(&UserId::parse("ds").expect("id"), &pw).expect("auth");
    let v = reg
        .register_model(
            &ds,
            NewModelVersion {
                name: ModelName::parse("bench").expect("name"),
                version: Version::parse("1.0.0").expect("v"),
                model_type: ModelType::Classification,
                content: VersionContent {
                    artifact_uri: "s3://b".into(),
                    artifact_sha256: Some(Sha256Digest::of(b"b")),
                    metrics: Default::default(),
                    lineage: Default::default(),
                    card: Default::default(),
                },
                owner: None,
                description: None,
                tags: Default::default(),
            },
        )
        .expect("register");
    let t = Instant::now();
    reg.set_baseline(&ds, &v.id, &reference).expect("baseline");
    println!("drift        fit and store the baseline (sort 25 x {rows}, write profiles): {:.2} s", t.elapsed().as_secs_f64());
    eprintln!("  (peak after fitting the baseline: {:.0} MB)", peak_rss_mb());
    drop(reference);
    let t = Instant::now();
    let check = reg.detect_drift_on(&ds, &v.id, &current).expect("check");
    println!(
        "drift        check against the stored baseline ({threads} threads, incl. loading profiles and storing the report): {:.2} s, status {}, {} drifted",
        t.elapsed().as_secs_f64(),
        check.report.status.as_str(),
        check.report.features.iter().filter(|f| f.verdict == vigil_core::drift::Verdict::Drift).count()
    );
    println!("drift        peak resident memory: {:.0} MB ({:.1}x the column data)", peak_rss_mb(), peak_rss_mb() / raw_mb);
}
