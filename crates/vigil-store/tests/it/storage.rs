//! Opening databases: migrations, damaged or foreign files, newer schemas.

use crate::support::*;
use vigil_core::ErrorCode;

fn open_err(dir: &std::path::Path) -> ErrorCode {
    match vigil_store::open_sqlite(dir) {
        Ok(_) => panic!("opening should fail"),
        Err(e) => e.code(),
    }
}

#[test]
fn garbage_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(vigil_store::DB_FILE), vec![0x5a; 8192]).unwrap();
    assert_eq!(open_err(dir.path()), ErrorCode::DatabaseCorrupt);
}

#[test]
fn truncated_file_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let env_store = vigil_store::open_sqlite(dir.path()).unwrap();
        drop(env_store);
    }
    let path = dir.path().join(vigil_store::DB_FILE);
    let len = std::fs::metadata(&path).unwrap().len();
    assert!(len > 8192, "schema spans several pages");
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len / 3).unwrap();
    drop(f);
    // Either opening or the first read must say "corrupt", never panic or succeed silently.
    match vigil_store::open_sqlite(dir.path()) {
        Err(e) => assert_eq!(e.code(), ErrorCode::DatabaseCorrupt, "{e}"),
        Ok(store) => {
            let reg = vigil_core::registry::Registry::new(
                store,
                std::sync::Arc::new(vigil_core::ids::SystemClock),
                std::sync::Arc::new(vigil_core::ids::UuidV7Ids),
                std::sync::Arc::new(vigil_core::approval::ServerKey::from_seed([1; 32])),
            );
            let e = reg.verify_audit().and_then(|_| reg.list_models().map(|_| ())).unwrap_err();
            assert_eq!(e.code(), ErrorCode::DatabaseCorrupt, "{e}");
        }
    }
}

#[test]
fn a_foreign_sqlite_database_is_not_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let c = rusqlite::Connection::open(dir.path().join(vigil_store::DB_FILE)).unwrap();
    c.execute_batch("CREATE TABLE patients (id INTEGER PRIMARY KEY, name TEXT)").unwrap();
    drop(c);
    assert_eq!(open_err(dir.path()), ErrorCode::DatabaseCorrupt);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(vigil_store::open_sqlite(dir.path()).unwrap());
    let c = rusqlite::Connection::open(dir.path().join(vigil_store::DB_FILE)).unwrap();
    c.execute_batch("INSERT INTO vigil_schema (version, description, applied_at) VALUES (999, 'future', 'x')").unwrap();
    drop(c);
    assert_eq!(open_err(dir.path()), ErrorCode::SchemaTooNew);
}

#[test]
fn reopening_applies_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        drop(vigil_store::open_sqlite(dir.path()).unwrap());
    }
    let c = rusqlite::Connection::open(dir.path().join(vigil_store::DB_FILE)).unwrap();
    let n: i64 = c.query_row("SELECT COUNT(*) FROM vigil_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(n as usize, vigil_store::schema::MIGRATION_COUNT);
}

#[test]
fn postgres_migrations_are_idempotent_across_concurrent_opens() {
    let Some(url) = pg_url() else { return eprintln!("skipped: VIGIL_TEST_DATABASE_URL not set") };
    let schema = fresh_schema();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (u, sc) = (url.clone(), schema.clone());
            s.spawn(move || vigil_store::open_postgres(&u, Some(&sc)).map(|_| ()).unwrap());
        }
    });
}
