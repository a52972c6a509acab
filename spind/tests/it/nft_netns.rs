//! `table inet spin` enforced on real traffic, in network namespaces:
//!
//! ```text
//!  c1 (10.9.1.2, fd09:1::2) ──┐
//!                             router (forwarding; the table lives here) ── server
//!  c2 (10.9.3.2, fd09:3::2) ──┘                      10.9.2.2 .3 .130, fd09:2::2 ::3 ::8002
//! ```
//!
//! The server runs a TCP echo (port 7777), a UDP echo (port 9) and a "DNS" echo on UDP and TCP
//! port 53. Needs root; fails unless `SPIND_SKIP_ROOT_TESTS=1`, which prints a skip line.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spind::enforcer::{classify, script, Nft, NftEnforcer, NftError};
use spind::model::addr::IpNet;
use spind::model::policy::{Enforcer, PairBlock, Policy};
use testbed::netns::{enter_netns, in_netns, ns_cmd, shell, Netns};
use testbed::root_or_skip;
use testbed::runner::{Stdin, Stream};

const DNS_GROUP: u16 = 5;
const BLOCK_GROUP: u16 = 6;
const ECHO: u16 = 7777;
/// How long a probe waits before it counts as blocked (a dropped SYN is never answered). Long
/// enough that a busy machine does not make an allowed connection look blocked.
const TIMEOUT: Duration = Duration::from_secs(2);

fn run(args: &[&str]) {
    testbed::netns::sh(args);
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The four namespaces (the test bed's) and the server; removed on drop.
struct Topo {
    c1: String,
    c2: String,
    r: String,
    s: String,
    stop: Arc<AtomicBool>,
    servers: Vec<JoinHandle<()>>,
    /// Removed after the servers have stopped (fields drop after `Drop::drop`).
    _ns: [Netns; 4],
}

impl Topo {
    fn new() -> Topo {
        let ns = [Netns::new("nftc1"), Netns::new("nftc2"), Netns::new("nftr"), Netns::new("nfts")];
        let mut t = Topo {
            c1: ns[0].name.clone(),
            c2: ns[1].name.clone(),
            r: ns[2].name.clone(),
            s: ns[3].name.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            servers: Vec::new(),
            _ns: ns,
        };
        for ns in [&t.c1, &t.c2, &t.r, &t.s] {
            // No duplicate address detection: addresses (link-local too) usable at once.
            let out = ns_cmd(&shell(), ns, "sysctl")
                .args(["-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
                .output()
                .unwrap();
            assert!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
        }
        // (namespace, its interface, router interface, subnet number, host addresses)
        let links: [(&str, &str, &str, u8, &[&str]); 3] = [
            (&t.c1, "eth0", "lan1", 1, &["2"]),
            (&t.c2, "eth0", "lan3", 3, &["2"]),
            (&t.s, "eth0", "wan", 2, &["2", "3", "130"]),
        ];
        for (ns, dev, rdev, n, hosts) in links {
            run(&["ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", rdev, "netns", &t.r]);
            for h in hosts {
                let v6_host = match *h {
                    "130" => "8002",
                    other => other,
                };
                run(&["ip", "-n", ns, "addr", "add", &format!("10.9.{n}.{h}/24"), "dev", dev]);
                run(&["ip", "-n", ns, "addr", "add", &format!("fd09:{n}::{v6_host}/64"), "dev", dev, "nodad"]);
            }
            run(&["ip", "-n", &t.r, "addr", "add", &format!("10.9.{n}.1/24"), "dev", rdev]);
            run(&["ip", "-n", &t.r, "addr", "add", &format!("fd09:{n}::1/64"), "dev", rdev, "nodad"]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", &t.r, "link", "set", rdev, "up"]);
            run(&["ip", "-n", ns, "route", "add", "default", "via", &format!("10.9.{n}.1")]);
            run(&["ip", "-n", ns, "-6", "route", "add", "default", "via", &format!("fd09:{n}::1")]);
        }
        let out = ns_cmd(&shell(), &t.r, "sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
            .output()
            .unwrap();
        assert!(out.status.success(), "sysctl: {}", String::from_utf8_lossy(&out.stderr));
        // Wait out any tentative (DAD) IPv6 address all the same.
        let end = Instant::now() + Duration::from_secs(5);
        for ns in [&t.c1, &t.c2, &t.r, &t.s] {
            loop {
                let out = testbed::netns::sh(&["ip", "-n", ns, "-6", "addr", "show", "tentative"]);
                if out.stdout.is_empty() || Instant::now() > end {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        t.start_servers();
        // Freshly created links drop the very first neighbour solicitations (the carrier is not
        // up yet), which costs a 1 s retransmission: reach every server address once first.
        for c in [&t.c1, &t.c2] {
            for a in SERVERS4.iter().chain(SERVERS6.iter()) {
                let end = Instant::now() + Duration::from_secs(10);
                while !tcp_ok(c, a, ECHO) {
                    assert!(Instant::now() < end, "{c} cannot reach {a} before any rules");
                }
            }
        }
        t
    }

    fn start_servers(&mut self) {
        let (tx, rx) = std::sync::mpsc::channel();
        for port in [ECHO, 53] {
            let stop = self.stop.clone();
            let path = format!("/run/netns/{}", self.s);
            let tx = tx.clone();
            self.servers.push(std::thread::spawn(move || {
                enter_netns(Path::new(&path));
                let l = TcpListener::bind(("::", port)).unwrap();
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut c, _)) => {
                            std::thread::spawn(move || {
                                c.set_nonblocking(false).unwrap();
                                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                                let mut buf = [0u8; 1500];
                                while let Ok(n @ 1..) = c.read(&mut buf) {
                                    if c.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
        }
        // UDP: one socket per address, so that a reply comes from the address that was asked.
        let stop = self.stop.clone();
        let path = format!("/run/netns/{}", self.s);
        let tx2 = tx.clone();
        self.servers.push(std::thread::spawn(move || {
            enter_netns(Path::new(&path));
            let mut socks = Vec::new();
            for a in SERVERS4.iter().chain(SERVERS6.iter()) {
                for port in [9, 53] {
                    let u = UdpSocket::bind((ip(a), port)).unwrap();
                    u.set_nonblocking(true).unwrap();
                    socks.push(u);
                }
            }
            tx2.send(()).unwrap();
            let mut buf = [0u8; 1500];
            while !stop.load(Ordering::Relaxed) {
                let mut idle = true;
                for u in &socks {
                    while let Ok((n, from)) = u.recv_from(&mut buf) {
                        let _ = u.send_to(&buf[..n], from);
                        idle = false;
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }));
        for _ in 0..3 {
            rx.recv_timeout(Duration::from_secs(5)).unwrap();
        }
    }

    fn nft(&self) -> Nft {
        Nft::in_netns(&self.r)
    }

    fn enforcer(&self) -> NftEnforcer {
        NftEnforcer::with_nft(self.nft(), DNS_GROUP, BLOCK_GROUP).unwrap()
    }

    fn counter(&self, key: &str) -> u64 {
        let all = self.nft().rule_counters().unwrap();
        all.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no counter {key} in {all:?}")).1
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.servers.drain(..) {
            let _ = h.join();
        }
    }
}

/// A TCP echo round trip from namespace `ns` to `dst:port`.
fn tcp_ok(ns: &str, dst: &str, port: u16) -> bool {
    let addr = SocketAddr::new(ip(dst), port);
    in_netns(ns, move || {
        let Ok(mut c) = TcpStream::connect_timeout(&addr, TIMEOUT) else { return false };
        echo(&mut c)
    })
}

fn echo(c: &mut TcpStream) -> bool {
    c.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut buf = [0u8; 5];
    c.write_all(b"hello").is_ok() && c.read_exact(&mut buf).is_ok() && &buf == b"hello"
}

/// A UDP echo round trip from namespace `ns` to `dst:port`.
fn udp_ok(ns: &str, dst: &str, port: u16) -> bool {
    let addr = SocketAddr::new(ip(dst), port);
    in_netns(ns, move || udp_round_trip(addr, TIMEOUT))
}

fn udp_round_trip(addr: SocketAddr, timeout: Duration) -> bool {
    let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0".parse().unwrap() } else { "[::]:0".parse().unwrap() };
    let u = UdpSocket::bind(bind).unwrap();
    u.set_read_timeout(Some(timeout)).unwrap();
    u.send_to(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", addr).unwrap();
    let mut buf = [0u8; 64];
    matches!(u.recv_from(&mut buf), Ok((12, from)) if from == addr)
}

/// Which of `dsts` the namespace reaches over TCP, as a string like "2 3 -130" (- = blocked).
fn reach(ns: &str, dsts: &[&str]) -> String {
    dsts.iter()
        .map(|d| {
            let last = d.rsplit(['.', ':']).next().unwrap();
            if tcp_ok(ns, d, ECHO) {
                last.to_string()
            } else {
                format!("-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const SERVERS4: [&str; 3] = ["10.9.2.2", "10.9.2.3", "10.9.2.130"];
const SERVERS6: [&str; 3] = ["fd09:2::2", "fd09:2::3", "fd09:2::8002"];

#[test]
fn blocks_allows_and_prefixes_cut_and_restore_real_traffic() {
    if !root_or_skip("blocks_allows_and_prefixes_cut_and_restore_real_traffic") {
        return;
    }
    let t = Topo::new();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "2 3 8002");
    let mut e = t.enforcer();

    // An open connection, to be cut by the block (no "established" shortcut).
    let addr = SocketAddr::new(ip("10.9.2.2"), ECHO);
    let mut open = in_netns(&t.c1, move || TcpStream::connect_timeout(&addr, TIMEOUT).unwrap());
    assert!(echo(&mut open));

    // Block one server address per family.
    let block = vec![net("10.9.2.2"), net("fd09:2::2")];
    e.apply(&Policy { block: block.clone(), ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "-2 3 8002");
    assert_eq!(reach(&t.c2, &SERVERS4), "-2 3 130");
    assert_eq!(reach(&t.c2, &SERVERS6), "-2 3 8002");
    assert!(!echo(&mut open), "an established connection is cut too");
    assert!(t.counter("block_verdict/block-drop") >= 4);
    assert!(t.counter("block_verdict/block-log") >= 4);

    // Allow client 1 (v4 and v6): it reaches the blocked server again, client 2 still does not.
    let allow = vec![net("10.9.1.2"), net("fd09:1::2")];
    e.apply(&Policy { block: block.clone(), allow: allow.clone(), ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "2 3 8002");
    assert_eq!(reach(&t.c2, &SERVERS4), "-2 3 130");
    assert_eq!(reach(&t.c2, &SERVERS6), "-2 3 8002");

    // Allowing a prefix works as well: the client's whole subnet.
    e.apply(&Policy {
        block: block.clone(),
        allow: vec![net("10.9.3.0/24"), net("fd09:3::/64")],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(reach(&t.c2, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c2, &SERVERS6), "2 3 8002");
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");

    // A prefix block: the upper half of the server subnet, in both families.
    e.apply(&Policy { block: vec![net("10.9.2.128/25"), net("fd09:2::8000/113")], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 -130");
    assert_eq!(reach(&t.c1, &SERVERS6), "2 3 -8002");

    // Blocking a client blocks everything it sends, wherever to.
    e.apply(&Policy { block: vec![net("10.9.1.2"), net("fd09:1::2")], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 -3 -130");
    assert_eq!(reach(&t.c1, &SERVERS6), "-2 -3 -8002");
    assert_eq!(reach(&t.c2, &SERVERS4), "2 3 130");

    // Removing every entry restores everything.
    e.apply(&Policy::default()).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "2 3 8002");
    assert_eq!(reach(&t.c2, &SERVERS6), "2 3 8002");
}

#[test]
fn a_pair_block_blocks_only_that_pair() {
    if !root_or_skip("a_pair_block_blocks_only_that_pair") {
        return;
    }
    let t = Topo::new();
    let mut e = t.enforcer();
    let pair = PairBlock {
        node1: 1,
        node2: 2,
        ips1: vec![ip("10.9.1.2"), ip("fd09:1::2")],
        ips2: vec![ip("10.9.2.2"), ip("fd09:2::2")],
    };
    e.apply(&Policy { pairs: vec![pair.clone()], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "-2 3 8002");
    // Another client still reaches that server.
    assert_eq!(reach(&t.c2, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c2, &SERVERS6), "2 3 8002");
    // Other traffic of the pair (UDP) is blocked too, in both families.
    assert!(!udp_ok(&t.c1, "10.9.2.2", 9));
    assert!(!udp_ok(&t.c1, "fd09:2::2", 9));
    assert!(udp_ok(&t.c2, "10.9.2.2", 9));

    // The node grows an address: the pair follows it.
    let mut grown = pair.clone();
    grown.ips2.push(ip("10.9.2.3"));
    e.apply(&Policy { pairs: vec![grown], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 -3 130");

    // Allow wins over a pair block too.
    e.apply(&Policy { pairs: vec![pair], allow: vec![net("10.9.2.2")], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    assert_eq!(reach(&t.c1, &SERVERS6), "-2 3 8002");

    e.apply(&Policy::default()).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS6), "2 3 8002");
}

/// `tcpdump -i nflog:GROUP` in the router namespace, printing packets as they come.
struct NflogCapture {
    child: Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl NflogCapture {
    fn start(ns: &str, group: u16) -> NflogCapture {
        let mut child = ns_cmd(&shell(), ns, "tcpdump")
            .args(["-n", "-l", "-i", &format!("nflog:{group}")])
            .spawn(Stream::Piped, Stream::Piped)
            .unwrap_or_else(|e| panic!("tcpdump (apt-get install tcpdump): {e}"));
        // tcpdump says "listening on" once it has bound the group.
        let mut stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut seen = String::new();
            while let Ok(n @ 1..) = stderr.read(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                if seen.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("tcpdump did not start listening");
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stdout = child.stdout.take().unwrap();
        let l = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        NflogCapture { child, lines }
    }

    /// Wait until a captured line contains every one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                return Some(l.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for NflogCapture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn dns_is_copied_and_blocked_packets_are_logged_to_nflog() {
    if !root_or_skip("dns_is_copied_and_blocked_packets_are_logged_to_nflog") {
        return;
    }
    let t = Topo::new();
    let mut e = t.enforcer();
    e.apply(&Policy { block: vec![net("10.9.2.3"), net("fd09:2::3")], ..Default::default() }).unwrap();
    let dns = NflogCapture::start(&t.r, DNS_GROUP);
    let blocked = NflogCapture::start(&t.r, BLOCK_GROUP);

    // UDP DNS, query and answer, both families: copied, never dropped.
    // (The rules' `queue-threshold 1`, which stops the kernel batching NFLOG, is checked in the
    // enforcer's unit tests; the delivery latency is a benchmark.)
    assert!(udp_ok(&t.c1, "10.9.2.2", 53));
    let q = dns.wait_for(&["10.9.1.2.", "> 10.9.2.2.53:"]).unwrap_or_else(|| panic!("no query in {:?}", dns.lines()));
    assert!(q.contains("UDP") || q.contains("domain") || q.contains("53"), "{q}");
    dns.wait_for(&["10.9.2.2.53 > 10.9.1.2."]).unwrap_or_else(|| panic!("no answer in {:?}", dns.lines()));
    assert!(udp_ok(&t.c2, "fd09:2::2", 53));
    dns.wait_for(&["fd09:3::2.", "> fd09:2::2.53:"]).unwrap_or_else(|| panic!("no v6 query in {:?}", dns.lines()));
    dns.wait_for(&["fd09:2::2.53 > fd09:3::2."]).unwrap();
    assert!(t.counter("forward/dns-dport") >= 2);
    assert!(t.counter("forward/dns-sport") >= 2);
    // Queries to a resolver on the router itself are copied (input); the router's own
    // upstream queries are not (they would look like a client's).
    let before = t.counter("input/dns-dport");
    let _ = udp_ok(&t.c1, "10.9.1.1", 53);
    assert!(t.counter("input/dns-dport") > before);
    let _ = udp_ok(&t.r, "10.9.2.2", 53);
    let rules = t.nft().rule_counters().unwrap();
    assert!(!rules.iter().any(|(k, _)| k == "output/dns-dport"), "output has no query-copy rule: {rules:?}");

    // DNS over TCP.
    let before = t.counter("forward/dns-dport");
    assert!(tcp_ok(&t.c1, "10.9.2.2", 53));
    assert!(t.counter("forward/dns-dport") >= before + 3, "SYN, data, ...");
    // Only the DNS group saw these; nothing was blocked.
    assert_eq!(t.counter("block_verdict/block-drop"), 0);

    // A blocked packet goes to the block group (and is counted), both families.
    assert!(!tcp_ok(&t.c1, "10.9.2.3", ECHO));
    blocked
        .wait_for(&["10.9.1.2.", "> 10.9.2.3.7777:"])
        .unwrap_or_else(|| panic!("no blocked packet in {:?}", blocked.lines()));
    assert!(!tcp_ok(&t.c2, "fd09:2::3", ECHO));
    blocked.wait_for(&["fd09:3::2.", "> fd09:2::3.7777:"]).unwrap();
    assert!(t.counter("block_verdict/block-log") >= 2);
    assert!(t.counter("block_verdict/block-drop") >= 2);
    // Port 53 as tcpdump prints it ("addr.53 >" or "addr.53:"), not a timestamp's ".53…".
    assert!(blocked.lines().iter().all(|l| !l.contains(".53 >") && !l.contains(".53:")), "{:?}", blocked.lines());
}

#[test]
fn the_table_outlives_the_enforcer_until_remove_table() {
    if !root_or_skip("the_table_outlives_the_enforcer_until_remove_table") {
        return;
    }
    let t = Topo::new();
    let nft = t.nft();
    assert!(!nft.table_exists().unwrap());
    assert!(nft.rule_counters().unwrap().is_empty());
    let policy = Policy { block: vec![net("10.9.2.2")], ..Default::default() };
    {
        let mut e = t.enforcer();
        e.apply(&policy).unwrap();
    }
    // spind stopped: the block holds.
    assert!(nft.table_exists().unwrap());
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    let json = nft.list_table().unwrap();
    assert!(json.contains("\"block4\"") && json.contains("10.9.2.2"), "{json}");
    let text = nft.list_table_text().unwrap();
    assert!(text.contains("priority filter - 10"), "{text}");

    // An identical policy is not applied again; force_apply does.
    let mut e = t.enforcer();
    e.apply(&policy).unwrap();
    assert!(nft.remove_table().unwrap());
    assert!(!nft.remove_table().unwrap(), "second removal: did not exist");
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    e.apply(&policy).unwrap();
    assert!(!nft.table_exists().unwrap(), "unchanged script: skipped");
    e.force_apply(&policy).unwrap();
    assert!(nft.table_exists().unwrap());
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    assert!(nft.remove_table().unwrap());
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
}

/// The handle of `table inet spin` (`nft -a list table`: `table inet spin { # handle N`): a
/// new table gets a new one.
fn table_handle(t: &Topo) -> String {
    let out = ns_cmd(&shell(), &t.r, "nft").args(["-a", "list", "table", "inet", "spin"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first = text.lines().next().unwrap_or_default();
    assert!(first.starts_with("table inet spin { # handle "), "{text}");
    first.rsplit(' ').next().unwrap().to_string()
}

#[test]
fn a_change_of_list_entries_updates_the_sets_in_place_and_keeps_the_hooks() {
    if !root_or_skip("a_change_of_list_entries_updates_the_sets_in_place_and_keeps_the_hooks") {
        return;
    }
    // Replacing the table unregisters its hooks, which drops the packets waiting in an NFQUEUE
    // for spind's verdict: a list change must keep the table and change only its sets.
    let t = Topo::new();
    let mut e = t.enforcer();
    e.apply(&Policy { block: vec![net("10.9.2.2")], ..Default::default() }).unwrap();
    let handle = table_handle(&t);
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    e.apply(&Policy { block: vec![net("10.9.2.3"), net("fd09:2::2")], ..Default::default() }).unwrap();
    assert_eq!(table_handle(&t), handle, "a set change replaced the table");
    assert_eq!(reach(&t.c1, &SERVERS4), "2 -3 130");
    assert!(!udp_ok(&t.c1, "fd09:2::2", 9), "the new IPv6 entry holds");
    e.apply(&Policy::default()).unwrap();
    assert_eq!(table_handle(&t), handle);
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    // Removed behind the enforcer's back, then a set change: the table comes back whole.
    assert!(t.nft().remove_table().unwrap());
    e.apply(&Policy { block: vec![net("10.9.2.130")], ..Default::default() }).unwrap();
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 -130");
    // A change of the rules themselves (the DNS guard) is a new table (so the check above
    // can tell the two apart).
    let before = table_handle(&t);
    let guarded = Policy {
        block: vec![net("10.9.2.130")],
        guard: spind::model::policy::Guard { redirect_dns: true, refuse_dot: true, wan: Some(vec!["wan".into()]) },
        ..Default::default()
    };
    e.apply(&guarded).unwrap();
    assert_ne!(table_handle(&t), before, "a rule change must replace the table");
}

#[test]
fn only_table_inet_spin_is_touched() {
    if !root_or_skip("only_table_inet_spin_is_touched") {
        return;
    }
    let t = Topo::new();
    // Someone else's table and set, with the same set names.
    let other = "table inet filter {\n\tset block4 { type ipv4_addr; elements = { 192.0.2.1 } }\n\tchain input { type filter hook input priority filter; policy accept; }\n}\ntable ip spin {\n}\n";
    t.nft().apply_script(other).unwrap();
    let mut e = t.enforcer();
    e.apply(&Policy { block: vec![net("10.9.2.2")], ..Default::default() }).unwrap();
    e.apply(&Policy::default()).unwrap();
    assert!(t.nft().remove_table().unwrap());
    let out = ns_cmd(&shell(), &t.r, "nft").args(["list", "ruleset"]).output().unwrap();
    let ruleset = String::from_utf8_lossy(&out.stdout);
    assert!(ruleset.contains("table inet filter") && ruleset.contains("192.0.2.1"), "{ruleset}");
    assert!(ruleset.contains("table ip spin"), "{ruleset}");
    assert!(!ruleset.contains("table inet spin"), "{ruleset}");
}

#[test]
fn reapplying_the_table_under_traffic_leaves_no_gap() {
    if !root_or_skip("reapplying_the_table_under_traffic_leaves_no_gap") {
        return;
    }
    let t = Topo::new();
    let mut e = t.enforcer();
    let base = vec![net("10.9.2.2"), net("fd09:2::2")];
    e.apply(&Policy { block: base.clone(), ..Default::default() }).unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let c1 = t.c1.clone();
    let traffic = std::thread::spawn(move || {
        enter_netns(Path::new(&format!("/run/netns/{c1}")));
        let (mut open_ok, mut open_lost, mut leaked) = (0, 0, 0);
        while !d.load(Ordering::Relaxed) {
            for (open, blocked) in [("10.9.2.3", "10.9.2.2"), ("fd09:2::3", "fd09:2::2")] {
                if udp_round_trip(SocketAddr::new(ip(open), 9), Duration::from_millis(500)) {
                    open_ok += 1;
                } else {
                    open_lost += 1;
                }
                if udp_round_trip(SocketAddr::new(ip(blocked), 9), Duration::from_millis(5)) {
                    leaked += 1;
                }
            }
        }
        (open_ok, open_lost, leaked)
    });
    for i in 0..40u8 {
        // A different script each time: the blocked set changes around the fixed entries.
        let mut block = base.clone();
        block.push(net(&format!("198.51.100.{i}")));
        block.push(net(&format!("2001:db8::{i:x}")));
        e.apply(&Policy { block, ..Default::default() }).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let (open_ok, open_lost, leaked) = traffic.join().unwrap();
    eprintln!("during 40 applies: {open_ok} open round trips, {open_lost} lost, {leaked} leaked");
    assert!(open_ok >= 10, "{open_ok}");
    assert_eq!(open_lost, 0, "allowed traffic was dropped during an apply");
    assert_eq!(leaked, 0, "blocked traffic passed during an apply");
}

#[test]
fn the_startup_check_changes_nothing_and_errors_name_the_fix() {
    if !root_or_skip("the_startup_check_changes_nothing_and_errors_name_the_fix") {
        return;
    }
    let t = Topo::new();
    // The start-up check does not change anything.
    let e = t.enforcer();
    assert!(!e.nft().table_exists().unwrap());
    assert!(t.nft().version().unwrap().starts_with("nftables v"));

    // Without CAP_NET_ADMIN, the real nft error is reported as a permission problem.
    let out = ns_cmd(&shell(), &t.r, "setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "nft", "-c", "-f", "-"])
        .stdin(Stdin::Bytes(script(&Policy::default(), 1, 2).into_bytes()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = classify("nft", out.status.to_string(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(matches!(err, NftError::NoPermission { .. }), "{err}");
    assert!(err.to_string().contains("CAP_NET_ADMIN"));

    // A failed apply includes nft's stderr and leaves the table as it was.
    let mut e = t.enforcer();
    e.apply(&Policy { block: vec![net("10.9.2.2")], ..Default::default() }).unwrap();
    let err = t.nft().apply_script(
        "table inet spin {}\ndelete table inet spin\ntable inet spin {\n\tchain c { jump nowhere; }\n}\n",
    );
    let msg = err.unwrap_err().to_string();
    assert!(msg.contains("nowhere"), "{msg}");
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
}

#[test]
fn a_flushed_or_altered_table_is_restored_and_other_tables_are_left_alone() {
    if !root_or_skip("a_flushed_or_altered_table_is_restored_and_other_tables_are_left_alone") {
        return;
    }
    let t = Topo::new();
    let nft = t.nft();
    let policy = Policy { block: vec![net("10.9.2.2")], ..Default::default() };
    let mut e = t.enforcer();
    e.apply(&policy).unwrap();
    assert_eq!(e.heal().unwrap(), None, "nothing changed: nothing to restore");
    let applied = nft.stateless_table().unwrap().expect("table applied");

    // Traffic changes counters, not the table.
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    assert_eq!(e.heal().unwrap(), None, "counters are no change");

    // Another firewall's table comes and goes: ours is not touched, nothing is restored.
    run(&["ip", "netns", "exec", &t.r, "nft", "add", "table", "ip", "someone_else"]);
    assert_eq!(e.heal().unwrap(), None);
    assert!(nft.list_table_text().is_ok());

    // `nft flush ruleset` (an admin reloading another firewall): the block is gone ...
    run(&["ip", "netns", "exec", &t.r, "nft", "flush", "ruleset"]);
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    // ... until the next check puts it back, the same as applied.
    assert_eq!(e.heal().unwrap(), Some("table inet spin was removed"));
    assert_eq!(nft.stateless_table().unwrap().as_deref(), Some(applied.as_str()));
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");

    // A set emptied behind our back is a changed table.
    run(&["ip", "netns", "exec", &t.r, "nft", "flush", "set", "inet", "spin", "block4"]);
    assert_eq!(reach(&t.c1, &SERVERS4), "2 3 130");
    assert_eq!(e.heal().unwrap(), Some("table inet spin was changed"));
    assert_eq!(reach(&t.c1, &SERVERS4), "-2 3 130");
    assert_eq!(e.heal().unwrap(), None, "restored: nothing more to do");
}
