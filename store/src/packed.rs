//! The memtable's spans, packed.
//!
//! A [`SpanRow`] holds two dozen heap allocations (every attribute key and
//! string value, the resource's attributes again for every span of the
//! resource), about 1.5 KiB per span of a typical workload: ten times the
//! request bytes the memtable's limits count. Here a span is a fixed-size
//! record whose strings are ids into tables the memtable's spans share:
//! service and span names, scopes, whole resources, and distinct attribute
//! `(key, value)` pairs, each stored once. A span of eleven attributes takes
//! about 150 bytes, and a flush walks dense arrays instead of freeing two
//! dozen allocations per span.
//!
//! Everything that reads spans (the flush, memtable searches, statistics)
//! does so through [`SpanView`], which a [`SpanRow`] (decoded from a
//! segment) implements too; a whole [`SpanRow`] is built only for the spans
//! a query returns.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crate::ids::{SpanId, TraceId};
use crate::model::{AttrValue, KeyValue, SpanEvent, SpanLink, SpanRow};
use crate::wire::{FlatAttr, FlatResource, TraceBatch};

/// Read access to one span's fields, whatever holds them.
pub(crate) trait SpanView {
    fn trace_id(&self) -> TraceId;
    fn span_id(&self) -> SpanId;
    fn parent_span_id(&self) -> Option<SpanId>;
    fn start(&self) -> i64;
    fn duration(&self) -> i64;
    fn kind(&self) -> i32;
    fn status_code(&self) -> i32;
    fn flags(&self) -> u32;
    fn service_name(&self) -> &str;
    fn name(&self) -> &str;
    fn trace_state(&self) -> &str;
    fn status_message(&self) -> &str;
    fn scope_name(&self) -> &str;
    fn scope_version(&self) -> &str;
    fn attributes(&self) -> impl Iterator<Item = &KeyValue>;
    fn resource_attributes(&self) -> &[KeyValue];
    fn events(&self) -> &[SpanEvent];
    fn links(&self) -> &[SpanLink];
    /// Dropped attributes, events and links.
    fn dropped(&self) -> [u32; 3];
    fn to_row(&self) -> SpanRow;
    /// The attributes as ids of distinct pairs, when the span is packed:
    /// (the table's identity, one id per attribute). Equal ids within one
    /// table are equal pairs, so work done for a pair can be reused.
    fn attribute_ids(&self) -> Option<(usize, &[u32])> {
        None
    }
    /// For a packed span, ids (in the table [`SpanView::attribute_ids`]
    /// names) of what the rest of its index terms come from.
    fn shape(&self) -> Option<Shape> {
        None
    }
}

/// A packed span's service and span name, and what its derived and resource
/// tags come from (resource, kind, status code, scope name and version;
/// `None` when it has events or a status message, which are not shared):
/// spans of one shape have the same terms besides their attributes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Shape {
    pub operation: (u32, u32),
    pub tags: Option<(u32, i32, i32, u32, u32)>,
}

impl SpanView for SpanRow {
    fn trace_id(&self) -> TraceId {
        self.trace_id
    }
    fn span_id(&self) -> SpanId {
        self.span_id
    }
    fn parent_span_id(&self) -> Option<SpanId> {
        self.parent_span_id
    }
    fn start(&self) -> i64 {
        self.start_time_unix_nano
    }
    fn duration(&self) -> i64 {
        self.duration_nano
    }
    fn kind(&self) -> i32 {
        self.kind
    }
    fn status_code(&self) -> i32 {
        self.status_code
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn service_name(&self) -> &str {
        &self.service_name
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn trace_state(&self) -> &str {
        &self.trace_state
    }
    fn status_message(&self) -> &str {
        &self.status_message
    }
    fn scope_name(&self) -> &str {
        &self.scope_name
    }
    fn scope_version(&self) -> &str {
        &self.scope_version
    }
    fn attributes(&self) -> impl Iterator<Item = &KeyValue> {
        self.attributes.iter()
    }
    fn resource_attributes(&self) -> &[KeyValue] {
        &self.resource_attributes
    }
    fn events(&self) -> &[SpanEvent] {
        &self.events
    }
    fn links(&self) -> &[SpanLink] {
        &self.links
    }
    fn dropped(&self) -> [u32; 3] {
        [self.dropped_attributes_count, self.dropped_events_count, self.dropped_links_count]
    }
    fn to_row(&self) -> SpanRow {
        self.clone()
    }
}

impl<T: SpanView> SpanView for &T {
    fn trace_id(&self) -> TraceId {
        (**self).trace_id()
    }
    fn span_id(&self) -> SpanId {
        (**self).span_id()
    }
    fn parent_span_id(&self) -> Option<SpanId> {
        (**self).parent_span_id()
    }
    fn start(&self) -> i64 {
        (**self).start()
    }
    fn duration(&self) -> i64 {
        (**self).duration()
    }
    fn kind(&self) -> i32 {
        (**self).kind()
    }
    fn status_code(&self) -> i32 {
        (**self).status_code()
    }
    fn flags(&self) -> u32 {
        (**self).flags()
    }
    fn service_name(&self) -> &str {
        (**self).service_name()
    }
    fn name(&self) -> &str {
        (**self).name()
    }
    fn trace_state(&self) -> &str {
        (**self).trace_state()
    }
    fn status_message(&self) -> &str {
        (**self).status_message()
    }
    fn scope_name(&self) -> &str {
        (**self).scope_name()
    }
    fn scope_version(&self) -> &str {
        (**self).scope_version()
    }
    fn attributes(&self) -> impl Iterator<Item = &KeyValue> {
        (**self).attributes()
    }
    fn resource_attributes(&self) -> &[KeyValue] {
        (**self).resource_attributes()
    }
    fn events(&self) -> &[SpanEvent] {
        (**self).events()
    }
    fn links(&self) -> &[SpanLink] {
        (**self).links()
    }
    fn dropped(&self) -> [u32; 3] {
        (**self).dropped()
    }
    fn to_row(&self) -> SpanRow {
        (**self).to_row()
    }
    fn attribute_ids(&self) -> Option<(usize, &[u32])> {
        (**self).attribute_ids()
    }
    fn shape(&self) -> Option<Shape> {
        (**self).shape()
    }
}

/// No entry: the `rare` and chain sentinels.
const NONE: u32 = u32::MAX;

/// One span: ids into its [`PackedSpans`]' tables.
struct Packed {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    start: i64,
    duration: i64,
    kind: i32,
    status_code: i32,
    flags: u32,
    service: u32,
    name: u32,
    scope_name: u32,
    scope_version: u32,
    resource: u32,
    /// Its attributes: `pair_ids[attrs..attrs + attrs_len]`.
    attrs: u32,
    attrs_len: u32,
    /// Index into `rare`, or [`NONE`].
    rare: u32,
}

/// What few spans carry, kept out of the fixed-size record.
#[derive(Clone, Default)]
pub(crate) struct Rare {
    trace_state: String,
    status_message: String,
    events: Vec<SpanEvent>,
    links: Vec<SpanLink>,
    dropped: [u32; 3],
}

impl Rare {
    /// What a span carries besides its fixed-size fields; `None` when it is
    /// all empty (most spans).
    pub(crate) fn of(
        trace_state: String,
        status_message: String,
        events: Vec<SpanEvent>,
        links: Vec<SpanLink>,
        dropped: [u32; 3],
    ) -> Option<Rare> {
        let empty = trace_state.is_empty()
            && status_message.is_empty()
            && events.is_empty()
            && links.is_empty()
            && dropped == [0; 3];
        (!empty).then_some(Rare { trace_state, status_message, events, links, dropped })
    }

    /// Heap bytes held, roughly.
    fn bytes(&self) -> usize {
        size_of::<Rare>()
            + self.trace_state.len()
            + self.status_message.len()
            + self
                .events
                .iter()
                .map(|e| size_of::<SpanEvent>() + e.name.len() + kvs_bytes(&e.attributes))
                .sum::<usize>()
            + self.links.iter().map(|l| size_of::<SpanLink>() + 48 + kvs_bytes(&l.attributes)).sum::<usize>()
    }
}

/// Spans in arrival order, packed (see the module's comment).
#[derive(Default)]
pub(crate) struct PackedSpans {
    rows: Vec<Packed>,
    pair_ids: Vec<u32>,
    pairs: Pairs,
    strings: Strings,
    resources: Vec<Vec<KeyValue>>,
    rare: Vec<Rare>,
    /// Heap bytes held by the tables besides `rows` and `pair_ids`.
    table_bytes: usize,
}

impl PackedSpans {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Memory held, estimated (what the memtable's limits count).
    pub(crate) fn held_bytes(&self) -> usize {
        self.rows.capacity() * size_of::<Packed>() + self.pair_ids.capacity() * 4 + self.table_bytes
    }

    /// Appends `row`, taking its strings into the tables (or dropping them
    /// where the tables hold them already). Returns its position.
    pub(crate) fn push(&mut self, row: SpanRow) -> u32 {
        let at = self.rows.len() as u32;
        let SpanRow {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            flags,
            service_name,
            name,
            kind,
            start_time_unix_nano,
            duration_nano,
            status_code,
            status_message,
            attributes,
            resource_attributes,
            scope_name,
            scope_version,
            events,
            links,
            dropped_attributes_count,
            dropped_events_count,
            dropped_links_count,
        } = row;
        let attrs = self.pair_ids.len() as u32;
        let attrs_len = attributes.len() as u32;
        for kv in attributes {
            let (id, added) = self.pairs.intern(kv);
            self.table_bytes += added;
            self.pair_ids.push(id);
        }
        let resource = self.resource(resource_attributes);
        let dropped = [dropped_attributes_count, dropped_events_count, dropped_links_count];
        let rare = self.rare(Rare::of(trace_state, status_message, events, links, dropped));
        let packed = Packed {
            trace_id,
            span_id,
            parent_span_id,
            start: start_time_unix_nano,
            duration: duration_nano,
            kind,
            status_code,
            flags,
            service: self.string(&service_name),
            name: self.string(&name),
            scope_name: self.string(&scope_name),
            scope_version: self.string(&scope_version),
            resource,
            attrs,
            attrs_len,
            rare,
        };
        self.rows.push(packed);
        at
    }

    /// Appends the spans of one request read from its protobuf bytes, in
    /// order, without building a [`SpanRow`] for each: a resource's and a
    /// scope's strings are looked up once per request, an attribute's key and
    /// value straight from the request's text.
    pub(crate) fn push_batch(&mut self, batch: TraceBatch) {
        let TraceBatch { text, spans, attrs, scopes, mut resources } = batch;
        // Taken in at a scope's first span, so that resources and scopes
        // without spans leave nothing behind (as with `push`).
        let mut resource_ids: Vec<Option<(u32, u32)>> = vec![None; resources.len()];
        let mut scope_ids: Vec<Option<(u32, u32, u32, u32)>> = vec![None; scopes.len()];
        let mut attrs = attrs.into_iter();
        for span in spans {
            let at = self.pair_ids.len() as u32;
            for attr in attrs.by_ref().take(span.attrs_len as usize) {
                let (id, added) = match attr {
                    FlatAttr::Plain { key, value } => self.pairs.intern_scalar(key.of(&text), value.of(&text)),
                    FlatAttr::Owned(kv) => self.pairs.intern(*kv),
                };
                self.table_bytes += added;
                self.pair_ids.push(id);
            }
            let scope = span.scope as usize;
            let (resource, service, scope_name, scope_version) = match scope_ids[scope] {
                Some(ids) => ids,
                None => {
                    let r = scopes[scope].resource as usize;
                    let (resource, service) = match resource_ids[r] {
                        Some(ids) => ids,
                        None => {
                            let FlatResource { attributes, service } = std::mem::take(&mut resources[r]);
                            let ids = (self.resource(attributes), self.string(&service));
                            resource_ids[r] = Some(ids);
                            ids
                        }
                    };
                    let ids =
                        (resource, service, self.string(&scopes[scope].name), self.string(&scopes[scope].version));
                    scope_ids[scope] = Some(ids);
                    ids
                }
            };
            let rare = self.rare(span.rare.map(|r| *r));
            let packed = Packed {
                trace_id: span.trace_id,
                span_id: span.span_id,
                parent_span_id: span.parent_span_id,
                start: span.start,
                duration: span.duration,
                kind: span.kind,
                status_code: span.status_code,
                flags: span.flags,
                service,
                name: self.string(span.name.of(&text)),
                scope_name,
                scope_version,
                resource,
                attrs: at,
                attrs_len: span.attrs_len,
                rare,
            };
            self.rows.push(packed);
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        let (id, added) = self.strings.intern(s);
        self.table_bytes += added;
        id
    }

    /// The id of a span's resource. The spans of one request's resource
    /// arrive together: compared with the last resource only.
    fn resource(&mut self, attributes: Vec<KeyValue>) -> u32 {
        if self.resources.last() != Some(&attributes) {
            self.table_bytes += kvs_bytes(&attributes);
            self.resources.push(attributes);
        }
        self.resources.len() as u32 - 1
    }

    fn rare(&mut self, rare: Option<Rare>) -> u32 {
        let Some(rare) = rare else { return NONE };
        self.table_bytes += rare.bytes();
        self.rare.push(rare);
        self.rare.len() as u32 - 1
    }

    pub(crate) fn get(&self, i: u32) -> PackedRef<'_> {
        PackedRef { spans: self, row: &self.rows[i as usize] }
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = PackedRef<'_>> + '_ {
        self.rows.iter().map(move |row| PackedRef { spans: self, row })
    }
}

/// Heap bytes of an attribute list, roughly.
fn kvs_bytes(kvs: &[KeyValue]) -> usize {
    kvs.iter().map(|kv| size_of::<KeyValue>() + kv.key.len() + value_bytes(&kv.value)).sum()
}

fn value_bytes(v: &AttrValue) -> usize {
    match v {
        AttrValue::Str(s) | AttrValue::Bytes(s) => s.len(),
        AttrValue::Array(items) => items.iter().map(|i| size_of::<AttrValue>() + value_bytes(i)).sum(),
        AttrValue::Map(kvs) => kvs_bytes(kvs),
        _ => 0,
    }
}

/// One packed span, readable as a [`SpanView`].
#[derive(Clone, Copy)]
pub(crate) struct PackedRef<'a> {
    spans: &'a PackedSpans,
    row: &'a Packed,
}

impl<'a> PackedRef<'a> {
    fn ids(&self) -> &'a [u32] {
        let at = self.row.attrs as usize;
        &self.spans.pair_ids[at..at + self.row.attrs_len as usize]
    }

    fn rare(&self) -> Option<&Rare> {
        (self.row.rare != NONE).then(|| &self.spans.rare[self.row.rare as usize])
    }
}

impl SpanView for PackedRef<'_> {
    fn trace_id(&self) -> TraceId {
        self.row.trace_id
    }
    fn span_id(&self) -> SpanId {
        self.row.span_id
    }
    fn parent_span_id(&self) -> Option<SpanId> {
        self.row.parent_span_id
    }
    fn start(&self) -> i64 {
        self.row.start
    }
    fn duration(&self) -> i64 {
        self.row.duration
    }
    fn kind(&self) -> i32 {
        self.row.kind
    }
    fn status_code(&self) -> i32 {
        self.row.status_code
    }
    fn flags(&self) -> u32 {
        self.row.flags
    }
    fn service_name(&self) -> &str {
        self.spans.strings.get(self.row.service)
    }
    fn name(&self) -> &str {
        self.spans.strings.get(self.row.name)
    }
    fn trace_state(&self) -> &str {
        self.rare().map_or("", |r| &r.trace_state)
    }
    fn status_message(&self) -> &str {
        self.rare().map_or("", |r| &r.status_message)
    }
    fn scope_name(&self) -> &str {
        self.spans.strings.get(self.row.scope_name)
    }
    fn scope_version(&self) -> &str {
        self.spans.strings.get(self.row.scope_version)
    }
    fn attributes(&self) -> impl Iterator<Item = &KeyValue> {
        self.ids().iter().map(|id| &self.spans.pairs.pairs[*id as usize])
    }
    fn attribute_ids(&self) -> Option<(usize, &[u32])> {
        Some((std::ptr::from_ref(self.spans) as usize, self.ids()))
    }
    fn shape(&self) -> Option<Shape> {
        let r = self.row;
        let plain = self.rare().is_none_or(|x| x.events.is_empty() && x.status_message.is_empty());
        Some(Shape {
            operation: (r.service, r.name),
            tags: plain.then_some((r.resource, r.kind, r.status_code, r.scope_name, r.scope_version)),
        })
    }
    fn resource_attributes(&self) -> &[KeyValue] {
        &self.spans.resources[self.row.resource as usize]
    }
    fn events(&self) -> &[SpanEvent] {
        self.rare().map_or(&[], |r| &r.events)
    }
    fn links(&self) -> &[SpanLink] {
        self.rare().map_or(&[], |r| &r.links)
    }
    fn dropped(&self) -> [u32; 3] {
        self.rare().map_or([0; 3], |r| r.dropped)
    }
    fn to_row(&self) -> SpanRow {
        let [dropped_attributes_count, dropped_events_count, dropped_links_count] = self.dropped();
        SpanRow {
            trace_id: self.trace_id(),
            span_id: self.span_id(),
            parent_span_id: self.parent_span_id(),
            trace_state: self.trace_state().to_string(),
            flags: self.flags(),
            service_name: self.service_name().to_string(),
            name: self.name().to_string(),
            kind: self.kind(),
            start_time_unix_nano: self.start(),
            duration_nano: self.duration(),
            status_code: self.status_code(),
            status_message: self.status_message().to_string(),
            attributes: self.attributes().cloned().collect(),
            resource_attributes: self.resource_attributes().to_vec(),
            scope_name: self.scope_name().to_string(),
            scope_version: self.scope_version().to_string(),
            events: self.events().to_vec(),
            links: self.links().to_vec(),
            dropped_attributes_count,
            dropped_events_count,
            dropped_links_count,
        }
    }
}

/// Distinct strings, by id.
#[derive(Default)]
struct Strings {
    strings: Vec<Box<str>>,
    ids: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
}

impl Strings {
    /// The id of `s`, and the bytes the table grew by.
    fn intern(&mut self, s: &str) -> (u32, usize) {
        if let Some(id) = self.ids.get(s) {
            return (*id, 0);
        }
        let id = self.strings.len() as u32;
        let added = 2 * (s.len() + size_of::<Box<str>>()) + 8;
        let s: Box<str> = s.into();
        self.strings.push(s.clone());
        self.ids.insert(s, id);
        (id, added)
    }

    fn get(&self, id: u32) -> &str {
        &self.strings[id as usize]
    }
}

/// Distinct attribute `(key, value)` pairs, by id. Found by a hash of the
/// pair (chained on collision), so a pair seen before costs a hash and a
/// comparison, no allocation.
#[derive(Default)]
struct Pairs {
    pairs: Vec<KeyValue>,
    /// Next id with the same hash, or [`NONE`].
    chain: Vec<u32>,
    first: HashMap<u64, u32, foldhash::fast::RandomState>,
    /// Seeded per table, so pairs crafted to collide cannot be known in advance.
    hasher: foldhash::fast::RandomState,
}

impl Pairs {
    /// The id of `kv`, and the bytes the table grew by.
    fn intern(&mut self, kv: KeyValue) -> (u32, usize) {
        if let Some(value) = Scalar::of(&kv.value) {
            let hash = self.hash(&kv.key, value);
            return match self.find(hash, |p| p.key == kv.key && value.is(&p.value)) {
                Ok(id) => (id, 0),
                Err(head) => self.add(hash, head, kv),
            };
        }
        let mut h = self.hasher.build_hasher();
        h.write(kv.key.as_bytes());
        hash_value(&mut h, &kv.value);
        let hash = h.finish();
        match self.find(hash, |p| same_pair(p, &kv)) {
            Ok(id) => (id, 0),
            Err(head) => self.add(hash, head, kv),
        }
    }

    /// [`Pairs::intern`] for a pair with a scalar value, given by reference:
    /// the pair is copied only when it is new.
    fn intern_scalar(&mut self, key: &str, value: Scalar<'_>) -> (u32, usize) {
        let hash = self.hash(key, value);
        match self.find(hash, |p| p.key == key && value.is(&p.value)) {
            Ok(id) => (id, 0),
            Err(head) => self.add(hash, head, KeyValue { key: key.to_owned(), value: value.to_value() }),
        }
    }

    fn hash(&self, key: &str, value: Scalar<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        value.hash_into(&mut h);
        h.finish()
    }

    /// The id of the pair with `hash` that `same` accepts, or the head of
    /// the hash's chain to add it to.
    fn find(&self, hash: u64, same: impl Fn(&KeyValue) -> bool) -> std::result::Result<u32, u32> {
        let head = self.first.get(&hash).copied().unwrap_or(NONE);
        let mut at = head;
        while at != NONE {
            if same(&self.pairs[at as usize]) {
                return Ok(at);
            }
            at = self.chain[at as usize];
        }
        Err(head)
    }

    fn add(&mut self, hash: u64, head: u32, kv: KeyValue) -> (u32, usize) {
        let id = self.pairs.len() as u32;
        let added = kvs_bytes(std::slice::from_ref(&kv)) + 4 + 24;
        self.pairs.push(kv);
        self.chain.push(head);
        self.first.insert(hash, id);
        (id, added)
    }
}

/// An attribute value that is neither bytes, a list nor a map, borrowed:
/// what nearly every attribute holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    Empty,
}

impl<'a> Scalar<'a> {
    fn of(v: &'a AttrValue) -> Option<Scalar<'a>> {
        Some(match v {
            AttrValue::Str(s) => Scalar::Str(s),
            AttrValue::Int(i) => Scalar::Int(*i),
            AttrValue::Double(d) => Scalar::Double(*d),
            AttrValue::Bool(b) => Scalar::Bool(*b),
            AttrValue::Empty => Scalar::Empty,
            AttrValue::Bytes(_) | AttrValue::Array(_) | AttrValue::Map(_) => return None,
        })
    }

    /// Equal to the bit, as [`same_value`].
    fn is(self, v: &AttrValue) -> bool {
        match (self, v) {
            (Scalar::Str(a), AttrValue::Str(b)) => a == b,
            (Scalar::Int(a), AttrValue::Int(b)) => a == *b,
            (Scalar::Double(a), AttrValue::Double(b)) => a.to_bits() == b.to_bits(),
            (Scalar::Bool(a), AttrValue::Bool(b)) => a == *b,
            (Scalar::Empty, AttrValue::Empty) => true,
            _ => false,
        }
    }

    fn hash_into(self, h: &mut impl Hasher) {
        match self {
            Scalar::Str(s) => {
                h.write_u8(1);
                h.write(s.as_bytes());
            }
            Scalar::Int(i) => {
                h.write_u8(2);
                h.write_i64(i);
            }
            Scalar::Double(d) => {
                h.write_u8(3);
                h.write_u64(d.to_bits());
            }
            Scalar::Bool(b) => {
                h.write_u8(4);
                h.write_u8(b as u8);
            }
            Scalar::Empty => h.write_u8(8),
        }
    }

    fn to_value(self) -> AttrValue {
        match self {
            Scalar::Str(s) => AttrValue::Str(s.to_owned()),
            Scalar::Int(i) => AttrValue::Int(i),
            Scalar::Double(d) => AttrValue::Double(d),
            Scalar::Bool(b) => AttrValue::Bool(b),
            Scalar::Empty => AttrValue::Empty,
        }
    }
}

/// Equal to the bit: `-0.0` is not `0.0` here, and a NaN is itself.
fn same_pair(a: &KeyValue, b: &KeyValue) -> bool {
    a.key == b.key && same_value(&a.value, &b.value)
}

fn same_value(a: &AttrValue, b: &AttrValue) -> bool {
    match (a, b) {
        (AttrValue::Double(x), AttrValue::Double(y)) => x.to_bits() == y.to_bits(),
        (AttrValue::Array(x), AttrValue::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_value(x, y))
        }
        (AttrValue::Map(x), AttrValue::Map(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_pair(x, y)),
        _ => a == b,
    }
}

fn hash_value(h: &mut impl Hasher, v: &AttrValue) {
    match v {
        AttrValue::Bytes(s) => {
            h.write_u8(5);
            h.write(s.as_bytes());
        }
        AttrValue::Array(items) => {
            h.write_u8(6);
            h.write_usize(items.len());
            for item in items {
                hash_value(h, item);
            }
        }
        AttrValue::Map(kvs) => {
            h.write_u8(7);
            h.write_usize(kvs.len());
            for kv in kvs {
                h.write(kv.key.as_bytes());
                hash_value(h, &kv.value);
            }
        }
        scalar => {
            if let Some(scalar) = Scalar::of(scalar) {
                scalar.hash_into(h);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{span_kind, status_code};

    fn kv(key: &str, value: AttrValue) -> KeyValue {
        KeyValue { key: key.into(), value }
    }

    fn span(i: u8, attrs: Vec<KeyValue>) -> SpanRow {
        SpanRow {
            trace_id: TraceId([i; 16]),
            span_id: SpanId([i; 8]),
            parent_span_id: (i > 1).then_some(SpanId([1; 8])),
            service_name: format!("svc-{}", i % 2),
            name: "GET /".into(),
            kind: span_kind::SERVER,
            start_time_unix_nano: i as i64 * 1000,
            duration_nano: 7,
            status_code: status_code::ERROR,
            attributes: attrs,
            resource_attributes: vec![kv("service.name", AttrValue::Str(format!("svc-{}", i % 2)))],
            scope_name: "lib".into(),
            ..Default::default()
        }
    }

    #[test]
    fn every_span_reads_back_as_it_was_pushed() {
        let rows = vec![
            span(1, vec![kv("a", AttrValue::Int(1)), kv("b", AttrValue::Str("x".into()))]),
            span(2, vec![kv("a", AttrValue::Int(1)), kv("a", AttrValue::Int(1))]),
            span(3, vec![kv("d", AttrValue::Double(f64::NAN)), kv("d", AttrValue::Double(-0.0))]),
            span(4, vec![kv("m", AttrValue::Map(vec![kv("k", AttrValue::Array(vec![AttrValue::Bool(true)]))]))]),
            SpanRow {
                trace_state: "ts".into(),
                status_message: "boom".into(),
                events: vec![SpanEvent { time_unix_nano: 5, name: "e".into(), attributes: vec![] }],
                links: vec![SpanLink {
                    trace_id: "t".into(),
                    span_id: "s".into(),
                    trace_state: String::new(),
                    attributes: vec![],
                }],
                dropped_links_count: 3,
                ..span(5, vec![])
            },
            span(6, vec![kv("b", AttrValue::Str("x".into())), kv("b", AttrValue::Bytes("x".into()))]),
        ];
        let mut packed = PackedSpans::default();
        for r in rows.clone() {
            packed.push(r);
        }
        assert_eq!(packed.len(), rows.len());
        for (i, r) in rows.iter().enumerate() {
            let back = packed.get(i as u32).to_row();
            // NaN is not equal to itself: compare its text.
            assert_eq!(format!("{back:?}"), format!("{r:?}"));
        }
        // Shared: `a=1` once, `b="x"` once (bytes "x" apart), one service per name.
        let ids: Vec<u32> = packed.pair_ids.clone();
        assert_ne!(ids[4], ids[5], "-0.0 is kept apart from NaN");
        assert_eq!(ids[0], ids[2]);
        assert_eq!(ids[2], ids[3]);
        assert_eq!(ids[1], ids[ids.len() - 2]);
        assert_ne!(ids[ids.len() - 2], ids[ids.len() - 1]);
        assert_eq!(packed.strings.strings.len(), 5, "svc-0, svc-1, GET /, lib, and the empty version");
        assert!(packed.held_bytes() > 0);
    }

    #[test]
    fn a_pair_shares_an_id_only_with_an_equal_pair() {
        let s = |v: &str| AttrValue::Str(v.into());
        let distinct = vec![
            kv("ab", s("c")),
            kv("a", s("bc")),
            kv("a", AttrValue::Bytes("bc".into())),
            kv("n", AttrValue::Int(1)),
            kv("n", s("1")),
            kv("n", AttrValue::Double(0.0)),
            kv("n", AttrValue::Double(-0.0)),
            kv("n", AttrValue::Double(f64::NAN)),
            kv("n", AttrValue::Bool(true)),
            kv("n", AttrValue::Empty),
            kv("l", AttrValue::Array(vec![s("a"), s("b")])),
            kv("l", AttrValue::Array(vec![s("ab")])),
            kv("l", AttrValue::Array(vec![AttrValue::Array(vec![s("a")]), s("b")])),
            kv("l", AttrValue::Map(vec![kv("a", s("b"))])),
            kv("l", AttrValue::Map(vec![kv("a", s("b")), kv("c", AttrValue::Empty)])),
            kv("l", AttrValue::Map(vec![kv("c", AttrValue::Empty), kv("a", s("b"))])),
        ];
        let mut pairs = Pairs::default();
        let ids: Vec<u32> = distinct.iter().map(|p| pairs.intern(p.clone()).0).collect();
        assert_eq!(ids, (0..distinct.len() as u32).collect::<Vec<_>>(), "every pair above is new");
        for (id, p) in distinct.iter().enumerate() {
            let (again, grew) = pairs.intern(p.clone());
            assert_eq!((again, grew), (id as u32, 0), "{p:?} is found again, and costs nothing");
            assert_eq!(format!("{:?}", pairs.pairs[id]), format!("{p:?}"));
        }
    }
}
