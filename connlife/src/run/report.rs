//! `connlife report FILE`: a `--record` file replayed through the same session (so it prints
//! what was printed live), or a post-mortem file the agent wrote; `--html` draws the
//! post-mortem as one page.
use std::path::Path;

use anyhow::Context as _;

use crate::{
    model::{
        detect::Thresholds,
        session::{Input, Output, Session},
    },
    run::{
        driver::{feed, Mode},
        sink::Sink,
    },
};

/// `connlife report FILE`: replay a recording through the same session and print the
/// findings on the way and the post-mortems; or render a post-mortem file the agent wrote.
/// `html`: also write the (last) post-mortem as one self-contained page.
pub fn report(path: &Path, json: bool, html: Option<&Path>) -> anyhow::Result<()> {
    if let Some(pm) = read_postmortem_file(path)? {
        let mut sink = Sink::new(json, None)?;
        sink.emit(&[Output::Postmortem(pm.clone())]);
        sink.flush();
        return write_html(html, Some(&pm));
    }
    struct Replay;
    impl Mode for Replay {
        fn fd_pids(&mut self, _: &Session, _: bool) -> Vec<u32> {
            Vec::new()
        }
        fn stop_when_traced_exit(&self) -> bool {
            false
        }
    }
    let mut reader = crate::run::record::RecordReader::open(path)?;
    let mut sink = Sink::new(json, None)?;
    sink.collapse_within_batches();
    let th = Thresholds {
        close_wait_after_ns: 0,
        idle_after_ns: 0,
        group_min: 3,
    };
    let mut session = Session::new(th, false, 0);
    session.closed_records = false;
    let mut last_ns = 0;
    let mut ended = false;
    for input in reader.by_ref() {
        let input = input?;
        match &input {
            Input::Tick { now_ns, .. }
            | Input::Lost { now_ns, .. }
            | Input::Snapshot { now_ns, .. }
            | Input::Reconcile { now_ns, .. }
            | Input::UseRefresh { now_ns, .. }
            | Input::Prune { now_ns, .. }
            | Input::Gone { now_ns, .. } => last_ns = last_ns.max(*now_ns),
            Input::Event { event } => last_ns = last_ns.max(event.ts_ns),
            Input::End { .. } => ended = true,
            Input::Start { .. } | Input::Track { .. } | Input::Follow { .. } | Input::Stack { .. } => {}
        }
        feed(&mut session, &mut sink, &mut Replay, input);
    }
    if let Some(line) = reader.truncated_tail() {
        crate::say!(
            "connlife: {}:{line}: the last line was cut (recording killed or disk full); report up to the line before",
            path.display()
        );
    }
    if session.pids().is_empty() {
        anyhow::bail!("{}: no session start found (not a connlife record?)", path.display());
    }
    // A recording cut short (connlife killed): report the processes still running at the end.
    if !ended {
        let pending: Vec<Output> = session
            .pids()
            .iter()
            .filter(|p| !session.exited.contains(p))
            .map(|&p| Output::Postmortem(session.postmortem(p, last_ns)))
            .collect();
        sink.emit(&pending);
    }
    sink.flush();
    write_html(html, sink.last_postmortem.as_ref())
}

/// A post-mortem file of the agent's (`{"type":"postmortem",...}` on its first line), if
/// `path` is one.
fn read_postmortem_file(path: &Path) -> anyhow::Result<Option<crate::model::session::Postmortem>> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).with_context(|| format!("cannot read record file {}", path.display()))?;
    let mut first = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut first)
        .with_context(|| format!("reading {}", path.display()))?;
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&first) else {
        return Ok(None);
    };
    if v["type"] != "postmortem" {
        return Ok(None);
    }
    let pm = serde_json::from_value(v).with_context(|| format!("{}: not a connlife post-mortem", path.display()))?;
    Ok(Some(pm))
}

fn write_html(out: Option<&Path>, pm: Option<&crate::model::session::Postmortem>) -> anyhow::Result<()> {
    let Some(out) = out else { return Ok(()) };
    let pm = pm.context("no post-mortem in this file to draw")?;
    std::fs::write(out, crate::output::html::postmortem_page(pm)).with_context(|| format!("writing {}", out.display()))
}
