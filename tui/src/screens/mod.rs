//! The screens, one component each. A component turns commands and typed
//! searches into fetch [`Request`]s (and sometimes an [`Action`] for the
//! app, such as "open this trace"), takes its data when it arrives, and
//! draws itself. Shared pieces: the list [`Selection`], the [`Load`] state
//! every data panel shows, and the colours.

pub mod chaos;
pub mod logs;
pub mod services;
pub mod trace;
pub mod traces;

use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::Frame;

use crate::action::{Action, Command};
use crate::fetch::Request;
use crate::waterfall::scroll_offset;

/// What a component asks for after a command or a search.
#[derive(Debug, Default)]
pub struct Effect {
    /// Data to fetch in the background.
    pub requests: Vec<Request>,
    /// Something for the app to do (open a trace, change screen).
    pub then: Option<Action>,
}

impl Effect {
    /// Nothing to do.
    pub fn none() -> Effect {
        Effect::default()
    }

    /// Fetch `request`.
    pub fn fetch(request: Request) -> Effect {
        Effect { requests: vec![request], then: None }
    }

    /// Hand `action` to the app.
    pub fn then(action: Action) -> Effect {
        Effect { requests: Vec::new(), then: Some(action) }
    }
}

/// A screen.
pub trait Component {
    /// A key's command (global ones are the app's and never come here).
    fn command(&mut self, command: Command) -> Effect;
    /// A `/` search typed on this screen.
    fn search(&mut self, text: &str) -> Effect;
    /// What the screen shows as its current search, for the `/` line and the title.
    fn search_text(&self) -> String;
    /// Fetch everything again (the refresh timer, `r`, first visit).
    fn refresh(&mut self) -> Vec<Request>;
    /// Draws into `area` (takes `&mut self` to remember the page height).
    fn draw(&mut self, frame: &mut Frame, area: Rect);
}

/// Whether a panel's data is there.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Load {
    /// Never asked for.
    #[default]
    Idle,
    /// Asked for, no answer yet.
    Loading,
    /// Answered.
    Ready,
    /// Failed; the error as the client words it.
    Failed(String),
}

impl Load {
    /// The mark after a panel's title: ` loading…`, ` error`, or nothing.
    pub fn mark(&self) -> &'static str {
        match self {
            Load::Loading => " · loading…",
            Load::Failed(_) => " · error",
            _ => "",
        }
    }
}

/// A bordered block titled `title` plus the load mark.
pub fn block<'a>(title: impl Into<String>, load: &Load) -> Block<'a> {
    let mut title: String = title.into();
    title.push_str(load.mark());
    Block::bordered().title(Span::styled(format!(" {title} "), Style::new().add_modifier(Modifier::BOLD)))
}

/// Draws the error or the loading/empty message inside `block`; true when it did
/// (the caller then draws nothing else there).
pub fn draw_state(frame: &mut Frame, area: Rect, block: Block<'_>, load: &Load, empty: bool, empty_text: &str) -> bool {
    let text = match load {
        Load::Failed(e) => Line::styled(format!("error: {e}"), Style::new().fg(theme::ERROR)),
        Load::Idle | Load::Loading if empty => Line::styled("loading…", Style::new().fg(theme::DIM)),
        Load::Ready if empty => Line::styled(empty_text.to_string(), Style::new().fg(theme::DIM)),
        _ => return false,
    };
    frame.render_widget(Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }).block(block), area);
    true
}

/// A list's selected row and scroll offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The selected row.
    pub selected: usize,
    /// The first row on screen.
    pub offset: usize,
    /// Rows on screen at the last draw (a page).
    pub page: usize,
}

impl Selection {
    /// Applies a move command to a list of `len` rows; true when it was one.
    pub fn apply(&mut self, command: Command, len: usize) -> bool {
        let last = len.saturating_sub(1);
        let page = self.page.max(1);
        self.selected = match command {
            Command::Up => self.selected.saturating_sub(1),
            Command::Down => (self.selected + 1).min(last),
            Command::PageUp => self.selected.saturating_sub(page),
            Command::PageDown => (self.selected + page).min(last),
            Command::Top => 0,
            Command::Bottom => last,
            _ => return false,
        };
        true
    }

    /// Keeps the selection inside `len` rows and on a `height`-row screen;
    /// returns the rows to draw.
    pub fn fit(&mut self, len: usize, height: usize) -> std::ops::Range<usize> {
        self.page = height;
        self.selected = self.selected.min(len.saturating_sub(1));
        self.offset = scroll_offset(self.offset, self.selected, height, len);
        crate::waterfall::visible_rows(self.offset, height, len)
    }
}

/// The colours. A fault is magenta everywhere, an error red, the critical
/// path yellow; the selection is reversed, so it reads without colour too.
pub mod theme {
    use super::*;

    /// Chaos fault spans and fault marks.
    pub const FAULT: Color = Color::Magenta;
    /// Errors.
    pub const ERROR: Color = Color::Red;
    /// The critical path.
    pub const CRITICAL: Color = Color::Yellow;
    /// Ordinary bars and sparklines.
    pub const BAR: Color = Color::Cyan;
    /// Secondary text.
    pub const DIM: Color = Color::DarkGray;

    /// The selected row.
    pub fn selected() -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    /// Table headers.
    pub fn header() -> Style {
        Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_selection_moves_and_clamps() {
        let mut s = Selection { page: 10, ..Selection::default() };
        assert!(s.apply(Command::PageDown, 25));
        assert_eq!(s.selected, 10);
        s.apply(Command::Bottom, 25);
        assert_eq!(s.selected, 24);
        s.apply(Command::Down, 25);
        assert_eq!(s.selected, 24, "stays on the last row");
        assert_eq!(s.fit(25, 10), 15..25);
        s.apply(Command::Top, 25);
        assert_eq!(s.fit(25, 10), 0..10);
        assert!(!s.apply(Command::Enter, 25));
        assert_eq!(s.fit(3, 10), 0..3, "a shorter list pulls the selection in");
    }
}
