//! The result printed for ADD: `interfaces`, `ips`, `routes`, `dns` in the shape of the
//! configuration's `cniVersion`, appended to `prevResult` when chained.

use serde_json::{Map, Value, json};
use weft_router::cni::types::CniAttachment;

use crate::config::{NetConf, ips_have_version};

/// The ADD result for `attached` under `conf`.
pub(crate) fn add_result(conf: &NetConf, attached: &CniAttachment) -> Value {
    let prev = conf.prev_result.as_ref().and_then(Value::as_object);
    let list = |key: &str| -> Vec<Value> {
        prev.and_then(|p| p.get(key))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut interfaces = list("interfaces");
    let mut ips = list("ips");
    let mut routes = list("routes");
    let index = interfaces.len();
    let mut iface = json!({
        "name": attached.ifname,
        "mac": attached.mac,
        "sandbox": attached.sandbox,
    });
    if conf.cni_version == "1.1.0" {
        iface["mtu"] = json!(attached.mtu);
    }
    interfaces.push(iface);
    let mut ip = json!({ "address": attached.address, "interface": index });
    if ips_have_version(&conf.cni_version) {
        ip["version"] = json!("4");
    }
    ips.push(ip);
    routes.extend(attached.routes.iter().map(|dst| json!({ "dst": dst })));
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(conf.cni_version));
    out.insert("interfaces".into(), Value::Array(interfaces));
    out.insert("ips".into(), Value::Array(ips));
    out.insert("routes".into(), Value::Array(routes));
    // The network config's `dns` wins, then a previous plugin's, then the router's own server.
    let dns = conf
        .dns
        .clone()
        .or_else(|| prev.and_then(|p| p.get("dns")).cloned())
        .or_else(|| {
            attached.dns.as_ref().map(|d| {
                json!({ "nameservers": d.nameservers, "domain": d.domain, "search": [d.domain] })
            })
        })
        .unwrap_or_else(|| json!({}));
    out.insert("dns".into(), dns);
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn attached() -> CniAttachment {
        CniAttachment {
            ifname: "eth0".into(),
            mac: "02:00:00:00:00:01".into(),
            sandbox: "/run/netns/c".into(),
            address: "10.32.0.1/12".into(),
            routes: vec!["224.0.0.0/4".into()],
            mtu: 1400,
            dns: None,
        }
    }

    #[test]
    fn results_follow_the_requested_version() {
        let v1 = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"weft","dns":{"nameservers":["10.32.0.53"]}}"#)
            .expect("valid");
        let r = add_result(&v1, &attached());
        assert_eq!(r["cniVersion"], "1.0.0");
        assert_eq!(
            r["ips"][0],
            json!({"address": "10.32.0.1/12", "interface": 0})
        );
        assert_eq!(r["interfaces"][0]["sandbox"], "/run/netns/c");
        assert_eq!(r["routes"][0]["dst"], "224.0.0.0/4");
        assert_eq!(r["dns"]["nameservers"][0], "10.32.0.53");
        assert!(r["interfaces"][0].get("mtu").is_none());
        let v04 = parse(br#"{"cniVersion":"0.4.0","name":"n","type":"weft"}"#).expect("valid");
        assert_eq!(add_result(&v04, &attached())["ips"][0]["version"], "4");
        let v11 = parse(br#"{"cniVersion":"1.1.0","name":"n","type":"weft"}"#).expect("valid");
        assert_eq!(add_result(&v11, &attached())["interfaces"][0]["mtu"], 1400);
    }

    #[test]
    fn a_chained_result_is_appended_to_prev_result() {
        let conf = parse(br#"{"cniVersion":"1.0.0","name":"n","type":"weft","prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"lo0"}],"ips":[{"address":"192.168.1.2/24","interface":0}]}}"#)
            .expect("valid");
        let r = add_result(&conf, &attached());
        assert_eq!(r["interfaces"].as_array().map(Vec::len), Some(2));
        assert_eq!(r["ips"][1]["interface"], 1);
        assert_eq!(r["ips"][0]["address"], "192.168.1.2/24");
    }
}
