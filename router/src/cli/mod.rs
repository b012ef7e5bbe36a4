//! The `weft` command line: clap definitions of every verb, and the client side of each verb
//! that talks to a running router over the control API.

pub mod args;
pub mod flows;
pub mod format;
pub mod policy;

use std::process::ExitCode;

pub use args::{
    AttachArgs, Cli, Command, DnsChangeArgs, IpamVerb, LaunchArgs, NetnsArgs, StatusWhat,
};

use crate::api::ipam::{
    AddressesResponse, AllocateRequest, AllocateResponse, FreeRequest, LookupRequest, PrimeRequest,
    ResetRequest, ResetResponse, RmpeerRequest, RmpeerResponse,
};

use crate::api::dns::{DnsChangeRequest, DnsLookupRequest, DnsLookupResponse};
use crate::api::{
    AttachRequest, Client, ConnectRequest, DetachRequest, ExposeRequest, ForgetRequest, Report,
};

/// Runs a verb other than `launch` against the router on `cli.socket`, printing its answer.
pub async fn run_client(cli: Cli) -> ExitCode {
    if let Command::SetupCni(args) = cli.command {
        return setup_cni(cli.socket, args);
    }
    if let Command::Query(args) = cli.command {
        return query(&args).await;
    }
    let client = Client::new(&cli.socket);
    match cli.command {
        Command::Tap(args) => return flows::tap(&client, args).await,
        Command::Top(args) => return flows::top(&client, args).await,
        _ => {}
    }
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

/// `weft query`: asks the metrics API over TCP, not the control socket.
async fn query(args: &crate::tsdb::QueryArgs) -> ExitCode {
    match crate::tsdb::run_query(args).await {
        Ok(table) => {
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `weft setup-cni`: runs locally, no daemon needed.
fn setup_cni(socket: std::path::PathBuf, args: args::SetupCniArgs) -> ExitCode {
    let spec = crate::cni::setup::SetupCni {
        socket: std::path::absolute(&socket).unwrap_or(socket),
        bin_dir: args.bin_dir,
        conf_dir: args.conf_dir,
        plugin: args.plugin,
        network: args.network,
    };
    match crate::cni::setup::setup_cni(&spec) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weft: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn ipam_verb(client: &Client, verb: IpamVerb) -> Result<String, crate::api::ClientError> {
    let lines = |r: AddressesResponse| r.addrs.iter().map(|a| format!("{a}\n")).collect::<String>();
    Ok(match verb {
        IpamVerb::Allocate { owner, subnet } => {
            let req = AllocateRequest {
                owner,
                subnet: subnet.map(|s| s.to_string()),
                addr: None,
                wait_ms: None,
            };
            let r: AllocateResponse = client.post("/ipam/allocate", &req).await?;
            format!("{}/{}", r.addr, r.prefix)
        }
        IpamVerb::Claim { owner, addr } => {
            let req = AllocateRequest {
                owner,
                subnet: None,
                addr: Some(addr),
                wait_ms: None,
            };
            let r: AllocateResponse = client.post("/ipam/allocate", &req).await?;
            format!("{}/{}", r.addr, r.prefix)
        }
        IpamVerb::Free { owner } => lines(
            client
                .post(
                    "/ipam/free",
                    &FreeRequest {
                        owner: Some(owner),
                        addr: None,
                    },
                )
                .await?,
        ),
        IpamVerb::Lookup { owner } => lines(
            client
                .post("/ipam/lookup", &LookupRequest { owner })
                .await?,
        ),
    })
}

/// `[ADDR...] [CONTAINER]`: the last argument is the workload when it is not an address; the
/// router checks every address (and refuses anything else with a clear message).
fn dns_change(a: DnsChangeArgs) -> DnsChangeRequest {
    let mut addrs = a.args;
    let container = match addrs.last() {
        Some(last) if last.parse::<std::net::IpAddr>().is_err() => addrs.pop(),
        _ => None,
    };
    DnsChangeRequest {
        addrs,
        container,
        hostname: a.hostname,
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
                Some(StatusWhat::Ipam) => format::ipam(&client.get("/ipam/status").await?),
                Some(StatusWhat::Dns) => format::dns(&client.get("/dns/status").await?),
            }
        }
        Command::Rmpeer { peer } => {
            let r: RmpeerResponse = client
                .post("/ipam/rmpeer", &RmpeerRequest { peer: peer.clone() })
                .await?;
            format!("{} addresses taken over from {peer}", r.addresses)
        }
        Command::Prime => format::ipam(
            &client
                .post("/ipam/prime", &PrimeRequest { wait_ms: None })
                .await?,
        ),
        Command::Ipam(verb) => ipam_verb(client, verb).await?,
        Command::Reset => {
            let r: ResetResponse = client.post("/reset", &ResetRequest::default()).await?;
            format::reset(&r)
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
                owner: None,
                rewrite_resolv: a.rewrite_resolv,
                namespace: Some(a.namespace),
                labels: a.labels,
                ports: a.ports,
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
        Command::DnsAdd(a) => format::dns(&client.post("/dns/add", &dns_change(a)).await?),
        Command::DnsRemove(a) => format::dns(&client.post("/dns/remove", &dns_change(a)).await?),
        Command::DnsLookup { name } => {
            let r: DnsLookupResponse = client
                .post("/dns/lookup", &DnsLookupRequest { name })
                .await?;
            r.addrs.iter().map(|a| format!("{a}\n")).collect()
        }
        Command::Policy(verb) => policy::policy_verb(client, verb).await?,
        Command::Label { workload, edits } => policy::label(client, workload, edits).await?,
        Command::Namespace(verb) => policy::namespace_verb(client, verb).await?,
        Command::Version => format!("weft {}", env!("CARGO_PKG_VERSION")),
        Command::Launch(_)
        | Command::SetupCni(_)
        | Command::Query(_)
        | Command::Tap(_)
        | Command::Top(_) => {
            unreachable!("launch, setup-cni and query do not talk to the control socket")
        }
    })
}
