//! The part of the ONNX protobuf schema (`onnx.proto3`) a model file needs, decoded by hand
//! from the wire format: a model, its graph, nodes with their attributes, initializers and the
//! declared types of inputs and outputs. Unknown fields are skipped, as protobuf requires.
//! Malformed bytes are an error, never a panic; nothing here allocates more than the file holds.

use crate::error::{Error, Result};

/// A cursor over protobuf bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

fn bad(what: &str) -> Error {
    Error::invalid(format!("not a valid ONNX model: {what}"))
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| bad("truncated number"))?;
            self.pos += 1;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err(bad("number too long"))
    }

    fn key(&mut self) -> Result<(u32, u8)> {
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| bad("field number out of range"))?;
        Ok((field, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or_else(|| bad("truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.varint()?).map_err(|_| bad("field too long"))?;
        self.take(n)
    }

    fn fixed32(&mut self) -> Result<[u8; 4]> {
        let s = self.take(4)?;
        Ok([s[0], s[1], s[2], s[3]])
    }

    fn fixed64(&mut self) -> Result<[u8; 8]> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn skip(&mut self, wire: u8) -> Result<()> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            I64 => self.take(8).map(|_| ()),
            LEN => self.bytes().map(|_| ()),
            I32 => self.take(4).map(|_| ()),
            _ => Err(bad("unknown wire type")),
        }
    }

    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| bad("text is not UTF-8"))
    }
}

/// Repeated int64 (packed or not) appended to `out`.
fn ints(r: &mut Reader<'_>, wire: u8, out: &mut Vec<i64>) -> Result<()> {
    match wire {
        VARINT => out.push(r.varint()? as i64),
        LEN => {
            let mut p = Reader::new(r.bytes()?);
            while !p.done() {
                out.push(p.varint()? as i64);
            }
        }
        _ => return Err(bad("integers with the wrong wire type")),
    }
    Ok(())
}

/// Repeated float (packed or not) appended to `out`.
fn floats(r: &mut Reader<'_>, wire: u8, out: &mut Vec<f32>) -> Result<()> {
    match wire {
        I32 => out.push(f32::from_le_bytes(r.fixed32()?)),
        LEN => {
            let b = r.bytes()?;
            if b.len() % 4 != 0 {
                return Err(bad("packed floats of a wrong length"));
            }
            out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
        }
        _ => return Err(bad("floats with the wrong wire type")),
    }
    Ok(())
}

/// Repeated double (packed or not) appended to `out`.
fn doubles(r: &mut Reader<'_>, wire: u8, out: &mut Vec<f64>) -> Result<()> {
    match wire {
        I64 => out.push(f64::from_le_bytes(r.fixed64()?)),
        LEN => {
            let b = r.bytes()?;
            if b.len() % 8 != 0 {
                return Err(bad("packed doubles of a wrong length"));
            }
            out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])));
        }
        _ => return Err(bad("doubles with the wrong wire type")),
    }
    Ok(())
}

/// `TensorProto`, with its data in whichever field the writer chose.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorProto {
    pub dims: Vec<i64>,
    pub data_type: i32,
    pub name: String,
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i64>,
    pub string_data: Vec<Vec<u8>>,
    pub int64_data: Vec<i64>,
    pub raw_data: Vec<u8>,
    pub double_data: Vec<f64>,
    pub uint64_data: Vec<i64>,
    pub external: bool,
}

fn tensor(b: &[u8]) -> Result<TensorProto> {
    let mut r = Reader::new(b);
    let mut t = TensorProto::default();
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, _) => ints(&mut r, w, &mut t.dims)?,
            (2, VARINT) => t.data_type = r.varint()? as i32,
            (4, _) => floats(&mut r, w, &mut t.float_data)?,
            (5, _) => ints(&mut r, w, &mut t.int32_data)?,
            (6, LEN) => t.string_data.push(r.bytes()?.to_vec()),
            (7, _) => ints(&mut r, w, &mut t.int64_data)?,
            (8, LEN) => t.name = r.string()?,
            (9, LEN) => t.raw_data = r.bytes()?.to_vec(),
            (10, _) => doubles(&mut r, w, &mut t.double_data)?,
            (11, _) => ints(&mut r, w, &mut t.uint64_data)?,
            (14, VARINT) => t.external = r.varint()? == 1,
            (13, LEN) => {
                // external_data entries: their presence means the values live in another file.
                r.bytes()?;
                t.external = true;
            }
            _ => r.skip(w)?,
        }
    }
    Ok(t)
}

/// An attribute's value, by the field that carries it.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    Bytes(Vec<u8>),
    Tensor(TensorProto),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    /// A subgraph or another kind Vigil never needs (kept to name it in errors).
    Other,
}

/// `AttributeProto`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
}

fn attribute(b: &[u8]) -> Result<Attribute> {
    let mut r = Reader::new(b);
    let mut name = String::new();
    let mut kind = 0u64;
    let (mut f_, mut i_, mut s_, mut t_) = (None, None, None, None);
    let (mut fs, mut is, mut ss) = (Vec::new(), Vec::new(), Vec::new());
    let mut other = false;
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, LEN) => name = r.string()?,
            (2, I32) => f_ = Some(f32::from_le_bytes(r.fixed32()?)),
            (3, VARINT) => i_ = Some(r.varint()? as i64),
            (4, LEN) => s_ = Some(r.bytes()?.to_vec()),
            (5, LEN) => t_ = Some(tensor(r.bytes()?)?),
            (6 | 10 | 11 | 22 | 23, LEN) => {
                r.bytes()?;
                other = true;
            }
            (7, _) => floats(&mut r, w, &mut fs)?,
            (8, _) => ints(&mut r, w, &mut is)?,
            (9, LEN) => ss.push(r.bytes()?.to_vec()),
            (20, VARINT) => kind = r.varint()?,
            _ => r.skip(w)?,
        }
    }
    // The `type` field decides; older writers leave it out, so fall back on what is present.
    let value = match kind {
        1 => AttrValue::Float(f_.unwrap_or(0.0)),
        2 => AttrValue::Int(i_.unwrap_or(0)),
        3 => AttrValue::Bytes(s_.unwrap_or_default()),
        4 => AttrValue::Tensor(t_.unwrap_or_default()),
        6 => AttrValue::Floats(fs),
        7 => AttrValue::Ints(is),
        8 => AttrValue::Strings(ss),
        0 => match (f_, i_, s_, t_) {
            (Some(v), _, _, _) => AttrValue::Float(v),
            (_, Some(v), _, _) => AttrValue::Int(v),
            (_, _, Some(v), _) => AttrValue::Bytes(v),
            (_, _, _, Some(v)) => AttrValue::Tensor(v),
            _ if !fs.is_empty() => AttrValue::Floats(fs),
            _ if !is.is_empty() => AttrValue::Ints(is),
            _ if !ss.is_empty() => AttrValue::Strings(ss),
            _ if other => AttrValue::Other,
            _ => AttrValue::Ints(Vec::new()),
        },
        _ => AttrValue::Other,
    };
    Ok(Attribute { name, value })
}

/// `NodeProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeProto {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub attributes: Vec<Attribute>,
}

fn node(b: &[u8]) -> Result<NodeProto> {
    let mut r = Reader::new(b);
    let mut n = NodeProto::default();
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, LEN) => n.inputs.push(r.string()?),
            (2, LEN) => n.outputs.push(r.string()?),
            (3, LEN) => n.name = r.string()?,
            (4, LEN) => n.op_type = r.string()?,
            (5, LEN) => n.attributes.push(attribute(r.bytes()?)?),
            (7, LEN) => n.domain = r.string()?,
            _ => r.skip(w)?,
        }
    }
    Ok(n)
}

/// A declared type: a tensor (element type and dimensions, `None` for a symbolic or unknown
/// one), or something else (sequence, map) with a short description.
#[derive(Debug, Clone, PartialEq)]
pub enum TypeProto {
    Tensor { elem_type: i32, shape: Option<Vec<Option<i64>>> },
    /// A sequence of maps (ZipMap's output): key element type.
    SequenceOfMaps { key_type: i32 },
    Other,
}

fn shape(b: &[u8]) -> Result<Vec<Option<i64>>> {
    let mut r = Reader::new(b);
    let mut dims = Vec::new();
    while !r.done() {
        let (f, w) = r.key()?;
        if (f, w) == (1, LEN) {
            let mut d = Reader::new(r.bytes()?);
            let mut value = None;
            while !d.done() {
                let (f, w) = d.key()?;
                match (f, w) {
                    (1, VARINT) => value = Some(d.varint()? as i64),
                    _ => d.skip(w)?,
                }
            }
            dims.push(value);
        } else {
            r.skip(w)?;
        }
    }
    Ok(dims)
}

fn type_proto(b: &[u8]) -> Result<TypeProto> {
    let mut r = Reader::new(b);
    let mut out = TypeProto::Other;
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, LEN) => {
                let mut t = Reader::new(r.bytes()?);
                let (mut elem_type, mut dims) = (0, None);
                while !t.done() {
                    let (f, w) = t.key()?;
                    match (f, w) {
                        (1, VARINT) => elem_type = t.varint()? as i32,
                        (2, LEN) => dims = Some(shape(t.bytes()?)?),
                        _ => t.skip(w)?,
                    }
                }
                out = TypeProto::Tensor { elem_type, shape: dims };
            }
            (4, LEN) => {
                // sequence_type { elem_type: TypeProto { map_type { key_type, value_type } } }
                let mut s = Reader::new(r.bytes()?);
                while !s.done() {
                    let (f, w) = s.key()?;
                    if (f, w) == (1, LEN) {
                        let mut e = Reader::new(s.bytes()?);
                        while !e.done() {
                            let (f, w) = e.key()?;
                            if (f, w) == (5, LEN) {
                                let mut m = Reader::new(e.bytes()?);
                                while !m.done() {
                                    let (f, w) = m.key()?;
                                    match (f, w) {
                                        (1, VARINT) => out = TypeProto::SequenceOfMaps { key_type: m.varint()? as i32 },
                                        _ => m.skip(w)?,
                                    }
                                }
                            } else {
                                e.skip(w)?;
                            }
                        }
                    } else {
                        s.skip(w)?;
                    }
                }
            }
            _ => r.skip(w)?,
        }
    }
    Ok(out)
}

/// `ValueInfoProto`: a graph input's or output's name and declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub ty: TypeProto,
}

fn value_info(b: &[u8]) -> Result<ValueInfo> {
    let mut r = Reader::new(b);
    let (mut name, mut ty) = (String::new(), TypeProto::Other);
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, LEN) => name = r.string()?,
            (2, LEN) => ty = type_proto(r.bytes()?)?,
            _ => r.skip(w)?,
        }
    }
    Ok(ValueInfo { name, ty })
}

/// `GraphProto`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphProto {
    pub name: String,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
}

fn graph(b: &[u8]) -> Result<GraphProto> {
    let mut r = Reader::new(b);
    let mut g = GraphProto::default();
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, LEN) => g.nodes.push(node(r.bytes()?)?),
            (2, LEN) => g.name = r.string()?,
            (5, LEN) => g.initializers.push(tensor(r.bytes()?)?),
            (11, LEN) => g.inputs.push(value_info(r.bytes()?)?),
            (12, LEN) => g.outputs.push(value_info(r.bytes()?)?),
            _ => r.skip(w)?,
        }
    }
    Ok(g)
}

/// `ModelProto`: what a model file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelProto {
    pub ir_version: i64,
    pub producer_name: String,
    pub producer_version: String,
    /// (domain, version); the default domain is "".
    pub opset_import: Vec<(String, i64)>,
    pub graph: Option<GraphProto>,
    pub metadata: Vec<(String, String)>,
}

/// Decodes a model file.
pub fn model(b: &[u8]) -> Result<ModelProto> {
    let mut r = Reader::new(b);
    let mut m = ModelProto::default();
    while !r.done() {
        let (f, w) = r.key()?;
        match (f, w) {
            (1, VARINT) => m.ir_version = r.varint()? as i64,
            (2, LEN) => m.producer_name = r.string()?,
            (3, LEN) => m.producer_version = r.string()?,
            (7, LEN) => m.graph = Some(graph(r.bytes()?)?),
            (8, LEN) => {
                let mut o = Reader::new(r.bytes()?);
                let (mut domain, mut version) = (String::new(), 0);
                while !o.done() {
                    let (f, w) = o.key()?;
                    match (f, w) {
                        (1, LEN) => domain = o.string()?,
                        (2, VARINT) => version = o.varint()? as i64,
                        _ => o.skip(w)?,
                    }
                }
                m.opset_import.push((domain, version));
            }
            (14, LEN) => {
                let mut e = Reader::new(r.bytes()?);
                let (mut k, mut v) = (String::new(), String::new());
                while !e.done() {
                    let (f, w) = e.key()?;
                    match (f, w) {
                        (1, LEN) => k = e.string()?,
                        (2, LEN) => v = e.string()?,
                        _ => e.skip(w)?,
                    }
                }
                m.metadata.push((k, v));
            }
            _ => r.skip(w)?,
        }
    }
    Ok(m)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_garbage_bytes_are_errors_not_panics() {
        assert!(model(&[0x3a, 0x05, 0x01]).is_err(), "a length past the end");
        assert!(model(&[0xff; 12]).is_err(), "a varint that never ends");
        assert!(model(&[0x0f]).is_err(), "wire type 7");
        assert_eq!(model(&[]).unwrap(), ModelProto::default());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for len in 0..300 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = model(&bytes);
        }
    }
}
