//! spind on a live Linux router (root): client — router — server in network namespaces, real
//! DNS (dnsmasq), HTTP, NAT and the real kernel's conntrack, NFLOG and nftables. spind runs in
//! the router namespace; the test talks to it from there with a real MQTT client and JSON-RPC.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::http::{call_http, rpc_http};
use testbed::mqtt::{Msg, Subscriber};
use testbed::netns::{Topology, CLIENT_MAC, CLIENT_V4, CLIENT_V6};
use testbed::spind::Spind;
use testbed::{root_or_skip, wait_for};

use crate::common::spind;
use crate::extsrc_input::pkt_info;

pub(crate) struct Router {
    pub(crate) topo: Topology,
    pub(crate) spind: Option<Spind>,
    pub(crate) state: tempfile::TempDir,
    leases: std::path::PathBuf,
    /// Extra command-line arguments of spind (SPIN's flags).
    args: Vec<String>,
}

impl Router {
    pub(crate) fn new() -> Router {
        Router::with_args(&[])
    }

    /// spind in the router started with these extra arguments (e.g. `-e SOCKET`, `-P`).
    fn with_args(args: &[&str]) -> Router {
        let mut topo = Topology::new();
        topo.start_services();
        let state = tempfile::tempdir().unwrap();
        let leases = topo.work.path().join("dhcp.leases");
        std::fs::write(&leases, format!("{} {CLIENT_MAC} {CLIENT_V4} kims-laptop 01:{CLIENT_MAC}\n", 4_000_000_000u64))
            .unwrap();
        let args = args.iter().map(|a| a.to_string()).collect();
        let mut r = Router { topo, spind: None, state, leases, args };
        r.start_spind();
        r
    }

    pub(crate) fn start_spind(&mut self) {
        let mut b = spind()
            .netns(&self.topo.router)
            .state_dir(self.state.path())
            .config_line(&format!("dhcp_leases_file = {}", self.leases.display()))
            // This router has no resolver of its own: the client asks the server's, as SPIN's
            // users did, and spind observes it (the redirect is `dns_guard_netns`'s).
            .config_line("dns_redirect = 0");
        for a in &self.args {
            b = b.arg(a.clone());
        }
        let s = b.spawn();
        let port = s.http_port;
        self.topo.in_router(move || {
            // Generous: a debug spind started under 50,000 flows on a busy CI machine.
            wait_for("spind's web port in the router", Duration::from_secs(60), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            })
        });
        self.spind = Some(s);
    }

    pub(crate) fn port(&self) -> u16 {
        self.spind.as_ref().unwrap().http_port
    }

    pub(crate) fn call(&self, method: &'static str, params: Value) -> Value {
        let port = self.port();
        self.topo.in_router(move || call_http(port, method, params))
    }

    pub(crate) fn rpc(&self, method: &'static str, params: Value) -> Value {
        let port = self.port();
        self.topo.in_router(move || rpc_http(port, method, params))
    }

    fn subscribe(&self) -> Subscriber {
        let port = self.spind.as_ref().unwrap().mqtt_port;
        self.topo.in_router(move || Subscriber::connect(port, false, "SPIN/#"))
    }

    /// The id of the node that has `ip`.
    fn node_with_ip(&self, ip: &str) -> u64 {
        wait_for(&format!("a node with {ip}"), Duration::from_secs(10), || {
            (1..200).find_map(|id| {
                let r = self.rpc("get_device_data", json!({"node": id}));
                r["result"]["ips"].as_array()?.iter().any(|x| x == ip).then_some(id)
            })
        })
    }

    pub(crate) fn kill_spind(&mut self) {
        let mut s = self.spind.take().unwrap();
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
}

/// Both directions of all traffic flows from node `from` to node `to` on port `port`.
fn flow_bytes(msgs: &[Msg], from: u64, to: u64, port: u64) -> u64 {
    msgs.iter()
        .filter(|m| m.command() == "traffic")
        .flat_map(|m| m.json()["result"]["flows"].as_array().unwrap().clone())
        .filter(|f| f["from"] == from && f["to"] == to && f["to_port"] == port)
        .map(|f| f["size"].as_u64().unwrap())
        .sum()
}

fn latest_node_info(msgs: &[Msg], pred: impl Fn(&Value) -> bool) -> Option<Value> {
    msgs.iter()
        .rev()
        .filter(|m| m.topic.starts_with("SPIN/traffic/node/") && !m.payload.is_empty())
        .map(|m| m.json()["result"].clone())
        .find(|n| pred(n))
}

#[test]
fn router_reports_devices_names_and_traffic_from_the_kernel() {
    if !root_or_skip("router_reports_devices_names_and_traffic_from_the_kernel") {
        return;
    }
    let r = Router::new();
    let sub = r.subscribe();
    assert_eq!(r.topo.dig("www.example.test", "A"), "198.51.100.10");
    assert_eq!(r.topo.dig("www.example.test", "AAAA"), "2001:db8:100::10");
    let v4 = r.topo.curl("http://198.51.100.10/file1m", "10").expect("IPv4 download");
    let v6 = r.topo.curl("http://[2001:db8:100::10]/file1m", "10").expect("IPv6 download");
    assert_eq!((v4, v6), (1_048_576, 1_048_576));

    let start = Instant::now();
    let msgs = sub.collect_until("both downloads in traffic messages", Duration::from_secs(15), |got| {
        let Some(client) = latest_node_info(got, |n| n["mac"] == CLIENT_MAC) else { return false };
        let Some(server) = latest_node_info(got, |n| n["domains"].to_string().contains("www.example.test.")) else {
            return false;
        };
        flow_bytes(got, client["id"].as_u64().unwrap(), server["id"].as_u64().unwrap(), 80) >= v4 + v6
    });
    eprintln!("stream complete {:?} after the downloads", start.elapsed());
    let client = latest_node_info(&msgs, |n| n["mac"] == CLIENT_MAC).unwrap();
    let server = latest_node_info(&msgs, |n| n["domains"].to_string().contains("www.example.test.")).unwrap();
    assert_eq!(client["name"], "kims-laptop", "named from the DHCP leases: {client}");
    let ips = client["ips"].to_string();
    assert!(ips.contains(CLIENT_V4) && ips.contains(CLIENT_V6), "{client}");
    let sips = server["ips"].to_string();
    assert!(sips.contains("198.51.100.10") && sips.contains("2001:db8:100::10"), "{server}");

    // conntrack counts whole packets both ways; with 9000-byte frames that is ~1% over curl's.
    let bytes = flow_bytes(&msgs, client["id"].as_u64().unwrap(), server["id"].as_u64().unwrap(), 80);
    let want = (v4 + v6) as f64;
    assert!((bytes as f64 - want).abs() <= want * 0.05, "reported {bytes} bytes for {want} downloaded");

    // The ISP gateway is a neighbour of the router on wan0 (the default route's interface):
    // no device, so no node with its address carries a MAC.
    let gateway = latest_node_info(&msgs, |n| {
        n["ips"].to_string().contains("\"203.0.113.2\"") || n["ips"].to_string().contains("\"2001:db8:ffff::2\"")
    });
    assert!(gateway.as_ref().is_none_or(|g| g["mac"].is_null()), "WAN gateway became a device: {gateway:?}");

    let queries: Vec<Value> =
        msgs.iter().filter(|m| m.command() == "dnsquery").map(|m| m.json()["result"].clone()).collect();
    assert!(
        queries.iter().any(|q| q["query"] == "www.example.test."
            && q["from"] == client["id"]
            && q["queriednode"] == server["id"]),
        "{queries:?}"
    );

    // A lease change renames the device.
    std::fs::write(&r.leases, format!("{} {CLIENT_MAC} {CLIENT_V4} kims-tablet *\n", 4_000_000_000u64)).unwrap();
    let msgs = sub.collect_until("the device renamed from the new lease", Duration::from_secs(10), |got| {
        latest_node_info(got, |n| n["mac"] == CLIENT_MAC).is_some_and(|n| n["name"] == "kims-tablet")
    });
    assert!(!msgs.is_empty());
}

fn blocked_now(r: &Router, url: &str) -> bool {
    r.topo.curl(url, "1").is_none()
}

#[test]
fn router_enforces_blocks_allows_flow_blocks_and_ignores_across_restarts() {
    if !root_or_skip("router_enforces_blocks_allows_flow_blocks_and_ignores_across_restarts") {
        return;
    }
    let mut r = Router::new();
    let sub = r.subscribe();
    let www = "http://198.51.100.10/file100k";
    let other = "http://198.51.100.20/file100k";
    assert!(r.topo.curl(www, "5").is_some() && r.topo.curl(other, "5").is_some());
    let server = r.node_with_ip("198.51.100.10");
    let client = r.node_with_ip(CLIENT_V4);

    // Block the server: the next download fails (curl gives up after 1 s), and `blocked` is
    // reported.
    r.call("add_iplist_node", json!({"list": "block", "node": server}));
    assert!(blocked_now(&r, www), "download still works after the block");
    assert!(!blocked_now(&r, other), "only the blocked node is affected");
    let msgs = sub
        .collect_until("blocked messages", Duration::from_secs(5), |got| got.iter().any(|m| m.command() == "blocked"));
    let b = msgs.iter().find(|m| m.command() == "blocked").unwrap().json();
    assert!(b["result"]["from"] == client || b["result"]["to"] == server, "{b}");

    // Allowing the client overrides the block; withdrawing the allow restores it.
    r.call("add_iplist_node", json!({"list": "allow", "node": client}));
    assert!(!blocked_now(&r, www), "allow does not override block");
    r.call("remove_iplist_node", json!({"list": "allow", "node": client}));
    assert!(blocked_now(&r, www));

    // spind stops: the kernel keeps blocking. It comes back with its lists, flags and table.
    r.kill_spind();
    assert!(blocked_now(&r, www), "the block did not hold while spind was down");
    r.start_spind();
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.10"]));
    let restored = r.node_with_ip("198.51.100.10");
    assert_eq!(r.call("get_device_data", json!({"node": restored}))["is_blocked"], true);
    let table = testbed::netns::sh(&["ip", "netns", "exec", &r.topo.router, "nft", "list", "table", "inet", "spin"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("198.51.100.10"));
    assert!(blocked_now(&r, www));
    r.call("remove_iplist_node", json!({"list": "block", "node": restored}));
    assert!(!blocked_now(&r, www), "unblocking did not restore traffic");

    // A flow block stops exactly that pair.
    assert!(r.topo.curl(www, "5").is_some());
    let client = r.node_with_ip(CLIENT_V4);
    r.call("set_flow_block", json!({"node1": client, "node2": restored, "block": 1}));
    assert!(blocked_now(&r, www), "flow block not enforced");
    assert!(!blocked_now(&r, other), "flow block hit another pair");
    r.call("set_flow_block", json!({"node1": client, "node2": restored, "block": 0}));
    assert!(!blocked_now(&r, www));

    // Ignored addresses: no traffic and no DNS queries of theirs are published.
    r.call("add_iplist_node", json!({"list": "ignore", "node": client}));
    // Subscribed once the ignore is in force: a traffic message of the steps before it (a busy
    // machine may publish one late) is not what this checks.
    let sub = r.subscribe();
    r.topo.dig("www.example.test", "A");
    r.topo.curl(www, "5").expect("ignored traffic still flows");
    // A marker after the ignored traffic: once it is seen, everything before it has been too.
    std::thread::sleep(Duration::from_millis(1500));
    r.call("add_iplist_ip", json!({"list": "allow", "ip": "192.0.2.99"}));
    let msgs =
        sub.collect_until("the marker", Duration::from_secs(10), |got| got.iter().any(|m| m.command() == "allow"));
    for m in &msgs {
        let v = m.json();
        match m.command().as_str() {
            "traffic" => assert!(
                v["result"]["flows"].as_array().unwrap().iter().all(|f| f["from"] != client && f["to"] != client),
                "ignored traffic published: {v}"
            ),
            "dnsquery" => assert_ne!(v["result"]["from"], client, "ignored query published: {v}"),
            _ => {}
        }
    }
}

#[test]
fn a_block_comes_back_by_itself_after_the_ruleset_is_flushed() {
    if !root_or_skip("a_block_comes_back_by_itself_after_the_ruleset_is_flushed") {
        return;
    }
    let r = Router::new();
    let www = "http://198.51.100.10/file100k";
    assert!(r.topo.curl(www, "5").is_some());
    let server = r.node_with_ip("198.51.100.10");
    r.call("add_iplist_node", json!({"list": "block", "node": server}));
    assert!(blocked_now(&r, www));
    let sub = r.subscribe();

    // An admin reloads another firewall: every table is gone, ours too.
    testbed::netns::sh(&["ip", "netns", "exec", &r.topo.router, "nft", "flush", "ruleset"]);
    // spind notices on its next check and puts the table back, without any list change.
    wait_for("table inet spin restored", Duration::from_secs(30), || {
        spin_table(&r).filter(|t| t.contains("198.51.100.10"))
    });
    assert!(blocked_now(&r, www), "the block did not come back");
    // The restore is counted in the statistics (published every 30 s).
    let msgs = sub.collect_until("SPIN/stat/enforce/restored", Duration::from_secs(40), |got| {
        got.iter().any(|m| m.topic == "SPIN/stat/enforce/restored")
    });
    let stat = msgs.iter().find(|m| m.topic == "SPIN/stat/enforce/restored").unwrap().json();
    assert!(stat["value"].as_u64() >= Some(1), "one restore at least: {stat}");
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.10"]), "the list is unchanged");
}

/// Whether `table inet spin` exists in the router namespace.
fn spin_table(r: &Router) -> Option<String> {
    let out =
        testbed::netns::sh_lenient(&["ip", "netns", "exec", &r.topo.router, "nft", "list", "table", "inet", "spin"])
            .expect("ip netns exec ... nft");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn send_extsrc(sock: &std::path::Path, msg: &[u8]) {
    testbed::wait_for("spind's extsrc socket", Duration::from_secs(10), || sock.exists().then_some(()));
    std::os::unix::net::UnixDatagram::unbound().unwrap().send_to(msg, sock).unwrap();
}

/// SPIN 1.0 on a router runs `spind -c CONF -j SOCKET -e SOCKET -o`: `-e` adds the extsrc input
/// beside the kernel's, it does not replace them (reference §5.3, §4.5). The router still reports
/// conntrack flows, enforces blocks in nftables, and takes extsrc messages too.
#[test]
fn an_extsrc_socket_without_passive_mode_keeps_the_kernel_inputs_and_the_firewall() {
    if !root_or_skip("an_extsrc_socket_without_passive_mode_keeps_the_kernel_inputs_and_the_firewall") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("extsrc.sock");
    let r = Router::with_args(&["-e", sock.to_str().unwrap()]);
    let sub = r.subscribe();
    let v4 = r.topo.curl("http://198.51.100.10/file1m", "10").expect("IPv4 download");
    let msgs = sub.collect_until("the download in conntrack's traffic messages", Duration::from_secs(15), |got| {
        let Some(client) = latest_node_info(got, |n| n["mac"] == CLIENT_MAC) else { return false };
        let Some(server) = latest_node_info(got, |n| n["ips"].to_string().contains("\"198.51.100.10\"")) else {
            return false;
        };
        flow_bytes(got, client["id"].as_u64().unwrap(), server["id"].as_u64().unwrap(), 80) >= v4
    });
    assert!(!msgs.is_empty());

    // The extsrc input works beside the kernel's.
    send_extsrc(&sock, &pkt_info([192, 168, 8, 100], [203, 0, 113, 99], 8443, 777, 3));
    sub.collect_until("the extsrc flow", Duration::from_secs(10), |got| {
        got.iter().any(|m| m.command() == "traffic" && m.json()["result"]["flows"].to_string().contains("\"size\":777"))
    });

    // And blocks are enforced by the kernel.
    assert!(spin_table(&r).is_some(), "no table inet spin with -e");
    let server = r.node_with_ip("198.51.100.10");
    r.call("add_iplist_node", json!({"list": "block", "node": server}));
    assert!(blocked_now(&r, "http://198.51.100.10/file100k"), "the block is not enforced with -e");
    assert!(spin_table(&r).unwrap().contains("198.51.100.10"));
}

/// `-P -e SOCKET` (SPIN's passive mode, §7.2's acceptance command line): extsrc is the only input
/// and the firewall is never touched, also when something is blocked.
#[test]
fn passive_mode_with_extsrc_reads_only_extsrc_and_touches_no_firewall() {
    if !root_or_skip("passive_mode_with_extsrc_reads_only_extsrc_and_touches_no_firewall") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("extsrc.sock");
    let r = Router::with_args(&["-P", "-e", sock.to_str().unwrap()]);
    let sub = r.subscribe();
    assert_eq!(r.topo.dig("www.example.test", "A"), "198.51.100.10");
    assert!(r.topo.curl("http://198.51.100.10/file100k", "5").is_some());
    // conntrack would have reported the download within a second or two.
    std::thread::sleep(Duration::from_millis(2500));
    send_extsrc(&sock, &pkt_info([192, 168, 8, 100], [203, 0, 113, 99], 8443, 777, 3));
    let msgs = sub.collect_until("the extsrc flow", Duration::from_secs(10), |got| {
        got.iter().any(|m| m.command() == "traffic" && m.json()["result"]["flows"].to_string().contains("\"size\":777"))
    });
    for m in &msgs {
        let v = m.json();
        assert_ne!(m.command(), "dnsquery", "a DNS copy from the kernel in passive mode: {v}");
        if m.command() == "traffic" {
            for f in v["result"]["flows"].as_array().unwrap() {
                assert_eq!(f["size"], 777, "a flow that did not come from extsrc: {v}");
            }
        }
        if let Some(n) = m.topic.strip_prefix("SPIN/traffic/node/") {
            assert!(
                !m.payload.is_empty() && !m.json()["result"]["mac"].is_string(),
                "a device from the kernel's neighbours: node {n} {v}"
            );
        }
    }
    assert!(spin_table(&r).is_none(), "passive mode created table inet spin");
    r.call("add_iplist_ip", json!({"list": "block", "ip": "198.51.100.10"}));
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.10"]));
    assert!(spin_table(&r).is_none(), "a block in passive mode touched the firewall");
    assert!(r.topo.curl("http://198.51.100.10/file100k", "5").is_some(), "passive mode dropped traffic");
}

/// Datagrams counted by the server's `inet probe` table (see the test below).
fn probes_arrived(r: &Router) -> u64 {
    let out = testbed::netns::sh(&[
        "ip",
        "netns",
        "exec",
        &r.topo.server,
        "nft",
        "list",
        "counter",
        "inet",
        "probe",
        "arrived",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let packets = text.split_whitespace().skip_while(|w| *w != "packets").nth(1);
    packets.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no probe counter: {text}"))
}

#[test]
fn a_restart_under_50000_flows_leaves_no_gap_in_a_block() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    if !root_or_skip("a_restart_under_50000_flows_leaves_no_gap_in_a_block") {
        return;
    }
    let mut r = Router::new();
    // The server counts what reaches it on the probe port.
    testbed::netns::nft_in(
        &r.topo.server,
        "table inet probe {\n counter arrived {}\n chain input {\n type filter hook input priority 0;\n udp dport 7777 counter name arrived\n }\n}\n",
    );
    // A probe from the client to 198.51.100.30:7777 every millisecond, until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let probes_sent = Arc::new(AtomicU64::new(0));
    let probe = {
        let (stop, sent) = (stop.clone(), probes_sent.clone());
        testbed::netns::spawn_in_netns(&r.topo.client, move || {
            let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            while !stop.load(Ordering::Relaxed) {
                if s.send_to(b"probe", "198.51.100.30:7777").is_ok() {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    wait_for("the probes to reach the server unblocked", Duration::from_secs(20), || {
        (probes_arrived(&r) > 100).then_some(())
    });
    r.call("add_iplist_ip", json!({"list": "block", "ip": "198.51.100.30"}));
    // Blocked: the counter stands still for a second in which the prober did send (on a busy
    // machine the prober can stall for a second, and a still counter would prove nothing).
    let before = wait_for("the block to stop the probes", Duration::from_secs(30), || {
        let (a, sent) = (probes_arrived(&r), probes_sent.load(Ordering::Relaxed));
        std::thread::sleep(Duration::from_secs(1));
        let sent_since = probes_sent.load(Ordering::Relaxed) - sent;
        (probes_arrived(&r) == a && sent_since >= 50).then_some(a)
    });

    // 50,000 other flows through the router, then spind is killed and started again twice
    // (kill -9, and a stop by SIGTERM) while the load and the probes go on.
    let count = Arc::new(AtomicU64::new(0));
    let flows = testbed::load::Flows {
        sources: vec![CLIENT_V4.parse().unwrap()],
        dst: "198.51.100.10".parse().unwrap(),
        dst_port: 9000,
        dst_ports: 16,
        n: 50_000,
    };
    let load = testbed::load::send_flows(&r.topo.client, flows, stop.clone(), count.clone());
    wait_for("the load to run", Duration::from_secs(30), || (count.load(Ordering::Relaxed) > 100_000).then_some(()));
    r.kill_spind();
    r.start_spind();
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.30"]));
    let pid = r.spind.as_ref().unwrap().child.id().to_string();
    let sh = testbed::netns::shell();
    testbed::runner::cmd!(sh, "kill -TERM {pid}").run().unwrap();
    let _ = r.spind.as_mut().unwrap().child.wait();
    r.spind = None;
    r.start_spind();
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!(["198.51.100.30"]));
    // A few more seconds of probes against the restarted spind (at least 500 of them).
    let sent_before = probes_sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    wait_for("500 more probes", Duration::from_secs(30), || {
        (probes_sent.load(Ordering::Relaxed) - sent_before >= 500).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    probe.join().unwrap();
    let sent = load.join().unwrap().expect("the flow load");
    let after = probes_arrived(&r);
    assert!(sent > 100_000, "the load sent only {sent} datagrams");
    assert_eq!(after, before, "{} probes reached the blocked server while spind restarted", after - before);
}

#[test]
fn a_frozen_spind_under_a_netlink_storm_counts_the_overruns_and_recovers() {
    if !root_or_skip("a_frozen_spind_under_a_netlink_storm_counts_the_overruns_and_recovers") {
        return;
    }
    let r = Router::new();
    let sub = r.subscribe();
    // A storm: for 8 s, datagrams to the server's port 53 from one socket as fast as python
    // sends them; every one is an NFLOG copy (DNS port) for spind, all one conntrack flow.
    let code = "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                end=time.time()+8; n=0\n\
                while time.time()<end:\n\
                \x20   for i in range(100): s.sendto(b'\\x12\\x34 not a query', ('198.51.100.10',53))\n\
                \x20   n+=100\n\
                print(n)\n";
    let (sh, client) = (testbed::netns::shell(), r.topo.client.clone());
    let storm =
        std::thread::spawn(move || testbed::runner::cmd!(sh, "ip netns exec {client} python3 -c {code}").read());
    // spind frozen for 3 s in the middle of it: nobody reads its NFLOG socket, which overruns.
    std::thread::sleep(Duration::from_secs(2));
    let pid = r.spind.as_ref().unwrap().child.id().to_string();
    testbed::netns::sh(&["kill", "-STOP", &pid]);
    std::thread::sleep(Duration::from_secs(3));
    testbed::netns::sh(&["kill", "-CONT", &pid]);
    let sent: u64 = storm.join().unwrap().expect("the storm").trim().parse().expect("the storm's count");
    assert!(sent > 50_000, "the storm sent only {sent} datagrams");

    // The overrun is counted and said, and spind goes on: a query after the storm is reported
    // (NFLOG), and so is the storm's flow (conntrack is dumped, so the frozen seconds' packets
    // are still in the kernel's counters at the next dump).
    wait_for("the overrun in spind's log", Duration::from_secs(30), || {
        r.spind.as_ref().unwrap().log_text().contains("NFLOG receive buffer overrun").then_some(())
    });
    assert_eq!(r.topo.dig("other.example.test", "A"), "198.51.100.20");
    // On a busy machine spind may still be draining the storm's copies when that query is
    // sent, and a full socket drops its copy too: a query is sent every 3 s until one is seen.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let asker = {
        let (seen, sh, client) = (seen.clone(), testbed::netns::shell(), r.topo.client.clone());
        std::thread::spawn(move || {
            while !seen.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_secs(3));
                let _ = testbed::runner::cmd!(
                    sh,
                    "ip netns exec {client} dig +short +time=2 +tries=1 @198.51.100.10 other.example.test A"
                )
                .quiet()
                .read();
            }
        })
    };
    let msgs = sub.collect_until("the query after the storm and the storm's flow", Duration::from_secs(60), |got| {
        let query =
            got.iter().any(|m| m.command() == "dnsquery" && m.json()["result"]["query"] == "other.example.test.");
        let storm = got
            .iter()
            .filter(|m| m.command() == "traffic")
            .any(|m| m.json()["result"]["flows"].as_array().is_some_and(|f| f.iter().any(|f| f["to_port"] == 53)));
        query && storm
    });
    seen.store(true, std::sync::atomic::Ordering::Relaxed);
    asker.join().unwrap();
    assert!(!msgs.is_empty());
    assert_eq!(r.call("list_iplist", json!({"list": "block"})), json!([]), "spind answers after the storm");
}
