//! The real spind replaying captures recorded with real tools (tests/fixtures/README.md has
//! what they contain), observed with real MQTT clients over TCP and WebSocket.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Value};
use testbed::mqtt::{Mosquitto, Msg, Subscriber};
use testbed::spind::{Spind, SpindBuilder};

use crate::common::{fixture, spind};

const CLIENT_MAC: &str = "02:00:00:00:00:64";
const ROUTER_MAC: &str = "02:00:00:00:00:01";

/// IP bytes of each HTTP download in basic.pcap, both directions (fixture README).
const HTTP_V4_WWW: (u16, u64) = (55886, 108_636);
const HTTP_V4_CDN: (u16, u64) = (55828, 108_792);
const HTTP_V6_WWW: (u16, u64) = (55062, 1_147_451);

fn replay(path: &str, speed: &str) -> SpindBuilder {
    spind().arg("--replay").arg(fixture(path).to_str().unwrap()).arg("--replay-speed").arg(speed)
}

fn wait_replayed(s: &Spind) {
    testbed::wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
}

/// What the stream says about nodes, checked message by message as a client sees it.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<u64, Value>,
    gone: BTreeSet<u64>,
    /// Late subscribers see node topics with the retain flag; live forwards carry none (MQTT
    /// 3.1.1 clears it for existing subscribers).
    late: bool,
}

impl Model {
    /// Applies one message; panics if it refers to a node not announced before it.
    fn apply(&mut self, m: &Msg) {
        if let Some(id) = m.topic.strip_prefix("SPIN/traffic/node/") {
            let id: u64 = id.parse().unwrap();
            if m.payload.is_empty() {
                self.nodes.remove(&id);
            } else {
                assert!(m.retain || !self.late, "nodeInfo is retained");
                let v = m.json();
                assert_eq!(v["command"], "nodeInfo");
                assert_eq!(v["result"]["id"], json!(id));
                self.nodes.insert(id, v["result"].clone());
            }
            return;
        }
        let v = m.json();
        let known = |id: &Value| {
            let id = id.as_u64().unwrap_or_else(|| panic!("node id in {v}"));
            assert!(self.nodes.contains_key(&id), "node {id} used before its nodeInfo: {v}");
        };
        match v["command"].as_str().unwrap_or("") {
            "traffic" => {
                assert_eq!(v["argument"], "");
                for f in v["result"]["flows"].as_array().unwrap() {
                    known(&f["from"]);
                    known(&f["to"]);
                }
            }
            "dnsquery" => {
                known(&v["result"]["from"]);
                known(&v["result"]["queriednode"]);
            }
            "nodeMerged" | "nodeDeleted" => {
                assert_eq!(m.topic, "SPIN/traffic/admin");
                self.gone.insert(v["result"]["id"].as_u64().unwrap());
            }
            _ => {}
        }
    }

    fn with_domain(&self, d: &str) -> &Value {
        self.nodes
            .values()
            .find(|n| n["domains"].as_array().unwrap().iter().any(|x| x == d))
            .unwrap_or_else(|| panic!("no node carries {d}: {:#?}", self.nodes))
    }

    fn with_mac(&self, mac: &str) -> &Value {
        self.nodes.values().find(|n| n["mac"] == mac).unwrap_or_else(|| panic!("no device {mac}: {:#?}", self.nodes))
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect()
}

/// Bytes of traffic flows from `from` to `to` on destination port `to_port`, by source port.
fn bytes_by_source_port(msgs: &[Msg], from: &Value, to: &Value, to_port: u16) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for m in msgs.iter().filter(|m| m.command() == "traffic") {
        for f in m.json()["result"]["flows"].as_array().unwrap() {
            if f["from"] == from["id"] && f["to"] == to["id"] && f["to_port"] == to_port {
                *out.entry(f["from_port"].as_u64().unwrap()).or_default() += f["size"].as_u64().unwrap();
            }
        }
    }
    out
}

fn within_5_percent(got: u64, want: u64) -> bool {
    (got as f64 - want as f64).abs() <= want as f64 * 0.05
}

/// The whole stream of a replay, as seen by a subscriber of an external broker (mosquitto)
/// that was listening before spind started.
#[test]
fn replay_publishes_the_spin_stream_to_an_external_broker() {
    let broker = Mosquitto::start();
    let sub = Subscriber::connect(broker.port, false, "SPIN/#");
    let s = replay("basic.pcap", "0")
        .config_line("pubsub_run_mosquitto = 0")
        .config_line("pubsub_host = 127.0.0.1")
        .config_line(&format!("pubsub_port = {}", broker.port))
        .start();
    let msgs = sub.collect_until("the IPv6 download's traffic", Duration::from_secs(60), |got| {
        let bytes: u64 = got
            .iter()
            .filter(|m| m.command() == "traffic")
            .flat_map(|m| m.json()["result"]["flows"].as_array().unwrap().clone())
            .filter(|f| f["from_port"] == HTTP_V6_WWW.0)
            .map(|f| f["size"].as_u64().unwrap())
            .sum();
        bytes >= HTTP_V6_WWW.1
    });

    let traffic_topic: Vec<String> = msgs.iter().filter(|m| m.topic == "SPIN/traffic").map(Msg::command).collect();
    assert_eq!(traffic_topic[..4], ["serverRestart", "block", "ignore", "allow"]);

    let mut model = Model::default();
    for m in &msgs {
        model.apply(m);
    }
    let client = model.with_mac(CLIENT_MAC);
    assert_eq!(strings(&client["ips"]), ["192.168.8.100", "fd00:8::100"], "{client}");
    let router = model.with_mac(ROUTER_MAC);
    assert!(strings(&router["ips"]).contains(&"192.168.8.1"), "{router}");
    let www = model.with_domain("www.example.test.");
    assert_eq!(strings(&www["ips"]), ["198.51.100.10", "2001:db8:100::10"]);
    let cdn = model.with_domain("cdn.example.test.");
    assert_eq!(strings(&cdn["ips"]), ["198.51.100.20"], "the CNAME chain's address belongs to the queried name");
    assert_eq!(strings(&cdn["domains"]), ["cdn.example.test."]);
    let api = model.with_domain("api.example.test.");
    assert_eq!(strings(&api["ips"]), ["198.51.100.30"], "answer over TCP DNS");

    let queries: Vec<(Value, String)> = msgs
        .iter()
        .filter(|m| m.command() == "dnsquery")
        .map(|m| (m.json()["result"]["from"].clone(), m.json()["result"]["query"].as_str().unwrap().to_string()))
        .collect();
    let names: Vec<&str> = queries.iter().map(|(_, q)| q.as_str()).collect();
    assert_eq!(names, ["www.example.test.", "www.example.test.", "cdn.example.test.", "api.example.test."]);
    assert!(queries.iter().all(|(from, _)| *from == client["id"]));

    let www_bytes = bytes_by_source_port(&msgs, client, www, 80);
    let cdn_bytes = bytes_by_source_port(&msgs, client, cdn, 80);
    for ((port, want), got) in [(HTTP_V4_WWW, &www_bytes), (HTTP_V6_WWW, &www_bytes), (HTTP_V4_CDN, &cdn_bytes)] {
        let got = got.get(&u64::from(port)).copied().unwrap_or(0);
        assert!(within_5_percent(got, want), "download from port {port}: {got} bytes reported, {want} on the wire");
    }
    drop(s);
}

/// Late subscribers (TCP and WebSocket) of the embedded broker get every node retained, the
/// final state answers RPCs, and list changes reach both.
#[test]
fn embedded_broker_serves_retained_nodes_and_list_changes_over_tcp_and_websocket() {
    let s = replay("basic.pcap", "0").start();
    wait_replayed(&s);
    let tcp = Subscriber::connect(s.mqtt_port, false, "SPIN/traffic/#");
    let ws = Subscriber::connect(s.ws_port, true, "SPIN/traffic/#");
    let mut models = Vec::new();
    for sub in [&tcp, &ws] {
        let msgs = sub.collect_until("retained nodes", Duration::from_secs(20), |got| {
            let text: String = got.iter().map(|m| String::from_utf8_lossy(&m.payload)).collect();
            ["www.example.test.", "cdn.example.test.", "api.example.test.", CLIENT_MAC].iter().all(|s| text.contains(s))
        });
        let mut model = Model { late: true, ..Default::default() };
        msgs.iter().for_each(|m| model.apply(m));
        models.push(model);
    }
    let www_id = models[0].with_domain("www.example.test.")["id"].clone();
    assert_eq!(models[1].with_domain("www.example.test.")["id"], www_id);

    // The final state answers RPCs: the device and its flows.
    let devices = s.call("list_devices", json!({}));
    let client = devices.as_array().unwrap().iter().find(|d| d["mac"] == CLIENT_MAC).expect("client listed");
    let flows = s.call("list_device_flows", json!({"device": CLIENT_MAC}));
    let to_www_80 =
        flows.as_array().unwrap().iter().find(|f| f["to"] == www_id && f["dst_port"] == 80).expect("flow to www");
    let want = HTTP_V4_WWW.1 + HTTP_V6_WWW.1;
    assert!(within_5_percent(to_www_80["bytes"].as_u64().unwrap(), want), "{to_www_80}");
    assert_eq!(s.call("get_device_data", json!({"node": client["id"]}))["mac"], CLIENT_MAC);

    // Blocking the service reaches both subscribers: the list, and the node flagged.
    let cdn_id = models[0].with_domain("cdn.example.test.")["id"].clone();
    s.call("add_iplist_node", json!({"list": "block", "node": cdn_id}));
    for sub in [&tcp, &ws] {
        let msgs = sub
            .collect_until("the block list", Duration::from_secs(10), |got| got.iter().any(|m| m.command() == "block"));
        let list = msgs.iter().find(|m| m.command() == "block").unwrap();
        assert_eq!(String::from_utf8_lossy(&list.payload), r#"{"command":"block","result":["198.51.100.20"]}"#);
        let info = msgs.iter().find(|m| m.topic == format!("SPIN/traffic/node/{cdn_id}")).expect("node republished");
        assert_eq!(info.json()["result"]["is_blocked"], true);
    }
    assert_eq!(std::fs::read_to_string(s.state().join("block.list")).unwrap(), "198.51.100.20\n");
}

#[test]
fn a_pcapng_capture_replays_like_the_same_pcap() {
    let totals = |file: &str| -> Value {
        let s = replay(file, "0").start();
        wait_replayed(&s);
        let mut flows = s.call("list_device_flows", json!({"device": CLIENT_MAC}));
        for f in flows.as_array_mut().unwrap() {
            f.as_object_mut().unwrap().remove("to");
        }
        flows
    };
    let a = totals("basic.pcap");
    assert!(a.as_array().unwrap().len() >= 3, "{a}");
    assert_eq!(a, totals("basic.pcapng"));
}

#[test]
fn lists_names_and_flags_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let mut s = replay("basic.pcap", "0").state_dir(state.path()).start();
    wait_replayed(&s);
    let devices = s.call("list_devices", json!({}));
    let client = devices.as_array().unwrap().iter().find(|d| d["mac"] == CLIENT_MAC).unwrap().clone();
    s.call("set_device_name", json!({"node": client["id"], "name": "Laptop of Kim"}));
    let www = (1..40)
        .map(|id| s.rpc("get_device_data", json!({"node": id})))
        .find(|r| r["result"]["domains"].to_string().contains("www.example.test."))
        .expect("www node")["result"]
        .clone();
    s.call("add_iplist_node", json!({"list": "block", "node": www["id"]}));
    s.call("set_flow_block", json!({"node1": client["id"], "node2": www["id"], "block": 1}));
    s.terminate();

    let s = spind()
        .state_dir(state.path())
        .arg("-P")
        .arg("-e")
        .arg(format!("/tmp/spind-restart-{}.sock", testbed::free_port()))
        .start();
    assert_eq!(s.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.10", "2001:db8:100::10"]));
    let blocks = s.call("get_flow_block", json!({}));
    let pair = &blocks[0];
    let nodes: Vec<Value> =
        [&pair["node1"], &pair["node2"]].iter().map(|id| s.call("get_device_data", json!({"node": id}))).collect();
    let device = nodes.iter().find(|n| n["mac"] == CLIENT_MAC).expect("device restored");
    assert_eq!(device["name"], "Laptop of Kim");
    let server = nodes.iter().find(|n| n["mac"].is_null()).unwrap();
    assert_eq!(server["is_blocked"], true);
    assert!(server["domains"].to_string().contains("www.example.test."));
    let names = std::fs::read_to_string(state.path().join("names.conf")).unwrap();
    assert!(names.contains("name: 02:00:00:00:00:64 Laptop of Kim"), "{names}");
}

/// A capture of a LAN (192.168.8.0/24) behind a router whose MAC also carries hosts of other
/// private networks: 10.20.30.40 (double NAT, a VPN) and 192.168.50.7 (another home subnet).
/// Written here: classic pcap, Ethernet, one frame per millisecond.
fn capture_behind_a_router(path: &std::path::Path) {
    use etherparse::PacketBuilder;
    let router = [0x02, 0, 0, 0, 0, 0x01];
    let device = [0x02, 0, 0, 0, 0, 0x64];
    let (router_ip, device_ip) = ([192, 168, 8, 1], [192, 168, 8, 100]);
    let arp = |op: u16, mac: [u8; 6], ip: [u8; 4], target: [u8; 4]| {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&mac);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
        v.extend_from_slice(&op.to_be_bytes());
        v.extend_from_slice(&mac);
        v.extend_from_slice(&ip);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&target);
        v
    };
    let tcp = |from: [u8; 6], to: [u8; 6], src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, syn: bool, len: usize| {
        let mut v = Vec::new();
        let b = PacketBuilder::ethernet2(from, to).ipv4(src, dst, 64).tcp(sp, dp, 1, 1000);
        let b = if syn { b.syn() } else { b.ack(1) };
        b.write(&mut v, &vec![0u8; len]).unwrap();
        v
    };
    let mut frames = vec![arp(1, device, device_ip, router_ip), arp(2, router, router_ip, device_ip)];
    for (remote, port) in [([10, 20, 30, 40], 443), ([192, 168, 50, 7], 8080)] {
        frames.push(tcp(device, router, device_ip, remote, 40000, port, true, 0));
        for _ in 0..5 {
            frames.push(tcp(router, device, remote, device_ip, port, 40000, false, 1000));
            frames.push(tcp(device, router, device_ip, remote, 40000, port, false, 0));
        }
    }
    // The device talks to the router itself too (its LAN address is the router's own).
    frames.push(tcp(device, router, device_ip, router_ip, 40001, 80, true, 0));
    frames.push(tcp(router, device, router_ip, device_ip, 80, 40001, false, 500));

    let mut out = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0];
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1_700_000_000u32.to_le_bytes());
        out.extend_from_slice(&(i as u32 * 1000).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

/// In replay mode an address joins a device only when the capture shows the device owning it:
/// the remote hosts behind the router's MAC are remote nodes, not the router's, and blocking one
/// of them leaves the router's LAN address alone.
#[test]
fn private_addresses_behind_a_router_are_remote_nodes_not_the_routers() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("behind-router.pcap");
    capture_behind_a_router(&pcap);
    let s = spind().arg("--replay").arg(pcap.to_str().unwrap()).arg("--replay-speed").arg("0").start();
    wait_replayed(&s);
    let devices = s.call("list_devices", json!({}));
    let router = devices.as_array().unwrap().iter().find(|d| d["mac"] == ROUTER_MAC).expect("router device").clone();
    assert_eq!(router["ips"], json!(["192.168.8.1"]), "the router's device holds only its own address: {router}");
    let client = devices.as_array().unwrap().iter().find(|d| d["mac"] == CLIENT_MAC).expect("client device");
    assert_eq!(client["ips"], json!(["192.168.8.100"]));

    let flows = s.call("list_device_flows", json!({"device": CLIENT_MAC}));
    let mut remotes = Vec::new();
    for f in flows.as_array().unwrap() {
        let n = s.call("get_device_data", json!({"node": f["to"]}));
        if n["mac"].is_null() {
            remotes.push(n);
        }
    }
    let ips: BTreeSet<String> = remotes.iter().map(|n| n["ips"].to_string()).collect();
    assert_eq!(
        ips,
        BTreeSet::from([r#"["10.20.30.40"]"#.to_string(), r#"["192.168.50.7"]"#.to_string()]),
        "{remotes:?}"
    );

    let vpn = remotes.iter().find(|n| n["ips"] == json!(["10.20.30.40"])).unwrap();
    s.call("add_iplist_node", json!({"list": "block", "node": vpn["id"]}));
    assert_eq!(s.call("list_iplist", json!({"list": "block"})), json!(["10.20.30.40"]));
    assert!(
        s.call("get_device_data", json!({"node": router["id"]}))["is_blocked"].is_null(),
        "the router is not blocked"
    );
}
