//! The gateway's prediction log on each backend: a segment is stored once whatever how often it
//! is shipped, it and its index are append-only, they feed the version's drift window, labels join
//! by request id, and reads are audited.

use crate::conformance;
use serde_json::json;
use vigil_core::model::{ModelVersion, Stage};
use vigil_core::predlog::PredictionRecord;
use vigil_core::store::AuditQuery;

fn record(version_id: &str, request_id: &str, role: &str, rows: usize) -> PredictionRecord {
    serde_json::from_value(json!({
        "request_id": request_id, "client_id": format!("enc-{request_id}"), "role": role, "endpoint": "m", "version_id": version_id, "version": "1.0.0",
        "arm": if role == "live" { "production" } else { "shadow" }, "digest": "ab", "assignment": "keyed", "unit_hash": "ff00", "bucket": 12,
        "at": "2026-11-29T10:00:00Z", "latency_us": 90, "status": "ok", "rows": rows,
        "features": {"age": (0..rows).map(|i| 50 + i).collect::<Vec<_>>(), "sex": (0..rows).map(|i| if i % 2 == 0 { "F" } else { "M" }).collect::<Vec<_>>()},
        "scores": (0..rows).map(|i| if i % 2 == 0 { 0.8 } else { 0.2 }).collect::<Vec<_>>(), "outputs": {}
    }))
    .unwrap()
}

/// A team, version 1.0.0 of `m` in Production with a baseline of age and sex, and 1.1.0 to
/// shadow it.
fn production_and_shadow(env: &crate::support::Env) -> (ModelVersion, ModelVersion) {
    env.with_team();
    let v = env.register("ds", "m", "1.0.0");
    env.promote(&v, Stage::Production);
    let shadow = env.register("ds", "m", "1.1.0");
    let mut base = vigil_core::monitor::Batch::default();
    base.features.insert("age".into(), vigil_core::monitor::Column::numeric((0..200).map(|i| Some(40.0 + f64::from(i % 30)))));
    base.features.insert("sex".into(), vigil_core::monitor::Column::categorical((0..200).map(|i| Some(if i % 2 == 0 { "F" } else { "M" }))));
    env.registry.set_baseline(&env.login("ds"), &v.id, &base).unwrap();
    (v, shadow)
}

conformance!(prediction_segments_are_stored_once_append_only_and_feed_monitoring, |env| {
    let (v, shadow) = production_and_shadow(&env);
    let reg = &env.registry;
    let recs = vec![record(&v.id, "req_a", "live", 1), record(&v.id, "req_b", "live", 3), record(&shadow.id, "req_a", "shadow", 1)];
    let out = reg.record_predictions("seg_1", "gw_1", &recs).unwrap();
    assert_eq!((out.duplicate, out.records, out.monitored_rows), (false, 3, 5));
    // Shipped again after a crash between commit and cleanup: nothing is written twice.
    assert!(reg.record_predictions("seg_1", "gw_1", &recs).unwrap().duplicate);
    let audit = reg.audit_log(&AuditQuery { action: Some("prediction.log".into()), ..Default::default() }).unwrap();
    assert_eq!(audit.len(), 2, "one event per version per segment");
    assert!(audit.iter().all(|e| e.actor == vigil_core::predlog::GATEWAY_ACTOR));

    // The same request id on another segment (a replayed id) is refused, not merged.
    assert!(reg.record_predictions("seg_2", "gw_1", &[record(&v.id, "req_a", "live", 1)]).is_err());

    // The rows are the version's production window (4 on the live version), kinds as logged.
    let check = reg.detect_drift(&env.login("ds"), &v.id, vigil_core::monitor::Window::LastRows(1000)).unwrap();
    assert_eq!(check.window_rows, 4);
    // A version whose baseline disagrees on a column's kind keeps its records, unmonitored.
    let mut other = vigil_core::monitor::Batch::default();
    other.features.insert("sex".into(), vigil_core::monitor::Column::numeric((0..50).map(|i| Some(f64::from(i % 2)))));
    reg.set_baseline(&env.login("ds"), &shadow.id, &other).unwrap();
    let out = reg.record_predictions("seg_3", "gw_1", &[record(&shadow.id, "req_c", "shadow", 2)]).unwrap();
    assert_eq!((out.records, out.monitored_rows, out.not_monitored.len()), (1, 0, 1));

    // Labels by request id, by the caller's id with a row, or unknown.
    let labels = vec![("req_a".to_owned(), "1".to_owned()), ("enc-req_b#1".to_owned(), "0".to_owned()), ("req_b".to_owned(), "1".to_owned()), ("req_zzz".to_owned(), "1".to_owned())];
    assert_eq!(reg.add_prediction_labels(&env.login("ds"), &labels).unwrap(), (2, 2), "a multi-row request needs its row");
    let e = reg.add_prediction_labels(&env.login("clin"), &labels).unwrap_err();
    assert_eq!(e.code(), vigil_core::ErrorCode::RoleNotPermitted);

    // Reads pair the live answer with its shadow, and are audited.
    let got = reg.predictions(&env.login("comp"), "req_a").unwrap();
    assert_eq!(got.iter().map(|p| (p.record.role.as_str(), p.record.version.as_str())).collect::<Vec<_>>(), vec![("live", "1.0.0"), ("shadow", "1.0.0")]);
    assert_eq!(got[1].record.version_id, shadow.id);
    assert_eq!(reg.audit_log(&AuditQuery { action: Some("prediction.read".into()), ..Default::default() }).unwrap().len(), 1);
    assert!(reg.predictions(&env.login("admin"), "req_a").is_err(), "administrators do not read patient inputs");

    let mut raw = env.raw();
    assert!(raw.refused("UPDATE prediction_index SET role = 'shadow'"));
    assert!(raw.refused("DELETE FROM prediction_index"));
    assert!(raw.refused("UPDATE prediction_segments SET body = NULL"));
    assert!(raw.refused("DELETE FROM prediction_segments"));
    assert!(env.verify().ok());
});

conformance!(gateway_segments_are_found_by_their_request_id_range_without_a_row_per_record, |env| {
    use vigil_core::ids::IdGenerator;
    let (v, shadow) = production_and_shadow(&env);
    let reg = &env.registry;
    // Two segments as a gateway writes them: time-ordered request ids, live answers paired
    // with shadow runs, one caller's id; the second segment's range overlaps the first's.
    let ids: Vec<String> = (0..6).map(|_| vigil_core::ids::UuidV7Ids.new_id("req")).collect();
    let gateway = |id: &str, version: &str, role: &str, rows: usize, client: bool| {
        let mut r = record(version, id, role, rows);
        if !client {
            r.client_id = None;
        }
        r
    };
    let segment = |recs: &[PredictionRecord]| {
        let mut seg = vigil_core::predwire::new_segment();
        for r in recs {
            vigil_core::predwire::encode_record(r, &mut seg);
        }
        seg
    };
    let first = segment(&[
        gateway(&ids[0], &v.id, "live", 1, false),
        gateway(&ids[0], &shadow.id, "shadow", 1, false),
        gateway(&ids[2], &v.id, "live", 2, true),
        gateway(&ids[4], &v.id, "live", 1, false),
    ]);
    let second = segment(&[gateway(&ids[1], &v.id, "live", 1, false), gateway(&ids[5], &v.id, "live", 1, false)]);
    assert_eq!(reg.record_prediction_segment("seg_g1", "gw_1", &first).unwrap().records, 4);
    assert_eq!(reg.record_prediction_segment("seg_g2", "gw_1", &second).unwrap().monitored_rows, 2);
    assert!(reg.record_prediction_segment("seg_g1", "gw_1", &first).unwrap().duplicate);

    let mut raw = env.raw();
    assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_index"), "1", "only the record with a caller's id has an index row");
    assert_eq!(raw.scalar("SELECT first_request_id FROM prediction_segments WHERE id = 'seg_g1'"), ids[0]);
    assert_eq!(raw.scalar("SELECT last_request_id FROM prediction_segments WHERE id = 'seg_g2'"), ids[5]);

    // Reads find exactly the records of the id asked for, in either segment.
    let comp = env.login("comp");
    let got = reg.predictions(&comp, &ids[0]).unwrap();
    assert_eq!(got.iter().map(|p| (p.segment_id.as_str(), p.record.role.as_str(), p.record.version_id.as_str())).collect::<Vec<_>>(), vec![("seg_g1", "live", v.id.as_str()), ("seg_g1", "shadow", shadow.id.as_str())]);
    let got = reg.predictions(&comp, &ids[1]).unwrap();
    assert_eq!((got.len(), got[0].segment_id.as_str()), (1, "seg_g2"));
    assert_eq!(reg.predictions(&comp, &format!("enc-{}", ids[2])).unwrap()[0].record.rows, 2);
    assert!(reg.predictions(&comp, &ids[3]).unwrap().is_empty(), "an id inside both ranges that neither segment holds");
    assert!(reg.predictions(&comp, &vigil_core::ids::UuidV7Ids.new_id("req")).unwrap().is_empty());

    // Labels join through the ranges too (both versions of a paired request), and the drift
    // window is read from the stored segments.
    let labels: Vec<(String, String)> = vec![(ids[0].clone(), "1".into()), (format!("{}#1", ids[2]), "0".into()), (ids[5].clone(), "1".into()), (ids[3].clone(), "1".into())];
    assert_eq!(reg.add_prediction_labels(&env.login("ds"), &labels).unwrap(), (3, 1));
    let check = reg.detect_drift(&env.login("ds"), &v.id, vigil_core::monitor::Window::LastRows(1000)).unwrap();
    assert_eq!(check.window_rows, 6);
    // The three labelled rows of the live version, joined by prediction id to the scores read
    // back from the segments (scores 0.8, 0.2 and 0.8 against labels 1, 0 and 1).
    let perf = check.performance.expect("labelled rows");
    assert_eq!((perf.labelled, perf.accuracy), (3, 1.0));
    // The window's values are the logged rows' (rebuilt from the segments): sex is F in five
    // of the live version's six rows (every even row of a request) and M in one.
    let (_, sex) = check.distributions.iter().find(|(k, _)| k == "sex").expect("sex plotted");
    let vigil_core::monitor::Distribution::Categorical { categories, current, .. } = sex else { panic!("{sex:?}") };
    let share = |c: &str| categories.iter().position(|x| x == c).map(|i| current[i]);
    assert_eq!((share("F"), share("M")), (Some(5.0 / 6.0), Some(1.0 / 6.0)), "{sex:?}");
    assert!(env.verify().ok());
});

conformance!(sealed_spool_files_are_kept_as_bodies_on_the_embedded_store_and_read_back_checked, |env| {
    use vigil_core::ids::IdGenerator;
    use vigil_core::registry::Registry;
    use vigil_core::store::Store;
    let (v, _) = production_and_shadow(&env);
    let reg = &env.registry;
    let comp = env.login("comp");
    let spool = tempfile::tempdir().unwrap();
    // A sealed segment as a gateway writes it: under load, its rounds compressed as LZ4
    // blocks (`blocks`), large enough to be kept as a file; in light traffic, plain.
    let sealed = |name: &str, n: usize, version: &str, blocks: bool| {
        let ids: Vec<String> = (0..n).map(|_| vigil_core::ids::UuidV7Ids.new_id("req")).collect();
        let mut seg = vigil_core::predwire::new_segment();
        let mut round = Vec::new();
        let mut lz4 = vigil_core::predwire::BlockWriter::fast();
        for (i, id) in ids.iter().enumerate() {
            let mut r = record(version, id, "live", 2);
            r.client_id = None;
            vigil_core::predwire::encode_record(&r, if blocks { &mut round } else { &mut seg });
            if blocks && (round.len() >= 32 << 10 || i + 1 == n) {
                lz4.append(&round, &mut seg).unwrap();
                round.clear();
            }
        }
        let path = spool.path().join(format!("ready-{name}.vpl"));
        std::fs::write(&path, &seg).unwrap();
        (ids, seg, path)
    };
    let n = 6000;
    let (ids, seg, path) = sealed("seg_f1", n, &v.id, true);
    assert!(seg.len() >= vigil_core::predlog::KEEP_FILE_BYTES, "{}", seg.len());
    let files = env.store.keeps_segment_files();
    assert_eq!(files, env.data_dir().is_some(), "the embedded store keeps files, PostgreSQL does not");
    let out = reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f1", "gw_1", &seg, &path).unwrap()).unwrap();
    assert_eq!((out.duplicate, out.records, out.monitored_rows), (false, n, 2 * n));
    // The spool lets its name go once the segment is stored; the body stays (linked, not
    // written again).
    if env.data_dir().is_some() {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&path).unwrap().nlink(), 2, "linked, not copied");
    }
    std::fs::remove_file(&path).unwrap();
    let mut raw = env.raw();
    let kept = env.data_dir().map(|d| d.join(vigil_store::SEGMENT_DIR).join("2026-01-01").join("seg_f1.vpl"));
    if let Some(kept) = &kept {
        assert_eq!(raw.scalar("SELECT body_file FROM prediction_segments WHERE id = 'seg_f1'"), "2026-01-01/seg_f1.vpl");
        assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_segments WHERE id = 'seg_f1' AND body IS NULL"), "1", "not copied into the database");
        assert_eq!(std::fs::read(kept).unwrap(), seg, "kept as it was sealed");
    } else {
        assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_segments WHERE id = 'seg_f1' AND body IS NOT NULL AND body_file IS NULL"), "1");
    }
    // Read back: by request id, and as the drift window.
    let got = reg.predictions(&comp, &ids[7]).unwrap();
    assert_eq!((got.len(), got[0].segment_id.as_str(), got[0].record.rows), (1, "seg_f1", 2));
    assert_eq!(reg.detect_drift(&env.login("ds"), &v.id, vigil_core::monitor::Window::LastRows(50_000)).unwrap().window_rows, 2 * n);
    // Shipped again (a crash between the commit and the spool's cleanup): nothing changes.
    let (_, _, again) = sealed("seg_f1", n, &v.id, true);
    assert!(reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f1", "gw_1", &seg, &again).unwrap()).unwrap().duplicate);
    if let Some(kept) = &kept {
        assert_eq!(std::fs::read(kept).unwrap(), seg);
    }

    // A segment the registry refuses in its transaction (an unknown version) leaves no row and
    // no file behind.
    let (_, bad, bad_path) = sealed("seg_f2", n, "mv_unknown", true);
    let e = reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f2", "gw_1", &bad, &bad_path).unwrap()).unwrap_err();
    assert_eq!(e.code(), vigil_core::ErrorCode::VersionNotFound, "refused after its row and file were made: {e:?}");
    assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_segments WHERE id = 'seg_f2'"), "0");
    if let Some(d) = env.data_dir() {
        assert!(!d.join(vigil_store::SEGMENT_DIR).join("2026-01-01").join("seg_f2.vpl").exists());
        assert!(bad_path.exists(), "the spool's file is the spool's to keep or set aside");
    }

    // A sealed file on another file system (tmpfs here) is copied in instead of linked.
    if let (Some(d), true) = (env.data_dir(), std::path::Path::new("/dev/shm").is_dir()) {
        use std::os::unix::fs::MetadataExt;
        let other = tempfile::tempdir_in("/dev/shm").unwrap();
        let (other_ids, other_seg, _) = sealed("seg_f4", n, &v.id, true);
        let other_path = other.path().join("ready-seg_f4.vpl");
        std::fs::write(&other_path, &other_seg).unwrap();
        reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f4", "gw_1", &other_seg, &other_path).unwrap()).unwrap();
        let copied = d.join(vigil_store::SEGMENT_DIR).join("2026-01-01").join("seg_f4.vpl");
        assert_eq!((std::fs::read(&copied).unwrap(), std::fs::metadata(&copied).unwrap().nlink()), (other_seg, 1));
        assert_eq!(reg.predictions(&comp, &other_ids[3]).unwrap().len(), 1);
    }

    // A small segment goes into the database, compressed, on either store.
    let (small_ids, small, small_path) = sealed("seg_f3", 3, &v.id, false);
    assert!(small.len() < vigil_core::predlog::KEEP_FILE_BYTES);
    reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f3", "gw_1", &small, &small_path).unwrap()).unwrap();
    assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_segments WHERE id = 'seg_f3' AND body IS NOT NULL AND body_file IS NULL"), "1");
    assert_eq!(reg.predictions(&comp, &small_ids[1]).unwrap().len(), 1);

    // Light traffic's segment (small rounds the writer left plain, which compress) goes into
    // the database, compressed, however large; noise-like plain records are kept as the file.
    if env.data_dir().is_some() {
        let (_, light, light_path) = sealed("seg_f5", 600, &v.id, false);
        assert!(light.len() >= vigil_core::predlog::KEEP_FILE_BYTES, "{}", light.len());
        reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f5", "gw_1", &light, &light_path).unwrap()).unwrap();
        assert_eq!(raw.scalar("SELECT COUNT(*) FROM prediction_segments WHERE id = 'seg_f5' AND body IS NOT NULL AND body_file IS NULL"), "1");
    }

    // A kept file that changed, or went missing, is reported, never read as if it were whole.
    if let Some(kept) = &kept {
        let mut damaged = seg.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        std::fs::write(kept, &damaged).unwrap();
        let e = reg.predictions(&comp, &ids[7]).unwrap_err();
        assert_eq!(e.code(), vigil_core::ErrorCode::IntegrityViolation, "{e:?}");
        assert!(e.message().contains("differs"), "{e:?}");
        std::fs::remove_file(kept).unwrap();
        let e = reg.predictions(&comp, &ids[7]).unwrap_err();
        assert_eq!(e.code(), vigil_core::ErrorCode::IntegrityViolation);
        assert!(e.message().contains("missing"), "{e:?}");
        // Lost after a commit that was reported as failed: shipped again, the same file is put
        // back (another file of that id is not).
        let (_, _, other) = sealed("seg_f1", n, &v.id, true);
        let other_bytes = std::fs::read(&other).unwrap();
        assert!(reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f1", "gw_1", &other_bytes, &other).unwrap()).unwrap().duplicate);
        assert!(!kept.exists(), "a different file is never taken for the stored one");
        std::fs::write(&path, &seg).unwrap();
        assert!(reg.store_prediction_segment(&Registry::prepare_spooled_segment("seg_f1", "gw_1", &seg, &path).unwrap()).unwrap().duplicate);
        assert_eq!(std::fs::read(kept).unwrap(), seg);
        assert_eq!(reg.predictions(&comp, &ids[7]).unwrap().len(), 1);
        // The row cannot be pointed elsewhere.
        assert!(raw.refused("UPDATE prediction_segments SET body_file = '2026-01-01/seg_f3.vpl' WHERE id = 'seg_f1'"));
    }
    assert!(env.verify().ok());
});
