//! The prediction log: every answer the gateway gives (and every shadow run) as a record of
//! which version, from which artifact, on which arm, for which (hashed) unit, with its input
//! vector, outputs and latency.
//!
//! The gateway writes records to a durable spool of its own, off the request path, and ships
//! each sealed segment here. [`Registry::record_prediction_segment`] stores a segment in one
//! transaction: the segment itself, whole, under its id (so a segment shipped twice, after
//! a crash between commit and cleanup, is stored once; append-only) — compressed into the
//! database, or, for a large sealed spool file on a store that keeps such files
//! ([`Registry::prepare_spooled_segment`]), kept as that file, checked by length and CRC-32
//! on every read — with
//! the range of the gateway's time-ordered request ids it covers, an index row only for the
//! records that range does not find (a caller's own id, ids of another form), one drift
//! batch per model version that refers to the segment (the features, scores and prediction
//! ids are read from it when a check reads the window, so no input is stored twice), and the
//! audit events. Records are in the binary format of [`crate::predwire`]: the shipper reads
//! the column kinds it checks without building columns, and a read decodes a record only when
//! asked. So logged predictions feed the drift monitor's windows without anyone uploading
//! them, and labels posted later by request id ([`Registry::add_prediction_labels`]) join them
//! for performance monitoring.
//!
//! Prediction ids: a one-row request's prediction id is its request id; row `i` of a larger
//! request is `{request_id}#{i}`. A request may also carry the caller's own id (OIP `id`,
//! `x-request-id`), kept as `client_id`; labels may name either.

use crate::auth::{Action, Principal};
use crate::error::{Error, ErrorCode, Result};
use crate::ids::Timestamp;
use crate::monitor::{Batch, Column};
use crate::registry::{Attempt, Registry};
use crate::predwire::{self, RecordView};
use crate::store::{BatchRecord, IndexEntry, SegmentBody, Tx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};

/// The audit actor of what the gateway records (it acts for no user).
pub const GATEWAY_ACTOR: &str = "system:gateway";

/// One logged prediction (one request on one arm), as the gateway spools it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// The gateway's id of the request (`req_…`), the same for the live answer and its shadows.
    pub request_id: String,
    /// The caller's own id of the request, if it gave one.
    #[serde(default)]
    pub client_id: Option<String>,
    /// `live` (answered the caller) or `shadow` (a copy, never returned).
    pub role: String,
    /// The endpoint (model name).
    pub endpoint: String,
    /// The model version id that ran.
    pub version_id: String,
    /// Its version string.
    pub version: String,
    /// The deployment arm.
    pub arm: String,
    /// The artifact digest verified when the version was loaded (hex).
    pub digest: String,
    /// How the arm was chosen: `keyed`, `random` or `pinned`.
    pub assignment: String,
    /// The HMAC-SHA256 of the unit key, its first 128 bits in hex (32 digits); never the key
    /// itself.
    #[serde(default)]
    pub unit_hash: Option<String>,
    /// The bucket (0..10,000) the request fell in.
    #[serde(default)]
    pub bucket: Option<u32>,
    /// When the answer was computed.
    pub at: Timestamp,
    /// Time from receiving the request to having the outputs (µs).
    pub latency_us: u64,
    /// Of which the online feature lookup (µs), when the request carried entity ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_us: Option<u64>,
    /// `ok`, or `error` for a shadow run that failed.
    pub status: String,
    /// Why a shadow run failed (no values).
    #[serde(default)]
    pub error: Option<String>,
    /// Rows in the request.
    pub rows: u64,
    /// The input vector by feature name: numbers (null for missing) or text, one per row.
    pub features: BTreeMap<String, Vec<Value>>,
    /// The score monitoring follows (positive-class probability, regression value), per row.
    #[serde(default)]
    pub scores: Option<Vec<Option<f64>>>,
    /// The outputs by name.
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    /// Online feature lookups: per feature, its status (`present`, `missing`, `outside_max_age`…).
    #[serde(default)]
    pub feature_statuses: Option<BTreeMap<String, Vec<String>>>,
}

impl PredictionRecord {
    /// The prediction id of row `i`.
    pub fn prediction_id(&self, i: usize) -> String {
        if self.rows == 1 { self.request_id.clone() } else { format!("{}#{i}", self.request_id) }
    }

    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::new(ErrorCode::InvalidManifest, format!("prediction record: {m}")));
        if self.request_id.is_empty() || self.request_id.len() > 128 || self.request_id.contains('#') {
            return bad("request id must be 1-128 characters without '#'");
        }
        if self.role != "live" && self.role != "shadow" {
            return bad("role is live or shadow");
        }
        if self.rows == 0 || self.rows > 1_000_000 {
            return bad("rows out of range");
        }
        if self.features.values().any(|v| v.len() as u64 != self.rows) || self.scores.as_ref().is_some_and(|s| s.len() as u64 != self.rows) {
            return bad("a column's length differs from the row count");
        }
        Ok(())
    }
}

/// A stored prediction record.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPrediction {
    /// The spool segment it came in.
    pub segment_id: String,
    /// The record.
    pub record: PredictionRecord,
}

/// What storing a segment did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SegmentOutcome {
    /// The segment had been stored before (nothing was written now).
    pub duplicate: bool,
    /// Records stored.
    pub records: usize,
    /// Frames of the segment that were damaged or cut short (skipped, never guessed at).
    pub damaged: usize,
    /// Rows added to drift monitoring, over all versions.
    pub monitored_rows: usize,
    /// Versions whose rows could not feed monitoring (a column's kind differs from the
    /// baseline's), with the reason; their records are stored all the same.
    pub not_monitored: Vec<(String, String)>,
}

/// A prediction-log segment ready to be stored (see [`Registry::prepare_prediction_segment`]).
#[derive(PartialEq)]
pub struct PreparedSegment {
    segment_id: String,
    instance: String,
    records: usize,
    damaged: usize,
    /// The body to store in the database (empty when `file` is kept instead).
    body: Vec<u8>,
    /// The sealed spool file to keep as the body, where the store keeps such files (see
    /// [`Registry::prepare_spooled_segment`]).
    file: Option<SpooledFile>,
    /// The first and last time-ordered request id the segment covers (see [`Range`]).
    covers: Option<(String, String)>,
    /// Per record the segment does not cover, or that has a caller's id: request id, role,
    /// version id, caller's id.
    index: Vec<(String, &'static str, String, Option<String>)>,
    groups: Vec<PreparedGroup>,
}

/// Printed without its index rows' ids (callers' ids among them), as their count.
impl std::fmt::Debug for PreparedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedSegment")
            .field("segment_id", &self.segment_id)
            .field("instance", &self.instance)
            .field("records", &self.records)
            .field("damaged", &self.damaged)
            .field("body_bytes", &self.body.len())
            .field("file", &self.file)
            .field("covers", &self.covers)
            .field("index_rows", &self.index.len())
            .field("groups", &self.groups)
            .finish()
    }
}

/// A sealed spool file kept as a segment's body: where it is, its length and CRC-32.
#[derive(Debug, PartialEq)]
struct SpooledFile {
    path: std::path::PathBuf,
    len: u64,
    crc32: u32,
}

/// One version's records of a prepared segment.
#[derive(Debug, PartialEq)]
struct PreparedGroup {
    version_id: String,
    records: usize,
    live: usize,
    failed: usize,
    /// The rows its successful records add to drift monitoring, with each logged column's
    /// kind (numeric or not); `None` if every record failed.
    monitored: Option<(usize, BTreeMap<String, bool>)>,
}

/// [`Kinds`] of a list of records.
#[cfg(test)]
fn column_kinds(records: &[&RecordView<'_>]) -> Result<(usize, BTreeMap<String, bool>)> {
    let mut kinds = Kinds::default();
    for r in records {
        kinds.add(r)?;
    }
    Ok(kinds.finish())
}

/// The rows of a version's successful records and each logged column's kind (numeric unless
/// some record holds text in it, as [`monitoring_batch`] decides), without building the
/// batch, gathered one record at a time (owning what it keeps: a segment is walked a block
/// at a time, [`predwire::each_record_streamed`]). Text values are parsed all the same, so a
/// batch that would not build is refused here.
#[derive(Default)]
struct Kinds {
    rows: usize,
    kinds: BTreeMap<String, bool>,
    /// Records nearly always share one layout of feature names: the kinds of a run of
    /// records with the same layout are kept by position (`run`, of the features `names`)
    /// and merged by name when the run ends; a run of records under one schema is known by
    /// its key (`schema`, [`RecordView::schema_key`]) without their names compared.
    run: Vec<bool>,
    names: Vec<String>,
    schema: Option<usize>,
    started: bool,
}

impl Kinds {
    fn add(&mut self, r: &RecordView<'_>) -> Result<()> {
        self.rows += r.rows;
        if !self.same_run(r) {
            self.merge();
            self.run.clear();
            self.run.resize(r.feature_count(), true);
            self.names.clear();
            self.names.extend(r.features().map(|f| f.name.to_owned()));
            self.schema = r.schema_key();
            self.started = true;
        }
        if r.all_numeric() {
            return Ok(());
        }
        for (fi, f) in r.features().enumerate() {
            if !f.numeric() {
                let all = f.values()?.iter().all(|v| v.is_null() || v.is_number());
                self.run[fi] &= all;
            }
        }
        Ok(())
    }

    /// Whether `r` has the run's features (names, in order).
    fn same_run(&self, r: &RecordView<'_>) -> bool {
        if !self.started {
            return false;
        }
        // (A key is only ever compared within one walk, while the schema it names is held; the
        // count is checked all the same, so that `run` always has a place per feature.)
        if self.schema.is_some() && self.schema == r.schema_key() && r.feature_count() == self.names.len() {
            return true;
        }
        r.feature_count() == self.names.len() && r.features().zip(&self.names).all(|(f, n)| f.name == n)
    }

    /// Merges the run that ends by name.
    fn merge(&mut self) {
        for (name, numeric) in self.names.iter().zip(&self.run) {
            match self.kinds.get_mut(name.as_str()) {
                Some(k) => *k &= *numeric,
                None => {
                    self.kinds.insert(name.clone(), *numeric);
                }
            }
        }
    }

    fn finish(mut self) -> (usize, BTreeMap<String, bool>) {
        self.merge();
        (self.rows, self.kinds)
    }

    /// Ends a walk: its run is merged, and the next record starts a new one (a schema's key is
    /// the address of what one walk read, which a later walk may reuse for another).
    fn end_walk(&mut self) {
        self.merge();
        self.run.clear();
        self.names.clear();
        self.schema = None;
        self.started = false;
    }
}

/// How a drift batch of logged predictions is stored: this, then the id of the segment that
/// holds them. The batch ([`monitoring_batch`] of the segment's successful records of the
/// batch's version) is built when a check reads it, so logging does not store every input a
/// second time.
const SEGMENT_REF_MAGIC: &[u8; 4] = b"VPSR";

/// The segment a stored drift batch refers to, if it is one of logged predictions.
pub(crate) fn segment_ref(payload: &[u8]) -> Option<&str> {
    payload.strip_prefix(SEGMENT_REF_MAGIC.as_slice()).and_then(|id| std::str::from_utf8(id).ok())
}

/// The drift batch of a version's logged predictions in a stored segment body.
pub(crate) fn logged_batch(body: &[u8], version_id: &str) -> Result<Batch> {
    let bytes = decompress(body)?;
    let (records, _) = predwire::parse_segment(&bytes)?;
    let ok: Vec<&RecordView<'_>> = records.iter().filter(|r| r.head.version_id == version_id && r.head.error.is_none()).collect();
    monitoring_batch(&ok)
}

/// Builds the monitoring batch of one version's successful records (one pass over them).
fn monitoring_batch(records: &[&RecordView<'_>]) -> Result<Batch> {
    let total: usize = records.iter().map(|r| r.rows).sum();
    // Columns by first appearance; each distinct layout of a record's features (a version's
    // records nearly always share one) is resolved to column ids once, not per record.
    let mut col_ids: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    // Per column: numeric unless some record holds text in it.
    let mut numeric: Vec<bool> = Vec::new();
    let mut layouts: Vec<Vec<usize>> = Vec::new();
    let mut rec_layout: Vec<usize> = Vec::with_capacity(records.len());
    let mut parsed: BTreeMap<(usize, usize), Vec<Value>> = BTreeMap::new();
    for (ri, r) in records.iter().enumerate() {
        let same = ri > 0 && records[ri - 1].same_features(r);
        let lid = if same {
            rec_layout[ri - 1]
        } else {
            let cols = r
                .features()
                .map(|f| {
                    *col_ids.entry(f.name).or_insert_with(|| {
                        names.push(f.name);
                        numeric.push(true);
                        names.len() - 1
                    })
                })
                .collect();
            layouts.push(cols);
            layouts.len() - 1
        };
        rec_layout.push(lid);
        if r.all_numeric() {
            continue;
        }
        for (fi, f) in r.features().enumerate() {
            let num = if f.numeric() {
                true
            } else {
                let values = f.values()?;
                let all = values.iter().all(|v| v.is_null() || v.is_number());
                parsed.insert((ri, fi), values);
                all
            };
            numeric[layouts[lid][fi]] &= num;
        }
    }
    // Per layout, each column's feature index in it (if the layout has that column).
    let inverse: Vec<Vec<Option<usize>>> = layouts
        .iter()
        .map(|cols| {
            let mut inv = vec![None; names.len()];
            for (fi, c) in cols.iter().enumerate() {
                inv[*c].get_or_insert(fi);
            }
            inv
        })
        .collect();
    let mut features = BTreeMap::new();
    for (c, name) in names.iter().enumerate() {
        let at = |ri: usize| inverse[rec_layout[ri]][c];
        let cells = records.iter().enumerate().flat_map(|(ri, r)| (0..r.rows).map(move |i| (ri, at(ri), i)));
        let column = if numeric[c] {
            Column::numeric(cells.map(|(ri, fi, i)| {
                let f = records[ri].feature(fi?)?;
                if f.numeric() { f.number(i) } else { parsed.get(&(ri, fi?)).and_then(|v| v[i].as_f64()) }
            }))
        } else {
            let mut owned: BTreeMap<(usize, usize), Vec<Value>> = BTreeMap::new();
            for (ri, r) in records.iter().enumerate() {
                if let Some(fi) = at(ri)
                    && !parsed.contains_key(&(ri, fi))
                    && let Some(f) = r.feature(fi)
                {
                    owned.insert((ri, fi), f.values()?);
                }
            }
            Column::categorical(cells.map(|(ri, fi, i)| {
                let fi = fi?;
                match parsed.get(&(ri, fi)).or_else(|| owned.get(&(ri, fi))).map(|v| &v[i]) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => Some(other.to_string()),
                }
            }))
        };
        features.insert((*name).to_owned(), column);
    }
    let mut scores = Vec::with_capacity(total);
    let mut ids = Vec::with_capacity(total);
    for r in records {
        scores.extend((0..r.rows).map(|i| r.score(i)));
        if r.rows == 1 {
            ids.push(r.head.request_id.to_owned());
        } else {
            ids.extend((0..r.rows).map(|i| format!("{}#{i}", r.head.request_id)));
        }
    }
    let any_score = scores.iter().any(Option::is_some);
    Ok(Batch { features, predictions: any_score.then_some(scores), prediction_ids: Some(ids), labels: None })
}

fn check_view(r: &RecordView<'_>) -> Result<()> {
    let bad = |m: &str| Err(Error::new(ErrorCode::InvalidManifest, format!("prediction record: {m}")));
    if r.head.request_id.is_empty() || r.head.request_id.len() > 128 || r.head.request_id.contains('#') {
        return bad("request id must be 1-128 characters without '#'");
    }
    if r.head.client_id.is_some_and(|c| c.is_empty() || c.len() > 128) {
        return bad("a caller's id is 1-128 characters");
    }
    if r.rows == 0 || r.rows > 1_000_000 {
        return bad("rows out of range");
    }
    Ok(())
}

/// The Unix time (ms) of a time-ordered request id: the gateway's ids are `req_` and a
/// UUIDv7 in 32 lowercase hex digits, whose first 12 are that time, so they sort by time as
/// text.
fn time_ordered_ms(id: &str) -> Option<u64> {
    let hex: &[u8; 32] = id.as_bytes().strip_prefix(b"req_")?.try_into().ok()?;
    // One pass: every digit checked (lowercase hex), the first 12 read as the time.
    let mut ms = 0u64;
    for (i, &b) in hex.iter().enumerate() {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        if i < 12 {
            ms = ms << 4 | u64::from(d);
        }
    }
    (hex[12] == b'7').then_some(ms)
}

/// The longest time between the first and last request id a segment's range may cover. A
/// gateway segment spans about a second (sealed at 1 s); a lookup scans the ranges that end
/// within this long after the id, so it is kept short, and a segment that spans longer gets
/// an index row per record instead.
const COVER_SPAN_MS: u64 = 10_000;

/// How a segment is found by request id without an index row per record: the range (first,
/// last) of its time-ordered request ids, if they span at most [`COVER_SPAN_MS`]. Records it
/// covers need no index row; a lookup reads the segments whose range holds the id (see
/// [`covering_until`]) and keeps the records that match. Gathered one id at a time.
#[derive(Default)]
struct Range(Option<(String, String)>);

impl Range {
    /// Adds a time-ordered id ([`time_ordered_ms`]).
    fn add(&mut self, id: &str) {
        match &mut self.0 {
            None => self.0 = Some((id.to_owned(), id.to_owned())),
            Some((lo, hi)) => {
                if id < lo.as_str() {
                    lo.clear();
                    lo.push_str(id);
                }
                if id > hi.as_str() {
                    hi.clear();
                    hi.push_str(id);
                }
            }
        }
    }

    fn covers(self) -> Option<(String, String)> {
        let (lo, hi) = self.0?;
        let span = time_ordered_ms(&hi)?.checked_sub(time_ordered_ms(&lo)?)?;
        (span <= COVER_SPAN_MS).then_some((lo, hi))
    }
}

/// The range of `records` (`ordered[i]`: whether record `i`'s id is time-ordered).
#[cfg(test)]
fn covering(records: &[RecordView<'_>], ordered: &[bool]) -> Option<(String, String)> {
    let mut range = Range::default();
    records.iter().zip(ordered).filter(|(_, o)| **o).for_each(|(r, _)| range.add(r.head.request_id));
    range.covers()
}

/// For a time-ordered id, the latest end a covered range holding it can have: a range that
/// starts at or before the id spans at most [`COVER_SPAN_MS`].
fn covering_until(id: &str) -> Option<String> {
    let t = time_ordered_ms(id)?;
    Some(format!("req_{:012x}ffffffffffffffffffff", (t + COVER_SPAN_MS).min(0xffff_ffff_ffff)))
}

/// How stored segment bodies are compressed: the whole segment as one zstd frame…
const BODY_MAGIC: &[u8; 4] = b"VPZ1";
/// …or, for a segment the gateway wrote partly in compressed blocks ([`predwire`] form `5`,
/// LZ4; `4`, zstd, before 2026-12-01), the segment with its blocks as the writer made them
/// and its plain records compressed in zstd blocks here ([`predwire::compress_runs`]): every record compressed once. (A segment was
/// once stored as it was spooled, its plain records uncompressed: such bodies read back the
/// same.)
const BLOCKS_MAGIC: &[u8; 4] = b"VPB1";

/// The smallest sealed spool file kept as a segment's body
/// ([`Registry::prepare_spooled_segment`]): a quiet gateway seals a segment of a few records
/// every second, and a file of its own would take a file-system block and an inode for
/// them; such segments go into the database, compressed.
pub const KEEP_FILE_BYTES: usize = 64 << 10;

/// Whether a sealed segment is stored as well kept as the file it is (nothing compressed
/// again) as compressed into the database: its writer compressed most of it (three-quarters
/// or more of its bytes are blocks or schemas), or the records it left plain do not compress
/// (a sample of them, at most 64 KiB, does not shrink by a fifth as an LZ4 block: noise-like
/// values). A segment of light traffic's small rounds, left plain because each was small,
/// would take several times its compressed size on disk kept as it is.
fn keeps_well(bytes: &[u8]) -> bool {
    let Some((plain, sample)) = predwire::plain_records(bytes, 64 << 10) else { return false };
    if plain * 4 <= bytes.len() {
        return true;
    }
    let mut probe = Vec::with_capacity(sample.len());
    match predwire::BlockWriter::fast().append(sample, &mut probe) {
        Ok(predwire::Written::Block) => probe.len() * 5 > sample.len() * 4,
        _ => true,
    }
}

/// The most bytes of plain records a stored segment's block holds (as the gateway's writer
/// makes them): a block is read all or nothing.
const RUN_BYTES: usize = 256 << 10;

/// The largest buffer a thread keeps for the blocks of the segments it prepares (see
/// [`predwire::each_record_streamed`]; a gateway's writer makes blocks of at most 256 KiB of
/// records, and a block of one larger record alone)…
const KEEP_PLAIN: usize = 1 << 20;

std::thread_local! {
    /// …the buffer ([`let_go_of_buffers`] frees it).
    static PLAIN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Frees the buffer this thread keeps for preparing segments (a gateway's preparer calls
/// it once segments stop coming, so a quiet gateway holds none).
pub fn let_go_of_buffers() {
    PLAIN.with_borrow_mut(|buf| *buf = Vec::new());
}

fn compress(segment: &[u8]) -> Result<Vec<u8>> {
    let mut out = BODY_MAGIC.to_vec();
    out.extend(zstd::bulk::compress(segment, 1).map_err(|_| Error::new(ErrorCode::StorageFailure, "a prediction log segment could not be compressed"))?);
    Ok(out)
}

/// The segment bytes of a stored body, in the plain forms (blocks expanded).
pub(crate) fn decompress(body: &[u8]) -> Result<Vec<u8>> {
    let corrupt = || Error::new(ErrorCode::IntegrityViolation, "a stored prediction log segment is not readable");
    if predwire::is_segment(body) {
        // A sealed spool file kept as it was written (see `Registry::prepare_spooled_segment`).
        return predwire::expand_segment(body).map(|(plain, _)| plain.into_owned()).map_err(|_| corrupt());
    }
    if let Some(spooled) = body.strip_prefix(BLOCKS_MAGIC.as_slice()) {
        // Blocks were checked when the segment was stored; one damaged since is skipped as
        // the frames of a plain segment are.
        return predwire::expand_segment(spooled).map(|(plain, _)| plain.into_owned()).map_err(|_| corrupt());
    }
    let z = body.strip_prefix(BODY_MAGIC.as_slice()).ok_or_else(corrupt)?;
    let size = zstd::zstd_safe::get_frame_content_size(z).ok().flatten().ok_or_else(corrupt)?;
    if size > 1 << 31 {
        return Err(corrupt());
    }
    zstd::bulk::decompress(z, size as usize).map_err(|_| corrupt())
}

/// What `keep` takes from each record of a stored segment body, in order. Read a block at a
/// time where the body keeps its blocks (a kept spool file, or a body stored with them), so
/// that a lookup holds one block's records rather than the whole plain segment (up to 4 MiB
/// of records since 2026-12-02); a body compressed whole, or a segment with a schema inside
/// a block, is read in its plain form (what `keep` took from the partial walk dropped).
fn each_stored<T>(body: &[u8], mut keep: impl FnMut(&RecordView<'_>, &mut Vec<T>) -> Result<()>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let segment = if predwire::is_segment(body) { Some(body) } else { body.strip_prefix(BLOCKS_MAGIC.as_slice()).filter(|s| predwire::is_segment(s)) };
    if let Some(segment) = segment {
        let mut buf = Vec::new();
        if predwire::each_record_streamed(segment, &mut buf, |r| keep(&r, &mut out))?.is_some() {
            return Ok(out);
        }
        out.clear();
    }
    let bytes = decompress(body)?;
    predwire::each_record(&bytes, |r| keep(&r, &mut out))?;
    Ok(out)
}

/// An index row of a record: request id, role, version id, caller's id.
fn index_entry(r: &RecordView<'_>) -> (String, &'static str, String, Option<String>) {
    (r.head.request_id.to_owned(), r.role(), r.head.version_id.to_owned(), r.head.client_id.map(str::to_owned))
}

/// One version's records in a segment's walk.
#[derive(Default)]
struct Group {
    records: usize,
    live: usize,
    failed: usize,
    kinds: Option<Kinds>,
}

/// What preparing a segment gathers from its records, one record at a time: the records
/// are walked without being kept (a segment holds thousands: a list of them was an eighth of
/// the gateway's preparer time in page faults, `perf record` at the bench's single-row load),
/// a block at a time.
struct Walked {
    records: usize,
    damaged: usize,
    groups: BTreeMap<String, Group>,
    range: Range,
    /// Index rows of the records that need one however the range turns out.
    index: Vec<(String, &'static str, String, Option<String>)>,
}

impl Walked {
    fn new() -> Walked {
        Walked { records: 0, damaged: 0, groups: BTreeMap::new(), range: Range::default(), index: Vec::new() }
    }

    /// Checks a record and gathers it.
    fn add(&mut self, r: &RecordView<'_>, cover: bool) -> Result<()> {
        check_view(r)?;
        self.records += 1;
        let g = match self.groups.get_mut(r.head.version_id) {
            Some(g) => g,
            None => self.groups.entry(r.head.version_id.to_owned()).or_default(),
        };
        g.records += 1;
        g.live += usize::from(!r.head.shadow);
        match r.head.error {
            Some(_) => g.failed += 1,
            None => g.kinds.get_or_insert_default().add(r)?,
        }
        let ordered = cover && time_ordered_ms(r.head.request_id).is_some();
        if ordered {
            self.range.add(r.head.request_id);
        }
        if r.head.client_id.is_some() || !ordered {
            self.index.push(index_entry(r));
        }
        Ok(())
    }

    /// The prepared segment of what was gathered (`covers`: the range, if it covers).
    fn prepared(self, segment_id: &str, instance: &str, covers: Option<(String, String)>, body: Vec<u8>, file: Option<SpooledFile>) -> PreparedSegment {
        let Walked { records, damaged, groups, index, .. } = self;
        let groups = groups
            .into_iter()
            .map(|(version_id, g)| PreparedGroup { version_id, records: g.records, live: g.live, failed: g.failed, monitored: g.kinds.map(Kinds::finish) })
            .collect();
        PreparedSegment { segment_id: segment_id.to_owned(), instance: instance.to_owned(), records, damaged, body, file, covers, index, groups }
    }
}

/// Segment and instance ids are at most 128 characters, and a segment has one.
fn check_segment_ids(segment_id: &str, instance: &str) -> Result<()> {
    if segment_id.is_empty() || segment_id.len() > 128 || instance.len() > 128 {
        return Err(Error::new(ErrorCode::InvalidManifest, "segment and instance ids are at most 128 characters"));
    }
    Ok(())
}

/// What preparing a spool segment gathers from its records ([`Walked`], with the gateway's
/// ids covered), gathered by the segment's writer as it writes it, so that the sealed file is
/// prepared without being read back ([`Registry::prepare_written_segment`]): the writer hands
/// over each run of frames it appends, with the frames of the schemas they name. A frame it
/// cannot read here (a compressed block), or a record the rules refuse, makes the digest
/// unusable: the file is then prepared from its bytes, which refuses such a record as it
/// always did.
pub struct SegmentDigest {
    walked: Option<Walked>,
}

impl Default for SegmentDigest {
    fn default() -> Self {
        SegmentDigest { walked: Some(Walked::new()) }
    }
}

impl SegmentDigest {
    /// Adds a run of plain frames as appended to the segment (`schemas`: the frames of the
    /// schemas its records name, whole).
    pub fn add_run(&mut self, schemas: &[&[u8]], frames: &[u8]) {
        let Some(walked) = self.walked.as_mut() else { return };
        let read = predwire::each_record_in_run(schemas, frames, |r| walked.add(&r, true));
        // Kinds key a run of records by their schema as this walk read it.
        walked.groups.values_mut().filter_map(|g| g.kinds.as_mut()).for_each(Kinds::end_walk);
        if !matches!(read, Ok(0)) {
            self.walked = None;
        }
    }

    /// Makes it unusable (the segment holds what it did not see).
    pub fn give_up(&mut self) {
        self.walked = None;
    }

    /// Whether it can stand for a reading of the segment.
    pub fn is_usable(&self) -> bool {
        self.walked.is_some()
    }

    /// About the bytes it holds: its index rows (one per record with a caller's id) are most
    /// of them.
    pub fn held_bytes(&self) -> usize {
        self.walked.as_ref().map_or(64, |w| {
            let rows: usize = w.index.iter().map(|(r, _, v, c)| 96 + r.len() + v.len() + c.as_ref().map_or(0, String::len)).sum();
            256 + rows + w.groups.values().map(|g| 128 + g.kinds.as_ref().map_or(0, |k| k.kinds.keys().map(|n| 64 + n.len()).sum())).sum::<usize>()
        })
    }
}

impl Registry {
    /// Stores records as one segment (see the module documentation): the form for records
    /// that were not spooled by a gateway. Storing the same segment id again writes nothing
    /// and reports a duplicate.
    pub fn record_predictions(&self, segment_id: &str, instance: &str, records: &[PredictionRecord]) -> Result<SegmentOutcome> {
        let mut seg = predwire::new_segment();
        for r in records {
            r.check()?;
            predwire::encode_record(r, &mut seg);
        }
        // Records from elsewhere get an index row each, whatever their ids look like: a
        // request id replayed in another segment is refused.
        self.store_prediction_segment(&Self::prepare(segment_id, instance, &seg, false, None)?)
    }

    /// Stores a sealed spool segment of the gateway (its bytes as the spool wrote them, in
    /// the [`predwire`] format): in one transaction, the segment (compressed, append-only,
    /// with the request-id range it covers), index rows for the records the range does not
    /// find, one drift batch per version (a reference to the segment) and one audit event per
    /// version. Frames that are damaged or cut short are skipped and counted
    /// ([`SegmentOutcome::damaged`]); a segment with a record the rules refuse is refused whole.
    pub fn record_prediction_segment(&self, segment_id: &str, instance: &str, bytes: &[u8]) -> Result<SegmentOutcome> {
        let prepared = Self::prepare_prediction_segment(segment_id, instance, bytes)?;
        self.store_prediction_segment(&prepared)
    }

    /// The work of [`Registry::record_prediction_segment`] that needs no store: the segment
    /// decoded and checked, its covered range, index rows and column kinds found, its body
    /// compressed. A
    /// gateway runs this where it may wait for idle CPU time, and the transaction
    /// ([`Registry::store_prediction_segment`]) where it may not (it holds locks other
    /// writers wait for).
    pub fn prepare_prediction_segment(segment_id: &str, instance: &str, bytes: &[u8]) -> Result<PreparedSegment> {
        Self::prepare(segment_id, instance, bytes, true, None)
    }

    /// Like [`Registry::prepare_prediction_segment`] for a sealed spool file (`bytes` are its
    /// contents) that is to be kept as the segment's body: nothing is compressed, and the store
    /// keeps the file itself (see [`Registry::keeps_segment_files`]; the embedded store links
    /// it into its data directory), so the body is not written again. The file must not change
    /// until the segment is stored. A segment under [`KEEP_FILE_BYTES`], or one of mostly
    /// plain records that compress (see `keeps_well`: light traffic's rounds), is prepared as
    /// by [`Registry::prepare_prediction_segment`] instead.
    pub fn prepare_spooled_segment(segment_id: &str, instance: &str, bytes: &[u8], path: &std::path::Path) -> Result<PreparedSegment> {
        Self::prepare(segment_id, instance, bytes, true, (bytes.len() >= KEEP_FILE_BYTES).then_some(path))
    }

    /// Whether this registry's store keeps sealed spool files as segment bodies (see
    /// [`Registry::prepare_spooled_segment`]); if not, bodies are compressed into the database.
    pub fn keeps_segment_files(&self) -> bool {
        self.store.keeps_segment_files()
    }

    /// Prepares a segment; `cover`: records with the gateway's time-ordered request ids are
    /// found through the segment's covered range (see [`Range`]) rather than index rows.
    /// Only the gateway's own segments are covered: its request ids are new UUIDv7s, unique
    /// by construction, and a segment shipped twice is stored once by its id.
    fn prepare(segment_id: &str, instance: &str, bytes: &[u8], cover: bool, file: Option<&std::path::Path>) -> Result<PreparedSegment> {
        check_segment_ids(segment_id, instance)?;
        PLAIN.with_borrow_mut(|buf| {
            let prepared = Self::prepare_in(segment_id, instance, bytes, cover, file, buf);
            if buf.capacity() > KEEP_PLAIN {
                *buf = Vec::new();
            }
            prepared
        })
    }

    /// [`Self::prepare`] with the thread's buffer for a block's records.
    fn prepare_in(segment_id: &str, instance: &str, bytes: &[u8], cover: bool, file: Option<&std::path::Path>, buf: &mut Vec<u8>) -> Result<PreparedSegment> {
        // The segment is walked a block at a time; one whose blocks hold schemas (never
        // written so since blocks were: read for old segments) is walked in its plain form,
        // as it was before (`each_record`), kept for a second walk.
        let mut walked = Walked::new();
        let mut plain = None;
        match predwire::each_record_streamed(bytes, buf, |r| walked.add(&r, cover))? {
            Some(damaged) => walked.damaged = damaged,
            None => {
                let (whole, lost) = predwire::expand_segment(bytes)?;
                walked = Walked::new();
                walked.damaged = predwire::each_record(&whole, |r| walked.add(&r, cover))? + lost;
                plain = Some(whole);
            }
        }
        let covers = std::mem::take(&mut walked.range).covers();
        if covers.is_none() && walked.index.len() < walked.records {
            let index = &mut walked.index;
            // The ids span too long to be covered: every record gets an index row, in order.
            index.clear();
            let all = |r: RecordView<'_>| {
                index.push(index_entry(&r));
                Ok(())
            };
            match &plain {
                Some(whole) => {
                    predwire::each_record(whole, all)?;
                }
                None => {
                    // (Walked a block at a time before, so again.)
                    predwire::each_record_streamed(bytes, buf, all)?.ok_or_else(|| Error::new(ErrorCode::IntegrityViolation, "a prediction log segment is not readable"))?;
                }
            }
        }
        let file = file.filter(|_| keeps_well(bytes)).map(|path| SpooledFile { path: path.to_owned(), len: bytes.len() as u64, crc32: crc32fast::hash(bytes) });
        let body = if file.is_some() {
            Vec::new()
        } else if predwire::holds_blocks(bytes) {
            // Its blocks kept, the rounds the writer left plain compressed here.
            let mut body = BLOCKS_MAGIC.to_vec();
            predwire::compress_runs_into(bytes, RUN_BYTES, &mut body)?;
            body
        } else {
            compress(bytes)?
        };
        Ok(walked.prepared(segment_id, instance, covers, body, file))
    }

    /// Prepares a sealed spool file that its writer followed as it wrote it (`digest`) to be
    /// kept as the segment's body, as [`Registry::prepare_spooled_segment`] prepares it from
    /// its bytes, without reading it back: `len` and `crc32` are the file's, `plain` the bytes
    /// of records it holds outside compressed blocks (or more). `None` when that cannot be, and
    /// the file is to be prepared from its bytes: the digest is not usable, or the file might
    /// not be kept (it is under [`KEEP_FILE_BYTES`], or more than a quarter of it is plain
    /// records, which are kept only if they do not compress), or its ids span too long to be
    /// covered (every record then needs an index row, in order). (Measured at the bench's paced single-row load, reading a sealed
    /// file back, inflating it and walking its records took the gateway 0.3 µs of CPU a
    /// request.)
    pub fn prepare_written_segment(segment_id: &str, instance: &str, digest: SegmentDigest, path: &std::path::Path, len: u64, crc32: u32, plain: u64) -> Option<Result<PreparedSegment>> {
        let mut walked = digest.walked?;
        if len < KEEP_FILE_BYTES as u64 || plain.saturating_mul(4) > len {
            return None;
        }
        if let Err(e) = check_segment_ids(segment_id, instance) {
            return Some(Err(e));
        }
        let covers = std::mem::take(&mut walked.range).covers();
        if covers.is_none() && walked.index.len() < walked.records {
            return None;
        }
        Some(Ok(walked.prepared(segment_id, instance, covers, Vec::new(), Some(SpooledFile { path: path.to_owned(), len, crc32 }))))
    }

    /// Stores a prepared segment in one transaction: the body (compressed, or the sealed file
    /// the store keeps) with its covered range, the index rows, each version's drift batch and
    /// audit event. Idempotent by segment id.
    pub fn store_prediction_segment(&self, p: &PreparedSegment) -> Result<SegmentOutcome> {
        let (segment_id, instance) = (p.segment_id.as_str(), p.instance.as_str());
        let index: Vec<IndexEntry<'_>> = p.index.iter().map(|(request_id, role, version_id, client_id)| IndexEntry { request_id, role, version_id, client_id: client_id.as_deref() }).collect();
        self.write(|tx| {
            let now = self.clock.now();
            let covers = p.covers.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
            let body = match &p.file {
                Some(f) => SegmentBody::File { path: &f.path, len: f.len, crc32: f.crc32 },
                None => SegmentBody::Inline(&p.body),
            };
            if !tx.insert_prediction_segment(segment_id, instance, p.records as i64, now, body, covers)? {
                return Ok(SegmentOutcome { duplicate: true, ..SegmentOutcome::default() });
            }
            let mut out = SegmentOutcome { records: p.records, damaged: p.damaged, ..SegmentOutcome::default() };
            // Versions first: an index entry naming an unknown version is refused by name.
            let mut versions = Vec::with_capacity(p.groups.len());
            for g in &p.groups {
                versions.push(Self::load_version(tx, &g.version_id)?);
            }
            if !index.is_empty() {
                tx.insert_prediction_index(segment_id, &index)?;
            }
            for (g, v) in p.groups.iter().zip(&versions) {
                let mut details = json!({"segment": segment_id, "instance": instance, "records": g.records,
                    "live": g.live, "shadow": g.records - g.live, "failed": g.failed});
                if let Some((rows, kinds)) = &g.monitored {
                    match Self::kinds_agree(tx, &v.id, |name| kinds.get(name).copied())? {
                        Ok(()) => {
                            let mut payload = SEGMENT_REF_MAGIC.to_vec();
                            payload.extend_from_slice(segment_id.as_bytes());
                            let record = BatchRecord {
                                id: self.ids.new_id("bt"),
                                model_version_id: v.id.clone(),
                                batch_seq: tx.max_batch_seq(&v.id)? + 1,
                                rows: *rows as i64,
                                received_at: now,
                                created_by: GATEWAY_ACTOR.into(),
                                payload,
                            };
                            tx.insert_batch(&record)?;
                            details["batch_id"] = json!(record.id);
                            details["batch_seq"] = json!(record.batch_seq);
                            details["monitored_rows"] = json!(rows);
                            out.monitored_rows += rows;
                        }
                        Err(why) => {
                            details["not_monitored"] = json!(why);
                            out.not_monitored.push((v.id.clone(), why));
                        }
                    }
                }
                if p.damaged > 0 {
                    details["damaged_frames"] = json!(p.damaged);
                }
                tx.append_audit(self.version_event(GATEWAY_ACTOR, "prediction.log", v, json!({"new": details})))?;
            }
            Ok(out)
        })
    }

    /// The stored records of a request id or a caller's id (records logged before segments
    /// were stored whole are read from where they were kept).
    fn find_predictions(tx: &mut dyn Tx, id: &str) -> Result<Vec<StoredPrediction>> {
        let mut out = tx.legacy_predictions_for_request(id)?;
        for segment_id in tx.prediction_segment_ids_for(id, covering_until(id).as_deref())? {
            let Some(body) = tx.prediction_segment_body(&segment_id)? else { continue };
            out.extend(each_stored(&body, |r, found| {
                if r.head.request_id == id || r.head.client_id == Some(id) {
                    found.push(StoredPrediction { segment_id: segment_id.clone(), record: r.to_record()? });
                }
                Ok(())
            })?);
        }
        out.sort_by(|a, b| (a.record.request_id.as_str(), a.record.role != "live", a.record.version_id.as_str()).cmp(&(b.record.request_id.as_str(), b.record.role != "live", b.record.version_id.as_str())));
        Ok(out)
    }

    /// Whether a batch's column kinds agree with the newest baseline's (the reason if not).
    pub(crate) fn kinds_match_baseline(tx: &mut dyn Tx, version_id: &str, data: &Batch) -> Result<std::result::Result<(), String>> {
        Self::kinds_agree(tx, version_id, |name| data.features.get(name).map(|c| c.kind() == "numeric"))
    }

    /// Whether the kinds of a batch's columns (`numeric(name)`: numeric or not, `None` for a
    /// column it lacks) agree with the newest baseline's (the reason if not).
    fn kinds_agree(tx: &mut dyn Tx, version_id: &str, numeric: impl Fn(&str) -> Option<bool>) -> Result<std::result::Result<(), String>> {
        let kind = |numeric: bool| if numeric { "numeric" } else { "categorical" };
        if let Some(kinds) = tx.baseline_kinds(version_id)? {
            for (name, expected) in kinds {
                let Some(here) = numeric(&name) else { continue };
                if here != expected {
                    return Ok(Err(format!("column {} is {} here but {} in the baseline", crate::ids::quote_key(&name), kind(here), kind(expected))));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Labels that arrived after the predictions, by prediction id (the gateway's request id,
    /// or the caller's own id, with `#i` for row `i` of a multi-row request). Each label is
    /// stored for every version that made that prediction (the live answer and its shadows).
    /// Returns how many labels matched a logged prediction and how many did not.
    pub fn add_prediction_labels<'a>(&self, actor: &Principal, labels: &'a [(String, String)]) -> Result<(usize, usize)> {
        if labels.len() > 100_000 {
            return Err(Error::new(ErrorCode::InvalidManifest, "at most 100,000 labels per call"));
        }
        for (id, label) in labels {
            if id.is_empty() || id.len() > 160 || label.len() > 256 {
                return Err(Error::new(ErrorCode::InvalidManifest, "prediction ids are 1-160 characters and labels at most 256"));
            }
        }
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "drift.labels", entity_type: "prediction", entity_id: "", model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::Monitor)?;
            let split = |id: &'a str| match id.rsplit_once('#') {
                Some((r, i)) if i.parse::<u64>().is_ok() => (r, Some(i)),
                _ => (id, None),
            };
            // Per label: (request id, rows, version) of every record logged under its id.
            let mut found: Vec<Vec<(String, u64, String)>> = Vec::with_capacity(labels.len());
            // The labels each segment holds records for: each segment is read and decoded once
            // per call, and only the records a label asks for are kept.
            let mut by_segment: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (li, (id, _)) in labels.iter().enumerate() {
                let (req, _) = split(id);
                found.push(tx.legacy_predictions_for_request(req)?.into_iter().map(|p| (p.record.request_id, p.record.rows, p.record.version_id)).collect());
                for segment_id in tx.prediction_segment_ids_for(req, covering_until(req).as_deref())? {
                    by_segment.entry(segment_id).or_default().push(li);
                }
            }
            for (segment_id, wanted) in &by_segment {
                let Some(body) = tx.prediction_segment_body(segment_id)? else { continue };
                let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
                for li in wanted {
                    by_id.entry(split(&labels[*li].0).0).or_default().push(*li);
                }
                let hits = each_stored(&body, |r, hits| {
                    let h = &r.head;
                    let keys = [Some(h.request_id), h.client_id.filter(|c| *c != h.request_id)];
                    for li in keys.into_iter().flatten().filter_map(|k| by_id.get(k)).flatten() {
                        hits.push((*li, (h.request_id.to_owned(), r.rows as u64, h.version_id.to_owned())));
                    }
                    Ok(())
                })?;
                for (li, hit) in hits {
                    found[li].push(hit);
                }
            }
            let mut per_version: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            let mut unmatched = 0;
            for ((id, label), found) in labels.iter().zip(found) {
                let (_, row) = split(id);
                let mut hit = false;
                for (request_id, rows, version_id) in found {
                    let pid = match row {
                        None if rows == 1 => request_id,
                        Some(i) if i.parse::<u64>().is_ok_and(|i| i < rows) && rows > 1 => format!("{request_id}#{i}"),
                        _ => continue,
                    };
                    hit = true;
                    per_version.entry(version_id).or_default().push((pid, label.clone()));
                }
                if !hit {
                    unmatched += 1;
                }
            }
            let now = self.clock.now();
            for (version_id, pairs) in &per_version {
                let v = Self::load_version(tx, version_id)?;
                tx.upsert_labels(&v.id, pairs, now)?;
                tx.append_audit(self.version_event(user.id.as_str(), "drift.labels", &v, json!({"new": {"labels": pairs.len(), "by": "prediction id"}})))?;
            }
            Ok((labels.len() - unmatched, unmatched))
        })
    }

    /// The logged records of a request (its live answer and shadow runs), by the gateway's
    /// request id or the caller's id. Logged inputs are patient data: every read is audited.
    pub fn predictions(&self, actor: &Principal, request_id: &str) -> Result<Vec<StoredPrediction>> {
        if request_id.is_empty() || request_id.len() > 160 {
            return Err(Error::new(ErrorCode::InvalidManifest, "request ids are 1-160 characters"));
        }
        let attempt = Attempt { actor: actor.user_id().as_str(), action: "prediction.read", entity_type: "prediction", entity_id: "", model: None, version: None };
        self.governed(attempt, |tx| {
            let user = Self::acting_user(tx, actor, Action::CheckDrift)?;
            let found = Self::find_predictions(tx, request_id)?;
            if let Some(first) = found.first() {
                let v = Self::load_version(tx, &first.record.version_id)?;
                let ids: Vec<&str> = found.iter().map(|p| p.record.request_id.as_str()).collect();
                tx.append_audit(self.version_event(user.id.as_str(), "prediction.read", &v, json!({"request_ids": ids, "records": found.len()})))?;
            }
            Ok(found)
        })
    }
}

/// The JSON form of a stored prediction.
pub fn prediction_json(p: &StoredPrediction) -> Value {
    let mut v = serde_json::to_value(&p.record).unwrap_or(Value::Null);
    v["segment_id"] = json!(p.segment_id);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(id: &str, rows: u64, f: Vec<Value>) -> PredictionRecord {
        PredictionRecord {
            request_id: id.into(),
            client_id: None,
            role: "live".into(),
            endpoint: "m".into(),
            version_id: "mv_1".into(),
            version: "1.0.0".into(),
            arm: "production".into(),
            digest: "00".into(),
            assignment: "random".into(),
            unit_hash: None,
            bucket: Some(1),
            at: crate::ids::Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
            latency_us: 10,
            lookup_us: None,
            status: "ok".into(),
            error: None,
            rows,
            features: [("x".to_owned(), f)].into_iter().collect(),
            scores: Some(vec![Some(0.5); rows as usize]),
            outputs: BTreeMap::new(),
            feature_statuses: None,
        }
    }

    #[test]
    fn batches_take_prediction_ids_and_kinds_from_the_records() {
        let mut seg = predwire::new_segment();
        for r in [rec("req_a", 1, vec![json!(1.0)]), rec("req_b", 2, vec![json!(null), json!(3)]), rec("req_c", 1, vec![json!("F")])] {
            predwire::encode_record(&r, &mut seg);
        }
        let (views, _) = predwire::parse_segment(&seg).unwrap();
        let batch = monitoring_batch(&[&views[0], &views[1]]).unwrap();
        assert_eq!(batch.rows().unwrap(), 3);
        assert_eq!(batch.prediction_ids.unwrap(), vec!["req_a", "req_b#0", "req_b#1"]);
        let Column::Numeric(x) = &batch.features["x"] else { panic!("numeric expected") };
        assert_eq!((x[0], x[1].is_nan(), x[2]), (1.0, true, 3.0));
        let mixed = monitoring_batch(&[&views[0], &views[2]]).unwrap();
        assert_eq!(mixed.features["x"], Column::categorical([Some("1.0"), Some("F")]));
    }

    #[test]
    fn records_with_other_features_leave_their_cells_missing() {
        let mut a = rec("req_a", 1, vec![json!(1.0)]);
        a.features.insert("y".into(), vec![json!(2.0)]);
        let mut b = rec("req_b", 2, vec![json!(3.0), json!(4.0)]);
        b.features = [("y".to_owned(), vec![json!(5.0), json!(6.0)]), ("z".to_owned(), vec![json!("u"), json!("v")])].into_iter().collect();
        let mut seg = predwire::new_segment();
        for r in [&a, &b, &a] {
            predwire::encode_record(r, &mut seg);
        }
        let (views, _) = predwire::parse_segment(&seg).unwrap();
        let batch = monitoring_batch(&views.iter().collect::<Vec<_>>()).unwrap();
        let num = |name: &str| match &batch.features[name] {
            Column::Numeric(v) => v.iter().map(|x| if x.is_nan() { None } else { Some(*x) }).collect::<Vec<_>>(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(num("x"), vec![Some(1.0), None, None, Some(1.0)]);
        assert_eq!(num("y"), vec![Some(2.0), Some(5.0), Some(6.0), Some(2.0)]);
        assert_eq!(batch.features["z"], Column::categorical([None, Some("u"), Some("v"), None]));
    }

    #[test]
    fn column_kinds_agree_with_the_batch_a_check_builds() {
        let mut a = rec("req_a", 1, vec![json!(1.0)]);
        a.features.insert("y".into(), vec![json!("2")]);
        let mut b = rec("req_b", 2, vec![json!(3.0), json!(null)]);
        b.features = [("y".to_owned(), vec![json!(5.0), json!(null)]), ("z".to_owned(), vec![json!("u"), json!(null)])].into_iter().collect();
        let mut c = rec("req_c", 1, vec![json!("F")]);
        c.version_id = "mv_2".into();
        let mut failed = rec("req_d", 1, vec![json!(1.0)]);
        failed.status = "error".into();
        failed.error = Some("shadow failed".into());
        let mut seg = predwire::new_segment();
        for r in [&a, &b, &a, &b, &c, &failed] {
            predwire::encode_record(r, &mut seg);
        }
        let (views, _) = predwire::parse_segment(&seg).unwrap();
        let v1: Vec<&RecordView<'_>> = views.iter().filter(|r| r.head.version_id == "mv_1" && r.head.error.is_none()).collect();
        let (rows, kinds) = column_kinds(&v1).unwrap();
        let batch = monitoring_batch(&v1).unwrap();
        assert_eq!(rows, batch.rows().unwrap());
        assert_eq!(rows, 6);
        let from_batch: BTreeMap<String, bool> = batch.features.iter().map(|(k, c)| (k.clone(), c.kind() == "numeric")).collect();
        assert_eq!(kinds, from_batch);
        // "2" is text in one record: y is categorical; z holds text; x is numeric.
        assert_eq!(kinds, [("x".to_owned(), true), ("y".to_owned(), false), ("z".to_owned(), false)].into_iter().collect());
        // A check reads the batch back from the stored segment: that version's successful
        // records only, in order.
        let stored = compress(&seg).unwrap();
        let back = logged_batch(&stored, "mv_1").unwrap();
        assert_eq!(back.encode(), batch.encode(), "NaN cells: compared encoded");
        assert_eq!(back.prediction_ids.as_deref().unwrap(), ["req_a", "req_b#0", "req_b#1", "req_a", "req_b#0", "req_b#1"]);
        let other = logged_batch(&stored, "mv_2").unwrap();
        assert_eq!(other.prediction_ids.unwrap(), vec!["req_c"]);
        assert_eq!(segment_ref(b"VPSRseg_1"), Some("seg_1"));
        assert_eq!(segment_ref(b"VBT1...."), None);
    }

    /// What a prepared segment gathered, comparable.
    #[allow(clippy::type_complexity)]
    fn gathered(p: &PreparedSegment) -> (usize, usize, Option<(String, String)>, Vec<(String, &'static str, String, Option<String>)>, Vec<(String, usize, usize, usize, Option<(usize, BTreeMap<String, bool>)>)>) {
        let groups = p.groups.iter().map(|g| (g.version_id.clone(), g.records, g.live, g.failed, g.monitored.clone())).collect();
        (p.records, p.damaged, p.covers.clone(), p.index.clone(), groups)
    }

    /// `n` records with the gateway's time-ordered ids, two rows each: two versions; shadow,
    /// failed and caller-identified records; text in a column of one version's records and
    /// two layouts of features in the other's; `value(i, k)` the `k`th number of record `i`.
    fn mixed_records(n: usize, value: impl Fn(usize, usize) -> Value) -> Vec<PredictionRecord> {
        let t = 1_780_000_000_000u64;
        (0..n)
            .map(|i| {
                let v = |k: usize| value(i, k);
                let mut r = rec(&format!("req_{:012x}7{i:0>19}", t + i as u64), 2, vec![v(1), v(2)]);
                if i % 3 == 0 {
                    r.version_id = "mv_2".into();
                    r.features.insert("x".into(), vec![if i % 2 == 0 { json!("high") } else { v(3) }, json!(null)]);
                }
                if i % 7 == 0 {
                    r.features.insert("y".into(), vec![v(4), v(5)]);
                }
                if i % 11 == 0 {
                    r.role = "shadow".into();
                }
                if i % 13 == 0 {
                    (r.status, r.error) = ("error".into(), Some("failed".into()));
                }
                if i % 17 == 0 {
                    r.client_id = Some(format!("c{i}"));
                }
                r
            })
            .collect()
    }

    #[test]
    fn a_segment_prepared_a_block_at_a_time_gathers_what_its_plain_form_holds() {
        let t = 1_780_000_000_000u64;
        let at = |ms: u64, tail: usize| format!("req_{ms:012x}7{tail:0>19}");
        // Two versions; shadow, failed and caller-identified records; one version's column
        // holding text in some records, and two layouts of features in the other.
        let records = mixed_records(60, |_, k| [json!(0), json!(1.5), json!(2), json!(3), json!(0), json!(1)][k].clone());
        let mut seg = blocks_around_a_plain_run(&records, 25, 30);
        // A damaged block, and a cut frame at the end.
        let damaged_at = seg.len() + 30;
        predwire::BlockWriter::fast().append(&frames(&records[..5]), &mut seg).unwrap();
        seg[damaged_at] ^= 0xff;
        seg.extend([7, 0, 0]);
        let (plain, lost) = predwire::expand_segment(&seg).unwrap();
        assert_eq!(lost, 1);
        let streamed = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        let whole = Registry::prepare_prediction_segment("s", "gw", &plain).unwrap();
        let (mut want, got) = (gathered(&whole), gathered(&streamed));
        want.1 += lost;
        assert_eq!(got, want);
        assert_eq!((got.0, got.1, got.4.len()), (60, 2, 2));
        assert!(got.2.is_some() && got.3.len() == 4, "covered, the callers' records indexed: {:?}", got.3);
        let kinds = |v: &str| got.4.iter().find(|g| g.0 == v).and_then(|g| g.4.clone()).unwrap().1;
        assert!(!kinds("mv_2")["x"]);
        assert_eq!((kinds("mv_1")["x"], kinds("mv_1")["y"]), (true, true));
        // A range too wide to cover: every record is indexed, in order, walked again.
        let mut wide = records[..3].to_vec();
        wide[2].request_id = at(t + COVER_SPAN_MS + 1, 2);
        let mut seg = predwire::new_segment();
        predwire::BlockWriter::fast().append(&frames(&wide), &mut seg).unwrap();
        let p = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        assert_eq!(p.index.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), wide.iter().map(|r| r.request_id.clone()).collect::<Vec<_>>());
        // A block holding a schema (never written so since blocks were): the segment is
        // walked in its plain form, every record read.
        let mut content = Vec::new();
        let mut w = predwire::SchemaWriter::begin(&mut content, "m", "mv_3", "3.0.0", "a", "d");
        w.feature("x", predwire::Kind::F64);
        w.finish();
        let schema = predwire::schema_frame(4, &content);
        let keyed = |out: &mut Vec<u8>, i: usize, ms: u64| {
            let id = at(t + ms, 100 + i);
            let head = predwire::Head { request_id: &id, client_id: None, shadow: false, endpoint: "", version_id: "", version: "", arm: "", digest: "", assignment: "random",
                unit_hash: None, bucket: None, at: crate::ids::Timestamp::from_micros(0).unwrap(), latency_us: 1, lookup_us: None, error: None, rows: 1, features: 1 };
            let mut f = predwire::Frame::begin_keyed(out, 4, &head);
            f.f64s([0.5].into_iter());
            f.finish(None, "{}", None);
        };
        let mut inner = schema.clone();
        keyed(&mut inner, 0, 0);
        let mut seg = predwire::new_segment();
        predwire::BlockWriter::fast().append(&[inner, frames(&records[..40])].concat(), &mut seg).unwrap();
        keyed(&mut seg, 1, 0);
        let p = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        let (plain, _) = predwire::expand_segment(&seg).unwrap();
        assert_eq!(gathered(&p), gathered(&Registry::prepare_prediction_segment("s", "gw", &plain).unwrap()));
        assert_eq!((p.records, p.damaged, p.groups.iter().find(|g| g.version_id == "mv_3").map(|g| g.records)), (42, 0, Some(2)));
        // …and, its ids too far apart to be covered, indexed record by record, in order, once
        // each (a damaged block beside it counted).
        let mut inner = schema;
        keyed(&mut inner, 0, 0);
        let mut seg = predwire::new_segment();
        predwire::BlockWriter::fast().append(&[inner, frames(&records[..3])].concat(), &mut seg).unwrap();
        keyed(&mut seg, 1, COVER_SPAN_MS + 1);
        let damaged_at = seg.len() + 30;
        predwire::BlockWriter::fast().append(&frames(&records[3..6]), &mut seg).unwrap();
        seg[damaged_at] ^= 0xff;
        let p = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        let want: Vec<String> = [at(t, 100)].into_iter().chain(records[..3].iter().map(|r| r.request_id.clone())).chain([at(t + COVER_SPAN_MS + 1, 101)]).collect();
        assert_eq!((p.covers.clone(), p.records, p.damaged), (None, 5, 1));
        assert_eq!(p.index.iter().map(|e| e.0.clone()).collect::<Vec<_>>(), want);
    }

    #[test]
    fn a_segment_its_writer_followed_is_prepared_as_reading_it_back_would() {
        let t = 1_780_000_000_000u64;
        let at = |ms: u64, tail: usize| format!("req_{ms:012x}7{tail:0>19}");
        // Records written whole: two versions; shadow, failed and caller-identified records;
        // text in a column of one version, two layouts of features in the other (values that
        // compress only so far, so that the file is kept as it is)…
        let records = mixed_records(3000, |i, k| json!(((i * 7919 + k * 104_729) % 100_003) as f64 / 7.0));
        // …and records under two schemas (as a gateway writes them), one of text.
        let schema = |id: u32, version_id: &str, name: &str, kind: predwire::Kind| {
            let mut content = Vec::new();
            let mut w = predwire::SchemaWriter::begin(&mut content, "m", version_id, "3.0.0", "a", "d");
            w.feature(name, kind);
            w.finish();
            predwire::schema_frame(id, &content)
        };
        let schemas = [schema(4, "mv_3", "k", predwire::Kind::F64), schema(5, "mv_1", "k", predwire::Kind::Str)];
        let keyed = |out: &mut Vec<u8>, i: usize| {
            let id = at(t + 2000 + i as u64, 5000 + i);
            let client = format!("k{i}");
            let head = predwire::Head { request_id: &id, client_id: i.is_multiple_of(5).then_some(client.as_str()), shadow: i.is_multiple_of(4), endpoint: "", version_id: "", version: "", arm: "",
                digest: "", assignment: "keyed", unit_hash: None, bucket: None, at: crate::ids::Timestamp::from_micros(0).unwrap(), latency_us: 1, lookup_us: None,
                error: i.is_multiple_of(9).then_some("failed"), rows: 1, features: 1 };
            let mut f = predwire::Frame::begin_keyed(out, if i.is_multiple_of(2) { 4 } else { 5 }, &head);
            if i.is_multiple_of(2) {
                f.f64s([i as f64 / 3.0].into_iter());
            } else {
                f.strs([Some("low")].into_iter());
            }
            f.finish(None, "{}", None);
        };
        // In runs as a writer appends them: the schemas first, most runs compressed, one left
        // plain (a small round).
        let mut runs: Vec<Vec<u8>> = records.chunks(300).map(frames).collect();
        for (n, run) in runs.iter_mut().enumerate() {
            (0..20).for_each(|i| keyed(run, n * 20 + i));
        }
        let plain_run = frames(&records[..3]);
        let write = |runs: &[Vec<u8>], plain_at: Option<usize>| {
            let mut file = predwire::new_segment();
            schemas.iter().for_each(|s| file.extend_from_slice(s));
            let (mut digest, mut plain) = (SegmentDigest::default(), 0u64);
            let named: Vec<&[u8]> = schemas.iter().map(Vec::as_slice).collect();
            for (n, run) in runs.iter().enumerate() {
                if Some(n) == plain_at {
                    file.extend_from_slice(run);
                    plain += run.len() as u64;
                } else {
                    let at = file.len();
                    if predwire::BlockWriter::fast().append(run, &mut file).unwrap() == predwire::Written::Plain {
                        plain += (file.len() - at) as u64;
                    }
                }
                digest.add_run(&named, run);
            }
            (file, digest, plain)
        };
        let path = std::path::Path::new("/spool/ready-s.vpl");
        let written = |(file, digest, plain): (Vec<u8>, SegmentDigest, u64)| Registry::prepare_written_segment("s", "gw", digest, path, file.len() as u64, crc32fast::hash(&file), plain);
        runs.insert(2, plain_run.clone());
        let (file, digest, plain) = write(&runs, Some(2));
        assert!(digest.is_usable() && file.len() > KEEP_FILE_BYTES, "{}", file.len());
        let want = Registry::prepare_spooled_segment("s", "gw", &file, path).unwrap();
        assert!(want.file.is_some(), "kept as the file");
        let got = written((file, digest, plain)).unwrap().unwrap();
        assert_eq!(got, want);
        assert_eq!((got.records, got.groups.len()), (3000 + 3 + 200, 3));
        let kinds = |v: &str| got.groups.iter().find(|g| g.version_id == v).and_then(|g| g.monitored.clone()).unwrap().1;
        assert_eq!((kinds("mv_1")["k"], kinds("mv_1")["x"], kinds("mv_2")["x"], kinds("mv_3")["k"]), (false, true, false, true));
        assert!(got.covers.is_some() && got.index.iter().any(|e| e.0.starts_with("req_") && e.3.as_deref() == Some("k0")));
        // Where the digest cannot stand for a reading, the file is read back: a file under
        // the size kept as it is, or mostly plain records…
        let small = write(&runs[..1], None);
        assert!(small.0.len() < KEEP_FILE_BYTES && written(small).is_none());
        let mostly_plain = write(&[plain_run.clone(), runs[0].clone(), runs[1].clone()], Some(1));
        assert!(mostly_plain.0.len() > KEEP_FILE_BYTES && written(mostly_plain).is_none());
        // …ids too far apart to be covered (every record then gets an index row, in order)…
        let mut late = records[..300].to_vec();
        late[299].request_id = at(t + COVER_SPAN_MS + 1, 1);
        let mut wide = runs.clone();
        wide[0] = frames(&late);
        let (file, digest, plain) = write(&wide, None);
        assert!(digest.is_usable() && Registry::prepare_spooled_segment("s", "gw", &file, path).unwrap().covers.is_none());
        assert!(written((file, digest, plain)).is_none());
        // …a run holding a compressed block (a record its request thread compressed), and a
        // record the rules refuse (which reading back refuses as ever).
        let mut block = Vec::new();
        predwire::BlockWriter::fast().append(&frames(&records[..50]), &mut block).unwrap();
        let mut with_block = runs.clone();
        with_block[0].extend_from_slice(&block);
        let (file, digest, plain) = write(&with_block, None);
        assert!(!digest.is_usable() && written((file, digest, plain)).is_none());
        let mut refused = runs.clone();
        let mut bad = records[0].clone();
        bad.rows = 0;
        bad.features.clear();
        bad.scores = None;
        predwire::encode_record(&bad, &mut refused[1]);
        let (file, digest, plain) = write(&refused, None);
        assert!(!digest.is_usable());
        assert!(Registry::prepare_spooled_segment("s", "gw", &file, path).is_err());
        assert!(written((file, digest, plain)).is_none());
        let mut d = SegmentDigest::default();
        d.give_up();
        assert!(!d.is_usable());
        // A version under two schemas of one width and different features, each run naming
        // one: a run's schema read at an address the run before used for the other is not
        // taken for it.
        let six = [schema(6, "mv_4", "p", predwire::Kind::F64), schema(7, "mv_4", "q", predwire::Kind::F32)];
        let one = |id: u32, i: usize| {
            let mut out = Vec::new();
            let rid = at(t + i as u64, 9000 + i);
            let head = predwire::Head { request_id: &rid, client_id: None, shadow: false, endpoint: "", version_id: "", version: "", arm: "", digest: "", assignment: "keyed",
                unit_hash: None, bucket: None, at: crate::ids::Timestamp::from_micros(0).unwrap(), latency_us: 1, lookup_us: None, error: None, rows: 1, features: 1 };
            let mut f = predwire::Frame::begin_keyed(&mut out, id, &head);
            if id == 6 {
                f.f64s([1.0].into_iter());
            } else {
                f.f32s([2.0].into_iter());
            }
            f.finish(None, "{}", None);
            out
        };
        let mut seg = predwire::new_segment();
        six.iter().for_each(|s| seg.extend_from_slice(s));
        let mut d = SegmentDigest::default();
        for i in 0..6 {
            let (id, s) = if i % 2 == 0 { (6, &six[0]) } else { (7, &six[1]) };
            let run = one(id, i);
            seg.extend_from_slice(&run);
            d.add_run(&[s.as_slice()], &run);
        }
        let read = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        let kinds = |groups: Vec<PreparedGroup>| groups.into_iter().find(|g| g.version_id == "mv_4").and_then(|g| g.monitored).unwrap().1;
        let mut walked = d.walked.unwrap();
        let covers = std::mem::take(&mut walked.range).covers();
        let followed = walked.prepared("s", "gw", covers, Vec::new(), None);
        let want = BTreeMap::from([("p".to_owned(), true), ("q".to_owned(), true)]);
        assert_eq!(kinds(read.groups), want);
        assert_eq!(kinds(followed.groups), want);
    }

    /// Records as frames, back to back.
    fn frames(rs: &[PredictionRecord]) -> Vec<u8> {
        let mut out = Vec::new();
        rs.iter().for_each(|r| predwire::encode_record(r, &mut out));
        out
    }

    /// A segment of `records`: those before `a` in an LZ4 block, those from `a` to `b` plain,
    /// the rest in another block.
    fn blocks_around_a_plain_run(records: &[PredictionRecord], a: usize, b: usize) -> Vec<u8> {
        let mut seg = predwire::new_segment();
        predwire::BlockWriter::fast().append(&frames(&records[..a]), &mut seg).unwrap();
        seg.extend(frames(&records[a..b]));
        predwire::BlockWriter::fast().append(&frames(&records[b..]), &mut seg).unwrap();
        seg
    }

    #[test]
    fn stored_bodies_are_read_a_block_at_a_time_as_their_plain_form_reads() {
        let records: Vec<PredictionRecord> = (0..30).map(|i| rec(&format!("req_{i}"), 1, vec![json!(i)])).collect();
        // A sealed spool file (kept as the body), with a plain run between its blocks; the
        // body stored with its blocks; the body compressed whole.
        let spooled = blocks_around_a_plain_run(&records, 10, 20);
        let with_blocks = Registry::prepare_prediction_segment("s", "gw", &spooled).unwrap().body;
        assert!(with_blocks.starts_with(BLOCKS_MAGIC));
        let plain = [predwire::SEGMENT_MAGIC.as_slice(), &frames(&records)].concat();
        let whole = compress(&plain).unwrap();
        // What a lookup of a few ids keeps, against the plain form's records.
        let wanted = ["req_3", "req_12", "req_29", "req_missing"];
        let lookup = |body: &[u8]| each_stored(body, |r, out| {
            if wanted.contains(&r.head.request_id) {
                out.push(r.to_record()?);
            }
            Ok(())
        });
        let want: Vec<PredictionRecord> = records.iter().filter(|r| wanted.contains(&r.request_id.as_str())).cloned().collect();
        for body in [&spooled, &with_blocks, &whole] {
            assert_eq!(lookup(body).unwrap(), want);
        }
        // A block holding a schema: read in the plain form, what the partial walk kept
        // dropped (no record twice).
        let mut content = Vec::new();
        let mut w = predwire::SchemaWriter::begin(&mut content, "m", "mv_1", "1.0.0", "a", "d");
        w.feature("x", predwire::Kind::F64);
        w.finish();
        let mut inner = frames(&records[..5]);
        inner.extend(predwire::schema_frame(4, &content));
        let mut seg = predwire::new_segment();
        predwire::BlockWriter::fast().append(&inner, &mut seg).unwrap();
        let all = each_stored(&seg, |r, out| {
            out.push(r.head.request_id.to_owned());
            Ok(())
        })
        .unwrap();
        assert_eq!(all, (0..5).map(|i| format!("req_{i}")).collect::<Vec<_>>());
        // A body that is none of these is refused as unreadable.
        assert_eq!(each_stored::<()>(b"VPB1nope", |_, _| Ok(())).unwrap_err().code(), ErrorCode::IntegrityViolation);
    }

    #[test]
    fn gateway_request_ids_are_time_ordered_and_segments_cover_their_range() {
        use crate::ids::IdGenerator;
        let id = crate::ids::UuidV7Ids.new_id("req");
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap();
        assert!(time_ordered_ms(&id).unwrap().abs_diff(now) < 60_000, "{id}");
        for other in ["req_000001", "req_a", &id.to_uppercase(), &id.replacen("req_", "rq_", 1), &format!("{}0", &id), &format!("req_{}", "0".repeat(32))] {
            assert_eq!(time_ordered_ms(other), None, "{other}");
        }
        let at = |ms: u64, tail: &str| format!("req_{ms:012x}7{tail:0>19}");
        let segment = |ids: &[String]| {
            let mut seg = predwire::new_segment();
            for i in ids {
                predwire::encode_record(&rec(i, 1, vec![json!(1.0)]), &mut seg);
            }
            seg
        };
        let t = 1_780_000_000_000u64;
        assert_eq!(time_ordered_ms(&at(t, "abc")), Some(t));
        assert_eq!(time_ordered_ms(&at(t, "abg")), None, "not hex");
        let good = at(t, "abc");
        // A digit of the time not hex, or uppercase; a multibyte character in the tail.
        for bad in [format!("{}g{}", &good[..9], &good[10..]), format!("{}E{}", &good[..9], &good[10..]), format!("{}é", &good[..good.len() - 2])] {
            assert_eq!(bad.len(), good.len());
            assert_eq!(time_ordered_ms(&bad), None, "{bad}");
        }
        let ids = [at(t + 5, "1"), at(t, "2"), "req_000001".to_owned(), at(t + 900, "3")];
        let seg = segment(&ids);
        let (views, _) = predwire::parse_segment(&seg).unwrap();
        let ordered: Vec<bool> = ids.iter().map(|i| time_ordered_ms(i).is_some()).collect();
        assert_eq!(ordered, [true, true, false, true]);
        assert_eq!(covering(&views, &ordered), Some((ids[1].clone(), ids[3].clone())));
        // Covered records need no index row; others (and records with a caller's id) do.
        let p = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        assert_eq!(p.index.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), vec!["req_000001"]);
        assert_eq!(Registry::prepare("s", "gw", &seg, false, None).unwrap().index.len(), 4, "records from elsewhere are all indexed");
        // Every id a range covers lies at or before the bound a lookup scans to.
        for id in &ids[..2] {
            assert!(covering_until(id).unwrap().as_str() >= ids[3].as_str());
        }
        assert!(covering_until("req_000001").is_none());
        // A range longer than the span covers nothing: every record is indexed.
        let wide = segment(&[at(t, "1"), at(t + COVER_SPAN_MS + 1, "2")]);
        let p = Registry::prepare_prediction_segment("s", "gw", &wide).unwrap();
        assert_eq!((p.covers.is_none(), p.index.len()), (true, 2));
        // …each once and in order, those that need one in any case (an id that is not
        // time-ordered) included.
        let wide_ids = [at(t, "1"), "req_000001".to_owned(), at(t + COVER_SPAN_MS + 1, "2")];
        let p = Registry::prepare_prediction_segment("s", "gw", &segment(&wide_ids)).unwrap();
        assert_eq!(p.index.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), wide_ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(p.records, 3);
        let edge = segment(&[at(t, "1"), at(t + COVER_SPAN_MS, "2")]);
        let p = Registry::prepare_prediction_segment("s", "gw", &edge).unwrap();
        assert_eq!((p.covers.is_some(), p.index.len()), (true, 0));
        assert!(covering_until(&at(t, "1")).unwrap() >= at(t + COVER_SPAN_MS, "2"));
    }

    #[test]
    fn stored_bodies_are_compressed_and_read_back() {
        let mut seg = predwire::new_segment();
        for i in 0..50 {
            predwire::encode_record(&rec(&format!("req_{i}"), 1, vec![json!(f64::from(i))]), &mut seg);
        }
        let body = compress(&seg).unwrap();
        assert!(body.len() * 3 < seg.len(), "{} of {}", body.len(), seg.len());
        assert_eq!(decompress(&body).unwrap(), seg);
        assert!(decompress(&body[..body.len() - 3]).is_err());
        assert!(decompress(b"VPZ1").is_err());
        let p = Registry::prepare_prediction_segment("s", "gw", &seg).unwrap();
        assert!(p.body.starts_with(BODY_MAGIC));
        // A segment the gateway wrote partly in compressed blocks keeps its blocks (not
        // compressed again) and is read back as the plain segment; a damaged block is counted.
        let mut frames = Vec::new();
        for i in 50..80 {
            predwire::encode_record(&rec(&format!("req_{i}"), 1, vec![json!(f64::from(i))]), &mut frames);
        }
        // The writer's LZ4 blocks, and zstd blocks (what it made before) alike.
        for mut w in [predwire::BlockWriter::fast(), predwire::BlockWriter::new().unwrap()] {
            let mut spooled = seg.clone();
            assert_eq!(w.append(&frames, &mut spooled).unwrap(), predwire::Written::Block);
            let p = Registry::prepare_prediction_segment("s", "gw", &spooled).unwrap();
            assert_eq!((p.records, p.damaged), (80, 0));
            // Its block is kept as the writer made it; the records it left plain are compressed
            // here (the 50 plain records alone were 3 times their compressed size).
            assert!(p.body.starts_with(BLOCKS_MAGIC));
            assert!(p.body.ends_with(&spooled[seg.len()..]));
            assert!(p.body.len() < BLOCKS_MAGIC.len() + (spooled.len() - seg.len()) + seg.len() / 2, "{} of {}", p.body.len(), spooled.len());
            assert_eq!(decompress(&p.body).unwrap(), [seg.as_slice(), frames.as_slice()].concat());
            // Kept as the sealed file itself (the embedded store's way) when most of it is
            // blocks, the same segment reads back the same; a small one, or one of plain
            // records that compress (light traffic's rounds), is compressed into the database.
            let mut big = spooled.clone();
            let mut lz4 = predwire::BlockWriter::fast();
            for _ in 0..2000 {
                assert_eq!(lz4.append(&frames, &mut big).unwrap(), predwire::Written::Block);
            }
            let file = std::path::Path::new("/spool/ready-s.vpl");
            let kept = Registry::prepare_spooled_segment("s", "gw", &big, file).unwrap();
            let f = kept.file.as_ref().expect("kept as a file");
            assert_eq!((kept.records, kept.body.is_empty(), f.path.as_path(), f.len, f.crc32), (80 + 60_000, true, file, big.len() as u64, crc32fast::hash(&big)));
            assert_eq!(decompress(&spooled).unwrap(), [seg.as_slice(), frames.as_slice()].concat());
            let small = Registry::prepare_spooled_segment("s", "gw", &spooled, file).unwrap();
            assert!(small.file.is_none() && small.body.starts_with(BLOCKS_MAGIC));
            let light: Vec<u8> = spooled.iter().copied().chain(std::iter::repeat_n(frames.clone(), 2000).flatten()).collect();
            let light = Registry::prepare_spooled_segment("s", "gw", &light, file).unwrap();
            assert!(light.file.is_none() && light.body.starts_with(BLOCKS_MAGIC) && light.records == 80 + 60_000);
            let last = spooled.len() - 1;
            spooled[last] ^= 1;
            let p = Registry::prepare_prediction_segment("s", "gw", &spooled).unwrap();
            assert_eq!((p.records, p.damaged), (50, 1));
            assert_eq!(decompress(&p.body).unwrap(), seg);
        }
        // A segment from before LZ4 blocks (its magic `VPL1`) is read as it was, plain or
        // with the zstd blocks its writer made then (stored with its blocks kept).
        let mut old = seg.clone();
        old[..4].copy_from_slice(b"VPL1");
        let p = Registry::prepare_prediction_segment("s", "gw", &old).unwrap();
        assert_eq!((p.records, p.damaged), (50, 0));
        assert_eq!(decompress(&p.body).unwrap(), old);
        predwire::BlockWriter::new().unwrap().append(&frames, &mut old).unwrap();
        let p = Registry::prepare_prediction_segment("s", "gw", &old).unwrap();
        assert_eq!((p.records, p.damaged), (80, 0));
        assert!(p.body.starts_with(BLOCKS_MAGIC) && p.body.ends_with(&old[seg.len()..]));
        assert_eq!(decompress(&p.body).unwrap(), [seg.as_slice(), frames.as_slice()].concat());
    }

    #[test]
    fn records_round_trip_and_are_checked() {
        let a = rec("req_a", 1, vec![json!(1.5)]);
        let back: PredictionRecord = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert!(rec("a#1", 1, vec![json!(1)]).check().is_err());
        assert!(rec("a", 2, vec![json!(1)]).check().is_err());
    }
}

