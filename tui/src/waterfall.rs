//! The waterfall's geometry, as pure functions: which columns a span's bar
//! covers, which rows of a (possibly 10,000-span) tree are on screen, and
//! the time axis. The trace screen draws with them; it decides nothing.
//!
//! Only the visible rows are ever laid out, so a frame costs the screen's
//! height, not the trace's size.

use std::ops::Range;

/// The time span the bar area shows: the whole trace, from its first start
/// to its last end, in µs since the Unix epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// First start, µs since the epoch.
    pub start_us: u64,
    /// Last end minus first start, µs; at least 1.
    pub duration_us: u64,
}

impl TimeWindow {
    /// The window from `start_us` to `end_us` (an empty or reversed one is 1 µs long).
    pub fn new(start_us: u64, end_us: u64) -> Self {
        TimeWindow { start_us, duration_us: end_us.saturating_sub(start_us).max(1) }
    }

    /// The window covering every `(start, duration)` given; `None` when there is none.
    pub fn covering(spans: impl IntoIterator<Item = (u64, u64)>) -> Option<Self> {
        let mut bounds: Option<(u64, u64)> = None;
        for (start, duration) in spans {
            let end = start.saturating_add(duration);
            bounds = Some(match bounds {
                None => (start, end),
                Some((s, e)) => (s.min(start), e.max(end)),
            });
        }
        bounds.map(|(s, e)| TimeWindow::new(s, e))
    }
}

/// The columns `[start, start + len)` of a bar `width` columns wide showing
/// a span that starts at `start_us` and lasts `duration_us`.
///
/// Every span gets at least one column, so a 3 µs span in a 2 s trace is
/// still seen; a span reaching past the window (a child outliving its
/// parent's trace view, clock skew) is clipped to it, never drawn outside.
pub fn bar_columns(window: TimeWindow, start_us: u64, duration_us: u64, width: u16) -> Range<u16> {
    if width == 0 {
        return 0..0;
    }
    let w = u128::from(width);
    let total = u128::from(window.duration_us);
    let offset = u128::from(start_us.saturating_sub(window.start_us)).min(total);
    let end = (offset + u128::from(duration_us)).min(total);
    // Floor the start and ceil the end: a bar covers every column its time touches.
    let first = ((offset * w) / total).min(w - 1) as u16;
    let last = (end * w).div_ceil(total).clamp(u128::from(first) + 1, w) as u16;
    first..last
}

/// The first visible row after scrolling so that `selected` is on screen,
/// moving as little as possible from `offset`. `height` rows fit; `total`
/// rows exist.
pub fn scroll_offset(offset: usize, selected: usize, height: usize, total: usize) -> usize {
    if height == 0 || total == 0 {
        return 0;
    }
    let selected = selected.min(total - 1);
    let offset = if selected < offset {
        selected
    } else if selected >= offset + height {
        selected + 1 - height
    } else {
        offset
    };
    // Never leave blank rows at the bottom when the list could fill them.
    offset.min(total.saturating_sub(height))
}

/// The rows on screen: `offset..offset + height`, cut at `total`.
pub fn visible_rows(offset: usize, height: usize, total: usize) -> Range<usize> {
    let start = offset.min(total);
    start..(start + height).min(total)
}

/// Tick marks for the axis above the bars: `(column, offset from the window
/// start in µs)`, `count` of them evenly spread over `width` columns, the
/// last at the right edge.
pub fn axis_ticks(window: TimeWindow, width: u16, count: u16) -> Vec<(u16, u64)> {
    if width == 0 || count == 0 {
        return Vec::new();
    }
    (0..=count)
        .map(|i| {
            let column = (u32::from(width - 1) * u32::from(i) / u32::from(count)) as u16;
            let at = window.duration_us as u128 * u128::from(i) / u128::from(count);
            (column, at as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> TimeWindow {
        TimeWindow::new(1_000_000, 1_100_000) // 100 ms
    }

    #[test]
    fn test_bar_columns_whole_trace_fills_the_width() {
        assert_eq!(bar_columns(window(), 1_000_000, 100_000, 50), 0..50);
    }

    #[test]
    fn test_bar_columns_middle_half() {
        // 25 ms .. 75 ms of 100 ms on 40 columns -> 10..30.
        assert_eq!(bar_columns(window(), 1_025_000, 50_000, 40), 10..30);
    }

    #[test]
    fn test_bar_columns_tiny_span_gets_one_column() {
        assert_eq!(bar_columns(window(), 1_050_000, 0, 40), 20..21);
        assert_eq!(bar_columns(window(), 1_100_000, 3, 40), 39..40, "a span at the very end stays inside");
    }

    #[test]
    fn test_bar_columns_clip_spans_outside_the_window() {
        // Starts before the window (clock skew) and ends after it.
        assert_eq!(bar_columns(window(), 900_000, 500_000, 40), 0..40);
        // Entirely after: one column at the right edge.
        assert_eq!(bar_columns(window(), 2_000_000, 10, 40), 39..40);
    }

    #[test]
    fn test_bar_columns_zero_width() {
        assert_eq!(bar_columns(window(), 1_000_000, 10, 0), 0..0);
    }

    #[test]
    fn test_covering_takes_first_start_and_last_end() {
        let w = TimeWindow::covering([(10, 5), (3, 4), (12, 20)]).unwrap();
        assert_eq!(w, TimeWindow { start_us: 3, duration_us: 29 });
        assert_eq!(TimeWindow::covering([]), None);
        assert_eq!(TimeWindow::covering([(5, 0)]).unwrap().duration_us, 1, "never zero long");
    }

    #[test]
    fn test_scroll_offset_follows_the_selection() {
        assert_eq!(scroll_offset(0, 5, 10, 100), 0, "visible: no move");
        assert_eq!(scroll_offset(0, 10, 10, 100), 1, "one below: one step");
        assert_eq!(scroll_offset(50, 20, 10, 100), 20, "above: it becomes the first row");
        assert_eq!(scroll_offset(0, 9_999, 40, 10_000), 9_960, "the last row of a 10,000-row tree");
        assert_eq!(scroll_offset(95, 96, 10, 100), 90, "no blank rows at the end");
        assert_eq!(scroll_offset(3, 500, 10, 0), 0);
    }

    #[test]
    fn test_visible_rows_window() {
        assert_eq!(visible_rows(9_960, 40, 10_000), 9_960..10_000);
        assert_eq!(visible_rows(5, 40, 10), 5..10);
        assert_eq!(visible_rows(50, 40, 10), 10..10);
    }

    #[test]
    fn test_axis_ticks_span_the_width() {
        let ticks = axis_ticks(window(), 41, 4);
        assert_eq!(ticks, vec![(0, 0), (10, 25_000), (20, 50_000), (30, 75_000), (40, 100_000)]);
    }
}
