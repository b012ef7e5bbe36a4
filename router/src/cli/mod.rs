//! The `weft` command line: clap definitions of every verb, and the client side of each verb
//! that talks to a running router over the control API.

pub mod args;
pub mod format;

use std::process::ExitCode;

pub use args::{AttachArgs, Cli, Command, LaunchArgs, NetnsArgs, StatusWhat};

use crate::api::{
    AttachRequest, Client, ConnectRequest, DetachRequest, ExposeRequest, ForgetRequest, Report,
};

/// Runs a verb other than `launch` against the router on `cli.socket`, printing its answer.
pub async fn run_client(cli: Cli) -> ExitCode {
    let client = Client::new(&cli.socket);
    match client_verb(&client, cli.command).await {
        Ok(out) => {
            if !out.is_empty() {
                println!("{}", out.trim_end());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn client_verb(client: &Client, command: Command) -> Result<String, crate::api::ClientError> {
    let empty = |_: serde_json::Value| String::new();
    Ok(match command {
        Command::Status { what } => {
            let report: Report = client.get("/report").await?;
            match what {
                None => format::status(&report),
                Some(StatusWhat::Peers) => format::peers(&report),
                Some(StatusWhat::Connections) => format::connections(&report),
                Some(StatusWhat::Targets) => format::targets(&report),
            }
        }
        Command::Report => {
            let report: serde_json::Value = client.get("/report").await?;
            serde_json::to_string_pretty(&report).unwrap_or_default()
        }
        Command::Connect { replace, peers } => empty(
            client
                .post("/connect", &ConnectRequest { peers, replace })
                .await?,
        ),
        Command::Forget { peers } => empty(client.post("/forget", &ForgetRequest { peers }).await?),
        Command::Stop => empty(client.post("/stop", &serde_json::json!({})).await?),
        Command::Attach(a) => {
            let req = AttachRequest {
                address: a.address,
                netns: a.netns.netns,
                pid: a.netns.pid,
                name: a.name,
                ifname: Some(a.ifname),
            };
            format::attached(&client.post("/attach", &req).await?)
        }
        Command::Detach { netns, ifname } => {
            let req = DetachRequest {
                netns: netns.netns,
                pid: netns.pid,
                ifname,
            };
            format::detached(&client.post("/detach", &req).await?)
        }
        Command::Ps => format::ps(&client.get("/ps").await?),
        Command::Expose { address } => {
            let req = ExposeRequest {
                address: Some(address),
            };
            format::addresses(&client.post("/expose", &req).await?)
        }
        Command::Hide { address } => {
            format::addresses(&client.post("/hide", &ExposeRequest { address }).await?)
        }
        Command::Version => format!("weft {}", env!("CARGO_PKG_VERSION")),
        Command::Launch(_) => unreachable!("launch runs the daemon, not a client verb"),
    })
}
