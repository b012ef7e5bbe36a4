//! The `weft` command: `weft launch` runs the router, every other verb talks to a running one.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use weft_router::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("weft: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Launch(args) => {
            let filter = match EnvFilter::try_new(&args.log_level) {
                // netlink-packet-route warns about every attribute newer than itself.
                Ok(f) => match "netlink_packet_route=error".parse() {
                    Ok(quiet) => f.add_directive(quiet),
                    Err(_) => f,
                },
                Err(e) => {
                    eprintln!(
                        "weft: invalid --log-level {:?}: {e}; use error, warn, info, debug or trace",
                        args.log_level
                    );
                    return ExitCode::from(2);
                }
            };
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            match runtime.block_on(weft_router::daemon::run(cli.socket, args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("weft: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => runtime.block_on(weft_router::cli::run_client(cli)),
    }
}
