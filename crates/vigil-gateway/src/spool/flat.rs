//! The hand-over's flat form of a small live record: what a request thread copies into a
//! stripe's byte buffer instead of handing over the record's own allocations.
//!
//! Why: a record that kept its request's allocations (its input and output tensors, names and
//! ids: a dozen or so) held them through the writer's round and until the thread's next
//! hand-over (the writer handed encoded records back for their thread to free), so the request
//! thread's next allocations came from memory that had gone cold, and the writer read a
//! dozen scattered blocks another core had written. Profiled at the bench's paced single-row
//! load (`perf record`, the same binary with and without the log), mimalloc's allocation path
//! on the request threads was the largest part of what the log added there. Copied flat,
//! the request frees its allocations as an unlogged one does, while they are still in its
//! core's cache, and the writer reads one buffer front to back.
//!
//! The form lives only in memory, between two threads of one process: native byte order,
//! no version. Each record starts with its length, so a record the writer cannot read (never
//! seen: it would be a bug) costs that record only; a damaged length (the same) that runs
//! past the buffer costs the rest of its stripe's round, counted as one, and one that stays
//! inside it has what follows misread, each record that fails counted. The endpoint's and
//! arm's names and the served version travel beside the bytes, as an entry of [`Refs`] that
//! a record finds among its stripe's latest (the arms of an A/B test alternate).

use super::Live;
use crate::catalog::Served;
use std::collections::BTreeMap;
use std::sync::Arc;
use vigil_onnx::{Data, Tensor, Value};

/// What records share: the endpoint's and the arm's names and the version served.
pub(super) type Refs = (Arc<str>, Arc<str>, Arc<Served>);

/// The assignments a live record can have (a byte in the flat form).
const ASSIGNMENTS: [&str; 3] = ["keyed", "random", "pinned"];

const HAS_CLIENT: u8 = 1;
const HAS_UNIT: u8 = 2;
const HAS_BUCKET: u8 = 4;
const HAS_LOOKUP: u8 = 8;
const HAS_STATUSES: u8 = 16;

const F32: u8 = 0;
const F64: u8 = 1;
const I64: u8 = 2;
const I32: u8 = 3;
const STR: u8 = 4;
const BOOL: u8 = 5;

const TENSOR: u8 = 0;
const MAPS_I64: u8 = 1;
const MAPS_STR: u8 = 2;

/// Bytes of a string in the flat form.
fn str_size(s: &str) -> usize {
    4 + s.len()
}

fn tensor_size(t: &Tensor) -> usize {
    let values = match &t.data {
        Data::F32(x) => 4 * x.len(),
        Data::F64(x) => 8 * x.len(),
        Data::I64(x) => 8 * x.len(),
        Data::I32(x) => 4 * x.len(),
        Data::Str(x) => x.iter().map(|s| str_size(s)).sum(),
        Data::Bool(x) => x.len(),
    };
    4 + 8 * t.shape.len() + 1 + 4 + values
}

/// The bytes [`put`] writes for a record: what the stripe holds for it.
pub(super) fn size(live: &Live<'_>) -> usize {
    let opt = |s: Option<&str>| s.map_or(0, str_size);
    let head = 4 + 4 + 1 + 1 + 8 + 8 + 4 + 8 + str_size(live.request_id) + opt(live.client_id) + opt(live.unit_hash);
    let inputs: usize = live.inputs.iter().map(|(n, t)| str_size(n) + tensor_size(t)).sum();
    let outputs: usize = live
        .outputs
        .iter()
        .map(|(n, v)| {
            str_size(n)
                + 1
                + match v {
                    Value::Tensor(t) => tensor_size(t),
                    Value::MapsI64(rows) => 4 + rows.iter().map(|r| 4 + 12 * r.len()).sum::<usize>(),
                    Value::MapsStr(rows) => 4 + rows.iter().map(|r| 4 + r.iter().map(|(k, _)| str_size(k) + 4).sum::<usize>()).sum::<usize>(),
                }
        })
        .sum();
    let statuses = live.feature_statuses.map_or(0, |s| 4 + s.iter().map(|(k, v)| str_size(k) + 4 + v.iter().map(|x| str_size(x)).sum::<usize>()).sum::<usize>());
    head + 4 + inputs + 4 + outputs + statuses
}

/// Whether a record can take the flat form: its assignment is one of [`ASSIGNMENTS`]. (Its
/// counts fit the form's 32 bits: only records of at most `DEFER_BYTES` are put.)
pub(super) fn fits(live: &Live<'_>) -> bool {
    ASSIGNMENTS.contains(&live.assignment)
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Only records of at most `DEFER_BYTES` are put: every count fits.
    out.extend_from_slice(&(n as u32).to_ne_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_tensor(out: &mut Vec<u8>, t: &Tensor) {
    put_u32(out, t.shape.len());
    for d in &t.shape {
        out.extend_from_slice(&(*d as u64).to_ne_bytes());
    }
    match &t.data {
        Data::F32(x) => put_values(out, F32, x, |v| v.to_ne_bytes()),
        Data::F64(x) => put_values(out, F64, x, |v| v.to_ne_bytes()),
        Data::I64(x) => put_values(out, I64, x, |v| v.to_ne_bytes()),
        Data::I32(x) => put_values(out, I32, x, |v| v.to_ne_bytes()),
        Data::Bool(x) => put_values(out, BOOL, x, |b| [u8::from(*b)]),
        Data::Str(x) => {
            out.push(STR);
            put_u32(out, x.len());
            x.iter().for_each(|s| put_str(out, s));
        }
    }
}

/// A tensor's kind, count and values, each value as `bytes` gives it: into room made once
/// (appended one by one, each value's capacity check kept the copy from being vectorised).
fn put_values<T, const N: usize>(out: &mut Vec<u8>, kind: u8, x: &[T], bytes: impl Fn(&T) -> [u8; N]) {
    out.push(kind);
    put_u32(out, x.len());
    let at = out.len();
    out.resize(at + N * x.len(), 0);
    for (dst, v) in out[at..].chunks_exact_mut(N).zip(x) {
        dst.copy_from_slice(&bytes(v));
    }
}

/// Rows of (class, probability): their kind, count, and per row its pairs, each class as
/// `key` writes it.
fn put_rows<K>(out: &mut Vec<u8>, kind: u8, rows: &[Vec<(K, f32)>], key: impl Fn(&mut Vec<u8>, &K)) {
    out.push(kind);
    put_u32(out, rows.len());
    for row in rows {
        put_u32(out, row.len());
        for (k, p) in row {
            key(out, k);
            out.extend_from_slice(&p.to_ne_bytes());
        }
    }
}

/// Appends a record's flat form (`size`: its [`size`], exactly the bytes written), sharing
/// `refs` entry `r`. Only for a record that [`fits`].
pub(super) fn put(live: &Live<'_>, r: usize, size: usize, out: &mut Vec<u8>) {
    debug_assert!(fits(live), "an assignment the flat form has no byte for");
    let start = out.len();
    out.reserve(size);
    put_u32(out, 0);
    put_u32(out, r);
    out.push(ASSIGNMENTS.iter().position(|a| *a == live.assignment).unwrap_or(0) as u8);
    let flag = |on: bool, bit: u8| if on { bit } else { 0 };
    out.push(
        flag(live.client_id.is_some(), HAS_CLIENT)
            | flag(live.unit_hash.is_some(), HAS_UNIT)
            | flag(live.bucket.is_some(), HAS_BUCKET)
            | flag(live.lookup_us.is_some(), HAS_LOOKUP)
            | flag(live.feature_statuses.is_some(), HAS_STATUSES),
    );
    out.extend_from_slice(&live.at_micros.to_ne_bytes());
    out.extend_from_slice(&live.latency_us.to_ne_bytes());
    out.extend_from_slice(&live.bucket.unwrap_or(0).to_ne_bytes());
    out.extend_from_slice(&live.lookup_us.unwrap_or(0).to_ne_bytes());
    put_str(out, live.request_id);
    for s in [live.client_id, live.unit_hash].into_iter().flatten() {
        put_str(out, s);
    }
    put_u32(out, live.inputs.len());
    for (name, t) in live.inputs {
        put_str(out, name);
        put_tensor(out, t);
    }
    put_u32(out, live.outputs.len());
    for (name, v) in live.outputs {
        put_str(out, name);
        match v {
            Value::Tensor(t) => {
                out.push(TENSOR);
                put_tensor(out, t);
            }
            Value::MapsI64(rows) => put_rows(out, MAPS_I64, rows, |out, k| out.extend_from_slice(&k.to_ne_bytes())),
            Value::MapsStr(rows) => put_rows(out, MAPS_STR, rows, |out, k| put_str(out, k)),
        }
    }
    if let Some(s) = live.feature_statuses {
        put_u32(out, s.len());
        for (k, v) in s {
            put_str(out, k);
            put_u32(out, v.len());
            v.iter().for_each(|x| put_str(out, x));
        }
    }
    let len = out.len() - start;
    debug_assert_eq!(len, size);
    out[start..start + 4].copy_from_slice(&(len as u32).to_ne_bytes());
}

/// A record read back from its flat form: its ids borrowed from the buffer, its names and
/// values from the [`Slots`] it was read into (held until the next record is read there).
pub(super) struct Taken<'a, 's> {
    pub refs: usize,
    pub assignment: &'static str,
    pub request_id: &'a str,
    pub client_id: Option<&'a str>,
    pub unit_hash: Option<&'a str>,
    pub bucket: Option<u32>,
    pub at_micros: i64,
    pub latency_us: u64,
    pub lookup_us: Option<u64>,
    /// How many of the slots' inputs and outputs are this record's, and whether it has
    /// feature statuses.
    inputs: usize,
    outputs: usize,
    statuses: bool,
    slots: &'s Slots,
}

/// Where the reading thread puts records' names and values, reused from record to record:
/// a round's records of one shape are read without allocating, feature statuses aside
/// (profiled at the bench's paced single-row load, building each record's dozen allocations
/// and freeing them was about a sixth of the writer's time). Entries are added only as
/// values are read, so a damaged count grows them no further than the bytes that follow
/// it; the writer lets them go after a round with a record it could not read.
#[derive(Default)]
pub(super) struct Slots {
    inputs: Vec<(String, Tensor)>,
    outputs: Vec<(String, Value)>,
    statuses: BTreeMap<String, Vec<String>>,
}

impl Taken<'_, '_> {
    /// The record as the request handed it over, with the entry it shares.
    pub fn live<'t>(&'t self, (endpoint, arm, served): &'t Refs) -> Live<'t> {
        let slots = self.slots;
        Live {
            request_id: self.request_id,
            client_id: self.client_id,
            endpoint,
            arm,
            served,
            assignment: self.assignment,
            unit_hash: self.unit_hash,
            bucket: self.bucket,
            at_micros: self.at_micros,
            latency_us: self.latency_us,
            lookup_us: self.lookup_us,
            inputs: &slots.inputs[..self.inputs],
            outputs: &slots.outputs[..self.outputs],
            feature_statuses: self.statuses.then_some(&slots.statuses),
        }
    }
}

/// An empty tensor (a slot not filled yet; allocates nothing).
fn empty_tensor() -> Tensor {
    Tensor { shape: Vec::new(), data: Data::Bool(Vec::new()) }
}

/// Entry `i` of `slots`, made as `empty` when it is the next one (filled in order).
fn slot<T>(slots: &mut Vec<T>, i: usize, empty: impl FnOnce() -> T) -> Option<&mut T> {
    if i == slots.len() {
        slots.push(empty());
    }
    slots.get_mut(i)
}

/// Overwrites `dst` with `s`, in its allocation.
fn set(dst: &mut String, s: &str) {
    dst.clear();
    dst.push_str(s);
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.buf.split_at_checked(n)?;
        self.buf = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_ne_bytes(self.array()?) as usize)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.array()?))
    }

    /// A string's bytes (its length, then them), not yet checked as UTF-8.
    fn str_bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()?;
        self.bytes(n)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.str_bytes()?).ok()
    }

    /// `n` values of `N` bytes each, in `v`'s allocation (the count checked against what is
    /// left first, so that a damaged count never reserves memory it does not describe).
    fn values<const N: usize, T>(&mut self, n: usize, mut v: Vec<T>, f: impl Fn([u8; N]) -> T) -> Option<Vec<T>> {
        let raw = self.bytes(n.checked_mul(N)?)?;
        v.clear();
        v.extend(raw.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))));
        Some(v)
    }

    fn count(&mut self) -> Option<usize> {
        let n = self.u32()?;
        // Every element takes at least a byte.
        (n <= self.buf.len()).then_some(n)
    }

    /// A string into `dst`, in its allocation; nothing to do when it holds those bytes
    /// already (a slot's names: the same for every record of an arm), so they are not
    /// checked as UTF-8 again.
    fn str_into(&mut self, dst: &mut String) -> Option<()> {
        let bytes = self.str_bytes()?;
        if dst.as_bytes() != bytes {
            set(dst, std::str::from_utf8(bytes).ok()?);
        }
        Some(())
    }

    /// A tensor into `t`, in its allocations when it held values of the same kind.
    fn tensor(&mut self, t: &mut Tensor) -> Option<()> {
        let dims = self.count()?;
        t.shape = self.values(dims, std::mem::take(&mut t.shape), |b: [u8; 8]| u64::from_ne_bytes(b) as usize)?;
        let kind = self.u8()?;
        let n = self.count()?;
        macro_rules! reused {
            ($d:expr, $k:ident) => {
                match $d {
                    Data::$k(v) => v,
                    _ => Vec::new(),
                }
            };
        }
        let old = std::mem::replace(&mut t.data, Data::Bool(Vec::new()));
        // As the answer held it: not checked against its shape (the encoder never required it,
        // and a record is logged as the model gave it).
        t.data = match kind {
            F32 => Data::F32(self.values(n, reused!(old, F32), f32::from_ne_bytes)?),
            F64 => Data::F64(self.values(n, reused!(old, F64), f64::from_ne_bytes)?),
            I64 => Data::I64(self.values(n, reused!(old, I64), i64::from_ne_bytes)?),
            I32 => Data::I32(self.values(n, reused!(old, I32), i32::from_ne_bytes)?),
            BOOL => Data::Bool(self.values(n, reused!(old, Bool), |b: [u8; 1]| b[0] != 0)?),
            STR => {
                let mut v = reused!(old, Str);
                v.truncate(n);
                for i in 0..n {
                    self.str_into(slot(&mut v, i, String::new)?)?;
                }
                Data::Str(v)
            }
            _ => return None,
        };
        Some(())
    }

    /// Rows of (class, probability) into `v`, in its allocations, each class read by `key`.
    fn rows<K: Default>(&mut self, mut v: Vec<Vec<(K, f32)>>, key: impl Fn(&mut Self, &mut K) -> Option<()>) -> Option<Vec<Vec<(K, f32)>>> {
        let n = self.count()?;
        v.truncate(n);
        for i in 0..n {
            let row = slot(&mut v, i, Vec::new)?;
            let m = self.count()?;
            row.truncate(m);
            for j in 0..m {
                let (k, p) = slot(row, j, <(K, f32)>::default)?;
                key(self, k)?;
                *p = f32::from_ne_bytes(self.array()?);
            }
        }
        Some(v)
    }
}

/// Reads the record at the front of `buf`, its names and values into `slots`: the record
/// (`None` if it cannot be read) and the bytes after it (`None` when not even its length can
/// be read: the rest is lost).
pub(super) fn take<'a, 's>(buf: &'a [u8], slots: &'s mut Slots) -> (Option<Taken<'a, 's>>, Option<&'a [u8]>) {
    let Some(len) = buf.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize) else { return (None, None) };
    let Some((record, rest)) = buf.split_at_checked(len).filter(|_| len >= 4) else { return (None, None) };
    (read(&record[4..], slots), Some(rest))
}

fn read<'a, 's>(buf: &'a [u8], slots: &'s mut Slots) -> Option<Taken<'a, 's>> {
    let mut r = Reader { buf };
    let refs = r.u32()?;
    let assignment = *ASSIGNMENTS.get(usize::from(r.u8()?))?;
    let flags = r.u8()?;
    let has = |bit: u8| flags & bit != 0;
    let at_micros = i64::from_ne_bytes(r.array()?);
    let latency_us = r.u64()?;
    let bucket = u32::from_ne_bytes(r.array()?);
    let lookup_us = r.u64()?;
    let request_id = r.str()?;
    let client_id = if has(HAS_CLIENT) { Some(r.str()?) } else { None };
    let unit_hash = if has(HAS_UNIT) { Some(r.str()?) } else { None };
    let inputs = r.count()?;
    for i in 0..inputs {
        let (name, t) = slot(&mut slots.inputs, i, || (String::new(), empty_tensor()))?;
        r.str_into(name)?;
        r.tensor(t)?;
    }
    let outputs = r.count()?;
    for i in 0..outputs {
        let (name, v) = slot(&mut slots.outputs, i, || (String::new(), Value::Tensor(empty_tensor())))?;
        r.str_into(name)?;
        let kind = r.u8()?;
        *v = match (kind, std::mem::replace(v, Value::MapsI64(Vec::new()))) {
            (TENSOR, Value::Tensor(mut t)) => {
                r.tensor(&mut t)?;
                Value::Tensor(t)
            }
            (TENSOR, _) => {
                let mut t = empty_tensor();
                r.tensor(&mut t)?;
                Value::Tensor(t)
            }
            (MAPS_I64, old) => Value::MapsI64(r.rows(if let Value::MapsI64(m) = old { m } else { Vec::new() }, |r, k| {
                *k = i64::from_ne_bytes(r.array()?);
                Some(())
            })?),
            (MAPS_STR, old) => Value::MapsStr(r.rows(if let Value::MapsStr(m) = old { m } else { Vec::new() }, Reader::str_into)?),
            _ => return None,
        };
    }
    let statuses = has(HAS_STATUSES);
    if statuses {
        // Rare (records of online features): read afresh.
        slots.statuses.clear();
        for _ in 0..r.count()? {
            let key = r.str()?.to_owned();
            let values = (0..r.count()?).map(|_| r.str().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
            slots.statuses.insert(key, values);
        }
    }
    // Every byte read: a record longer than what it describes is not the record put.
    if !r.buf.is_empty() {
        return None;
    }
    Some(Taken {
        refs,
        assignment,
        request_id,
        client_id,
        unit_hash,
        bucket: has(HAS_BUCKET).then_some(bucket),
        at_micros,
        latency_us,
        lookup_us: has(HAS_LOOKUP).then_some(lookup_us),
        inputs,
        outputs,
        statuses,
        slots,
    })
}
