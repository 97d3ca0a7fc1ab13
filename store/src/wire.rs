//! OTLP trace requests read straight from their protobuf bytes.
//!
//! Decoding a request with prost allocates every key, value and name; the
//! conversion into [`SpanRow`](crate::model::SpanRow)s moves them again and
//! copies the resource's attributes into every span; packing then frees most
//! of them, because the memtable holds each distinct string and pair once.
//! For a request of the common shape that was most of the write path's CPU.
//! [`TraceBatch::parse`] reads that shape in one pass instead: ids, times and
//! numbers into a fixed-size record per span, every string copied once into
//! one text buffer, attributes as (key, scalar) ranges of it. The memtable
//! interns from those and copies only what it has not seen yet.
//!
//! The prost path stays the definition of what a request means. Whatever the
//! parse does not model exactly (a malformed or unusual encoding, an id of the
//! wrong length or all zeros, a message field given twice, a group) makes it
//! answer `None`, and the request takes the prost path, which accepts, refuses
//! or partly rejects it as it always did. Sub-messages that are rare or nest
//! (resources, scopes, statuses, events, links, list and map values) are
//! decoded with prost on the spot, wrapped in the messages above them so that
//! prost's recursion limit counts as it would in the whole request, and
//! converted by `convert`'s functions. The tests check that both paths give
//! the same spans for generated requests and for every truncation and byte
//! flip of some.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{Span, Status};
use prost::Message;

use crate::convert;
use crate::ids::{SpanId, TraceId};
use crate::model::{status_code, AttrValue, KeyValue};
use crate::packed::{Rare, Scalar};

/// Protobuf wire types.
const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// Where the sub-messages decoded with prost sit in a request: the field
/// numbers leading to them from the request (`ResourceSpans.resource`,
/// `ScopeSpans.scope`, and a span's own fields).
const RESOURCE: [u32; 2] = [1, 1];
const SCOPE: [u32; 3] = [1, 2, 1];
const SPAN: [u32; 3] = [1, 2, 2];

/// A string of the request: a range of [`TraceBatch`]'s text.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Text {
    at: u32,
    len: u32,
}

impl Text {
    const EMPTY: Text = Text { at: 0, len: 0 };

    pub(crate) fn of(self, text: &str) -> &str {
        &text[self.at as usize..(self.at + self.len) as usize]
    }
}

/// An attribute's scalar value, its string a range of the text.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FlatValue {
    Str(Text),
    Int(i64),
    Double(f64),
    Bool(bool),
    Empty,
}

impl FlatValue {
    pub(crate) fn of(self, text: &str) -> Scalar<'_> {
        match self {
            FlatValue::Str(s) => Scalar::Str(s.of(text)),
            FlatValue::Int(i) => Scalar::Int(i),
            FlatValue::Double(d) => Scalar::Double(d),
            FlatValue::Bool(b) => Scalar::Bool(b),
            FlatValue::Empty => Scalar::Empty,
        }
    }
}

/// One attribute of a span.
#[derive(Clone, Debug)]
pub(crate) enum FlatAttr {
    /// A string key and a scalar value, both in the text (nearly all).
    Plain { key: Text, value: FlatValue },
    /// Anything else (bytes, lists, maps, an unusual encoding), decoded by prost.
    Owned(Box<KeyValue>),
}

/// One span: its fixed-size fields, and where the rest is.
#[derive(Clone)]
pub(crate) struct FlatSpan {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub start: i64,
    pub duration: i64,
    pub kind: i32,
    pub status_code: i32,
    pub flags: u32,
    pub name: Text,
    /// Index into the batch's scopes.
    pub scope: u32,
    /// Its attributes: the next this many of the batch's, which are in span order.
    pub attrs_len: u32,
    pub rare: Option<Box<Rare>>,
}

#[derive(Clone)]
pub(crate) struct FlatScope {
    /// Index into the batch's resources.
    pub resource: u32,
    pub name: String,
    pub version: String,
}

#[derive(Clone, Default)]
pub(crate) struct FlatResource {
    pub attributes: Vec<KeyValue>,
    pub service: String,
}

/// The spans of one trace export request, read from its protobuf bytes and
/// validated, ready to be packed into the memtable (see the module's comment).
#[derive(Clone, Default)]
pub(crate) struct TraceBatch {
    pub text: String,
    pub spans: Vec<FlatSpan>,
    pub attrs: Vec<FlatAttr>,
    pub scopes: Vec<FlatScope>,
    pub resources: Vec<FlatResource>,
}

impl TraceBatch {
    /// Reads `bytes` as an `ExportTraceServiceRequest` of the common shape
    /// whose every span is valid; `None` when anything falls outside that
    /// (the request then takes the prost path, which decides).
    pub(crate) fn parse(bytes: &[u8]) -> Option<TraceBatch> {
        let mut parser = Parser { raw: Vec::with_capacity(bytes.len() / 2), batch: TraceBatch::default() };
        let mut r = Reader { buf: bytes };
        while r.more() {
            let (field, wire) = r.key()?;
            match field {
                1 => parser.resource_spans(r.len(wire)?)?,
                _ => r.skip(wire)?,
            }
        }
        parser.finish()
    }

    pub(crate) fn len(&self) -> usize {
        self.spans.len()
    }
}

/// A [`TraceBatch`] being read. Its strings are gathered as bytes and checked
/// as UTF-8 at the end, in one pass instead of one call per string.
struct Parser {
    raw: Vec<u8>,
    batch: TraceBatch,
}

impl Parser {
    /// The batch, once its strings are known to be UTF-8 each: the whole text
    /// is, and every string starts and ends on a character boundary of it.
    fn finish(self) -> Option<TraceBatch> {
        let Parser { raw, mut batch } = self;
        batch.text = String::from_utf8(raw).ok()?;
        let text = batch.text.as_str();
        let whole = |t: Text| text.is_char_boundary(t.at as usize) && text.is_char_boundary((t.at + t.len) as usize);
        let names = batch.spans.iter().all(|s| whole(s.name));
        let attrs = batch.attrs.iter().all(|a| match *a {
            FlatAttr::Plain { key, value: FlatValue::Str(value) } => whole(key) && whole(value),
            FlatAttr::Plain { key, .. } => whole(key),
            FlatAttr::Owned(_) => true,
        });
        (names && attrs).then_some(batch)
    }

    fn resource_spans(&mut self, bytes: &[u8]) -> Option<()> {
        // Fields come in any order: scopes name the resource by the index it will have.
        let resource = self.batch.resources.len() as u32;
        let mut attributes = None;
        let mut r = Reader { buf: bytes };
        while r.more() {
            let (field, wire) = r.key()?;
            match field {
                1 if attributes.is_none() => {
                    let decoded = in_place(&RESOURCE, r.len(wire)?)?.resource_spans.pop()?.resource?;
                    attributes = Some(convert::attributes_owned(decoded.attributes));
                }
                2 => self.scope_spans(r.len(wire)?, resource)?,
                3 => {
                    utf8(r.len(wire)?)?;
                }
                // A second resource would be merged into the first.
                1 => return None,
                _ => r.skip(wire)?,
            }
        }
        let attributes = attributes.unwrap_or_default();
        let service = convert::service_name(&attributes);
        self.batch.resources.push(FlatResource { attributes, service });
        Some(())
    }

    fn scope_spans(&mut self, bytes: &[u8], resource: u32) -> Option<()> {
        let scope = self.batch.scopes.len();
        self.batch.scopes.push(FlatScope { resource, name: String::new(), version: String::new() });
        let mut seen_scope = false;
        let mut r = Reader { buf: bytes };
        while r.more() {
            let (field, wire) = r.key()?;
            match field {
                1 if !seen_scope => {
                    seen_scope = true;
                    let decoded = in_place(&SCOPE, r.len(wire)?)?.resource_spans.pop()?.scope_spans.pop()?.scope?;
                    (self.batch.scopes[scope].name, self.batch.scopes[scope].version) = (decoded.name, decoded.version);
                }
                2 => self.span(r.len(wire)?, scope as u32)?,
                3 => {
                    utf8(r.len(wire)?)?;
                }
                1 => return None,
                _ => r.skip(wire)?,
            }
        }
        Some(())
    }

    fn span(&mut self, bytes: &[u8], scope: u32) -> Option<()> {
        let (mut trace_id, mut span_id, mut parent): (&[u8], &[u8], &[u8]) = (&[], &[], &[]);
        let (mut name, mut trace_state) = (None, "");
        let (mut kind, mut start, mut end, mut flags) = (0, 0, 0, 0);
        let mut dropped = [0; 3];
        let mut status = None;
        let (mut events, mut links) = (Vec::new(), Vec::new());
        let attrs_before = self.batch.attrs.len();
        let mut r = Reader { buf: bytes };
        while r.more() {
            let (field, wire) = r.key()?;
            match field {
                1 => trace_id = r.len(wire)?,
                2 => span_id = r.len(wire)?,
                3 => trace_state = utf8(r.len(wire)?)?,
                4 => parent = r.len(wire)?,
                // A name given twice: the first would escape its UTF-8 check.
                5 if name.is_none() => name = Some(self.push_text(r.len(wire)?)?),
                5 => return None,
                // Enumerations and uint32s keep the low bits, as prost does.
                6 => kind = r.varint_field(wire)? as i32,
                7 => start = r.fixed64(wire)?,
                8 => end = r.fixed64(wire)?,
                9 => {
                    let attr = self.attribute(r.len(wire)?)?;
                    self.batch.attrs.push(attr);
                }
                10 => dropped[0] = r.varint_field(wire)? as u32,
                11 => {
                    let event = span_field(11, r.len(wire)?)?.events.pop()?;
                    events.push(convert::event(event));
                }
                12 => dropped[1] = r.varint_field(wire)? as u32,
                13 => {
                    let link = span_field(13, r.len(wire)?)?.links.pop()?;
                    links.push(convert::link(link, String::new).ok()?);
                }
                14 => dropped[2] = r.varint_field(wire)? as u32,
                15 if status.is_none() => {
                    let bytes = r.len(wire)?;
                    status = Some(match plain_status(bytes) {
                        Some(status) => status,
                        None => span_field(15, bytes)?.status?,
                    });
                }
                15 => return None,
                16 => flags = r.fixed32(wire)?,
                _ => r.skip(wire)?,
            }
        }
        let trace_id = TraceId::from_slice(trace_id).ok()?;
        let span_id = SpanId::from_slice(span_id).ok()?;
        let parent_span_id = match parent {
            [] => None,
            parent => Some(SpanId::from_slice(parent).ok()?).filter(|p| !p.is_zero()),
        };
        if trace_id.is_zero() || span_id.is_zero() {
            return None;
        }
        let (start, end) = (convert::ns(start), convert::ns(end));
        let (status_code, status_message) = status.map_or((status_code::UNSET, String::new()), |s| (s.code, s.message));
        self.batch.spans.push(FlatSpan {
            trace_id,
            span_id,
            parent_span_id,
            start,
            duration: end.saturating_sub(start).max(0),
            kind,
            status_code,
            flags,
            name: name.unwrap_or(Text::EMPTY),
            scope,
            attrs_len: (self.batch.attrs.len() - attrs_before) as u32,
            rare: Rare::of(trace_state.to_owned(), status_message, events, links, dropped).map(Box::new),
        });
        Some(())
    }

    /// One `KeyValue`: read in place when it is a key and a scalar, else decoded.
    fn attribute(&mut self, bytes: &[u8]) -> Option<FlatAttr> {
        let mark = self.raw.len();
        if let Some(attr) = self.plain_attribute(bytes) {
            return Some(attr);
        }
        self.raw.truncate(mark);
        let kv = span_field(9, bytes)?.attributes.pop()?;
        let value = kv.value.map_or(AttrValue::Empty, convert::attr_value_owned);
        Some(FlatAttr::Owned(Box::new(KeyValue { key: kv.key, value })))
    }

    /// A `KeyValue` holding at most a key and a scalar, each once.
    fn plain_attribute(&mut self, bytes: &[u8]) -> Option<FlatAttr> {
        let (mut key, mut value) = (None, None);
        let mut r = Reader { buf: bytes };
        while r.more() {
            match r.key()? {
                (1, LEN) if key.is_none() => key = Some(self.push_text(r.len(LEN)?)?),
                (2, LEN) if value.is_none() => value = Some(self.plain_value(r.len(LEN)?)?),
                _ => return None,
            }
        }
        Some(FlatAttr::Plain { key: key.unwrap_or(Text::EMPTY), value: value.unwrap_or(FlatValue::Empty) })
    }

    /// An `AnyValue` holding nothing or one scalar.
    fn plain_value(&mut self, bytes: &[u8]) -> Option<FlatValue> {
        let mut r = Reader { buf: bytes };
        if !r.more() {
            return Some(FlatValue::Empty);
        }
        let value = match r.key()? {
            (1, LEN) => FlatValue::Str(self.push_text(r.len(LEN)?)?),
            (2, VARINT) => FlatValue::Bool(r.varint()? != 0),
            (3, VARINT) => FlatValue::Int(r.varint()? as i64),
            (4, I64) => FlatValue::Double(f64::from_bits(r.fixed64(I64)?)),
            _ => return None,
        };
        (!r.more()).then_some(value)
    }

    /// Appends a string field to the text (checked as UTF-8 in [`Parser::finish`]).
    fn push_text(&mut self, bytes: &[u8]) -> Option<Text> {
        let at = u32::try_from(self.raw.len()).ok()?;
        let len = u32::try_from(bytes.len()).ok()?;
        at.checked_add(len)?;
        self.raw.extend_from_slice(bytes);
        Some(Text { at, len })
    }
}

/// Reads `bytes` both ways and panics where they differ: whatever the parse
/// takes, the prost path must take too, reject none of, and make the same
/// spans of (compared as the memtable gives them back). Returns whether the
/// parse took it. For the tests and the fuzz target.
pub(crate) fn check_against_prost(bytes: &[u8]) -> bool {
    use crate::packed::{PackedSpans, SpanView};

    let Some(batch) = TraceBatch::parse(bytes) else { return false };
    let mut packed = PackedSpans::default();
    packed.push_batch(batch);
    // As text: a NaN is not equal to itself.
    let parsed: Vec<String> = packed.iter().map(|s| format!("{:?}", s.to_row())).collect();
    let request = ExportTraceServiceRequest::decode(bytes).expect("prost decodes what the parse took");
    let converted = convert::spans(request).expect("the conversion takes what the parse took");
    let rows: Vec<String> = converted.rows.iter().map(|r| format!("{r:?}")).collect();
    assert_eq!((&parsed, converted.rejected), (&rows, 0), "the two paths disagree on {bytes:?}");
    true
}

fn utf8(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

/// Decodes `value`, a sub-message found at `path` (field numbers from the
/// request down), with prost as it would inside the whole request: wrapped
/// in the messages above it, so that prost's recursion limit (which counts
/// nested messages and groups from the request) decides as it would there.
fn in_place(path: &[u32], value: &[u8]) -> Option<ExportTraceServiceRequest> {
    let mut headers = Vec::with_capacity(path.len());
    let mut len = value.len();
    for &field in path.iter().rev() {
        let mut header = Vec::with_capacity(12);
        prost::encoding::encode_varint(u64::from(field << 3 | u32::from(LEN)), &mut header);
        prost::encoding::encode_varint(len as u64, &mut header);
        len += header.len();
        headers.push(header);
    }
    let mut wrapped = Vec::with_capacity(len);
    for header in headers.iter().rev() {
        wrapped.extend_from_slice(header);
    }
    wrapped.extend_from_slice(value);
    ExportTraceServiceRequest::decode(wrapped.as_slice()).ok()
}

/// A `Status` read in place: a message and a code, nothing nested (a
/// group, which prost's recursion limit counts, makes it `None`).
fn plain_status(bytes: &[u8]) -> Option<Status> {
    let mut status = Status::default();
    let mut r = Reader { buf: bytes };
    while r.more() {
        let (field, wire) = r.key()?;
        match field {
            2 => utf8(r.len(wire)?)?.clone_into(&mut status.message),
            3 => status.code = r.varint_field(wire)? as i32,
            _ => r.skip(wire)?,
        }
    }
    Some(status)
}

/// A span holding only field `field` with the bytes `value`, decoded in place.
fn span_field(field: u32, value: &[u8]) -> Option<Span> {
    let path = [SPAN[0], SPAN[1], SPAN[2], field];
    in_place(&path, value)?.resource_spans.pop()?.scope_spans.pop()?.spans.pop()
}

/// Reads protobuf fields off the front of a message. Every method answers
/// `None` where prost might decide otherwise than the caller assumes: a
/// malformed encoding, a known field of the wrong wire type, a group.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn more(&self) -> bool {
        !self.buf.is_empty()
    }

    #[inline]
    fn varint(&mut self) -> Option<u64> {
        // Field keys and small numbers: one byte.
        if let Some((&byte, rest)) = self.buf.split_first() {
            if byte < 0x80 {
                self.buf = rest;
                return Some(u64::from(byte));
            }
        }
        let mut value = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.buf.split_first()?;
            self.buf = rest;
            if i == 9 && byte > 1 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Some(value);
            }
        }
        None
    }

    /// A field's number and wire type.
    fn key(&mut self) -> Option<(u32, u8)> {
        let key = u32::try_from(self.varint()?).ok()?;
        let field = key >> 3;
        (field != 0).then_some((field, (key & 7) as u8))
    }

    /// A length-delimited field's bytes, when `wire` says it is one.
    fn len(&mut self, wire: u8) -> Option<&'a [u8]> {
        if wire != LEN {
            return None;
        }
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.buf.len() {
            return None;
        }
        let (value, rest) = self.buf.split_at(len);
        self.buf = rest;
        Some(value)
    }

    fn varint_field(&mut self, wire: u8) -> Option<u64> {
        if wire != VARINT {
            return None;
        }
        self.varint()
    }

    fn fixed64(&mut self, wire: u8) -> Option<u64> {
        self.fixed(wire, I64).map(u64::from_le_bytes)
    }

    fn fixed32(&mut self, wire: u8) -> Option<u32> {
        self.fixed(wire, I32).map(u32::from_le_bytes)
    }

    /// `N` bytes, when `wire` is `want`.
    fn fixed<const N: usize>(&mut self, wire: u8, want: u8) -> Option<[u8; N]> {
        if wire != want {
            return None;
        }
        let (value, rest) = self.buf.split_first_chunk::<N>()?;
        self.buf = rest;
        Some(*value)
    }

    /// Skips an unknown field's value.
    fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            VARINT => self.varint().map(|_| ()),
            I64 => self.fixed64(wire).map(|_| ()),
            LEN => self.len(wire).map(|_| ()),
            I32 => self.fixed32(wire).map(|_| ()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue as PbKeyValue, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn agree(bytes: &[u8]) -> bool {
        check_against_prost(bytes)
    }

    fn word(rng: &mut StdRng) -> String {
        ["", "a", "b", "ü", "service.name", "http.method", "GET /x"][rng.random_range(0..7)].to_owned()
    }

    fn value(rng: &mut StdRng, depth: usize) -> AnyValue {
        let value = match rng.random_range(0..if depth < 2 { 10 } else { 7 }) {
            0 | 1 => Value::StringValue(word(rng)),
            2 => Value::BoolValue(rng.random()),
            3 => Value::IntValue(rng.random_range(-2..3)),
            4 => Value::DoubleValue([0.0, -0.0, f64::NAN, 1.5][rng.random_range(0..4)]),
            5 => Value::BytesValue((0..rng.random_range(0..3)).map(|_| rng.random()).collect()),
            6 => return AnyValue { value: None },
            7 => Value::ArrayValue(ArrayValue {
                values: (0..rng.random_range(0..3)).map(|_| value(rng, depth + 1)).collect(),
            }),
            8 => Value::KvlistValue(KeyValueList { values: attributes(rng, depth + 1, 2) }),
            _ => Value::StringValueStrindex(rng.random_range(0..4)),
        };
        AnyValue { value: Some(value) }
    }

    fn attributes(rng: &mut StdRng, depth: usize, most: usize) -> Vec<PbKeyValue> {
        (0..rng.random_range(0..=most))
            .map(|_| PbKeyValue {
                key: word(rng),
                value: rng.random_bool(0.9).then(|| value(rng, depth)),
                ..Default::default()
            })
            .collect()
    }

    /// An id, all zeros now and then.
    fn id(rng: &mut StdRng, len: usize) -> Vec<u8> {
        if rng.random_bool(0.01) {
            return vec![0; len];
        }
        (0..len).map(|_| rng.random()).collect()
    }

    fn span(rng: &mut StdRng) -> Span {
        let time = |rng: &mut StdRng| if rng.random_bool(0.05) { u64::MAX } else { rng.random_range(0..2_000) };
        Span {
            trace_id: id(rng, 16),
            span_id: id(rng, 8),
            parent_span_id: match rng.random_range(0..4) {
                0 => Vec::new(),
                1 => vec![0; 8],
                _ => id(rng, 8),
            },
            trace_state: if rng.random_bool(0.1) { "k=v".into() } else { String::new() },
            flags: rng.random_range(0..3),
            name: word(rng),
            kind: rng.random_range(0..6),
            start_time_unix_nano: time(rng),
            end_time_unix_nano: time(rng),
            attributes: attributes(rng, 0, 12),
            dropped_attributes_count: rng.random_range(0..2),
            events: (0..rng.random_range(0..2))
                .map(|_| span::Event {
                    time_unix_nano: time(rng),
                    name: word(rng),
                    attributes: attributes(rng, 0, 2),
                    dropped_attributes_count: 0,
                })
                .collect(),
            dropped_events_count: rng.random_range(0..2),
            links: (0..rng.random_range(0..2))
                .map(|_| span::Link {
                    trace_id: id(rng, 16),
                    span_id: id(rng, 8),
                    trace_state: word(rng),
                    attributes: attributes(rng, 0, 2),
                    ..Default::default()
                })
                .collect(),
            dropped_links_count: rng.random_range(0..2),
            status: rng.random_bool(0.3).then(|| Status { message: word(rng), code: rng.random_range(0..3) }),
        }
    }

    fn request(rng: &mut StdRng) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..rng.random_range(1..3))
                .map(|_| ResourceSpans {
                    resource: rng
                        .random_bool(0.8)
                        .then(|| Resource { attributes: attributes(rng, 0, 3), ..Default::default() }),
                    scope_spans: (0..rng.random_range(0..3))
                        .map(|_| ScopeSpans {
                            scope: rng.random_bool(0.7).then(|| InstrumentationScope {
                                name: word(rng),
                                version: word(rng),
                                ..Default::default()
                            }),
                            spans: (0..rng.random_range(0..5)).map(|_| span(rng)).collect(),
                            schema_url: String::new(),
                        })
                        .collect(),
                    schema_url: word(rng),
                })
                .collect(),
        }
    }

    #[test]
    fn generated_requests_are_read_as_prost_reads_them() {
        let mut rng = StdRng::seed_from_u64(13);
        let (mut taken, mut spans) = (0, 0);
        for _ in 0..500 {
            let bytes = request(&mut rng).encode_to_vec();
            if agree(&bytes) {
                taken += 1;
                spans += TraceBatch::parse(&bytes).unwrap().len();
            }
        }
        // Only all-zero ids (1% of ids) send a request the prost way here.
        assert!(taken > 400 && spans > 1000, "the parse took {taken} of 500 requests, {spans} spans");
    }

    #[test]
    fn damaged_requests_are_read_as_prost_reads_them_or_left_to_it() {
        let mut rng = StdRng::seed_from_u64(14);
        let mut taken = 0;
        for _ in 0..6 {
            let bytes = request(&mut rng).encode_to_vec();
            for end in 0..bytes.len() {
                taken += agree(&bytes[..end]) as usize;
            }
            for at in 0..bytes.len() {
                for flip in [0x01, 0x07, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= flip;
                    taken += agree(&damaged) as usize;
                }
            }
        }
        assert!(taken > 1000, "the parse took only {taken} damaged requests");
    }

    /// A field: key, then the value's bytes as given.
    fn field(number: u32, wire: u8, value: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(number << 3 | u32::from(wire)));
        if wire == LEN {
            prost::encoding::encode_varint(value.len() as u64, &mut out);
        }
        out.extend_from_slice(value);
        out
    }

    fn varint(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        prost::encoding::encode_varint(v, &mut out);
        out
    }

    /// `depth` groups (unknown field 20) nested in one another.
    fn groups(depth: usize) -> Vec<u8> {
        [field(20, 3, &[]).repeat(depth), field(20, 4, &[]).repeat(depth)].concat()
    }

    /// A request of one resource and one scope around `span`'s bytes.
    fn around(span: &[u8]) -> Vec<u8> {
        field(1, LEN, &field(2, LEN, &field(2, LEN, span)))
    }

    fn ids() -> Vec<u8> {
        [field(1, LEN, &[7; 16]), field(2, LEN, &[8; 8])].concat()
    }

    #[test]
    fn unusual_encodings_are_read_as_prost_reads_them_or_left_to_it() {
        let plain = [field(1, LEN, b"k"), field(2, LEN, &field(1, LEN, b"v"))].concat();
        let taken = [
            // Unknown fields of every wire type, at every level.
            [
                field(
                    1,
                    LEN,
                    &[
                        field(9, VARINT, &varint(5)),
                        field(2, LEN, &[field(7, I64, &[0; 8]), field(2, LEN, &ids())].concat()),
                    ]
                    .concat(),
                ),
                field(99, I32, &[1; 4]),
            ]
            .concat(),
            around(&[ids(), field(99, LEN, b"x"), field(98, I64, &[0; 8]), field(9, LEN, &plain)].concat()),
            // Scalars given twice: the last one counts.
            around(
                &[
                    ids(),
                    field(3, LEN, b"a=1"),
                    field(3, LEN, b"b=2"),
                    field(6, VARINT, &varint(1)),
                    field(6, VARINT, &varint(2)),
                ]
                .concat(),
            ),
            // The resource after its scopes.
            [field(
                1,
                LEN,
                &[
                    field(2, LEN, &field(2, LEN, &ids())),
                    field(
                        1,
                        LEN,
                        &field(
                            1,
                            LEN,
                            &[field(1, LEN, b"service.name"), field(2, LEN, &field(1, LEN, b"late"))].concat(),
                        ),
                    ),
                ]
                .concat(),
            )]
            .concat(),
            // An attribute with an unknown field, a value given twice, an unusual value.
            around(&[ids(), field(9, LEN, &[plain.clone(), field(3, VARINT, &varint(1))].concat())].concat()),
            around(
                &[ids(), field(9, LEN, &[plain.clone(), field(2, LEN, &field(3, VARINT, &varint(4)))].concat())]
                    .concat(),
            ),
            around(&[ids(), field(9, LEN, &field(2, LEN, &field(7, LEN, b"\x01\x02")))].concat()),
            // A status holding a few nested groups in an unknown field.
            around(&[ids(), field(15, LEN, &groups(3))].concat()),
            // A kind past i32: its low bits, as prost keeps them.
            around(&[ids(), field(6, VARINT, &varint(u64::MAX))].concat()),
        ];
        for (i, bytes) in taken.iter().enumerate() {
            assert!(agree(bytes), "case {i} was left to prost");
        }
        let left = [
            // Groups nested past prost's recursion limit once the span's four
            // enclosing messages count, though not within the status alone.
            around(&[ids(), field(15, LEN, &groups(97))].concat()),
            around(&[ids(), field(11, LEN, &groups(97))].concat()),
            // A name given twice, the first not UTF-8, though all names side by side are.
            around(&[ids(), field(5, LEN, b"\xc3"), field(5, LEN, b"\xbc"), field(5, LEN, b"x")].concat()),
            // A group, a status given twice, an id of the wrong length, bad UTF-8.
            around(&[ids(), field(20, 3, &[]), field(20, 4, &[])].concat()),
            around(&[ids(), field(15, LEN, &[]), field(15, LEN, &[])].concat()),
            around(&[field(1, LEN, &[7; 15]), field(2, LEN, &[8; 8])].concat()),
            around(&[ids(), field(5, LEN, b"\xff")].concat()),
            // Two strings that are not UTF-8, though their bytes side by side are ("ü").
            around(&[ids(), field(5, LEN, b"\xc3"), field(9, LEN, &field(1, LEN, b"\xbc"))].concat()),
            field(
                1,
                LEN,
                &field(
                    2,
                    LEN,
                    &[
                        field(2, LEN, &[ids(), field(5, LEN, b"\xc3")].concat()),
                        field(2, LEN, &[ids(), field(5, LEN, b"\xbc")].concat()),
                    ]
                    .concat(),
                ),
            ),
            around(&[ids(), field(3, VARINT, &varint(1))].concat()),
            // A resource or a scope given twice (prost merges them).
            field(1, LEN, &[field(1, LEN, &[]), field(1, LEN, &[]), field(2, LEN, &field(2, LEN, &ids()))].concat()),
            field(1, LEN, &field(2, LEN, &[field(1, LEN, &[]), field(1, LEN, &[]), field(2, LEN, &ids())].concat())),
        ];
        for (i, bytes) in left.iter().enumerate() {
            assert!(TraceBatch::parse(bytes).is_none(), "case {i} was taken");
        }
        // The first two: prost takes the groups within the status or event alone,
        // not within the request.
        assert!(Status::decode(groups(97).as_slice()).is_ok() && span::Event::decode(groups(97).as_slice()).is_ok());
        assert!(ExportTraceServiceRequest::decode(left[0].as_slice()).is_err());
        assert!(ExportTraceServiceRequest::decode(left[1].as_slice()).is_err());
    }
}
