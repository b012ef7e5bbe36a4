//! The README demo: three `weft` routers on three hosts (network namespaces on one underlay
//! bridge), joined into one encrypted mesh; prints what `weft status` shows on each, then tears
//! everything down. Nothing is added to the machine's own network namespace.

use std::process::ExitCode;
use std::time::Duration;

use weft_netns_tests::{Net, Router, poll_until};

const PASSWORD: &str = "weft-demo-secret";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn step(text: &str) {
    println!("\n### {text}");
}

fn show(router: &Router, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = router.cli(args)?;
    println!("$ weft {}   # on {}", args.join(" "), router.host());
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    step("building an underlay bridge and 3 hosts in network namespaces");
    let net = Net::new(3)?;
    for h in net.hosts() {
        println!("  {} at {}", h.label(), h.addr());
    }

    step("launching a router on each host: WEFT_PASSWORD=... weft launch [host1]");
    let env = [("WEFT_PASSWORD", PASSWORD)];
    let first = net.host(0).spawn_weft_env(&[], &env)?;
    let peer = first.addr().to_string();
    let mut routers = vec![first];
    for i in 1..3 {
        routers.push(net.host(i).spawn_weft_env(&[&peer], &env)?);
    }

    step("waiting for every router to know all 3 peers over encrypted connections");
    let converged = poll_until(Duration::from_secs(30), || {
        routers.iter().all(|r| {
            r.report().is_ok_and(|rep| {
                rep.peer_names().len() == 3 && rep.established().iter().all(|c| c.encrypted)
            })
        })
    });
    if !converged {
        return Err(format!("the mesh did not converge in 30 s\n{}", net.log_tails()).into());
    }

    for r in &routers {
        step(&format!("status on {}", r.host()));
        show(r, &["status"])?;
        show(r, &["status", "connections"])?;
    }
    step(&format!(
        "every peer and its connections, as {} sees them",
        routers[2].host()
    ));
    show(&routers[2], &["status", "peers"])?;

    step("stopping the routers and removing the namespaces");
    for r in &routers {
        r.cli(&["stop"])?;
    }
    drop(net);
    println!("done");
    Ok(())
}
