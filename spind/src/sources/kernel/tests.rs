//! Kernel tests in network namespaces (root). Each test builds two namespaces joined by a veth
//! pair with fixed MACs: `a` (10.77.0.1, fd77::1; where spind's sockets live) and `b`
//! (10.77.0.2, fd77::2; the peer). Sockets are created by threads that entered a namespace
//! with `setns`, so they belong to it; they can then be used from any thread.
//!
//! Without root the tests fail with "needs root" unless `SPIND_SKIP_ROOT_TESTS=1` is set, in
//! which case they print that they are skipped (under `CI=true` that is a failure too). The
//! namespaces come from the `testbed` crate.

use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use testbed::netns::Netns;

use super::conntrack::{enable_accounting, Conntrack};
use super::neigh::Neigh;
use super::nflog::{Nflog, NflogKind};
use super::{start_sources, KernelSettings, WanInterfaces};
use crate::model::event::{DnsData, Event, FlowSample, Input, MacAddr};

const MAC_A: &str = "02:77:00:00:00:0a";
const MAC_B: &str = "02:77:00:00:00:0b";
const A4: &str = "10.77.0.1";
const B4: &str = "10.77.0.2";
const A6: &str = "fd77::1";
const B6: &str = "fd77::2";

/// True when the test may run (see `testbed::gate`: without root it fails, unless
/// `SPIND_SKIP_ROOT_TESTS=1` outside CI). libtest names each test's thread after the test.
fn root() -> bool {
    testbed::root_or_skip(std::thread::current().name().unwrap_or("a kernel test"))
}

/// Two namespaces joined by a veth pair (`va` in a, `vb` in b) with fixed MACs and addresses.
fn pair(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    a.exec(&["ip", "link", "add", "va", "address", MAC_A, "type", "veth", "peer", "name", "vb", "address", MAC_B]);
    a.exec(&["ip", "link", "set", "vb", "netns", &b.name]);
    for (ns, dev, v4, v6) in [(&a, "va", A4, A6), (&b, "vb", B4, B6)] {
        ns.exec(&["ip", "addr", "add", &format!("{v4}/24"), "dev", dev]);
        ns.exec(&["ip", "addr", "add", &format!("{v6}/64"), "dev", dev, "nodad"]);
        ns.exec(&["ip", "link", "set", dev, "up"]);
    }
    (a, b)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn find<'a>(flows: &'a [FlowSample], proto: u8, src: &str, dst: &str, dport: u16) -> Option<&'a FlowSample> {
    flows.iter().find(|f| f.protocol == proto && f.src == ip(src) && f.dst == ip(dst) && f.dst_port == dport)
}

/// Sends `n` datagrams of `size` bytes from a to b and `replies` answers of `rsize` bytes back;
/// waits until all arrived. Returns the sender's port.
#[allow(clippy::too_many_arguments)]
fn udp_exchange(
    a: &Netns,
    b: &Netns,
    dst: &str,
    port: u16,
    n: usize,
    size: usize,
    replies: usize,
    rsize: usize,
) -> u16 {
    let server = b.run(|| UdpSocket::bind(SocketAddr::new(ip(dst), port)).unwrap());
    let client = a
        .run(|| UdpSocket::bind(SocketAddr::new(if dst.contains(':') { ip("::") } else { ip("0.0.0.0") }, 0)).unwrap());
    server.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = [0u8; 2048];
    let mut from = None;
    for _ in 0..n {
        client.send_to(&vec![7u8; size], SocketAddr::new(ip(dst), port)).unwrap();
        let (len, f) = server.recv_from(&mut buf).unwrap();
        assert_eq!(len, size);
        from = Some(f);
    }
    for _ in 0..replies {
        server.send_to(&vec![8u8; rsize], from.unwrap()).unwrap();
        assert_eq!(client.recv(&mut buf).unwrap(), rsize);
    }
    client.local_addr().unwrap().port()
}

const CT_RULESET: &str = "table inet spindtest {
    chain out { type filter hook output priority 0; ct state new counter; }
    chain in { type filter hook input priority 0; ct state established counter; }
}";

#[test]
fn conntrack_dump_reads_and_zeroes_counters_v4_v6() {
    if !root() {
        return;
    }
    let (a, b) = pair("ct");
    // Conntrack runs in a namespace only once a rule needs it.
    a.nft(CT_RULESET);
    let was_off = a.run(|| enable_accounting().expect("nf_conntrack_acct"));
    assert!(was_off, "accounting is per namespace and off in a new one");
    assert!(!a.run(|| enable_accounting().unwrap()), "second call finds it on");
    let mut ct = a.run(|| Conntrack::open().expect("open conntrack"));

    // UDP v4: 3 x 100 bytes out (128-byte IP packets), 1 x 50 back (78).
    let sport4 = udp_exchange(&a, &b, B4, 9999, 3, 100, 1, 50);
    // UDP v6: 2 x 100 out (148-byte IP packets), 1 x 50 back (98).
    let sport6 = udp_exchange(&a, &b, B6, 9999, 2, 100, 1, 50);
    // TCP v4: 1000 bytes each way.
    let listener = b.run(|| TcpListener::bind((B4, 9998)).unwrap());
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1000];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
    });
    let mut c = a.run(|| TcpStream::connect((B4, 9998)).unwrap());
    {
        use std::io::{Read, Write};
        c.write_all(&[1u8; 1000]).unwrap();
        let mut buf = [0u8; 1000];
        c.read_exact(&mut buf).unwrap();
    }
    server.join().unwrap();
    drop(c);
    // ICMP echo.
    a.exec(&["ping", "-c", "1", "-W", "2", B4]);

    let mut flows = Vec::new();
    let st = ct.dump_and_zero(&mut flows).expect("dump");
    eprintln!("first dump: {st:?}, {} flows: {flows:#?}", flows.len());
    assert_eq!(st.enobufs, 0);

    let u4 = find(&flows, 17, A4, B4, 9999).expect("UDP v4 flow in the initiator direction");
    assert_eq!((u4.src_port, u4.packets, u4.bytes), (sport4, 4, 3 * 128 + 78));
    let u6 = find(&flows, 17, A6, B6, 9999).expect("UDP v6 flow (AF_INET6 dump)");
    assert_eq!((u6.src_port, u6.packets, u6.bytes), (sport6, 3, 2 * 148 + 98));
    let t = find(&flows, 6, A4, B4, 9998).expect("TCP flow in the initiator direction");
    assert!(t.packets >= 6 && t.bytes >= 2000 + 6 * 40, "TCP counters: {t:?}");
    let icmp = flows.iter().find(|f| f.protocol == 1 && f.src == ip(A4) && f.dst == ip(B4)).expect("ICMP flow");
    assert_eq!((icmp.icmp_type, icmp.packets, icmp.bytes), (8, 2, 2 * 84));
    assert!(find(&flows, 17, B4, A4, sport4).is_none(), "no reverse-direction duplicate");

    // CTRZERO: right after, the same entries have no traffic.
    let mut again = Vec::new();
    let st2 = ct.dump_and_zero(&mut again).expect("second dump");
    assert!(st2.entries >= 4, "entries still exist: {st2:?}");
    assert!(find(&again, 17, A4, B4, 9999).is_none(), "counters were zeroed: {again:?}");
    assert!(find(&again, 17, A6, B6, 9999).is_none(), "counters were zeroed: {again:?}");

    // New traffic on the same v4 flow counts from zero.
    let server = b.run(|| UdpSocket::bind((B4, 9997)).unwrap());
    let client = a.run(|| UdpSocket::bind((A4, 0)).unwrap());
    client.send_to(&[0u8; 10], (B4, 9997)).unwrap();
    server.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    server.recv(&mut [0u8; 64]).unwrap();
    let mut third = Vec::new();
    ct.dump_and_zero(&mut third).unwrap();
    let f = find(&third, 17, A4, B4, 9997).expect("new flow");
    assert_eq!((f.packets, f.bytes), (1, 38));
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    m.to_vec().unwrap()
}

fn dns_answer(query: &[u8]) -> Vec<u8> {
    let q = Message::from_vec(query).unwrap();
    let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
    let name = q.queries[0].name().clone();
    m.add_query(q.queries[0].clone());
    m.add_answer(Record::from_rdata(name, 300, RData::A(A::new(192, 0, 2, 7))));
    m.to_vec().unwrap()
}

#[test]
fn nflog_reports_dns_queries_answers_and_blocked_packets() {
    if !root() {
        return;
    }
    let (a, b) = pair("nl");
    // No queue-threshold in the rules: the socket's NFULA_CFG_QTHRESH=1 makes it prompt (the
    // latency is printed; its bound is a benchmark, and `config_msg`'s unit test checks the 1).
    a.nft(
        "table inet spindtest {
            chain out { type filter hook output priority 0; udp dport 53 log group 41; }
            chain in { type filter hook input priority 0;
                udp sport 53 log group 41;
                udp dport 7777 log group 42 drop;
                tcp dport 7778 log group 42 drop;
            }
        }",
    );
    let mut nflog =
        a.run(|| Nflog::open(&[(41, NflogKind::Dns), (42, NflogKind::Blocked)]).expect("bind NFLOG groups"));
    nflog.set_timeout(Duration::from_millis(20)).unwrap();
    // A second listener on the same group is refused with a clear error.
    let busy = a.run(|| Nflog::open(&[(41, NflogKind::Dns)]).err().expect("group already bound"));
    assert!(busy.to_string().contains("already listens"), "{busy}");

    for (server_ip, name) in [(B4, "www.example.test."), (B6, "v6.example.test.")] {
        let server = b.run(|| UdpSocket::bind((server_ip, 53)).unwrap());
        let client = a.run(|| UdpSocket::bind((if server_ip.contains(':') { A6 } else { A4 }, 0)).unwrap());
        server.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let responder = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            let (n, from) = server.recv_from(&mut buf).unwrap();
            server.send_to(&dns_answer(&buf[..n]), from).unwrap();
        });
        let t0 = Instant::now();
        client.send_to(&dns_query(99, name), (server_ip, 53)).unwrap();
        client.recv(&mut [0u8; 512]).unwrap();
        responder.join().unwrap();

        let (mut query, mut answer) = (None, None);
        let mut events = Vec::new();
        while (query.is_none() || answer.is_none()) && t0.elapsed() < Duration::from_secs(2) {
            nflog.recv(&mut events).unwrap();
            for e in events.drain(..) {
                match e {
                    Event::DnsQuery { client, qname, .. } => query = Some((client, qname, t0.elapsed())),
                    Event::DnsAnswer { qname, records, .. } => answer = Some((qname, records, t0.elapsed())),
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
        let (qclient, qname, qt) = query.expect("DnsQuery event");
        let (aname, records, at) = answer.expect("DnsAnswer event");
        eprintln!("{name}: query after {qt:?}, answer after {at:?}");
        assert_eq!(qname, name);
        assert_eq!(qclient, client_ip(server_ip));
        assert_eq!(aname, name);
        assert_eq!(records[0].data, DnsData::Addr(ip("192.0.2.7")));
        assert_eq!(records[0].ttl, 300);
    }

    // Blocked: UDP and TCP from b to a's dropped ports.
    let sender = b.run(|| UdpSocket::bind((B4, 5555)).unwrap());
    let next_blocked = |nflog: &mut Nflog| {
        let t0 = Instant::now();
        let mut events = Vec::new();
        while t0.elapsed() < Duration::from_secs(2) {
            nflog.recv(&mut events).unwrap();
            if let Some(e) = events.pop() {
                assert!(events.is_empty(), "one event per packet: {events:?}");
                let Event::Blocked { packet, .. } = e else { panic!("unexpected event {e:?}") };
                return (packet, t0.elapsed());
            }
        }
        panic!("no Blocked event within 2 s");
    };
    sender.send_to(&[0u8; 33], (A4, 7777)).unwrap();
    let (udp, t) = next_blocked(&mut nflog);
    eprintln!("blocked UDP after {t:?}");
    assert_eq!(
        udp,
        FlowSample {
            protocol: 17,
            src: ip(B4),
            dst: ip(A4),
            src_port: 5555,
            dst_port: 7777,
            icmp_type: 0,
            bytes: 33,
            packets: 1,
            reply_bytes: 0
        }
    );
    std::thread::scope(|s| {
        s.spawn(|| b.run(|| TcpStream::connect_timeout(&SocketAddr::new(ip(A4), 7778), Duration::from_millis(300))));
        let (tcp, _) = next_blocked(&mut nflog);
        assert_eq!((tcp.protocol, tcp.src, tcp.dst, tcp.dst_port, tcp.bytes), (6, ip(B4), ip(A4), 7778, 0));
    });
}

fn client_ip(server: &str) -> IpAddr {
    if server.contains(':') {
        ip(A6)
    } else {
        ip(A4)
    }
}

#[test]
fn neighbours_from_dump_and_notifications_v4_v6() {
    if !root() {
        return;
    }
    let (a, b) = pair("nb");
    // A static entry that only the initial dump can report.
    a.exec(&["ip", "neigh", "add", "10.77.0.9", "lladdr", "02:77:00:00:00:99", "dev", "va"]);
    // Entries that must be skipped: FAILED/INCOMPLETE have no lladdr; multicast MAC.
    a.exec(&["ip", "neigh", "add", "10.77.0.10", "lladdr", "01:00:5e:00:00:01", "dev", "va"]);
    let mut neigh = a.run(|| Neigh::open(&WanInterfaces::Auto).expect("rtnetlink"));
    let mut events = Vec::new();
    let want = |events: &[Event], ipaddr: &str, mac: &str| {
        events.iter().any(|e| matches!(e, Event::Neighbour { ip: i, mac: m, .. } if *i == ip(ipaddr) && *m == mac.parse::<MacAddr>().unwrap()))
    };
    let t0 = Instant::now();
    while !want(&events, "10.77.0.9", "02:77:00:00:00:99") && t0.elapsed() < Duration::from_secs(2) {
        neigh.recv(&mut events).unwrap();
    }
    assert!(want(&events, "10.77.0.9", "02:77:00:00:00:99"), "static entry from the dump: {events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Neighbour { ip: i, .. } if *i == ip("10.77.0.10"))));

    for peer in [B4, B6] {
        events.clear();
        let s = a.run(|| UdpSocket::bind((if peer.contains(':') { A6 } else { A4 }, 0)).unwrap());
        let t0 = Instant::now();
        s.send_to(b"hello", (peer, 9)).unwrap();
        while !want(&events, peer, MAC_B) && t0.elapsed() < Duration::from_secs(2) {
            neigh.recv(&mut events).unwrap();
        }
        let dt = t0.elapsed();
        eprintln!("neighbour {peer} after {dt:?}");
        assert!(want(&events, peer, MAC_B), "neighbour {peer} -> {MAC_B}: {events:?}");
    }
    drop(b);
}

const MAC_LAN_PEER: &str = "02:78:00:00:01:02";
const MAC_WAN_PEER: &str = "02:78:00:00:02:02";
const LAN_PEER4: &str = "10.78.1.2";
const LAN_PEER6: &str = "fd78:1::2";
const WAN_PEER4: &str = "10.78.2.2";
const WAN_PEER6: &str = "fd78:2::2";

/// A router namespace `r` with `lan0` (10.78.1.1, fd78:1::1) towards namespace `l` (peer
/// 10.78.1.2, fd78:1::2) and `wan0` (10.78.2.1, fd78:2::1) towards namespace `w` (the "ISP
/// gateway" 10.78.2.2, fd78:2::2). With `default_via_wan`, both default routes go via `w`.
fn router(tag: &str, default_via_wan: bool) -> (Netns, Netns, Netns) {
    let r = Netns::new(&format!("{tag}r"));
    let l = Netns::new(&format!("{tag}l"));
    let w = Netns::new(&format!("{tag}w"));
    for (peer, dev, mac, net) in [(&l, "lan0", MAC_LAN_PEER, 1), (&w, "wan0", MAC_WAN_PEER, 2)] {
        r.exec(&[
            "ip",
            "link",
            "add",
            dev,
            "address",
            &format!("02:78:00:00:0{net}:01"),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            mac,
        ]);
        r.exec(&["ip", "link", "set", "eth0", "netns", &peer.name]);
        for (ns, d, host) in [(&r, dev, 1), (peer, "eth0", 2)] {
            ns.exec(&["ip", "addr", "add", &format!("10.78.{net}.{host}/24"), "dev", d]);
            ns.exec(&["ip", "addr", "add", &format!("fd78:{net}::{host}/64"), "dev", d, "nodad"]);
            ns.exec(&["ip", "link", "set", d, "up"]);
        }
    }
    if default_via_wan {
        r.exec(&["ip", "route", "add", "default", "via", WAN_PEER4]);
        r.exec(&["ip", "-6", "route", "add", "default", "via", WAN_PEER6]);
    }
    (r, l, w)
}

fn ifindex(ns: &Netns, name: &str) -> i32 {
    // Resolved in the namespace of the thread that ns.run enters.
    let name = name.to_string();
    ns.run(move || nix::net::if_::if_nametoindex(name.as_str()).unwrap_or(0)) as i32
}

/// Which of `peers` a [`Neigh`] reports after the router pinged them (the router's entries for
/// them are flushed first, so each ping makes a fresh entry and a notification). Waits up to
/// 2 s for the expected ones and then 0.5 s more for anything unexpected.
fn reported_after_ping(r: &Netns, neighs: &mut [&mut Neigh], peers: &[&str]) -> Vec<Vec<(IpAddr, MacAddr)>> {
    let mut seen = vec![Vec::new(); neighs.len()];
    let mut events = Vec::new();
    // Read what is queued from before (route changes included) and drop it; then flush. Every
    // entry reported from here on was learned after the flush, under the current routes: an entry
    // the kernel learns between the flush and the pings (a peer's own ARP request) is kept too.
    for n in neighs.iter_mut() {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(200) {
            n.recv(&mut events).unwrap();
        }
        events.clear();
    }
    r.exec(&["ip", "neigh", "flush", "all"]);
    for peer in peers {
        r.exec(&["ping", "-c", "1", "-W", "2", peer]);
        // The kernel learned the peer, whatever spind reports.
        let out = Command::new("ip").args(["netns", "exec", &r.name, "ip", "neigh", "show", peer]).output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(shown.contains("lladdr"), "router has a neighbour entry for {peer}: {shown:?}");
    }
    // The notifications are queued by now; read until each socket has been quiet for a second
    // (a busy machine delays this reader, not the kernel's queueing).
    for (i, n) in neighs.iter_mut().enumerate() {
        let (t0, mut last_new) = (Instant::now(), Instant::now());
        while last_new.elapsed() < Duration::from_secs(1) && t0.elapsed() < Duration::from_secs(20) {
            n.recv(&mut events).unwrap();
            for e in events.drain(..) {
                if let Event::Neighbour { ip, mac, .. } = e {
                    if !seen[i].contains(&(ip, mac)) {
                        seen[i].push((ip, mac));
                        last_new = Instant::now();
                    }
                }
            }
        }
    }
    seen
}

fn has(seen: &[(IpAddr, MacAddr)], peer: &str, mac: &str) -> bool {
    seen.contains(&(ip(peer), mac.parse().unwrap()))
}

#[test]
fn neighbours_on_the_default_route_interface_are_not_devices() {
    if !root() {
        return;
    }
    let (r, _l, _w) = router("wan", true);
    let (lan0, wan0) = (ifindex(&r, "lan0"), ifindex(&r, "wan0"));
    let mut neigh = r.run(|| Neigh::open(&WanInterfaces::Auto).expect("rtnetlink"));
    assert_eq!(
        neigh.wan_interfaces().iter().copied().collect::<Vec<_>>(),
        vec![wan0],
        "WAN = default route's interface"
    );
    let peers = [LAN_PEER4, LAN_PEER6, WAN_PEER4, WAN_PEER6];

    let seen = reported_after_ping(&r, &mut [&mut neigh], &peers).remove(0);
    eprintln!("default route via wan0: {seen:?}");
    assert!(
        has(&seen, LAN_PEER4, MAC_LAN_PEER) && has(&seen, LAN_PEER6, MAC_LAN_PEER),
        "LAN peer is a device: {seen:?}"
    );
    assert!(!seen.iter().any(|(_, m)| *m == MAC_WAN_PEER.parse().unwrap()), "WAN gateway is no device: {seen:?}");

    // The default routes move to lan0 (a route notification, well within the 10 s re-dump).
    r.exec(&["ip", "route", "replace", "default", "via", LAN_PEER4, "dev", "lan0"]);
    r.exec(&["ip", "-6", "route", "del", "default"]);
    r.exec(&["ip", "-6", "route", "add", "default", "via", LAN_PEER6, "dev", "lan0"]);
    let seen = reported_after_ping(&r, &mut [&mut neigh], &peers).remove(0);
    eprintln!("default route via lan0: {seen:?}");
    assert!(has(&seen, WAN_PEER4, MAC_WAN_PEER) && has(&seen, WAN_PEER6, MAC_WAN_PEER), "wan0 is no WAN now: {seen:?}");
    assert!(!seen.iter().any(|(_, m)| *m == MAC_LAN_PEER.parse().unwrap()), "lan0 carries the default route: {seen:?}");
    assert_eq!(neigh.wan_interfaces().iter().copied().collect::<Vec<_>>(), vec![lan0]);

    // Only an IPv6 default route left, on wan0: IPv6 alone makes it WAN.
    r.exec(&["ip", "route", "del", "default"]);
    r.exec(&["ip", "-6", "route", "replace", "default", "via", WAN_PEER6, "dev", "wan0"]);
    let seen = reported_after_ping(&r, &mut [&mut neigh], &[LAN_PEER4, WAN_PEER4]).remove(0);
    assert!(has(&seen, LAN_PEER4, MAC_LAN_PEER), "{seen:?}");
    assert!(!has(&seen, WAN_PEER4, MAC_WAN_PEER), "IPv4 neighbour on the IPv6 WAN interface: {seen:?}");

    // No default route at all: every neighbour is a device.
    r.exec(&["ip", "-6", "route", "del", "default"]);
    let seen = reported_after_ping(&r, &mut [&mut neigh], &[LAN_PEER4, WAN_PEER4]).remove(0);
    assert!(has(&seen, LAN_PEER4, MAC_LAN_PEER) && has(&seen, WAN_PEER4, MAC_WAN_PEER), "{seen:?}");
}

#[test]
fn wan_interfaces_setting_overrides_detection() {
    if !root() {
        return;
    }
    // No default route on wan0; the default route points into the LAN.
    let (r, _l, _w) = router("wanx", false);
    r.exec(&["ip", "route", "add", "default", "via", LAN_PEER4]);
    let wan0 = ifindex(&r, "wan0");
    let mut named = r.run(|| Neigh::open(&WanInterfaces::parse("wan0, nosuch0")).expect("rtnetlink"));
    assert_eq!(named.wan_interfaces().iter().copied().collect::<Vec<_>>(), vec![wan0]);
    let mut off = r.run(|| Neigh::open(&WanInterfaces::parse("none")).expect("rtnetlink"));
    let mut auto = r.run(|| Neigh::open(&WanInterfaces::Auto).expect("rtnetlink"));
    let peers = [LAN_PEER4, LAN_PEER6, WAN_PEER4, WAN_PEER6];
    let seen = reported_after_ping(&r, &mut [&mut named, &mut off, &mut auto], &peers);
    eprintln!("named: {:?}\nnone: {:?}\nauto: {:?}", seen[0], seen[1], seen[2]);
    let (named_seen, off_seen, auto_seen) = (&seen[0], &seen[1], &seen[2]);
    assert!(has(named_seen, LAN_PEER4, MAC_LAN_PEER) && has(named_seen, LAN_PEER6, MAC_LAN_PEER), "{named_seen:?}");
    assert!(!named_seen.iter().any(|(_, m)| *m == MAC_WAN_PEER.parse().unwrap()), "wan0 named: {named_seen:?}");
    for peer in [LAN_PEER4, LAN_PEER6] {
        assert!(has(off_seen, peer, MAC_LAN_PEER), "none: {off_seen:?}");
    }
    for peer in [WAN_PEER4, WAN_PEER6] {
        assert!(has(off_seen, peer, MAC_WAN_PEER), "none: {off_seen:?}");
    }
    // For comparison: detection alone would have taken lan0 (IPv4 default route) as WAN.
    assert!(has(auto_seen, WAN_PEER4, MAC_WAN_PEER) && !has(auto_seen, LAN_PEER4, MAC_LAN_PEER), "{auto_seen:?}");

    // Names are resolved again on a re-read (here triggered by a default route change): after
    // a rename wan0 is no longer named.
    r.exec(&["ip", "link", "set", "wan0", "down"]);
    r.exec(&["ip", "link", "set", "wan0", "name", "wan1"]);
    r.exec(&["ip", "link", "set", "wan1", "up"]);
    r.exec(&["ip", "route", "del", "default"]);
    r.exec(&["ip", "route", "add", "default", "via", LAN_PEER4]);
    let seen = reported_after_ping(&r, &mut [&mut named], &[WAN_PEER4]).remove(0);
    assert!(has(&seen, WAN_PEER4, MAC_WAN_PEER), "renamed wan1 is not named: {seen:?}");
    assert!(named.wan_interfaces().is_empty());
}

#[test]
fn start_sources_feeds_flows_ticks_dns_and_neighbours() {
    if !root() {
        return;
    }
    let (a, b) = pair("all");
    a.nft(
        "table inet spindtest {
            chain out { type filter hook output priority 0; ct state new counter; udp dport 53 log group 51; }
            chain in { type filter hook input priority 0; udp sport 53 log group 51; udp dport 7777 log group 52 drop; }
        }",
    );
    a.run(|| super::check().expect("start-up checks pass in a namespace"));
    let (tx, rx) = mpsc::channel::<Input>();
    let sources = a.run(|| {
        start_sources(&KernelSettings { dns_group: 51, block_group: 52, ..KernelSettings::default() }, tx)
            .expect("start sources")
    });
    let sport = udp_exchange(&a, &b, B4, 53, 1, 30, 1, 40);
    let t0 = Instant::now();
    let (mut flow, mut ticks, mut neigh) = (false, 0, false);
    while t0.elapsed() < Duration::from_secs(5) && !(flow && ticks >= 2 && neigh) {
        let Ok(Input::Event(ev)) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
        match ev {
            Event::Flows { flows, local, .. } => {
                assert!(!local);
                if let Some(f) = find(&flows, 17, A4, B4, 53) {
                    assert_eq!((f.src_port, f.packets, f.bytes), (sport, 2, 58 + 68));
                    flow = true;
                }
            }
            Event::Tick { .. } => ticks += 1,
            Event::Neighbour { ip: i, mac, .. } if i == ip(B4) => {
                assert_eq!(mac, MAC_B.parse().unwrap());
                neigh = true;
            }
            _ => {}
        }
    }
    // The datagrams are not valid DNS (the decoder drops them), but NFLOG delivered them.
    let packets = sources.counters.nflog_packets.load(Ordering::Relaxed);
    assert!(flow, "conntrack flow");
    assert!(ticks >= 2, "ticks");
    assert!(neigh, "neighbour");
    assert!(packets >= 2, "NFLOG packets: {packets}");
    sources.stop();
}

/// CPU time (user, system) of the calling thread.
fn thread_cpu() -> (Duration, Duration) {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::time::TimeValLike;
    let ru = getrusage(UsageWho::RUSAGE_THREAD).expect("getrusage");
    let d = |tv: nix::sys::time::TimeVal| Duration::from_micros(tv.num_microseconds() as u64);
    (d(ru.user_time()), d(ru.system_time()))
}

/// Measures dump_and_zero with 10k and 50k live UDP entries that all have traffic.
/// `cargo test -p spind --lib kernel::tests::conntrack_dump_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn conntrack_dump_cost_10k_50k() {
    if !root() {
        return;
    }
    let (a, _b) = pair("perf");
    a.nft(CT_RULESET);
    a.run(|| enable_accounting().unwrap());
    let mut ct = a.run(|| Conntrack::open().unwrap());
    let sock = a.run(|| UdpSocket::bind((A4, 40000)).unwrap());
    let mut flows = Vec::with_capacity(60_000);
    for n in [10_000u16, 50_000] {
        for round in 0..3 {
            for port in 1..=n {
                let _ = sock.send_to(b"x", (B4, port));
            }
            flows.clear();
            let (u0, s0) = thread_cpu();
            let t0 = Instant::now();
            let st = ct.dump_and_zero(&mut flows).unwrap();
            let wall = t0.elapsed();
            let (u1, s1) = thread_cpu();
            eprintln!(
                "{n} entries (round {round}): dump_and_zero {wall:?} wall, user {:?}, sys {:?}; {st:?}, {} with traffic",
                u1 - u0,
                s1 - s0,
                flows.len()
            );
            assert_eq!(st.enobufs, 0);
            assert!(flows.len() >= n as usize, "every flow reported: {}", flows.len());
            flows.clear();
            let (u0, s0) = thread_cpu();
            let t0 = Instant::now();
            let st = ct.dump_and_zero(&mut flows).unwrap();
            let (u1, s1) = thread_cpu();
            eprintln!(
                "  idle dump right after: {:?} wall, user {:?}, sys {:?}; {st:?}, {} with traffic",
                t0.elapsed(),
                u1 - u0,
                s1 - s0,
                flows.len()
            );
        }
    }
}

/// Drops CAP_NET_ADMIN from the calling thread's effective set (capabilities are per thread).
fn drop_net_admin() {
    caps::drop(None, caps::CapSet::Effective, caps::Capability::CAP_NET_ADMIN).expect("capset");
}

#[test]
fn without_cap_net_admin_errors_say_what_to_do() {
    if !root() {
        return;
    }
    let ns = Netns::new("cap");
    let (ct, nflog, check) = ns.run(|| {
        drop_net_admin();
        assert!(!super::has_cap_net_admin());
        let ct = Conntrack::open().and_then(|mut c| c.dump_and_zero(&mut Vec::new())).expect_err("conntrack refused");
        let nflog = Nflog::open(&[(3, NflogKind::Dns)]).err().expect("NFLOG refused");
        let check = super::check().expect_err("check fails");
        (ct.to_string(), nflog.to_string(), check.to_string())
    });
    for msg in [&ct, &nflog, &check] {
        assert!(msg.contains("CAP_NET_ADMIN") && msg.contains("run as root"), "{msg}");
    }
    assert!(ct.contains("dump conntrack"), "{ct}");
    assert!(nflog.contains("NFLOG"), "{nflog}");
    eprintln!("{ct}\n{nflog}");
}
