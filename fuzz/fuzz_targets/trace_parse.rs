//! OTLP trace export requests read straight from their protobuf bytes (the store's fast
//! path for the common shape) against prost and the conversion, which define what a
//! request means: whatever the parse takes, prost must take, and both must make the
//! same spans of it. Seeds: the `otlp_protobuf` corpus without its selector byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    seismo_store::fuzzing::check_trace_parse(data);
});
