//! Name rules on a live router (root, issue 13): client and a second device — router — server
//! in network namespaces, a real dnsmasq on the router forwarding to the server's real dnsmasq,
//! spind in the router judging the queries through NFQUEUE and cutting the addresses of blocked
//! names with its nftables sets. What the devices see is asserted: dig's answers, curl's
//! downloads, the bytes a UDP server receives.

use std::process::Child;
use std::time::Duration;

use serde_json::{json, Value};
use testbed::http::{call_http, rpc_http};
use testbed::netns::{sh, Netns, Topology, CLIENT_MAC};
use testbed::runner::{cmd, Shell, Stream};
use testbed::spind::Spind;
use testbed::{root_or_skip, wait_for};

use crate::common::spind;

pub(crate) const DEVICE2_MAC: &str = "02:00:00:00:00:c2";

/// The topology plus a second device (`dev2`, 192.168.9.100 on the router's `lan1`) and a
/// dnsmasq on the router (192.168.8.1 and 192.168.9.1) forwarding to the server's.
pub(crate) struct Home {
    pub(crate) topo: Topology,
    /// Device 2's namespace (removed on drop, with what runs in it).
    pub(crate) dev2: Netns,
    resolver: Child,
    pub(crate) state: tempfile::TempDir,
    pub(crate) spind: Option<Spind>,
    /// Extra `spind.conf` lines of the next start.
    pub(crate) config: Vec<String>,
    /// Extra environment variables of spind (e.g. `TZ`) from the next start.
    pub(crate) env: Vec<(String, String)>,
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = self.resolver.kill();
        let _ = self.resolver.wait();
    }
}

impl Home {
    pub(crate) fn new() -> Home {
        Home::with(Vec::new(), &[])
    }

    /// [`Home::new`] with spind started with these environment variables (e.g. `TZ`).
    pub(crate) fn with_env(env: Vec<(String, String)>) -> Home {
        Home::with(env, &[])
    }

    /// [`Home::new`] with more names answered by the router's dnsmasq (`NAME,ADDRESS`, as
    /// `--host-record` takes them).
    pub(crate) fn with_host_records(records: &[&str]) -> Home {
        Home::with(Vec::new(), records)
    }

    fn with(env: Vec<(String, String)>, records: &[&str]) -> Home {
        let mut topo = Topology::new();
        topo.start_services();
        let dev2_ns = Netns::new("names-d2");
        let dev2 = dev2_ns.name.clone();
        let r = topo.router.clone();
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            "eth0",
            "netns",
            &dev2,
            "address",
            DEVICE2_MAC,
            "type",
            "veth",
            "peer",
            "name",
            "lan1",
            "netns",
            &r,
        ]);
        sh(&["ip", "-n", &dev2, "addr", "add", "192.168.9.100/24", "dev", "eth0"]);
        sh(&["ip", "-n", &dev2, "link", "set", "eth0", "up"]);
        sh(&["ip", "-n", &dev2, "route", "add", "default", "via", "192.168.9.1"]);
        sh(&["ip", "-n", &r, "addr", "add", "192.168.9.1/24", "dev", "lan1"]);
        sh(&["ip", "-n", &r, "addr", "add", "192.168.8.2/24", "dev", "lan0"]);
        sh(&["ip", "-n", &r, "link", "set", "lan1", "up"]);
        let shell = Shell::new().unwrap();
        let mut dnsmasq: Vec<String> = [
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--pid-file=",
            "--user=root",
            "--group=root",
            "--listen-address=192.168.8.1,192.168.9.1,fd00:8::1",
            "--bind-interfaces",
            "--cache-size=0",
            "--server=198.51.100.10",
            // CNAME cloaking: an innocent name that is an alias of a tracker's.
            "--host-record=tracker.test,198.51.100.30",
            "--cname=metrics.shop.test,tracker.test",
        ]
        .map(String::from)
        .to_vec();
        dnsmasq.extend(records.iter().map(|r| format!("--host-record={r}")));
        let resolver = cmd!(shell, "ip netns exec {r} dnsmasq {dnsmasq...}")
            .spawn(Stream::Null, Stream::Null)
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        let state = tempfile::tempdir().unwrap();
        let mut h = Home { topo, dev2: dev2_ns, resolver, state, spind: None, config: Vec::new(), env };
        wait_for("the router's resolver", Duration::from_secs(20), || {
            (h.dig(1, "www.example.test", "A") == "198.51.100.10").then_some(())
        });
        h.start_spind();
        h
    }

    pub(crate) fn start_spind(&mut self) {
        let mut b = spind().netns(&self.topo.router).state_dir(self.state.path());
        for line in &self.config {
            b = b.config_line(line);
        }
        for (k, v) in &self.env {
            b = b.env(k, v);
        }
        let s = b.spawn();
        let port = s.http_port;
        self.topo.in_router(move || {
            wait_for("spind's web port in the router", Duration::from_secs(30), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            })
        });
        self.spind = Some(s);
    }

    pub(crate) fn kill9_spind(&mut self) {
        let mut s = self.spind.take().unwrap();
        let _ = s.child.kill();
        let _ = s.child.wait();
    }

    pub(crate) fn call(&self, method: &'static str, params: Value) -> Value {
        let port = self.spind.as_ref().unwrap().http_port;
        self.topo.in_router(move || call_http(port, method, params))
    }

    pub(crate) fn rpc(&self, method: &'static str, params: Value) -> Value {
        let port = self.spind.as_ref().unwrap().http_port;
        self.topo.in_router(move || rpc_http(port, method, params))
    }

    fn ns(&self, device: u8) -> &str {
        if device == 1 {
            &self.topo.client
        } else {
            &self.dev2.name
        }
    }

    /// `dig +short` from device 1 or 2 at its router.
    pub(crate) fn dig(&self, device: u8, name: &str, qtype: &str) -> String {
        let server = if device == 1 { "@192.168.8.1" } else { "@192.168.9.1" };
        self.dig_at(device, server, name, qtype)
    }

    pub(crate) fn dig_at(&self, device: u8, server: &str, name: &str, qtype: &str) -> String {
        let (sh, ns) = (Shell::new().unwrap(), self.ns(device));
        let out = cmd!(sh, "ip netns exec {ns} dig +short +time=2 +tries=1 {server} {name} {qtype}").output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether device 2 can download from `url` (a short time limit: a cut connection hangs).
    pub(crate) fn dev2_downloads(&self, url: &str) -> bool {
        let (sh, dev2) = (Shell::new().unwrap(), &self.dev2.name);
        cmd!(sh, "ip netns exec {dev2} curl -s -o /dev/null --max-time 3 {url}").succeeds().unwrap()
    }

    /// Whether device 1 can download from `url`.
    pub(crate) fn dev1_downloads(&self, url: &str) -> bool {
        self.topo.curl(url, "3").is_some()
    }

    /// Makes sure DNS queries to the router reach spind's queue: through `table inet spin`'s
    /// own rule, or, on a kernel without nft_queue (spind then says so and its table has no
    /// such rule), through iptables' NFQUEUE target with the same number and bypass, standing
    /// in for it: the verdicts are spind's either way.
    pub(crate) fn ensure_dns_queue(&self) {
        self.ensure_dns_queue_at("filter", "INPUT");
    }

    /// [`Home::ensure_dns_queue`] with the stand-in in `table`'s `chain`: `mangle PREROUTING`
    /// queues before the DNS redirect (`nat`), as spind's own rule does.
    pub(crate) fn ensure_dns_queue_at(&self, ipt_table: &str, chain: &str) {
        let table = wait_for("table inet spin", Duration::from_secs(20), || {
            let t = self.nft_list();
            t.contains("chain input").then_some(t)
        });
        if table.contains("dns-queue") {
            return;
        }
        let log = self.spind.as_ref().unwrap().log_text();
        assert!(log.contains("cannot queue DNS from nftables"), "no queue rule and no reason given: {log}");
        for (tables, proto) in [("iptables", "udp"), ("iptables", "tcp"), ("ip6tables", "udp"), ("ip6tables", "tcp")] {
            sh(&[
                "ip",
                "netns",
                "exec",
                &self.topo.router,
                tables,
                "-t",
                ipt_table,
                "-A",
                chain,
                "!",
                "-i",
                "lo",
                "-p",
                proto,
                "--dport",
                "53",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "53",
                "--queue-bypass",
            ]);
        }
    }

    pub(crate) fn nft_list(&self) -> String {
        let (sh, router) = (Shell::new().unwrap(), &self.topo.router);
        let out = cmd!(sh, "ip netns exec {router} nft list table inet spin").output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn name_rules_answer_blocked_queries_per_device_and_pass_the_rest() {
    if !root_or_skip("name_rules_answer_blocked_queries_per_device_and_pass_the_rest") {
        return;
    }
    let mut h = Home::new();
    h.ensure_dns_queue();
    assert_eq!(h.dig(1, "www.example.test", "A"), "198.51.100.10", "no rules: queries pass the queue");

    // A per-device block of a name and everything below it.
    let r = h.call("add_name_rule", json!({"name": "example.test", "action": "block", "devices": [CLIENT_MAC]}));
    assert_eq!(r, json!({"id": 1}));
    assert_eq!(h.dig(1, "www.example.test", "A"), "0.0.0.0");
    assert_eq!(h.dig(1, "www.example.test", "AAAA"), "::");
    assert_eq!(h.dig(1, "Example.Test", "A"), "0.0.0.0");
    assert_eq!(h.dig(2, "www.example.test", "A"), "198.51.100.10", "the other device still resolves");
    // Over IPv6 too (the answer goes out through the IPv6 raw socket).
    assert_eq!(h.dig_at(1, "@fd00:8::1", "www.example.test", "AAAA"), "::");
    assert_eq!(h.dig_at(1, "@fd00:8::1", "tracker.test", "A"), "198.51.100.30");

    // An allow beats the block of a parent name.
    h.call("add_name_rule", json!({"name": "other.example.test", "action": "allow"}));
    assert_eq!(h.dig(1, "other.example.test", "A"), "198.51.100.20");
    assert_eq!(h.dig(1, "www.example.test", "A"), "0.0.0.0");

    // A rule whose time has passed does nothing.
    let r = h.call("add_name_rule", json!({"name": "api.example.test", "action": "block", "until": 1}));
    assert_eq!(r, json!({"id": 3}));
    assert_eq!(h.dig(2, "api.example.test", "A"), "198.51.100.30");

    // Bad input is refused, naming the field, and changes nothing.
    let e = h.rpc("add_name_rule", json!({"name": "a..b", "action": "block"}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'name'"), "{e}");
    assert_eq!(h.call("list_name_rules", json!({})).as_array().unwrap().len(), 3);

    // Malformed DNS to the router passes unchanged (to a UDP server of the test's on
    // 192.168.8.2:53; the queue takes every query to the router).
    let r = h.topo.router.clone();
    let server = std::thread::spawn(move || {
        testbed::netns::in_netns(&r, || {
            let s = std::net::UdpSocket::bind("192.168.8.2:53").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while got.len() < 2 {
                let (n, _) = s.recv_from(&mut buf).unwrap();
                let v = buf[..n].to_vec();
                if !got.contains(&v) {
                    got.push(v);
                }
            }
            got
        })
    });
    let garbage = "\\x00\\x01\\xff\\xfe not dns at all \\x00";
    let truncated = "\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example";
    // Sent until the server has both (it binds after the senders start).
    let send = |payload: &str| {
        let code = format!(
            "import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
             for i in range(80):\n    s.sendto(b'{payload}',('192.168.8.2',53)); time.sleep(0.25)\n"
        );
        let (sh, client) = (Shell::new().unwrap(), &h.topo.client);
        cmd!(sh, "ip netns exec {client} python3 -c {code}").spawn(Stream::Null, Stream::Null).unwrap()
    };
    let mut senders = vec![send(garbage), send(truncated)];
    let got = server.join().unwrap();
    for s in &mut senders {
        let _ = s.kill();
        let _ = s.wait();
    }
    let bytes = |s: &str| -> Vec<u8> {
        let code = format!("import sys; sys.stdout.buffer.write(b'{s}')");
        let sh = Shell::new().unwrap();
        cmd!(sh, "python3 -c {code}").output().unwrap().stdout
    };
    assert!(got.contains(&bytes(garbage)) && got.contains(&bytes(truncated)), "{got:?}");

    // kill -9 of spind: DNS still answers (the queue's bypass).
    h.kill9_spind();
    assert_eq!(h.dig(1, "www.example.test", "A"), "198.51.100.10", "fail-open without spind");
}

#[test]
fn name_blocks_cut_cached_addresses_and_cname_cloaks_and_hold_without_spind() {
    if !root_or_skip("name_blocks_cut_cached_addresses_and_cname_cloaks_and_hold_without_spind") {
        return;
    }
    let mut h = Home::new();
    // Device 2 resolves www and downloads from it; spind sees the answer (NFLOG).
    assert_eq!(h.dig(2, "www.example.test", "A"), "198.51.100.10");
    assert!(h.dev2_downloads("http://198.51.100.10/file100k"));

    // Now www is blocked for device 2: its connections to the address it holds are cut by the
    // kernel set, while another address and the other device are not.
    h.call("add_name_rule", json!({"name": "www.example.test", "action": "block", "devices": [DEVICE2_MAC]}));
    wait_for("device 2's download from the cached address to be cut", Duration::from_secs(20), || {
        (!h.dev2_downloads("http://198.51.100.10/file100k")).then_some(())
    });
    let table = h.nft_list();
    assert!(table.contains(&format!("{DEVICE2_MAC} . 198.51.100.10 timeout")), "{table}");
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"), "other addresses are reachable");
    assert!(h.dev1_downloads("http://198.51.100.10/file100k"), "the other device is not cut");

    // CNAME cloaking: a tracker blocked for everyone, reached through an innocent alias; the
    // alias's answer passes through the blocked name, so its address is cut.
    h.call("add_name_rule", json!({"name": "tracker.test", "action": "block"}));
    assert!(h.dev1_downloads("http://198.51.100.30/file100k"), "not cut before anyone resolved it");
    let answer = h.dig(1, "metrics.shop.test", "A");
    assert!(answer.ends_with("198.51.100.30") || answer == "0.0.0.0", "{answer}");
    wait_for("the cloaked tracker's address to be cut", Duration::from_secs(20), || {
        (!h.dev1_downloads("http://198.51.100.30/file100k")).then_some(())
    });
    assert!(h.nft_list().contains("198.51.100.30 timeout"));

    // kill -9 of spind: the address blocks hold (the table stays), DNS still answers.
    h.kill9_spind();
    assert!(!h.dev2_downloads("http://198.51.100.10/file100k"), "the kernel set still cuts the address");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20");

    // Restarted, spind rebuilds its table (whole, before its web port opens) with the saved
    // name blocks: no new answer needed.
    h.start_spind();
    let table = h.nft_list();
    assert!(table.contains(&format!("{DEVICE2_MAC} . 198.51.100.10 timeout")), "{table}");
    assert!(!h.dev2_downloads("http://198.51.100.10/file100k"), "still cut after the restart");
}

#[test]
fn a_rule_ends_by_itself_at_its_until_and_a_full_queue_fails_open() {
    if !root_or_skip("a_rule_ends_by_itself_at_its_until_and_a_full_queue_fails_open") {
        return;
    }
    let h = Home::new();
    h.ensure_dns_queue();
    let now = || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;

    // `until` a few seconds ahead: blocked now, resolving again after it without any call.
    let until = now() + 8;
    h.call("add_name_rule", json!({"name": "api.example.test", "action": "block", "until": until}));
    assert_eq!(h.dig(1, "api.example.test", "A"), "0.0.0.0", "blocked before its end");
    wait_for("the rule to end by itself", Duration::from_secs(40), || {
        (h.dig(1, "api.example.test", "A") == "198.51.100.30").then_some(())
    });
    assert!(now() >= until, "the name resolved again before the rule's end");

    // spind stopped (SIGSTOP: its queue socket stays bound, nobody reads it): once the kernel's
    // queue or the socket is full, further queries are accepted without a verdict (fail-open),
    // so DNS keeps answering. Without fail-open not one of them would be answered.
    let pid = h.spind.as_ref().unwrap().child.id().to_string();
    sh(&["kill", "-STOP", &pid]);
    let answered = flood_queries(&h, "tracker.test", 3000);
    sh(&["kill", "-CONT", &pid]);
    eprintln!("{answered} of 3000 queries answered while spind was stopped");
    assert!(answered >= 500, "{answered} of 3000 queries answered while spind did not read its queue");
    // And spind goes on judging the queries once it runs again.
    h.call("add_name_rule", json!({"name": "tracker.test", "action": "block"}));
    wait_for("spind's verdicts after SIGCONT", Duration::from_secs(30), || {
        (h.dig(1, "tracker.test", "A") == "0.0.0.0").then_some(())
    });
}

/// Sends `count` A queries for `name` (answered by the router's dnsmasq itself) from device 1
/// to the router as fast as they go, reading answers in between and for 3 s after; how many
/// different queries were answered.
fn flood_queries(h: &Home, name: &str, count: u32) -> usize {
    let code = format!(
        "import socket,struct,time,select\n\
         s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.setblocking(False)\n\
         qname=b''.join(bytes([len(p)])+p for p in b'{name}'.split(b'.'))+b'\\0'\n\
         got=set(); i=0; end=None\n\
         while end is None or time.time()<end:\n\
         \x20   if i<{count}:\n\
         \x20       try:\n\
         \x20           s.sendto(struct.pack('>HHHHHH',i,0x0100,1,0,0,0)+qname+struct.pack('>HH',1,1),('192.168.8.1',53)); i+=1\n\
         \x20       except BlockingIOError: pass\n\
         \x20       if i=={count}: end=time.time()+3\n\
         \x20   r,_,_=select.select([s],[],[],0.0005 if i<{count} else 0.1)\n\
         \x20   while r:\n\
         \x20       try: got.add(struct.unpack('>H',s.recv(2048)[:2])[0])\n\
         \x20       except BlockingIOError: break\n\
         print(len(got))\n"
    );
    let (sh, client) = (Shell::new().unwrap(), &h.topo.client);
    let out = cmd!(sh, "ip netns exec {client} python3 -c {code}").read().unwrap();
    out.trim().parse().unwrap_or_else(|_| panic!("query flood printed {out:?}"))
}
