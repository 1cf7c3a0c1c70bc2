//! The terminal under the live view: [`Screen::enter`] switches to raw mode and the alternate
//! screen and hides the cursor; the returned [`Screen`] puts everything back when dropped, and
//! a panic hook does the same before the panic message is printed, so neither `q`, Ctrl-C, the
//! traced process's end nor a bug leaves the user's terminal unusable. [`spawn_key_reader`]
//! forwards key and resize events from a thread into a tokio channel the driver selects on.
use std::{
    io::{self, IsTerminal, Stdout},
    sync::{
        atomic::{AtomicBool, Ordering},
        Once,
    },
    time::Duration,
};

use crossterm::{
    cursor,
    event::{self, Event},
    execute,
    terminal::{self, EnterAlternateScreen, LeaveAlternateScreen},
};
use ratatui::{backend::CrosstermBackend, Frame, Terminal};
use tokio::sync::mpsc::UnboundedSender;

/// Whether the terminal is in the live view's state (raw mode, alternate screen): what the
/// panic hook and the guard restore, once.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();

/// Whether `connlife --pid` should open the live view: stdout and stdin are terminals (keys
/// come from stdin), neither `--json` nor `--plain` was asked, and the terminal can address
/// its cursor (`TERM=dumb`, e.g. an editor's shell buffer, gets the line stream).
pub fn live_view_wanted(json: bool, plain: bool) -> bool {
    !json
        && !plain
        && io::stdout().is_terminal()
        && io::stdin().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// The terminal while the live view is on.
pub struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Screen {
    /// Raw mode, alternate screen, hidden cursor; undone by dropping the `Screen` (or by the
    /// panic hook installed here on first use).
    pub fn enter() -> io::Result<Screen> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(mut terminal) => {
                let _ = terminal.clear();
                Ok(Screen { terminal })
            }
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }

    /// Draw one frame (ratatui sends only the cells that changed).
    pub fn draw(&mut self, f: impl FnOnce(&mut Frame)) -> io::Result<()> {
        self.terminal.draw(f).map(|_| ())
    }

    /// Forget what is on the screen so the next `draw` repaints all of it: after a resize, or
    /// after something else wrote to the terminal (a message on stderr).
    pub fn clear(&mut self) -> io::Result<()> {
        self.terminal.clear()
    }

    /// Back to the normal screen now (same as dropping it).
    pub fn leave(self) {}
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Leave the alternate screen, show the cursor, end raw mode; only if the view was on, once.
fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = execute!(io::stdout(), LeaveAlternateScreen, cursor::Show);
        let _ = terminal::disable_raw_mode();
    }
}

/// Forward key and resize events to `tx` from a thread; the thread ends once the receiver is
/// dropped (it checks every 200 ms) or the terminal cannot be read.
pub fn spawn_key_reader(tx: UnboundedSender<Event>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("connlife-keys".into())
        .spawn(move || {
            while !tx.is_closed() {
                match event::poll(Duration::from_millis(200)) {
                    Ok(true) => match event::read() {
                        Ok(ev @ (Event::Key(_) | Event::Resize(..))) => {
                            if tx.send(ev).is_err() {
                                break;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    },
                    Ok(false) => {}
                    Err(_) => break,
                }
            }
        })
        .expect("spawning the key-reader thread")
}
