//! Where the session's outputs go: human lines (collapsed per group) or JSON lines on stdout,
//! the live terminal view on a TTY, and the `--record` file of inputs.
use std::{
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::Context as _;

use crate::{
    model::session::{Input, Output, Session},
    output::{self, Style},
    run::{
        driver::monotonic_ns,
        record::{RecordLimits, RecordWriter},
    },
};

/// Where outputs go: human text or JSON lines on stdout, and the recording of inputs.
pub struct Sink {
    json: bool,
    /// Agent: only findings, groups, fd exhaustion, losses, post-mortems and summaries.
    pub findings_only: bool,
    pub style: Style,
    /// Buffered: flushed once per batch of events and per tick, not per line.
    out: BufWriter<std::io::Stdout>,
    record: Option<RecordWriter>,
    /// The last post-mortem printed (`report --html` draws it).
    pub last_postmortem: Option<crate::model::session::Postmortem>,
    /// The live view on a terminal (`connlife --pid` on a TTY without --plain/--json).
    pub(super) live: Option<Live>,
    /// The line stream: findings of a group collapse between summaries.
    collapse: output::Collapser,
    collapse_across: bool,
}

/// The live view while it is on: its state, the terminal, keys, and the outputs to print
/// on the normal screen once it is left (post-mortems).
pub(super) struct Live {
    pub(super) view: crate::output::tui::LiveView,
    pub(super) screen: crate::run::terminal::Screen,
    pub(super) keys: tokio::sync::mpsc::UnboundedReceiver<crossterm::event::Event>,
    pub(super) after: Vec<Output>,
}

impl Sink {
    pub fn new(json: bool, record: Option<(&Path, RecordLimits)>) -> anyhow::Result<Sink> {
        let record = match record {
            Some((p, limits)) => Some(RecordWriter::create(p, limits)?),
            None => None,
        };
        let out = std::io::stdout();
        Ok(Sink {
            json,
            findings_only: false,
            style: Style::for_stdout(json),
            out: BufWriter::with_capacity(64 << 10, out),
            record,
            last_postmortem: None,
            live: None,
            collapse: output::Collapser::default(),
            collapse_across: true,
        })
    }

    /// Switch to the live view (raw mode, alternate screen, key reader).
    pub fn enter_live(&mut self) -> anyhow::Result<()> {
        let screen = crate::run::terminal::Screen::enter().context("terminal")?;
        let (tx, keys) = tokio::sync::mpsc::unbounded_channel();
        crate::run::terminal::spawn_key_reader(tx);
        self.live = Some(Live {
            view: crate::output::tui::LiveView::new(crate::output::tui::TuiStyle::from_env()),
            screen,
            keys,
            after: Vec::new(),
        });
        Ok(())
    }

    /// A replay has no summaries to release held findings at: collapse within a batch only.
    pub fn collapse_within_batches(&mut self) {
        self.collapse_across = false;
    }

    /// Back to the normal screen; print what was kept for it.
    pub fn leave_live(&mut self) {
        if let Some(live) = self.live.take() {
            drop(live.screen);
            let _ = output::write_human_batch(&mut self.out, &live.after, &self.style);
        }
    }

    pub(super) fn draw(&mut self, session: &Session, now: u64) {
        if let Some(l) = &mut self.live {
            let view = &mut l.view;
            let _ = l.screen.draw(|f| view.render(f, session, now));
        }
    }

    pub fn emit(&mut self, outputs: &[Output]) {
        for o in outputs {
            if let Output::Postmortem(p) = o {
                self.last_postmortem = Some(p.clone());
            }
        }
        // The live view shows them (its events pane); post-mortems print once it is left.
        if let Some(l) = &mut self.live {
            l.view.on_outputs(outputs, monotonic_ns());
            l.after
                .extend(outputs.iter().filter(|o| matches!(o, Output::Postmortem(_))).cloned());
            return;
        }
        let kept: Vec<Output>;
        let outputs = if self.findings_only {
            kept = outputs
                .iter()
                .filter(|o| !matches!(o, Output::Closed(_) | Output::Transition(_)))
                .cloned()
                .collect();
            &kept[..]
        } else {
            outputs
        };
        if self.json {
            for o in outputs {
                let _ = output::write_json(&mut self.out, o);
            }
        } else {
            // Per-connection findings collapse under their group (within a batch, and across
            // batches until the next summary).
            let outputs = if self.collapse_across {
                self.collapse.pass(outputs)
            } else {
                outputs.to_vec()
            };
            let _ = output::write_human_batch(&mut self.out, &outputs, &self.style);
        }
    }

    pub(super) fn record(&mut self, input: &Input) {
        if let Some(w) = &mut self.record {
            w.write(input);
        }
    }

    /// Flushed after every batch and tick, so output is timely and a killed connlife leaves a
    /// readable record. Neither a closed stdout nor a full disk stops the tracing.
    pub fn flush(&mut self) {
        let _ = self.out.flush();
        if let Some(w) = &mut self.record {
            w.flush();
        }
    }
}

/// Record the inputs of `--record FILE` at most this big, with `keep` rotated files.
pub fn record_target(path: Option<&Path>, max_bytes: u64, keep: usize) -> Option<(&Path, RecordLimits)> {
    path.map(|p| (p, RecordLimits { max_bytes, keep }))
}
