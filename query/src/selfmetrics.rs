//! `GET /metrics`: seismo's own health in the Prometheus text format, so the
//! same Prometheus or Grafana that watches the services can watch seismo.
//! Labels are bounded (signal names only).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::QueryState;

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn metrics(State(state): State<QueryState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&state))
}

fn render(state: &QueryState) -> String {
    let c = state.store.counters();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "seismo_ingested_rows_total",
        "counter",
        "Rows acknowledged after their WAL write was fsynced.",
        &[
            ("{signal=\"traces\"}", load(&c.spans)),
            ("{signal=\"logs\"}", load(&c.logs)),
            ("{signal=\"metrics\"}", load(&c.metric_points)),
        ],
    );
    family(
        "seismo_rejected_rows_total",
        "counter",
        "Rows rejected inside accepted requests (partial success).",
        &[("", load(&c.rejected))],
    );
    family(
        "seismo_busy_rejections_total",
        "counter",
        "Requests refused with 429 / RESOURCE_EXHAUSTED because ingest outran the disk.",
        &[("", load(&c.busy))],
    );
    family("seismo_wal_bytes_total", "counter", "Bytes written to the write-ahead log.", &[("", load(&c.wal_bytes))]);
    family(
        "seismo_wal_syncs_total",
        "counter",
        "WAL fsyncs (each covers a group of requests).",
        &[("", load(&c.wal_syncs))],
    );
    family("seismo_flushes_total", "counter", "Memtable flushes to segments.", &[("", load(&c.flushes))]);
    family(
        "seismo_flush_errors_total",
        "counter",
        "Failed flushes (data stays in the WAL and is retried).",
        &[("", load(&c.flush_errors))],
    );
    family(
        "seismo_wal_corrupt_frames_total",
        "counter",
        "Damaged WAL frames skipped at replay (the intact frames around them were replayed).",
        &[("", load(&c.wal_corrupt_frames))],
    );
    family(
        "seismo_quarantined_segments_total",
        "counter",
        "Damaged segments moved to <data-dir>/quarantine/ (at start-up or when a read found damage).",
        &[("", load(&c.quarantined_segments))],
    );
    family(
        "seismo_rebuilt_indexes_total",
        "counter",
        "Segment text indexes found damaged or missing and rebuilt from their Parquet file.",
        &[("", load(&c.rebuilt_indexes))],
    );
    family(
        "seismo_catalog_rebuilds_total",
        "counter",
        "Catalogs rebuilt from the segment files because catalog.json was missing or unreadable.",
        &[("", load(&c.catalog_rebuilds))],
    );
    family(
        "seismo_retention_deleted_segments_total",
        "counter",
        "Oldest segments deleted to keep the data directory under --max-disk-bytes.",
        &[("", load(&c.retention_deleted_segments))],
    );
    family(
        "seismo_store_disk_full_refusals_total",
        "counter",
        "Requests refused because the disk (or quota) was full.",
        &[("", load(&c.disk_full_refusals))],
    );
    family(
        "seismo_store_disk_full",
        "gauge",
        "1 while writes are refused because the disk is full (they resume by themselves), else 0.",
        &[("", state.store.is_disk_full() as u64)],
    );
    let segments = state.store.segments();
    family("seismo_segments", "gauge", "Segments in the catalog.", &[("", segments.len() as u64)]);
    family(
        "seismo_segment_bytes",
        "gauge",
        "Bytes of segment files (Parquet and index).",
        &[("", segments.iter().map(|s| s.bytes).sum())],
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let store = seismo_store::Store::open(seismo_store::StoreConfig::new(dir.path())).unwrap();
        let text = render(&QueryState::new(store.clone()));
        assert!(text.contains("# TYPE seismo_ingested_rows_total counter"));
        assert!(text.contains("seismo_ingested_rows_total{signal=\"traces\"} 0"));
        assert!(text.contains("seismo_segments 0"));
        assert!(text.contains("seismo_quarantined_segments_total 0"));
        assert!(text.contains("seismo_wal_corrupt_frames_total 0"));
        assert!(text.contains("# TYPE seismo_store_disk_full gauge\nseismo_store_disk_full 0\n"));
        assert!(text.contains("seismo_store_disk_full_refusals_total 0"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
        store.close().unwrap();
    }
}
