//! SQL for experiment tracking and API tokens, shared by both backends.
//!
//! Metric values are stored as two integers: the f64's exact bits (so NaN, ±∞ and every
//! value round-trip) and an order-preserving key (so `metrics.acc > 0.5` and ordering run
//! in SQL on an index, with no floating-point column type to reconcile between SQLite and
//! PostgreSQL). Search filters arrive as the core's typed AST and become SQL with bound
//! parameters only.

use crate::sql::{Conn, DbError, Param, Row};
use std::collections::HashMap;
use vigil_core::ids::{Timestamp, UserId};
use vigil_core::search::{Attr, Clause, Field, Op, Operand, OrderBy};
use vigil_core::session::{ApiToken, TokenKind};
use vigil_core::store::RunsData;
use vigil_core::tracking::{Experiment, Lifecycle, Metric, MetricPoint, RunInfo, RunQuery, RunStatus, ViewType};
use crate::tx::{corrupt, ts};
use vigil_core::{Error, ErrorCode, Result};

/// As the registry's mapping, except that a unique violation here is a concurrent insert of
/// the same generated key (experiment id, run key), which the write loop retries.
fn db(e: DbError) -> Error {
    match e {
        DbError::Unique => Error::new(ErrorCode::ConcurrentModification, "a concurrent writer inserted the same record; retry"),
        other => crate::tx::db(other),
    }
}

/// Order-preserving signed key of an f64 (−0.0 counts as 0.0).
pub fn order_key(x: f64) -> i64 {
    let x = if x == 0.0 { 0.0 } else { x };
    let b = x.to_bits();
    let u = if b >> 63 == 1 { !b } else { b | (1 << 63) };
    (u ^ (1 << 63)) as i64
}

fn bits(x: f64) -> i64 {
    x.to_bits() as i64
}

fn from_bits(i: i64) -> f64 {
    f64::from_bits(i as u64)
}


// ----- tokens ------------------------------------------------------------------------------

const TOKEN_COLS: &str = "id, user_id, name, kind, created_at, expires_at, revoked_at";

fn token_from(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.text(0),
        user_id: UserId::parse(&r.text(1)).map_err(|_| corrupt("token owner"))?,
        name: r.text(2),
        kind: TokenKind::parse(&r.text(3))?,
        created_at: ts(&r.text(4))?,
        expires_at: r.opt_text(5).map(|s| ts(&s)).transpose()?,
        revoked_at: r.opt_text(6).map(|s| ts(&s)).transpose()?,
    })
}

pub(crate) fn insert_token(c: &mut dyn Conn, t: &ApiToken, hash: &str) -> Result<()> {
    c.exec(
        &format!("INSERT INTO api_tokens ({TOKEN_COLS}, token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        &[
            t.id.as_str().into(),
            t.user_id.as_str().into(),
            t.name.as_str().into(),
            t.kind.as_str().into(),
            t.created_at.to_rfc3339().into(),
            Param::Text(t.expires_at.map(|x| x.to_rfc3339())),
            Param::Text(t.revoked_at.map(|x| x.to_rfc3339())),
            hash.into(),
        ],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn token_by_hash(c: &mut dyn Conn, hash: &str) -> Result<Option<ApiToken>> {
    c.query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = $1"), &[hash.into()]).map_err(db)?.first().map(token_from).transpose()
}

pub(crate) fn get_token(c: &mut dyn Conn, id: &str) -> Result<Option<ApiToken>> {
    c.query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE id = $1"), &[id.into()]).map_err(db)?.first().map(token_from).transpose()
}

pub(crate) fn list_tokens(c: &mut dyn Conn, user: Option<&UserId>) -> Result<Vec<ApiToken>> {
    let rows = match user {
        Some(u) => c.query(&format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = $1 ORDER BY created_at DESC, id DESC"), &[u.as_str().into()]),
        None => c.query(&format!("SELECT {TOKEN_COLS} FROM api_tokens ORDER BY created_at DESC, id DESC"), &[]),
    }
    .map_err(db)?;
    rows.iter().map(token_from).collect()
}

pub(crate) fn revoke_token(c: &mut dyn Conn, id: &str, at: Timestamp) -> Result<()> {
    c.exec("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[id.into(), at.to_rfc3339().into()]).map(|_| ()).map_err(db)
}

// ----- experiments -------------------------------------------------------------------------

const EXP_COLS: &str = "id, name, artifact_location, lifecycle_stage, creation_time, last_update_time";

fn exp_from(r: &Row) -> Result<Experiment> {
    Ok(Experiment {
        id: r.int(0),
        name: r.text(1),
        artifact_location: r.text(2),
        lifecycle: Lifecycle::parse(&r.text(3))?,
        creation_time: r.int(4),
        last_update_time: r.int(5),
        tags: Vec::new(),
    })
}

fn with_tags(c: &mut dyn Conn, mut e: Experiment) -> Result<Experiment> {
    e.tags = c.query("SELECT key, value FROM experiment_tags WHERE experiment_id = $1 ORDER BY key", &[e.id.into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect();
    Ok(e)
}

pub(crate) fn insert_experiment(c: &mut dyn Conn, e: &Experiment) -> Result<i64> {
    if !c.query("SELECT id FROM experiments WHERE name = $1", &[e.name.as_str().into()]).map_err(db)?.is_empty() {
        return Err(Error::new(ErrorCode::ExperimentExists, "an experiment with that name exists (possibly deleted: restore or rename it)"));
    }
    let next = if c.is_postgres() { "SELECT nextval('experiments_id_seq')" } else { "SELECT COALESCE(MAX(id), 0) + 1 FROM experiments" };
    let id = c.query(next, &[]).map_err(db)?.first().map_or(1, |r| r.int(0));
    // A concurrent insert of the same id or name fails the unique constraint, which the
    // registry's write loop retries; the retry then sees the name taken.
    c.exec(
        &format!("INSERT INTO experiments ({EXP_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[id.into(), e.name.as_str().into(), e.artifact_location.as_str().into(), e.lifecycle.as_str().into(), e.creation_time.into(), e.last_update_time.into()],
    )
    .map_err(db)?;
    Ok(id)
}

pub(crate) fn set_experiment_artifact_location(c: &mut dyn Conn, id: i64, location: &str) -> Result<()> {
    c.exec("UPDATE experiments SET artifact_location = $2 WHERE id = $1", &[id.into(), location.into()]).map(|_| ()).map_err(db)
}

pub(crate) fn set_experiment_tag(c: &mut dyn Conn, id: i64, key: &str, value: &str) -> Result<()> {
    c.exec(
        "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
        &[id.into(), key.into(), value.into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn set_experiment_lifecycle(c: &mut dyn Conn, id: i64, l: Lifecycle, at_ms: i64) -> Result<()> {
    c.exec("UPDATE experiments SET lifecycle_stage = $2, last_update_time = $3 WHERE id = $1", &[id.into(), l.as_str().into(), at_ms.into()]).map(|_| ()).map_err(db)
}

pub(crate) fn get_experiment(c: &mut dyn Conn, id: i64) -> Result<Option<Experiment>> {
    let e = c.query(&format!("SELECT {EXP_COLS} FROM experiments WHERE id = $1"), &[id.into()]).map_err(db)?.first().map(exp_from).transpose()?;
    e.map(|e| with_tags(c, e)).transpose()
}

pub(crate) fn get_experiment_by_name(c: &mut dyn Conn, name: &str) -> Result<Option<Experiment>> {
    let e = c.query(&format!("SELECT {EXP_COLS} FROM experiments WHERE name = $1"), &[name.into()]).map_err(db)?.first().map(exp_from).transpose()?;
    e.map(|e| with_tags(c, e)).transpose()
}

fn view_cond(view: ViewType, col: &str) -> String {
    match view {
        ViewType::ActiveOnly => format!(" AND {col} = 'active'"),
        ViewType::DeletedOnly => format!(" AND {col} = 'deleted'"),
        ViewType::All => String::new(),
    }
}

pub(crate) fn list_experiments(c: &mut dyn Conn, view: ViewType, limit: u32, offset: u64) -> Result<Vec<Experiment>> {
    let sql = format!("SELECT {EXP_COLS} FROM experiments WHERE 1 = 1{} ORDER BY id LIMIT $1 OFFSET $2", view_cond(view, "lifecycle_stage"));
    let exps: Vec<Experiment> =
        c.query(&sql, &[i64::from(limit).into(), (offset.min(i64::MAX as u64) as i64).into()]).map_err(db)?.iter().map(exp_from).collect::<Result<_>>()?;
    exps.into_iter().map(|e| with_tags(c, e)).collect()
}

// ----- runs --------------------------------------------------------------------------------

const RUN_COLS: &str = "r.id, r.experiment_id, r.name, r.user_id, r.status, r.start_time, r.end_time, r.artifact_uri, r.lifecycle_stage";

fn run_from(r: &Row) -> Result<RunInfo> {
    Ok(RunInfo {
        run_id: r.text(0),
        experiment_id: r.int(1),
        run_name: r.text(2),
        user_id: r.text(3),
        status: RunStatus::parse(&r.text(4)).map_err(|_| corrupt("run status"))?,
        start_time: r.int(5),
        end_time: r.opt_text(6).and_then(|s| s.parse().ok()),
        artifact_uri: r.text(7),
        lifecycle: Lifecycle::parse(&r.text(8))?,
    })
}

pub(crate) fn insert_run(c: &mut dyn Conn, r: &RunInfo) -> Result<()> {
    let rk = if c.is_postgres() { "nextval('runs_rk_seq')" } else { "(SELECT COALESCE(MAX(rk), 0) + 1 FROM runs)" };
    c.exec(
        &format!(
            "INSERT INTO runs (id, experiment_id, name, user_id, status, start_time, end_time, artifact_uri, lifecycle_stage, metric_seq, rk) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, {rk})"
        ),
        &[
            r.run_id.as_str().into(),
            r.experiment_id.into(),
            r.run_name.as_str().into(),
            r.user_id.as_str().into(),
            r.status.as_str().into(),
            r.start_time.into(),
            Param::Int(r.end_time),
            r.artifact_uri.as_str().into(),
            r.lifecycle.as_str().into(),
        ],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn get_run(c: &mut dyn Conn, run_id: &str, lock: bool) -> Result<Option<RunInfo>> {
    let sfx = if lock && c.is_postgres() { " FOR UPDATE" } else { "" };
    c.query(&format!("SELECT {RUN_COLS} FROM runs r WHERE r.id = $1{sfx}"), &[run_id.into()]).map_err(db)?.first().map(run_from).transpose()
}

pub(crate) fn update_run(c: &mut dyn Conn, r: &RunInfo) -> Result<()> {
    c.exec(
        "UPDATE runs SET name = $2, status = $3, end_time = $4, lifecycle_stage = $5 WHERE id = $1",
        &[r.run_id.as_str().into(), r.run_name.as_str().into(), r.status.as_str().into(), Param::Int(r.end_time), r.lifecycle.as_str().into()],
    )
    .map(|_| ())
    .map_err(db)
}

pub(crate) fn get_param(c: &mut dyn Conn, run_id: &str, key: &str) -> Result<Option<String>> {
    Ok(c.query("SELECT value FROM params WHERE run_id = $1 AND key = $2", &[run_id.into(), key.into()]).map_err(db)?.first().map(|r| r.text(0)))
}

/// Runs `INSERT … VALUES (…), (…)` in chunks of rows of `width` parameters.
fn insert_rows(c: &mut dyn Conn, head: &str, tail: &str, width: usize, rows: Vec<Vec<Param>>) -> Result<()> {
    use std::fmt::Write;
    const CHUNK: usize = 200;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut sql = String::with_capacity(head.len() + tail.len() + CHUNK * width * 6);
        sql.push_str(head);
        let mut p: Vec<Param> = Vec::with_capacity(CHUNK * width);
        for (i, row) in rows.by_ref().take(CHUNK).enumerate() {
            sql.push_str(if i == 0 { " VALUES (" } else { ", (" });
            for j in 0..width {
                if j > 0 {
                    sql.push_str(", ");
                }
                let _ = write!(sql, "${}", i * width + j + 1);
            }
            sql.push(')');
            p.extend(row);
        }
        sql.push_str(tail);
        c.exec(&sql, &p).map_err(db)?;
    }
    Ok(())
}

pub(crate) fn insert_params(c: &mut dyn Conn, run_id: &str, params: &[(String, String)]) -> Result<()> {
    let rows = params.iter().map(|(k, v)| vec![run_id.into(), k.as_str().into(), v.as_str().into()]).collect();
    insert_rows(c, "INSERT INTO params (run_id, key, value)", "", 3, rows)
}

pub(crate) fn upsert_tags(c: &mut dyn Conn, run_id: &str, tags: &[(String, String)]) -> Result<()> {
    // The last value for a key within one call wins, as if set one after another.
    let mut last: Vec<(String, String)> = Vec::new();
    for (k, v) in tags {
        match last.iter_mut().find(|(k2, _)| k2 == k) {
            Some(slot) => slot.1 = v.clone(),
            None => last.push((k.clone(), v.clone())),
        }
    }
    let rows = last.iter().map(|(k, v)| vec![run_id.into(), k.as_str().into(), v.as_str().into()]).collect();
    insert_rows(c, "INSERT INTO tags (run_id, key, value)", " ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value", 3, rows)
}

pub(crate) fn delete_tag(c: &mut dyn Conn, run_id: &str, key: &str) -> Result<bool> {
    Ok(c.exec("DELETE FROM tags WHERE run_id = $1 AND key = $2", &[run_id.into(), key.into()]).map_err(db)? > 0)
}

fn point_from(r: &Row, at: usize) -> MetricPoint {
    MetricPoint { value: from_bits(r.int(at)), timestamp: r.int(at + 1), step: r.int(at + 2) }
}

pub(crate) fn run_latest_metrics(c: &mut dyn Conn, run_id: &str) -> Result<Vec<Metric>> {
    Ok(c.query("SELECT m.key, m.value_bits, m.timestamp_ms, m.step FROM latest_metrics m JOIN runs r ON r.rk = m.rk WHERE r.id = $1 ORDER BY m.key", &[run_id.into()])
        .map_err(db)?
        .iter()
        .map(|r| Metric { key: r.text(0), point: point_from(r, 1) })
        .collect())
}

pub(crate) fn insert_metrics(c: &mut dyn Conn, run_id: &str, metrics: &[Metric]) -> Result<()> {
    // Logging order: a per-run counter on the (locked) run row.
    // Metrics are keyed by the run's integer key (small B-tree keys, no string per row).
    let (base, rk) = c.query("SELECT metric_seq, rk FROM runs WHERE id = $1", &[run_id.into()]).map_err(db)?.first().map_or((0, 0), |r| (r.int(0), r.int(1)));
    c.exec("UPDATE runs SET metric_seq = metric_seq + $2 WHERE id = $1", &[run_id.into(), (metrics.len() as i64).into()]).map_err(db)?;
    let rows = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let v = m.point.value;
            vec![
                rk.into(),
                m.key.as_str().into(),
                (base + i as i64 + 1).into(),
                bits(v).into(),
                order_key(v).into(),
                i64::from(v.is_nan()).into(),
                m.point.timestamp.into(),
                m.point.step.into(),
            ]
        })
        .collect();
    insert_rows(c, "INSERT INTO metrics (rk, key, seq, value_bits, value_key, is_nan, timestamp_ms, step)", "", 8, rows)?;
    // The latest value per key: compare the batch's newest with what is stored.
    let mut newest: HashMap<&str, MetricPoint> = HashMap::new();
    for m in metrics {
        match newest.get(m.key.as_str()) {
            Some(p) if !m.point.newer_than(p) => {}
            _ => {
                newest.insert(m.key.as_str(), m.point);
            }
        }
    }
    let stored: HashMap<String, MetricPoint> = run_latest_metrics(c, run_id)?.into_iter().map(|m| (m.key, m.point)).collect();
    let rows: Vec<Vec<Param>> = newest
        .into_iter()
        .filter(|(k, p)| stored.get(*k).is_none_or(|s| p.newer_than(s)))
        .map(|(k, p)| {
            vec![rk.into(), k.into(), bits(p.value).into(), order_key(p.value).into(), i64::from(p.value.is_nan()).into(), p.timestamp.into(), p.step.into()]
        })
        .collect();
    insert_rows(
        c,
        "INSERT INTO latest_metrics (rk, key, value_bits, value_key, is_nan, timestamp_ms, step)",
        " ON CONFLICT (rk, key) DO UPDATE SET value_bits = excluded.value_bits, value_key = excluded.value_key, is_nan = excluded.is_nan, \
         timestamp_ms = excluded.timestamp_ms, step = excluded.step",
        7,
        rows,
    )
}

pub(crate) fn run_params(c: &mut dyn Conn, run_id: &str) -> Result<Vec<(String, String)>> {
    Ok(c.query("SELECT key, value FROM params WHERE run_id = $1 ORDER BY key", &[run_id.into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect())
}

pub(crate) fn run_tags(c: &mut dyn Conn, run_id: &str) -> Result<Vec<(String, String)>> {
    Ok(c.query("SELECT key, value FROM tags WHERE run_id = $1 ORDER BY key", &[run_id.into()]).map_err(db)?.iter().map(|r| (r.text(0), r.text(1))).collect())
}

pub(crate) fn runs_data(c: &mut dyn Conn, ids: &[String]) -> Result<RunsData> {
    let (mut params, mut metrics, mut tags): RunsData = Default::default();
    for chunk in ids.chunks(500) {
        let list = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let p: Vec<Param> = chunk.iter().map(|s| s.as_str().into()).collect();
        for r in c.query(&format!("SELECT run_id, key, value FROM params WHERE run_id IN ({list}) ORDER BY run_id, key"), &p).map_err(db)? {
            params.entry(r.text(0)).or_default().push((r.text(1), r.text(2)));
        }
        for r in c.query(&format!("SELECT run_id, key, value FROM tags WHERE run_id IN ({list}) ORDER BY run_id, key"), &p).map_err(db)? {
            tags.entry(r.text(0)).or_default().push((r.text(1), r.text(2)));
        }
        for r in c
            .query(&format!("SELECT r.id, m.key, m.value_bits, m.timestamp_ms, m.step FROM latest_metrics m JOIN runs r ON r.rk = m.rk WHERE r.id IN ({list}) ORDER BY r.id, m.key"), &p)
            .map_err(db)?
        {
            metrics.entry(r.text(0)).or_default().push(Metric { key: r.text(1), point: point_from(&r, 2) });
        }
    }
    Ok((params, metrics, tags))
}

pub(crate) fn metric_history(c: &mut dyn Conn, run_id: &str, key: &str, limit: u32, offset: u64) -> Result<Vec<MetricPoint>> {
    Ok(c.query(
        "SELECT value_bits, timestamp_ms, step FROM metrics WHERE rk = (SELECT rk FROM runs WHERE id = $1) AND key = $2 ORDER BY seq LIMIT $3 OFFSET $4",
        &[run_id.into(), key.into(), i64::from(limit).into(), (offset.min(i64::MAX as u64) as i64).into()],
    )
    .map_err(db)?
    .iter()
    .map(|r| point_from(r, 0))
    .collect())
}

// ----- search ------------------------------------------------------------------------------

struct Sql {
    text: String,
    params: Vec<Param>,
    postgres: bool,
}

impl Sql {
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }

    /// `column LIKE pattern`, case-sensitive on both backends (SQLite's LIKE ignores ASCII
    /// case, so there the pattern becomes a GLOB).
    fn like(&mut self, column: &str, pattern: &str, insensitive: bool) -> String {
        if insensitive {
            // Fold the pattern as the backend's LOWER folds the column (SQLite: ASCII only).
            let folded = if self.postgres { pattern.to_lowercase() } else { pattern.to_ascii_lowercase() };
            let b = self.bind(folded.into());
            let esc = if self.postgres { " ESCAPE ''" } else { "" };
            return format!("LOWER({column}) LIKE {b}{esc}");
        }
        if self.postgres {
            // No escape character, as in the SQLite translation: `\` is literal on both.
            let b = self.bind(pattern.into());
            return format!("{column} LIKE {b} ESCAPE ''");
        }
        let mut glob = String::with_capacity(pattern.len());
        for ch in pattern.chars() {
            match ch {
                '%' => glob.push('*'),
                '_' => glob.push('?'),
                '*' | '?' | '[' => {
                    glob.push('[');
                    glob.push(ch);
                    glob.push(']');
                }
                c => glob.push(c),
            }
        }
        let b = self.bind(glob.into());
        format!("{column} GLOB {b}")
    }
}

fn sql_op(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "<>",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        _ => "<=",
    }
}

/// A string comparison on `column`.
fn text_cond(s: &mut Sql, column: &str, op: Op, operand: &Operand) -> String {
    match (op, operand) {
        (Op::Like, Operand::Text(t)) => s.like(column, t, false),
        (Op::ILike, Operand::Text(t)) => s.like(column, t, true),
        (Op::In | Op::NotIn, Operand::List(items)) => {
            if items.is_empty() {
                return if op == Op::In { "1 = 0".into() } else { "1 = 1".into() };
            }
            let list: Vec<String> = items.iter().map(|i| s.bind(i.as_str().into())).collect();
            format!("{column} {}IN ({})", if op == Op::NotIn { "NOT " } else { "" }, list.join(", "))
        }
        (Op::Eq, Operand::Text(t)) if column == "x.value" => {
            // Values are indexed by their first 200 characters (a B-tree entry has a size
            // limit on PostgreSQL); the prefix condition lets the index find the candidates.
            let b = s.bind(t.as_str().into());
            format!("substr(x.value, 1, 200) = substr({b}, 1, 200) AND x.value = {b}")
        }
        (_, Operand::Text(t)) => {
            let b = s.bind(t.as_str().into());
            format!("{column} {} {b}", sql_op(op))
        }
        _ => "1 = 0".into(),
    }
}

/// A comparison of an integer column with a possibly fractional number.
fn int_cond(s: &mut Sql, column: &str, op: Op, x: f64) -> String {
    let (op, v) = match op {
        Op::Gt => (">", x.floor()),
        Op::Ge => (">=", x.ceil()),
        Op::Lt => ("<", x.ceil()),
        Op::Le => ("<=", x.floor()),
        Op::Eq if x.fract() != 0.0 => return "1 = 0".into(),
        Op::Ne if x.fract() != 0.0 => return format!("{column} IS NOT NULL"),
        other => (sql_op(other), x),
    };
    let b = s.bind((v.clamp(i64::MIN as f64, i64::MAX as f64) as i64).into());
    format!("{column} {op} {b}")
}

fn clause_sql(s: &mut Sql, c: &Clause) -> String {
    match (&c.field, c.op, &c.operand) {
        (Field::Metric(k), op, Operand::Number(x)) => {
            let kb = s.bind(k.as_str().into());
            let vb = s.bind(order_key(*x).into());
            // An IN over the (key, value_key) index lets the planner start from the few
            // matching metrics instead of probing every run.
            format!("r.rk IN (SELECT m.rk FROM latest_metrics m WHERE m.key = {kb} AND m.is_nan = 0 AND m.value_key {} {vb})", sql_op(op))
        }
        (Field::Param(k) | Field::Tag(k), op, operand) => {
            let table = if matches!(c.field, Field::Param(_)) { "params" } else { "tags" };
            let kb = s.bind(k.as_str().into());
            match op {
                Op::IsNull => format!("NOT EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.key = {kb})"),
                Op::IsNotNull => format!("EXISTS (SELECT 1 FROM {table} x WHERE x.run_id = r.id AND x.key = {kb})"),
                _ => {
                    let cond = text_cond(s, "x.value", op, operand);
                    format!("r.id IN (SELECT x.run_id FROM {table} x WHERE x.key = {kb} AND {cond})")
                }
            }
        }
        (Field::Attr(a), op, Operand::Number(x)) if a.is_numeric() => int_cond(s, attr_column(*a), op, *x),
        (Field::Attr(a), op, operand) => text_cond(s, attr_column(*a), op, operand),
        // A run matches when one of its dataset inputs does.
        (Field::Dataset(k), op, operand) => {
            let column = match k.as_str() {
                "name" => "x.name",
                "digest" => "x.digest",
                _ => "x.context",
            };
            let cond = text_cond(s, column, op, operand);
            format!("r.id IN (SELECT x.run_id FROM run_inputs x WHERE {cond})")
        }
        _ => "1 = 0".into(),
    }
}

fn attr_column(a: Attr) -> &'static str {
    match a {
        Attr::RunId => "r.id",
        Attr::RunName => "r.name",
        Attr::Status => "r.status",
        Attr::UserId => "r.user_id",
        Attr::ArtifactUri => "r.artifact_uri",
        Attr::StartTime => "r.start_time",
        Attr::EndTime => "r.end_time",
    }
}

pub(crate) fn search_runs(c: &mut dyn Conn, q: &RunQuery) -> Result<Vec<RunInfo>> {
    let mut s = Sql { text: format!("SELECT {RUN_COLS} FROM runs r"), params: Vec::new(), postgres: c.is_postgres() };
    // One LEFT JOIN per ordering key on metrics, params or tags.
    let mut order: Vec<String> = Vec::new();
    for (i, OrderBy { field, ascending }) in q.order_by.iter().enumerate() {
        let dir = if *ascending { "ASC" } else { "DESC" };
        let expr = match field {
            Field::Metric(k) => {
                let kb = s.bind(k.as_str().into());
                s.text.push_str(&format!(" LEFT JOIN latest_metrics o{i} ON o{i}.rk = r.rk AND o{i}.key = {kb} AND o{i}.is_nan = 0"));
                format!("o{i}.value_key")
            }
            Field::Param(k) | Field::Tag(k) => {
                let table = if matches!(field, Field::Param(_)) { "params" } else { "tags" };
                let kb = s.bind(k.as_str().into());
                s.text.push_str(&format!(" LEFT JOIN {table} o{i} ON o{i}.run_id = r.id AND o{i}.key = {kb}"));
                format!("o{i}.value")
            }
            Field::Attr(a) => attr_column(*a).to_owned(),
            Field::Dataset(_) => continue,
        };
        // Text orders bytewise on both backends (PostgreSQL would otherwise follow the
        // database's locale).
        let is_text = matches!(field, Field::Param(_) | Field::Tag(_)) || matches!(field, Field::Attr(a) if !a.is_numeric());
        let sorted = if is_text && s.postgres { format!("{expr} COLLATE \"C\"") } else { expr.clone() };
        // Runs lacking the key sort last in both directions (MLflow's behaviour).
        order.push(format!("CASE WHEN {expr} IS NULL THEN 1 ELSE 0 END, {sorted} {dir}"));
    }
    let ids: Vec<String> = q.experiment_ids.iter().map(|id| s.bind((*id).into())).collect();
    s.text.push_str(&format!(" WHERE r.experiment_id IN ({}){}", ids.join(", "), view_cond(q.view, "r.lifecycle_stage")));
    for clause in &q.filter {
        let cond = clause_sql(&mut s, clause);
        s.text.push_str(" AND ");
        s.text.push_str(&cond);
    }
    order.push("r.start_time DESC".into());
    order.push("r.id ASC".into());
    let (lb, ob) = (s.bind(i64::from(q.limit).into()), s.bind((q.offset.min(i64::MAX as u64) as i64).into()));
    s.text.push_str(&format!(" ORDER BY {} LIMIT {lb} OFFSET {ob}", order.join(", ")));
    c.query(&s.text, &s.params).map_err(db)?.iter().map(run_from).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn order_keys_sort_like_the_floats() {
        let mut xs = vec![f64::NEG_INFINITY, -1e300, -2.5, -1e-300, 0.0, 1e-300, 0.5, 1.0, 3e10, f64::INFINITY];
        let keys: Vec<i64> = xs.iter().map(|x| order_key(*x)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(order_key(-0.0), order_key(0.0));
        xs.reverse();
        for x in xs {
            assert_eq!(from_bits(bits(x)).to_bits(), x.to_bits());
        }
        assert!(from_bits(bits(f64::NAN)).is_nan());
    }
}
