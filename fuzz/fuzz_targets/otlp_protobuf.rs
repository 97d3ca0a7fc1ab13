//! OTLP protobuf export requests (traces, logs, metrics) as the collector decodes them:
//! `Content-Encoding` (mostly identity, some gzip / deflate / zstd), the body limit, prost
//! decoding (the same as OTLP/gRPC's), then the store's validation and the WAL round trip
//! (`check_decoded`).
//!
//! Input: one selector byte (signal = byte % 3, encoding = byte / 3 % 8), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seismo_collector::fuzzing::decode_http_body;
use seismo_fuzz::{check_decoded, BODY_LIMIT};
use seismo_store::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let signal = Signal::ALL[usize::from(selector % 3)];
    let encoding: Option<&[u8]> = match selector / 3 % 8 {
        5 => Some(b"gzip"),
        6 => Some(b"deflate"),
        7 => Some(b"zstd"),
        _ => None,
    };
    if let Ok(batch) = decode_http_body(signal, b"application/x-protobuf", encoding, body, BODY_LIMIT) {
        assert_eq!(batch.signal(), signal);
        check_decoded(&batch);
    }
});
