//! `weft tap` and `weft top`: clients of the router's `/flows/*` control routes.

use std::io::Write;
use std::process::ExitCode;

use crate::api::Client;
use crate::api::flows::{TapResponse, TopResponse};
use crate::flows::{TapArgs, TopArgs, TopRow};

/// How long one tap poll waits for events.
const TAP_WAIT_MS: u64 = 5_000;

fn query_string(pairs: &[(&str, Option<&str>)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    q.finish()
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("weft: {e}");
    ExitCode::FAILURE
}

/// `weft tap`: prints flow events of every router, one per line, until interrupted.
pub async fn tap(client: &Client, args: TapArgs) -> ExitCode {
    for (flag, v) in [
        ("--namespace", &args.namespace),
        ("--workload", &args.workload),
        ("--to", &args.to),
    ] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return fail(format!("{flag} needs a non-empty value"));
        }
    }
    let mut after: Option<u64> = None;
    let mut out = std::io::stdout();
    loop {
        let after_text = after.map(|a| a.to_string());
        let wait = TAP_WAIT_MS.to_string();
        let q = query_string(&[
            ("after", after_text.as_deref()),
            ("wait_ms", Some(&wait)),
            ("namespace", args.namespace.as_deref()),
            ("workload", args.workload.as_deref()),
            ("to", args.to.as_deref()),
        ]);
        let path = format!("/flows/tap?{q}");
        let answer = tokio::select! {
            a = client.get::<TapResponse>(&path) => a,
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        };
        let r = match answer {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        for e in &r.events {
            if writeln!(out, "{}", e.line()).is_err() {
                return ExitCode::SUCCESS;
            }
        }
        if out.flush().is_err() {
            return ExitCode::SUCCESS;
        }
        after = Some(r.next);
    }
}

/// Formats `weft top`'s table.
pub fn top_table(rows: &[TopRow]) -> String {
    let mut table = vec![[
        "TENANT".to_string(),
        "SOURCE".into(),
        "DESTINATION".into(),
        "PORT".into(),
        "PROTO".into(),
        "BYTES/S".into(),
    ]];
    for r in rows {
        table.push([
            r.tenant.clone(),
            r.src.clone(),
            r.dst.clone(),
            r.dst_port.clone(),
            r.protocol.clone(),
            format!("{:.0}", r.bytes_per_second),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| table.iter().map(|row| row[i].len()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// `weft top`: the busiest flows of the last minute, once or refreshed until interrupted.
pub async fn top(client: &Client, args: TopArgs) -> ExitCode {
    let q = query_string(&[
        ("tenant", args.tenant.as_deref()),
        ("limit", Some(&args.limit.to_string())),
    ]);
    let path = format!("/flows/top?{q}");
    loop {
        let r: TopResponse = match client.get(&path).await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        if args.once {
            print!("{}", top_table(&r.rows));
            return ExitCode::SUCCESS;
        }
        print!(
            "\x1b[2J\x1b[Hweft top: busiest flows of the last minute (every {:?}, Ctrl-C to quit)\n\n{}",
            args.refresh,
            top_table(&r.rows)
        );
        if std::io::stdout().flush().is_err() {
            return ExitCode::SUCCESS;
        }
        tokio::select! {
            _ = tokio::time::sleep(args.refresh) => {}
            _ = tokio::signal::ctrl_c() => return ExitCode::SUCCESS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_table_aligns_columns_and_rounds_rates() {
        let rows = vec![TopRow {
            tenant: "shop".into(),
            src: "shop/web".into(),
            dst: "shop/db".into(),
            dst_port: "5432".into(),
            protocol: "tcp".into(),
            bytes_per_second: 1234.6,
        }];
        assert_eq!(
            top_table(&rows),
            "TENANT  SOURCE    DESTINATION  PORT  PROTO  BYTES/S\n\
             shop    shop/web  shop/db      5432  tcp    1235\n"
        );
    }

    #[test]
    fn query_strings_leave_out_absent_values_and_escape() {
        assert_eq!(
            query_string(&[("a", Some("x y")), ("b", None), ("c", Some("n/w"))]),
            "a=x+y&c=n%2Fw"
        );
    }
}
