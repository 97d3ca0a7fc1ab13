//! Compaction: small segments (a flush writes one per signal) are merged
//! into larger ones in the background, so a search visits a few big
//! segments instead of one per flush, and a server that runs for weeks
//! keeps hundreds of files open, not tens of thousands.
//!
//! Policy (one tier, size-bounded, per signal): segments below half of
//! `StoreConfig::compact_rows` are merged oldest first, at least
//! [`MIN_INPUTS`] of one signal at a time, up to `compact_rows` rows (or
//! fewer, at least two, whose merge is no longer small: with segments of
//! between a quarter and a half of `compact_rows`, four never fit); span
//! segments first, then log records, then metric points. The newest
//! `read::RECENT_SEGMENTS` span segments are left out (flushes look up
//! their parents and orphans there). A signal whose merge fails is left out
//! of the plans for [`REST_AFTER_FAILURE`]; the others' merges go on.
//!
//! Merges wait while ingest is heavy: while the flusher has been busy for
//! more than half of the last [`BUSY_WINDOW`], a signal's merges start only
//! once [`DEFERRED_MAX`] of its small segments wait (measured at 10M spans, one client:
//! 175k spans/s sustained with no merges, ~150k with merges running beside
//! the load even at the lowest priority; a search over 38 unmerged segments
//! was within 5% of the merged store). They run once the burst is over.
//!
//! A merge never blocks ingest or queries, and gives way to them: the
//! compactor thread runs at the lowest CPU priority (nice 19), so it takes
//! only the CPU that ingest, flushes and queries leave (measured on the
//! 2-core machine at 10M spans: merging at normal priority cut sustained
//! ingest from 134k to 90k spans/s, while searches over the unmerged
//! segments were within 5% of the merged ones), and it waits between row
//! groups while unflushed data is past a quarter of the cap at which ingest
//! waits (a merge beside a load at full speed then holds little memory: at
//! 10M spans, one client, peak RSS 408-449 MB against 471-486 MB with half).
//! It reserves a segment id under
//! the catalog lock, writes the merged segment without any lock (queries go
//! on reading the inputs), then swaps it in for its inputs in one catalog
//! replacement, and deletes the inputs' files last. A crash at any point
//! leaves a consistent store: before the swap, the merged segment is not in
//! the catalog and names its inputs (`compacted_from`), so start-up deletes
//! it; after the swap, the catalog names the merged segment, whose
//! `compacted_from` lets start-up delete input files still on disk
//! (`recovery`). The inputs' files are deleted when the last read holding
//! them ends (`Segment::retire`), so a search never loses a segment half-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::flush::remove_unlisted_segment;
use super::read::RECENT_SEGMENTS;
use super::{Inner, Store};
use crate::error::{Result, StoreError};
use crate::model::Signal;
use crate::segment::{self, Segment, SegmentMeta};
use crate::wal;

/// Fewer small segments than this are not worth a merge.
pub(crate) const MIN_INPUTS: usize = 4;
/// How often the compactor looks for work.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// How long a merge waits before looking again whether flushing is done.
const PAUSE: Duration = Duration::from_millis(50);

impl Store {
    /// Merges small segments until none are left to merge; returns how
    /// many merges ran. The background compactor does the same on its own.
    ///
    /// # Errors
    /// I/O errors; `Damaged` when an input segment is found damaged (it is
    /// quarantined, and the next merge goes on without it).
    pub fn compact(&self) -> Result<usize> {
        let mut merges = 0;
        while compact_once(&self.inner, &AtomicBool::new(false), &mut Resting::default(), &[])? {
            merges += 1;
        }
        Ok(merges)
    }
}

/// The share of time the flusher must have been busy, over [`BUSY_WINDOW`],
/// for ingest to count as heavy (merges then wait).
const BUSY_SHARE: f64 = 0.5;
/// How far back the flusher's busy time is looked at.
const BUSY_WINDOW: Duration = Duration::from_secs(10);
/// Small segments past which merges run however heavy ingest is
/// (each open segment holds memory, and each is one more for a search).
const DEFERRED_MAX: usize = 32;

/// The flusher's busy share over the last [`BUSY_WINDOW`], from samples of
/// its cumulative busy time.
#[derive(Default)]
struct FlusherLoad {
    /// (when, busy nanoseconds so far), oldest first.
    samples: std::collections::VecDeque<(Instant, u64)>,
}

impl FlusherLoad {
    /// Records a sample and returns the busy share since the oldest sample
    /// kept (the newest one at least [`BUSY_WINDOW`] old, or the first).
    fn share(&mut self, now: Instant, busy_ns: u64) -> f64 {
        self.samples.push_back((now, busy_ns));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= BUSY_WINDOW {
            self.samples.pop_front();
        }
        let (then, busy_then) = self.samples[0];
        let wall = now.duration_since(then).as_nanos() as f64;
        if wall == 0.0 {
            return 0.0;
        }
        busy_ns.saturating_sub(busy_then) as f64 / wall
    }
}

/// Whether merges wait: ingest is heavy and few enough small segments wait.
fn merges_wait(busy_share: f64, small_segments: usize) -> bool {
    busy_share > BUSY_SHARE && small_segments < DEFERRED_MAX
}

/// The signals whose merges wait (see [`merges_wait`]): ingest is heavy and
/// fewer than [`DEFERRED_MAX`] of their small segments wait. So a busy
/// server's many small metric segments get merged without starting a big
/// span merge beside the load.
/// `segments` is the catalog.
fn held_back(segments: &[SegmentMeta], compact_rows: u64, busy_share: f64) -> Vec<Signal> {
    let small = |signal| segments.iter().filter(|m| m.signal == signal && is_small(m, compact_rows)).count();
    Signal::ALL.into_iter().filter(|&signal| merges_wait(busy_share, small(signal))).collect()
}

/// A segment [`plan`] may take as a merge input.
fn is_small(m: &SegmentMeta, compact_rows: u64) -> bool {
    is_small_rows(m.rows, compact_rows)
}

fn is_small_rows(rows: u64, compact_rows: u64) -> bool {
    rows < compact_rows / 2
}

/// The compactor thread: looks for work every [`CHECK_INTERVAL`] until `stop`
/// is dropped; `closing` cancels a merge under way.
pub(super) fn compactor_loop(inner: Arc<Inner>, stop: Receiver<()>) {
    if let Err(e) = lowest_cpu_priority() {
        tracing::warn!(error = %e, "cannot lower the compactor's CPU priority; merges compete with ingest");
    }
    let mut load = FlusherLoad::default();
    let mut waiting = false;
    let mut resting = Resting::default();
    loop {
        match stop.recv_timeout(CHECK_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        loop {
            let share = load.share(Instant::now(), inner.counters.flush_busy_ns.load(Ordering::Relaxed));
            let held = held_back(&inner.catalog.lock().unwrap().segments, inner.config.compact_rows, share);
            let wait = inner.config.compact_rows > 0 && held.len() == Signal::ALL.len();
            if wait != waiting {
                waiting = wait;
                tracing::debug!(
                    flusher_busy = share,
                    "merges {}",
                    if wait { "wait: ingest is heavy" } else { "resume" }
                );
            }
            if wait {
                break;
            }
            match compact_once(&inner, &inner.closed, &mut resting, &held) {
                Ok(true) => continue,
                Ok(false) => break,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::error!(error = %e, "compaction failed; the segments stay as they are and it retries later");
                    // Merges of the other signals go on meanwhile.
                    continue;
                }
            }
        }
    }
}

/// Gives the calling thread the lowest CPU priority (nice 19; on Linux the
/// nice value is per thread).
#[allow(unsafe_code)] // setpriority: no safe wrapper in the dependency tree
fn lowest_cpu_priority() -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions; setpriority takes plain integers
    // and only reads them.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The signal and segments (ids) the next merge takes, oldest first; `None`
/// when there is nothing worth merging. `segments` is the catalog, oldest
/// first.
pub(crate) fn plan(segments: &[SegmentMeta], compact_rows: u64, skip: &[Signal]) -> Option<(Signal, Vec<u64>)> {
    if compact_rows == 0 {
        return None;
    }
    Signal::ALL.into_iter().filter(|s| !skip.contains(s)).find_map(|signal| {
        let of_signal: Vec<&SegmentMeta> = segments.iter().filter(|m| m.signal == signal).collect();
        let recent = if signal == Signal::Traces { RECENT_SEGMENTS } else { 0 };
        let older = &of_signal[..of_signal.len().saturating_sub(recent)];
        let mut chosen = Vec::new();
        let mut rows = 0u64;
        for m in older.iter().filter(|m| is_small(m, compact_rows)) {
            if rows + m.rows > compact_rows {
                break;
            }
            rows += m.rows;
            chosen.push(m.id);
        }
        let enough = chosen.len() >= MIN_INPUTS || (chosen.len() >= 2 && !is_small_rows(rows, compact_rows));
        enough.then_some((signal, chosen))
    })
}

/// How long a signal whose merge failed is left out of the plans, so that
/// one stuck merge (damage the checksums did not catch, an I/O error) does
/// not hold back the other signals' merges or retry every few seconds.
const REST_AFTER_FAILURE: Duration = Duration::from_secs(300);

/// Signals whose last merge failed, each until when it is left out.
#[derive(Default)]
struct Resting(Vec<(Signal, Instant)>);

impl Resting {
    /// The signals still left out at `now`.
    fn signals(&mut self, now: Instant) -> Vec<Signal> {
        self.0.retain(|&(_, until)| until > now);
        self.0.iter().map(|&(s, _)| s).collect()
    }

    fn failed(&mut self, signal: Signal, now: Instant) {
        self.0.retain(|&(s, _)| s != signal);
        self.0.push((signal, now + REST_AFTER_FAILURE));
    }
}

/// Runs one merge if there is one to run, leaving out the signals `held`
/// back; `Ok(false)` when there is none.
fn compact_once(inner: &Inner, cancel: &AtomicBool, resting: &mut Resting, held: &[Signal]) -> Result<bool> {
    merge_planned(inner, inner.config.compact_rows, cancel, resting, held)
}

#[cfg(test)]
fn compact_once_with(inner: &Inner, compact_rows: u64) -> Result<bool> {
    merge_planned(inner, compact_rows, &AtomicBool::new(false), &mut Resting::default(), &[])
}

/// Runs the next merge [`plan`] finds with `compact_rows`; `Ok(false)` when none.
fn merge_planned(
    inner: &Inner,
    compact_rows: u64,
    cancel: &AtomicBool,
    resting: &mut Resting,
    held: &[Signal],
) -> Result<bool> {
    let mut skip = resting.signals(Instant::now());
    skip.extend_from_slice(held);
    let (signal, inputs, id) = {
        let mut catalog = inner.catalog.lock().unwrap();
        let Some((signal, ids)) = plan(&catalog.segments, compact_rows, &skip) else {
            return Ok(false);
        };
        let sources = inner.sources.read().unwrap();
        let inputs: Vec<Arc<Segment>> = ids
            .iter()
            .filter_map(|id| sources.segments().iter().find(|s| s.meta.signal == signal && s.meta.id == *id))
            .cloned()
            .collect();
        if inputs.len() != ids.len() {
            return Ok(false);
        }
        // Reserved in memory; the next catalog stored (this merge's or a
        // flush's) records it.
        let id = catalog.next_segment_id;
        catalog.next_segment_id += 1;
        (signal, inputs, id)
    };
    let started = Instant::now();
    // Flushes come first: while unflushed data is past a quarter of what
    // ingest may hold before it waits, the merge waits for the flusher.
    let pace = || -> Result<()> {
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(StoreError::Closed);
            }
            if !flush_is_behind(inner) {
                return Ok(());
            }
            std::thread::sleep(PAUSE);
        }
    };
    let merged = segment::merge(&inner.seg_dir, id, signal, &inputs, &pace).and_then(|meta| {
        wal::sync_dir(&inner.seg_dir)?;
        let opened = Segment::open(&inner.seg_dir, meta.clone(), inner.quarantine.clone())?;
        Ok((meta, Arc::new(opened)))
    });
    let (meta, opened) = match merged {
        Ok(m) => m,
        Err(e) => {
            remove_unlisted_segment(&inner.seg_dir, id);
            if let StoreError::Damaged(_) = e {
                for seg in &inputs {
                    if let Some(why) = seg.damage() {
                        inner.quarantine_damaged(seg, &why);
                    }
                }
            }
            if !matches!(e, StoreError::Closed) {
                resting.failed(signal, Instant::now());
            }
            return Err(e);
        }
    };

    let mut catalog = inner.catalog.lock().unwrap();
    let is_input = |m: &SegmentMeta| m.signal == signal && meta.compacted_from.contains(&m.id);
    if catalog.segments.iter().filter(|m| is_input(m)).count() != inputs.len() {
        // Retention or quarantine took an input meanwhile: this merge would bring it back.
        drop(catalog);
        drop(opened);
        remove_unlisted_segment(&inner.seg_dir, id);
        return Ok(true);
    }
    let mut next = catalog.clone();
    let at = next.segments.iter().position(&is_input).expect("the inputs are listed");
    next.segments.retain(|m| !is_input(m));
    next.segments.insert(at, meta.clone());
    if let Err(e) = next.store(&inner.config.data_dir) {
        drop(catalog);
        drop(opened);
        remove_unlisted_segment(&inner.seg_dir, id);
        return Err(e);
    }
    *catalog = next;
    inner.sources.write().unwrap().merged(&inputs, opened);
    drop(catalog);
    // Reads still under way keep their inputs; the files go with the last of them.
    for seg in &inputs {
        seg.retire();
    }
    inner.counters.compactions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        segment = id,
        signal = signal.as_str(),
        inputs = inputs.len(),
        rows = meta.rows,
        bytes = meta.bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "merged segments"
    );
    Ok(true)
}

/// True when unflushed data has passed a quarter of `max_memtable_bytes`:
/// the flusher needs the cores (and the memory) more than a merge does.
fn flush_is_behind(inner: &Inner) -> bool {
    inner.sources.read().unwrap().unflushed_bytes() > inner.config.max_memtable_bytes / 4
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::fs;

    use super::super::testing::span_of;
    use super::super::Batch;
    use super::*;
    use crate::db::StoreConfig;
    use crate::ids::TraceId;
    use crate::query::{StatsQuery, TraceQuery};

    const T0: u64 = 1_700_000_000_000_000_000;

    #[test]
    fn merges_wait_while_the_flusher_was_busy_over_half_of_the_window() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let secs = |s: f64| (s * 1e9) as u64;
        let mut load = FlusherLoad::default();
        assert_eq!(load.share(at(0), 0), 0.0, "nothing to compare with yet");
        // Flushing 1.5 s of every 2 s: heavy.
        let mut busy = 0.0;
        for s in (2..=20).step_by(2) {
            busy += 1.5;
            let share = load.share(at(s), secs(busy));
            assert!((share - 0.75).abs() < 1e-9, "{share} at {s}s");
        }
        assert!(merges_wait(0.75, 5));
        assert!(!merges_wait(0.75, DEFERRED_MAX), "too many small segments wait: merge anyway");
        // The burst ends: within one window the share falls under a half.
        let mut last = 0.75;
        for s in (22..=32).step_by(2) {
            last = load.share(at(s), secs(busy));
        }
        assert_eq!(last, 0.0, "only idle samples in the last window");
        assert!(!merges_wait(last, 5));
        // Light ingest (a 1 s flush every 10 s) never holds merges back.
        let mut light = FlusherLoad::default();
        let mut busy = 0.0;
        for s in (0..=60).step_by(2) {
            if s % 10 == 0 {
                busy += 1.0;
            }
            assert!(!merges_wait(light.share(at(s), secs(busy)), 5), "at {s}s");
        }
    }

    fn meta(id: u64, rows: u64) -> SegmentMeta {
        SegmentMeta {
            id,
            signal: Signal::Traces,
            rows,
            bytes: 0,
            min_time: 0,
            max_time: 0,
            services: Vec::new(),
            operations: Vec::new(),
            metrics: Vec::new(),
            has_index: true,
            compacted_from: Vec::new(),
        }
    }

    #[test]
    fn the_plan_merges_old_small_segments_and_leaves_the_newest_alone() {
        let spans = |ids: &[u64]| Some((Signal::Traces, ids.to_vec()));
        let small: Vec<SegmentMeta> = (1..=8).map(|id| meta(id, 100)).collect();
        assert_eq!(plan(&small, 1_000, &[]), spans(&[1, 2, 3, 4]));
        assert_eq!(plan(&small[..7], 1_000, &[]), None, "only three outside the newest four");
        assert_eq!(plan(&small, 0, &[]), None, "0 turns compaction off");
        // Segments of between a quarter and a half of the bound: no four fit,
        // three make one that is no longer small (they stayed unmerged
        // before: 530k-span flushes at 10M spans, a bound of 2M).
        assert_eq!(plan(&small, 350, &[]), spans(&[1, 2, 3]));
        assert_eq!(plan(&small, 210, &[]), spans(&[1, 2]));
        assert_eq!(plan(&small[..6], 600, &[]), None, "two of 100 are still small");
        let mut mixed = vec![meta(1, 900)];
        mixed.extend((2..=10).map(|id| meta(id, 100)));
        assert_eq!(plan(&mixed, 1_000, &[]), spans(&[2, 3, 4, 5, 6]), "big segments stay; the rest up to the bound");
    }

    /// Log and metric segments merge too, a signal at a time, and all of
    /// them: no parents are looked up among them.
    #[test]
    fn the_plan_takes_one_signal_at_a_time_spans_first() {
        let of = |signal, id| SegmentMeta { signal, ..meta(id, 100) };
        let mut catalog: Vec<SegmentMeta> = Vec::new();
        for id in 1..=4 {
            catalog.extend([of(Signal::Traces, id), of(Signal::Logs, id), of(Signal::Metrics, id)]);
        }
        assert_eq!(
            plan(&catalog, 1_000, &[]),
            Some((Signal::Logs, vec![1, 2, 3, 4])),
            "the four span segments are recent"
        );
        catalog.retain(|m| m.signal != Signal::Logs);
        assert_eq!(plan(&catalog, 1_000, &[]), Some((Signal::Metrics, vec![1, 2, 3, 4])));
        catalog.extend((5..=8).map(|id| of(Signal::Traces, id)));
        assert_eq!(plan(&catalog, 1_000, &[]), Some((Signal::Traces, vec![1, 2, 3, 4])));
    }

    /// A signal whose merge failed is left out of the plans for a while; the
    /// others' merges go on.
    #[test]
    fn a_failed_signal_rests_and_the_others_merge() {
        let of = |signal, id| SegmentMeta { signal, ..meta(id, 100) };
        let mut catalog: Vec<SegmentMeta> = (1..=8).map(|id| of(Signal::Traces, id)).collect();
        catalog.extend((1..=4).map(|id| of(Signal::Logs, id)));
        let t0 = Instant::now();
        let mut resting = Resting::default();
        resting.failed(Signal::Traces, t0);
        let skip = resting.signals(t0 + Duration::from_secs(1));
        assert_eq!(plan(&catalog, 1_000, &skip), Some((Signal::Logs, vec![1, 2, 3, 4])));
        assert_eq!(resting.signals(t0 + REST_AFTER_FAILURE), Vec::<Signal>::new(), "back after the rest");
        assert_eq!(plan(&catalog, 1_000, &[]), Some((Signal::Traces, vec![1, 2, 3, 4])));
    }

    /// Under heavy ingest only a signal with [`DEFERRED_MAX`] small segments
    /// waiting is merged; the others wait for the burst to end.
    #[test]
    fn heavy_ingest_holds_back_the_signals_with_few_small_segments() {
        let of = |signal, id| SegmentMeta { signal, ..meta(id, 100) };
        let mut catalog: Vec<SegmentMeta> = (1..=10).map(|id| of(Signal::Traces, id)).collect();
        catalog.extend((1..=DEFERRED_MAX as u64).map(|id| of(Signal::Metrics, id)));
        catalog.push(of(Signal::Logs, 1));
        assert_eq!(held_back(&catalog, 1_000, 0.75), [Signal::Traces, Signal::Logs]);
        assert_eq!(held_back(&catalog, 1_000, 0.2), Vec::<Signal>::new(), "light ingest holds nothing back");
        assert_eq!(held_back(&catalog, 100, 0.75), Signal::ALL, "none is small");
    }

    /// A store whose compactor never runs: the tests merge by hand.
    fn open_quiet(dir: &std::path::Path) -> Store {
        let mut config = StoreConfig::new(dir);
        config.compact_rows = 0;
        Store::open(config).unwrap()
    }

    /// Ten flushes of three traces each (a trace's spans spread over flushes).
    fn ten_flushes(dir: &std::path::Path) -> Store {
        let store = open_quiet(dir);
        for f in 0..10u8 {
            for t in 0..3u8 {
                let start = T0 + u64::from(f) * 1_000_000 + u64::from(t);
                store.append_blocking(span_of("svc", t + 1, f * 10 + t + 1, None, start)).unwrap();
            }
            store.flush().unwrap();
        }
        store
    }

    /// Runs the merges `compact_rows` calls for.
    fn compact_with(store: &Store, compact_rows: u64) -> usize {
        let mut n = 0;
        while compact_once_with(&store.inner, compact_rows).unwrap() {
            n += 1;
        }
        n
    }

    fn snapshot(store: &Store) -> (Vec<usize>, u64) {
        let traces = (1..=3u8).map(|t| store.trace(TraceId([t; 16])).unwrap().len()).collect();
        let q = StatsQuery { start_ns: 0, end_ns: i64::MAX, ..Default::default() };
        let count = store.span_stats(&q).unwrap().iter().map(|(_, s)| s.spans).sum();
        (traces, count)
    }

    fn span_segments(store: &Store) -> Vec<u64> {
        store.segments().iter().filter(|m| m.signal == Signal::Traces).map(|m| m.id).collect()
    }

    fn segment_files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir.join("segments"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_merge_replaces_its_inputs_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ten_flushes(dir.path());
        let before = snapshot(&store);
        assert_eq!(before, (vec![10, 10, 10], 30));
        let q = TraceQuery { service: Some("svc".into()), limit: 10, ..Default::default() };
        let found = store.find_traces(&q).unwrap().len();
        assert_eq!(compact_with(&store, 1_000), 1);
        assert_eq!(span_segments(&store), [11, 7, 8, 9, 10], "the merged segment takes its inputs' place");
        assert_eq!(snapshot(&store), before);
        assert_eq!(store.find_traces(&q).unwrap().len(), found);
        assert_eq!(store.counters().compactions.load(Ordering::Relaxed), 1);
        let files = segment_files(dir.path());
        assert!(!files.iter().any(|f| f.starts_with("0000000000000001-")), "{files:?}");
        store.close().unwrap();
        store = open_quiet(dir.path());
        assert_eq!(span_segments(&store), [11, 7, 8, 9, 10]);
        assert_eq!(snapshot(&store), before);
        store.close().unwrap();
    }

    /// Log and metric segments merge as span segments do: one segment per
    /// signal afterwards, and the same records, searches, points and
    /// streams, after a restart too.
    #[test]
    fn log_and_metric_segments_merge_and_answer_the_same() {
        use super::super::testing::{gauge_of, log_of};
        use crate::logsearch::LogQuery;
        let dir = tempfile::tempdir().unwrap();
        let store = open_quiet(dir.path());
        for f in 0..6u64 {
            for i in 0..5u64 {
                let (service, t) = (if i % 2 == 0 { "a" } else { "b" }, T0 + f * 1_000_000 + i);
                store.append_blocking(log_of(service, &format!("word{i} flush{f}"), t)).unwrap();
                store.append_blocking(gauge_of(service, &format!("m{}", i % 3), (f * 10 + i) as f64, t)).unwrap();
            }
            store.flush().unwrap();
        }
        let answers = |store: &Store| {
            let mut logs: Vec<(i64, String)> =
                store.all_logs().unwrap().into_iter().map(|r| (r.time_unix_nano, format!("{:?}", r.body))).collect();
            logs.sort();
            let search = |text: &str, service: Option<&str>| -> Vec<i64> {
                let q = LogQuery {
                    text: Some(text.into()),
                    service: service.map(Into::into),
                    limit: 4,
                    ..Default::default()
                };
                store.search_logs(&q).unwrap().iter().map(|r| r.time_unix_nano).collect()
            };
            let found = (search("word2", None), search("flush3", Some("b")), search("word1 OR word4", None));
            let names: HashSet<String> = ["m0", "m1", "m2"].into_iter().map(String::from).collect();
            let mut points = Vec::new();
            store
                .visit_metric_points(&names, None, None, &mut |p| {
                    points.push((p.metric_name.to_string(), p.time_unix_nano, format!("{:?}", p.value)))
                })
                .unwrap();
            points.sort();
            (logs, found, points, store.metric_descriptors(None, None))
        };
        let of = |store: &Store, signal| store.segments().iter().filter(|m| m.signal == signal).count();
        let before = answers(&store);
        assert_eq!((before.0.len(), before.2.len()), (30, 30));
        assert_eq!(before.1 .0.len(), 4, "the newest four of six");
        assert_eq!((of(&store, Signal::Logs), of(&store, Signal::Metrics)), (6, 6));
        assert_eq!(compact_with(&store, 1_000), 2, "one merge per signal");
        assert_eq!((of(&store, Signal::Logs), of(&store, Signal::Metrics), of(&store, Signal::Traces)), (1, 1, 0));
        assert_eq!(answers(&store), before);
        store.close().unwrap();
        let store = open_quiet(dir.path());
        assert_eq!((of(&store, Signal::Logs), of(&store, Signal::Metrics)), (1, 1));
        assert_eq!(answers(&store), before);
        store.close().unwrap();
        let left: Vec<String> = segment_files(dir.path());
        assert_eq!(left.len(), 3, "one Parquet file per signal and the log index: {left:?}");
    }

    /// Parents are stored by their position in the trace where the segment
    /// holds them (`parent_row`), by id where not. Through flushes, a merge
    /// whose inputs' traces straddle their read batches, and a restart, every
    /// span keeps its parent: earlier and later rows, the span itself, a
    /// parent in another segment or nowhere, roots, and spans sharing an id.
    #[test]
    fn every_span_keeps_its_parent_through_flushes_merges_and_restarts() {
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let id = |n: u64| n.to_be_bytes().to_vec();
        // (trace, span, parent): parents anywhere in the trace, by a fixed
        // scramble. Per flush, trace 1 has 100 spans and trace 2 1,000 after
        // them (so it straddles a merge's 1,024-row read batches), trace 10
        // 3,000 (too many for parents by position); traces 3-9 are small.
        let mut spans: Vec<(u8, u64, Option<u64>)> = Vec::new();
        for (t, n) in [(1u8, 800u64), (2, 8_000), (10, 24_000)] {
            for i in 1..=n {
                let parent = match i % 7 {
                    0 => None,
                    1 => Some(i),
                    2 => Some(77_777),
                    _ => Some(1 + (i * 2_654_435_761) % n),
                };
                spans.push((t, i, parent));
            }
        }
        for t in 3..=9u8 {
            for i in 1..=5u64 {
                spans.push((t, i, (i > 1).then_some(if i % 2 == 0 { 5 } else { i - 1 })));
            }
            spans.push((t, 3, Some(1)));
        }
        let dir = tempfile::tempdir().unwrap();
        let store = open_quiet(dir.path());
        let flushes = 8;
        // Eight flushes: the newest four stay out of merges.
        for f in 0..flushes {
            let mine: Vec<Span> = spans
                .iter()
                .enumerate()
                // Traces 1, 2 and 10 spread over every flush; the small ones whole in the first two.
                .filter(
                    |&(n, &(t, ..))| if [1, 2, 10].contains(&t) { n % flushes == f } else { usize::from(t) % 2 == f },
                )
                .map(|(n, &(t, i, p))| Span {
                    trace_id: vec![t; 16],
                    span_id: id(i),
                    parent_span_id: p.map(id).unwrap_or_default(),
                    name: "op".into(),
                    start_time_unix_nano: T0 + n as u64,
                    end_time_unix_nano: T0 + n as u64 + 10,
                    ..Default::default()
                })
                .collect();
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    scope_spans: vec![ScopeSpans { spans: mine, ..Default::default() }],
                    ..Default::default()
                }],
            };
            store.append_blocking(Batch::Traces(request)).unwrap();
            store.flush().unwrap();
        }
        let mut want: Vec<(u8, u64, Option<u64>)> = spans.clone();
        want.sort();
        let got = |store: &Store| {
            let mut got: Vec<(u8, u64, Option<u64>)> = (1..=10u8)
                .flat_map(|t| store.trace(TraceId([t; 16])).unwrap())
                .map(|r| {
                    let n = |s: crate::ids::SpanId| u64::from_be_bytes(s.0);
                    (r.trace_id.0[0], n(r.span_id), r.parent_span_id.map(n))
                })
                .collect();
            got.sort();
            got
        };
        assert_eq!(got(&store), want, "from the flushed segments");
        assert_eq!(compact_with(&store, 1_000_000), 1);
        assert_eq!(span_segments(&store).len(), 5, "four merged into one, the newest four as they were");
        assert_eq!(got(&store), want, "from the merged segment");
        store.close().unwrap();
        let store = open_quiet(dir.path());
        assert_eq!(got(&store), want, "after a restart");
        store.close().unwrap();
    }

    /// A crash after a merge of log segments swapped the catalog but before
    /// the inputs' files were deleted: start-up deletes them (they are of the
    /// merged segment's signal), and no record is served twice.
    #[test]
    fn a_log_merge_cut_short_after_the_swap_is_finished_at_start() {
        use super::super::testing::log_of;
        let dir = tempfile::tempdir().unwrap();
        let store = open_quiet(dir.path());
        for f in 0..4u64 {
            store.append_blocking(log_of("a", &format!("flush{f}"), T0 + f)).unwrap();
            store.flush().unwrap();
        }
        let saved = tempfile::tempdir().unwrap();
        let seg_dir = dir.path().join("segments");
        let copy = |from: &std::path::Path, to: &std::path::Path, name: &str| {
            fs::copy(from.join(name), to.join(name)).unwrap();
        };
        copy(&seg_dir, saved.path(), "0000000000000002-logs.parquet");
        assert_eq!(compact_with(&store, 1_000), 1);
        store.close().unwrap();
        copy(saved.path(), &seg_dir, "0000000000000002-logs.parquet");
        let store = open_quiet(dir.path());
        assert_eq!(store.all_logs().unwrap().len(), 4);
        assert!(!segment_files(dir.path()).iter().any(|f| f.starts_with("0000000000000002-")));
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }

    /// A crash after the merged segment was written but before the catalog
    /// named it: start-up deletes it; the inputs serve as before.
    #[test]
    fn a_merge_cut_short_before_the_swap_is_undone_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = ten_flushes(dir.path());
        let before = snapshot(&store);
        let inputs: Vec<Arc<Segment>> = store.inner.sources.read().unwrap().segments()[..6].to_vec();
        let meta = segment::merge(&store.inner.seg_dir, 99, Signal::Traces, &inputs, &|| Ok(())).unwrap();
        assert!(meta.parquet_path(&store.inner.seg_dir).exists());
        drop(inputs);
        store.close().unwrap();
        let store = open_quiet(dir.path());
        assert_eq!(span_segments(&store), (1..=10).collect::<Vec<_>>());
        assert_eq!(snapshot(&store), before);
        assert!(!segment_files(dir.path()).iter().any(|f| f.starts_with("0000000000000099-")));
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }

    /// A crash after the swap but before the inputs' files were deleted:
    /// start-up deletes them; nothing is served twice.
    #[test]
    fn a_merge_cut_short_after_the_swap_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = ten_flushes(dir.path());
        let before = snapshot(&store);
        let saved = tempfile::tempdir().unwrap();
        let seg_dir = dir.path().join("segments");
        for name in segment_files(dir.path()) {
            fs::copy(seg_dir.join(&name), saved.path().join(&name)).unwrap();
        }
        assert_eq!(compact_with(&store, 1_000), 1);
        store.close().unwrap();
        for name in
            ["0000000000000001-traces.parquet", "0000000000000001-traces.idx", "0000000000000004-traces.parquet"]
        {
            fs::copy(saved.path().join(name), seg_dir.join(name)).unwrap();
        }
        let store = open_quiet(dir.path());
        assert_eq!(snapshot(&store), before);
        let files = segment_files(dir.path());
        assert!(!files.iter().any(|f| f.starts_with("0000000000000001-") || f.starts_with("0000000000000004-")));
        assert_eq!(store.counters().quarantined_segments.load(Ordering::Relaxed), 0);
        store.close().unwrap();
    }
}
