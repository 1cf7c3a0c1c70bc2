//! `connlife --pid PID` / `--comm NAME` (and with neither, every process): the driver with
//! the watching hooks: fds of every traced process read each second, the run ends with the
//! traced processes, human text or `--json` on stdout, `--record` for `connlife report`.

use crate::{
    cli::TraceArgs,
    kernel::loader::Filter,
    model::{detect::Thresholds, session::Session},
    run::{
        driver::{self, Mode, Settings},
        sink::{record_target, Sink},
    },
};

struct Watch {
    /// Named pids: the run ends when they (and their children) have.
    named: bool,
}

impl Mode for Watch {
    fn fd_pids(&mut self, session: &Session, _interval_due: bool) -> Vec<u32> {
        session.traced_pids()
    }
    fn stop_when_traced_exit(&self) -> bool {
        self.named
    }
}

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let sink = Sink::new(
        args.json,
        record_target(args.record.as_deref(), args.record_max_size, args.record_keep),
    )?;
    let mut sink = sink;
    sink.style.stacks = args.stacks;
    if crate::run::terminal::live_view_wanted(args.json, args.plain) {
        sink.enter_live()?;
    }
    let settings = Settings {
        filter: Filter {
            pids: args.pids.clone(),
            comms: args.comms.clone(),
            origin: !args.no_origin,
            // --transitions prints each change as it happens: one record each.
            fold: !args.transitions,
        },
        thresholds: Thresholds {
            close_wait_after_ns: args.close_wait_after.as_nanos() as u64,
            idle_after_ns: args.idle_after.as_nanos() as u64,
            group_min: args.group_min,
        },
        transitions: args.transitions,
        max_conns: args.max_conns,
        closed_records: true,
        interval: args.interval,
        duration: args.duration,
        reconcile_every: args.reconcile_every,
        ignore_local: Vec::new(),
        postmortem_min_conns: None,
    };
    let mut mode = Watch {
        named: !args.pids.is_empty(),
    };
    driver::run(settings, &mut mode, sink).await
}
