//! The session (`connlife::model::session::Session::apply`) fed any sequence of inputs, read
//! from the fuzz bytes as JSON lines through the `--record` reader, the way `connlife report`
//! replays a recording: it never panics, nor does formatting what it outputs (text and JSON)
//! or the post-mortem of every process it names.
#![no_main]

use connlife::{
    model::{
        detect::Thresholds,
        session::{Input, Session},
    },
    output::text::{write_human, write_json, Style},
    run::record::RecordReader,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let th = Thresholds {
        close_wait_after_ns: 0,
        idle_after_ns: 0,
        group_min: 3,
    };
    let mut session = Session::new(th, true, 0);
    let style = Style {
        color: false,
        hinted: Default::default(),
        // Whole stacks too: origins' frames come from the records being fuzzed.
        stacks: true,
    };
    let mut out = std::io::sink();
    let mut last_ns = 0;
    for input in RecordReader::from_reader("<fuzz>", data).map_while(Result::ok) {
        match &input {
            Input::Event { event } => last_ns = last_ns.max(event.ts_ns),
            Input::Tick { now_ns, .. } | Input::Snapshot { now_ns, .. } | Input::Reconcile { now_ns, .. } => {
                last_ns = last_ns.max(*now_ns)
            }
            _ => {}
        }
        for output in session.apply(&input) {
            write_json(&mut out, &output).expect("a sink does not fail");
            write_human(&mut out, &output, &style).expect("a sink does not fail");
        }
    }
    for pid in session.pids().to_vec() {
        let postmortem = session.postmortem(pid, last_ns);
        serde_json::to_vec(&postmortem).expect("a post-mortem serializes");
    }
});
