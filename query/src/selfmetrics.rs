//! `GET /metrics`: seismo's own health in the Prometheus text format
//! (0.0.4), so the same Prometheus or Grafana that watches the services can
//! watch seismo. Written with `prometheus-client`: the values live in the
//! store (atomic counters it bumps as it works), so a [`Collector`] reads
//! them at each scrape instead of mirroring them into metric objects.
//! Labels are bounded (signal names only).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, EncodeCounterValue, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use seismo_store::Store;

use crate::state::QueryState;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<QueryState>) -> Response {
    match render(&state) {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(fmt::Error) => (StatusCode::INTERNAL_SERVER_ERROR, "failed writing the metrics").into_response(),
    }
}

fn render(state: &QueryState) -> Result<String, fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StoreMetrics(state.store.clone())));
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// The store's counters and sizes, read at each scrape.
struct StoreMetrics(Store);

impl fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreMetrics")
    }
}

impl Collector for StoreMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let store = &self.0;
        let c = store.counters();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut ingested = encoder.encode_descriptor(
            "seismo_ingested_rows",
            "Rows acknowledged after their WAL write was fsynced.",
            None,
            MetricType::Counter,
        )?;
        for (signal, rows) in [("traces", &c.spans), ("logs", &c.logs), ("metrics", &c.metric_points)] {
            ConstCounter::new(load(rows)).encode(ingested.encode_family(&[("signal", signal)])?)?;
        }
        counter(
            &mut encoder,
            "seismo_rejected_rows",
            "Rows rejected inside accepted requests (partial success).",
            load(&c.rejected),
        )?;
        counter(
            &mut encoder,
            "seismo_busy_rejections",
            "Requests refused with 429 / RESOURCE_EXHAUSTED because ingest outran the disk.",
            load(&c.busy),
        )?;
        counter(
            &mut encoder,
            "seismo_store_ingest_waits",
            "Requests held back at --max-memtable-bytes until a flush made room (or --ingest-wait-secs passed).",
            load(&c.ingest_waits),
        )?;
        counter(
            &mut encoder,
            "seismo_store_ingest_wait_seconds",
            "Time requests spent held back at --max-memtable-bytes; a steady rate means ingest is paced by the flush.",
            load(&c.ingest_wait_ns) as f64 / 1e9,
        )?;
        counter(&mut encoder, "seismo_wal_bytes", "Bytes written to the write-ahead log.", load(&c.wal_bytes))?;
        counter(&mut encoder, "seismo_wal_syncs", "WAL fsyncs (each covers a group of requests).", load(&c.wal_syncs))?;
        counter(&mut encoder, "seismo_flushes", "Memtable flushes to segments.", load(&c.flushes))?;
        counter(
            &mut encoder,
            "seismo_store_flush_seconds",
            "Time spent in flushes that succeeded; its rate is the flusher's busy share (above 0.5, merges wait).",
            load(&c.flush_busy_ns) as f64 / 1e9,
        )?;
        counter(
            &mut encoder,
            "seismo_flush_errors",
            "Failed flushes (data stays in the WAL and is retried).",
            load(&c.flush_errors),
        )?;
        counter(
            &mut encoder,
            "seismo_wal_corrupt_frames",
            "Damaged WAL frames skipped at replay (the intact frames around them were replayed).",
            load(&c.wal_corrupt_frames),
        )?;
        counter(
            &mut encoder,
            "seismo_quarantined_segments",
            "Damaged segments moved to <data-dir>/quarantine/ (at start-up or when a read found damage).",
            load(&c.quarantined_segments),
        )?;
        counter(
            &mut encoder,
            "seismo_rebuilt_indexes",
            "Segment indexes found damaged or missing and rebuilt from their Parquet file.",
            load(&c.rebuilt_indexes),
        )?;
        counter(
            &mut encoder,
            "seismo_store_compactions",
            "Merges of small segments (spans, log records or metric points) into larger ones (background compaction).",
            load(&c.compactions),
        )?;
        let mut read = encoder.encode_descriptor(
            "seismo_ingest_trace_requests",
            "Trace export requests stored, by how they were read: read=\"bytes\" straight from their protobuf \
             bytes, read=\"decoded\" into messages first (OTLP/JSON, and protobuf outside the common shape).",
            None,
            MetricType::Counter,
        )?;
        for (how, requests) in [("bytes", &c.trace_requests_parsed), ("decoded", &c.trace_requests_decoded)] {
            ConstCounter::new(load(requests)).encode(read.encode_family(&[("read", how)])?)?;
        }
        counter(
            &mut encoder,
            "seismo_catalog_rebuilds",
            "Catalogs rebuilt from the segment files because catalog.json was missing or unreadable.",
            load(&c.catalog_rebuilds),
        )?;
        let mut retention = encoder.encode_descriptor(
            "seismo_retention_deleted_segments",
            "Segments retention deleted: reason=\"age\" past --retention, \"size\" to keep the data \
             directory under --max-disk-bytes.",
            None,
            MetricType::Counter,
        )?;
        for (reason, deleted) in
            [("age", &c.retention_deleted_segments_age), ("size", &c.retention_deleted_segments_size)]
        {
            ConstCounter::new(load(deleted)).encode(retention.encode_family(&[("reason", reason)])?)?;
        }
        let config = store.config();
        gauge(
            &mut encoder,
            "seismo_store_retention_seconds",
            "The configured --retention: segments whose newest data is older are deleted (0: no limit).",
            config.retention.map_or(0, |r| r.as_secs()),
        )?;
        gauge(
            &mut encoder,
            "seismo_store_max_disk_bytes",
            "The configured --max-disk-bytes: past it the oldest segments are deleted (0: no limit).",
            config.max_disk_bytes.unwrap_or(0),
        )?;
        gauge(
            &mut encoder,
            "seismo_store_unflushed_bytes",
            "Memory held by acknowledged data not yet flushed to segments (memtables, estimated).",
            store.unflushed_bytes() as u64,
        )?;
        gauge(
            &mut encoder,
            "seismo_store_max_memtable_bytes",
            "The configured --max-memtable-bytes: at it requests get 429 / RESOURCE_EXHAUSTED.",
            config.max_memtable_bytes as u64,
        )?;
        counter(
            &mut encoder,
            "seismo_store_disk_full_refusals",
            "Requests refused because the disk (or quota) was full.",
            load(&c.disk_full_refusals),
        )?;
        gauge(
            &mut encoder,
            "seismo_store_disk_full",
            "1 while writes are refused because the disk is full (they resume by themselves), else 0.",
            u64::from(store.is_disk_full()),
        )?;
        let segments = store.segments();
        gauge(&mut encoder, "seismo_segments", "Segments in the catalog.", segments.len() as u64)?;
        gauge(
            &mut encoder,
            "seismo_segment_bytes",
            "Bytes of segment files (Parquet and index).",
            segments.iter().map(|s| s.bytes).sum(),
        )?;
        Ok(())
    }
}

/// One unlabelled counter family (`_total` is appended to `name`).
fn counter<N: EncodeCounterValue>(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: N) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// One unlabelled gauge family.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = seismo_store::Store::open(seismo_store::StoreConfig::new(dir.path())).unwrap();
        let text = render(&QueryState::new(store.clone())).unwrap();
        assert!(text.contains(
            "# HELP seismo_ingested_rows_total Rows acknowledged after their WAL write was fsynced.\n\
             # TYPE seismo_ingested_rows_total counter\n\
             seismo_ingested_rows_total{signal=\"traces\"} 0\n\
             seismo_ingested_rows_total{signal=\"logs\"} 0\n\
             seismo_ingested_rows_total{signal=\"metrics\"} 0\n"
        ));
        assert_eq!(text.matches("# TYPE ").count(), 25, "every family once: {text}");
        assert!(
            text.contains("# TYPE seismo_store_flush_seconds_total counter\nseismo_store_flush_seconds_total 0.0\n")
        );
        assert!(text.contains("seismo_retention_deleted_segments_total{reason=\"age\"} 0\n"));
        assert!(text.contains("seismo_retention_deleted_segments_total{reason=\"size\"} 0\n"));
        assert!(text.contains("seismo_store_retention_seconds 0\n"));
        assert!(text.contains("seismo_store_max_memtable_bytes 268435456\n"));
        assert!(text.contains("# TYPE seismo_store_ingest_waits_total counter\nseismo_store_ingest_waits_total 0\n"));
        assert!(text.contains("seismo_store_ingest_wait_seconds_total 0.0\n"));
        assert!(text.contains("# TYPE seismo_store_compactions_total counter\nseismo_store_compactions_total 0\n"));
        assert!(text.contains("seismo_ingested_rows_total{signal=\"traces\"} 0"));
        assert!(text.contains("seismo_segments 0"));
        assert!(text.contains("seismo_quarantined_segments_total 0"));
        assert!(text.contains("seismo_wal_corrupt_frames_total 0"));
        assert!(text.contains("# TYPE seismo_store_disk_full gauge\nseismo_store_disk_full 0\n"));
        assert!(text.contains("seismo_store_disk_full_refusals_total 0"));
        assert!(text.contains(
            "seismo_ingest_trace_requests_total{read=\"bytes\"} 0\nseismo_ingest_trace_requests_total{read=\"decoded\"} 0\n"
        ));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            let seconds = ["seismo_store_flush_seconds_total ", "seismo_store_ingest_wait_seconds_total "];
            assert!(value.parse::<u64>().is_ok() || seconds.iter().any(|s| line.starts_with(s)), "{line}");
        }
        store.close().unwrap();
    }
}
