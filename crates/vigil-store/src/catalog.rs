//! SQL for the registry catalogue (version numbers, metadata, tags, aliases), logged models,
//! run outputs and dataset inputs, shared by both backends.

use crate::sql::{Conn, DbError, Param, Row};
use crate::tx::db;
use std::collections::HashMap;
use vigil_core::catalog::{DatasetInput, LoggedModel, LoggedModelStatus, VersionMeta};
use vigil_core::{Error, ErrorCode, Result};

fn list(n: usize, from: usize) -> String {
    (from..from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

pub(crate) fn max_version_number(c: &mut dyn Conn, model_id: &str) -> Result<i64> {
    Ok(c.query("SELECT COALESCE(MAX(number), 0) FROM model_versions WHERE model_id = $1", &[model_id.into()]).map_err(db)?.first().map_or(0, |r| r.int(0)))
}

pub(crate) fn insert_version_meta(c: &mut dyn Conn, id: &str, m: &VersionMeta) -> Result<()> {
    c.exec(
        "INSERT INTO model_version_meta (model_version_id, description, source, run_id, logged_model_id, updated_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        &[id.into(), m.description.as_str().into(), m.source.as_str().into(), m.run_id.clone().into(), m.logged_model_id.clone().into(), m.updated_ms.into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn version_meta(c: &mut dyn Conn, ids: &[String]) -> Result<HashMap<String, VersionMeta>> {
    let mut out: HashMap<String, VersionMeta> = HashMap::new();
    for chunk in ids.chunks(500) {
        let l = list(chunk.len(), 1);
        let p: Vec<Param> = chunk.iter().map(|s| s.as_str().into()).collect();
        for r in c
            .query(&format!("SELECT model_version_id, description, source, run_id, logged_model_id, updated_ms FROM model_version_meta WHERE model_version_id IN ({l})"), &p)
            .map_err(db)?
        {
            out.insert(
                r.text(0),
                VersionMeta { description: r.text(1), source: r.text(2), run_id: r.opt_text(3), logged_model_id: r.opt_text(4), updated_ms: r.int(5), tags: Vec::new() },
            );
        }
        for r in c.query(&format!("SELECT model_version_id, key, value FROM model_version_tags WHERE model_version_id IN ({l}) ORDER BY key"), &p).map_err(db)? {
            if let Some(m) = out.get_mut(&r.text(0)) {
                m.tags.push((r.text(1), r.text(2)));
            }
        }
    }
    Ok(out)
}

pub(crate) fn touch_version_meta(c: &mut dyn Conn, id: &str, description: Option<&str>, at_ms: i64) -> Result<()> {
    match description {
        Some(d) => c.exec("UPDATE model_version_meta SET description = $2, updated_ms = $3 WHERE model_version_id = $1", &[id.into(), d.into(), at_ms.into()]),
        None => c.exec("UPDATE model_version_meta SET updated_ms = $2 WHERE model_version_id = $1", &[id.into(), at_ms.into()]),
    }
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn set_version_tag(c: &mut dyn Conn, id: &str, key: &str, value: &str) -> Result<()> {
    c.exec(
        "INSERT INTO model_version_tags (model_version_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_version_id, key) DO UPDATE SET value = excluded.value",
        &[id.into(), key.into(), value.into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn delete_version_tag(c: &mut dyn Conn, id: &str, key: &str) -> Result<bool> {
    Ok(c.exec("DELETE FROM model_version_tags WHERE model_version_id = $1 AND key = $2", &[id.into(), key.into()]).map_err(db)? > 0)
}

pub(crate) fn model_aliases(c: &mut dyn Conn, model_id: &str) -> Result<Vec<(String, String)>> {
    Ok(c.query("SELECT alias, model_version_id FROM model_aliases WHERE model_id = $1 ORDER BY alias", &[model_id.into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect())
}

pub(crate) fn set_alias(c: &mut dyn Conn, model_id: &str, alias: &str, version_id: &str, by: &str, at_ms: i64) -> Result<()> {
    c.exec(
        "INSERT INTO model_aliases (model_id, alias, model_version_id, set_by, set_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (model_id, alias) DO UPDATE SET model_version_id = excluded.model_version_id, set_by = excluded.set_by, set_ms = excluded.set_ms",
        &[model_id.into(), alias.into(), version_id.into(), by.into(), at_ms.into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn delete_alias(c: &mut dyn Conn, model_id: &str, alias: &str) -> Result<bool> {
    Ok(c.exec("DELETE FROM model_aliases WHERE model_id = $1 AND alias = $2", &[model_id.into(), alias.into()]).map_err(db)? > 0)
}

// ----- validation reports ------------------------------------------------------------------

pub(crate) fn insert_validation_report(c: &mut dyn Conn, r: &vigil_core::validate::ValidationRecord) -> Result<()> {
    c.exec(
        "INSERT INTO validation_reports (id, model_version_id, content_hash, passed, report, created_by, created_at, seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, (SELECT COALESCE(MAX(seq), 0) + 1 FROM validation_reports WHERE model_version_id = $2))",
        &[r.id.as_str().into(), r.model_version_id.as_str().into(), r.content_hash.as_str().into(), i64::from(r.passed).into(), r.report.as_str().into(), r.created_by.as_str().into(), r.created_at.to_rfc3339().into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn validation_reports(c: &mut dyn Conn, version_id: &str) -> Result<Vec<vigil_core::validate::ValidationRecord>> {
    c.query(
        "SELECT id, model_version_id, content_hash, passed, report, created_by, created_at FROM validation_reports WHERE model_version_id = $1 ORDER BY seq DESC",
        &[version_id.into()],
    )
    .map_err(db)?
    .iter()
    .map(|r| {
        Ok(vigil_core::validate::ValidationRecord {
            id: r.text(0),
            model_version_id: r.text(1),
            content_hash: r.text(2),
            passed: r.int(3) != 0,
            report: r.text(4),
            created_by: r.text(5),
            created_at: crate::tx::ts(&r.text(6))?,
        })
    })
    .collect()
}

// ----- logged models -----------------------------------------------------------------------

const LM_COLS: &str = "id, experiment_id, name, artifact_uri, status, source_run_id, model_type, created_by, creation_ms, updated_ms";

fn lm_from(r: &Row) -> Result<LoggedModel> {
    Ok(LoggedModel {
        id: r.text(0),
        experiment_id: r.int(1),
        name: r.text(2),
        artifact_uri: r.text(3),
        status: LoggedModelStatus::parse(&r.text(4)).map_err(|_| crate::tx::corrupt("logged model status"))?,
        source_run_id: r.opt_text(5),
        model_type: r.opt_text(6),
        created_by: r.text(7),
        creation_ms: r.int(8),
        updated_ms: r.int(9),
        tags: Vec::new(),
        params: Vec::new(),
    })
}

fn with_children(c: &mut dyn Conn, mut models: Vec<LoggedModel>) -> Result<Vec<LoggedModel>> {
    for m in &mut models {
        m.tags = c.query("SELECT key, value FROM logged_model_tags WHERE model_id = $1 ORDER BY key", &[m.id.as_str().into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect();
        m.params = c.query("SELECT key, value FROM logged_model_params WHERE model_id = $1 ORDER BY key", &[m.id.as_str().into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect();
    }
    Ok(models)
}

pub(crate) fn insert_logged_model(c: &mut dyn Conn, m: &LoggedModel) -> Result<()> {
    c.exec(
        &format!("INSERT INTO logged_models ({LM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
        &[
            m.id.as_str().into(),
            m.experiment_id.into(),
            m.name.as_str().into(),
            m.artifact_uri.as_str().into(),
            m.status.as_str().into(),
            m.source_run_id.clone().into(),
            m.model_type.clone().into(),
            m.created_by.as_str().into(),
            m.creation_ms.into(),
            m.updated_ms.into(),
        ],
    )
    .map_err(|e| match e {
        DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "a logged model with that id exists; retry"),
        other => db(other),
    })?;
    for (k, v) in &m.tags {
        c.exec("INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3)", &[m.id.as_str().into(), k.as_str().into(), v.as_str().into()]).map_err(db)?;
    }
    for (k, v) in &m.params {
        c.exec("INSERT INTO logged_model_params (model_id, key, value) VALUES ($1, $2, $3)", &[m.id.as_str().into(), k.as_str().into(), v.as_str().into()]).map_err(db)?;
    }
    Ok(())
}

pub(crate) fn get_logged_model(c: &mut dyn Conn, id: &str) -> Result<Option<LoggedModel>> {
    let found = c.query(&format!("SELECT {LM_COLS} FROM logged_models WHERE id = $1"), &[id.into()]).map_err(db)?.iter().map(lm_from).collect::<Result<Vec<_>>>()?;
    Ok(with_children(c, found)?.pop())
}

pub(crate) fn update_logged_model_status(c: &mut dyn Conn, id: &str, status: LoggedModelStatus, at_ms: i64) -> Result<bool> {
    // Conditional, so that of two finalisations racing on replicas exactly one applies.
    let n = c
        .exec(
            "UPDATE logged_models SET status = $2, updated_ms = $3 WHERE id = $1 AND status = $4",
            &[id.into(), status.as_str().into(), at_ms.into(), LoggedModelStatus::Pending.as_str().into()],
        )
        .map_err(db)?;
    Ok(n == 1)
}

pub(crate) fn versions_registered_at(c: &mut dyn Conn, uris: &[String]) -> Result<bool> {
    if uris.is_empty() {
        return Ok(false);
    }
    let p: Vec<Param> = uris.iter().map(|u| u.as_str().into()).collect();
    let sql = format!("SELECT 1 FROM model_versions WHERE artifact_uri IN ({}) LIMIT 1", list(uris.len(), 1));
    Ok(!c.query(&sql, &p).map_err(db)?.is_empty())
}

pub(crate) fn set_logged_model_tags(c: &mut dyn Conn, id: &str, tags: &[(String, String)], at_ms: i64) -> Result<()> {
    for (k, v) in tags {
        c.exec(
            "INSERT INTO logged_model_tags (model_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value",
            &[id.into(), k.as_str().into(), v.as_str().into()],
        )
        .map_err(db)?;
    }
    c.exec("UPDATE logged_models SET updated_ms = $2 WHERE id = $1", &[id.into(), at_ms.into()]).map(|_| ()).map_err(db)
}

pub(crate) fn list_logged_models(c: &mut dyn Conn, experiment_ids: &[i64], name: Option<&str>, limit: usize, offset: usize) -> Result<Vec<LoggedModel>> {
    if experiment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut p: Vec<Param> = experiment_ids.iter().map(|e| (*e).into()).collect();
    let mut sql = format!("SELECT {LM_COLS} FROM logged_models WHERE experiment_id IN ({})", list(experiment_ids.len(), 1));
    if let Some(n) = name {
        p.push(n.into());
        sql.push_str(&format!(" AND name = ${}", p.len()));
    }
    p.push((limit.min(i64::MAX as usize) as i64).into());
    p.push((offset.min(i64::MAX as usize) as i64).into());
    sql.push_str(&format!(" ORDER BY creation_ms DESC, id LIMIT ${} OFFSET ${}", p.len() - 1, p.len()));
    let found = c.query(&sql, &p).map_err(db)?.iter().map(lm_from).collect::<Result<Vec<_>>>()?;
    with_children(c, found)
}

pub(crate) fn insert_run_outputs(c: &mut dyn Conn, run_id: &str, models: &[(String, i64)]) -> Result<()> {
    for (m, step) in models {
        c.exec(
            "INSERT INTO run_outputs (run_id, model_id, step) VALUES ($1, $2, $3) ON CONFLICT (run_id, model_id) DO NOTHING",
            &[run_id.into(), m.as_str().into(), (*step).into()],
        )
        .map_err(db)?;
    }
    Ok(())
}

pub(crate) fn run_outputs(c: &mut dyn Conn, run_id: &str) -> Result<Vec<(String, i64)>> {
    Ok(c.query("SELECT model_id, step FROM run_outputs WHERE run_id = $1 ORDER BY model_id", &[run_id.into()]).map_err(db)?.iter().map(|r| (r.text(0), r.int(1))).collect())
}

pub(crate) fn insert_run_input(c: &mut dyn Conn, experiment_id: i64, run_id: &str, d: &DatasetInput) -> Result<()> {
    c.exec(
        "INSERT INTO datasets (experiment_id, name, digest, source_type, source, schema_json, profile) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (experiment_id, name, digest) DO NOTHING",
        &[experiment_id.into(), d.name.as_str().into(), d.digest.as_str().into(), d.source_type.as_str().into(), d.source.as_str().into(), d.schema.clone().into(), d.profile.clone().into()],
    )
    .map_err(db)?;
    let tags = serde_json::to_string(&d.tags).map_err(|_| Error::storage("cannot encode dataset tags"))?;
    c.exec(
        "INSERT INTO run_inputs (run_id, name, digest, context, tags) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (run_id, name, digest) DO UPDATE SET context = excluded.context, tags = excluded.tags",
        &[run_id.into(), d.name.as_str().into(), d.digest.as_str().into(), d.context().map(str::to_owned).into(), tags.into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn run_inputs(c: &mut dyn Conn, run_id: &str) -> Result<Vec<DatasetInput>> {
    let rows = c
        .query(
            "SELECT i.name, i.digest, d.source_type, d.source, d.schema_json, d.profile, i.tags FROM run_inputs i \
             JOIN runs r ON r.id = i.run_id \
             JOIN datasets d ON d.experiment_id = r.experiment_id AND d.name = i.name AND d.digest = i.digest \
             WHERE i.run_id = $1 ORDER BY i.name, i.digest",
            &[run_id.into()],
        )
        .map_err(db)?;
    rows.iter()
        .map(|r| {
            let tags: Vec<(String, String)> = serde_json::from_str(&r.text(6)).map_err(|_| crate::tx::corrupt("dataset input tags"))?;
            Ok(DatasetInput { name: r.text(0), digest: r.text(1), source_type: r.text(2), source: r.text(3), schema: r.opt_text(4), profile: r.opt_text(5), tags })
        })
        .collect()
}
