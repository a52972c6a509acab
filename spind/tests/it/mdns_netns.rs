//! Names from mDNS on a live router (root): the client namespace sends a real mDNS
//! announcement (UDP 5353 to 224.0.0.251:5353, built by python3), the router's nftables copies
//! it to spind over NFLOG, and `list_devices` shows what it says: its services feed the type
//! guess, and its name shows once no DHCP name wins over it.

use std::time::Duration;

use serde_json::{json, Value};
use testbed::netns::{sh, CLIENT_MAC, CLIENT_V4};
use testbed::{root_or_skip, wait_for};

use crate::router_netns::Router;

/// An announcement of `Living-Room.local` at the client's address offering `_googlecast._tcp`,
/// sent from port 5353 to the mDNS group.
const ANNOUNCE: &str = r#"
import socket, struct, sys
def name(s):
    return b"".join(bytes([len(l)]) + l.encode() for l in s.split(".")) + b"\0"
def rr(n, t, data, ttl=120):
    return name(n) + struct.pack("!HHIH", t, 0x8001, ttl, len(data)) + data
inst = "Living-Room._googlecast._tcp.local"
answers = [rr("_googlecast._tcp.local", 12, name(inst), 4500)]
extra = [rr(inst, 33, struct.pack("!HHH", 0, 0, 8009) + name("Living-Room.local")),
         rr("Living-Room.local", 1, socket.inet_aton(sys.argv[1]))]
msg = struct.pack("!HHHHHH", 0, 0x8400, 0, len(answers), 0, len(extra)) + b"".join(answers + extra)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.bind(("0.0.0.0", 5353))
s.sendto(msg, ("224.0.0.251", 5353))
"#;

fn client(r: &Router) -> Option<Value> {
    let list = r.call("list_devices", json!({}));
    list.as_array()?.iter().find(|d| d["mac"] == CLIENT_MAC).cloned()
}

/// Announces until the client shows `services`, and returns it.
fn announced_until(r: &Router, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, Duration::from_secs(30), || {
        sh(&["ip", "netns", "exec", &r.topo.client, "python3", "-c", ANNOUNCE, CLIENT_V4]);
        std::thread::sleep(Duration::from_millis(300));
        client(r).filter(|c| done(c))
    })
}

#[test]
fn an_mdns_announcement_names_and_types_a_device() {
    if !root_or_skip("an_mdns_announcement_names_and_types_a_device") {
        return;
    }
    let r = Router::new();
    // No mDNS responder runs on the router: spind joins the group on the LAN itself (the kernel
    // takes a group's packets in, to the input hook, only for a joined group).
    // The client talks to the router first, so the neighbour table knows its MAC.
    assert_eq!(r.topo.dig("www.example.test", "A"), "198.51.100.10");
    let c = announced_until(&r, "the client's mDNS services", |c| c["services"] == json!(["_googlecast._tcp"]));
    // The DHCP name wins over the announced one (and its "laptop" says more than a service).
    assert_eq!((&c["name"], &c["type"]), (&json!("kims-laptop"), &json!("laptop")), "{c}");
    let table = sh(&["ip", "netns", "exec", &r.topo.router, "nft", "list", "table", "inet", "spin"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("comment \"mdns\""));

    // Without the lease, the announced name shows, and the type follows its services.
    std::fs::write(r.topo.work.path().join("dhcp.leases"), "").unwrap();
    let c = announced_until(&r, "the client named by mDNS", |c| c["name"] == "Living-Room");
    assert_eq!((&c["type"], &c["type_source"]), (&json!("tv"), &json!("guess")), "{c}");

    // The user's type is not overridden by what it announces.
    r.call("set_device_type", json!({"device": CLIENT_MAC, "type": "console"}));
    let c = announced_until(&r, "the user's type", |c| c["type_source"] == "user");
    assert_eq!((&c["name"], &c["type"]), (&json!("Living-Room"), &json!("console")), "{c}");
}
