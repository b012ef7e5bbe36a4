//! End-to-end mesh tests (issue 3, point 6): real `weft` routers in network namespaces.
//! Needs root, `ip`, `nft`, `ping`, and `cargo build -p weft-router` first.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use support::{
    CONVERGE, HEAL, PASSWORD, cli_ok, full_mesh, launch, password_refusal, probe, reports,
};
use weft_netns_tests::{Net, weft_binary};

#[test]
fn three_encrypted_routers_see_each_other() {
    let net = Net::new(3).expect("net");
    let routers = [
        launch(&net, 0, Some(PASSWORD), &[]),
        launch(&net, 1, Some(PASSWORD), &[0]),
        // h2 only knows h1; it must learn h0 by gossip and dial it.
        launch(&net, 2, Some(PASSWORD), &[1]),
    ];
    net.wait_until(
        CONVERGE,
        "3 routers, each knowing 3 peers over established encrypted connections",
        || full_mesh(&routers, true),
    );

    let reports = reports(&routers).expect("reports");
    let names: BTreeSet<String> = reports
        .iter()
        .map(|r| r.name().expect("router.name").to_owned())
        .collect();
    assert_eq!(names.len(), 3, "peer names must differ: {names:?}");
    for (report, router) in reports.iter().zip(&routers) {
        assert_eq!(report.encryption(), Some(true), "{}", router.host());
        assert_eq!(
            report.peer_names(),
            names.iter().cloned().collect::<Vec<_>>(),
            "{}",
            router.host()
        );
        let conns = report.connections();
        assert!(
            conns.iter().all(|c| c.is_established() && c.encrypted),
            "{}: {conns:?}",
            router.host()
        );
    }

    let own = reports[0].name().expect("name");
    let status = cli_ok(&routers[0], &["status"]);
    assert!(status.contains(own), "status lacks own name:\n{status}");
    assert!(
        status
            .lines()
            .any(|l| l.contains("Encryption") && l.contains("enabled")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.contains("Peers") && l.contains('3')),
        "{status}"
    );

    let peers = cli_ok(&routers[0], &["status", "peers"]);
    for name in &names {
        assert!(
            peers.contains(name.as_str()),
            "status peers lacks {name}:\n{peers}"
        );
    }

    let conns = cli_ok(&routers[0], &["status", "connections"]);
    for other in &routers[1..] {
        let ip = other.addr().to_string();
        assert!(
            conns
                .lines()
                .any(|l| l.contains(&ip) && l.contains("established") && l.contains("encrypted")),
            "status connections has no established encrypted line for {ip}:\n{conns}"
        );
    }

    let targets = cli_ok(&routers[1], &["status", "targets"]);
    assert!(
        targets.contains(&net.host(0).addr().to_string()),
        "h1 targets lack h0:\n{targets}"
    );
}

#[test]
fn wrong_password_is_refused_and_both_sides_say_why() {
    let net = Net::new(4).expect("net");
    let good = [
        launch(&net, 0, Some(PASSWORD), &[]),
        launch(&net, 1, Some(PASSWORD), &[0]),
        launch(&net, 2, Some(PASSWORD), &[0]),
    ];
    net.wait_until(
        CONVERGE,
        "the 3 routers with the right password to mesh",
        || full_mesh(&good, true),
    );
    let before = good[0].log().expect("h0 log").len();

    let intruder = launch(&net, 3, Some("not the password"), &[0]);
    net.wait_until(
        CONVERGE,
        "the intruder's log to say its password was refused",
        || {
            intruder
                .log()
                .is_ok_and(|log| password_refusal(&log).is_some())
        },
    );
    net.wait_until(
        CONVERGE,
        "h0's log to say it refused the intruder's password",
        || {
            good[0]
                .log()
                .is_ok_and(|log| password_refusal(log.get(before..).unwrap_or_default()).is_some())
        },
    );

    let intruder_name = intruder
        .report()
        .expect("intruder report")
        .name()
        .expect("name")
        .to_owned();
    // Keep checking for a while: the intruder keeps redialling and must keep failing.
    for _ in 0..5 {
        for (i, r) in reports(&good).expect("reports").iter().enumerate() {
            let peers = r.peer_names();
            assert_eq!(peers.len(), 3, "h{i} peers: {peers:?}");
            assert!(
                !peers.contains(&intruder_name),
                "h{i} lists the intruder: {peers:?}"
            );
        }
        let seen = intruder.report().expect("intruder report");
        assert!(
            seen.established().is_empty(),
            "the intruder got a connection: {:?}",
            seen.connections()
        );
        assert_eq!(seen.peer_names(), std::slice::from_ref(&intruder_name));
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn five_hosts_in_a_line_learn_the_whole_topology() {
    let net = Net::new(5).expect("net");
    net.isolate_line().expect("line");
    assert!(
        net.host(0).ping(net.host(1).addr()).expect("ping"),
        "neighbours must reach each other"
    );
    assert!(
        !net.host(0).ping(net.host(2).addr()).expect("ping"),
        "non-neighbours must not"
    );

    let routers: Vec<_> = (0..5)
        .map(|i| {
            launch(
                &net,
                i,
                None,
                &i.checked_sub(1).into_iter().collect::<Vec<_>>(),
            )
        })
        .collect();
    net.wait_until(
        Duration::from_secs(60),
        "every router of the line to list all 5 peers",
        || reports(&routers).is_some_and(|rs| rs.iter().all(|r| r.peer_names().len() == 5)),
    );
    let reports = reports(&routers).expect("reports");
    let all = reports[0].peer_names();
    for (i, report) in reports.iter().enumerate() {
        assert_eq!(report.peer_names(), all, "h{i} disagrees on the peer set");
        for c in report.established() {
            let neighbour =
                (0..5).any(|j| i.abs_diff(j) == 1 && c.ip() == net.host(j).addr().to_string());
            assert!(neighbour, "h{i} has a connection to a non-neighbour: {c:?}");
        }
    }
}

#[test]
fn cut_link_is_noticed_and_heals_after_restore() {
    let net = Net::new(3).expect("net");
    let routers = [
        launch(&net, 0, None, &[]),
        launch(&net, 1, None, &[0]),
        launch(&net, 2, None, &[0]),
    ];
    net.wait_until(CONVERGE, "a full mesh of 3", || full_mesh(&routers, false));
    let (h0, h1) = (
        net.host(0).addr().to_string(),
        net.host(1).addr().to_string(),
    );

    net.cut(0, 1).expect("cut");
    net.wait_until(
        HEAL,
        "h0 and h1 to drop their connection after the cut",
        || {
            routers[0].report().is_ok_and(|r| !r.connected_to(&h1))
                && routers[1].report().is_ok_and(|r| !r.connected_to(&h0))
        },
    );
    // Both still know all peers through h2.
    for (i, r) in reports(&routers).expect("reports").iter().enumerate() {
        assert_eq!(
            r.peer_names().len(),
            3,
            "h{i} forgot a peer while h2 still links everyone"
        );
    }

    net.restore(0, 1).expect("restore");
    net.wait_until(
        HEAL,
        "the full mesh to come back after restoring the link",
        || full_mesh(&routers, false),
    );
}

#[test]
fn killed_router_restarts_with_its_name_and_rejoins() {
    let net = Net::new(3).expect("net");
    let routers = [
        launch(&net, 0, Some(PASSWORD), &[]),
        launch(&net, 1, Some(PASSWORD), &[0]),
        launch(&net, 2, Some(PASSWORD), &[0]),
    ];
    net.wait_until(CONVERGE, "a full encrypted mesh of 3", || {
        full_mesh(&routers, true)
    });
    let before = routers[1].report().expect("report");
    let (name, old_uid) = (
        before.name().expect("name").to_owned(),
        before.uid().expect("uid"),
    );

    routers[1].kill9().expect("kill -9");
    assert!(!routers[1].is_running());
    let h1 = net.host(1).addr().to_string();
    net.wait_until(CONVERGE, "h0 to notice h1 is gone", || {
        routers[0].report().is_ok_and(|r| !r.connected_to(&h1))
    });

    routers[1].restart().expect("restart");
    let after = routers[1].report().expect("report");
    assert_eq!(
        after.name(),
        Some(name.as_str()),
        "the peer name changed across a restart"
    );
    let new_uid = after.uid().expect("uid");
    assert_ne!(new_uid, old_uid, "a restart must start a new incarnation");
    net.wait_until(HEAL, "the restarted router to rejoin the full mesh", || {
        full_mesh(&routers, true)
    });
    net.wait_until(CONVERGE, "the others to know h1's new incarnation", || {
        reports(&routers).is_some_and(|rs| {
            rs.iter()
                .all(|r| r.peers().iter().any(|p| p.name == name && p.uid == new_uid))
        })
    });
}

/// Sends bad input to h0's mesh port from h2; each must close that connection only.
#[test]
fn garbage_and_oversized_frames_close_only_that_connection() {
    let net = Net::new(3).expect("net");
    let routers = [launch(&net, 0, None, &[]), launch(&net, 1, None, &[0])];
    net.wait_until(CONVERGE, "h0 and h1 to mesh", || full_mesh(&routers, false));
    let target = SocketAddr::from((net.host(0).addr(), 6783));

    let cases: [(&str, bool, Vec<u8>); 4] = [
        (
            "an HTTP request",
            false,
            b"GET / HTTP/1.1\r\nHost: weft\r\n\r\n".to_vec(),
        ),
        (
            "a hello announcing 4 GiB",
            false,
            [
                b"weft".as_slice(),
                &1u32.to_be_bytes(),
                &u32::MAX.to_be_bytes(),
            ]
            .concat(),
        ),
        (
            "a frame announcing 4 GiB after the handshake",
            true,
            [u32::MAX.to_be_bytes().as_slice(), &[0u8; 64]].concat(),
        ),
        (
            "a frame that is not a message",
            true,
            [8u32.to_be_bytes().as_slice(), &[0xff; 8]].concat(),
        ),
    ];
    for (what, after_handshake, bytes) in cases {
        let closed = net
            .host(2)
            .run_in(|| {
                let mut stream = probe::connect(target);
                if after_handshake {
                    probe::handshake(&mut stream, None);
                }
                probe::closed_after(&mut stream, &bytes)
            })
            .expect("enter h2");
        assert!(closed, "h0 kept the connection open after {what}");
        assert!(
            routers[0].is_running(),
            "h0 died after {what}:\n{}",
            net.log_tails()
        );
        cli_ok(&routers[0], &["status"]);
        let h1 = net.host(1).addr().to_string();
        assert!(
            routers[0].report().expect("report").connected_to(&h1),
            "h0 lost h1 after {what}"
        );
    }
}

#[test]
fn forged_encrypted_frame_closes_the_connection() {
    let net = Net::new(2).expect("net");
    let router = launch(&net, 0, Some(PASSWORD), &[]);
    let target = SocketAddr::from((net.host(0).addr(), 6783));
    let closed = net
        .host(1)
        .run_in(|| {
            let mut stream = probe::connect(target);
            probe::handshake(&mut stream, Some(PASSWORD));
            probe::closed_after(
                &mut stream,
                &[32u32.to_be_bytes().as_slice(), &[0x5a; 32]].concat(),
            )
        })
        .expect("enter h1");
    assert!(
        closed,
        "h0 kept a connection whose frame failed authentication"
    );
    assert!(router.is_running(), "h0 died:\n{}", net.log_tails());
    cli_ok(&router, &["status"]);
}

#[test]
fn stop_ends_the_daemon() {
    let net = Net::new(1).expect("net");
    let router = launch(&net, 0, None, &[]);
    cli_ok(&router, &["stop"]);
    let status = router
        .wait_exit(Duration::from_secs(10))
        .expect("the router still runs after `weft stop`");
    assert!(
        status.success(),
        "weft launch exited with {status} after stop"
    );
    let out = router.cli(&["status"]).expect("cli");
    assert!(
        !out.status.success(),
        "status succeeds with the daemon stopped"
    );
}

// ---- CLI input errors ----

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(weft_binary().expect("weft binary"))
        .args(args)
        .output()
        .expect("run weft")
}

#[test]
fn cli_without_daemon_fails_and_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("none.sock");
    let socket = socket.to_str().expect("utf-8 path");
    for verb in [
        &["status"][..],
        &["status", "peers"],
        &["report"],
        &["stop"],
        &["connect", "198.18.0.9"],
    ] {
        let out = weft(&[&["--socket", socket][..], verb].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "weft {verb:?} succeeded with no daemon"
        );
        assert!(
            stderr.contains("weft launch"),
            "weft {verb:?} does not say how to start one: {stderr}"
        );
    }
}

#[test]
fn unknown_flags_exit_2() {
    for args in [
        &["--frobnicate"][..],
        &["launch", "--frobnicate"],
        &["status", "--frobnicate"],
        &["no-such-verb"],
    ] {
        let out = weft(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "weft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn malformed_peer_addresses_are_refused() {
    let net = Net::new(1).expect("net");
    let host = net.host(0);
    let dir = net.dir().join("bad-launch");
    let (data, socket) = (dir.join("data"), dir.join("weft.sock"));
    let (data, socket) = (
        data.to_str().expect("utf-8"),
        socket.to_str().expect("utf-8"),
    );
    for bad in ["198.18.0.2:99999", "not a host", "h2:", ":6783"] {
        let out = host
            .weft(&["launch", "--data-dir", data, "--socket", socket, bad])
            .expect("weft launch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "launch accepted peer {bad:?}");
        assert!(
            stderr.contains(bad) && stderr.contains("peer"),
            "unclear error for {bad:?}: {stderr}"
        );
    }

    let router = launch(&net, 0, None, &[]);
    for bad in ["198.18.0.2:0", "a..b"] {
        let out = router.cli(&["connect", bad]).expect("weft connect");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "connect accepted {bad:?}");
        assert!(stderr.contains(bad), "unclear error for {bad:?}: {stderr}");
    }
    assert!(router.is_running());
}

#[test]
fn missing_password_file_is_a_clear_error() {
    let net = Net::new(1).expect("net");
    let dir = net.dir().join("pwfile");
    let missing = dir.join("no-such-password");
    let (data, socket) = (dir.join("data"), dir.join("weft.sock"));
    let out = net
        .host(0)
        .weft(&[
            "launch",
            "--data-dir",
            data.to_str().expect("utf-8"),
            "--socket",
            socket.to_str().expect("utf-8"),
            "--password-file",
            missing.to_str().expect("utf-8"),
        ])
        .expect("weft launch");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "launch ran without its password file"
    );
    assert!(
        stderr.contains(missing.to_str().expect("utf-8")),
        "error does not name the file: {stderr}"
    );
}
