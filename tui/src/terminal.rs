//! The interactive loop: one task selects over terminal events, finished
//! fetches and the refresh timer; fetches run as their own tasks and come
//! back as actions, so the screen never waits on the network. The terminal
//! is restored when the loop ends, on error and on panic.

use std::collections::HashSet;
use std::io::Stdout;
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyEventKind};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use futures_util::StreamExt;
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use tokio::sync::mpsc;

use crate::action::{Action, Fetched};
use crate::app::App;
use crate::error::TuiError;
use crate::fetch::{fetch, Clients, Limits, Request};

/// Raw mode and the alternate screen while alive; the terminal as it was
/// once dropped (also when unwinding from a panic).
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    mouse: bool,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> Result<TerminalGuard, TuiError> {
        enable_raw_mode().map_err(TuiError::io("entering raw mode"))?;
        let mut stdout = std::io::stdout();
        if let Err(e) = crossterm::execute!(stdout, EnterAlternateScreen) {
            restore();
            return Err(TuiError::io("entering the alternate screen")(e));
        }
        if mouse {
            // Capturing the mouse takes text selection away from the terminal: opt-in.
            if let Err(e) = crossterm::execute!(stdout, crossterm::event::EnableMouseCapture) {
                restore();
                return Err(TuiError::io("capturing the mouse")(e));
            }
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).map_err(TuiError::io("opening the terminal"))?;
        Ok(TerminalGuard { terminal, mouse })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.mouse {
            let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
        }
        restore();
        let _ = self.terminal.show_cursor();
    }
}

/// Leaves raw mode and the alternate screen; harmless when not in them.
fn restore() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(std::io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Restores the terminal before the panic message is printed, so the
/// message is readable and the shell usable (the guard's drop runs too
/// late: after the message, on the alternate screen).
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}

/// Runs the dashboard until `q`.
///
/// # Errors
/// The terminal could not be set up or drawn on.
pub async fn run(
    mouse: bool,
    mut app: App,
    clients: Clients,
    limits: Limits,
    refresh: Duration,
    first: Vec<Request>,
) -> Result<(), TuiError> {
    install_panic_hook();
    let mut guard = TerminalGuard::enter(mouse)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<(Fetched, Action)>();
    // Timer refreshes are skipped while the same data is still being
    // fetched, so a slow server is not sent a growing queue.
    let mut in_flight: HashSet<Fetched> = HashSet::new();
    let spawn = |requests: Vec<Request>, in_flight: &mut HashSet<Fetched>, from_timer: bool| {
        for request in requests {
            let what = request.what();
            if from_timer && in_flight.contains(&what) {
                continue;
            }
            in_flight.insert(what);
            let (clients, tx) = (clients.clone(), tx.clone());
            tokio::spawn(async move {
                let action = fetch(&clients, limits, request).await;
                let _ = tx.send((what, action));
            });
        }
    };
    spawn(first, &mut in_flight, false);
    // SIGTERM and SIGHUP (the terminal went away) end the loop like `q`, so the
    // terminal is restored rather than left in raw mode.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(TuiError::io("watching SIGTERM"))?;
    let mut hangup = signal(SignalKind::hangup()).map_err(TuiError::io("watching SIGHUP"))?;
    let mut events = EventStream::new();
    let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        guard.terminal.draw(|f| app.draw(f)).map_err(TuiError::io("drawing"))?;
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                    let requests = app.handle_key(key);
                    spawn(requests, &mut in_flight, false);
                }
                Some(Ok(Event::Mouse(m))) => {
                    if let Some(command) = crate::keys::mouse(m.kind) {
                        let requests = app.update(Action::Command(command));
                        spawn(requests, &mut in_flight, false);
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(TuiError::io("reading the terminal")(e)),
                None => break,
            },
            Some((what, action)) = rx.recv() => {
                in_flight.remove(&what);
                let requests = app.update(action);
                spawn(requests, &mut in_flight, false);
            }
            _ = term.recv() => break,
            _ = hangup.recv() => break,
            _ = timer.tick() => {
                let requests = app.update(Action::Tick);
                spawn(requests, &mut in_flight, true);
            }
        }
        if app.should_quit() {
            break;
        }
    }
    tracing::info!("Quit.");
    Ok(())
}
