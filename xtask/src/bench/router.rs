//! `cargo xtask bench router` (root): spind live on a namespace router, as in production, on the
//! test bed's home network (`testbed::netns::Topology`, the one spind's router tests use) with
//! three more client addresses, a UDP sink and a DNS responder:
//!
//! ```text
//!  client                         router (spind, NAT)                 server ("internet")
//!  eth0 192.168.8.100-103/24 -- lan0 192.168.8.1  wan0 203.0.113.1 -- eth0 203.0.113.2
//!                                                                      lo 198.51.100.10: UDP sink
//!                                                                      (nft drop, ports 9000-9015),
//!                                                                      DNS responder on :53
//! ```
//!
//! 1. Flows kept alive: N UDP flows (N = 1,000, 10,000, 50,000) from the client's four
//!    addresses through the router, one 60-byte datagram per flow per second, paced evenly in
//!    1 ms slots (a raw socket, so 50,000 source ports need no 50,000 descriptors). After 5 s to
//!    settle, 10 s of spind's CPU (utime+stime of all threads, `/proc/PID/stat`) and RSS
//!    (`VmRSS`, `VmHWM`; the MQTT broker is inside spind), and the `traffic` messages the test
//!    bed's MQTT subscriber (`testbed::mqtt`) in the router namespace receives: flows per message.
//! 2. DNS at 5,000 queries/s for 10 s (distinct names `q<N>.bench.test`, each answered with its
//!    own address 198.18.0.0 + N by a tiny responder on the server), once before spind runs and
//!    once with it: client loss and RTT p50/p99, `dnsquery` messages per query, and for every
//!    answer of a never-seen name the time from the answer on the wire (the responder sending
//!    it) to the first `SPIN/traffic/node/<id>` message carrying both that name and the answered
//!    address at the subscriber (same machine, same CLOCK_REALTIME); then, for 5 quiet seconds,
//!    the `nodeInfo` messages of nodes that did not change (there should be none).
//!
//! spind is the test bed's launcher (`testbed::spind`) at log level 4, as in production.
//! Namespaces, spind and the subscriber are removed on exit, also on error or panic; spind's
//! log is kept as `target/bench/spind-router.log`.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runner::{cmd, Shell, Stream};
use testbed::load::{send_flows, Flows};
use testbed::netns::{in_netns, nft_in, spawn_in_netns as in_ns, Topology};
use testbed::spind::{Spind, SpindBuilder};

const CLIENT_IPS: [Ipv4Addr; 4] = [
    Ipv4Addr::new(192, 168, 8, 100),
    Ipv4Addr::new(192, 168, 8, 101),
    Ipv4Addr::new(192, 168, 8, 102),
    Ipv4Addr::new(192, 168, 8, 103),
];
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
const SINK_PORT: u16 = 9000;
const SINK_PORTS: u32 = 16;
const FLOW_COUNTS: [u32; 3] = [1_000, 10_000, 50_000];
const SETTLE: Duration = Duration::from_secs(5);
const MEASURE: Duration = Duration::from_secs(10);
const DNS_RATE: u32 = 5_000;
const DNS_SECS: u32 = 10;
const DNS_SOCKETS: usize = 4;
/// The quiet window after the DNS load in which unchanged nodes must not be published.
const QUIET: Duration = Duration::from_secs(5);
/// The answer to `q<N>.bench.test` is 198.18.0.0 + N (the benchmarking range, 198.18.0.0/15).
const ANSWER_BASE: u32 = u32::from_be_bytes([198, 18, 0, 0]);

pub fn run(bin: &Path, dir: &Path) -> Result<String, String> {
    let started = Instant::now();
    let mut net = Net::build(dir)?;
    let stop_dns = Arc::new(AtomicBool::new(false));
    // When the responder sent the answer to query n (Unix ns): the answer on the wire.
    let answered: Arc<Vec<AtomicU64>> = Arc::new((0..2 * DNS_RATE * DNS_SECS).map(|_| AtomicU64::new(0)).collect());
    let responder = dns_responder(&net.server, stop_dns.clone(), answered.clone());

    // DNS without spind (NAT and conntrack on the router as before, no spind rules).
    eprintln!("xtask: router bench: {DNS_RATE} DNS queries/s for {DNS_SECS} s without spind");
    let base = dns_load(&net.client, 0)?;
    eprintln!("xtask:   without spind: {}", udp_drops(&net));

    let pid = net.start_spind(bin)?;
    // First as a router runs most of the time: nobody watching. The broker then keeps no
    // history of the traffic topic.
    eprintln!("xtask: router bench: 10000 UDP flows, no MQTT subscriber");
    let mut flows = vec![flow_run(&net, pid, None, 10_000)?];
    let sub = Subscriber::start(&net)?;
    for n in FLOW_COUNTS {
        eprintln!("xtask: router bench: {n} UDP flows, subscriber on SPIN/traffic/#");
        flows.push(flow_run(&net, pid, Some(&sub), n)?);
    }

    eprintln!("xtask: router bench: {DNS_RATE} DNS queries/s for {DNS_SECS} s with spind");
    // The 50,000 idle flows would linger for 30 s; the baseline run had none.
    let (sh, router) = (shell()?, &net.router);
    let _ = cmd!(sh, "ip netns exec {router} conntrack -F").read();
    std::thread::sleep(Duration::from_secs(1));
    sub.clear();
    let cpu0 = cpu_ticks(pid)?;
    let nflog0 = thread_ticks(pid, "spind-nflog");
    let t0 = Instant::now();
    let first = DNS_RATE * DNS_SECS;
    // SPIND_BENCH_PERF=1: profile spind during the DNS load (use a binary with symbols).
    let perf = std::env::var("SPIND_BENCH_PERF").is_ok_and(|v| v == "1").then(|| {
        let (pid, data) = (pid.to_string(), net.dir.join("perf-dns.data"));
        cmd!(sh, "perf record -g -q -p {pid} -o {data}").spawn(Stream::Inherit, Stream::Null)
    });
    let with = dns_load(&net.client, first)?;
    eprintln!("xtask:   with spind: {}", udp_drops(&net));
    if let Some(Ok(p)) = perf {
        // SAFETY: plain kill of our child; SIGINT makes perf write its data.
        unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
        let _ = p.wait_with_output();
    }
    std::thread::sleep(Duration::from_secs(2));
    let dns_cpu = cpu_percent(cpu_ticks(pid)? - cpu0, t0.elapsed());
    let nflog_cpu = cpu_percent(thread_ticks(pid, "spind-nflog").saturating_sub(nflog0), t0.elapsed());
    eprintln!("xtask:   with spind: cpu {dns_cpu:.2}% (NFLOG thread {nflog_cpu:.2}%)");
    let status = proc_status(pid)?;
    let msgs = sub.take();
    // Nothing changes now: every nodeInfo in these seconds is an unchanged node published again.
    std::thread::sleep(QUIET);
    let republished = sub.take().iter().filter(|s| matches!(s, Seen::NodeInfo)).count();
    stop_dns.store(true, Ordering::Relaxed);
    let _ = responder.join();
    let spind_alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    sub.stop();
    net.stop_spind();
    if !spind_alive {
        return Err(format!("spind died during the benchmark; see {}", net.log().display()));
    }

    let answered: Vec<u64> = answered.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    let dns = DnsResult::evaluate(&base, &with, first, &answered, &msgs, republished);
    eprintln!("xtask: router bench took {:.0} s", started.elapsed().as_secs_f64());
    Ok(report(&flows, &dns, (dns_cpu, nflog_cpu), &status))
}

// ---- namespaces ----------------------------------------------------------------------------

/// The test bed's home network with the benchmark's additions, and spind in its router.
struct Net {
    // Dropped first: spind stops before its namespace goes.
    spind: Option<Spind>,
    topo: Topology,
    client: String,
    router: String,
    server: String,
    dir: PathBuf,
}

/// A shell for the benchmark's commands (errors as text, like the rest of the benchmark).
pub(super) fn shell() -> Result<Shell, String> {
    Shell::new().map_err(|e| e.to_string())
}

/// Runs a command to completion; its stdout, or an error naming it.
pub(super) fn read(c: runner::Cmd) -> Result<String, String> {
    c.read().map_err(|e| e.to_string())
}

impl Net {
    fn build(dir: &Path) -> Result<Net, String> {
        let topo = Topology::new();
        let (client, router, server) = (topo.client.clone(), topo.router.clone(), topo.server.clone());
        let net = Net { spind: None, topo, client, router, server, dir: dir.to_path_buf() };
        let (c, r, s) = (net.topo.client.as_str(), net.topo.router.as_str(), net.topo.server.as_str());
        let sh = shell()?;
        // Four client addresses (the flows' sources); the first one is the source of the rest.
        for ip in &CLIENT_IPS[1..] {
            let ip = ip.to_string();
            read(cmd!(sh, "ip -n {c} addr add {ip}/24 dev eth0"))?;
        }
        read(cmd!(sh, "ip -n {c} route replace default via 192.168.8.1 src 192.168.8.100"))?;
        // The flows' datagrams end here, without an ICMP error each.
        nft_in(
            s,
            &format!(
                "table inet benchsink {{\n chain in {{\n  type filter hook input priority 0; policy accept;\n  udp dport {}-{} drop\n }}\n}}\n",
                SINK_PORT,
                SINK_PORT + SINK_PORTS as u16 - 1
            ),
        );
        // The router learns each client address's MAC (as it would from the device's traffic).
        for ip in CLIENT_IPS {
            let ip = ip.to_string();
            read(cmd!(sh, "ip netns exec {r} ping -c1 -W2 -q {ip}"))?;
        }
        Ok(net)
    }

    /// Where spind's log is kept after the run.
    fn log(&self) -> PathBuf {
        self.dir.join("spind-router.log")
    }

    /// Starts spind in the router namespace (live mode, log level 4) and waits for it to answer.
    fn start_spind(&mut self, bin: &Path) -> Result<u32, String> {
        // The clients ask the server's resolver (the router has none): no DNS redirect.
        let spind = SpindBuilder::new(bin).netns(&self.router).log_level(4).config_line("dns_redirect = 0").start();
        let pid = spind.child.id();
        self.spind = Some(spind);
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if !exe.to_string_lossy().contains("spind") {
            return Err(format!("pid {pid} is {}, not spind", exe.display()));
        }
        Ok(pid)
    }

    fn mqtt_port(&self) -> u16 {
        self.spind.as_ref().map_or(0, |s| s.mqtt_port)
    }

    /// SIGTERM, as a service manager stops it; its log is copied out of its temporary directory.
    fn stop_spind(&mut self) {
        if let Some(mut s) = self.spind.take() {
            s.stop(Duration::from_secs(5));
            let _ = std::fs::write(self.log(), s.log_text());
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The topology removes the namespaces and whatever still runs in them.
        self.stop_spind();
    }
}

// ---- /proc --------------------------------------------------------------------------------

/// utime + stime of the whole process (all threads), in clock ticks.
pub(super) fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("spind is gone: {e}"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc/PID/stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f[11].parse().map_err(|_| "bad utime")?;
    let stime: u64 = f[12].parse().map_err(|_| "bad stime")?;
    Ok(utime + stime)
}

/// utime + stime of spind's threads named `name` (`/proc/PID/task/TID/comm`), in clock ticks:
/// what the kernel sources (`spind-conntrack`, `spind-nflog`) cost apart from the rest.
pub(super) fn thread_ticks(pid: u32, name: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    let mut ticks = 0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some(i) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks
}

pub(super) fn cpu_percent(ticks: u64, elapsed: Duration) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz / elapsed.as_secs_f64() * 100.0
}

#[derive(Clone, Copy, Default)]
pub(super) struct Mem {
    pub(super) rss_kb: u64,
    pub(super) hwm_kb: u64,
}

pub(super) fn proc_status(pid: u32) -> Result<Mem, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("spind is gone: {e}"))?;
    let field = |name: &str| {
        s.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    Ok(Mem { rss_kb: field("VmRSS:"), hwm_kb: field("VmHWM:") })
}

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

// ---- the MQTT subscriber ------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Seen {
    /// `keys`: (from_port << 16 | to_port) of each flow, which identifies a bench flow.
    Traffic {
        ns: u64,
        flows: u32,
        packets: u64,
        keys: Vec<u32>,
    },
    DnsQuery {
        n: u32,
    },
    /// A `nodeInfo` carrying `q<n>.bench.test.` together with its answer address.
    NodeName {
        ns: u64,
        n: u32,
    },
    /// Any `nodeInfo` (non-empty retained node topic).
    NodeInfo,
}

/// The test bed's MQTT subscriber on everything under `SPIN/traffic`, in the router namespace;
/// a thread parses what it receives into compact records.
struct Subscriber {
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl Subscriber {
    fn start(net: &Net) -> Result<Subscriber, String> {
        let port = net.mqtt_port();
        // Returns once the subscription is acknowledged.
        let sub = in_netns(&net.router, move || testbed::mqtt::Subscriber::connect(port, false, "SPIN/traffic/#"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (seen.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let Ok(m) = sub.msgs.recv_timeout(Duration::from_millis(100)) else { continue };
                let ns = m.received.duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
                let mut recs = Vec::new();
                parse_msg(ns, &m.topic, &String::from_utf8_lossy(&m.payload), &mut recs);
                if !recs.is_empty() {
                    s2.lock().unwrap().extend(recs);
                }
            }
        });
        Ok(Subscriber { seen, stop, reader: Mutex::new(Some(reader)) })
    }

    fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }

    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.reader.lock().unwrap().take() {
            let _ = r.join();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}

fn parse_u64_after(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)? + key.len();
    let digits: String = s[i..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Every `q<N>.bench.test.` in `s`.
fn bench_names(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(".bench.test.") {
        let head = &rest[..i];
        let digits: String = head.chars().rev().take_while(char::is_ascii_digit).collect();
        let before = head.len() - digits.len();
        if !digits.is_empty() && before >= 1 && &head[before - 1..before] == "q" {
            if let Ok(n) = digits.chars().rev().collect::<String>().parse() {
                out.push(n);
            }
        }
        rest = &rest[i + 12..];
    }
    out
}

/// The records of one message, received at `ns` (Unix time).
fn parse_msg(ns: u64, topic: &str, payload: &str, out: &mut Vec<Seen>) {
    if topic == "SPIN/traffic" {
        if payload.contains("\"command\":\"traffic\"") {
            let flows = payload.matches("\"from_port\"").count() as u32;
            let packets = parse_u64_after(payload, "\"total_count\":").unwrap_or(0);
            let keys = payload
                .split("\"from_port\":")
                .skip(1)
                .filter_map(|f| {
                    let from: u32 = f.split(',').next()?.parse().ok()?;
                    let to = parse_u64_after(f, "\"to_port\":")? as u32;
                    Some(from << 16 | to)
                })
                .collect();
            out.push(Seen::Traffic { ns, flows, packets, keys });
        } else if payload.contains("\"command\":\"dnsquery\"") {
            if let Some(&n) = bench_names(payload).first() {
                out.push(Seen::DnsQuery { n });
            }
        }
    } else if topic.starts_with("SPIN/traffic/node/") && payload.contains("\"command\":\"nodeInfo\"") {
        out.push(Seen::NodeInfo);
        for n in bench_names(payload) {
            let ip = Ipv4Addr::from(ANSWER_BASE + n);
            if payload.contains(&format!("\"{ip}\"")) {
                out.push(Seen::NodeName { ns, n });
            }
        }
    }
}

// ---- flows --------------------------------------------------------------------------------

struct FlowResult {
    n: u32,
    cpu: f64,
    /// CPU of the conntrack thread alone (dump, parse, hand-over).
    ct_cpu: f64,
    mem: Mem,
    /// Flows in each `traffic` message of the measuring window.
    per_msg: Vec<u32>,
    /// Packets reported per second of the window (sum of `total_count`).
    packets_per_s: f64,
    /// Distinct flows reported in the window.
    distinct: usize,
    conntrack: u64,
    /// Whether a subscriber was connected.
    subscribed: bool,
    /// Datagrams the client sent per second in the window (should be `n`).
    sent_per_s: f64,
}

/// Keeps `n` flows alive from the client namespace until `stop`: flow i is from
/// CLIENT_IPS[i % 4]:(10000 + i / 4) to SERVER_IP:(9000 + i % 16), once a second.
fn flow_sender(client: &str, n: u32, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) -> JoinHandle<Result<u64, String>> {
    let flows = Flows { sources: CLIENT_IPS.to_vec(), dst: SERVER_IP, dst_port: SINK_PORT, dst_ports: SINK_PORTS, n };
    send_flows(client, flows, stop, count)
}

/// UDP receive-buffer drops (since the namespaces were made) in the client and server.
fn udp_drops(net: &Net) -> String {
    let get = |ns: &str| {
        shell()
            .and_then(|sh| read(cmd!(sh, "ip netns exec {ns} nstat -asz UdpRcvbufErrors")))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("UdpRcvbufErrors"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
            })
            .unwrap_or_else(|| "?".into())
    };
    format!("UDP receive-buffer drops: client {}, server {}", get(&net.client), get(&net.server))
}

fn conntrack_count(router: &str) -> u64 {
    shell()
        .and_then(|sh| read(cmd!(sh, "ip netns exec {router} cat /proc/sys/net/netfilter/nf_conntrack_count")))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn flow_run(net: &Net, pid: u32, sub: Option<&Subscriber>, n: u32) -> Result<FlowResult, String> {
    // Start from an empty table, so earlier (now idle) flows cost nothing here.
    let (sh, router) = (shell()?, &net.router);
    let _ = cmd!(sh, "ip netns exec {router} conntrack -F").read();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let sender = flow_sender(&net.client, n, stop.clone(), count.clone());
    std::thread::sleep(SETTLE);
    if let Some(sub) = sub {
        sub.clear();
    }
    let cpu0 = cpu_ticks(pid)?;
    let ct0 = thread_ticks(pid, "spind-conntrack");
    let t0 = Instant::now();
    let w0 = unix_ns();
    let c0 = count.load(Ordering::Relaxed);
    std::thread::sleep(MEASURE);
    let c1 = count.load(Ordering::Relaxed);
    let cpu = cpu_percent(cpu_ticks(pid)? - cpu0, t0.elapsed());
    let ct_cpu = cpu_percent(thread_ticks(pid, "spind-conntrack").saturating_sub(ct0), t0.elapsed());
    let w1 = unix_ns();
    let mem = proc_status(pid)?;
    let conntrack = conntrack_count(&net.router);
    // Let the last message of the window arrive.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let sent = sender.join().map_err(|_| "flow sender panicked")??;
    let mut per_msg = Vec::new();
    let mut packets = 0;
    let mut distinct = std::collections::HashSet::new();
    let mut times = Vec::new();
    for s in sub.map(Subscriber::take).unwrap_or_default() {
        if let Seen::Traffic { ns, flows, packets: p, keys } = s {
            if ns >= w0 && ns < w1 {
                per_msg.push(flows);
                packets += p;
                distinct.extend(keys);
                times.push(ns);
            }
        }
    }
    let gaps: Vec<u64> = times.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
    let secs = (w1 - w0) as f64 / 1e9;
    let sent_per_s = (c1 - c0) as f64 / secs;
    eprintln!(
        "xtask:   {n} flows: cpu {cpu:.2}% (conntrack thread {ct_cpu:.2}%), rss {} kB (hwm {} kB), {} traffic messages, flows/msg {:?}, conntrack {conntrack}, {sent} datagrams sent, {} distinct flows, message gaps (ms) {gaps:?}",
        mem.rss_kb,
        mem.hwm_kb,
        per_msg.len(),
        per_msg,
        distinct.len()
    );
    Ok(FlowResult {
        n,
        cpu,
        ct_cpu,
        mem,
        per_msg,
        packets_per_s: packets as f64 / secs,
        distinct: distinct.len(),
        conntrack,
        subscribed: sub.is_some(),
        sent_per_s,
    })
}

// ---- DNS ----------------------------------------------------------------------------------

/// Answers `q<N>.bench.test A` with 198.18.0.0 + N (TTL 300) on SERVER_IP:53 until `stop`.
fn dns_responder(server: &str, stop: Arc<AtomicBool>, answered: Arc<Vec<AtomicU64>>) -> JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let h = in_ns(server, move || {
        let sock = UdpSocket::bind(SocketAddrV4::new(SERVER_IP, 53)).expect("bind the DNS responder");
        testbed::dnsload::big_rcvbuf(&sock);
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let _ = tx.send(());
        let mut buf = [0u8; 512];
        let mut out = Vec::with_capacity(512);
        while !stop.load(Ordering::Relaxed) {
            let Ok((len, peer)) = sock.recv_from(&mut buf) else { continue };
            if let Some(n) = answer(&buf[..len], &mut out) {
                let _ = sock.send_to(&out, peer);
                if let Some(a) = answered.get(n as usize) {
                    let _ = a.compare_exchange(0, unix_ns(), Ordering::Relaxed, Ordering::Relaxed);
                }
            }
        }
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    h
}

/// The question name's end (offset after its terminating zero) and the parsed `N` of `q<N>`.
fn question(msg: &[u8]) -> Option<(usize, u32)> {
    if msg.len() < 12 {
        return None;
    }
    let mut i = 12;
    let mut first: Option<u32> = None;
    loop {
        let l = *msg.get(i)? as usize;
        i += 1;
        if l == 0 {
            break;
        }
        let label = msg.get(i..i + l)?;
        if first.is_none() {
            first = std::str::from_utf8(label.strip_prefix(b"q")?).ok()?.parse().ok();
        }
        i += l;
    }
    Some((i, first?))
}

fn answer(q: &[u8], out: &mut Vec<u8>) -> Option<u32> {
    let (end, n) = question(q)?;
    let qend = end + 4;
    if q.len() < qend {
        return None;
    }
    out.clear();
    out.extend_from_slice(&q[..2]);
    out.extend_from_slice(&[0x85, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&q[12..qend]);
    out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x01, 0x2c, 0, 4]);
    out.extend_from_slice(&(ANSWER_BASE + n).to_be_bytes());
    Some(n)
}

fn query(n: u32) -> Vec<u8> {
    super::dns_message(n as u16, &format!("q{n}"), None)
}

/// One DNS load run: queries `first .. first + RATE * SECS` from the client.
struct DnsRun {
    first: u32,
    /// Per query: send and receive time (Unix ns; 0 = no answer).
    sent: Vec<u64>,
    recv: Vec<u64>,
}

impl DnsRun {
    fn answered(&self) -> usize {
        self.recv.iter().filter(|&&r| r != 0).count()
    }

    fn loss(&self) -> f64 {
        100.0 * (1.0 - self.answered() as f64 / self.sent.len() as f64)
    }

    /// RTT percentiles in ms over the answered queries.
    fn rtt(&self) -> (f64, f64) {
        let mut v: Vec<u64> =
            self.sent.iter().zip(&self.recv).filter(|(_, &r)| r != 0).map(|(&s, &r)| r.saturating_sub(s)).collect();
        v.sort_unstable();
        (pct(&v, 50.0) as f64 / 1e6, pct(&v, 99.0) as f64 / 1e6)
    }
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn dns_load(client: &str, first: u32) -> Result<DnsRun, String> {
    let total = (DNS_RATE * DNS_SECS) as usize;
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let recv: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let (s2, r2) = (sent.clone(), recv.clone());
    let worker = in_ns(client, move || -> Result<(), String> {
        let socks: Vec<Arc<UdpSocket>> = (0..DNS_SOCKETS)
            .map(|_| UdpSocket::bind((CLIENT_IPS[0], 0)).map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("DNS client socket: {e}"))?;
        let done = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::new();
        for s in &socks {
            let (s, r2, done) = (s.clone(), r2.clone(), done.clone());
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            testbed::dnsload::big_rcvbuf(&s);
            // Threads started here inherit the client namespace; their sockets are made above.
            receivers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !done.load(Ordering::Relaxed) {
                    let Ok(len) = s.recv(&mut buf) else { continue };
                    let now = unix_ns();
                    if let Some((_, n)) = question(&buf[..len]) {
                        if let Some(i) = n.checked_sub(first).map(|i| i as usize).filter(|&i| i < total) {
                            let _ = r2[i].compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let dst = SocketAddrV4::new(SERVER_IP, 53);
        let start = Instant::now();
        let step = Duration::from_secs(1) / DNS_RATE;
        for i in 0..total {
            let due = start + step * i as u32;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let n = first + i as u32;
            s2[i].store(unix_ns(), Ordering::Relaxed);
            let _ = socks[i % DNS_SOCKETS].send_to(&query(n), dst);
        }
        // Late answers count up to 2 s after the last query.
        std::thread::sleep(Duration::from_secs(2));
        done.store(true, Ordering::Relaxed);
        for r in receivers {
            let _ = r.join();
        }
        Ok(())
    });
    worker.join().map_err(|_| "DNS client panicked")??;
    let take = |v: &Arc<Vec<AtomicU64>>| v.iter().map(|a| a.load(Ordering::Relaxed)).collect::<Vec<u64>>();
    Ok(DnsRun { first, sent: take(&sent), recv: take(&recv) })
}

struct DnsResult {
    base_loss: f64,
    base_rtt: (f64, f64),
    loss: f64,
    rtt: (f64, f64),
    queries: usize,
    dnsquery: usize,
    /// Answer on the wire (the responder) to the first nodeInfo with name and address (at the
    /// subscriber), ms, every answered query.
    node_ms: Vec<f64>,
    /// nodeInfo messages in the quiet window after the load.
    republished: usize,
    node_missing: usize,
    node_sampled: usize,
}

impl DnsResult {
    fn evaluate(
        base: &DnsRun,
        with: &DnsRun,
        first: u32,
        answered: &[u64],
        seen: &[Seen],
        republished: usize,
    ) -> DnsResult {
        let total = with.sent.len();
        let mut queried = vec![false; total];
        let mut node_at: HashMap<u32, u64> = HashMap::new();
        for s in seen {
            match *s {
                Seen::DnsQuery { n } if n >= first && ((n - first) as usize) < total => {
                    queried[(n - first) as usize] = true
                }
                Seen::NodeName { ns, n } => {
                    node_at.entry(n).or_insert(ns);
                }
                _ => {}
            }
        }
        let mut node_ms = Vec::new();
        let (mut missing, mut sampled) = (0, 0);
        for i in 0..total {
            let n = with.first + i as u32;
            // Only answers that went out on the wire and reached the client count.
            let Some(&on_wire) = answered.get(n as usize).filter(|&&t| t != 0 && with.recv[i] != 0) else { continue };
            sampled += 1;
            match node_at.get(&n) {
                Some(&t) => node_ms.push((t as f64 - on_wire as f64) / 1e6),
                None => missing += 1,
            }
        }
        node_ms.sort_by(f64::total_cmp);
        DnsResult {
            base_loss: base.loss(),
            base_rtt: base.rtt(),
            loss: with.loss(),
            rtt: with.rtt(),
            queries: total,
            dnsquery: queried.iter().filter(|&&q| q).count(),
            node_ms,
            republished,
            node_missing: missing,
            node_sampled: sampled,
        }
    }

    fn node_pct(&self, p: f64) -> Option<f64> {
        if self.node_ms.is_empty() {
            return None;
        }
        // Missing updates count as infinitely late.
        let all = self.node_ms.len() + self.node_missing;
        let i = ((p / 100.0) * (all - 1) as f64).round() as usize;
        self.node_ms.get(i).copied()
    }
}

// ---- report -------------------------------------------------------------------------------

pub(super) fn fmt_n(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(flows: &[FlowResult], dns: &DnsResult, (dns_cpu, nflog_cpu): (f64, f64), after: &Mem) -> String {
    let mut r = String::new();
    r.push_str(
        "Live router (network namespaces: client — router with NAT — server; spind release build in the router, \
         the test bed's MQTT subscriber (rumqttc) on `SPIN/traffic/#` unless noted; one 60-byte datagram per flow per second):\n\n\
         | measure | spind | SPIN 1.0 | target |\n|---|---|---|---|\n",
    );
    let reference = |n: u32| match n {
        1_000 => ("2.9%", "–"),
        10_000 => ("44%", "< 5%"),
        _ => ("100% (saturated)", "–"),
    };
    for f in flows {
        let (spin, target) = reference(f.n);
        let who = if f.subscribed { "" } else { ", no MQTT subscriber" };
        r.push_str(&format!(
            "| CPU (one core) at {} UDP flows{who} | {:.1}% | {spin} | {target} |\n",
            fmt_n(f.n.into()),
            f.cpu
        ));
        r.push_str(&format!(
            "| of it the conntrack thread (dump, parse, hand-over) at {} flows{who} | {:.1}% | – | – |\n",
            fmt_n(f.n.into()),
            f.ct_cpu
        ));
        let rss_target = if f.n == 10_000 { "< 16 MB" } else { "–" };
        r.push_str(&format!(
            "| RSS at {} flows{who}, broker included (VmRSS / VmHWM) | {:.1} / {:.1} MB | – | {rss_target} |\n",
            fmt_n(f.n.into()),
            f.mem.rss_kb as f64 / 1024.0,
            f.mem.hwm_kb as f64 / 1024.0
        ));
        if !f.subscribed {
            continue;
        }
        let min = f.per_msg.iter().copied().min().unwrap_or(0);
        let mean = if f.per_msg.is_empty() {
            0.0
        } else {
            f.per_msg.iter().map(|&x| f64::from(x)).sum::<f64>() / f.per_msg.len() as f64
        };
        let (spin, target) =
            if f.n == 50_000 { ("14,000", "50,000 (every flow, every second)") } else { ("–", "–") };
        r.push_str(&format!(
            "| flows per `traffic` message at {} flows: min / mean of {} messages in 10 s (distinct flows in them; packets reported per s / sent per s; conntrack entries) | {} / {} ({}; {} / {} pkt/s; {}) | {spin} | {target} |\n",
            fmt_n(f.n.into()),
            f.per_msg.len(),
            fmt_n(min.into()),
            fmt_n(mean.round() as u64),
            fmt_n(f.distinct as u64),
            fmt_n(f.packets_per_s.round() as u64),
            fmt_n(f.sent_per_s.round() as u64),
            fmt_n(f.conntrack),
        ));
    }
    r.push_str(&format!(
        "| `dnsquery` published at {} DNS queries/s ({} queries) | {:.2}% | 9% | ≥ 99.9% |\n",
        fmt_n(DNS_RATE.into()),
        fmt_n(dns.queries as u64),
        100.0 * dns.dnsquery as f64 / dns.queries as f64
    ));
    r.push_str(&format!(
        "| client DNS loss without / with spind | {:.2}% / {:.2}% | – | no added loss |\n",
        dns.base_loss, dns.loss
    ));
    r.push_str(&format!(
        "| client DNS RTT p50 / p99 without spind → with spind | {:.2} / {:.2} ms → {:.2} / {:.2} ms | – | no added latency |\n",
        dns.base_rtt.0, dns.base_rtt.1, dns.rtt.0, dns.rtt.1
    ));
    let p = |x: Option<f64>| x.map_or("missing".to_string(), |v| format!("{v:.1} ms"));
    r.push_str(&format!(
        "| never-seen name's DNS answer on the wire → first `SPIN/traffic/node/<id>` with the name and the address, p50 / p99 ({} answers, {} without such a message) | {} / {} | ~1 s / 1.5 s | p99 < 100 ms |\n",
        dns.node_sampled,
        dns.node_missing,
        p(dns.node_pct(50.0)),
        p(dns.node_pct(99.0))
    ));
    r.push_str(&format!(
        "| `nodeInfo` of unchanged nodes in {} quiet seconds after the load ({} nodes) | {} | – | 0 |\n",
        QUIET.as_secs(),
        fmt_n(dns.node_sampled as u64),
        dns.republished
    ));
    r.push_str(&format!(
        "| CPU during the DNS load (of it the NFLOG thread); RSS after it (VmRSS / VmHWM) | {dns_cpu:.1}% ({nflog_cpu:.1}%); {:.1} / {:.1} MB | – | – |\n",
        after.rss_kb as f64 / 1024.0,
        after.hwm_kb as f64 / 1024.0
    ));
    r
}
