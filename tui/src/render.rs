//! `--render-once`: one frame drawn off-screen and returned as plain text,
//! for snapshot tests, docs and bug reports. The same App and fetches as
//! the interactive loop, awaited in turn instead of in the background.

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;
use unicode_width::UnicodeWidthStr;

use crate::app::App;
use crate::error::TuiError;
use crate::fetch::{fetch, Clients, Limits, Request};

/// How many rounds of follow-up fetches render-once waits for (a trace
/// asks for its logs: two rounds); a bound, not a wait.
const MAX_ROUNDS: usize = 8;

/// Parses `WIDTHxHEIGHT` (`120x40`).
///
/// # Errors
/// [`TuiError::BadSize`] for anything else, or a side of 0 or over 1000.
pub fn parse_size(text: &str) -> Result<(u16, u16), TuiError> {
    let bad = || TuiError::BadSize(text.to_string());
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u16 = w.trim().parse().map_err(|_| bad())?;
    let h: u16 = h.trim().parse().map_err(|_| bad())?;
    if !(1..=1000).contains(&w) || !(1..=1000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Runs `requests` and every fetch their answers lead to, then draws one
/// `width`×`height` frame of `app` as text.
pub async fn render_after(
    app: &mut App,
    clients: &Clients,
    limits: Limits,
    mut requests: Vec<Request>,
    (width, height): (u16, u16),
) -> Result<String, TuiError> {
    for _ in 0..MAX_ROUNDS {
        if requests.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for request in requests {
            let action = fetch(clients, limits, request).await;
            next.extend(app.update(action));
        }
        requests = next;
    }
    Ok(frame_text(app, width, height))
}

/// Draws `app` on a `width`×`height` off-screen terminal and returns the text.
pub fn frame_text(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("an off-screen terminal never fails");
    terminal.draw(|f| app.draw(f)).expect("drawing off-screen never fails");
    buffer_text(terminal.backend().buffer())
}

/// A buffer's symbols as lines of text, trailing blanks trimmed; a wide
/// character's second cell is skipped, so columns read as on a terminal.
pub fn buffer_text(buffer: &Buffer) -> String {
    let width = buffer.area.width as usize;
    let mut out = String::with_capacity(buffer.content.len() + buffer.area.height as usize);
    for row in buffer.content.chunks(width.max(1)) {
        let mut line = String::with_capacity(width);
        let mut skip = 0;
        for cell in row {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            let symbol = cell.symbol();
            line.push_str(symbol);
            skip = symbol.width().saturating_sub(1);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_size() {
        assert_eq!(parse_size("120x40").unwrap(), (120, 40));
        assert_eq!(parse_size("80X24").unwrap(), (80, 24));
        for bad in ["120", "x40", "0x10", "10x0", "axb", "2000x10"] {
            assert!(matches!(parse_size(bad), Err(TuiError::BadSize(_))), "{bad}");
        }
    }

    #[test]
    fn test_buffer_text_skips_the_second_cell_of_wide_chars() {
        let mut buffer = Buffer::empty(ratatui::layout::Rect::new(0, 0, 6, 2));
        buffer.set_string(0, 0, "a界b", ratatui::style::Style::new());
        buffer.set_string(0, 1, "ok", ratatui::style::Style::new());
        assert_eq!(buffer_text(&buffer), "a界b\nok\n");
    }
}
