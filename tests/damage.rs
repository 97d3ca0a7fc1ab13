//! Damage never destroys data and never stops the rest from being served
//! (issue 14, items 5-7): the real binary writes a few flushes' worth of
//! traces, stops, one file of its data directory is damaged the way a disk or
//! an operator damages it, and the restarted server must start, serve every
//! intact trace, set aside (quarantine) what is damaged, and count it in
//! `/metrics`.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, Server};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

const SERVICE: &str = "damage";
/// Requests written; with `--flush-rows` = one request's spans, each becomes
/// its own segment (ids 1..=REQUESTS) or, unflushed, its own WAL frame.
const REQUESTS: u32 = 4;
const TRACES_PER_REQUEST: u32 = 5;
const SPANS_PER_TRACE: u32 = 4;
const SPANS_PER_REQUEST: u32 = TRACES_PER_REQUEST * SPANS_PER_TRACE;

fn trace_id(request: u32, t: u32) -> [u8; 16] {
    let mut id = [0xda; 16];
    id[8..12].copy_from_slice(&request.to_be_bytes());
    id[12..].copy_from_slice(&t.to_be_bytes());
    id
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// Request `r`: TRACES_PER_REQUEST traces of SPANS_PER_TRACE spans, each span tagged `req=<r>`.
fn request(r: u32) -> Vec<u8> {
    let now = now_ns();
    let mut spans = Vec::new();
    for t in 0..TRACES_PER_REQUEST {
        let tid = trace_id(r, t);
        for i in 0..SPANS_PER_TRACE {
            let sid = |i: u32| [r as u8, t as u8, i as u8, 1, 2, 3, 4, 5].to_vec();
            spans.push(Span {
                trace_id: tid.to_vec(),
                span_id: sid(i),
                parent_span_id: if i == 0 { Vec::new() } else { sid(i - 1) },
                name: format!("op-{i}"),
                kind: 2,
                start_time_unix_nano: now + i as u64 * 1000,
                end_time_unix_nano: now + i as u64 * 1000 + 500_000,
                attributes: vec![kv("req", any_value::Value::IntValue(r as i64))],
                ..Default::default()
            });
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", any_value::Value::StringValue(SERVICE.into()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

fn send(server: &Server, r: u32) {
    let resp = reqwest::blocking::Client::new()
        .post(server.otlp_url("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(request(r))
        .send()
        .unwrap();
    assert!(resp.status().is_success(), "request {r}: {}", resp.status());
}

fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("segments")
}

fn parquet(dir: &Path, id: u32) -> PathBuf {
    segments_dir(dir).join(format!("{id:016}-traces.parquet"))
}

fn index(dir: &Path, id: u32) -> PathBuf {
    segments_dir(dir).join(format!("{id:016}-traces.idx"))
}

fn parquet_count(dir: &Path) -> usize {
    fs::read_dir(segments_dir(dir))
        .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "parquet")).count())
        .unwrap_or(0)
}

/// Writes REQUESTS requests, each flushed into its own segment (request r is
/// segment r + 1), then stops the server gracefully.
fn write_segments(dir: &Path) {
    let flush_rows = SPANS_PER_REQUEST.to_string();
    let server = Server::start(dir, &["--flush-rows", &flush_rows]);
    for r in 0..REQUESTS {
        send(&server, r);
        eventually(Duration::from_secs(30), || (parquet_count(dir) == r as usize + 1).then_some(()));
    }
    server.stop();
}

/// Writes REQUESTS requests that stay in the WAL (one frame each), then kills the server.
fn write_wal_only(dir: &Path) {
    let server = Server::start(dir, &[]);
    for r in 0..REQUESTS {
        send(&server, r);
    }
    server.kill9();
    assert_eq!(parquet_count(dir), 0);
}

/// The requests of `0..sent` whose every trace the restarted server serves
/// whole, by id and by a tag search (which goes through the text index); a
/// request served only in part fails the test.
fn requests_served(server: &Server, sent: u32) -> BTreeSet<u32> {
    let mut served = BTreeSet::new();
    for r in 0..sent {
        let by_id: Vec<bool> = (0..TRACES_PER_REQUEST)
            .map(|t| {
                let (status, body) = server.get_json(&format!("/api/traces/{}", hex(&trace_id(r, t))));
                match status {
                    200 => {
                        assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), SPANS_PER_TRACE as usize);
                        true
                    }
                    404 => false,
                    other => panic!("trace {r}/{t}: status {other}: {body}"),
                }
            })
            .collect();
        // tags={"req":"<r>"}
        let (status, body) = server
            .get_json(&format!("/api/traces?service={SERVICE}&tags=%7B%22req%22%3A%22{r}%22%7D&limit=100&lookback=1h"));
        assert_eq!(status, 200, "tag search for request {r}: {body}");
        let found = body["data"].as_array().unwrap().len();
        if by_id.iter().all(|x| *x) {
            assert_eq!(found, TRACES_PER_REQUEST as usize, "request {r} by tag");
            served.insert(r);
        } else {
            assert!(by_id.iter().all(|x| !*x), "request {r} served in part: {by_id:?}");
            assert_eq!(found, 0, "request {r} by tag");
        }
    }
    // And the service search sees exactly the served traces.
    let (status, body) = server.get_json(&format!("/api/traces?service={SERVICE}&limit=100&lookback=1h"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), served.len() * TRACES_PER_REQUEST as usize);
    served
}

fn all_requests() -> BTreeSet<u32> {
    (0..REQUESTS).collect()
}

fn without(r: u32) -> BTreeSet<u32> {
    (0..REQUESTS).filter(|x| *x != r).collect()
}

fn quarantined(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir.join("quarantine"))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn flip(path: &Path, at: usize, n: usize) {
    let mut bytes = fs::read(path).unwrap();
    for b in &mut bytes[at..at + n] {
        *b ^= 0xff;
    }
    fs::write(path, bytes).unwrap();
}

fn truncate_to_half(path: &Path) {
    let len = fs::metadata(path).unwrap().len();
    fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
}

/// Damage segment 2 (request 1) with `damage`, restart, and check that
/// every request but `lost` is served and the damaged files are in quarantine.
fn segment_case(damage: impl FnOnce(&Path), lost: Option<u32>, metric_name: &str, moved: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    write_segments(dir.path());
    damage(dir.path());
    let server = Server::start(dir.path(), &[]);
    let expected = lost.map(without).unwrap_or_else(all_requests);
    assert_eq!(requests_served(&server, REQUESTS), expected);
    assert_eq!(server.metric(metric_name), 1, "{metric_name}");
    assert_eq!(quarantined(dir.path()), names(moved));
    // The server still takes writes, and they are served after another restart.
    send(&server, REQUESTS);
    server.stop();
    let server = Server::start(dir.path(), &[]);
    let mut expected = expected;
    expected.insert(REQUESTS);
    assert_eq!(requests_served(&server, REQUESTS + 1), expected);
    assert_eq!(quarantined(dir.path()), names(moved), "nothing more set aside on a clean restart");
}

const SEG2_PARQUET: &str = "0000000000000002-traces.parquet";
const SEG2_INDEX: &str = "0000000000000002-traces.idx";

/// Issue 14 item 5: a missing catalog.json made start-up delete every segment.
#[test]
fn missing_catalog_is_rebuilt_from_the_segments() {
    segment_case(|dir| fs::remove_file(dir.join("catalog.json")).unwrap(), None, "seismo_catalog_rebuilds_total", &[]);
}

#[test]
fn corrupt_catalog_is_quarantined_and_rebuilt() {
    segment_case(
        |dir| {
            let path = dir.join("catalog.json");
            let len = fs::metadata(&path).unwrap().len() as usize;
            flip(&path, len / 2, 4);
        },
        None,
        "seismo_catalog_rebuilds_total",
        &["catalog.json"],
    );
}

#[test]
fn truncated_parquet_is_quarantined() {
    segment_case(
        |dir| truncate_to_half(&parquet(dir, 2)),
        Some(1),
        "seismo_quarantined_segments_total",
        &[SEG2_PARQUET, SEG2_INDEX],
    );
}

#[test]
fn missing_parquet_is_quarantined() {
    segment_case(
        |dir| fs::remove_file(parquet(dir, 2)).unwrap(),
        Some(1),
        "seismo_quarantined_segments_total",
        &[SEG2_INDEX],
    );
}

/// Issue 14 item 7: a flipped Parquet data page went unnoticed and made
/// traces and searches of the service answer 500.
#[test]
fn flipped_parquet_data_page_is_found_and_quarantined() {
    segment_case(
        // Just past the leading "PAR1": the first page of the first column chunk.
        |dir| flip(&parquet(dir, 2), 8, 4),
        Some(1),
        "seismo_quarantined_segments_total",
        &[SEG2_PARQUET, SEG2_INDEX],
    );
}

/// Issue 14 item 7 (then a tantivy file, which panicked the server at
/// start-up): a damaged span index is set aside and rebuilt from Parquet.
#[test]
fn flipped_span_index_is_rebuilt_from_parquet() {
    segment_case(
        |dir| {
            let file = index(dir, 2);
            let len = fs::metadata(&file).unwrap().len() as usize;
            flip(&file, len / 2, 4);
        },
        None,
        "seismo_rebuilt_indexes_total",
        &[SEG2_INDEX],
    );
}

#[test]
fn truncated_span_index_is_rebuilt_from_parquet() {
    segment_case(|dir| truncate_to_half(&index(dir, 2)), None, "seismo_rebuilt_indexes_total", &[SEG2_INDEX]);
}

#[test]
fn missing_span_index_is_rebuilt_from_parquet() {
    segment_case(|dir| fs::remove_file(index(dir, 2)).unwrap(), None, "seismo_rebuilt_indexes_total", &[]);
}

/// Issue 14 item 6: one corrupt WAL frame (4 bytes flipped in frame 1 of 4)
/// discarded every later, intact, acknowledged frame.
#[test]
fn flipped_wal_frame_in_the_middle_costs_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    write_wal_only(dir.path());
    let wal: Vec<PathBuf> = fs::read_dir(dir.path().join("wal")).unwrap().flatten().map(|e| e.path()).collect();
    let file = wal.into_iter().max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
    let bytes = fs::read(&file).unwrap();
    // Walk the frames ([magic 4][len u32 LE][crc 4][len bytes]) to frame 1's payload.
    let frame_len = |at: usize| 12 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    let frame1 = frame_len(0);
    let mut end = 0;
    for _ in 0..REQUESTS {
        end += frame_len(end);
    }
    assert_eq!(end, bytes.len(), "one frame per request");
    flip(&file, frame1 + 40, 4);

    let server = Server::start(dir.path(), &[]);
    assert_eq!(requests_served(&server, REQUESTS), without(1));
    assert_eq!(server.metric("seismo_wal_corrupt_frames_total"), 1);
    assert_eq!(fs::metadata(&file).unwrap().len(), bytes.len() as u64, "the intact frames are not truncated");
    // The replayed frames are flushed like any others and survive a restart.
    server.stop();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(requests_served(&server, REQUESTS), without(1));
    assert!(quarantined(dir.path()).is_empty());
}
