//! Services switched off on a live router (root, issue 13), in the namespaces of `names_netns`
//! (two devices, a real dnsmasq on the router that also answers for some of TikTok's names):
//! `set_service` for one device gets that device `0.0.0.0` for the service's names and the
//! names below them while the other device resolves them; for the whole network both get it;
//! the switches survive a restart of spind; switching the service on again restores the
//! answers; and every blocked query is published as SPIN's `blocked` message from the device to
//! the node of the name, which the UI draws as a blocked edge.

use std::time::Duration;

use serde_json::{json, Value};
use testbed::mqtt::{Msg, Subscriber};
use testbed::netns::CLIENT_MAC;
use testbed::{root_or_skip, wait_for};

use crate::names_netns::Home;

const TIKTOK: &str = "198.51.100.40";

/// `dig` from `device` until it answers `want` (a rule takes effect with the next policy the
/// verdict thread reads; the machine may be slow).
fn dig_until(h: &Home, device: u8, name: &str, want: &str) {
    wait_for(&format!("device {device}'s answer {want} for {name}"), Duration::from_secs(30), || {
        (h.dig(device, name, "A") == want).then_some(())
    });
}

fn subscribe(h: &Home) -> Subscriber {
    let port = h.spind.as_ref().unwrap().mqtt_port;
    h.topo.in_router(move || Subscriber::connect(port, false, "SPIN/traffic/#"))
}

/// The ids of the nodes whose `nodeInfo` (among `msgs`, retained ones included) names `domain`.
fn nodes_named(msgs: &[Msg], domain: &str) -> Vec<Value> {
    msgs.iter()
        .filter(|m| m.command() == "nodeInfo")
        .map(Msg::json)
        .filter(|j| j["result"]["domains"].as_array().is_some_and(|ds| ds.iter().any(|d| d == domain)))
        .map(|j| j["result"]["id"].clone())
        .collect()
}

/// A `blocked` message to the node of `domain`, on port 53 (a DNS query answered by spind).
fn blocked_query_to(msgs: &[Msg], domain: &str) -> Option<Value> {
    let nodes = nodes_named(msgs, domain);
    msgs.iter()
        .filter(|m| m.command() == "blocked")
        .map(|m| m.json()["result"].clone())
        .find(|r| nodes.contains(&r["to"]) && r["to_port"] == 53)
}

#[test]
fn a_service_switched_off_answers_its_names_with_0_0_0_0_per_device_or_for_all_and_is_published() {
    if !root_or_skip("a_service_switched_off_answers_its_names_with_0_0_0_0_per_device_or_for_all_and_is_published") {
        return;
    }
    let mut h = Home::with_host_records(&[&format!("tiktok.com,{TIKTOK}"), &format!("www.tiktok.com,{TIKTOK}")]);
    h.ensure_dns_queue();
    assert_eq!(h.dig(1, "www.tiktok.com", "A"), TIKTOK, "nothing switched off: the router's answer");
    let listed = h.call("list_services", json!({"device": CLIENT_MAC}));
    let tiktok = listed.as_array().unwrap().iter().find(|s| s["id"] == "tiktok").cloned().unwrap();
    assert_eq!(tiktok, json!({"id": "tiktok", "name": "TikTok", "blocked": false, "blocked_everywhere": false}));

    // For device 1 only: its query for the name and for one below it gets 0.0.0.0 from spind.
    let sub = subscribe(&h);
    assert_eq!(h.call("set_service", json!({"service": "tiktok", "device": CLIENT_MAC, "blocked": true})), json!(null));
    dig_until(&h, 1, "www.tiktok.com", "0.0.0.0");
    assert_eq!(h.dig(1, "tiktok.com", "A"), "0.0.0.0");
    assert_eq!(h.dig(1, "www.tiktok.com", "AAAA"), "::");
    assert_eq!(h.dig(2, "www.tiktok.com", "A"), TIKTOK, "the other device still resolves");
    assert_eq!(h.dig(1, "www.example.test", "A"), "198.51.100.10", "other names pass");

    // The blocked query on MQTT: `blocked` from device 1 to the node named www.tiktok.com.
    let got = sub.collect_until("a blocked message for www.tiktok.com", Duration::from_secs(30), |msgs| {
        blocked_query_to(msgs, "www.tiktok.com.").is_some()
    });
    let blocked = blocked_query_to(&got, "www.tiktok.com.").unwrap();
    let device = got
        .iter()
        .filter(|m| m.command() == "nodeInfo")
        .map(Msg::json)
        .find(|j| j["result"]["id"] == blocked["from"])
        .map(|j| j["result"].clone());
    let device = device.unwrap_or_else(|| h.call("get_device_data", json!({"node": blocked["from"]})));
    assert_eq!(device["mac"], CLIENT_MAC, "from the device that asked: {device}");
    assert!(got.iter().any(|m| m.command() == "services"), "the switch is published");

    // For the whole network: device 2 too.
    h.call("set_service", json!({"service": "tiktok", "blocked": true}));
    dig_until(&h, 2, "www.tiktok.com", "0.0.0.0");
    let listed = h.call("list_services", json!({}));
    let tiktok = listed.as_array().unwrap().iter().find(|s| s["id"] == "tiktok").cloned().unwrap();
    assert_eq!(tiktok["blocked_everywhere"], true);

    // Bad input is refused, naming the field, and changes nothing.
    let e = h.rpc("set_service", json!({"service": "nosuch", "blocked": false}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'service'"), "{e}");
    let e = h.rpc("set_service", json!({"service": "tiktok", "device": "02:00", "blocked": false}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'device'"), "{e}");
    assert_eq!(h.dig(2, "www.tiktok.com", "A"), "0.0.0.0");

    // A restart of spind keeps both switches.
    h.kill9_spind();
    h.start_spind();
    h.ensure_dns_queue();
    dig_until(&h, 2, "www.tiktok.com", "0.0.0.0");
    assert_eq!(h.dig(1, "tiktok.com", "A"), "0.0.0.0");

    // Switched on again: both resolve.
    h.call("set_service", json!({"service": "tiktok", "blocked": false}));
    dig_until(&h, 2, "www.tiktok.com", TIKTOK);
    assert_eq!(h.dig(1, "www.tiktok.com", "A"), "0.0.0.0", "device 1's own switch is still off");
    h.call("set_service", json!({"service": "tiktok", "device": CLIENT_MAC, "blocked": false}));
    dig_until(&h, 1, "www.tiktok.com", TIKTOK);
    assert_eq!(h.dig(1, "tiktok.com", "A"), TIKTOK);
}
