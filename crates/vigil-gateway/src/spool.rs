//! The prediction log's durable spool.
//!
//! The request path hands its record to an in-memory buffer (one of several stripes, so
//! appending threads do not wait for each other; bounded in bytes; no wake-up: the writer
//! polls): a small record copied flat while the writer keeps up ([`flat`]: the request frees
//! its own allocations, as an unlogged one does), which the writer encodes; any other encoded
//! on the request thread as a frame of the log's binary format ([`vigil_core::predwire`], the input values as the model saw them).
//! A writer thread collects the buffers every [`WRITER_NAP`] to [`LIGHT_NAP`] (as long as half a
//! stripe's share takes to fill at the rate records come, [`next_nap`]; up to [`IDLE_NAP`] while
//! nothing comes) and appends them to the open segment file, each round's
//! records compressed together as LZ4 blocks when they are 4 KiB or more (a large round is
//! written in parts as it is collected, [`ROUND_PART`]; a large record
//! is compressed on its request thread instead while the writer is behind). On this VM the log's tail at 100 rows came
//! from the bytes it wrote (the host takes CPU time from the guest for its disk work), so
//! the spool writes fewer: 100-row records of clinical-like values take about 55–65% of
//! their bytes, noise all of them (it is left plain); stored segments keep these blocks. (They
//! were zstd blocks until 2026-12-01, at 41–51% and 93%: LZ4 takes 40–70% of the CPU time to
//! write and a quarter to a third to read back here, see [`predwire`]'s form `5`.)
//! About every
//! [`SYNC_EVERY`] a syncer thread flushes them to disk (`fdatasync`, which can take
//! milliseconds: the writer never waits for it), and a segment old or large enough is sealed
//! there (synced, renamed `ready-…`).
//! Storing a sealed segment takes two threads. A preparer under `SCHED_IDLE` does most of the
//! CPU work with time no request wants
//! ([`vigil_core::registry::Registry::prepare_prediction_segment`]: inflating blocks one
//! at a time, decoding, checks; compressing what the writer left plain, unless the file itself is to be
//! kept, below); the shipper, at nice 10, runs the transaction
//! ([`vigil_core::registry::Registry::store_prediction_segment`], idempotent by segment id),
//! which holds locks other writers of the registry wait for and so never runs at idle
//! priority, and then deletes the file. Where the registry keeps sealed files as they are
//! (the embedded store), a segment's writer (the writer thread, or a background log) follows
//! what it appends ([`Open::digest`]: each run's records walked on that thread as the
//! preparer would walk them, the file's CRC-32 and its plain bytes), so that a sealed file
//! to be kept is prepared without being read back
//! ([`vigil_core::registry::Registry::prepare_written_segment`]). Read back as before: a
//! segment its writer could not follow (a record a request thread compressed, a failed
//! write), a small or mostly plain one, one whose ids are not covered, one whose digest found
//! no room ([`WrittenSegments`]) or was not listed yet, one left from an earlier run, and
//! every segment on PostgreSQL. On the embedded store a segment of 64 KiB or more
//! that the writer compressed (most of it in blocks) or whose plain records do not compress
//! (noise) is stored as the sealed file itself ([`vigil_core::registry::Registry::prepare_spooled_segment`]:
//! the store links it into the data directory in the transaction; deleting the spool's name
//! leaves it there): nothing compresses it again, and its bytes are not written a second and
//! third time (SQLite's write-ahead log, then its database file). When the preparer falls behind (the spool holds
//! 64 MiB, or a segment waited 30 s: sustained load) the shipper prepares segments itself.
//! While the registry cannot be reached, sealed segments wait on disk and are shipped, in
//! order, once it can.
//!
//! Shadow runs log through a [`BackgroundLog`]: segment files of their own, written (in
//! compressed rounds), synced and sealed by the shadow thread itself (see `crate::shadow` for
//! why), shipped the same way.
//!
//! The preparer and the shipper nap until there is work ([`Bell`]): a sealed segment rings
//! the shipper, a listing with new segments rings the preparer, a prepared segment rings the
//! shipper; a poll every [`SHIPPING_POLL`] is the safety net.
//!
//! The spool is *full* when the buffers or the files on disk reach their limit; each
//! endpoint's deployment says what happens then (`reject`: the caller gets 503
//! `prediction_log_full`; `drop`: the answer is returned unlogged). Both are counted.
//!
//! What a crash can lose: records still in the buffers (the writer's last nap: 2 to 16 ms under
//! load, up to [`IDLE_NAP`] after a quiet spell; each round is handed to the file as it is
//! written) and, when the machine crashes, at most the last [`SYNC_EVERY`] of appended
//! frames. Of shadow records, which are never an answer: the round not yet written (up to
//! 100 ms), and when the machine crashes about the last 1.1 s (a segment is synced when
//! sealed). A clean stop loses no live record handed over: dropping the spool wakes the
//! writer and waits for it to write what is left (the shadow's last round is not waited
//! for). A segment cut short by a crash is shipped up to its last whole frame (each
//! frame carries its length and CRC-32, so a torn or damaged one is counted, never read; a
//! compressed block is one frame, so a cut one loses the records of its round, which were
//! not synced yet).
//!
//! One process owns a spool directory (an exclusive lock on `DIR/lock`); replicas each need
//! their own. A segment that the registry refuses for good (not a storage failure) is moved to
//! `failed-…` for an operator and counted, so it never blocks the segments behind it.

mod flat;

use crate::Counters;
use crate::catalog::Served;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};
use vigil_core::ids::IdGenerator;
#[cfg(test)]
use vigil_core::predlog::PredictionRecord;
use vigil_core::predwire;
use vigil_core::registry::Registry;
use vigil_onnx::{Data, Tensor, Value};

/// Longest time appended records wait before they are flushed to disk. (Every 20 ms, the
/// syncer's `fdatasync`s took 0.45–0.6 µs of CPU a request, `perf stat --per-thread` at the
/// bench's paced single-row load, with a journal commit each. Each round is written to the
/// segment file as it is collected, so a crash of the process loses only the writer's nap;
/// a crash of the machine at most this much more.)
pub const SYNC_EVERY: Duration = Duration::from_millis(50);

/// Spool settings.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The directory (created if missing; one process at a time).
    pub dir: PathBuf,
    /// Bytes of encoded records that may wait in memory for the writer (shared out evenly
    /// among the buffers request threads append to).
    pub queue_bytes: u64,
    /// Bytes the spool's files may take on disk before it counts as full.
    pub max_bytes: u64,
    /// A segment is sealed (and shipped) once it is this old…
    pub seal_after: Duration,
    /// …or holds this many bytes of records before compression…
    pub seal_bytes: u64,
    /// …or its file holds this many bytes (at most a run more: a compressed block, or a
    /// record larger than a block written alone, with the schema frames it needs): records
    /// that compress well fill a segment by [`SpoolConfig::seal_bytes`], those that do not
    /// by this.
    pub seal_file_bytes: u64,
}

impl SpoolConfig {
    /// Defaults: at most 16 MiB of encoded records waiting for the writer (some 60,000
    /// single-row records of 20 features, about 260 bytes each), 1 GiB on disk, segments
    /// sealed after 1 s, 4 MiB of records or a 1 MiB file, whichever comes first. Single-row
    /// records take about a quarter of their bytes in the file, so they fill a segment by its
    /// records; 100-row records, which compress far less, by its file. Until 2026-12-02 a
    /// segment was sealed at 1 MiB of records: 2.6 segments a second at the bench's paced
    /// single-row load, each a transaction, a sync and a rename (storing them took about 0.2
    /// µs a request more); larger ones then held the preparer's memory up, as it expanded a
    /// segment whole (it reads one block at a time since).
    pub fn new(dir: PathBuf) -> Self {
        SpoolConfig { dir, queue_bytes: 16 << 20, max_bytes: 1 << 30, seal_after: Duration::from_secs(1), seal_bytes: 4 << 20, seal_file_bytes: 1 << 20 }
    }

    /// Whether a segment of `bytes` in its file and `raw` bytes of records is full.
    fn full(&self, bytes: u64, raw: u64) -> bool {
        raw >= self.seal_bytes || bytes >= self.seal_file_bytes
    }
}

/// A prediction to log, borrowed from what made it ([`Live`], or the shadow run), as
/// [`write_record`] encodes it.
pub(crate) struct LogJob<'a> {
    pub request_id: &'a str,
    pub client_id: Option<&'a str>,
    pub shadow: bool,
    pub endpoint: &'a str,
    pub arm: &'a str,
    pub served: &'a Arc<Served>,
    pub assignment: &'static str,
    pub unit_hash: Option<&'a str>,
    pub bucket: Option<u32>,
    pub at: vigil_core::ids::Timestamp,
    pub latency_us: u64,
    pub lookup_us: Option<u64>,
    pub inputs: &'a [(String, Tensor)],
    pub outputs: Result<&'a [(String, Value)], &'a str>,
    pub feature_statuses: Option<&'a std::collections::BTreeMap<String, Vec<String>>>,
}

/// A live answer to log, as the request thread hands it over ([`Spool::offer`]), borrowed
/// from the request: a small record is copied into a stripe in [`flat`] form, a larger one
/// encoded, and the request frees its own allocations as an unlogged one does.
pub(crate) struct Live<'a> {
    pub request_id: &'a str,
    pub client_id: Option<&'a str>,
    /// Shared with the endpoint (a stripe keeps a reference count, not a copy of the name,
    /// in an entry the records of one arm share).
    pub endpoint: &'a Arc<str>,
    pub arm: &'a Arc<str>,
    pub served: &'a Arc<Served>,
    pub assignment: &'static str,
    pub unit_hash: Option<&'a str>,
    pub bucket: Option<u32>,
    /// When it was answered, in microseconds since the Unix epoch (made a time by the
    /// writer: the conversion is a date calculation).
    pub at_micros: i64,
    pub latency_us: u64,
    pub lookup_us: Option<u64>,
    pub inputs: &'a [(String, Tensor)],
    pub outputs: &'a [(String, Value)],
    pub feature_statuses: Option<&'a std::collections::BTreeMap<String, Vec<String>>>,
}

impl Live<'_> {
    fn job(&self) -> LogJob<'_> {
        LogJob {
            request_id: self.request_id,
            client_id: self.client_id,
            shadow: false,
            endpoint: self.endpoint,
            arm: self.arm,
            served: self.served,
            assignment: self.assignment,
            unit_hash: self.unit_hash,
            bucket: self.bucket,
            at: vigil_core::ids::Timestamp::from_micros(self.at_micros).unwrap_or_else(|| vigil_core::ids::Clock::now(&vigil_core::ids::SystemClock)),
            latency_us: self.latency_us,
            lookup_us: self.lookup_us,
            inputs: self.inputs,
            outputs: Ok(self.outputs),
            feature_statuses: self.feature_statuses,
        }
    }
}

/// A live record whose [`flat`] form takes at most this many bytes is copied into a stripe
/// for the writer to encode, while the writer keeps up: encoding a record on a request
/// thread, between two requests' network and HTTP work, found little of its code and data in
/// the CPU's caches (measured in the gateway with single-row records of 20 features: 2.7 µs a
/// record there, 0.5 µs in a loop), and the writer encodes a round's records one after
/// another. Larger records are encoded where they are made: that work is spread over the
/// request threads (the writer also compresses).
const DEFER_BYTES: usize = 2 << 10;

/// How many of a stripe's latest [`Queued::refs`] entries a record looks through for its own.
const REFS_LOOKBACK: usize = 4;

/// What waits in one stripe for the writer: encoded frames, and live records to encode.
#[derive(Default)]
struct Queued {
    /// Whole encoded frames, back to back.
    frames: Vec<u8>,
    /// Live records in [`flat`] form, back to back.
    flat: Vec<u8>,
    /// What the flat records share (each record names its entry).
    refs: Vec<flat::Refs>,
}

impl Queued {
    fn bytes(&self) -> usize {
        self.frames.len() + self.flat.len()
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.flat.is_empty()
    }

    /// The entry of `refs` for a record: one of the last [`REFS_LOOKBACK`] when the record
    /// shares it (the usual case: a few arms of one endpoint, records of an A/B test
    /// alternating between two), else a new one (three reference counts taken, under the
    /// stripe's lock).
    fn refs_for(&mut self, live: &Live<'_>) -> usize {
        let same = |(e, a, s): &flat::Refs| Arc::ptr_eq(e, live.endpoint) && Arc::ptr_eq(a, live.arm) && Arc::ptr_eq(s, live.served);
        let n = self.refs.len();
        if let Some(back) = self.refs.iter().rev().take(REFS_LOOKBACK).position(same) {
            return n - 1 - back;
        }
        self.refs.push((live.endpoint.clone(), live.arm.clone(), live.served.clone()));
        n
    }
}

/// Records waiting for the writer, in stripes: a request thread appends its frame to
/// the first stripe it can lock without waiting that has room (with more stripes than threads
/// that append, there always is an unlocked one), and the writer swaps each stripe's buffers
/// for empty ones every few milliseconds. So handing a record over costs one uncontended lock
/// and a copy into a buffer that is reused (a small live record's flat form, or a frame); the
/// hand-over writes no memory another request thread writes (each stripe is on cache lines of
/// its own, [`Stripe`]; the gateway then counts the record in its shared counters).
struct Stripes {
    stripes: Vec<Stripe>,
    /// Bytes a stripe may hold (the spool's `queue_bytes` shared out).
    stripe_bytes: usize,
}

impl Stripes {
    fn new(n: usize, stripe_bytes: usize) -> Stripes {
        Stripes { stripes: (0..n).map(|_| Stripe(std::sync::Mutex::new(Queued::default()))).collect(), stripe_bytes }
    }
}

/// One stripe, aligned to 128 bytes (two cache lines: the CPU may fetch lines in pairs). A
/// stripe's lock and buffers take 80 bytes, so unpadded two threads' stripes shared a cache
/// line, which every record handed over then took from the other CPU. (Aligned since
/// 2026-12-02; measured, the request threads' time did not change beyond the runs' noise.)
#[repr(align(128))]
struct Stripe(std::sync::Mutex<Queued>);

const _: () = assert!(std::mem::align_of::<Stripe>() == 128 && std::mem::size_of::<Stripe>() == 128);

impl std::ops::Deref for Stripe {
    type Target = std::sync::Mutex<Queued>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// How long the writer waits between collecting the stripes at the least…
const WRITER_NAP: Duration = Duration::from_millis(2);

/// …and at the most while records come ([`next_nap`]): each round wakes a thread, which cost
/// as much CPU as writing the records of a light round (measured with single-row records: 10
/// µs a wake-up), and records wait in memory only a few milliseconds more. 16 ms rather than
/// 8 since 2026-12-01: at the bench's paced single-row load a round was about 90 records,
/// and its fixed part (the wake-up, the `write` into the page cache, which updates the
/// file's times) a third of the writer's time; the writer took 0.2–0.5 µs a request less per
/// round, 0.4 at the median (4 interleaved rounds against 8 ms, per-thread CPU time).
const LIGHT_NAP: Duration = Duration::from_millis(16);

/// …and while nothing comes, doubling from [`LIGHT_NAP`] after each empty round that left
/// nothing to sync, up to this: an idle gateway's writer woke 125 times a second (2.9 ms of
/// CPU a second). A record that comes after a quiet spell waits at most this long in memory.
const IDLE_NAP: Duration = Duration::from_millis(64);

/// Whether the writer's round was quiet: nothing came (`empty`) and nothing waits for a sync.
fn quiet(empty: bool, open: Option<&Open>) -> bool {
    empty && !open.is_some_and(|o| o.unsynced)
}

/// The writer's next nap after a round that collected `round` bytes of records that came
/// over `span` (since the round before): as long as `target` bytes take to come at that rate,
/// from [`WRITER_NAP`] to [`LIGHT_NAP`]; after a `quiet` round, doubling up to [`IDLE_NAP`].
/// The target is half of what a stripe holds before its thread counts the writer as behind
/// ([`BEHIND`]), so that a steady load under about `target` per [`WRITER_NAP`] (87 MB/s by
/// default) never gets there however its records fall over the stripes; a round of `target`
/// or more is followed by the shortest nap. Until 2026-12-02 the writer napped [`WRITER_NAP`] after any round of 32 KiB or
/// more: a steady single-row load at the bench's paced rate (about 45 KiB in [`LIGHT_NAP`])
/// then alternated a full round and one of 2 ms (107 wake-ups a second rather than 62), and
/// the rounds' fixed part, cold caches mostly, came to about 60 µs a round (the writer's CPU
/// per request at the paced and saturated rates, fitted as a cost per round and one per
/// record).
fn next_nap(last: Duration, round: usize, span: Duration, target: usize, quiet: bool) -> Duration {
    if quiet {
        return (last * 2).clamp(LIGHT_NAP, IDLE_NAP);
    }
    if round >= target {
        // (However long the records took to come: a burst after a quiet spell.)
        return WRITER_NAP;
    }
    let fill = span.as_secs_f64() * target as f64 / round.max(1) as f64;
    Duration::try_from_secs_f64(fill).unwrap_or(LIGHT_NAP).clamp(WRITER_NAP, LIGHT_NAP)
}

/// A thread's side of the hand-over.
struct Home {
    /// The stripe it tries first (threads are spread over the stripes).
    stripe: Option<usize>,
    enc: Encoder,
}

std::thread_local! {
    static HOME: std::cell::RefCell<Home> = const { std::cell::RefCell::new(Home { stripe: None, enc: Encoder::new() }) };
}

/// What a thread encodes records with ([`write_record`]), reused from record to record.
struct Encoder {
    /// The frame being encoded: a stripe only ever receives whole frames, so an encoding that
    /// failed (or panicked) leaves nothing behind in it.
    frame: Vec<u8>,
    /// For formatting outputs.
    scratch: Vec<u8>,
    /// The record's schema content, built to find its id.
    schema: Vec<u8>,
    /// The schemas this thread used last, by what determines them (a few: the arms it
    /// serves), so that a record's schema is built only the first time.
    known: Vec<KnownSchema>,
    /// A large record compressed (see [`Encoder::compress_large`]), and what compresses it
    /// (made on first use).
    block: Vec<u8>,
    z: Option<predwire::BlockWriter>,
}

/// A record at least this large is compressed on the thread that made it (as a block of its
/// own) when the writer is behind (see [`Spool::hand_over`]): the compression is then spread
/// over the request threads, which slows them rather than letting records pile up in memory.
/// Otherwise the writer compresses records a round's worth together (cheaper: measured with
/// 100-row records, compressing each on its request thread cost 18% more CPU per request).
const COMPRESS_ALONE: usize = 4 << 10;

/// A background log writes its round once it holds this many bytes of records (and the
/// writer napped only [`WRITER_NAP`] after a round this large until 2026-12-02, see
/// [`next_nap`]).
const HEAVY_ROUND: usize = 32 << 10;

/// The writer (and a background log) compresses a round's records when they are at least
/// this many bytes. Until 2026-12-01 the writer's floor was [`HEAVY_ROUND`]: single-row
/// rounds were written plain, and storing their segments meant compressing them again (zstd,
/// on the preparer) and writing them into the registry. Compressed, they are kept as their
/// files (see [`vigil_core::registry::Registry::prepare_spooled_segment`]); measured with
/// single-row records, 16 connections, A/B by patient (3 interleaved rounds against the
/// build before): disk bytes a request 167–188 → 52–60 saturated and 310–366 → 61–66 paced,
/// preparer and shipper 2.3 → 1.7 µs a request saturated and 2.6 → 1.6 paced, the writer's
/// time unchanged within the noise.
const COMPRESS_MIN: usize = 4 << 10;

/// The writer counts as behind while a thread's stripe holds more than this share of its
/// bytes (1/`BEHIND`).
const BEHIND: usize = 8;

/// Buffers that grew past this are let go once used: a request of very many rows would
/// otherwise keep its memory for as long as the thread (or the writer) lives.
const KEEP_BUFFER: usize = 1 << 20;

/// Lets a buffer go if it grew past [`KEEP_BUFFER`] (it is empty or about to be refilled).
fn trim(buf: &mut Vec<u8>) {
    trim_to(buf, KEEP_BUFFER);
}

/// Lets a buffer go if it grew past `keep` bytes.
fn trim_to(buf: &mut Vec<u8>, keep: usize) {
    if buf.capacity() > keep {
        *buf = Vec::new();
    }
}

/// The buffers the writer hands back to the stripes are let go past this. A stripe's round
/// is tens of KiB under a steady load (100-row records at saturation: about 10,000 a second,
/// 90 MB/s, appended mostly to the stripes of the two runtime threads, collected every 2
/// ms), and more whenever the writer waits for a CPU for a while (on 2 saturated CPUs that
/// happens now and then: up to about 10 MB waited in the stripes); kept, such a burst's
/// buffers (up to the spool's whole queue) would stay resident. A request thread then grows
/// its stripe's buffer again (a few reallocations per burst; the 100-row CPU per request
/// measured the same).
const KEEP_STRIPE: usize = 256 << 10;

/// The writer writes a round in parts of at least this many bytes of records as it collects
/// them (about three compressed blocks, [`BLOCK_BYTES`]; a part is at most about twice this,
/// or a stripe's frames as they are, up to a stripe's share of the queue), rather than copying the whole round
/// into one buffer first: after the writer was held up, a round can be most of the queue
/// ([`SpoolConfig::queue_bytes`]), and a copy of it doubled what the log held in memory.
const ROUND_PART: usize = 3 * BLOCK_BYTES;

impl Encoder {
    const fn new() -> Encoder {
        Encoder { frame: Vec::new(), scratch: Vec::new(), schema: Vec::new(), known: Vec::new(), block: Vec::new(), z: None }
    }

    /// The record to hand over: the frame itself, or when `compress` and for one of at least
    /// [`COMPRESS_ALONE`] bytes, the frame compressed as a block of its own (the frame as it
    /// is if that is not smaller).
    fn compress_large(&mut self, compress: bool) -> &[u8] {
        if !compress || self.frame.len() < COMPRESS_ALONE {
            return &self.frame;
        }
        let z = self.z.get_or_insert_with(predwire::BlockWriter::fast);
        self.block.clear();
        match z.append(&self.frame, &mut self.block) {
            Ok(predwire::Written::Block) => &self.block,
            _ => &self.frame,
        }
    }

    /// After a record is handed over: lets go of buffers a very large one grew.
    fn trim(&mut self) {
        trim(&mut self.frame);
        trim(&mut self.scratch);
        trim(&mut self.schema);
        trim(&mut self.block);
    }

    /// The id of a record's schema; `None` when the record is written whole (too many
    /// columns, or a schema the book does not take). Built and looked up in the book only
    /// the first time this thread logs for the arm and layout: a record's schema names every
    /// column, and reading those names for each record cost more than encoding the values
    /// (they are rarely in the CPU's cache when a request is logged).
    fn schema_id(&mut self, job: &LogJob<'_>, rows: usize, features: usize) -> std::io::Result<Option<u32>> {
        if let Some(k) = self.known.iter().find(|k| k.is(job, rows)) {
            return Ok(k.id);
        }
        let id = if features <= MAX_SCHEMA_FEATURES {
            self.schema.clear();
            let s = job.served;
            let mut schema = predwire::SchemaWriter::begin(&mut self.schema, job.endpoint, &s.version_id, &s.version, job.arm, &s.digest);
            for_each_column(job, rows, |col, t, _, _| schema.feature(col, kind_of(&t.data)));
            schema.finish();
            SCHEMAS.id(&self.schema)?
        } else {
            None
        };
        if self.known.len() >= 16 {
            self.known.remove(0);
        }
        let layout = job.inputs.iter().map(|(name, t)| (name.as_str().into(), kind_of(&t.data), t.data.len() / rows)).collect();
        self.known.push(KnownSchema { served: Arc::downgrade(job.served), endpoint: job.endpoint.into(), arm: job.arm.into(), layout, id });
        Ok(id)
    }
}

/// What a record's schema is made of: who served it (by identity: a `Weak` keeps the
/// allocation, so its address is never another version's, without keeping the model), the
/// endpoint and arm, and its inputs' names, kinds and widths (a schema names its columns
/// after these); with the schema's id (`None`: the record is written whole, as the book
/// never forgets a schema and never takes one it refused).
struct KnownSchema {
    served: std::sync::Weak<Served>,
    endpoint: Box<str>,
    arm: Box<str>,
    layout: Vec<(Box<str>, predwire::Kind, usize)>,
    id: Option<u32>,
}

impl KnownSchema {
    fn is(&self, job: &LogJob<'_>, rows: usize) -> bool {
        std::ptr::eq(self.served.as_ptr(), Arc::as_ptr(job.served))
            && *self.endpoint == *job.endpoint
            && *self.arm == *job.arm
            && self.layout.len() == job.inputs.len()
            && self.layout.iter().zip(job.inputs).all(|((name, kind, width), (n, t))| **name == **n && *kind == kind_of(&t.data) && *width == t.data.len() / rows)
    }
}

/// Every schema ([`predwire::SchemaWriter`]: what the records of one arm share) this process
/// has logged under, by content, with its frame: a record names its schema by id, and a
/// segment's writer puts the schema's frame before the segment's first record under it. One
/// per (endpoint, arm, version, input layout) served, never forgotten: a few hundred bytes
/// each. Bounded: a schema over [`MAX_SCHEMA_BYTES`], or one that would take the book past
/// [`MAX_BOOK_BYTES`] (a model whose input width is open, called with ever new widths), is
/// not taken, and its records are written whole.
#[derive(Default)]
struct SchemaBook {
    inner: std::sync::RwLock<BookInner>,
}

#[derive(Default)]
struct BookInner {
    ids: std::collections::HashMap<Box<[u8]>, u32>,
    frames: Vec<Arc<[u8]>>,
    /// The bytes of the schemas taken.
    bytes: usize,
}

/// The largest schema the book takes (20 features: about 300 bytes).
const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// The most the book holds, in schema bytes.
const MAX_BOOK_BYTES: usize = 8 << 20;

static SCHEMAS: std::sync::LazyLock<SchemaBook> = std::sync::LazyLock::new(SchemaBook::default);

impl SchemaBook {
    /// The id of a schema, taken into the book if it is new; `None` if the book does not
    /// take it.
    fn id(&self, content: &[u8]) -> std::io::Result<Option<u32>> {
        if let Some(id) = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).ids.get(content) {
            return Ok(Some(*id));
        }
        if content.len() > MAX_SCHEMA_BYTES {
            return Ok(None);
        }
        let mut book = self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(id) = book.ids.get(content) {
            return Ok(Some(*id));
        }
        if book.bytes + content.len() > MAX_BOOK_BYTES {
            return Ok(None);
        }
        let id = u32::try_from(book.frames.len()).map_err(std::io::Error::other)?;
        book.frames.push(predwire::schema_frame(id, content).into());
        book.ids.insert(content.into(), id);
        book.bytes += content.len();
        Ok(Some(id))
    }

    fn frame(&self, id: u32) -> Option<Arc<[u8]>> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).frames.get(id as usize).cloned()
    }
}

/// Spreads threads over the stripes.
static NEXT_HOME: AtomicU64 = AtomicU64::new(0);

/// The request path's handle on the spool.
pub struct Spool {
    /// Frames on their way to the writer (it ends once this is its only handle).
    pending: Arc<Stripes>,
    on_disk: Arc<AtomicU64>,
    max_bytes: u64,
    /// This spool's instance name (recorded with every segment).
    pub instance: String,
    cfg: SpoolConfig,
    counters: Arc<Counters>,
    /// Handed to background logs: the syncer (and with it the directory lock and the
    /// shipper's last pass) lasts until the last of them is gone. Nothing is sent on it here.
    sync_alive: SyncSender<SyncJob>,
    /// The preparer's and shipper's shared state, for background logs that seal a segment.
    prepared: Arc<PreparedSegments>,
    /// Rings the writer once the spool is gone and waits for it (declared last: dropped after
    /// `pending`, so the writer wakes to find itself the last handle and writes what is left at
    /// once, rather than after its nap).
    _writer: WriterEnd,
}

/// The writer's thread: when dropped, wakes the writer (`unpark`, kept for its next nap if it
/// is not napping yet) and waits (at most [`WRITER_END`]) until it has written the records
/// still in the buffers, so that a clean stop (the process exits right after) loses no live
/// record.
struct WriterEnd(Option<std::thread::JoinHandle<()>>);

/// The longest a dropped spool waits for its writer's last round.
const WRITER_END: Duration = Duration::from_secs(5);

impl Drop for WriterEnd {
    fn drop(&mut self) {
        let Some(writer) = self.0.take() else { return };
        writer.thread().unpark();
        let since = Instant::now();
        while !writer.is_finished() && since.elapsed() < WRITER_END {
            std::thread::sleep(Duration::from_millis(1));
        }
        if writer.is_finished() {
            let _ = writer.join();
        }
    }
}

impl Spool {
    /// Opens (or recovers) a spool and starts its writer and shipper threads.
    pub fn open(cfg: SpoolConfig, registry: Arc<Registry>, counters: Arc<Counters>) -> std::io::Result<Spool> {
        std::fs::create_dir_all(&cfg.dir)?;
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(cfg.dir.join("lock"))?;
        if lock.try_lock().is_err() {
            return Err(std::io::Error::other(format!("the spool directory {} is in use by another process (each gateway needs its own)", cfg.dir.display())));
        }
        let instance_file = cfg.dir.join("instance");
        let instance = match std::fs::read_to_string(&instance_file) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                let id = vigil_core::ids::UuidV7Ids.new_id("gw");
                std::fs::write(&instance_file, &id)?;
                id
            }
        };
        std::fs::create_dir_all(cfg.dir.join(SHADOW_DIR))?;
        // Segments left open by a previous run are sealed as they are.
        let mut bytes = 0u64;
        for dir in [cfg.dir.clone(), cfg.dir.join(SHADOW_DIR)] {
            for (name, path) in list(&dir, "open-")? {
                std::fs::rename(&path, dir.join(format!("ready-{}", &name["open-".len()..])))?;
            }
        }
        for (_, path) in ready_segments(&cfg.dir) {
            bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        }
        // Held by the syncer and the shipper: released when both are done (the shipper's last
        // pass included), so a new spool on this directory never overlaps them.
        let lock = Arc::new(lock);
        let on_disk = Arc::new(AtomicU64::new(bytes));
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let n = (2 * threads + 2).max(4);
        let stripe_bytes = usize::try_from(cfg.queue_bytes / n as u64).unwrap_or(usize::MAX);
        let pending = Arc::new(Stripes::new(n, stripe_bytes));
        let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Segments are followed as they are written only where the registry keeps sealed files
        // as they are: elsewhere each is read back all the same, to be compressed.
        let prepared = Arc::new(PreparedSegments { keep_files: registry.keeps_segment_files(), ..Default::default() });
        let (sync_tx, sync_rx) = std::sync::mpsc::sync_channel::<SyncJob>(64);
        let syncer = Syncer { dir: cfg.dir.clone(), rx: sync_rx, counters: counters.clone(), closed: closed.clone(), prepared: prepared.clone(), _lock: lock.clone() };
        std::thread::Builder::new().name("vigil-spool-sync".into()).spawn(move || syncer.run())?;
        let sync_alive = sync_tx.clone();
        let writer = Writer { cfg: cfg.clone(), pending: pending.clone(), on_disk: on_disk.clone(), counters: counters.clone(), sync: sync_tx, follow: prepared.keep_files };
        let writer = std::thread::Builder::new().name("vigil-spool-writer".into()).spawn(move || writer.run())?;
        let preparer = Preparer { instance: instance.clone(), shared: prepared.clone() };
        let shipper = Shipper { dir: cfg.dir.clone(), registry, on_disk: on_disk.clone(), counters: counters.clone(), instance: instance.clone(), closed, prepared: prepared.clone(), _lock: lock };
        std::thread::Builder::new().name("vigil-spool-shipper".into()).spawn(move || shipper.run())?;
        std::thread::Builder::new().name("vigil-log-prep".into()).spawn(move || preparer.run())?;
        Ok(Spool { pending, on_disk, max_bytes: cfg.max_bytes, instance, cfg, counters, sync_alive, prepared, _writer: WriterEnd(Some(writer)) })
    }

    /// A log for a background thread that must never wait for (or make anyone wait for) the
    /// writer: it writes, syncs and seals segment files of its own in this spool.
    pub(crate) fn background_log(&self) -> BackgroundLog {
        BackgroundLog {
            // A directory of their own: the idle-priority thread's file creations and renames
            // never hold the lock of the directory the writer creates its files in.
            cfg: SpoolConfig { dir: self.cfg.dir.join(SHADOW_DIR), ..self.cfg.clone() },
            on_disk: self.on_disk.clone(),
            counters: self.counters.clone(),
            open: None,
            enc: Encoder::new(),
            round: Vec::new(),
            round_since: Instant::now(),
            blocks: None,
            prepared: self.prepared.clone(),
            _alive: self.sync_alive.clone(),
        }
    }

    /// Hands a live record to the writer: a small one copied flat, while the writer keeps up
    /// ([`DEFER_BYTES`]), any other encoded here. `false` if the spool is full (nothing was
    /// queued). A record that cannot be encoded (never seen: a count over `u32`) is counted
    /// as failed and the answer is not held up for it.
    pub(crate) fn offer(&self, live: &Live<'_>) -> bool {
        if self.on_disk.load(Ordering::Relaxed) >= self.max_bytes {
            return false;
        }
        HOME.with_borrow_mut(|home| self.hand_over(live, home))
    }

    /// Copies a live record into the thread's first stripe, or encodes it with the thread's
    /// encoder and appends its frame to a stripe (see [`Self::offer`]).
    fn hand_over(&self, live: &Live<'_>, home: &mut Home) -> bool {
        let first = *home.stripe.get_or_insert_with(|| NEXT_HOME.fetch_add(1, Ordering::Relaxed) as usize);
        if self.put_flat(live, first) {
            // (The encoder is left untouched: a copy is all most records take.)
            return true;
        }
        let handed = self.append_encoded(live, first, &mut home.enc);
        home.enc.trim();
        handed
    }

    /// Copies a small live record into the thread's first stripe while the writer keeps up
    /// (see [`Self::offer`]); `false` if it was not copied.
    fn put_flat(&self, live: &Live<'_>, first: usize) -> bool {
        let Stripes { stripes, stripe_bytes } = &*self.pending;
        let size = flat::size(live);
        if size <= DEFER_BYTES
            && flat::fits(live)
            && let Some(mut q) = lock(&stripes[first % stripes.len()])
            // The writer keeps up: its stripe is no more than 1/`BEHIND` full.
            && q.bytes() + size <= stripe_bytes / BEHIND
        {
            let r = q.refs_for(live);
            flat::put(live, r, size, &mut q.flat);
            return true;
        }
        false
    }

    /// Encodes a live record with `enc` and appends its frame to a stripe, `first` first.
    fn append_encoded(&self, live: &Live<'_>, first: usize, enc: &mut Encoder) -> bool {
        let Stripes { stripes, stripe_bytes } = &*self.pending;
        if write_record(&live.job(), enc).is_err() {
            self.counters.log_failed.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // A large record is compressed here while the writer is behind (its stripe fills up).
        let behind = enc.frame.len() >= COMPRESS_ALONE && lock(&stripes[first % stripes.len()]).is_none_or(|q| q.bytes() > stripe_bytes / BEHIND);
        let frame = enc.compress_large(behind);
        // An empty stripe takes a frame larger than a stripe's share (a big batch): it is
        // not refused while the spool is empty (unless the spool may queue nothing).
        let put = |mut q: std::sync::MutexGuard<'_, Queued>| {
            let fits = q.bytes() + frame.len() <= *stripe_bytes || (q.is_empty() && *stripe_bytes > 0);
            if fits {
                q.frames.extend_from_slice(frame);
            }
            fits
        };
        let order = || (0..stripes.len()).map(|i| &stripes[(first + i) % stripes.len()]);
        let mut busy = false;
        for stripe in order() {
            let frames = match lock(stripe) {
                Some(g) => g,
                None => {
                    busy = true;
                    continue;
                }
            };
            if put(frames) {
                return true;
            }
        }
        // Every stripe was full, or held by another thread (more appending threads than
        // stripes): waits for those, which are only ever held for a copy.
        busy && order().any(|stripe| put(stripe.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }

    /// Bytes of spool files on disk now.
    pub fn bytes_on_disk(&self) -> u64 {
        self.on_disk.load(Ordering::Relaxed)
    }
}

/// A stripe, unless another thread holds it.
fn lock(stripe: &std::sync::Mutex<Queued>) -> Option<std::sync::MutexGuard<'_, Queued>> {
    match stripe.try_lock() {
        Ok(g) => Some(g),
        // Only whole frames and records are ever added, so a poisoned stripe is sound.
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

/// The subdirectory of shadow records' segments (see [`BackgroundLog`]).
const SHADOW_DIR: &str = "shadow";

/// Sealed segments of the spool and of its shadow subdirectory, by name (segment ids are
/// time-ordered and unique across both).
fn ready_segments(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = list(dir, "ready-").unwrap_or_default();
    out.extend(list(&dir.join(SHADOW_DIR), "ready-").unwrap_or_default());
    out.sort();
    out
}

/// Files in `dir` whose name starts with `prefix` and ends in `.vpl` (segments), by name.
fn list(dir: &Path, prefix: &str) -> std::io::Result<Vec<(String, PathBuf)>> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            (name.starts_with(prefix) && name.ends_with(".vpl")).then(|| (name, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

struct Open {
    id: String,
    file: std::io::BufWriter<File>,
    opened: Instant,
    /// Bytes written to the file.
    bytes: u64,
    /// Bytes of frames it holds before compression (what reading it back takes in memory).
    raw: u64,
    unsynced: bool,
    /// The schemas whose frames it holds, and their frames.
    schemas: Vec<u32>,
    schema_frames: Vec<Arc<[u8]>>,
    /// What it holds, followed as it is written, so that it is prepared for the registry
    /// without being read back ([`Written`]): its records, the CRC-32 of its bytes, and the
    /// bytes of records left outside compressed blocks.
    digest: vigil_core::predlog::SegmentDigest,
    crc: crc32fast::Hasher,
    plain: u64,
}

/// What the writer of a sealed segment followed of it ([`Open::digest`]), for the preparer.
struct Written {
    digest: vigil_core::predlog::SegmentDigest,
    len: u64,
    crc32: u32,
    plain: u64,
}

struct Writer {
    cfg: SpoolConfig,
    pending: Arc<Stripes>,
    on_disk: Arc<AtomicU64>,
    counters: Arc<Counters>,
    /// The syncer: flushing to disk waits there, never in the writer.
    sync: SyncSender<SyncJob>,
    /// Whether it follows its segments ([`Open::digest`]).
    follow: bool,
}

/// Work for the syncer thread: `fdatasync` can take milliseconds on a busy disk, and a writer
/// waiting for it lets the queue fill (requests refused or records dropped), so the writer
/// only flushes its buffer and hands the file over.
enum SyncJob {
    /// Flush this (duplicated) handle of the open segment to disk.
    Sync(File),
    /// Flush a finished segment to disk and mark it ready for shipping.
    Seal { file: File, id: String, written: Option<Written> },
}

struct Syncer {
    dir: PathBuf,
    rx: Receiver<SyncJob>,
    counters: Arc<Counters>,
    /// Set when the last segment is sealed (the gateway is gone).
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// Where a sealed segment's [`Written`] is left for the preparer; its shipper's bell is
    /// rung when a segment is ready to ship, and when the last one is.
    prepared: Arc<PreparedSegments>,
    /// The spool directory's lock, held until the last file is sealed (and by the shipper
    /// until its last pass is done).
    _lock: Arc<File>,
}

impl Syncer {
    fn run(self) {
        while let Ok(job) = self.rx.recv() {
            match job {
                SyncJob::Sync(file) => {
                    if file.sync_data().is_err() {
                        self.counters.log_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                SyncJob::Seal { file, id, written } => make_ready(&self.dir, file, &id, written, &self.counters, &self.prepared),
            }
        }
        // The writer is gone and everything it handed over is on disk. (The shared state let
        // go first: the preparer ends once the shipper's last pass has let go of it too.)
        let Syncer { closed, prepared, .. } = self;
        let shipper = prepared.shipper.clone();
        drop(prepared);
        closed.store(true, Ordering::SeqCst);
        shipper.ring();
    }
}

impl Writer {
    fn run(self) {
        let mut open: Option<Open> = None;
        let mut last_sync = Instant::now();
        let mut nap = LIGHT_NAP;
        let mut last_round = Instant::now();
        let mut spare: Vec<u8> = Vec::new();
        // Live records handed over flat (and what they share, and where they are read into),
        // and what encodes them.
        let mut live: (Vec<u8>, Vec<flat::Refs>, flat::Slots) = Default::default();
        let mut enc = Encoder::new();
        // A round's frames from every stripe, written as compressed blocks.
        let mut batch: Vec<u8> = Vec::new();
        let mut blocks = Some((predwire::BlockWriter::fast(), Vec::new()));
        loop {
            // Read before collecting: once the spool is gone no frame can arrive after this
            // (the fence orders the collection after the request threads' last appends).
            let disconnected = Arc::strong_count(&self.pending) == 1;
            if disconnected {
                std::sync::atomic::fence(Ordering::Acquire);
            }
            // A large round is written in parts as it is collected (see [`ROUND_PART`]).
            let mut written = true;
            let collected = Instant::now();
            let round = self.collect(&mut batch, &mut spare, &mut live, &mut enc, &mut |part| written &= self.write_frames(&mut open, part, blocks.as_mut()));
            let span = collected.duration_since(std::mem::replace(&mut last_round, collected));
            let empty = round == 0;
            if !batch.is_empty() {
                // A round of a few records is written as it is (compressing it saves little).
                written &= self.write_frames(&mut open, &batch, blocks.as_mut().filter(|_| round >= COMPRESS_MIN));
            }
            if !written {
                std::thread::sleep(Duration::from_millis(200));
            }
            batch.clear();
            trim(&mut batch);
            if let Some((_, out)) = blocks.as_mut() {
                trim(out);
            }
            if let Some(o) = open.as_mut()
                && o.unsynced
                && (last_sync.elapsed() >= SYNC_EVERY || disconnected)
            {
                match o.file.flush().and_then(|()| o.file.get_ref().try_clone()) {
                    // A full syncer is busy syncing this file already: the next round covers it.
                    Ok(dup) => drop(self.sync.try_send(SyncJob::Sync(dup))),
                    Err(_) => {
                        // (What reached the file is not known.)
                        o.digest.give_up();
                        self.counters.log_failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                o.unsynced = false;
                last_sync = Instant::now();
            }
            let seal = seal_due(&self.cfg, open.as_ref());
            if (seal || disconnected)
                && let Some(o) = open.take()
            {
                self.seal(o);
            }
            if disconnected {
                // Dropping the writer closes the syncer's queue: it seals what it has and ends.
                return;
            }
            nap = next_nap(nap, round, span, self.pending.stripe_bytes / BEHIND / 2, quiet(empty, open.as_ref()));
            std::thread::park_timeout(nap);
        }
    }

    /// Empties the stripes into `batch`: their frames, and their live records encoded. Once
    /// `batch` holds [`ROUND_PART`] bytes it is handed to `part` (to be written) and emptied,
    /// and a stripe's frames of that size or more go to `part` as they are, so the writer
    /// never holds a second copy of a large round. Gives the bytes of records collected.
    fn collect(&self, batch: &mut Vec<u8>, spare: &mut Vec<u8>, live: &mut (Vec<u8>, Vec<flat::Refs>, flat::Slots), enc: &mut Encoder, part: &mut dyn FnMut(&[u8])) -> usize {
        let (records, refs, slots) = live;
        let mut collected = 0;
        fn full(batch: &mut Vec<u8>, part: &mut dyn FnMut(&[u8])) {
            if batch.len() >= ROUND_PART {
                part(batch);
                batch.clear();
            }
        }
        for stripe in &self.pending.stripes {
            {
                let mut q = stripe.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if q.is_empty() {
                    continue;
                }
                std::mem::swap(&mut q.frames, spare);
                std::mem::swap(&mut q.flat, records);
                std::mem::swap(&mut q.refs, refs);
            }
            collected += spare.len();
            if spare.len() >= ROUND_PART {
                // (Records are independent: which is written first does not matter.)
                part(spare);
            } else {
                batch.extend_from_slice(spare);
                full(batch, part);
            }
            // The buffers go back to the stripes: one that a burst grew is let go.
            spare.clear();
            trim_to(spare, KEEP_STRIPE);
            let mut failed = 0;
            let mut rest = Some(records.as_slice());
            while let Some(buf) = rest.filter(|b| !b.is_empty()) {
                let (record, after) = flat::take(buf, slots);
                rest = after;
                // A record that cannot be read or encoded (or a fault in encoding it) costs that
                // record only (a damaged length the rest of this stripe's round), never the log.
                let Some(live) = record.as_ref().and_then(|t| refs.get(t.refs).map(|r| t.live(r))) else {
                    failed += 1;
                    continue;
                };
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_record(&live.job(), enc))) {
                    Ok(Ok(())) => {
                        collected += enc.frame.len();
                        batch.extend_from_slice(&enc.frame);
                        full(batch, part);
                    }
                    _ => failed += 1,
                }
            }
            if failed > 0 {
                self.counters.log_failed.fetch_add(failed, Ordering::Relaxed);
                // What a damaged record grew is let go.
                *slots = flat::Slots::default();
            }
            enc.trim();
            records.clear();
            trim_to(records, KEEP_STRIPE);
            // The versions they hold must not stay loaded once they are no longer served.
            refs.clear();
        }
        collected
    }

    /// Appends a buffer of whole frames (see [`write_frames`]), handing segments to the syncer.
    /// `false` if some run could not be written: the writer then pauses once, at the end of
    /// the round (a disk that fails now may come back), not after each part of it.
    fn write_frames(&self, open: &mut Option<Open>, buf: &[u8], blocks: Option<&mut (predwire::BlockWriter, Vec<u8>)>) -> bool {
        write_frames(Dest { cfg: &self.cfg, follow: self.follow }, &self.counters, &self.on_disk, open, buf, blocks, &mut |o| self.seal(o))
    }

    fn seal(&self, o: Open) {
        let (file, id, written) = finish(o, &self.counters);
        // Waits only if the syncer is that far behind: the disk is the limit then.
        if self.sync.send(SyncJob::Seal { file, id, written }).is_err() {
            self.counters.log_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Appends a buffer of whole frames to the open segment (the writer's, or a background log's)
/// in runs of at most [`BLOCK_BYTES`] (a larger frame alone), each run one compressed block
/// with a block writer (each frame counted as spooled or failed), handing the segment to
/// `seal` whenever it reaches its size. The shared counters are updated once per buffer:
/// request threads read them. `false` if some run could not be written (counted as failed;
/// the runs after it are still tried, in a new segment).
fn write_frames(to: Dest<'_>, counters: &Counters, on_disk: &AtomicU64, open: &mut Option<Open>, mut buf: &[u8], mut blocks: Option<&mut (predwire::BlockWriter, Vec<u8>)>, seal: &mut dyn FnMut(Open)) -> bool {
    let cfg = to.cfg;
    let (mut spooled, mut written, mut ok) = (0u64, 0u64, true);
    while buf.len() >= 8 {
        // A run of frames to compress together, or one the request thread compressed; it
        // ends where the open segment reaches its size, so that segments are sealed at their
        // size however large a round is.
        let (mut run, mut frames, mut compressed) = (0, 0u64, false);
        let room = usize::try_from(cfg.seal_bytes.saturating_sub(open.as_ref().map_or(0, |o| o.raw))).unwrap_or(usize::MAX);
        while let Some(head) = buf.get(run..run + 4) {
            let len = 8 + u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let Some(frame) = buf.get(run..run + len) else { break };
            let block = predwire::is_block(frame);
            if run > 0 && (block || run + len > BLOCK_BYTES || run + len > room) {
                break;
            }
            run += len;
            frames += 1;
            if block || blocks.is_none() {
                compressed = block;
                break;
            }
        }
        if run == 0 {
            break;
        }
        let chunk = &buf[..run];
        buf = &buf[run..];
        match append_run(to, open, chunk, if compressed { None } else { blocks.as_deref_mut() }) {
            Ok(n) => written += n,
            Err(e) => {
                eprintln!("vigil gateway: the prediction spool cannot be written: {e}");
                counters.log_failed.fetch_add(frames, Ordering::Relaxed);
                // What was written before the failure is still shipped.
                if let Some(o) = open.take() {
                    on_disk.fetch_add(std::mem::take(&mut written), Ordering::Relaxed);
                    seal(o);
                }
                ok = false;
                continue;
            }
        }
        spooled += frames;
        if open.as_ref().is_some_and(|o| cfg.full(o.bytes, o.raw))
            && let Some(o) = open.take()
        {
            // Counted before the segment can be shipped (the shipper subtracts its size).
            on_disk.fetch_add(std::mem::take(&mut written), Ordering::Relaxed);
            seal(o);
        }
    }
    // Out of the process's buffer at once: a crash of the process then loses nothing written
    // here (the syncer's `fdatasync` is for a crash of the machine).
    if let Some(o) = open.as_mut()
        && let Err(e) = o.file.flush()
    {
        o.digest.give_up();
        eprintln!("vigil gateway: the prediction spool cannot be written: {e}");
        counters.log_failed.fetch_add(1, Ordering::Relaxed);
        ok = false;
    }
    on_disk.fetch_add(written, Ordering::Relaxed);
    counters.log_spooled.fetch_add(spooled, Ordering::Relaxed);
    ok
}

/// The most bytes of frames the writer puts in one compressed block (a frame larger than
/// this makes a block of its own). A block is all or nothing when read back, so a damaged one
/// loses at most this much.
const BLOCK_BYTES: usize = 256 << 10;

/// Where a writer appends: its spool's settings, and whether it follows its segments
/// ([`Open::digest`]).
#[derive(Clone, Copy)]
struct Dest<'a> {
    cfg: &'a SpoolConfig,
    follow: bool,
}

/// Appends whole frames to the open segment, opening one first if there is none, and the
/// frames of the schemas they name before them where the segment has none (uncompressed); with
/// a block writer the frames go in one compressed block (as they are when that is not
/// smaller). Gives the bytes it added to the spool's files (for the caller to count on disk).
fn append_run(to: Dest<'_>, open: &mut Option<Open>, frames: &[u8], blocks: Option<&mut (predwire::BlockWriter, Vec<u8>)>) -> std::io::Result<u64> {
    let cfg = to.cfg;
    let mut added = 0;
    if open.is_none() {
        let id = vigil_core::ids::UuidV7Ids.new_id("seg");
        let file = OpenOptions::new().create_new(true).append(true).open(cfg.dir.join(format!("open-{id}.vpl")))?;
        let mut file = std::io::BufWriter::with_capacity(1 << 16, file);
        file.write_all(predwire::SEGMENT_MAGIC)?;
        added += predwire::SEGMENT_MAGIC.len() as u64;
        let magic = predwire::SEGMENT_MAGIC.len() as u64;
        let mut crc = crc32fast::Hasher::new();
        crc.update(predwire::SEGMENT_MAGIC);
        let mut digest = vigil_core::predlog::SegmentDigest::default();
        if !to.follow {
            digest.give_up();
        }
        *open = Some(Open { id, file, opened: Instant::now(), bytes: magic, raw: magic, unsynced: true, schemas: Vec::new(), schema_frames: Vec::new(), digest, crc, plain: 0 });
    }
    let Some(o) = open.as_mut() else { return Ok(added) };
    let appended = append_to(o, frames, blocks);
    if appended.is_err() {
        // What reached the file is not known.
        o.digest.give_up();
    }
    Ok(added + appended?)
}

/// [`append_run`] to an open segment.
fn append_to(o: &mut Open, frames: &[u8], blocks: Option<&mut (predwire::BlockWriter, Vec<u8>)>) -> std::io::Result<u64> {
    let mut added = 0;
    let mut rest = frames;
    let mut raw = 0;
    while let Some(head) = rest.get(..4) {
        let len = (8 + u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize).min(rest.len());
        // A block compressed by a request thread counts as the bytes of its content.
        raw += predwire::content_len(&rest[..len]) as u64;
        if let Some(id) = predwire::frame_schema(&rest[..len])
            && !o.schemas.contains(&id)
        {
            let schema = SCHEMAS.frame(id).ok_or_else(|| std::io::Error::other("a record names a schema this process never made"))?;
            o.file.write_all(&schema)?;
            o.crc.update(&schema);
            o.bytes += schema.len() as u64;
            o.raw += schema.len() as u64;
            added += schema.len() as u64;
            o.schemas.push(id);
            o.schema_frames.push(schema);
        }
        rest = &rest[len..];
    }
    let (n, plain) = match blocks {
        Some((writer, out)) => {
            out.clear();
            let how = writer.append(frames, out)?;
            o.file.write_all(out)?;
            o.crc.update(out);
            (out.len(), matches!(how, predwire::Written::Plain))
        }
        None => {
            o.file.write_all(frames)?;
            o.crc.update(frames);
            (frames.len(), true)
        }
    };
    let n = n as u64;
    o.bytes += n;
    o.raw += raw;
    o.plain += if plain { n } else { 0 };
    o.unsynced = true;
    if o.digest.is_usable() {
        let schemas: Vec<&[u8]> = o.schema_frames.iter().map(|f| &f[..]).collect();
        o.digest.add_run(&schemas, frames);
    }
    Ok(added + n)
}

/// Whether the open segment is old or large enough to be sealed.
fn seal_due(cfg: &SpoolConfig, open: Option<&Open>) -> bool {
    open.is_some_and(|o| o.bytes > predwire::SEGMENT_MAGIC.len() as u64 && (o.opened.elapsed() >= cfg.seal_after || cfg.full(o.bytes, o.raw)))
}

/// Flushes a segment's buffer and gives back its file and id, and what its writer followed
/// of it (`None` if the last flush failed).
fn finish(o: Open, counters: &Counters) -> (File, String, Option<Written>) {
    // Sealed even if the last flush failed: whole frames are shipped, a cut one is counted.
    let Open { file, id, digest, crc, plain, bytes, .. } = o;
    match file.into_inner() {
        Ok(f) => (f, id, digest.is_usable().then(|| Written { digest, len: bytes, crc32: crc.finalize(), plain })),
        Err(e) => {
            counters.log_failed.fetch_add(1, Ordering::Relaxed);
            (e.into_parts().1.into_parts().0, id, None)
        }
    }
}

/// Syncs a finished segment to disk and renames it `ready-…` for the shipper (counted as
/// failed if either fails), leaving what its writer followed of it for the preparer first
/// (once the name is listed the preparer or the shipper may look for it), and rings the
/// shipper.
fn make_ready(dir: &Path, file: File, id: &str, written: Option<Written>, counters: &Counters, prepared: &PreparedSegments) {
    // Sealed even if the flush failed: whole frames are shipped, a cut one is counted.
    let synced = file.sync_data();
    drop(file);
    let from = dir.join(format!("open-{id}.vpl"));
    let name = format!("ready-{id}.vpl");
    let followed = synced.is_ok() && written.is_some_and(|w| prepared.written.put(name.clone(), w));
    if synced.is_err() || std::fs::rename(&from, dir.join(&name)).is_err() {
        if followed {
            prepared.written.take(&name);
        }
        counters.log_failed.fetch_add(1, Ordering::Relaxed);
    }
    prepared.shipper.ring();
}

/// A background thread's own segments (see [`Spool::background_log`]): records are gathered
/// in rounds (written once a round holds [`HEAVY_ROUND`] of records or has waited
/// [`BACKGROUND_ROUND`], compressed from [`COMPRESS_MIN`]: the thread runs on idle CPU time,
/// and fewer bytes make less disk work for the host, which takes CPU time from the live
/// requests: measured, a 100% shadow with its records written plain nearly doubled the bytes
/// written per request) and synced when the segment is sealed (after the spool's `seal_after`
/// or when full, [`SpoolConfig::seal_bytes`] and [`SpoolConfig::seal_file_bytes`]), all on the calling thread. Shadow records use it: they are never
/// anyone's answer, so a crash of the process may lose the round not yet written (up to
/// 100 ms of them), a crash of the machine about the last 1.1 s (that round and the
/// segment's `seal_after`), and a shadow does not add a journal commit every
/// [`SYNC_EVERY`] to the disk's work (with them the primary's p99 rose measurably). Records that find the spool full are dropped and counted.
/// The last round is written and the segment sealed when the log is dropped.
pub(crate) struct BackgroundLog {
    cfg: SpoolConfig,
    on_disk: Arc<AtomicU64>,
    counters: Arc<Counters>,
    open: Option<Open>,
    enc: Encoder,
    /// Encoded frames not written yet, and when the first of them came.
    round: Vec<u8>,
    round_since: Instant,
    /// What compresses rounds (made when a round is first to be compressed; `None`: rounds
    /// are written as they are).
    blocks: Option<(predwire::BlockWriter, Vec<u8>)>,
    /// Where a sealed segment's [`Written`] is left, and the shipper rung.
    prepared: Arc<PreparedSegments>,
    /// Keeps the syncer running until this log is gone; nothing is sent on it.
    _alive: SyncSender<SyncJob>,
}

/// The longest a background log's round waits before it is written.
const BACKGROUND_ROUND: Duration = Duration::from_millis(100);

/// A background log that has had no record for this long lets go of its buffers.
const BACKGROUND_IDLE: Duration = Duration::from_secs(2);

impl BackgroundLog {
    /// Adds a record to the round (counted as queued, then as spooled once written; or as
    /// dropped when the spool is full).
    pub(crate) fn write(&mut self, job: &LogJob<'_>) {
        if self.on_disk.load(Ordering::Relaxed) >= self.cfg.max_bytes {
            self.counters.log_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.counters.log_queued.fetch_add(1, Ordering::Relaxed);
        if write_record(job, &mut self.enc).is_err() {
            self.counters.log_failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.round.is_empty() {
            self.round_since = Instant::now();
        }
        self.round.extend_from_slice(&self.enc.frame);
        self.enc.trim();
        if self.round.len() >= BLOCK_BYTES {
            self.flush();
        }
    }

    /// Writes a round that is large or old enough, and seals (syncs and hands to the shipper)
    /// a segment old or large enough. Once nothing has come for [`BACKGROUND_IDLE`], lets go
    /// of the compressor and the round's buffer (a few hundred KiB, for shadows that have stopped).
    pub(crate) fn tick(&mut self) {
        if self.round.len() >= HEAVY_ROUND || (!self.round.is_empty() && self.round_since.elapsed() >= BACKGROUND_ROUND) {
            self.flush();
        }
        if self.round.is_empty() && self.blocks.is_some() && self.round_since.elapsed() >= BACKGROUND_IDLE {
            self.blocks = None;
            self.round = Vec::new();
        }
        if seal_due(&self.cfg, self.open.as_ref()) {
            self.seal();
        }
    }

    /// Writes the round: in compressed blocks from [`COMPRESS_MIN`] bytes.
    fn flush(&mut self) {
        if self.round.is_empty() {
            return;
        }
        let compress = self.round.len() >= COMPRESS_MIN;
        if compress && self.blocks.is_none() {
            self.blocks = Some((predwire::BlockWriter::fast(), Vec::new()));
        }
        let blocks = self.blocks.as_mut().filter(|_| compress);
        let (dir, counters, prepared) = (&self.cfg.dir, &self.counters, &self.prepared);
        // No pause after a failure here: the thread's next records find the disk as it is.
        write_frames(Dest { cfg: &self.cfg, follow: prepared.keep_files }, counters, &self.on_disk, &mut self.open, &self.round, blocks, &mut |o| seal_here(dir, counters, prepared, o));
        self.round.clear();
        trim(&mut self.round);
        if let Some((_, out)) = self.blocks.as_mut() {
            trim(out);
        }
    }

    fn seal(&mut self) {
        if let Some(o) = self.open.take() {
            seal_here(&self.cfg.dir, &self.counters, &self.prepared, o);
        }
    }
}

/// Seals a background log's segment on its own thread (synced, renamed `ready-…`) and rings
/// the shipper.
fn seal_here(dir: &Path, counters: &Counters, prepared: &PreparedSegments, o: Open) {
    let (file, id, written) = finish(o, counters);
    make_ready(dir, file, &id, written, counters, prepared);
}

impl Drop for BackgroundLog {
    fn drop(&mut self) {
        self.flush();
        self.seal();
    }
}

/// Constants of the split between the preparer and the shipper.
mod catch_up {
    use std::time::Duration;
    /// Prepared segments that may wait for the shipper.
    pub const PREPARED: usize = 4;
    /// The shipper prepares segments itself (at its own priority) once the spool holds this
    /// much…
    pub const BACKLOG_BYTES: u64 = 64 << 20;
    /// …or the oldest sealed segment has waited this long: under sustained load the log is
    /// stored with the shipper's share of the CPUs, not only with idle time.
    pub const OLDEST: Duration = Duration::from_secs(30);
}

/// Segments the preparer has made ready for the shipper, by file name (a segment that cannot
/// be stored in any case is kept as its error).
#[derive(Default)]
struct PreparedSegments {
    by_name: std::sync::Mutex<std::collections::BTreeMap<String, vigil_core::Result<vigil_core::predlog::PreparedSegment>>>,
    /// The sealed segments as the shipper last listed them: the preparer never reads the
    /// directory itself (a descheduled idle thread inside `readdir` would hold the
    /// directory's lock that the writer needs to create files).
    listing: std::sync::Mutex<Vec<(String, PathBuf)>>,
    /// Rung when the listing has new segments.
    preparer: Bell,
    /// Rung when a segment is sealed or prepared.
    shipper: Bell,
    /// What writers followed of sealed segments.
    written: WrittenSegments,
    /// Whether the registry keeps sealed files as the stored bodies (writers then follow
    /// their segments).
    keep_files: bool,
}

/// What writers followed of the sealed segments ([`Written`]), by file name, for the
/// preparer (or the shipper) to prepare them without reading them back; each is taken by
/// whichever of the two prepares its segment, and the shipper lets go of those whose segment
/// is gone. Bounded by count and bytes ([`MAX_WRITTEN`], [`MAX_WRITTEN_BYTES`]): past them a
/// sealed segment's is not kept, and the segment is read back.
#[derive(Default)]
struct WrittenSegments(std::sync::Mutex<(WrittenByName, usize)>);

/// Each segment's [`Written`] and the bytes it holds, by file name.
type WrittenByName = std::collections::HashMap<String, (Written, usize)>;

/// The most [`WrittenSegments`] holds: segments pile up while the registry cannot take them,
/// and the preparer stops a few segments ahead of the shipper…
const MAX_WRITTEN: usize = 16;

/// …and the most bytes (a segment's is a few hundred bytes, and about 150 more per record
/// with a caller's id, each of which needs an index row: up to a few MB for a segment of
/// single rows that all carry one).
const MAX_WRITTEN_BYTES: usize = 16 << 20;

impl WrittenSegments {
    /// Keeps a segment's; `false` if there is no room.
    fn put(&self, name: String, w: Written) -> bool {
        let held = w.digest.held_bytes();
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, bytes) = &mut *m;
        if map.len() >= MAX_WRITTEN || *bytes + held > MAX_WRITTEN_BYTES {
            return false;
        }
        *bytes += held;
        if let Some((_, old)) = map.insert(name, (w, held)) {
            *bytes -= old;
        }
        true
    }

    fn take(&self, name: &str) -> Option<Written> {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, bytes) = &mut *m;
        let (w, held) = map.remove(name)?;
        *bytes -= held;
        Some(w)
    }

    /// Lets go of those whose segment is not in `ready` (shipped; or, just sealed, not listed
    /// yet: that segment is then read back).
    fn retain(&self, ready: &[(String, PathBuf)]) {
        let mut m = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (map, bytes) = &mut *m;
        map.retain(|name, (_, held)| {
            let keep = ready.iter().any(|(n, _)| n == name);
            if !keep {
                *bytes -= *held;
            }
            keep
        });
    }
}

/// A sealed segment prepared from what its writer followed of it (`None`: to be read back):
/// only where the registry keeps sealed files as they are, and only while the file is as
/// long as it was written (see [`Registry::prepare_written_segment`]).
fn prepare_written(name: &str, instance: &str, path: &Path, w: Written, keep_files: bool) -> Option<vigil_core::Result<vigil_core::predlog::PreparedSegment>> {
    if !keep_files || std::fs::metadata(path).ok()?.len() != w.len {
        return None;
    }
    Registry::prepare_written_segment(segment_id(name), instance, w.digest, path, w.len, w.crc32, w.plain)
}

/// How long the preparer and the shipper nap when nobody rings them: segments are shipped as
/// soon as they are sealed, and this poll is only a safety net. (Polling every 20 and 50 ms,
/// the two threads took 3 ms of CPU a second between them with nothing to do: each pass
/// lists two directories.)
const SHIPPING_POLL: Duration = Duration::from_secs(1);

/// The shipper's nap after a pass that found the preparer holding a lock it only tries
/// (doubling while passes keep finding it so, up to [`SHIPPING_POLL`]).
const CONTENDED_NAP: Duration = Duration::from_millis(20);

/// A thread's wake-up call: it naps in `park_timeout` and others ring (unpark) it when there
/// is work. Lock-free, so a thread at idle priority that rings never holds anything the other
/// waits for. Rings before the thread is known do nothing (it polls).
#[derive(Clone, Default)]
struct Bell(Arc<std::sync::OnceLock<std::thread::Thread>>);

impl Bell {
    fn set(&self, thread: std::thread::Thread) {
        let _ = self.0.set(thread);
    }

    fn ring(&self) {
        if let Some(t) = self.0.get() {
            t.unpark();
        }
    }
}

/// The largest read buffer the preparer keeps from one segment to the next (a segment's
/// file is sealed at `seal_file_bytes`, 1 MiB by default, and at most a block more)…
const KEEP_READ: usize = 4 << 20;

/// …and for how long after its last segment.
const KEEP_READ_FOR: Duration = Duration::from_secs(10);

/// Prepares sealed segments ([`prepare`]: decoding, checks, compression unless the file is
/// kept, most of the CPU work of storing the log) on a `SCHED_IDLE` thread,
/// with time no request wants. It holds nothing the shipper waits for: the shipper takes a
/// prepared segment with `try_lock`, or prepares it itself when it is behind.
struct Preparer {
    instance: String,
    /// (With whether the registry keeps the sealed files as the stored bodies, [`prepare`].)
    shared: Arc<PreparedSegments>,
}

/// Prepares a sealed segment (`bytes`: the file at `path`) for the registry: to be kept as
/// the file itself where the registry keeps such files (the embedded store: written to disk
/// once, never copied into the database), else compressed into the database.
fn prepare(name: &str, instance: &str, bytes: &[u8], path: &Path, keep_file: bool) -> vigil_core::Result<vigil_core::predlog::PreparedSegment> {
    if keep_file {
        Registry::prepare_spooled_segment(segment_id(name), instance, bytes, path)
    } else {
        Registry::prepare_prediction_segment(segment_id(name), instance, bytes)
    }
}

impl Preparer {
    fn run(self) {
        self.shared.preparer.set(std::thread::current());
        crate::idle_priority();
        // The segment read, in a buffer kept while segments keep coming: a fresh one for each
        // was most of the rest of its page faults (`perf record` at the bench's single-row
        // load). Let go [`KEEP_READ_FOR`] after the last segment, so a quiet gateway holds
        // none, and after a segment larger than [`KEEP_READ`]; the buffer its blocks are
        // inflated into, one at a time (the registry's, kept per thread), likewise.
        let mut buf: Vec<u8> = Vec::new();
        let mut last_read = Instant::now();
        // Ends with the shipper, whose handle on the shared state goes when it returns (or if
        // it never started): the spool's, the background logs' and the syncer's went before
        // the shipper's last pass.
        while Arc::strong_count(&self.shared) > 1 {
            let listing = self.shared.listing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            for (name, path) in listing {
                let (known, waiting) = {
                    let m = self.shared.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (m.contains_key(&name), m.len())
                };
                if known {
                    continue;
                }
                if waiting >= catch_up::PREPARED {
                    break;
                }
                let prepared = match self.shared.written.take(&name).and_then(|w| prepare_written(&name, &self.instance, &path, w, self.shared.keep_files)) {
                    Some(p) => p,
                    None => {
                        buf.clear();
                        // Gone when the shipper got there first.
                        if File::open(&path).and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut buf)).is_err() {
                            continue;
                        }
                        let p = prepare(&name, &self.instance, &buf, &path, self.shared.keep_files);
                        if buf.capacity() > KEEP_READ {
                            buf = Vec::new();
                        }
                        last_read = Instant::now();
                        p
                    }
                };
                self.shared.by_name.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name, prepared);
                self.shared.shipper.ring();
            }
            if last_read.elapsed() >= KEEP_READ_FOR {
                buf = Vec::new();
                vigil_core::predlog::let_go_of_buffers();
            }
            std::thread::park_timeout(SHIPPING_POLL);
        }
    }
}

/// The segment id in a `ready-{id}.vpl` file name.
fn segment_id(name: &str) -> &str {
    name.strip_prefix("ready-").and_then(|n| n.strip_suffix(".vpl")).unwrap_or(name)
}

struct Shipper {
    dir: PathBuf,
    registry: Arc<Registry>,
    on_disk: Arc<AtomicU64>,
    counters: Arc<Counters>,
    instance: String,
    closed: Arc<std::sync::atomic::AtomicBool>,
    prepared: Arc<PreparedSegments>,
    /// The spool directory's lock (see `Spool::open`).
    _lock: Arc<File>,
}

impl Shipper {
    fn run(self) {
        // Storing the log can wait while live requests need the CPUs (the spool is on disk).
        // Its transactions run here, never at idle priority: they hold locks other writers of
        // the registry wait for.
        self.prepared.shipper.set(std::thread::current());
        crate::background_priority();
        let mut backoff = Duration::from_millis(100);
        let mut contended_nap = CONTENDED_NAP;
        loop {
            // Once the writer is gone, one last pass ships what it sealed; what cannot be
            // shipped now stays on disk for the next start.
            let last = self.closed.load(Ordering::SeqCst);
            let ready = ready_segments(&self.dir);
            // A `try_lock` that finds the preparer holding the lock makes this pass incomplete:
            // the next one comes after a short nap, not at the poll.
            let mut contended = false;
            match self.prepared.listing.try_lock() {
                Ok(mut l) => {
                    if *l != ready {
                        l.clone_from(&ready);
                        drop(l);
                        self.prepared.preparer.ring();
                    }
                }
                Err(_) => contended = true,
            }
            // Prepared segments whose file is gone (shipped here first) are let go, and what
            // writers followed of them.
            if let Ok(mut m) = self.prepared.by_name.try_lock() {
                m.retain(|name, _| ready.iter().any(|(n, _)| n == name));
            }
            self.prepared.written.retain(&ready);
            let behind = self.on_disk.load(Ordering::Relaxed) >= catch_up::BACKLOG_BYTES;
            let (mut failed, mut shipped) = (false, false);
            for (name, path) in &ready {
                // `None` when the map's lock is taken (the preparer is inserting): treated as
                // "not prepared yet".
                let (taken, others) = match self.prepared.by_name.try_lock() {
                    Ok(mut m) => {
                        let t = m.remove(name);
                        (t, !m.is_empty())
                    }
                    Err(_) => {
                        contended = true;
                        (None, false)
                    }
                };
                let prepared = match taken {
                    Some(p) => p,
                    // In order: a segment waits for the preparer unless the log is behind, or
                    // the preparer has gone past it (it sealed late, or its store failed).
                    None if !(last || behind || others || waited(path) >= catch_up::OLDEST) => break,
                    None => match self.prepared.written.take(name).and_then(|w| prepare_written(name, &self.instance, path, w, self.prepared.keep_files)) {
                        Some(p) => p,
                        None => match std::fs::read(path) {
                            Ok(bytes) => {
                                let p = prepare(name, &self.instance, &bytes, path, self.prepared.keep_files);
                                // Rare here (the preparer does this): the buffer its blocks were
                                // inflated into is not kept.
                                vigil_core::predlog::let_go_of_buffers();
                                p
                            }
                            Err(_) => {
                                failed = true;
                                break;
                            }
                        },
                    },
                };
                match self.ship(name, path, &prepared) {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        shipped = true;
                    }
                    Err(()) => {
                        // Kept for the retry, unless the preparer holds the map right now.
                        if prepared.is_ok()
                            && let Ok(mut m) = self.prepared.by_name.try_lock()
                        {
                            m.insert(name.clone(), prepared);
                        }
                        failed = true;
                        break;
                    }
                }
            }
            if last {
                // The preparer ends once the shared state is the last handle on it: rung after
                // this shipper's is gone, it does not nap a second for nothing.
                let preparer = self.prepared.preparer.clone();
                drop(self);
                preparer.ring();
                return;
            }
            if shipped {
                // Room for the preparer, if it stopped at `catch_up::PREPARED`.
                self.prepared.preparer.ring();
            }
            if failed {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            } else {
                // Until a segment is sealed or prepared; passes that keep finding the lock
                // taken (the preparer descheduled while holding it, under load) back off
                // towards the poll.
                let nap = if contended { contended_nap } else { SHIPPING_POLL };
                contended_nap = if contended { (contended_nap * 2).min(SHIPPING_POLL) } else { CONTENDED_NAP };
                std::thread::park_timeout(nap);
            }
        }
    }

    /// Stores one prepared segment; `Err` when the registry could not take it now (retry later).
    fn ship(&self, name: &str, path: &Path, prepared: &vigil_core::Result<vigil_core::predlog::PreparedSegment>) -> Result<(), ()> {
        let id = segment_id(name);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let stored = match prepared {
            Ok(p) => self.registry.store_prediction_segment(p),
            Err(e) => Err(e.clone()),
        };
        match stored {
            Ok(out) => {
                if !out.duplicate {
                    self.counters.log_stored.fetch_add(out.records as u64, Ordering::Relaxed);
                    // A frame cut short by a crash (or damaged on disk): counted, never guessed at.
                    self.counters.log_corrupt.fetch_add(out.damaged as u64, Ordering::Relaxed);
                }
                let _ = std::fs::remove_file(path);
                self.on_disk.fetch_sub(size.min(self.on_disk.load(Ordering::Relaxed)), Ordering::Relaxed);
                Ok(())
            }
            Err(e) if matches!(e.code(), vigil_core::ErrorCode::StorageFailure | vigil_core::ErrorCode::ConcurrentModification | vigil_core::ErrorCode::DatabaseCorrupt | vigil_core::ErrorCode::SchemaTooNew) => {
                self.counters.log_ship_retries.fetch_add(1, Ordering::Relaxed);
                Err(())
            }
            Err(e) => {
                eprintln!("vigil gateway: prediction log segment {id} was refused ({}: {}); kept as failed-{id}.vpl", e.code().as_str(), e.message());
                let records = std::fs::read(path)
                    .ok()
                    .and_then(|b| predwire::expand_segment(&b).ok().and_then(|(plain, _)| predwire::parse_segment(&plain).ok().map(|(r, _)| r.len())))
                    .unwrap_or(0);
                let _ = std::fs::rename(path, path.with_file_name(format!("failed-{id}.vpl")));
                self.on_disk.fetch_sub(size.min(self.on_disk.load(Ordering::Relaxed)), Ordering::Relaxed);
                self.counters.log_quarantined.fetch_add(records as u64, Ordering::Relaxed);
                Ok(())
            }
        }
    }
}

/// How long ago a sealed segment was last written.
fn waited(path: &Path) -> Duration {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok()).unwrap_or_default()
}

/// The column names of a version's input vector: for a single `[N, k]` input, the version's
/// recorded feature names when there are `k` of them; an input of width 1 by its own name;
/// otherwise `input[j]`.
pub(crate) fn column_names(inputs: &[&vigil_onnx::Io], lineage_features: &[String]) -> Vec<Vec<String>> {
    inputs
        .iter()
        .map(|io| {
            let width = match &io.kind {
                vigil_onnx::IoKind::Tensor { shape, .. } if shape.len() >= 2 => shape[1..].iter().try_fold(1usize, |a, d| d.map(|d| a * d)),
                vigil_onnx::IoKind::Tensor { .. } => Some(1),
                _ => None,
            };
            match width {
                Some(1) => vec![io.name.clone()],
                Some(k) if inputs.len() == 1 && lineage_features.len() == k => lineage_features.to_vec(),
                Some(k) => (0..k).map(|j| format!("{}[{j}]", io.name)).collect(),
                None => Vec::new(),
            }
        })
        .collect()
}

#[cfg(test)]
fn cell(d: &Data, i: usize) -> serde_json::Value {
    use serde_json::{Value as J, json};
    let num = |x: f64| if x.is_finite() { json!(x) } else { J::Null };
    match d {
        // The shortest text that reads back as the same f32 (0.1234, not 0.12340000271797180):
        // half the bytes to write, ship and store.
        Data::F32(x) if x[i].is_finite() => ryu::Buffer::new().format_finite(x[i]).parse::<f64>().map_or(J::Null, |v| json!(v)),
        Data::F32(_) => J::Null,
        Data::F64(x) => num(x[i]),
        Data::I64(x) => json!(x[i]),
        Data::I32(x) => json!(x[i]),
        Data::Str(x) => json!(x[i]),
        Data::Bool(x) => json!(if x[i] { 1 } else { 0 }),
    }
}

/// The score monitoring follows: a two-class probability's positive column, else a numeric
/// output of width 1 (a regression value), else an integer label.
fn scores(outputs: &[(String, Value)], rows: usize) -> Option<Vec<Option<f64>>> {
    let as_f64 = |d: &Data, i: usize| -> Option<f64> {
        match d {
            Data::F32(x) => Some(f64::from(x[i])),
            Data::F64(x) => Some(x[i]),
            Data::I64(x) => Some(x[i] as f64),
            Data::I32(x) => Some(f64::from(x[i])),
            Data::Bool(x) => Some(if x[i] { 1.0 } else { 0.0 }),
            Data::Str(_) => None,
        }
        .filter(|v| v.is_finite())
    };
    for (_, v) in outputs {
        match v {
            Value::MapsI64(m) if m.len() == rows && m.iter().all(|r| r.len() == 2) => return Some(m.iter().map(|r| Some(f64::from(r[1].1))).collect()),
            Value::MapsStr(m) if m.len() == rows && m.iter().all(|r| r.len() == 2) => return Some(m.iter().map(|r| Some(f64::from(r[1].1))).collect()),
            Value::Tensor(t) if t.shape.len() == 2 && t.shape[0] == rows && t.shape[1] == 2 && matches!(t.data, Data::F32(_) | Data::F64(_)) => {
                return Some((0..rows).map(|r| as_f64(&t.data, r * 2 + 1)).collect());
            }
            _ => {}
        }
    }
    let width_one = |t: &Tensor| t.data.len() == rows && t.shape.first() == Some(&rows);
    for float in [true, false] {
        for (_, v) in outputs {
            if let Value::Tensor(t) = v
                && width_one(t)
                && matches!(t.data, Data::F32(_) | Data::F64(_)) == float
                && !matches!(t.data, Data::Str(_))
            {
                return Some((0..rows).map(|r| as_f64(&t.data, r)).collect());
            }
        }
    }
    None
}

/// Writes a value of a tensor as JSON: numbers in their shortest form (an f32 as the shortest
/// text that reads back as that f32), non-finite ones as null, text escaped.
fn write_cell(out: &mut Vec<u8>, d: &Data, i: usize) -> std::io::Result<()> {
    match d {
        Data::F32(x) if x[i].is_finite() => out.extend_from_slice(ryu::Buffer::new().format_finite(x[i]).as_bytes()),
        Data::F64(x) if x[i].is_finite() => out.extend_from_slice(ryu::Buffer::new().format_finite(x[i]).as_bytes()),
        Data::F32(_) | Data::F64(_) => out.extend_from_slice(b"null"),
        Data::I64(x) => out.extend_from_slice(itoa::Buffer::new().format(x[i]).as_bytes()),
        Data::I32(x) => out.extend_from_slice(itoa::Buffer::new().format(x[i]).as_bytes()),
        Data::Str(x) => serde_json::to_writer(&mut *out, &x[i])?,
        Data::Bool(x) => out.push(if x[i] { b'1' } else { b'0' }),
    }
    Ok(())
}

/// Writes the outputs as a JSON object: per output, one value (or one array) per row.
fn write_outputs(outs: &[(String, Value)], out: &mut Vec<u8>) -> std::io::Result<()> {
    out.push(b'{');
    for (n, (name, v)) in outs.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        json_str(out, name)?;
        out.push(b':');
        match v {
            Value::Tensor(t) => {
                let w = t.data.len() / t.shape.first().copied().unwrap_or(1).max(1);
                out.push(b'[');
                for r in 0..t.data.len() / w.max(1) {
                    if r > 0 {
                        out.push(b',');
                    }
                    if w != 1 {
                        out.push(b'[');
                    }
                    for c in 0..w {
                        if c > 0 {
                            out.push(b',');
                        }
                        write_cell(out, &t.data, r * w + c)?;
                    }
                    if w != 1 {
                        out.push(b']');
                    }
                }
                out.push(b']');
            }
            // Per row, an object of class -> probability (in the model's class order), the
            // probability as the answer gives it: widened to f64, null if not finite.
            Value::MapsI64(rows) => maps(out, rows, |out, k| {
                out.push(b'"');
                out.extend_from_slice(itoa::Buffer::new().format(*k).as_bytes());
                out.push(b'"');
                Ok(())
            })?,
            Value::MapsStr(rows) => maps(out, rows, |out, k| json_str(out, k))?,
        }
    }
    out.push(b'}');
    Ok(())
}

/// Writes rows of (class, probability) as a JSON array of objects.
fn maps<K>(out: &mut Vec<u8>, rows: &[Vec<(K, f32)>], key: impl Fn(&mut Vec<u8>, &K) -> std::io::Result<()>) -> std::io::Result<()> {
    out.push(b'[');
    for (r, row) in rows.iter().enumerate() {
        if r > 0 {
            out.push(b',');
        }
        out.push(b'{');
        for (c, (k, p)) in row.iter().enumerate() {
            if c > 0 {
                out.push(b',');
            }
            key(out, k)?;
            out.push(b':');
            let p = f64::from(*p);
            if p.is_finite() {
                out.extend_from_slice(ryu::Buffer::new().format_finite(p).as_bytes());
            } else {
                out.extend_from_slice(b"null");
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

/// Writes a JSON string: as it is when it needs no escape (names usually do not), through
/// serde_json otherwise.
fn json_str(out: &mut Vec<u8>, s: &str) -> std::io::Result<()> {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        Ok(serde_json::to_writer(out, s)?)
    }
}

/// Records with more columns than this are written whole, without a schema (see
/// [`write_record`]).
const MAX_SCHEMA_FEATURES: usize = 4096;

/// How the log stores a tensor's values.
fn kind_of(d: &Data) -> predwire::Kind {
    match d {
        Data::F32(_) => predwire::Kind::F32,
        Data::F64(_) => predwire::Kind::F64,
        Data::I64(_) | Data::I32(_) | Data::Bool(_) => predwire::Kind::I64,
        Data::Str(_) => predwire::Kind::Str,
    }
}

/// Calls `f(column name, tensor, j, k)` for every logged column of a job's inputs in order:
/// column `j` of an input `k` values wide per row.
fn for_each_column(job: &LogJob<'_>, rows: usize, mut f: impl FnMut(&str, &Tensor, usize, usize)) {
    let mut name_buf: String;
    for (name, t) in job.inputs {
        let k = t.data.len() / rows;
        let names = job.served.columns_of(name).filter(|c| c.len() == k);
        for j in 0..k {
            let col: &str = match names {
                Some(n) => &n[j],
                None if k == 1 => name,
                None => {
                    name_buf = format!("{name}[{j}]");
                    &name_buf
                }
            };
            f(col, t, j, k);
        }
    }
}

/// The values of column `j` of a `k`-wide input (stored as [`kind_of`] says).
fn column_values(frame: &mut predwire::Frame<'_>, t: &Tensor, rows: usize, j: usize, k: usize) {
    let cells = (0..rows).map(|r| r * k + j);
    match &t.data {
        Data::F32(x) => frame.f32s(cells.map(|i| x[i])),
        Data::F64(x) => frame.f64s(cells.map(|i| x[i])),
        Data::I64(x) => frame.i64s(cells.map(|i| x[i])),
        Data::I32(x) => frame.i64s(cells.map(|i| i64::from(x[i]))),
        Data::Bool(x) => frame.i64s(cells.map(|i| i64::from(x[i]))),
        Data::Str(x) => frame.strs(cells.map(|i| Some(x[i].as_str()))),
    }
}

/// Encodes a record into `enc.frame` as one frame of the log's binary format
/// ([`vigil_core::predwire`]), straight from the job (on the thread that offers it: a request
/// thread, or the shadow thread): a record under its arm's schema (endpoint, version, digest,
/// the features' names and kinds, written once per segment), with the input values copied as
/// the model saw them; only the outputs are formatted (as JSON).
fn write_record(job: &LogJob<'_>, enc: &mut Encoder) -> std::io::Result<()> {
    let rows = job.inputs.first().map_or(1, |(_, t)| t.shape.first().copied().unwrap_or(1)).max(1);
    let s = job.served;
    let features: usize = job.inputs.iter().map(|(_, t)| t.data.len() / rows).sum();
    // A record of very many columns (an input whose width the model leaves open) is written
    // whole: its schema would be as large as its values, and kept.
    let id = enc.schema_id(job, rows, features)?;
    let head = predwire::Head {
        request_id: job.request_id,
        client_id: job.client_id,
        shadow: job.shadow,
        endpoint: job.endpoint,
        version_id: &s.version_id,
        version: &s.version,
        arm: job.arm,
        digest: &s.digest,
        assignment: job.assignment,
        unit_hash: job.unit_hash,
        bucket: job.bucket,
        at: job.at,
        latency_us: job.latency_us,
        lookup_us: job.lookup_us,
        error: job.outputs.err(),
        rows: u32::try_from(rows).map_err(std::io::Error::other)?,
        features: u32::try_from(features).map_err(std::io::Error::other)?,
    };
    enc.frame.clear();
    let frame = match id {
        Some(id) => {
            let mut frame = predwire::Frame::begin_keyed(&mut enc.frame, id, &head);
            for (_, t) in job.inputs {
                let k = t.data.len() / rows;
                match &t.data {
                    // One row: its columns' values are the tensor's, in order (one copy
                    // rather than a write per column).
                    Data::F32(x) if rows == 1 => frame.f32_row(x),
                    _ => {
                        for j in 0..k {
                            column_values(&mut frame, t, rows, j, k);
                        }
                    }
                }
            }
            frame
        }
        None => {
            let mut frame = predwire::Frame::begin(&mut enc.frame, &head);
            for_each_column(job, rows, |col, t, j, k| {
                frame.label(col, kind_of(&t.data));
                column_values(&mut frame, t, rows, j, k);
            });
            frame
        }
    };
    let scratch = &mut enc.scratch;
    scratch.clear();
    match job.outputs {
        Ok(outs) => {
            write_outputs(outs, scratch)?;
            let outputs = std::str::from_utf8(scratch).map_err(std::io::Error::other)?;
            let mut sc = scores(outs, rows).map(Vec::into_iter);
            let statuses = job.feature_statuses.map(serde_json::to_string).transpose()?;
            frame.finish(sc.as_mut().map(|i| i as &mut dyn Iterator<Item = Option<f64>>), outputs, statuses.as_deref());
        }
        Err(_) => {
            let statuses = job.feature_statuses.map(serde_json::to_string).transpose()?;
            frame.finish(None, "{}", statuses.as_deref());
        }
    }
    Ok(())
}

/// Formats a record by building it (the reference `write_record` is tested against).
#[cfg(test)]
fn record_of(job: &LogJob<'_>) -> PredictionRecord {
    let rows = job.inputs.first().map_or(1, |(_, t)| t.shape.first().copied().unwrap_or(1)).max(1);
    let mut features = std::collections::BTreeMap::new();
    for (name, t) in job.inputs {
        let k = t.data.len() / rows.max(1);
        let names = job.served.columns_of(name).filter(|c| c.len() == k).map(<[String]>::to_vec);
        for j in 0..k {
            let col = names.as_ref().map_or_else(|| if k == 1 { name.clone() } else { format!("{name}[{j}]") }, |n| n[j].clone());
            features.insert(col, (0..rows).map(|r| cell(&t.data, r * k + j)).collect());
        }
    }
    let (status, error, outputs, scores) = match job.outputs {
        Ok(outs) => {
            let o = outs
                .iter()
                .map(|(n, v)| {
                    let rows = match v {
                        Value::Tensor(t) => {
                            let w = (t.data.len() / t.shape.first().copied().unwrap_or(1).max(1)).max(1);
                            (0..t.data.len() / w).map(|r| if w == 1 { cell(&t.data, r) } else { serde_json::Value::Array((0..w).map(|c| cell(&t.data, r * w + c)).collect()) }).collect()
                        }
                        other => crate::decode::per_row(other),
                    };
                    (n.clone(), serde_json::Value::Array(rows))
                })
                .collect();
            ("ok", None, o, scores(outs, rows))
        }
        Err(e) => ("error", Some(e.to_owned()), Default::default(), None),
    };
    PredictionRecord {
        request_id: job.request_id.to_owned(),
        client_id: job.client_id.map(str::to_owned),
        role: if job.shadow { "shadow" } else { "live" }.into(),
        endpoint: job.endpoint.to_owned(),
        version_id: job.served.version_id.clone(),
        version: job.served.version.clone(),
        arm: job.arm.to_owned(),
        digest: job.served.digest.clone(),
        assignment: job.assignment.into(),
        unit_hash: job.unit_hash.map(str::to_owned),
        bucket: job.bucket,
        at: job.at,
        latency_us: job.latency_us,
        lookup_us: job.lookup_us,
        status: status.into(),
        error,
        rows: rows as u64,
        features,
        scores,
        outputs,
        feature_statuses: job.feature_statuses.cloned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What a record borrows from.
    struct Owned {
        served: Arc<Served>,
        inputs: Vec<(String, Tensor)>,
        outputs: Result<Vec<(String, Value)>, String>,
        statuses: std::collections::BTreeMap<String, Vec<String>>,
    }

    /// The 8-feature logistic regression fixture.
    fn lr_model() -> vigil_onnx::Model {
        vigil_onnx::Model::load(&std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../vigil-onnx/tests/fixtures/lr_binary.onnx")).unwrap()).unwrap()
    }

    fn owned(rows: usize, outputs: Result<Vec<(String, Value)>, String>) -> Owned {
        let model = lr_model();
        let features: Vec<String> = ["a\"q", "b", "c", "d", "e", "f", "g", "h"].iter().map(|s| (*s).to_owned()).collect();
        let columns = column_names(&model.inputs(), &features);
        let served = Arc::new(Served { name: "m".into(), version: "1.0.0".into(), version_id: "mv_1".into(), digest: "ab".into(), input_names: model.inputs().iter().map(|io| io.name.clone()).collect(), model, columns, columns_named: true });
        let data: Vec<f32> = (0..rows * 8).map(|i| if i == 3 { f32::NAN } else { i as f32 * 0.1 + 0.123 }).collect();
        let inputs = vec![("X".into(), Tensor::new(vec![rows, 8], Data::F32(data)).unwrap())];
        Owned { served, inputs, outputs, statuses: [("b".to_owned(), vec!["present".to_owned(); rows])].into_iter().collect() }
    }

    fn job(o: &Owned) -> LogJob<'_> {
        LogJob {
            request_id: "req_1",
            client_id: Some("c-1"),
            shadow: false,
            endpoint: "m",
            arm: "production",
            served: &o.served,
            assignment: "keyed",
            unit_hash: Some("ff"),
            bucket: Some(7),
            at: vigil_core::ids::Timestamp::parse("2026-11-29T10:00:00.123456Z").unwrap(),
            latency_us: 42,
            lookup_us: Some(9),
            inputs: &o.inputs,
            outputs: o.outputs.as_deref().map_err(String::as_str),
            feature_statuses: Some(&o.statuses),
        }
    }

    #[test]
    fn buffers_a_very_large_record_grew_are_let_go() {
        // 40,000 rows of 8 values: a frame of over 1 MiB.
        let big = owned(40_000, Ok(vec![]));
        let mut enc = Encoder::new();
        write_record(&job(&big), &mut enc).unwrap();
        assert!(enc.frame.len() > KEEP_BUFFER, "{}", enc.frame.len());
        enc.trim();
        assert_eq!(enc.frame.capacity(), 0);
        // An ordinary record keeps its buffers for the next one.
        write_record(&job(&owned(3, Ok(vec![]))), &mut enc).unwrap();
        let kept = enc.frame.capacity();
        enc.trim();
        assert!(kept > 0 && enc.frame.capacity() == kept);
        let mut spare = Vec::with_capacity(KEEP_BUFFER + 1);
        trim(&mut spare);
        assert_eq!(spare.capacity(), 0);
        let mut spare = Vec::with_capacity(KEEP_BUFFER);
        trim(&mut spare);
        assert_eq!(spare.capacity(), KEEP_BUFFER);
    }

    /// What live records borrow besides their values: their ids, the endpoint's and arm's names.
    struct Names {
        ids: Vec<String>,
        endpoint: Arc<str>,
        arm: Arc<str>,
    }

    fn names(n: usize) -> Names {
        Names { ids: (0..n).map(|i| format!("req_{i:04}")).collect(), endpoint: "m".into(), arm: "production".into() }
    }

    fn live<'a>(o: &'a Owned, names: &'a Names, n: usize) -> Live<'a> {
        Live {
            request_id: &names.ids[n],
            client_id: Some("c-1"),
            endpoint: &names.endpoint,
            arm: &names.arm,
            served: &o.served,
            assignment: "keyed",
            unit_hash: Some("ff"),
            bucket: Some(7),
            at_micros: vigil_core::ids::Timestamp::parse("2026-11-29T10:00:00.123456Z").unwrap().micros(),
            latency_us: 42,
            lookup_us: Some(9),
            inputs: &o.inputs,
            outputs: o.outputs.as_deref().unwrap(),
            feature_statuses: Some(&o.statuses),
        }
    }

    #[test]
    fn small_live_records_are_copied_flat_for_the_writer_while_it_keeps_up_and_encoded_by_their_thread_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig::new(dir.path().to_path_buf());
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let counters = Arc::new(Counters::default());
        let stripe_bytes = 64 << 10;
        let pending = Arc::new(Stripes::new(2, stripe_bytes));
        let on_disk = Arc::new(AtomicU64::new(0));
        let spool = Spool { pending: pending.clone(), on_disk: on_disk.clone(), max_bytes: 1 << 30, instance: "i".into(), cfg: cfg.clone(), counters: counters.clone(), sync_alive: tx.clone(), prepared: Default::default(), _writer: WriterEnd(None) };
        let writer = Writer { cfg, pending: pending.clone(), on_disk, counters: counters.clone(), sync: tx, follow: true };
        let outputs = vec![("label".to_owned(), Value::Tensor(Tensor::new(vec![1], Data::I64(vec![1])).unwrap())), ("p".to_owned(), Value::MapsI64(vec![vec![(0, 0.25), (1, 0.75)]]))];
        let small = owned(1, Ok(outputs.clone()));
        let names = names(1000);
        let size = flat::size(&live(&small, &names, 0));
        assert!(size <= DEFER_BYTES);
        let base = Arc::strong_count(&small.served);
        let mut home = Home { stripe: None, enc: Encoder::new() };
        let mut sent = Vec::new();
        // Copied flat while the stripe is at most 1/BEHIND full…
        let deferred = (stripe_bytes / BEHIND) / size;
        for n in 0..deferred {
            sent.push(record_of(&live(&small, &names, n).job()));
            assert!(spool.hand_over(&live(&small, &names, n), &mut home));
        }
        let first = home.stripe.unwrap() % 2;
        {
            let q = pending.stripes[first].lock().unwrap();
            assert_eq!((q.flat.len(), q.frames.len()), (deferred * size, 0), "none encoded on the request thread");
            assert_eq!(q.refs.len(), 1, "the records of one arm share one entry");
        }
        // The stripe holds the version once for the run, not once a record.
        assert_eq!(Arc::strong_count(&small.served), base + 1);
        // …then encoded here, as a record too large to copy always is.
        let large = owned(300, Ok(vec![("label".to_owned(), Value::Tensor(Tensor::new(vec![300], Data::I64(vec![0; 300])).unwrap()))]));
        assert!(flat::size(&live(&large, &names, 0)) > DEFER_BYTES);
        for (n, o) in [(deferred, &small), (deferred + 1, &large)] {
            sent.push(record_of(&live(o, &names, n).job()));
            assert!(spool.hand_over(&live(o, &names, n), &mut home));
        }
        {
            let q = pending.stripes[first].lock().unwrap();
            assert_eq!(q.flat.len(), deferred * size);
            assert!(!q.frames.is_empty());
        }
        // A record of another arm, version or endpoint gets an entry of its own.
        {
            let mut q = pending.stripes[1 - first].lock().unwrap();
            let (other, reloaded) = (Arc::<str>::from("challenger"), Arc::new(clone_served(&small.served)));
            let same_name = Arc::<str>::from("m");
            let a = Live { arm: &other, ..live(&small, &names, deferred + 2) };
            let b = live(&small, &names, deferred + 3);
            let c = Live { served: &reloaded, ..live(&small, &names, deferred + 4) };
            let d = Live { endpoint: &same_name, ..live(&small, &names, deferred + 5) };
            // Arms alternating share their entries; one of the last four is found.
            let (e, f, g) = (Arc::<str>::from("e"), Arc::<str>::from("f"), Arc::<str>::from("g"));
            let (e, f, g) = (Live { arm: &e, ..b }, Live { arm: &f, ..b }, Live { arm: &g, ..b });
            let order = [(&a, 0), (&a, 0), (&b, 1), (&a, 0), (&c, 2), (&c, 2), (&b, 1), (&d, 3), (&e, 4), (&f, 5), (&g, 6), (&d, 3), (&c, 7)];
            for (l, want) in order {
                assert_eq!(q.refs_for(l), want);
                flat::put(l, want, flat::size(l), &mut q.flat);
            }
            assert_eq!(q.refs.len(), 8);
            assert!(Arc::ptr_eq(&q.refs[2].2, &reloaded) && Arc::ptr_eq(&q.refs[3].0, &same_name) && Arc::ptr_eq(&q.refs[7].2, &reloaded));
            sent.extend(order.map(|(l, _)| record_of(&l.job())));
        }
        // The writer empties the stripes and encodes what was copied flat.
        let (mut batch, mut spare, mut queued, mut enc) = (Vec::new(), Vec::new(), Default::default(), Encoder::new());
        writer.collect(&mut batch, &mut spare, &mut queued, &mut enc, &mut |_| unreachable!("a small round is written whole"));
        assert!(pending.stripes.iter().all(|s| s.lock().unwrap().is_empty() && s.lock().unwrap().refs.is_empty()));
        // Nothing holds the version once the round is encoded.
        assert!(queued.0.is_empty() && queued.1.is_empty());
        assert_eq!(Arc::strong_count(&small.served), base);
        let mut open = None;
        assert!(writer.write_frames(&mut open, &batch, None));
        // The round left the process's buffer (a crash of the process would not lose it).
        let o = open.as_ref().unwrap();
        assert!(o.bytes < (64 << 10) && o.bytes > 1 << 10, "{}", o.bytes);
        assert_eq!(std::fs::metadata(dir.path().join(format!("open-{}.vpl", o.id))).unwrap().len(), o.bytes);
        let (file, id, _) = finish(open.take().unwrap(), &counters);
        drop(file);
        drop(rx);
        let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
        // (The large record was compressed on its thread: its stripe was behind.)
        let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
        let (views, damaged) = predwire::parse_segment(&plain).unwrap();
        assert_eq!((views.len(), damaged, lost), (sent.len(), 0, 0));
        let mut got: Vec<PredictionRecord> = views.iter().map(|v| v.to_record().unwrap()).collect();
        let mut want = sent;
        got.sort_by(|a, b| (&a.request_id, &a.arm).cmp(&(&b.request_id, &b.arm)));
        want.sort_by(|a, b| (&a.request_id, &a.arm).cmp(&(&b.request_id, &b.arm)));
        assert_eq!(got, want);
        assert_eq!(counters.log_failed.load(Ordering::Relaxed), 0);
        // A record the writer cannot read costs that record only, counted: the next is written.
        {
            let mut q = pending.stripes[first].lock().unwrap();
            for n in [0, 1] {
                let r = q.refs_for(&live(&small, &names, n));
                flat::put(&live(&small, &names, n), r, size, &mut q.flat);
            }
            q.flat[8] = 200;
        }
        batch.clear();
        writer.collect(&mut batch, &mut spare, &mut queued, &mut enc, &mut |_| unreachable!("a small round is written whole"));
        assert_eq!(counters.log_failed.load(Ordering::Relaxed), 1);
        let frame_len = u32::from_le_bytes(batch[..4].try_into().unwrap()) as usize;
        assert_eq!(batch.len(), 8 + frame_len, "one record's frame");
        assert_eq!(Arc::strong_count(&small.served), base);
        // A full spool takes nothing.
        spool.on_disk.store(1 << 30, Ordering::Relaxed);
        assert!(!spool.offer(&live(&small, &names, 0)));
        assert!(pending.stripes.iter().all(|s| s.lock().unwrap().is_empty()));
    }

    #[test]
    fn a_large_round_is_written_in_parts_as_it_is_collected_and_burst_buffers_are_let_go() {
        let dir = tempfile::tempdir().unwrap();
        // Segments sealed at 1 MiB of records, so that this round fills several.
        let cfg = SpoolConfig { seal_bytes: 1 << 20, ..SpoolConfig::new(dir.path().to_path_buf()) };
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Stripes::new(3, 16 << 20));
        let writer = Writer { cfg, pending: pending.clone(), on_disk: Arc::new(AtomicU64::new(0)), counters: counters.clone(), sync: tx, follow: true };
        let outputs = vec![("label".to_owned(), Value::Tensor(Tensor::new(vec![1], Data::I64(vec![1])).unwrap())), ("p".to_owned(), Value::MapsI64(vec![vec![(0, 0.25), (1, 0.75)]]))];
        let small = owned(1, Ok(outputs));
        let names = names(60_000);
        let mut sent = Vec::new();
        let mut enc = Encoder::new();
        let mut n = 0;
        {
            // A writer held up: stripe 0 holds live records copied flat (their frames some
            // three parts' worth), stripe 1 a run of encoded frames larger than a part, stripe 2
            // a few frames.
            let mut q = pending.stripes[0].lock().unwrap();
            while q.flat.len() < 3 * ROUND_PART {
                let l = live(&small, &names, n);
                let r = q.refs_for(&l);
                flat::put(&l, r, flat::size(&l), &mut q.flat);
                sent.push(record_of(&l.job()));
                n += 1;
            }
            for (stripe, bytes) in [(1, ROUND_PART + 1000), (2, 1000)] {
                let mut q = pending.stripes[stripe].lock().unwrap();
                while q.frames.len() < bytes {
                    let l = live(&small, &names, n);
                    write_record(&l.job(), &mut enc).unwrap();
                    q.frames.extend_from_slice(&enc.frame);
                    sent.push(record_of(&l.job()));
                    n += 1;
                }
            }
        }
        let stripe_1 = pending.stripes[1].lock().unwrap().frames.len();
        assert!(stripe_1 >= ROUND_PART);
        let (mut batch, mut spare, mut queued, mut enc) = (Vec::new(), Vec::new(), Default::default(), Encoder::new());
        let (mut open, mut blocks) = (None, Some((predwire::BlockWriter::fast(), Vec::new())));
        let mut parts = Vec::new();
        let round = writer.collect(&mut batch, &mut spare, &mut queued, &mut enc, &mut |part| {
            parts.push(part.len());
            assert!(writer.write_frames(&mut open, part, blocks.as_mut()));
        });
        // Written in parts of at least `ROUND_PART` (stripe 1's frames as they were), the rest
        // left for the round's end; the writer's buffer never held much more than a part.
        assert!(parts.len() >= 3 && parts.iter().all(|&n| n >= ROUND_PART), "{parts:?}");
        assert!(parts.contains(&stripe_1), "stripe 1's frames handed over as they were: {parts:?}");
        assert_eq!(round, parts.iter().sum::<usize>() + batch.len());
        assert!(batch.capacity() <= 2 * ROUND_PART && batch.len() < ROUND_PART, "{}", batch.capacity());
        // What went back to the stripes is small again (stripes 0 and 1 grew theirs past it).
        assert!(pending.stripes.iter().all(|s| {
            let q = s.lock().unwrap();
            q.is_empty() && q.frames.capacity() <= KEEP_STRIPE && q.flat.capacity() <= KEEP_STRIPE
        }));
        assert!(spare.capacity() <= KEEP_STRIPE && queued.0.capacity() <= KEEP_STRIPE);
        assert!(writer.write_frames(&mut open, &batch, blocks.as_mut()));
        // Every record is in the segments, once: those sealed on the way (at their size, handed
        // to the syncer) and the open one.
        let read = |id: &str| {
            let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
            let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
            let (views, damaged) = predwire::parse_segment(&plain).unwrap();
            assert_eq!((damaged, lost), (0, 0));
            views.iter().map(|v| v.to_record().unwrap()).collect::<Vec<_>>()
        };
        let (file, id, _) = finish(open.take().unwrap(), &counters);
        drop(file);
        let mut got = read(&id);
        let mut sealed = 0;
        while let Ok(SyncJob::Seal { file, id, .. }) = rx.try_recv() {
            drop(file);
            got.extend(read(&id));
            sealed += 1;
        }
        assert!(sealed >= 2, "{sealed} segments sealed on the way");
        got.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        sent.sort_by(|a, b| a.request_id.cmp(&b.request_id));
        assert_eq!(got, sent);
        assert_eq!(counters.log_failed.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_flat_form_reads_back_every_kind_of_value_and_field() {
        let t = |shape: Vec<usize>, d: Data| Tensor::new(shape, d).unwrap();
        let inputs: Vec<(String, Tensor)> = vec![
            ("f".into(), t(vec![2, 2], Data::F32(vec![1.5, f32::NAN, -0.0, f32::INFINITY]))),
            ("d".into(), t(vec![2, 1], Data::F64(vec![0.1, -2e300]))),
            ("i".into(), t(vec![2], Data::I64(vec![i64::MIN, 7]))),
            ("j".into(), t(vec![2, 1], Data::I32(vec![-1, i32::MAX]))),
            ("s".into(), t(vec![2], Data::Str(vec!["a".into(), "é\"\\x\u{0}".into()]))),
            ("b".into(), t(vec![2, 1], Data::Bool(vec![true, false]))),
        ];
        let outputs: Vec<(String, Value)> = vec![
            ("label".into(), Value::Tensor(t(vec![2], Data::I64(vec![0, 1])))),
            ("probabilities".into(), Value::MapsI64(vec![vec![(0, 0.25), (1, 0.75)], vec![(0, 1.0), (1, f32::NAN)]])),
            ("named".into(), Value::MapsStr(vec![vec![("yes".into(), 0.5)], vec![]])),
            ("raw".into(), Value::Tensor(t(vec![2, 0], Data::F32(vec![])))),
        ];
        let statuses: std::collections::BTreeMap<String, Vec<String>> = [("a".to_owned(), vec!["present".to_owned(), "missing".to_owned()]), ("b".to_owned(), vec![])].into_iter().collect();
        let o = owned(1, Ok(vec![]));
        let (endpoint, arm): (Arc<str>, Arc<str>) = ("ep".into(), "arm-b".into());
        let full = Live {
            request_id: "req_01",
            client_id: Some("client-7"),
            endpoint: &endpoint,
            arm: &arm,
            served: &o.served,
            assignment: "keyed",
            unit_hash: Some("ab12"),
            bucket: Some(9_999),
            at_micros: 1_790_000_000_123_456,
            latency_us: 321,
            lookup_us: Some(0),
            inputs: &inputs,
            outputs: &outputs,
            feature_statuses: Some(&statuses),
        };
        let bare = Live { client_id: None, assignment: "pinned", unit_hash: None, bucket: None, lookup_us: None, feature_statuses: None, outputs: &[], inputs: &inputs[..1], ..full };
        let random = Live { assignment: "random", ..bare };
        // Each slot gets values of another kind than the record before left in it (inputs
        // reversed; outputs rotated: a tensor's slot gets class rows and the other way round)…
        let (inputs_back, mut outputs_turned): (Vec<_>, Vec<_>) = (inputs.iter().rev().cloned().collect(), outputs.clone());
        outputs_turned.rotate_left(1);
        let swapped = Live { inputs: &inputs_back, outputs: &outputs_turned, ..full };
        // …or fewer values of the same kind: one string, one row of one class.
        let (mut inputs_less, mut outputs_less) = (inputs.clone(), outputs.clone());
        inputs_less[4].1 = t(vec![1], Data::Str(vec!["z".into()]));
        outputs_less[1].1 = Value::MapsI64(vec![vec![(3, 0.5)]]);
        outputs_less[2].1 = Value::MapsStr(vec![vec![("no".into(), 0.25)]]);
        let fewer = Live { inputs: &inputs_less, outputs: &outputs_less, ..full };
        let records = [&full, &bare, &random, &full, &swapped, &full, &fewer, &swapped];
        assert!(records.iter().all(|l| flat::fits(l)));
        assert!(!flat::fits(&Live { assignment: "other", ..bare }));
        let mut buf = Vec::new();
        for (r, l) in records.into_iter().enumerate() {
            let at = buf.len();
            flat::put(l, r + 5, flat::size(l), &mut buf);
            assert_eq!(buf.len() - at, flat::size(l));
        }
        // Read with one set of slots, as the writer reads a round: a record with fewer inputs,
        // outputs or statuses than the one before gets its own, and values of another kind
        // in a slot are read as theirs.
        let mut slots = flat::Slots::default();
        let refs: Vec<flat::Refs> = (0..5 + records.len()).map(|_| (endpoint.clone(), arm.clone(), o.served.clone())).collect();
        let same = |back: &Live<'_>, l: &Live<'_>| {
            assert_eq!((back.request_id, back.client_id, back.unit_hash, back.assignment), (l.request_id, l.client_id, l.unit_hash, l.assignment));
            assert_eq!((back.bucket, back.at_micros, back.latency_us, back.lookup_us), (l.bucket, l.at_micros, l.latency_us, l.lookup_us));
            // Compared through their debug forms, where a NaN equals a NaN.
            assert_eq!(format!("{:?}", back.inputs), format!("{:?}", l.inputs));
            assert_eq!(format!("{:?}", back.outputs), format!("{:?}", l.outputs));
            assert_eq!(back.feature_statuses, l.feature_statuses);
        };
        let mut rest = buf.as_slice();
        for (r, l) in records.into_iter().enumerate() {
            let (got, after) = flat::take(rest, &mut slots);
            let got = got.unwrap();
            rest = after.unwrap();
            assert_eq!(got.refs, r + 5);
            same(&got.live(&refs[got.refs]), l);
        }
        assert!(rest.is_empty());
        // A damaged record is refused, and the records after it are still read; a record cut
        // short loses the rest.
        let mut damaged = buf.clone();
        let kind = 4 + 4 + 1 + 1 + 8 + 8 + 4 + 8 + 4 + "req_01".len() + 4 + "client-7".len() + 4 + "ab12".len() + 4 + 4 + 1 + 4 + 16;
        assert_eq!(damaged[kind], 0, "the first input's data kind (f32)");
        assert_eq!(u32::from_ne_bytes(damaged[kind + 1..kind + 5].try_into().unwrap()), 4, "then its count of values");
        damaged[kind] = 77;
        let (got, after) = flat::take(&damaged, &mut slots);
        assert!(got.is_none());
        let next = flat::take(after.unwrap(), &mut slots).0.unwrap();
        assert_eq!(next.refs, 6);
        same(&next.live(&refs[6]), &bare);
        let cut = &buf[..flat::size(&full) - 1];
        assert!(matches!(flat::take(cut, &mut slots), (None, None)));
        assert!(matches!(flat::take(&buf[..3], &mut slots), (None, None)));
        // A length that does not cover itself is never read as a record (nor stepped over by
        // nothing: the writer would never get past it).
        for len in 0u32..4 {
            let mut b = len.to_ne_bytes().to_vec();
            b.extend_from_slice(&buf);
            assert!(matches!(flat::take(&b, &mut slots), (None, None)), "{len}");
        }
        // A record longer than what it describes is not the record put.
        let mut longer = buf[..flat::size(&full)].to_vec();
        longer.push(0);
        let n = longer.len() as u32;
        longer[..4].copy_from_slice(&n.to_ne_bytes());
        assert!(flat::take(&longer, &mut slots).0.is_none());
    }

    #[test]
    fn a_background_log_writes_its_records_in_compressed_rounds_and_seals_them_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        let counters = Arc::new(Counters::default());
        let on_disk = Arc::new(AtomicU64::new(0));
        let mut log = BackgroundLog {
            // Sealed only when dropped, however slow the machine.
            cfg: SpoolConfig { seal_after: Duration::from_secs(3600), ..SpoolConfig::new(dir.path().to_path_buf()) },
            on_disk: on_disk.clone(),
            counters: counters.clone(),
            open: None,
            enc: Encoder::new(),
            round: Vec::new(),
            round_since: Instant::now(),
            blocks: None,
            prepared: Default::default(),
            _alive: tx,
        };
        // The test thread stands for the shipper: the log rings it when it seals a segment.
        log.prepared.shipper.set(std::thread::current());
        let o = owned(3, Ok(vec![]));
        let spooled = || counters.log_spooled.load(Ordering::Relaxed);
        let (frame_len, schema_len) = {
            let mut enc = Encoder::new();
            write_record(&job(&o), &mut enc).unwrap();
            (enc.frame.len(), SCHEMAS.frame(predwire::frame_schema(&enc.frame).unwrap()).unwrap().len())
        };
        // Two records: a round too young and too small to be written yet…
        log.write(&job(&o));
        log.write(&job(&o));
        log.tick();
        assert_eq!((spooled(), on_disk.load(Ordering::Relaxed)), (0, 0));
        assert_eq!(counters.log_queued.load(Ordering::Relaxed), 2);
        // …written as it is once it has waited (too small to compress).
        std::thread::sleep(BACKGROUND_ROUND);
        log.tick();
        assert_eq!(spooled(), 2);
        let small_round = on_disk.load(Ordering::Relaxed);
        assert_eq!(small_round as usize, predwire::SEGMENT_MAGIC.len() + schema_len + 2 * frame_len, "the two frames as they are, after the segment's magic and schema");
        // A round of 32 KiB of records is written at the next tick, compressed.
        let n = HEAVY_ROUND / frame_len + 1;
        for _ in 0..n {
            log.write(&job(&o));
        }
        assert_eq!(spooled(), 2);
        log.tick();
        assert_eq!(spooled(), 2 + n as u64);
        let big_round = on_disk.load(Ordering::Relaxed) - small_round;
        assert!((big_round as usize) * 4 < n * frame_len, "{big_round} bytes for {} of records", n * frame_len);
        // The compressor is kept while records come, let go once none has come for a while.
        assert!(log.blocks.is_some());
        log.round_since = Instant::now() - BACKGROUND_IDLE;
        log.tick();
        assert!(log.blocks.is_none() && log.round.capacity() == 0);
        // A round that reaches a block's size is written at once, without a tick.
        let m = BLOCK_BYTES.div_ceil(frame_len);
        for _ in 0..m {
            log.write(&job(&o));
        }
        assert_eq!(spooled(), 2 + (n + m) as u64);
        // The last records are written and the segment sealed when the log is dropped.
        log.write(&job(&o));
        drop(log);
        let rung = Instant::now();
        std::thread::park_timeout(Duration::from_secs(20));
        assert!(rung.elapsed() < Duration::from_secs(10), "the shipper was rung");
        assert_eq!(spooled(), 3 + (n + m) as u64);
        assert_eq!(counters.log_failed.load(Ordering::Relaxed), 0);
        let ready: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(ready.len(), 1, "{ready:?}");
        assert!(ready[0].file_name().unwrap().to_str().unwrap().starts_with("ready-"));
        let bytes = std::fs::read(&ready[0]).unwrap();
        assert_eq!(bytes.len() as u64, on_disk.load(Ordering::Relaxed));
        let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
        assert!(matches!(plain, std::borrow::Cow::Owned(_)), "it holds compressed blocks");
        let (views, damaged) = predwire::parse_segment(&plain).unwrap();
        assert_eq!((views.len(), lost, damaged), (3 + n + m, 0, 0));
        for v in &views {
            assert_eq!(v.to_record().unwrap(), record_of(&job(&o)));
        }
    }

    #[test]
    fn the_writer_naps_as_long_as_a_round_takes_to_fill_and_longer_only_while_nothing_comes_and_nothing_waits_for_a_sync() {
        let mut nap = LIGHT_NAP;
        let mut naps = Vec::new();
        for _ in 0..6 {
            nap = next_nap(nap, 0, nap, 1 << 20, true);
            naps.push(nap.as_millis());
        }
        assert_eq!(naps, [32, 64, 64, 64, 64, 64]);
        // A round (or one that left bytes to sync) brings it back at once: to as long as the
        // target takes to come at the round's rate, within the shortest and longest nap.
        let ms = Duration::from_millis;
        let target = 175 << 10;
        assert_eq!(next_nap(IDLE_NAP, 0, ms(64), target, false), LIGHT_NAP, "nothing came, bytes wait for their sync");
        assert_eq!(next_nap(IDLE_NAP, 45 << 10, ms(16), target, false), LIGHT_NAP, "a steady single-row load: 45 KiB in 16 ms");
        assert_eq!(next_nap(LIGHT_NAP, 1440 << 10, ms(16), target, false), WRITER_NAP, "100-row records at 90 MB/s");
        assert_eq!(next_nap(WRITER_NAP, 180 << 10, ms(2), target, false), WRITER_NAP, "and their next round");
        assert_eq!(next_nap(WRITER_NAP, 100 << 10, ms(4), 200 << 10, false), ms(8), "in between, in proportion");
        assert_eq!(next_nap(IDLE_NAP, target, ms(64), target, false), WRITER_NAP, "a burst after a quiet spell");
        assert_eq!(next_nap(LIGHT_NAP, 1, ms(16), 0, false), WRITER_NAP, "a spool that may queue nothing");
        assert_eq!(next_nap(LIGHT_NAP, 1, Duration::MAX, target, false), LIGHT_NAP, "never more than the longest nap");
        assert_eq!(next_nap(WRITER_NAP, 0, ms(2), target, true), LIGHT_NAP);
        assert!(IDLE_NAP < SpoolConfig::new(PathBuf::new()).seal_after);
        // Quiet: nothing came and nothing waits for a sync.
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig::new(dir.path().to_path_buf());
        let mut enc = Encoder::new();
        write_record(&job(&owned(1, Ok(vec![]))), &mut enc).unwrap();
        let mut open = None;
        assert!(quiet(true, open.as_ref()));
        append_run(Dest { cfg: &cfg, follow: true }, &mut open, &enc.frame, None).unwrap();
        assert!(!quiet(false, open.as_ref()));
        assert!(!quiet(true, open.as_ref()), "appended bytes wait for their sync");
        open.as_mut().unwrap().unsynced = false;
        assert!(quiet(true, open.as_ref()));
    }

    #[test]
    fn a_dropped_spool_waits_for_its_writer_to_write_what_is_left() {
        let dir = tempfile::tempdir().unwrap();
        // Sealed only when the spool is gone, however slow the machine.
        let cfg = SpoolConfig { seal_after: Duration::from_secs(3600), ..SpoolConfig::new(dir.path().to_path_buf()) };
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Stripes::new(2, 64 << 10));
        let on_disk = Arc::new(AtomicU64::new(0));
        let writer = Writer { cfg: cfg.clone(), pending: pending.clone(), on_disk: on_disk.clone(), counters: counters.clone(), sync: tx.clone(), follow: true };
        let handle = std::thread::spawn(move || writer.run());
        // Long enough for the writer's naps to grow towards `IDLE_NAP`.
        std::thread::sleep(Duration::from_millis(300));
        let spool = Spool { pending, on_disk, max_bytes: 1 << 30, instance: "i".into(), cfg, counters: counters.clone(), sync_alive: tx, prepared: Default::default(), _writer: WriterEnd(Some(handle)) };
        let small = owned(1, Ok(vec![]));
        let names = names(5);
        let mut home = Home { stripe: None, enc: Encoder::new() };
        for n in 0..5 {
            assert!(spool.hand_over(&live(&small, &names, n), &mut home));
        }
        drop(spool);
        // Once the drop returns, the writer has written the records and sealed the segment.
        let sealed = rx.try_iter().find_map(|job| match job {
            SyncJob::Seal { file, id, .. } => Some((file, id)),
            SyncJob::Sync(_) => None,
        });
        let Some((file, id)) = sealed else { panic!("the segment is sealed before the drop returns") };
        drop(file);
        let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
        let (views, damaged) = predwire::parse_segment(&bytes).unwrap();
        assert_eq!((views.len(), damaged), (5, 0));
        assert_eq!(counters.log_spooled.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn the_writer_compresses_a_round_only_from_4_kib_of_records() {
        let o = owned(3, Ok(vec![]));
        let mut enc = Encoder::new();
        write_record(&job(&o), &mut enc).unwrap();
        let frame = enc.frame.clone();
        for (records, compressed) in [(COMPRESS_MIN / frame.len() - 1, false), (COMPRESS_MIN / frame.len() + 1, true)] {
            let dir = tempfile::tempdir().unwrap();
            let (tx, rx) = std::sync::mpsc::sync_channel(64);
            let counters = Arc::new(Counters::default());
            let pending = Arc::new(Stripes::new(2, 1 << 20));
            pending.stripes[1].lock().unwrap().frames = frame.repeat(records);
            let writer = Writer { cfg: SpoolConfig::new(dir.path().to_path_buf()), pending, on_disk: Arc::new(AtomicU64::new(0)), counters: counters.clone(), sync: tx, follow: true };
            // The writer holds the only handle: it writes one round, seals and ends.
            std::thread::spawn(move || writer.run()).join().unwrap();
            let mut read = 0;
            while let Ok(job) = rx.try_recv() {
                let SyncJob::Seal { file, id, .. } = job else { continue };
                drop(file);
                let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
                let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
                assert_eq!(matches!(plain, std::borrow::Cow::Owned(_)), compressed, "{records} records of {} bytes", frame.len());
                let (views, damaged) = predwire::parse_segment(&plain).unwrap();
                assert_eq!((lost, damaged), (0, 0));
                read += views.len();
            }
            assert_eq!(read, records);
            assert_eq!(counters.log_spooled.load(Ordering::Relaxed), records as u64);
        }
    }

    #[test]
    fn the_writer_puts_each_round_in_compressed_blocks_and_seals_by_the_bytes_of_records() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig { seal_bytes: 64 << 10, ..SpoolConfig::new(dir.path().to_path_buf()) };
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let counters = Arc::new(Counters::default());
        let pending = Arc::new(Stripes::new(0, 0));
        let writer = Writer { cfg, pending, on_disk: Arc::new(AtomicU64::new(0)), counters: counters.clone(), sync: tx, follow: true };
        // 2,000 three-row records under one schema (some 300 KB), and one whole record of many
        // columns.
        let o = owned(3, Ok(vec![]));
        let mut enc = Encoder::new();
        let mut batch = Vec::new();
        for _ in 0..2000 {
            write_record(&job(&o), &mut enc).unwrap();
            batch.extend_from_slice(&enc.frame);
        }
        // And records large enough to be compressed where they are made: blocks of their own,
        // whose schema the writer reads from the block's head.
        let large = owned(700, Ok(vec![]));
        let mut largest = 0;
        for _ in 0..5 {
            write_record(&job(&large), &mut enc).unwrap();
            let id = predwire::frame_schema(&enc.frame);
            assert!(enc.frame.len() >= COMPRESS_ALONE && id.is_some());
            let plain = enc.frame.len();
            largest = largest.max(plain);
            let block = enc.compress_large(true).to_vec();
            assert!(predwire::is_block(&block) && block.len() < plain, "{} of {plain}", block.len());
            assert_eq!(block[8], 5, "a request thread's blocks are LZ4's (form 5)");
            assert_eq!(predwire::frame_schema(&block), id);
            batch.extend_from_slice(&block);
        }
        let wide = owned(1, Ok(vec![]));
        let wide = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, MAX_SCHEMA_FEATURES + 1], Data::F32(vec![0.5; MAX_SCHEMA_FEATURES + 1])).unwrap())], ..wide };
        write_record(&job(&wide), &mut enc).unwrap();
        batch.extend_from_slice(&enc.frame);
        largest = largest.max(enc.frame.len());
        let mut blocks = (predwire::BlockWriter::fast(), Vec::new());
        let mut open = None;
        assert!(writer.write_frames(&mut open, &batch, Some(&mut blocks)));
        if let Some(o) = open.take() {
            writer.seal(o);
        }
        assert_eq!(counters.log_spooled.load(Ordering::Relaxed), 2006);
        // Segments were sealed at 64 KiB of records (the files are much smaller).
        let mut records = 0;
        let mut on_disk = 0;
        let mut sealed = 0;
        while let Ok(SyncJob::Seal { file, id, .. }) = rx.try_recv() {
            drop(file);
            sealed += 1;
            let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
            on_disk += bytes.len();
            let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
            assert!(matches!(plain, std::borrow::Cow::Owned(_)), "written in blocks");
            // (Runs end at the segment's size: at most one frame over it, and the segment's
            // magic and schemas.)
            assert!(plain.len() <= (64 << 10) + largest + 4096, "{} (largest frame {largest})", plain.len());
            let (views, damaged) = predwire::parse_segment(&plain).unwrap();
            assert_eq!((lost, damaged), (0, 0));
            for v in &views {
                let job = match v.rows {
                    1 => job(&wide),
                    700 => job(&large),
                    _ => job(&o),
                };
                assert_eq!(v.to_record().unwrap(), record_of(&job));
            }
            records += views.len();
        }
        assert_eq!(records, 2006);
        assert!(sealed >= 4, "{sealed} segments for some 300 KB of records sealed at 64 KiB");
        assert!(on_disk * 4 < batch.len(), "{on_disk} bytes on disk for {} of records", batch.len());
        assert_eq!(writer.on_disk.load(Ordering::Relaxed), on_disk as u64);
        // Without a block writer the frames are written as they are.
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let writer = Writer { sync: tx, ..writer };
        assert!(writer.write_frames(&mut open, &batch, None));
        if let Some(o) = open.take() {
            writer.seal(o);
        }
        let (mut plain_bytes, mut plain_records) = (0, 0);
        while let Ok(SyncJob::Seal { id, .. }) = rx.try_recv() {
            let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
            // Only the records compressed where they were made are blocks.
            let (plain, lost) = predwire::expand_segment(&bytes).unwrap();
            assert_eq!(lost, 0);
            plain_records += predwire::parse_segment(&plain).unwrap().0.len();
            plain_bytes += bytes.len();
        }
        assert!(plain_bytes > batch.len(), "the frames and their schema frames");
        assert_eq!(plain_records, 2006);
        // Records that fill a file before they reach `seal_bytes` (here written plain) are
        // sealed by the file's bytes.
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let cfg = SpoolConfig { seal_bytes: 1 << 30, seal_file_bytes: 32 << 10, ..writer.cfg.clone() };
        let writer = Writer { sync: tx, cfg, ..writer };
        assert!(writer.write_frames(&mut open, &batch, None));
        let (mut sealed, mut records) = (0, 0);
        while let Ok(SyncJob::Seal { id, .. }) = rx.try_recv() {
            let bytes = std::fs::read(dir.path().join(format!("open-{id}.vpl"))).unwrap();
            // At its size, and at most one run over it.
            assert!(bytes.len() >= 32 << 10 && bytes.len() <= (32 << 10) + largest + 4096, "{}", bytes.len());
            let (plain, _) = predwire::expand_segment(&bytes).unwrap();
            records += predwire::parse_segment(&plain).unwrap().0.len();
            sealed += 1;
        }
        // (What is left stays open, unless the last run filled its segment.)
        if let Some(last) = open.take() {
            assert!(last.bytes < 32 << 10);
            let last = std::fs::read(dir.path().join(format!("open-{}.vpl", last.id))).unwrap();
            records += predwire::parse_segment(&predwire::expand_segment(&last).unwrap().0).unwrap().0.len();
        }
        assert!(sealed >= batch.len() / (40 << 10), "{sealed} segments of 32 KiB for {} bytes", batch.len());
        assert_eq!(records, 2006);
    }

    #[test]
    fn a_sealed_segment_is_prepared_from_what_its_writer_followed_as_from_its_bytes() {
        use vigil_core::ids::IdGenerator;
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        // Sealed at 256 KiB of records: some segments sealed inside a round (the next one
        // starting afresh, its schemas written again).
        let cfg = SpoolConfig { seal_bytes: 256 << 10, ..SpoolConfig::new(dir.path().to_path_buf()) };
        let writer = Writer { cfg, pending: Arc::new(Stripes::new(0, 0)), on_disk: Arc::new(AtomicU64::new(0)), counters: Arc::new(Counters::default()), sync: tx, follow: true };
        // Single-row records of varied values under two versions (one a copy of the other's
        // model), live and shadow, failed, with and without a caller's id, and one of many
        // columns written whole; in rounds compressed and one small round left plain.
        let a = owned(1, Ok(vec![("label".into(), Value::Tensor(Tensor::new(vec![1], Data::I64(vec![1])).unwrap()))]));
        let b_served = Arc::new(Served { version_id: "mv_2".into(), version: "2.0.0".into(), ..clone_served(&a.served) });
        let mut enc = Encoder::new();
        let mut blocks = (predwire::BlockWriter::fast(), Vec::new());
        let mut open = None;
        let mut n = 0;
        for round in 0..12 {
            let mut batch = Vec::new();
            let size = if round == 5 { 3 } else { 300 };
            for _ in 0..size {
                n += 1;
                let data: Vec<f32> = (0..8).map(|k| ((n * 7919 + k * 104_729) % 100_003) as f32 / 7.0).collect();
                let mut o = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, 8], Data::F32(data)).unwrap())], ..owned(1, a.outputs.clone()) };
                if n % 2 == 0 {
                    o.served = b_served.clone();
                }
                if n % 13 == 0 {
                    o.outputs = Err("the model failed".into());
                }
                let id = vigil_core::ids::UuidV7Ids.new_id("req");
                let client = format!("c-{n}");
                let j = LogJob { request_id: &id, client_id: (n % 17 == 0).then_some(client.as_str()), shadow: n % 11 == 0, feature_statuses: None, ..job(&o) };
                write_record(&j, &mut enc).unwrap();
                batch.extend_from_slice(&enc.frame);
            }
            if round == 7 {
                let wide = owned(1, Ok(vec![]));
                let wide = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, MAX_SCHEMA_FEATURES + 1], Data::F32(vec![0.5; MAX_SCHEMA_FEATURES + 1])).unwrap())], ..wide };
                let id = vigil_core::ids::UuidV7Ids.new_id("req");
                write_record(&LogJob { request_id: &id, ..job(&wide) }, &mut enc).unwrap();
                batch.extend_from_slice(&enc.frame);
            }
            assert!(writer.write_frames(&mut open, &batch, Some(&mut blocks).filter(|_| batch.len() >= COMPRESS_MIN)));
        }
        writer.seal(open.take().unwrap());
        let mut compared = 0;
        while let Ok(SyncJob::Seal { file, id, written }) = rx.try_recv() {
            drop(file);
            let name = format!("ready-{id}.vpl");
            let path = dir.path().join(format!("open-{id}.vpl"));
            let bytes = std::fs::read(&path).unwrap();
            let w = written.expect("followed");
            assert_eq!((w.len, w.crc32), (bytes.len() as u64, crc32fast::hash(&bytes)));
            let read = prepare(&name, "i", &bytes, &path, true).unwrap();
            match prepare_written(&name, "i", &path, w, true) {
                Some(p) => {
                    assert_eq!(p.unwrap(), read);
                    compared += 1;
                }
                None => assert!(bytes.len() < vigil_core::predlog::KEEP_FILE_BYTES, "only a small file is read back ({} bytes)", bytes.len()),
            }
        }
        assert!(compared >= 2, "{compared} segments compared");
        // Not where the registry compresses bodies into its database, nor once the file has
        // changed.
        let (tx, rx) = std::sync::mpsc::sync_channel(64);
        let writer = Writer { sync: tx, cfg: SpoolConfig::new(dir.path().to_path_buf()), ..writer };
        let mut batch = Vec::new();
        for _ in 0..2000 {
            let data: Vec<f32> = (0..8).map(|k| ((n * 31 + k * 7) % 1009) as f32 / 3.0).collect();
            n += 1;
            let o = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, 8], Data::F32(data)).unwrap())], ..owned(1, a.outputs.clone()) };
            let id = vigil_core::ids::UuidV7Ids.new_id("req");
            write_record(&LogJob { request_id: &id, ..job(&o) }, &mut enc).unwrap();
            batch.extend_from_slice(&enc.frame);
        }
        assert!(writer.write_frames(&mut open, &batch, Some(&mut blocks)));
        writer.seal(open.take().unwrap());
        let Ok(SyncJob::Seal { file, id, written: Some(w) }) = rx.try_recv() else { panic!("sealed, followed") };
        assert!(w.len >= vigil_core::predlog::KEEP_FILE_BYTES as u64);
        let again = |w: &Written| Written { digest: vigil_core::predlog::SegmentDigest::default(), ..*w };
        // Made ready, it waits for the preparer under the name the listing gives it.
        let prepared = PreparedSegments::default();
        let w2 = again(&w);
        make_ready(dir.path(), file, &id, Some(w), &writer.counters, &prepared);
        let name = format!("ready-{id}.vpl");
        let path = dir.path().join(&name);
        assert!(path.exists() && prepared.written.take(&name).is_some());
        let w = w2;
        assert!(prepare_written(&name, "i", &path, again(&w), false).is_none());
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"more").unwrap();
        assert!(prepare_written(&name, "i", &path, again(&w), true).is_none());
        // A flush that fails leaves nothing followed (what reached the file is not known).
        let file = std::io::BufWriter::new(File::open(&path).unwrap());
        let mut o = Open { id: id.clone(), file, opened: Instant::now(), bytes: 0, raw: 0, unsynced: true, schemas: Vec::new(), schema_frames: Vec::new(), digest: Default::default(), crc: crc32fast::Hasher::new(), plain: 0 };
        o.file.write_all(b"x").unwrap();
        assert!(finish(o, &writer.counters).2.is_none());
        // Bounded: past `MAX_WRITTEN` segments' none is kept (those are read back); the shipper
        // lets go of those no longer listed.
        let kept = WrittenSegments::default();
        for i in 0..=MAX_WRITTEN {
            assert_eq!(kept.put(format!("ready-{i}.vpl"), again(&w)), i < MAX_WRITTEN);
        }
        kept.retain(&[("ready-3.vpl".to_owned(), PathBuf::new())]);
        assert!(kept.take("ready-3.vpl").is_some() && kept.take("ready-4.vpl").is_none());
        assert_eq!(kept.0.lock().unwrap().1, 0, "its bytes counted down");
    }

    #[test]
    fn the_direct_writer_writes_the_record_the_struct_describes() {
        for rows in [1, 3] {
            let probs = Tensor::new(vec![rows, 2], Data::F32((0..rows * 2).map(|i| i as f32 / 7.0).collect())).unwrap();
            let label = Tensor::new(vec![rows], Data::I64((0..rows as i64).collect())).unwrap();
            let maps = Value::MapsI64((0..rows).map(|r| vec![(0, 0.25 + r as f32), (1, 0.75)]).collect());
            for outputs in [Ok(vec![("label".to_owned(), Value::Tensor(label.clone())), ("probabilities".to_owned(), Value::Tensor(probs.clone()))]), Ok(vec![("p".to_owned(), maps)]), Err("shadow failed".to_owned())] {
                let o = owned(rows, outputs);
                let mut enc = Encoder::new();
                write_record(&job(&o), &mut enc).unwrap();
                // The schema's frame comes from the book, as the writer puts it in a segment.
                let id = predwire::frame_schema(&enc.frame).unwrap();
                let mut seg = predwire::new_segment();
                seg.extend_from_slice(&SCHEMAS.frame(id).unwrap());
                seg.extend_from_slice(&enc.frame);
                let (views, damaged) = predwire::parse_segment(&seg).unwrap();
                assert_eq!((views.len(), damaged), (1, 0));
                assert_eq!(views[0].to_record().unwrap(), record_of(&job(&o)));
                // The same schema again: the same id, found without the book.
                write_record(&job(&o), &mut enc).unwrap();
                assert_eq!(predwire::frame_schema(&enc.frame), Some(id));
            }
        }
    }

    /// A record's frame and the schema frame it names, as a segment.
    fn segment_of(enc: &Encoder) -> Vec<u8> {
        let mut seg = predwire::new_segment();
        if let Some(id) = predwire::frame_schema(&enc.frame) {
            seg.extend_from_slice(&SCHEMAS.frame(id).unwrap());
        }
        seg.extend_from_slice(&enc.frame);
        seg
    }

    #[test]
    fn outputs_are_written_as_the_answer_gives_them() {
        let classes: Vec<(i64, f32)> = (0..12).map(|c| (c, if c == 11 { f32::NAN } else { c as f32 / 66.0 })).collect();
        let named = vec![("a \"b\"".to_owned(), 0.5), ("c\\d".to_owned(), f32::INFINITY), ("\u{1}é".to_owned(), 0.25)];
        let outputs = vec![
            ("zip\"map".to_owned(), Value::MapsI64(vec![classes.clone(), classes])),
            ("named".to_owned(), Value::MapsStr(vec![named.clone(), named])),
            ("count".to_owned(), Value::Tensor(Tensor::new(vec![2], Data::I32(vec![-7, i32::MAX])).unwrap())),
            ("label".to_owned(), Value::Tensor(Tensor::new(vec![2], Data::I64(vec![i64::MIN, 3])).unwrap())),
            ("flag".to_owned(), Value::Tensor(Tensor::new(vec![2], Data::Bool(vec![true, false])).unwrap())),
            ("text".to_owned(), Value::Tensor(Tensor::new(vec![2], Data::Str(vec!["x\"y".into(), "z".into()])).unwrap())),
        ];
        let o = owned(2, Ok(outputs));
        let mut enc = Encoder::new();
        write_record(&job(&o), &mut enc).unwrap();
        let seg = segment_of(&enc);
        let (views, damaged) = predwire::parse_segment(&seg).unwrap();
        assert_eq!((views.len(), damaged), (1, 0));
        let record = views[0].to_record().unwrap();
        assert_eq!(record, record_of(&job(&o)));
        assert_eq!(record.outputs["zip\"map"][0]["11"], serde_json::Value::Null, "a probability that is not finite is null");
        assert_eq!(record.outputs["named"][1]["c\\d"], serde_json::Value::Null);
        assert_eq!(record.outputs["label"][0], serde_json::json!(i64::MIN));
    }

    #[test]
    fn a_schema_is_found_by_what_makes_it_and_never_mixed_up() {
        let o = owned(1, Ok(vec![]));
        let mut enc = Encoder::new();
        let id = |enc: &mut Encoder, job: &LogJob<'_>| {
            write_record(job, enc).unwrap();
            let seg = segment_of(enc);
            let (views, _) = predwire::parse_segment(&seg).unwrap();
            assert_eq!(views[0].to_record().unwrap(), record_of(job), "the record's schema is its own");
            predwire::frame_schema(&enc.frame).unwrap()
        };
        let first = id(&mut enc, &job(&o));
        assert_eq!(id(&mut enc, &job(&o)), first);
        assert_eq!(enc.known.len(), 1, "found again without building it");
        // Another arm, another endpoint: other schemas.
        let arm = id(&mut enc, &LogJob { arm: "canary", ..job(&o) });
        let endpoint = id(&mut enc, &LogJob { endpoint: "other", ..job(&o) });
        assert!(arm != first && endpoint != first && arm != endpoint);
        // The same version served again (a new `Served` after a reload): the same schema.
        let again = Owned { served: Arc::new(clone_served(&o.served)), ..owned(1, Ok(vec![])) };
        assert_eq!(id(&mut enc, &job(&again)), first);
        // Another version, and other input kinds or widths: other schemas, though the old
        // `Served` is gone (its address is never taken by another while it is remembered).
        drop(o);
        let other = Owned { served: Arc::new(Served { version_id: "mv_2".into(), version: "2.0.0".into(), ..clone_served(&again.served) }), ..owned(1, Ok(vec![])) };
        let v2 = id(&mut enc, &job(&other));
        assert_ne!(v2, first);
        let f64s = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, 8], Data::F64(vec![0.5; 8])).unwrap())], ..owned(1, Ok(vec![])) };
        let wide = Owned { inputs: vec![("X".into(), Tensor::new(vec![1, 9], Data::F32(vec![0.5; 9])).unwrap())], ..owned(1, Ok(vec![])) };
        let kinds = [id(&mut enc, &job(&f64s)), id(&mut enc, &job(&wide))];
        assert!(!kinds.contains(&first) && kinds[0] != kinds[1]);
        // A thread remembers a few: the oldest is forgotten, and found again in the book.
        for i in 0..20 {
            let name = format!("arm{i}");
            id(&mut enc, &LogJob { arm: &name, ..job(&again) });
        }
        assert_eq!(enc.known.len(), 16);
        assert_eq!(id(&mut enc, &job(&again)), first);
    }

    fn clone_served(s: &Served) -> Served {
        Served { name: s.name.clone(), version: s.version.clone(), version_id: s.version_id.clone(), digest: s.digest.clone(), input_names: s.input_names.clone(), model: lr_model(), columns: s.columns.clone(), columns_named: s.columns_named }
    }

    #[test]
    fn records_of_very_many_columns_are_written_whole() {
        let mut o = owned(2, Err("failed".to_owned()));
        let width = MAX_SCHEMA_FEATURES + 1;
        o.inputs = vec![("X".into(), Tensor::new(vec![2, width], Data::F32((0..2 * width).map(|i| i as f32).collect())).unwrap())];
        let mut enc = Encoder::new();
        write_record(&job(&o), &mut enc).unwrap();
        assert_eq!(predwire::frame_schema(&enc.frame), None, "no schema for an input this wide");
        let mut seg = predwire::new_segment();
        seg.extend_from_slice(&enc.frame);
        let (views, damaged) = predwire::parse_segment(&seg).unwrap();
        assert_eq!((views.len(), damaged), (1, 0));
        assert_eq!(views[0].to_record().unwrap(), record_of(&job(&o)));
    }

    #[test]
    fn the_schema_book_is_bounded() {
        let book = SchemaBook::default();
        assert_eq!(book.id(&vec![1; MAX_SCHEMA_BYTES + 1]).unwrap(), None, "too large a schema");
        let mut taken = 0;
        for i in 0..(MAX_BOOK_BYTES / MAX_SCHEMA_BYTES + 4) {
            let mut content = vec![0; MAX_SCHEMA_BYTES];
            content[..8].copy_from_slice(&(i as u64).to_le_bytes());
            match book.id(&content).unwrap() {
                Some(id) => {
                    assert_eq!(id as usize, taken);
                    assert_eq!(book.id(&content).unwrap(), Some(id), "the same content, the same id");
                    assert!(book.frame(id).is_some());
                    taken += 1;
                }
                None => assert!(taken * MAX_SCHEMA_BYTES + MAX_SCHEMA_BYTES > MAX_BOOK_BYTES, "refused only when full"),
            }
        }
        assert_eq!(taken, MAX_BOOK_BYTES / MAX_SCHEMA_BYTES);
    }
}
