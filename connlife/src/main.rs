//! connlife's entry point: parse arguments, then run the live trace, a report or a check.
//! Errors end as one line on stderr: exit 2 for bad usage, 1 for faults.
use std::process::ExitCode;

use clap::Parser;
use connlife::{
    cli::{self, Cli, Command},
    live, loader, probes,
};

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
        if let Err(e) = cli::validate_pids(&cli.trace.pids) {
            eprintln!("connlife: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Some(Command::Report { file, json }) => live::report(&file, json),
        Some(Command::Check { json }) => check(json),
        Some(Command::Floor) => runtime().and_then(|rt| rt.block_on(loader::run_floor())).map(|count| {
            println!("{{\"type\":\"floor\",\"count\":{count}}}");
        }),
        None => runtime().and_then(|rt| rt.block_on(live::run(cli.trace))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connlife: {e:#}");
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
        println!("{}", serde_json::to_string(&features)?);
    } else {
        println!(
            "kernel {}: BTF {}",
            features.kernel,
            if features.btf { "yes" } else { "no" }
        );
        for (program, ok) in &features.tracepoints {
            println!(
                "  {:<22} {}",
                program,
                if *ok { "attachable" } else { "absent" }
            );
        }
        println!(
            "  use counting (bytes, last activity, exchanges): {}",
            if features.use_counting {
                "in kernel"
            } else {
                "no: exchanges unknown, bytes from sock_diag"
            }
        );
    }
    Ok(())
}
