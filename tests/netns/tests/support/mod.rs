//! Helpers shared by the end-to-end tests: launching routers and checking mesh shape.

pub(crate) mod probe;

use std::time::Duration;

use weft_netns_tests::{Net, Report, Router};

/// The password of the encrypted meshes.
pub(crate) const PASSWORD: &str = "correct horse battery staple";
/// Time a fresh mesh of a few routers gets to converge.
pub(crate) const CONVERGE: Duration = Duration::from_secs(30);
/// Time a mesh gets to notice a dead link or heal after one (redial backoff tops at 30 s).
pub(crate) const HEAL: Duration = Duration::from_secs(90);

/// Starts a router on host `i`, with `--password PASSWORD` when `password`, dialling `peers` (host indices).
pub(crate) fn launch(net: &Net, i: usize, password: Option<&str>, peers: &[usize]) -> Router {
    let mut args: Vec<String> = Vec::new();
    if let Some(p) = password {
        args.extend(["--password".to_owned(), p.to_owned()]);
    }
    args.extend(peers.iter().map(|&p| net.host(p).addr().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    net.host(i)
        .spawn_weft(&args)
        .unwrap_or_else(|e| panic!("launching weft on h{i}: {e}"))
}

/// The reports of all routers, or `None` if any is unavailable.
pub(crate) fn reports(routers: &[Router]) -> Option<Vec<Report>> {
    routers.iter().map(|r| r.report().ok()).collect()
}

/// Whether every router knows all `routers.len()` peers and has an established connection to
/// every other router's host (encrypted ones when `encrypted`).
pub(crate) fn full_mesh(routers: &[Router], encrypted: bool) -> bool {
    let Some(reports) = reports(routers) else {
        return false;
    };
    reports.iter().zip(routers).all(|(report, me)| {
        report.peer_names().len() == routers.len()
            && routers
                .iter()
                .filter(|other| other.addr() != me.addr())
                .all(|other| {
                    report
                        .established()
                        .iter()
                        .any(|c| c.ip() == other.addr().to_string() && (c.encrypted || !encrypted))
                })
    })
}

/// The first line of `text` that says a connection was refused over the password.
pub(crate) fn password_refusal(text: &str) -> Option<&str> {
    const WHY: [&str; 6] = [
        "differ",
        "mismatch",
        "wrong",
        "refus",
        "reject",
        "does not match",
    ];
    text.lines().find(|line| {
        let line = line.to_lowercase();
        line.contains("password") && WHY.iter().any(|w| line.contains(w))
    })
}

/// stdout of a CLI call, which must succeed.
pub(crate) fn cli_ok(router: &Router, args: &[&str]) -> String {
    let out = router
        .cli(args)
        .unwrap_or_else(|e| panic!("weft {args:?} on {}: {e}", router.host()));
    assert!(
        out.status.success(),
        "weft {args:?} on {} failed ({}): {}",
        router.host(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
