//! The prediction log's binary record format: how the gateway's spool writes records and how
//! stored segments keep them.
//!
//! A segment is [`SEGMENT_MAGIC`] (`VPL2`; `VPL1` before LZ4 blocks, read as before)
//! followed by frames; a frame is its payload's length (u32),
//! the payload's CRC-32 (u32) and the payload. A torn frame at the end (a crash mid-write)
//! or a damaged one is detected and counted, never guessed at. All integers are little-endian;
//! a string is its byte length (u32) and UTF-8 bytes, `u32::MAX` marking an absent one.
//!
//! A payload starts with its form byte:
//! - `1`, a whole record: request id, client id?, role byte (0 live, 1 shadow), endpoint,
//!   version id, version, arm, digest, assignment, unit hash?; bucket (u32, MAX for none);
//!   time (i64 µs since the epoch); latency (u64 µs); lookup (u64 µs, MAX for none); error?
//!   (absent when the run succeeded); rows (u32); feature count (u32) and per feature its
//!   name, a kind byte and `rows` values: `f` f32, `d` f64 (NaN missing), `i` i64, `s`
//!   strings?, `j` one JSON array text; scores flag (u8) and `rows` f64 (NaN none); the
//!   outputs as JSON object text; feature statuses? as JSON object text.
//! - `2`, a schema: what every record of one arm shares: its id (u32, unique in the segment);
//!   endpoint, version id, version, arm, digest; feature count (u32) and per feature its name
//!   and kind byte.
//! - `3`, a record under a schema: the schema's id (u32), then a whole record's fields without
//!   those the schema holds (request id, client id?, role, assignment, unit hash?, bucket,
//!   time, latency, lookup, error?, rows, feature count, per feature only its values, scores,
//!   outputs, statuses?). The gateway writes these: a single-row record of 20 features is
//!   about half the bytes of a whole one, and its names are read (and checked) once per
//!   segment, not once per record. A schema frame comes before the first record that names
//!   it; a record whose schema is missing or damaged counts as damaged (so a damaged schema
//!   frame loses the records of its arm in that segment). Records of very many columns are
//!   written whole.
//!
//! - `4`, a compressed block: the byte length (u32) of its content, the schema (u32, MAX
//!   for none) its content names when it is one record under a schema, and the content
//!   compressed with zstd; the content is whole frames of the forms above (records and
//!   schemas) back to back. Storing a segment compresses its plain runs into these
//!   ([`compress_runs`]); before 2026-12-01 the gateway's writer made them too.
//!
//! - `5`, a block as `4` with its content compressed with LZ4 (the block format, no frame):
//!   what the gateway makes ([`BlockWriter::fast`]). Its writer puts a round's records in
//!   one block (a round of 4 KiB or more); while it is behind, a large record is compressed
//!   on the thread that made it (a block of one record, whose schema the writer reads from
//!   the block's head); the schemas' frames go before them, uncompressed. LZ4 because it is
//!   cheaper to make and to read than zstd level 1 (measured on this machine with 100-row
//!   records of clinical-like values: 1.4–2.5x as fast to make, 3–4x to read) at 73–81% of
//!   its ratio; stored segments keep these blocks as they are.
//!
//! A damaged block of either kind counts as one damaged frame and loses its records; the
//! frames around it are read. Readers call [`expand_segment`] first, which gives a segment
//! of the plain forms.
//!
//! Numbers travel as the bytes the model saw: writing a record costs copies, not formatting,
//! and reading one for monitoring costs no parsing.

use crate::error::{Error, ErrorCode, Result};
use crate::ids::Timestamp;
use crate::predlog::PredictionRecord;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The first bytes of every segment written. `VPL2` since segments may hold LZ4 blocks
/// (form `5`): a binary from before them refuses such a segment as not one of its own (a
/// spooled one is set aside as failed, a stored one reported unreadable) rather than counting
/// its LZ4 blocks' records as damaged and going on without them.
pub const SEGMENT_MAGIC: &[u8; 4] = b"VPL2";
/// The first bytes of a segment from before `VPL2` (its blocks are zstd's, or LZ4's in the
/// segments of 8c793a3, the one commit that wrote LZ4 blocks under `VPL1`: read alike).
const SEGMENT_MAGIC_V1: &[u8; 4] = b"VPL1";

/// Whether `bytes` begin as a segment (either version's magic).
pub fn is_segment(bytes: &[u8]) -> bool {
    segment_body(bytes).is_some()
}

/// A segment's frames (after its magic, either version's), or `None` if it is not a segment.
fn segment_body(bytes: &[u8]) -> Option<&[u8]> {
    bytes.strip_prefix(SEGMENT_MAGIC.as_slice()).or_else(|| bytes.strip_prefix(SEGMENT_MAGIC_V1.as_slice()))
}
/// Form byte of a whole record.
const FORMAT: u8 = 1;
/// Form byte of a schema.
const SCHEMA: u8 = 2;
/// Form byte of a record under a schema.
const KEYED: u8 = 3;
/// Form byte of a compressed block of frames (zstd).
const BLOCK: u8 = 4;
/// Form byte of a compressed block of frames (LZ4).
const BLOCK_LZ4: u8 = 5;
/// The largest content a block may claim (a reader refuses to inflate more).
pub const MAX_BLOCK_CONTENT: usize = 256 << 20;
const NONE: u32 = u32::MAX;

/// The fixed part of a record, borrowed from wherever the writer has it.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// The gateway's request id.
    pub request_id: &'a str,
    /// The caller's own id.
    pub client_id: Option<&'a str>,
    /// A shadow run (else the live answer).
    pub shadow: bool,
    /// The endpoint.
    pub endpoint: &'a str,
    /// The model version id.
    pub version_id: &'a str,
    /// Its version string.
    pub version: &'a str,
    /// The arm.
    pub arm: &'a str,
    /// The artifact digest.
    pub digest: &'a str,
    /// `keyed`, `random` or `pinned`.
    pub assignment: &'a str,
    /// The unit key's keyed hash (hex; the gateway's are 32 digits, see `deploy::unit_hash`).
    pub unit_hash: Option<&'a str>,
    /// The bucket.
    pub bucket: Option<u32>,
    /// When the answer was computed.
    pub at: Timestamp,
    /// Latency (µs).
    pub latency_us: u64,
    /// Of which the feature lookup (µs).
    pub lookup_us: Option<u64>,
    /// Why the run failed (`None`: it succeeded).
    pub error: Option<&'a str>,
    /// Rows.
    pub rows: u32,
    /// How many features follow.
    pub features: u32,
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let n = u32::try_from(s.len()).unwrap_or(NONE - 1).min(NONE - 1);
    put_u32(out, n);
    out.extend_from_slice(&s.as_bytes()[..n as usize]);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => put_u32(out, NONE),
    }
}

/// A feature's kind: how its values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// f32 values (NaN: missing).
    F32 = b'f',
    /// f64 values (non-finite: missing).
    F64 = b'd',
    /// Integers.
    I64 = b'i',
    /// Text (or missing) values.
    Str = b's',
    /// One JSON array of mixed values.
    Json = b'j',
}

/// Writes what every record of one arm shares (a schema's content, without its id): equal
/// bytes are the same schema. [`SchemaWriter::begin`], one [`SchemaWriter::feature`] per
/// feature, then [`SchemaWriter::finish`].
pub struct SchemaWriter<'a> {
    out: &'a mut Vec<u8>,
    count_at: usize,
    count: u32,
}

impl<'a> SchemaWriter<'a> {
    /// Starts a schema at the end of `out` with the fields every record of an arm shares.
    pub fn begin(out: &'a mut Vec<u8>, endpoint: &str, version_id: &str, version: &str, arm: &str, digest: &str) -> SchemaWriter<'a> {
        for s in [endpoint, version_id, version, arm, digest] {
            put_str(out, s);
        }
        let count_at = out.len();
        put_u32(out, 0);
        SchemaWriter { out, count_at, count: 0 }
    }

    /// The next feature's name and kind.
    pub fn feature(&mut self, name: &str, kind: Kind) {
        put_str(self.out, name);
        self.out.push(kind as u8);
        self.count = self.count.saturating_add(1);
    }

    /// Ends the schema.
    pub fn finish(self) {
        self.out[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
    }
}

/// The frame of a schema (its content as [`SchemaWriter`] wrote it) under an id.
pub fn schema_frame(id: u32, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + content.len());
    out.extend_from_slice(&[0; 8]);
    out.push(SCHEMA);
    put_u32(&mut out, id);
    out.extend_from_slice(content);
    seal_frame(&mut out, 0);
    out
}

/// The schema a whole frame (length and CRC included) names, if it is a record under one.
pub fn frame_schema(frame: &[u8]) -> Option<u32> {
    match frame.get(8..)? {
        [KEYED, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])),
        [BLOCK | BLOCK_LZ4, _, _, _, _, a, b, c, d, ..] => Some(u32::from_le_bytes([*a, *b, *c, *d])).filter(|s| *s != NONE),
        _ => None,
    }
}

/// Whether a whole frame is a compressed block.
pub fn is_block(frame: &[u8]) -> bool {
    matches!(frame.get(8), Some(&(BLOCK | BLOCK_LZ4)))
}

/// The bytes of records a whole frame holds: a block's content length (as its head says),
/// else the frame's own length.
pub fn content_len(frame: &[u8]) -> usize {
    match frame.get(8..13) {
        Some([BLOCK | BLOCK_LZ4, a, b, c, d]) => u32::from_le_bytes([*a, *b, *c, *d]) as usize,
        _ => frame.len(),
    }
}

/// Writes the length and CRC of the frame that starts at `start` of `out`.
fn seal_frame(out: &mut [u8], start: usize) {
    let payload = &out[start + 8..];
    let len = u32::try_from(payload.len()).unwrap_or(NONE);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Writes one frame into a buffer: [`Frame::begin`] with the head, one `feature_*` call per
/// feature the head announced, then [`Frame::finish`]. A record under a schema
/// ([`Frame::begin_keyed`]) gives only each feature's values (`f32s`, `f64s`, `i64s`, `strs`;
/// `f32_row` for a row of f32 features at once), in the schema's order and of its kinds.
pub struct Frame<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Frame<'a> {
    /// Starts a frame of a whole record at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, h: &Head<'_>) -> Frame<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.push(FORMAT);
        put_str(out, h.request_id);
        put_opt(out, h.client_id);
        out.push(u8::from(h.shadow));
        for s in [h.endpoint, h.version_id, h.version, h.arm, h.digest, h.assignment] {
            put_str(out, s);
        }
        Frame::rest_of_head(out, h);
        Frame { out, start }
    }

    /// Starts a frame of a record under schema `schema` at the end of `out`: the head's
    /// endpoint, version id, version, arm and digest are the schema's, and not written.
    pub fn begin_keyed(out: &'a mut Vec<u8>, schema: u32, h: &Head<'_>) -> Frame<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.push(KEYED);
        put_u32(out, schema);
        put_str(out, h.request_id);
        put_opt(out, h.client_id);
        out.push(u8::from(h.shadow));
        put_str(out, h.assignment);
        Frame::rest_of_head(out, h);
        Frame { out, start }
    }

    fn rest_of_head(out: &mut Vec<u8>, h: &Head<'_>) {
        put_opt(out, h.unit_hash);
        put_u32(out, h.bucket.unwrap_or(NONE));
        out.extend_from_slice(&h.at.micros().to_le_bytes());
        out.extend_from_slice(&h.latency_us.to_le_bytes());
        out.extend_from_slice(&h.lookup_us.unwrap_or(u64::MAX).to_le_bytes());
        put_opt(out, h.error);
        put_u32(out, h.rows);
        put_u32(out, h.features);
    }

    /// A feature's name and kind, in a whole record's frame: its values follow (`f32s`, …).
    pub fn label(&mut self, name: &str, kind: Kind) {
        put_str(self.out, name);
        self.out.push(kind as u8);
    }

    /// A feature of f32 values (NaN: missing).
    pub fn feature_f32(&mut self, name: &str, values: impl Iterator<Item = f32>) {
        self.label(name, Kind::F32);
        self.f32s(values);
    }

    /// A feature of f64 values (non-finite: missing).
    pub fn feature_f64(&mut self, name: &str, values: impl Iterator<Item = f64>) {
        self.label(name, Kind::F64);
        self.f64s(values);
    }

    /// A feature of integers.
    pub fn feature_i64(&mut self, name: &str, values: impl Iterator<Item = i64>) {
        self.label(name, Kind::I64);
        self.i64s(values);
    }

    /// A feature of text (or missing) values.
    pub fn feature_str<'s>(&mut self, name: &str, values: impl Iterator<Item = Option<&'s str>>) {
        self.label(name, Kind::Str);
        self.strs(values);
    }

    /// A feature of mixed values, as one JSON array.
    pub fn feature_json(&mut self, name: &str, array: &str) {
        self.label(name, Kind::Json);
        put_str(self.out, array);
    }

    /// The values of an f32 feature.
    pub fn f32s(&mut self, values: impl Iterator<Item = f32>) {
        for v in values {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The values of consecutive f32 features of one row, in one copy (what [`Self::f32s`]
    /// writes for each of them in turn).
    pub fn f32_row(&mut self, values: &[f32]) {
        let at = self.out.len();
        self.out.resize(at + 4 * values.len(), 0);
        for (b, v) in self.out[at..].chunks_exact_mut(4).zip(values) {
            b.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The values of an f64 feature.
    pub fn f64s(&mut self, values: impl Iterator<Item = f64>) {
        for v in values {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The values of an integer feature.
    pub fn i64s(&mut self, values: impl Iterator<Item = i64>) {
        for v in values {
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The values of a text feature.
    pub fn strs<'s>(&mut self, values: impl Iterator<Item = Option<&'s str>>) {
        for v in values {
            put_opt(self.out, v);
        }
    }

    /// The values of a mixed feature, as one JSON array.
    pub fn json(&mut self, array: &str) {
        put_str(self.out, array);
    }

    /// Ends the frame with the scores, the outputs (a JSON object) and the feature statuses.
    pub fn finish(self, scores: Option<&mut dyn Iterator<Item = Option<f64>>>, outputs: &str, statuses: Option<&str>) {
        match scores {
            Some(it) => {
                self.out.push(1);
                for s in it {
                    self.out.extend_from_slice(&s.unwrap_or(f64::NAN).to_le_bytes());
                }
            }
            None => self.out.push(0),
        }
        put_str(self.out, outputs);
        put_opt(self.out, statuses);
        seal_frame(self.out, self.start);
    }
}

/// Appends a record as a frame (the form of records that did not come from the gateway's
/// own writer, e.g. [`crate::registry::Registry::record_predictions`]).
pub fn encode_record(r: &PredictionRecord, out: &mut Vec<u8>) {
    let head = Head {
        request_id: &r.request_id,
        client_id: r.client_id.as_deref(),
        shadow: r.role == "shadow",
        endpoint: &r.endpoint,
        version_id: &r.version_id,
        version: &r.version,
        arm: &r.arm,
        digest: &r.digest,
        assignment: &r.assignment,
        unit_hash: r.unit_hash.as_deref(),
        bucket: r.bucket,
        at: r.at,
        latency_us: r.latency_us,
        lookup_us: r.lookup_us,
        error: if r.status == "ok" { None } else { Some(r.error.as_deref().unwrap_or("")) },
        rows: u32::try_from(r.rows).unwrap_or(NONE),
        features: u32::try_from(r.features.len()).unwrap_or(NONE),
    };
    let mut f = Frame::begin(out, &head);
    for (name, col) in &r.features {
        if col.iter().all(|v| v.as_i64().is_some()) {
            f.feature_i64(name, col.iter().map(|v| v.as_i64().unwrap_or(0)));
        } else if col.iter().all(|v| v.is_null() || v.is_f64()) {
            f.feature_f64(name, col.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)));
        } else if col.iter().all(|v| v.is_null() || v.is_string()) {
            f.feature_str(name, col.iter().map(Value::as_str));
        } else {
            f.feature_json(name, &Value::Array(col.clone()).to_string());
        }
    }
    let outputs = serde_json::to_string(&r.outputs).unwrap_or_else(|_| "{}".into());
    let statuses = r.feature_statuses.as_ref().and_then(|s| serde_json::to_string(s).ok());
    let mut scores = r.scores.as_ref().map(|s| s.iter().copied());
    f.finish(scores.as_mut().map(|i| i as &mut dyn Iterator<Item = Option<f64>>), &outputs, statuses.as_deref());
}

/// Compresses runs of whole frames into block frames: zstd (form `4`) or LZ4 (form `5`),
/// reusing its compression context or hash table from block to block.
pub struct BlockWriter {
    codec: Codec,
    scratch: Vec<u8>,
}

enum Codec {
    Zstd(zstd::bulk::Compressor<'static>),
    Lz4(lz4_flex::block::CompressTable),
}

/// A writer lets go of a compression buffer that grew past this (a run of a very large
/// record would otherwise keep its memory for as long as the writer lives).
const KEEP_SCRATCH: usize = 1 << 20;

/// How [`BlockWriter::append`] wrote a run of frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// As one compressed block.
    Block,
    /// As they were: the block would not have been smaller.
    Plain,
}

impl BlockWriter {
    /// A writer at zstd level 1 (the fastest of its normal levels), for what is kept: the
    /// runs a stored segment compresses ([`compress_runs`]).
    pub fn new() -> std::io::Result<BlockWriter> {
        Ok(BlockWriter { codec: Codec::Zstd(zstd::bulk::Compressor::new(1)?), scratch: Vec::new() })
    }

    /// A writer of LZ4 blocks, for the gateway's writer and request threads, which compress
    /// while requests are served.
    pub fn fast() -> BlockWriter {
        BlockWriter { codec: Codec::Lz4(lz4_flex::block::CompressTable::large()), scratch: Vec::new() }
    }

    /// Appends `frames` (whole frames, back to back) to `out`: as one block frame, or as they
    /// are when the block would not be smaller.
    pub fn append(&mut self, frames: &[u8], out: &mut Vec<u8>) -> std::io::Result<Written> {
        let len = u32::try_from(frames.len()).map_err(std::io::Error::other)?;
        if frames.len() > MAX_BLOCK_CONTENT {
            return Err(std::io::Error::other("a block's content is at most 256 MiB"));
        }
        let (form, n) = match &mut self.codec {
            Codec::Zstd(z) => {
                // Written from the start of the buffer, up to its capacity (no zero-filling).
                self.scratch.clear();
                self.scratch.reserve(zstd::zstd_safe::compress_bound(frames.len()));
                (BLOCK, z.compress_to_buffer(frames, &mut self.scratch)?)
            }
            Codec::Lz4(table) => {
                // LZ4 writes into initialised bytes: the buffer keeps its length (zeroed
                // once, as it grows).
                let bound = lz4_flex::block::get_maximum_output_size(frames.len());
                if self.scratch.len() < bound {
                    self.scratch.resize(bound, 0);
                }
                (BLOCK_LZ4, lz4_flex::block::compress_into_with_table(frames, &mut self.scratch, table).map_err(std::io::Error::other)?)
            }
        };
        if n + 17 >= frames.len() {
            out.extend_from_slice(frames);
            self.trim();
            return Ok(Written::Plain);
        }
        // The schema of a block of one record, for the writer to put before it.
        let one = frames.len() >= 8 && 8 + u32::from_le_bytes([frames[0], frames[1], frames[2], frames[3]]) as usize == frames.len();
        let schema = if one { frame_schema(frames) } else { None };
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.push(form);
        put_u32(out, len);
        put_u32(out, schema.unwrap_or(NONE));
        out.extend_from_slice(&self.scratch[..n]);
        seal_frame(out, start);
        self.trim();
        Ok(Written::Block)
    }

    /// Lets go of a buffer a very large run grew.
    fn trim(&mut self) {
        if self.scratch.capacity() > KEEP_SCRATCH {
            self.scratch = Vec::new();
        }
    }
}

/// A segment of the plain forms (`1` to `3`) from one that may hold compressed blocks: the
/// bytes themselves when it holds none, else a copy with each block replaced by its content.
/// Also gives the number of blocks that were damaged (their CRC, length or compressed data
/// wrong) and left out. Other frames, damaged or cut short ones included, are kept as they are
/// for [`parse_segment`] to read and count.
pub fn expand_segment(bytes: &[u8]) -> Result<(std::borrow::Cow<'_, [u8]>, usize)> {
    let mut buf = Vec::new();
    let (plain, damaged) = expand_segment_into(bytes, &mut buf)?;
    Ok(match plain {
        Some(n) => {
            buf.truncate(n);
            (std::borrow::Cow::Owned(buf), damaged)
        }
        None => (std::borrow::Cow::Borrowed(bytes), damaged),
    })
}

/// [`expand_segment`] into a buffer a caller may keep from segment to segment: the plain
/// segment is `buf[..n]` when this gives `Some(n)` (`None`: `bytes` hold no block and are
/// the plain segment themselves); what `buf` holds after `n` is left from before. The buffer
/// only grows, and is never zeroed again (a fresh one per segment was a quarter of the
/// gateway's preparer time, zeroing it and faulting its pages in, when the preparer
/// expanded segments whole; it walks them a block at a time since,
/// [`each_record_streamed`]).
pub fn expand_segment_into(bytes: &[u8], buf: &mut Vec<u8>) -> Result<(Option<usize>, usize)> {
    let Some(body) = segment_body(bytes) else {
        return Err(Error::new(ErrorCode::InvalidManifest, "not a prediction log segment"));
    };
    let frames = || frames_by_length(body);
    if !frames().any(is_block) {
        return Ok((None, 0));
    }
    // Each frame with its block's content length if it is a sound block (checked once).
    let checked: Vec<(&[u8], Option<usize>)> = frames().map(|f| (f, if is_block(f) { block_size(f) } else { None })).collect();
    let consumed: usize = checked.iter().map(|(f, _)| f.len()).sum();
    let tail = &body[consumed.min(body.len())..];
    // Sized once, exactly: the plain segment is as large as a stored segment's records.
    let size: usize = checked.iter().map(|(f, s)| if is_block(f) { s.unwrap_or(0) } else { f.len() }).sum();
    // (Reserved up to a bound: a block that claims more than it holds fails below.)
    let want = (SEGMENT_MAGIC.len() + size + tail.len()).min(bytes.len().saturating_mul(64).saturating_add(1 << 20));
    buf.reserve_exact(want.saturating_sub(buf.len()));
    // Bytes written so far; `room` makes the buffer at least `n` long (zeroing only what it
    // had never held).
    let mut w = 0;
    let put = |buf: &mut Vec<u8>, w: &mut usize, src: &[u8]| {
        room(buf, *w + src.len());
        buf[*w..*w + src.len()].copy_from_slice(src);
        *w += src.len();
    };
    put(buf, &mut w, SEGMENT_MAGIC);
    let mut damaged = 0;
    // Made at the first zstd block (a gateway's segment holds LZ4 blocks).
    let mut z = None;
    for (frame, sound) in checked {
        if !is_block(frame) {
            put(buf, &mut w, frame);
            continue;
        }
        let Some(size) = sound.filter(|size| !claims_too_much(frame, *size)) else {
            damaged += 1;
            continue;
        };
        // Exactly `size` bytes of room: content longer than the block claims fails to inflate.
        room(buf, w + size);
        if inflate(frame, &mut buf[w..w + size], &mut z)? {
            w += size;
        } else {
            damaged += 1;
        }
    }
    // Fewer than 4 bytes left after the last frame: a cut frame's length, kept for the parser.
    put(buf, &mut w, tail);
    Ok((Some(w), damaged))
}

/// Makes `buf` at least `n` long, zeroing only what it had never held.
fn room(buf: &mut Vec<u8>, n: usize) {
    if buf.len() < n {
        buf.resize(n, 0);
    }
}

/// A block's content length, if the block is whole and its CRC right.
fn block_size(frame: &[u8]) -> Option<usize> {
    let payload = frame.get(8..)?;
    let whole = u32::from_le_bytes(frame.get(..4)?.try_into().ok()?) as usize == payload.len();
    let crc = u32::from_le_bytes(frame.get(4..8)?.try_into().ok()?);
    let size = u32::from_le_bytes(payload.get(1..5)?.try_into().ok()?) as usize;
    (whole && payload.len() >= 9 && size <= MAX_BLOCK_CONTENT && crc32fast::hash(payload) == crc).then_some(size)
}

/// Whether a sound block claims more content than its compressed bytes can hold: LZ4
/// expands a byte to at most 255 (one byte of a match's length each). Found before room is
/// made for it.
fn claims_too_much(frame: &[u8], size: usize) -> bool {
    frame[8] == BLOCK_LZ4 && size > (frame.len() - 17).saturating_mul(255).saturating_add(16)
}

/// Inflates a sound block ([`block_size`]) into `into`, exactly its content's length:
/// `false` if its data does not inflate to exactly that (content longer than the block
/// claims fails). `z`: a zstd decompressor, made at the first zstd block.
fn inflate(frame: &[u8], into: &mut [u8], z: &mut Option<zstd::bulk::Decompressor<'static>>) -> Result<bool> {
    let size = into.len();
    let inflated = match frame[8] {
        BLOCK_LZ4 => lz4_flex::block::decompress_into(&frame[17..], into).ok(),
        _ => {
            if z.is_none() {
                *z = Some(zstd::bulk::Decompressor::new().map_err(|_| Error::new(ErrorCode::StorageFailure, "a prediction log block could not be read"))?);
            }
            z.as_mut().and_then(|z| z.decompress_to_buffer(&frame[17..], into).ok())
        }
    };
    Ok(inflated == Some(size))
}

/// The frames of a segment's body by their lengths alone (nothing checked), the last one
/// cut short if the body is; fewer than 4 bytes after the last frame are left out.
fn frames_by_length(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = body;
    std::iter::from_fn(move || {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let frame = rest.get(..8usize.saturating_add(len)).unwrap_or(rest);
        rest = &rest[frame.len()..];
        Some(frame)
    })
}

/// Whether a segment holds compressed blocks (`false` too if it is not a segment).
pub fn holds_blocks(bytes: &[u8]) -> bool {
    frames_by_length(segment_body(bytes).unwrap_or_default()).any(is_block)
}

/// A segment with each run of plain record frames (up to `run_bytes` of them) compressed as
/// one block, its blocks and schema frames kept as they are: how a segment whose writer
/// compressed only some of its rounds is stored, so that every record is kept compressed and
/// none is compressed twice. Schema frames stay plain (a damaged block loses only its own
/// records, never the schema of later ones); a frame cut short at the end is kept as it is.
pub fn compress_runs(bytes: &[u8], run_bytes: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    compress_runs_into(bytes, run_bytes, &mut out)?;
    Ok(out)
}

/// [`compress_runs`], appending to `out` (what is there is kept: a stored body's magic).
pub fn compress_runs_into(bytes: &[u8], run_bytes: usize, out: &mut Vec<u8>) -> Result<()> {
    let Some(body) = segment_body(bytes) else {
        return Err(Error::new(ErrorCode::InvalidManifest, "not a prediction log segment"));
    };
    let failed = |_| Error::new(ErrorCode::StorageFailure, "a prediction log segment could not be compressed");
    // Made at the first plain run (a segment of blocks is only copied).
    let mut w: Option<BlockWriter> = None;
    // Never more than the segment itself (a run that would not shrink stays as it is): one
    // allocation, written once.
    out.reserve(bytes.len());
    out.extend_from_slice(SEGMENT_MAGIC);
    // The run being gathered: `body[run..at]`.
    let (mut run, mut at) = (0, 0);
    loop {
        let frame = body.get(at..at + 4).and_then(|h| body.get(at..at.saturating_add(8 + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize)));
        let record = frame.filter(|f| !matches!(f.get(8), Some(&(BLOCK | BLOCK_LZ4 | SCHEMA))));
        if let Some(f) = record
            && (at == run || at - run + f.len() <= run_bytes)
        {
            at += f.len();
            continue;
        }
        if at > run {
            if w.is_none() {
                w = Some(BlockWriter::new().map_err(failed)?);
            }
            if let Some(w) = w.as_mut() {
                w.append(&body[run..at], out).map_err(failed)?;
            }
        }
        match (frame, record) {
            // A record that starts the next run.
            (Some(_), Some(_)) => run = at,
            (Some(f), None) => {
                out.extend_from_slice(f);
                at += f.len();
                run = at;
            }
            (None, _) => {
                out.extend_from_slice(&body[at..]);
                return Ok(());
            }
        }
    }
}

/// How many bytes of a segment are record frames outside blocks (left plain by its writer),
/// and a sample of them: the first run of such frames, whole frames up to `sample` bytes (or
/// the first frame, if larger). `None` if it is not a segment.
pub fn plain_records(bytes: &[u8], sample: usize) -> Option<(usize, &[u8])> {
    let body = segment_body(bytes)?;
    let (mut plain, mut at) = (0, 0);
    // The sample: `body[from..to]`, closed at the first frame that is not a plain record.
    let (mut from, mut to, mut closed) = (None, 0, false);
    while let Some(f) = body.get(at..at + 4).and_then(|h| body.get(at..at.saturating_add(8 + u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize))) {
        if matches!(f.get(8), Some(&(BLOCK | BLOCK_LZ4 | SCHEMA))) {
            closed |= from.is_some();
        } else {
            plain += f.len();
            let start = *from.get_or_insert(at);
            if !closed && (to <= start || at + f.len() - start <= sample) {
                to = at + f.len();
            } else {
                closed = true;
            }
        }
        at += f.len();
    }
    Some((plain, from.map_or(&body[..0], |f| &body[f..to])))
}

/// A new segment's bytes (the magic), to append frames to.
pub fn new_segment() -> Vec<u8> {
    SEGMENT_MAGIC.to_vec()
}

/// One feature of a record as stored.
#[derive(Debug, Clone, Copy)]
pub struct FeatureView<'a> {
    /// The feature's name.
    pub name: &'a str,
    kind: u8,
    data: &'a [u8],
    rows: usize,
}

fn f32_value(x: f32) -> Value {
    // The shortest text that reads back as the same f32 (0.1234, not 0.12340000271797180).
    if x.is_finite() { x.to_string().parse::<f64>().map_or(Value::Null, |v| json!(v)) } else { Value::Null }
}

impl<'a> FeatureView<'a> {
    /// Whether its values are numbers (never text).
    pub fn numeric(&self) -> bool {
        matches!(self.kind, b'f' | b'd' | b'i')
    }

    /// Value `i` as a number, for a numeric feature (`None`: missing or not a number).
    pub fn number(&self, i: usize) -> Option<f64> {
        let at = |w: usize| self.data.get(i * w..i * w + w);
        let v = match self.kind {
            b'f' => f64::from(f32::from_le_bytes(at(4)?.try_into().ok()?)),
            b'd' => f64::from_le_bytes(at(8)?.try_into().ok()?),
            b'i' => i64::from_le_bytes(at(8)?.try_into().ok()?) as f64,
            _ => return None,
        };
        v.is_finite().then_some(v)
    }

    /// The values as JSON (numbers, text, null for missing).
    pub fn values(&self) -> Result<Vec<Value>> {
        match self.kind {
            b'f' => Ok(self.data.chunks_exact(4).map(|c| f32_value(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()),
            b'd' => Ok(self.data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect()),
            b'i' => Ok(self.data.chunks_exact(8).map(|c| json!(i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))).collect()),
            b's' => {
                let mut r = Reader(self.data);
                (0..self.rows).map(|_| Ok(r.opt_str()?.map_or(Value::Null, |s| Value::String(s.to_owned())))).collect()
            }
            _ => {
                let mut r = Reader(self.data);
                let text = r.str()?;
                match serde_json::from_str::<Vec<Value>>(text) {
                    Ok(v) if v.len() == self.rows => Ok(v),
                    _ => Err(corrupt()),
                }
            }
        }
    }
}

/// A record as stored, borrowed from its segment: what monitoring and the index need without
/// building the whole record.
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    /// The fixed part.
    pub head: Head<'a>,
    /// Rows.
    pub rows: usize,
    features: Features<'a>,
    scores: Option<&'a [u8]>,
    outputs: &'a str,
    statuses: Option<&'a str>,
}

fn corrupt() -> Error {
    Error::new(ErrorCode::IntegrityViolation, "a prediction record is not readable")
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| corrupt())?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| corrupt())?))
    }
    fn opt_str(&mut self) -> Result<Option<&'a str>> {
        let n = self.u32()?;
        if n == NONE {
            return Ok(None);
        }
        std::str::from_utf8(self.take(n as usize)?).map(Some).map_err(|_| corrupt())
    }
    fn str(&mut self) -> Result<&'a str> {
        self.opt_str()?.ok_or_else(corrupt)
    }
}

/// A record's features: listed one by one, or the values of a schema whose kinds all have a
/// fixed width (found by offset, so reading such a record builds no list).
#[derive(Debug, Clone)]
enum Features<'a> {
    Listed(Vec<FeatureView<'a>>),
    Fixed(std::sync::Arc<Layout<'a>>, &'a [u8]),
}

/// A schema's features.
#[derive(Debug)]
struct Layout<'a> {
    features: Vec<(&'a str, u8)>,
    /// Where each feature's values start in a one-row record, and where they end, if every
    /// kind has a fixed width (values are stored feature by feature, so in a record of `rows`
    /// rows feature `i` starts at `rows * offsets[i]`).
    offsets: Option<Vec<usize>>,
}

/// A schema frame as read.
struct SchemaView<'a> {
    id: u32,
    endpoint: &'a str,
    version_id: &'a str,
    version: &'a str,
    arm: &'a str,
    digest: &'a str,
    layout: std::sync::Arc<Layout<'a>>,
}

fn schema_view(payload: &[u8]) -> Result<SchemaView<'_>> {
    let mut r = Reader(payload);
    if r.u8()? != SCHEMA {
        return Err(corrupt());
    }
    let id = r.u32()?;
    let (endpoint, version_id, version, arm, digest) = (r.str()?, r.str()?, r.str()?, r.str()?, r.str()?);
    let n = r.u32()? as usize;
    let mut features = Vec::with_capacity(n.min(4096));
    for _ in 0..n {
        let name = r.str()?;
        let kind = r.u8()?;
        if !matches!(kind, b'f' | b'd' | b'i' | b's' | b'j') {
            return Err(corrupt());
        }
        features.push((name, kind));
    }
    if !r.0.is_empty() {
        return Err(corrupt());
    }
    let mut offsets = Vec::with_capacity(features.len() + 1);
    let mut at = 0usize;
    let mut fixed = true;
    for (_, kind) in &features {
        offsets.push(at);
        match kind {
            b'f' => at += 4,
            b'd' | b'i' => at += 8,
            _ => {
                fixed = false;
                break;
            }
        }
    }
    offsets.push(at);
    let offsets = fixed.then_some(offsets);
    Ok(SchemaView { id, endpoint, version_id, version, arm, digest, layout: std::sync::Arc::new(Layout { features, offsets }) })
}

/// The stored values of a feature of `kind`.
fn feature_data<'a>(r: &mut Reader<'a>, kind: u8, rows: usize) -> Result<&'a [u8]> {
    Ok(match kind {
        b'f' => r.take(rows.checked_mul(4).ok_or_else(corrupt)?)?,
        b'd' | b'i' => r.take(rows.checked_mul(8).ok_or_else(corrupt)?)?,
        b's' => {
            let start = r.0;
            for _ in 0..rows {
                r.opt_str()?;
            }
            &start[..start.len() - r.0.len()]
        }
        b'j' => {
            let start = r.0;
            r.str()?;
            &start[..start.len() - r.0.len()]
        }
        _ => return Err(corrupt()),
    })
}

/// The fields of a record after its strings: unit hash? to feature count.
struct Middle<'a> {
    unit_hash: Option<&'a str>,
    bucket: Option<u32>,
    at: Timestamp,
    latency_us: u64,
    lookup_us: Option<u64>,
    error: Option<&'a str>,
    rows: usize,
    features: usize,
}

fn middle<'a>(r: &mut Reader<'a>) -> Result<Middle<'a>> {
    Ok(Middle {
        unit_hash: r.opt_str()?,
        bucket: Some(r.u32()?).filter(|b| *b != NONE),
        at: Timestamp::from_micros(r.u64()? as i64).ok_or_else(corrupt)?,
        latency_us: r.u64()?,
        lookup_us: Some(r.u64()?).filter(|l| *l != u64::MAX),
        error: r.opt_str()?,
        rows: r.u32()? as usize,
        features: r.u32()? as usize,
    })
}

/// Reads the end of a record (scores, outputs, statuses) into its view.
fn finish_view<'a>(r: &mut Reader<'a>, head: Head<'a>, rows: usize, features: Features<'a>) -> Result<RecordView<'a>> {
    let scores = match r.u8()? {
        0 => None,
        _ => Some(r.take(rows.checked_mul(8).ok_or_else(corrupt)?)?),
    };
    let outputs = r.str()?;
    let statuses = r.opt_str()?;
    Ok(RecordView { head, rows, features, scores, outputs, statuses })
}

/// Reads the payload of a whole record's frame.
fn view(payload: &[u8]) -> Result<RecordView<'_>> {
    let mut r = Reader(payload);
    if r.u8()? != FORMAT {
        return Err(corrupt());
    }
    let request_id = r.str()?;
    let client_id = r.opt_str()?;
    let shadow = r.u8()? == 1;
    let (endpoint, version_id, version, arm, digest, assignment) = (r.str()?, r.str()?, r.str()?, r.str()?, r.str()?, r.str()?);
    let m = middle(&mut r)?;
    let mut features = Vec::with_capacity(m.features.min(4096));
    for _ in 0..m.features {
        let name = r.str()?;
        let kind = r.u8()?;
        let data = feature_data(&mut r, kind, m.rows)?;
        features.push(FeatureView { name, kind, data, rows: m.rows });
    }
    let features = Features::Listed(features);
    let head = Head {
        request_id, client_id, shadow, endpoint, version_id, version, arm, digest, assignment,
        unit_hash: m.unit_hash, bucket: m.bucket, at: m.at, latency_us: m.latency_us, lookup_us: m.lookup_us, error: m.error,
        rows: m.rows as u32, features: m.features as u32,
    };
    finish_view(&mut r, head, m.rows, features)
}

/// Reads the payload of a record under a schema, given the segment's schemas so far.
fn keyed_view<'a>(payload: &'a [u8], schemas: &[SchemaView<'a>]) -> Result<RecordView<'a>> {
    let mut r = Reader(payload);
    if r.u8()? != KEYED {
        return Err(corrupt());
    }
    let id = r.u32()?;
    let s = schemas.iter().rev().find(|s| s.id == id).ok_or_else(corrupt)?;
    let request_id = r.str()?;
    let client_id = r.opt_str()?;
    let shadow = r.u8()? == 1;
    let assignment = r.str()?;
    let m = middle(&mut r)?;
    let layout = &s.layout;
    if m.features != layout.features.len() {
        return Err(corrupt());
    }
    let features = match &layout.offsets {
        Some(o) => Features::Fixed(layout.clone(), r.take(m.rows.checked_mul(o[o.len() - 1]).ok_or_else(corrupt)?)?),
        None => {
            let mut features = Vec::with_capacity(m.features);
            for &(name, kind) in &layout.features {
                let data = feature_data(&mut r, kind, m.rows)?;
                features.push(FeatureView { name, kind, data, rows: m.rows });
            }
            Features::Listed(features)
        }
    };
    let head = Head {
        request_id, client_id, shadow, endpoint: s.endpoint, version_id: s.version_id, version: s.version, arm: s.arm, digest: s.digest, assignment,
        unit_hash: m.unit_hash, bucket: m.bucket, at: m.at, latency_us: m.latency_us, lookup_us: m.lookup_us, error: m.error,
        rows: m.rows as u32, features: m.features as u32,
    };
    finish_view(&mut r, head, m.rows, features)
}

impl<'a> RecordView<'a> {
    /// How many features it has.
    pub fn feature_count(&self) -> usize {
        match &self.features {
            Features::Listed(f) => f.len(),
            Features::Fixed(l, _) => l.features.len(),
        }
    }

    /// Feature `i`.
    pub fn feature(&self, i: usize) -> Option<FeatureView<'a>> {
        match &self.features {
            Features::Listed(f) => f.get(i).copied(),
            Features::Fixed(l, values) => {
                let (name, kind) = *l.features.get(i)?;
                let o = l.offsets.as_ref()?;
                let data = values.get(self.rows.checked_mul(o[i])?..self.rows.checked_mul(o[i + 1])?)?;
                Some(FeatureView { name, kind, data, rows: self.rows })
            }
        }
    }

    /// The features in order.
    pub fn features(&self) -> impl Iterator<Item = FeatureView<'a>> + '_ {
        (0..self.feature_count()).filter_map(|i| self.feature(i))
    }

    /// Whether it has the same features (names, in order) as `other`: records under one
    /// schema always do, and are not compared name by name.
    pub fn same_features(&self, other: &RecordView<'_>) -> bool {
        if let (Features::Fixed(a, _), Features::Fixed(b, _)) = (&self.features, &other.features)
            && std::ptr::eq(std::sync::Arc::as_ptr(a).cast::<u8>(), std::sync::Arc::as_ptr(b).cast::<u8>())
        {
            return true;
        }
        self.feature_count() == other.feature_count() && self.features().zip(other.features()).all(|(a, b)| a.name == b.name)
    }

    /// What identifies the schema of a record under one, while the schemas read from its
    /// segment are held (as a walk of the segment does): records with equal keys have the
    /// same features. `None` for a whole record (and one under a schema of variable-width
    /// kinds).
    pub fn schema_key(&self) -> Option<usize> {
        match &self.features {
            Features::Fixed(layout, _) => Some(std::sync::Arc::as_ptr(layout).cast::<u8>() as usize),
            Features::Listed(_) => None,
        }
    }

    /// Whether every feature is numeric (known without a look at each for records under a
    /// schema of fixed-width kinds).
    pub fn all_numeric(&self) -> bool {
        match &self.features {
            Features::Fixed(..) => true,
            Features::Listed(f) => f.iter().all(FeatureView::numeric),
        }
    }

    /// `live` or `shadow`.
    pub fn role(&self) -> &'static str {
        if self.head.shadow { "shadow" } else { "live" }
    }

    /// The monitored score of row `i`.
    pub fn score(&self, i: usize) -> Option<f64> {
        let s = self.scores?.get(i * 8..i * 8 + 8)?;
        Some(f64::from_le_bytes(s.try_into().ok()?)).filter(|v| !v.is_nan())
    }

    /// Whether the record has scores.
    pub fn has_scores(&self) -> bool {
        self.scores.is_some()
    }

    /// The whole record.
    pub fn to_record(&self) -> Result<PredictionRecord> {
        let mut features = BTreeMap::new();
        for f in self.features() {
            features.insert(f.name.to_owned(), f.values()?);
        }
        let h = &self.head;
        Ok(PredictionRecord {
            request_id: h.request_id.to_owned(),
            client_id: h.client_id.map(str::to_owned),
            role: self.role().into(),
            endpoint: h.endpoint.to_owned(),
            version_id: h.version_id.to_owned(),
            version: h.version.to_owned(),
            arm: h.arm.to_owned(),
            digest: h.digest.to_owned(),
            assignment: h.assignment.to_owned(),
            unit_hash: h.unit_hash.map(str::to_owned),
            bucket: h.bucket,
            at: h.at,
            latency_us: h.latency_us,
            lookup_us: h.lookup_us,
            status: if h.error.is_some() { "error" } else { "ok" }.into(),
            error: h.error.map(str::to_owned),
            rows: self.rows as u64,
            features,
            scores: self.scores.map(|_| (0..self.rows).map(|i| self.score(i)).collect()),
            outputs: serde_json::from_str(self.outputs).map_err(|_| corrupt())?,
            feature_statuses: self.statuses.map(serde_json::from_str).transpose().map_err(|_| corrupt())?,
        })
    }
}

/// How many frames a segment's body holds, by their lengths alone (at most: schema frames and
/// damaged ones are counted too), and never more than one a 32 bytes (a damaged body of tiny
/// frames reserves no more than that).
fn frames(body: &[u8]) -> usize {
    frames_by_length(body).count().min(body.len() / 32)
}

/// The records of a segment, and how many frames were damaged or cut short (skipped).
pub fn parse_segment(bytes: &[u8]) -> Result<(Vec<RecordView<'_>>, usize)> {
    let body = segment_body(bytes).unwrap_or_default();
    // Sized once: a segment holds thousands of records, and a vector grown by doubling
    // copied them all again and again into fresh memory (in the gateway's preparer, a sixth
    // of its time with its page faults, `perf record` at the bench's single-row load).
    let mut out = Vec::with_capacity(frames(body));
    let damaged = each_record(bytes, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok((out, damaged))
}

/// Calls `f` with each record of a segment in order, without holding them all (what
/// storing a segment needs: its records are looked at one by one); returns how many frames
/// were damaged or cut short (skipped). An error of `f` ends the walk and is returned.
pub fn each_record<'a>(bytes: &'a [u8], f: impl FnMut(RecordView<'a>) -> Result<()>) -> Result<usize> {
    let Some(rest) = segment_body(bytes) else {
        return Err(Error::new(ErrorCode::InvalidManifest, "not a prediction log segment"));
    };
    walk(rest, &mut Vec::new(), true, f)
}

/// [`each_record`] over a run of frames as a writer appends them to a segment, after the
/// frames of the schemas its records name (`schemas`, each a whole frame): what a writer
/// that follows its own records reads back of a round, without the segment. Their CRCs are
/// not checked (they guard what is stored; these frames were just encoded in memory). Gives
/// how many frames could not be read (never, for frames this process encoded) or are not
/// plain frames (a compressed block is not read here), counted alike.
pub fn each_record_in_run<'a>(schemas: &[&'a [u8]], frames: &'a [u8], f: impl FnMut(RecordView<'a>) -> Result<()>) -> Result<usize> {
    let mut views = Vec::with_capacity(schemas.len());
    let mut damaged = 0;
    for s in schemas {
        match whole_frame(s).map(|frame| read_payload(&frame[8..], &[])) {
            Some(Read::Schema(v)) => views.push(v),
            _ => damaged += 1,
        }
    }
    Ok(damaged + walk(frames, &mut views, false, f)?)
}

/// Walks whole frames back to back (their CRCs checked if `check`), keeping the schemas it
/// reads for the records after them; gives how many frames were damaged or cut short (the
/// last).
fn walk<'a>(mut rest: &'a [u8], schemas: &mut Vec<SchemaView<'a>>, check: bool, mut f: impl FnMut(RecordView<'a>) -> Result<()>) -> Result<usize> {
    let mut damaged = 0;
    while !rest.is_empty() {
        let Some(frame) = whole_frame(rest) else {
            // Cut short: the last frame of a segment a crash interrupted.
            damaged += 1;
            break;
        };
        rest = &rest[frame.len()..];
        match if check { read_frame(frame, schemas) } else { read_payload(&frame[8..], schemas) } {
            Read::Record(r) => f(r)?,
            Read::Schema(s) => schemas.push(s),
            Read::Damaged => damaged += 1,
        }
    }
    Ok(damaged)
}

/// [`each_record`] of a segment that may hold compressed blocks, without its plain form
/// made whole: each block is inflated into `buf` (a buffer the caller keeps from segment to
/// segment) and its records walked before the next block is. A preparer held a sealed
/// segment's plain form whole, several times its file for records that compress well.
/// The records come as [`expand_segment`] then [`each_record`] give them, in order, and so
/// does the count of damaged frames and blocks; a block's content that ends inside a frame
/// (never written so) counts that frame as cut and the walk goes on after the block.
/// `Ok(None)` (after `f` saw some records, perhaps) when a block holds a schema frame,
/// which a record after the block may name: the walk needs the whole plain segment then
/// (writers put schemas outside blocks; [`compress_runs`] keeps them there).
pub fn each_record_streamed(bytes: &[u8], buf: &mut Vec<u8>, mut f: impl FnMut(RecordView<'_>) -> Result<()>) -> Result<Option<usize>> {
    let Some(mut rest) = segment_body(bytes) else {
        return Err(Error::new(ErrorCode::InvalidManifest, "not a prediction log segment"));
    };
    let mut schemas = Vec::new();
    let mut damaged = 0;
    let mut z = None;
    while !rest.is_empty() {
        let Some(frame) = whole_frame(rest) else {
            // Cut short: the last frame of a segment a crash interrupted.
            damaged += 1;
            break;
        };
        rest = &rest[frame.len()..];
        if !is_block(frame) {
            match read_frame(frame, &schemas) {
                Read::Record(r) => f(r)?,
                Read::Schema(s) => schemas.push(s),
                Read::Damaged => damaged += 1,
            }
            continue;
        }
        let Some(size) = block_size(frame).filter(|size| !claims_too_much(frame, *size)) else {
            damaged += 1;
            continue;
        };
        room(buf, size);
        if !inflate(frame, &mut buf[..size], &mut z)? {
            damaged += 1;
            continue;
        }
        let mut inner = &buf[..size];
        while !inner.is_empty() {
            let Some(frame) = whole_frame(inner) else {
                damaged += 1;
                break;
            };
            inner = &inner[frame.len()..];
            match read_frame(frame, &schemas) {
                Read::Record(r) => f(r)?,
                Read::Schema(_) => return Ok(None),
                Read::Damaged => damaged += 1,
            }
        }
    }
    Ok(Some(damaged))
}

/// A whole frame as [`each_record`] reads it (returned by value, never stored: boxing the
/// record would allocate once per record).
#[allow(clippy::large_enum_variant)]
enum Read<'a> {
    Record(RecordView<'a>),
    Schema(SchemaView<'a>),
    /// Its CRC wrong, or its payload not readable.
    Damaged,
}

/// The whole frame at the front of `rest` (`None` if it is cut short: fewer than 8 bytes, or
/// fewer than its length says).
fn whole_frame(rest: &[u8]) -> Option<&[u8]> {
    let h = rest.get(..8)?;
    rest.get(..8usize.saturating_add(u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize))
}

/// Reads a whole frame ([`whole_frame`]) with the schemas read before it.
fn read_frame<'a>(frame: &'a [u8], schemas: &[SchemaView<'a>]) -> Read<'a> {
    let payload = &frame[8..];
    if crc32fast::hash(payload) != u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]) {
        return Read::Damaged;
    }
    read_payload(payload, schemas)
}

/// Reads a frame's payload (its CRC checked or trusted by the caller).
fn read_payload<'a>(payload: &'a [u8], schemas: &[SchemaView<'a>]) -> Read<'a> {
    let read = match payload.first() {
        Some(&SCHEMA) => schema_view(payload).map(Read::Schema),
        Some(&KEYED) => keyed_view(payload, schemas).map(Read::Record),
        _ => view(payload).map(Read::Record),
    };
    read.unwrap_or(Read::Damaged)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> PredictionRecord {
        serde_json::from_value(json!({
            "request_id": "req_1", "client_id": "c", "role": "shadow", "endpoint": "m", "version_id": "mv_1", "version": "1.0.0",
            "arm": "b", "digest": "ab", "assignment": "keyed", "unit_hash": "ff", "bucket": 12, "at": "2026-11-29T10:00:00.123456Z",
            "latency_us": 90, "lookup_us": 4, "status": "error", "error": "shadow failed", "rows": 3,
            "features": {"age": [50, 51, 52], "bmi": [21.5, null, 30.25], "sex": ["F", null, "M"], "mixed": [1, "x", null]},
            "scores": [0.5, null, 0.25], "outputs": {"label": [1, 0, 1]}, "feature_statuses": {"bmi": ["present", "missing", "present"]}
        }))
        .unwrap()
    }

    /// `n` whole records (request ids `req_{first}`…), as frames back to back.
    fn frames(first: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in first..first + n {
            let mut r = record();
            r.request_id = format!("req_{i}");
            encode_record(&r, &mut out);
        }
        out
    }

    /// The form byte of each whole frame of a segment, in order (a cut frame at the end left out).
    fn forms(seg: &[u8]) -> Vec<u8> {
        let mut rest = &seg[SEGMENT_MAGIC.len()..];
        std::iter::from_fn(|| {
            let len = 8 + u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            let f = rest.get(..len)?;
            rest = &rest[len..];
            Some(f[8])
        })
        .collect()
    }

    fn ids(seg: &[u8]) -> (Vec<String>, usize) {
        let (plain, lost) = expand_segment(seg).unwrap();
        let (views, damaged) = parse_segment(&plain).unwrap();
        (views.iter().map(|v| v.head.request_id.to_owned()).collect(), lost + damaged)
    }

    #[test]
    fn plain_records_are_counted_and_sampled_from_the_first_run() {
        let frame = |n: usize| {
            let mut f = Vec::new();
            encode_record(&PredictionRecord { request_id: format!("req_{n}"), ..record() }, &mut f);
            f
        };
        let (a, b, c) = (frame(1), frame(2), frame(3));
        let mut seg = new_segment();
        seg.extend_from_slice(&a);
        seg.extend_from_slice(&b);
        BlockWriter::fast().append(&[a.as_slice(); 40].concat(), &mut seg).unwrap();
        seg.extend_from_slice(&c);
        let body = &seg[SEGMENT_MAGIC.len()..];
        let plain = a.len() + b.len() + c.len();
        // The first run whole (closed by the block), or as much of it as fits in whole frames,
        // or its first frame when that alone is larger.
        assert_eq!(plain_records(&seg, 1 << 20), Some((plain, &body[..a.len() + b.len()])));
        assert_eq!(plain_records(&seg, a.len() + b.len() - 1), Some((plain, &body[..a.len()])));
        assert_eq!(plain_records(&seg, 1), Some((plain, &body[..a.len()])));
        assert_eq!(plain_records(&new_segment(), 10), Some((0, &[][..])));
        assert_eq!(plain_records(b"nope", 10), None);
    }

    #[test]
    fn blocks_hold_whole_frames_and_a_damaged_one_loses_only_its_own() {
        // zstd's blocks (form 4) and LZ4's (form 5) alike.
        blocks_of(BlockWriter::new().unwrap(), BLOCK);
        blocks_of(BlockWriter::fast(), BLOCK_LZ4);
        // One segment may hold both (a stored body: the writer's LZ4 blocks beside the zstd
        // blocks its plain runs were compressed into): each read with its own codec, in order.
        let mut seg = new_segment();
        BlockWriter::new().unwrap().append(&frames(0, 20), &mut seg).unwrap();
        BlockWriter::fast().append(&frames(20, 20), &mut seg).unwrap();
        BlockWriter::new().unwrap().append(&frames(40, 20), &mut seg).unwrap();
        assert_eq!(forms(&seg), [BLOCK, BLOCK_LZ4, BLOCK]);
        assert_eq!(ids(&seg), ((0..60).map(|i| format!("req_{i}")).collect(), 0));
        assert_eq!(expand_segment(&seg).unwrap().0.as_ref(), [SEGMENT_MAGIC.as_slice(), &frames(0, 60)].concat().as_slice());
    }

    /// A segment of blocks, sound and damaged: a sound LZ4 block of records `0..n`; one of the
    /// 5 after them whose CRC is wrong; one of the 20 after those whose CRC is right but which
    /// claims a byte more than it holds; `plain` as a plain frame; a sound zstd block of the 5
    /// after those.
    fn damaged_blocks(n: usize, plain: &PredictionRecord) -> Vec<u8> {
        let mut seg = new_segment();
        BlockWriter::fast().append(&frames(0, n), &mut seg).unwrap();
        let bad_crc = seg.len();
        BlockWriter::fast().append(&frames(n, 5), &mut seg).unwrap();
        seg[bad_crc + 20] ^= 0xff;
        let mut forged = Vec::new();
        BlockWriter::fast().append(&frames(n + 5, 20), &mut forged).unwrap();
        let claim = u32::from_le_bytes(forged[9..13].try_into().unwrap()) + 1;
        forged[9..13].copy_from_slice(&claim.to_le_bytes());
        seal_frame(&mut forged, 0);
        seg.extend(&forged);
        encode_record(plain, &mut seg);
        BlockWriter::new().unwrap().append(&frames(n + 25, 5), &mut seg).unwrap();
        seg
    }

    /// The request ids and damaged count of a streamed walk (`None`: it needs the plain form).
    fn streamed_ids(seg: &[u8], buf: &mut Vec<u8>) -> Option<(Vec<String>, usize)> {
        let mut out = Vec::new();
        let damaged = each_record_streamed(seg, buf, |r| {
            out.push(r.head.request_id.to_owned());
            Ok(())
        })
        .unwrap()?;
        Some((out, damaged))
    }

    #[test]
    fn a_streamed_walk_reads_what_the_plain_form_holds_a_block_at_a_time() {
        let mut buf = Vec::new();
        // Sound LZ4 and zstd blocks, one whose CRC is wrong, one that claims more than it
        // holds, a plain record between them, a cut length at the end.
        let seg = damaged_blocks(40, &PredictionRecord { request_id: "req_plain".into(), ..record() });
        let plain_len = expand_segment(&seg).unwrap().0.len();
        for tail in [&[][..], &[1, 2, 3], &[9, 0, 0, 0, 0, 0, 0, 0, 1]] {
            let seg = [seg.as_slice(), tail].concat();
            let (want, damaged) = ids(&seg);
            assert_eq!(want.len(), 40 + 1 + 5);
            assert_eq!(damaged, 2 + usize::from(!tail.is_empty()));
            assert_eq!(streamed_ids(&seg, &mut buf), Some((want, damaged)));
        }
        // One block's records at a time: the buffer holds the largest block's, never the plain form.
        assert_eq!(buf.len(), frames(0, 40).len());
        assert!(buf.len() < plain_len);
        // Records under schemas inside blocks, their schemas outside (as the gateway's writer
        // puts them): among them one damaged inside its block, and one under a schema the
        // segment lacks.
        let mut seg = new_segment();
        let r = |i: usize| PredictionRecord { request_id: format!("req_{i}"), ..record() };
        keyed(&mut seg, 1, true, &r(0));
        let mut content = Vec::new();
        for i in 1..6 {
            keyed(&mut content, 1, false, &r(i));
        }
        let damaged_at = content.len() + 30;
        keyed(&mut content, 1, false, &r(6));
        content[damaged_at] ^= 0xff;
        keyed(&mut content, 7, false, &r(7));
        keyed(&mut content, 1, false, &r(8));
        BlockWriter::fast().append(&content, &mut seg).unwrap();
        keyed(&mut seg, 2, true, &r(9));
        let (want, damaged) = ids(&seg);
        assert_eq!((want.len(), damaged), (8, 2));
        assert_eq!(streamed_ids(&seg, &mut buf), Some((want, damaged)));
        // A block whose content ends inside a frame: that frame counts as cut, and the walk
        // goes on after the block (the plain form would read on into the next frame).
        let mut seg = new_segment();
        let whole = frames(0, 3);
        BlockWriter::fast().append(&whole[..whole.len() - 10], &mut seg).unwrap();
        seg.extend(frames(3, 2));
        assert_eq!(streamed_ids(&seg, &mut buf), Some((["req_0", "req_1", "req_3", "req_4"].map(String::from).to_vec(), 1)));
        // A schema inside a block: a record after the block may name it, so the walk asks for
        // the plain form.
        let mut seg = new_segment();
        let mut content = Vec::new();
        keyed(&mut content, 1, true, &r(0));
        BlockWriter::fast().append(&content, &mut seg).unwrap();
        keyed(&mut seg, 1, false, &r(1));
        assert_eq!(ids(&seg), (vec!["req_0".to_owned(), "req_1".to_owned()], 0));
        assert_eq!(streamed_ids(&seg, &mut buf), None);
        // What is not a segment is refused.
        assert!(each_record_streamed(b"nope", &mut buf, |_| Ok(())).is_err());
        assert!(!holds_blocks(b"nope") && !holds_blocks(&[SEGMENT_MAGIC.as_slice(), &frames(0, 2)].concat()) && holds_blocks(&seg));
    }

    #[test]
    fn a_kept_buffer_holds_each_segment_expanded_whatever_it_held_before() {
        let mut buf = Vec::new();
        let expand = |seg: &[u8], buf: &mut Vec<u8>| -> (Vec<u8>, usize) {
            let (n, lost) = expand_segment_into(seg, buf).unwrap();
            (n.map_or_else(|| seg.to_vec(), |n| buf[..n].to_vec()), lost)
        };
        // A large segment of other records first (zstd and LZ4 blocks), so that the buffer
        // holds bytes none of the later segments has.
        let mut big = new_segment();
        BlockWriter::new().unwrap().append(&frames(100, 30), &mut big).unwrap();
        BlockWriter::fast().append(&frames(130, 30), &mut big).unwrap();
        assert_eq!(expand(&big, &mut buf), ([SEGMENT_MAGIC.as_slice(), &frames(100, 60)].concat(), 0));
        let high = buf.len();
        // Then a smaller one: a sound LZ4 block; one whose CRC is wrong (refused unread); one
        // whose CRC is right but which claims more than it holds (it fails to inflate after
        // writing into the buffer), followed by a plain frame shorter than that; a sound
        // zstd block; and a cut length (3 bytes) at the end.
        let mut small = damaged_blocks(5, &record());
        small.extend([1, 2, 3]);
        let mut want = [SEGMENT_MAGIC.as_slice(), &frames(0, 5)].concat();
        encode_record(&record(), &mut want);
        want.extend(frames(30, 5));
        want.extend([1, 2, 3]);
        assert!(want.len() < high, "the smaller segment reads within what the buffer held");
        assert_eq!(expand(&small, &mut buf), (want.clone(), 2));
        assert_eq!(buf.len(), high, "the buffer is reused, not shrunk");
        // As `expand_segment` reads it, from a fresh buffer.
        assert_eq!(expand_segment(&small).unwrap(), (std::borrow::Cow::Owned(want), 2));
        // A segment without blocks is its own bytes; what is not a segment is refused.
        let plain = [SEGMENT_MAGIC.as_slice(), &frames(0, 3)].concat();
        assert_eq!(expand_segment_into(&plain, &mut buf).unwrap(), (None, 0));
        assert!(expand_segment_into(b"nope", &mut buf).is_err());
    }

    #[test]
    fn lz4_blocks_expand_up_to_their_bound() {
        // 1 MiB of zeros: LZ4's best case, close to 255 bytes out for each byte in. A block
        // claiming more than 255 times its size is refused unread; this one is read whole.
        let content = vec![0u8; 1 << 20];
        let mut seg = new_segment();
        assert_eq!(BlockWriter::fast().append(&content, &mut seg).unwrap(), Written::Block);
        let stored = seg.len() - 4 - 17;
        assert!(content.len() > stored * 250, "{} bytes from {stored}", content.len());
        let (plain, lost) = expand_segment(&seg).unwrap();
        assert_eq!(lost, 0);
        assert_eq!(&plain[4..], content.as_slice());
        // The same block claiming one byte more than 255 times its size: refused unread.
        let mut forged = seg[4..].to_vec();
        let claim = u32::try_from(stored * 255 + 17).unwrap();
        forged[9..13].copy_from_slice(&claim.to_le_bytes());
        seal_frame(&mut forged, 0);
        assert_eq!(expand_segment(&[SEGMENT_MAGIC.as_slice(), &forged].concat()).unwrap().1, 1);
    }

    fn blocks_of(mut w: BlockWriter, form: u8) {
        let mut seg = new_segment();
        assert_eq!(w.append(&frames(0, 20), &mut seg).unwrap(), Written::Block);
        assert_eq!(seg[4 + 8], form);
        encode_record(&record(), &mut seg);
        let second = seg.len();
        assert_eq!(w.append(&frames(20, 20), &mut seg).unwrap(), Written::Block);
        assert!(seg.len() < frames(0, 40).len() / 3, "repeated records compress: {} bytes", seg.len());
        // Blocks and plain frames read back in order, as the plain segment would.
        let mut plain = new_segment();
        plain.extend(frames(0, 20));
        encode_record(&record(), &mut plain);
        plain.extend(frames(20, 20));
        assert_eq!(expand_segment(&seg).unwrap(), (std::borrow::Cow::Owned(plain.clone()), 0));
        let want: Vec<String> = (0..20).map(|i| format!("req_{i}")).chain(["req_1".into()]).chain((20..40).map(|i| format!("req_{i}"))).collect();
        assert_eq!(ids(&seg), (want.clone(), 0));
        // A segment without blocks is read in place; one from before LZ4 blocks (`VPL1`) too.
        assert!(matches!(expand_segment(&plain).unwrap(), (std::borrow::Cow::Borrowed(_), 0)));
        let mut old = seg.clone();
        old[..4].copy_from_slice(SEGMENT_MAGIC_V1);
        assert_eq!(ids(&old), (want.clone(), 0));
        // A flipped byte in the second block's data: that block is lost and counted, the rest read.
        let mut bad = seg.clone();
        let last = bad.len() - 2;
        bad[last] ^= 0x40;
        assert_eq!(ids(&bad), (want[..21].to_vec(), 1));
        // The second block cut short (a crash mid-write): the same.
        assert_eq!(ids(&seg[..seg.len() - 7]), (want[..21].to_vec(), 1));
        assert_eq!(ids(&seg[..second + 2]), (want[..21].to_vec(), 1), "a cut length is a cut frame");
        // A block whose CRC is right but whose stated length is wrong, whose data is cut
        // short, or is not of its codec: lost and counted (never inflated past what it claims).
        let edits: [fn(&mut Vec<u8>); 4] = [
            |p| p[1] ^= 1,
            |p| p.truncate(p.len() - 3),
            |p| {
                p.truncate(9);
                p.extend([0xff; 40]);
            },
            // For LZ4: a match 65,535 bytes back at the start of the content.
            |p| {
                p.truncate(9);
                p.extend([0x0f, 0xff, 0xff, 0x00]);
                p.extend([0; 40]);
            },
        ];
        for edit in edits {
            let mut f = Vec::new();
            w.append(&frames(0, 20), &mut f).unwrap();
            let mut payload = f[8..].to_vec();
            edit(&mut payload);
            let mut forged = vec![0; 8];
            forged.extend_from_slice(&payload);
            seal_frame(&mut forged, 0);
            let mut s2 = new_segment();
            s2.extend_from_slice(&forged);
            encode_record(&record(), &mut s2);
            assert_eq!(ids(&s2), (vec!["req_1".to_owned()], 1));
        }
        if form == BLOCK_LZ4 {
            // A match 65,535 bytes back as the whole content, of the 19 bytes it would make:
            // only the decoder's check of the offset can refuse it, and expanding does.
            let mut forged = vec![0; 8];
            forged.push(BLOCK_LZ4);
            forged.extend(19u32.to_le_bytes());
            forged.extend(NONE.to_le_bytes());
            forged.extend([0x0f, 0xff, 0xff, 0x00, 0x00]);
            seal_frame(&mut forged, 0);
            let mut s2 = new_segment();
            s2.extend_from_slice(&forged);
            encode_record(&record(), &mut s2);
            let (plain, lost) = expand_segment(&s2).unwrap();
            assert_eq!(lost, 1);
            assert_eq!(plain.as_ref(), [SEGMENT_MAGIC.as_slice(), &s2[4 + forged.len()..]].concat().as_slice());
        }
        // A block inside a block is not a record: counted as damaged.
        let mut inner = Vec::new();
        w.append(&frames(0, 20), &mut inner).unwrap();
        let mut nested = new_segment();
        assert_eq!(w.append(&[inner.as_slice(), inner.as_slice()].concat(), &mut nested).unwrap(), Written::Block);
        assert_eq!(ids(&nested).0.len(), 0);
        assert!(expand_segment(b"VPZ1").is_err());
    }

    #[test]
    fn frames_that_do_not_compress_are_written_as_they_are() {
        // One record of 4,000 random integers: neither zstd nor LZ4 can shrink it.
        let mut r = record();
        r.rows = 4000;
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64
        };
        r.features = [("v".to_owned(), (0..4000).map(|_| json!(next())).collect())].into_iter().collect();
        r.scores = None;
        r.feature_statuses = None;
        r.outputs = BTreeMap::new();
        let mut one = Vec::new();
        encode_record(&r, &mut one);
        for mut w in [BlockWriter::new().unwrap(), BlockWriter::fast()] {
            let mut seg = new_segment();
            assert_eq!(w.append(&one, &mut seg).unwrap(), Written::Plain);
            assert_eq!(&seg[4..], one.as_slice());
            assert_eq!(ids(&seg), (vec!["req_1".to_owned()], 0));
        }
    }

    #[test]
    fn records_round_trip_through_frames() {
        let mut seg = new_segment();
        encode_record(&record(), &mut seg);
        let mut ok = record();
        (ok.role, ok.status, ok.error, ok.client_id, ok.scores, ok.feature_statuses, ok.lookup_us) = ("live".into(), "ok".into(), None, None, None, None, None);
        encode_record(&ok, &mut seg);
        let (views, damaged) = parse_segment(&seg).unwrap();
        assert_eq!(damaged, 0);
        assert_eq!(views[0].to_record().unwrap(), record());
        assert_eq!(views[1].to_record().unwrap(), ok);
        assert_eq!(views[0].features().map(|f| f.numeric()).collect::<Vec<_>>(), vec![true, true, false, false]);
        assert_eq!(views[0].feature(1).unwrap().number(1), None);
        assert_eq!(views[0].feature(0).unwrap().number(2), Some(52.0));
    }

    #[test]
    fn torn_and_damaged_frames_are_counted_not_read() {
        let mut seg = new_segment();
        for _ in 0..3 {
            encode_record(&record(), &mut seg);
        }
        let one = (seg.len() - 4) / 3;
        // A flipped byte in the second frame's payload: it is skipped, the third is read.
        let mut bad = seg.clone();
        bad[4 + one + 20] ^= 0xff;
        assert_eq!(parse_segment(&bad).map(|(v, d)| (v.len(), d)).unwrap(), (2, 1));
        // Cut in the middle of the last frame.
        assert_eq!(parse_segment(&seg[..seg.len() - 5]).map(|(v, d)| (v.len(), d)).unwrap(), (2, 1));
        assert_eq!(parse_segment(&seg[..4 + one + 3]).map(|(v, d)| (v.len(), d)).unwrap(), (1, 1));
        assert!(parse_segment(b"{\"request_id\"").is_err());
        // Any truncation of a payload is an error, never a panic.
        let (_, payload) = seg[4..4 + one].split_at(8);
        for cut in 0..payload.len() {
            assert!(view(&payload[..cut]).is_err());
        }
    }

    /// Appends `r` (shaped as [`record`]) under schema `id` (written first if `schema`).
    fn keyed(seg: &mut Vec<u8>, id: u32, schema: bool, r: &PredictionRecord) {
        if schema {
            let mut content = Vec::new();
            let mut w = SchemaWriter::begin(&mut content, &r.endpoint, &r.version_id, &r.version, &r.arm, &r.digest);
            for (name, kind) in [("age", Kind::I64), ("bmi", Kind::F64), ("mixed", Kind::Json), ("sex", Kind::Str)] {
                w.feature(name, kind);
            }
            w.finish();
            seg.extend(schema_frame(id, &content));
        }
        let head = Head { request_id: &r.request_id, client_id: r.client_id.as_deref(), shadow: r.role == "shadow", endpoint: "", version_id: "", version: "", arm: "", digest: "",
            assignment: &r.assignment, unit_hash: r.unit_hash.as_deref(), bucket: r.bucket, at: r.at, latency_us: r.latency_us, lookup_us: r.lookup_us,
            error: r.error.as_deref(), rows: r.rows as u32, features: 4 };
        let f = &r.features;
        let mut w = Frame::begin_keyed(seg, id, &head);
        w.i64s(f["age"].iter().map(|v| v.as_i64().unwrap()));
        w.f64s(f["bmi"].iter().map(|v| v.as_f64().unwrap_or(f64::NAN)));
        w.json(&Value::Array(f["mixed"].clone()).to_string());
        w.strs(f["sex"].iter().map(Value::as_str));
        let mut scores = r.scores.as_ref().map(|s| s.iter().copied());
        let statuses = r.feature_statuses.as_ref().map(|s| serde_json::to_string(s).unwrap());
        w.finish(scores.as_mut().map(|i| i as &mut dyn Iterator<Item = Option<f64>>), &serde_json::to_string(&r.outputs).unwrap(), statuses.as_deref());
    }

    #[test]
    fn records_under_a_schema_read_as_whole_ones_in_fewer_bytes() {
        let mut other = record();
        (other.request_id, other.version_id, other.arm, other.role, other.error, other.status) = ("req_2".into(), "mv_2".into(), "a".into(), "live".into(), None, "ok".into());
        let mut seg = new_segment();
        keyed(&mut seg, 1, true, &record());
        keyed(&mut seg, 9, true, &other);
        keyed(&mut seg, 1, false, &record());
        let (views, damaged) = parse_segment(&seg).unwrap();
        assert_eq!(damaged, 0);
        let read: Vec<PredictionRecord> = views.iter().map(|v| v.to_record().unwrap()).collect();
        assert_eq!(read, vec![record(), other, record()]);
        assert_eq!(frame_schema(&seg[4..]), None, "a schema frame names no schema");
        let mut whole = new_segment();
        encode_record(&record(), &mut whole);
        let mut one = Vec::new();
        keyed(&mut one, 1, false, &record());
        assert_eq!(frame_schema(&one), Some(1));
        assert!(one.len() + 40 < whole.len() - 4, "{} vs {}", one.len(), whole.len() - 4);
    }

    #[test]
    fn records_under_a_schema_of_fixed_width_kinds_are_read_by_offset() {
        let mut content = Vec::new();
        let mut w = SchemaWriter::begin(&mut content, "m", "mv_1", "1.0.0", "a", "d");
        for (name, kind) in [("x", Kind::F32), ("y", Kind::F64), ("n", Kind::I64)] {
            w.feature(name, kind);
        }
        w.finish();
        let mut seg = new_segment();
        seg.extend(schema_frame(3, &content));
        for rows in [3u32, 1] {
            let head = Head { request_id: "r", client_id: None, shadow: false, endpoint: "", version_id: "", version: "", arm: "", digest: "", assignment: "random",
                unit_hash: None, bucket: None, at: Timestamp::from_micros(0).unwrap(), latency_us: 1, lookup_us: None, error: None, rows, features: 3 };
            let mut f = Frame::begin_keyed(&mut seg, 3, &head);
            f.f32s([0.5f32, f32::NAN, 2.0].into_iter().take(rows as usize));
            f.f64s([1.5, 2.5, 3.5].into_iter().take(rows as usize));
            f.i64s([7, 8, 9].into_iter().take(rows as usize));
            f.finish(None, "{}", None);
        }
        let mut whole = record();
        whole.features = [("x", json!(1.0)), ("y", json!(2.0)), ("n", json!(3))].into_iter().map(|(k, v)| (k.to_owned(), vec![v; 3])).collect();
        encode_record(&whole, &mut seg);
        let (views, damaged) = parse_segment(&seg).unwrap();
        assert_eq!((views.len(), damaged), (3, 0));
        let v = &views[0];
        assert!(v.all_numeric() && v.feature_count() == 3 && v.feature(3).is_none());
        assert_eq!(v.features().map(|f| f.name).collect::<Vec<_>>(), ["x", "y", "n"]);
        assert_eq!((0..3).map(|i| v.feature(0).unwrap().number(i)).collect::<Vec<_>>(), [Some(0.5), None, Some(2.0)]);
        assert_eq!((0..3).map(|i| v.feature(1).unwrap().number(i)).collect::<Vec<_>>(), [Some(1.5), Some(2.5), Some(3.5)]);
        assert_eq!(v.feature(2).unwrap().values().unwrap(), vec![json!(7), json!(8), json!(9)]);
        assert_eq!(views[1].feature(2).unwrap().values().unwrap(), vec![json!(7)]);
        assert!(v.same_features(&views[1]));
        // The whole record lists its features by name order (n, x, y): not the same.
        assert!(!v.same_features(&views[2]) && views[2].all_numeric());
        assert_eq!(views[2].features().map(|f| f.name).collect::<Vec<_>>(), ["n", "x", "y"]);
        // Any truncation of such a record is an error, never a panic.
        let frame_at = |at: usize| &seg[at + 8..at + 8 + u32::from_le_bytes(seg[at..at + 4].try_into().unwrap()) as usize];
        let schema = frame_at(4);
        let schemas = vec![schema_view(schema).unwrap()];
        let payload = frame_at(4 + 8 + schema.len());
        assert!(keyed_view(payload, &schemas).is_ok());
        for cut in 0..payload.len() {
            assert!(keyed_view(&payload[..cut], &schemas).is_err());
        }
    }

    #[test]
    fn records_whose_schema_is_missing_or_damaged_are_counted_damaged() {
        let mut seg = new_segment();
        keyed(&mut seg, 1, true, &record());
        let schema_len = 8 + u32::from_le_bytes(seg[4..8].try_into().unwrap()) as usize;
        keyed(&mut seg, 1, false, &record());
        keyed(&mut seg, 2, false, &record());
        encode_record(&record(), &mut seg);
        assert_eq!(parse_segment(&seg).map(|(v, d)| (v.len(), d)).unwrap(), (3, 1), "schema 2 was never written");
        let mut bad = seg.clone();
        bad[4 + schema_len - 3] ^= 0xff;
        assert_eq!(parse_segment(&bad).map(|(v, d)| (v.len(), d)).unwrap(), (1, 4), "the damaged schema and the three records under a schema");
        // Any truncation of a schema or a record under one is an error, never a panic.
        let (_, schema) = seg[4..4 + schema_len].split_at(8);
        let schemas = vec![schema_view(schema).unwrap()];
        let rest = &seg[4 + schema_len..];
        let (_, payload) = rest[..8 + u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize].split_at(8);
        assert!(keyed_view(payload, &schemas).is_ok());
        for cut in 0..payload.len() {
            assert!(keyed_view(&payload[..cut], &schemas).is_err());
        }
        for cut in 0..schema.len() {
            assert!(schema_view(&schema[..cut]).is_err());
        }
    }

    #[test]
    fn f32_values_read_back_in_their_shortest_form() {
        let mut seg = new_segment();
        let head = Head { request_id: "r", client_id: None, shadow: false, endpoint: "m", version_id: "v", version: "1", arm: "a", digest: "d", assignment: "random",
            unit_hash: None, bucket: None, at: Timestamp::from_micros(0).unwrap(), latency_us: 1, lookup_us: None, error: None, rows: 2, features: 1 };
        let mut f = Frame::begin(&mut seg, &head);
        f.feature_f32("x", [0.1234f32, f32::NAN].into_iter());
        f.finish(None, "{}", None);
        let (views, _) = parse_segment(&seg).unwrap();
        assert_eq!(views[0].feature(0).unwrap().values().unwrap(), vec![json!(0.1234), Value::Null]);
        assert_eq!(views[0].feature(0).unwrap().number(0), Some(f64::from(0.1234f32)));
    }

    #[test]
    fn runs_of_plain_records_are_compressed_and_blocks_and_schemas_kept() {
        // The gateway's writer's blocks are LZ4's; before 2026-12-01 they were zstd's.
        runs_around(BlockWriter::fast());
        runs_around(BlockWriter::new().unwrap());
    }

    fn runs_around(mut w: BlockWriter) {
        // A segment as a writer leaves it when only some rounds were compressed: plain
        // records, a schema frame, more plain records, a block, plain records, a cut frame.
        let schema = schema_frame(7, b"not read here");
        let mut seg = new_segment();
        seg.extend(frames(1000, 40));
        seg.extend(&schema);
        seg.extend(frames(1040, 40));
        let before_block = seg.len();
        assert_eq!(w.append(&frames(1080, 20), &mut seg).unwrap(), Written::Block);
        let block = seg[before_block..].to_vec();
        seg.extend(frames(1100, 30));
        let cut = frames(1130, 1);
        seg.extend(&cut[..cut.len() - 5]);
        // Records of one size (ids of 4 digits).
        let one = frames(1000, 1).len();
        // Runs of at most 25 records' bytes: 40 plain records make two blocks.
        let out = compress_runs(&seg, 25 * one).unwrap();
        assert!(out.len() * 3 < seg.len(), "{} of {}", out.len(), seg.len());
        // The same segment once expanded: its 130 whole records in order, the cut one and the
        // made-up schema counted as damaged.
        assert_eq!(expand_segment(&out).unwrap(), (std::borrow::Cow::Owned(expand_segment(&seg).unwrap().0.into_owned()), 0));
        let want: Vec<String> = (1000..1130).map(|i| format!("req_{i}")).collect();
        assert_eq!(ids(&out), (want, 2));
        assert_eq!(ids(&out), ids(&seg));
        // What it is made of, frame by frame: blocks of the runs (cut at the run size), the
        // schema frame and the writer's block as they were, and the cut frame at the end.
        let mut rest = &out[SEGMENT_MAGIC.len()..];
        let mut kinds = Vec::new();
        while rest.len() >= 8 {
            let len = 8 + u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let Some(f) = rest.get(..len) else { break };
            kinds.push(if f == schema.as_slice() { "schema".to_owned() } else if f == block.as_slice() { "writer's block".to_owned() } else if is_block(f) { format!("block of {}", content_len(f) / one) } else { "plain".to_owned() });
            rest = &rest[len..];
        }
        assert_eq!(kinds, ["block of 25", "block of 15", "schema", "block of 25", "block of 15", "writer's block", "block of 25", "block of 5"]);
        assert_eq!(rest, &cut[..cut.len() - 5]);
        // Nothing to compress: the bytes as they were; a run that does not shrink stays plain.
        let blocks_only = [SEGMENT_MAGIC.as_slice(), &block].concat();
        assert_eq!(compress_runs(&blocks_only, 1 << 20).unwrap(), blocks_only);
        let mut x = 1u64;
        let mut noise = vec![0u8; 8];
        noise.push(FORMAT);
        noise.extend((0..300).map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 56) as u8
        }));
        seal_frame(&mut noise, 0);
        let noisy = [SEGMENT_MAGIC.as_slice(), &noise].concat();
        assert_eq!(compress_runs(&noisy, 1 << 20).unwrap(), noisy);
        assert!(compress_runs(b"nope", 1).is_err());
        // What a run is compressed into when stored: zstd (form 4), whichever the writer's are.
        assert_eq!(forms(&out), [BLOCK, BLOCK, SCHEMA, BLOCK, BLOCK, block[8], BLOCK, BLOCK]);
    }
}
