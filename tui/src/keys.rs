//! Keybindings as data: one table per scope (global, list moves, each
//! screen). The event loop looks keys up here, and the help bar and the `?`
//! page are drawn from the same tables, so what is shown is what works.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEventKind};

use crate::action::{Command, Screen};

/// One binding: the keys, what they do, and the words shown for it.
#[derive(Clone, Copy, Debug)]
pub struct Binding {
    /// Any of these keys (without modifiers, except Shift-Tab).
    pub keys: &'static [KeyCode],
    /// What they do.
    pub command: Command,
    /// A few words for the help bar and the `?` page.
    pub help: &'static str,
    /// Whether the one-line help bar shows it (the `?` page shows all).
    pub in_bar: bool,
}

const fn bind(keys: &'static [KeyCode], command: Command, help: &'static str, in_bar: bool) -> Binding {
    Binding { keys, command, help, in_bar }
}

/// Keys that work on every screen.
pub const GLOBAL: &[Binding] = &[
    bind(&[KeyCode::Char('?')], Command::Help, "help", true),
    bind(&[KeyCode::Char('/')], Command::Search, "search", true),
    bind(&[KeyCode::Char(':')], Command::CommandLine, "command", true),
    bind(&[KeyCode::Tab], Command::NextScreen, "next screen", true),
    bind(&[KeyCode::BackTab], Command::PrevScreen, "previous screen", false),
    bind(&[KeyCode::Esc], Command::Back, "back", true),
    bind(&[KeyCode::Char('r')], Command::Refresh, "refresh", false),
    bind(&[KeyCode::Char('q')], Command::Quit, "quit", true),
];

/// Moving in a list (every screen has one).
pub const MOVES: &[Binding] = &[
    bind(&[KeyCode::Up, KeyCode::Char('k')], Command::Up, "up", false),
    bind(&[KeyCode::Down, KeyCode::Char('j')], Command::Down, "down", false),
    bind(&[KeyCode::PageUp], Command::PageUp, "page up", false),
    bind(&[KeyCode::PageDown], Command::PageDown, "page down", false),
    bind(&[KeyCode::Home, KeyCode::Char('g')], Command::Top, "first", false),
    bind(&[KeyCode::End, KeyCode::Char('G')], Command::Bottom, "last", false),
];

const SERVICES: &[Binding] = &[bind(&[KeyCode::Enter], Command::Enter, "traces of service", true)];

const TRACES: &[Binding] = &[
    bind(&[KeyCode::Enter], Command::Enter, "open trace", true),
    bind(&[KeyCode::Char('s')], Command::CycleSort, "sort", true),
    bind(&[KeyCode::Char('e')], Command::ToggleErrors, "errors only", true),
    bind(&[KeyCode::Char('f')], Command::ToggleFaults, "faulted only", true),
];

const TRACE: &[Binding] = &[
    bind(&[KeyCode::Char(' '), KeyCode::Enter], Command::ToggleCollapse, "fold", true),
    bind(&[KeyCode::Char('x')], Command::ExpandAll, "unfold all", false),
    bind(&[KeyCode::Char('n')], Command::NextFault, "next fault", true),
];

const LOGS: &[Binding] = &[
    bind(&[KeyCode::Enter], Command::Enter, "open trace", true),
    bind(&[KeyCode::Char('t')], Command::ToggleTail, "live tail", true),
];

const CHAOS: &[Binding] = &[bind(&[KeyCode::Enter], Command::Enter, "traces faults touched", true)];

/// The bindings of `screen` itself (not the global ones or the moves).
pub fn screen_bindings(screen: Screen) -> &'static [Binding] {
    match screen {
        Screen::Services => SERVICES,
        Screen::Traces => TRACES,
        Screen::Trace => TRACE,
        Screen::Logs => LOGS,
        Screen::Chaos => CHAOS,
    }
}

/// What `key` does on `screen`: the screen's own bindings first, then
/// moves, then global ones.
pub fn lookup(screen: Screen, key: KeyEvent) -> Option<Command> {
    if key.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) {
        // Ctrl-C quits wherever the user is (raw mode swallows SIGINT).
        return (key.modifiers == KeyModifiers::CONTROL && key.code == KeyCode::Char('c')).then_some(Command::Quit);
    }
    [screen_bindings(screen), MOVES, GLOBAL]
        .into_iter()
        .flatten()
        .find(|b| b.keys.contains(&key.code))
        .map(|b| b.command)
}

/// What the mouse wheel does (with `--mouse`): scroll the list; clicks and
/// drags do nothing, so nothing happens by accident.
pub fn mouse(kind: MouseEventKind) -> Option<Command> {
    match kind {
        MouseEventKind::ScrollUp => Some(Command::Up),
        MouseEventKind::ScrollDown => Some(Command::Down),
        _ => None,
    }
}

/// A key as the help shows it: `q`, `Tab`, `S-Tab`, `Enter`, `↑`, `Space`.
pub fn key_name(key: KeyCode) -> String {
    match key {
        KeyCode::Char(' ') => "Space".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Tab => "Tab".into(),
        KeyCode::BackTab => "S-Tab".into(),
        KeyCode::Esc => "Esc".into(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Up => "↑".into(),
        KeyCode::Down => "↓".into(),
        KeyCode::PageUp => "PgUp".into(),
        KeyCode::PageDown => "PgDn".into(),
        KeyCode::Home => "Home".into(),
        KeyCode::End => "End".into(),
        other => format!("{other:?}"),
    }
}

/// A binding's keys joined: `↑/k`.
pub fn keys_label(binding: &Binding) -> String {
    binding.keys.iter().map(|k| key_name(*k)).collect::<Vec<_>>().join("/")
}

/// The one-line help bar of `screen`: its own bar bindings, then the global ones.
pub fn bar(screen: Screen) -> Vec<(String, &'static str)> {
    screen_bindings(screen).iter().chain(GLOBAL).filter(|b| b.in_bar).map(|b| (keys_label(b), b.help)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn test_lookup_screen_keys_win_over_global_ones() {
        assert_eq!(lookup(Screen::Traces, press(KeyCode::Enter)), Some(Command::Enter));
        assert_eq!(lookup(Screen::Trace, press(KeyCode::Enter)), Some(Command::ToggleCollapse));
        assert_eq!(lookup(Screen::Logs, press(KeyCode::Char('q'))), Some(Command::Quit));
        assert_eq!(lookup(Screen::Logs, press(KeyCode::Char('j'))), Some(Command::Down));
        assert_eq!(lookup(Screen::Logs, press(KeyCode::Char('z'))), None);
        assert_eq!(
            lookup(Screen::Chaos, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Command::Quit)
        );
        assert_eq!(lookup(Screen::Chaos, KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)), None);
    }

    #[test]
    fn test_no_key_is_bound_twice_in_one_scope() {
        for screen in Screen::ALL {
            let mut seen = std::collections::HashSet::new();
            for b in screen_bindings(screen).iter().chain(MOVES) {
                for k in b.keys {
                    assert!(seen.insert(*k), "{k:?} bound twice on {screen:?}");
                }
            }
        }
    }

    #[test]
    fn test_mouse_wheel_scrolls_and_clicks_do_nothing() {
        assert_eq!(mouse(MouseEventKind::ScrollDown), Some(Command::Down));
        assert_eq!(mouse(MouseEventKind::ScrollUp), Some(Command::Up));
        assert_eq!(mouse(MouseEventKind::Down(crossterm::event::MouseButton::Left)), None);
    }

    #[test]
    fn test_bar_is_drawn_from_the_table() {
        let bar = bar(Screen::Traces);
        assert_eq!(bar[0], ("Enter".to_string(), "open trace"));
        assert!(bar.contains(&("q".to_string(), "quit")));
        assert!(!bar.iter().any(|(_, help)| *help == "previous screen"), "in_bar false stays off the bar");
    }
}
