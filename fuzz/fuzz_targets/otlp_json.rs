//! OTLP/JSON export requests as the collector decodes them (its own schema-aware walk from
//! `serde_json::Value` into the prost types), then the store's validation and the WAL round
//! trip (`check_decoded`). Also: what the JSON decoder accepts, the protobuf decoder must
//! accept once encoded, unchanged (the two receivers agree).
//!
//! Input: one selector byte (signal = byte % 3), then the JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seismo_collector::fuzzing::decode_http_body;
use seismo_fuzz::{check_decoded, encode, BODY_LIMIT};
use seismo_store::Signal;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let signal = Signal::ALL[usize::from(selector % 3)];
    let Ok(batch) = decode_http_body(signal, b"application/json; charset=utf-8", None, body, BODY_LIMIT) else {
        return;
    };
    check_decoded(&batch);
    let bytes = encode(&batch);
    let again = decode_http_body(signal, b"application/x-protobuf", None, &bytes, BODY_LIMIT)
        .expect("a request decoded from JSON decodes from its protobuf encoding");
    assert_eq!(encode(&again), bytes, "the protobuf round trip keeps the request");
});
