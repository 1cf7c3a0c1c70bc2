//! connlife's entry point: parse arguments, then run the live trace, a report or a check.
//! Errors end as one line on stderr: exit 2 for bad usage, 1 for faults.
use std::process::ExitCode;

use clap::Parser;
use connlife::{
    cli::{self, Cli, Command},
    kernel::{loader, probes},
    run::{agent, report, watch},
};

/// A line on stdout that never panics (`connlife check | head -1`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if cli.command.is_none() {
        if let Err(e) = cli::validate(&cli.trace) {
            connlife::say!("connlife: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Some(Command::Report { file, json, html }) => report::report(&file, json, html.as_deref()),
        Some(Command::Check { json }) => check(json),
        Some(Command::Agent(args)) => runtime().and_then(|rt| rt.block_on(agent::run(args))),
        Some(Command::Floor { hooks, no_syscalls }) => runtime()
            .and_then(|rt| rt.block_on(loader::run_floor(hooks, no_syscalls)))
            .map(|count| {
                out!("{{\"type\":\"floor\",\"count\":{count}}}");
            }),
        None => runtime().and_then(|rt| rt.block_on(watch::run(cli.trace))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            connlife::say!("connlife: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

fn check(json: bool) -> anyhow::Result<()> {
    let root = loader::preflight()?;
    let (_, features) = probes::discover(&root)?;
    if json {
        out!("{}", serde_json::to_string(&features)?);
    } else {
        // One `feature NAME yes|no` line each: read by people and by the kernel matrix.
        out!("kernel {}", features.kernel);
        let yes = |b: bool| if b { "yes" } else { "no" };
        out!("feature btf {}", yes(features.btf));
        for (program, ok) in &features.tracepoints {
            out!("feature {program} {}", yes(*ok));
        }
        out!("feature use_counting {}", yes(features.use_counting));
        out!("feature exit_group_dead {}", yes(features.exit_group_dead));
    }
    Ok(())
}
