//! `cargo xtask bench names` (root): name rules on the DNS path (issue 13), through the test
//! bed's namespace router with real dnsmasq:
//!
//! ```text
//!  client                       router                                  server
//!  eth0 192.168.8.100 -- lan0 192.168.8.1: dnsmasq (no cache)  -- 198.51.100.10: dnsmasq
//!  (the DNS load)               forwarding to the server; spind,         answering every queried
//!                               NFQUEUE 53 on queries to the router      name from a hosts file
//! ```
//!
//! 1. Load of the list: spind started without a blocklist and with a generated hosts file of
//!    [`LIST_NAMES`] names (`blocklist_files`): the time from the start to the counts in
//!    `list_blocklists` (and spind's own figure in its log), RSS with and without the list.
//! 2. [`RATE`] A queries/s for [`SECS`] s from the client to the router's resolver
//!    (`testbed::dnsload`: 20,000 names that no rule blocks, 5,000 of the list and below it,
//!    1,500 under the rules of run 3, 3 of the list that run 3 allows), in three runs: spind
//!    stopped (its table left in force, the queue without a reader: bypass), spind with the
//!    list, a new spind with the list and [`RULES`] name rules. Sent, answered, lost, p50/p99/max per run and
//!    the p99 difference to the stopped run; whether each answer was spind's `0.0.0.0` where
//!    expected; spind's CPU (and its verdict thread's), dnsmasq's, the kernel queue's counters.
//!
//! Bounds (reported met / not met; a benchmark never fails the suite): no added loss, p99 at
//! most 1 ms over spind stopped, the list loaded in under 2 s and under 16 MB extra RSS.
//! Without `nft_queue` in the kernel spind says so and its table has no queue rule; the bench
//! then queues with iptables' NFQUEUE target (same number, `--queue-bypass`, mangle
//! PREROUTING, as spind's rule sits before the DNS redirect), as the namespace tests do, and
//! says so in the report: the verdicts are spind's either way.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runner::{cmd, Stream};
use serde_json::{json, Value};
use testbed::dnsload::{self, DnsLoad, DnsLoadResult, Latency};
use testbed::http::{http_request, rpc_http};
use testbed::netns::{in_netns, Topology, CLIENT_MAC};
use testbed::spind::{Spind, SpindBuilder};

use super::router::{cpu_percent, cpu_ticks, proc_status, read, shell, thread_ticks};

const RATE: u32 = 5_000;
const SECS: u64 = 25;
const LIST_NAMES: usize = 100_000;
const RESOLVER: Ipv4Addr = Ipv4Addr::new(192, 168, 8, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 168, 8, 100);
const SETTLE: Duration = Duration::from_secs(3);
/// The rules of run 3: (params of `add_name_rule`) a block for all, one per device, one with
/// a schedule that always holds and an expiry a day ahead, and allows of three listed names.
const RULES: usize = 6;
/// Listed names that run 3 allows (one in every `LISTED_STEP` of the list is queried).
const ALLOWED_LISTED: [usize; 3] = [2, 27, 52];
const LISTED_STEP: usize = 25;

/// What a query name is, and so which runs must answer it `0.0.0.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Matches nothing.
    Open,
    /// In the blocklist, or below a name in it.
    Listed,
    /// Under a rule of run 3.
    Ruled,
    /// In the blocklist, allowed by a rule of run 3.
    ListedAllowed,
}

fn list_name(i: usize) -> String {
    format!("ad{i}.track{}.test", i % 1000)
}

/// The query names: each with its kind; the load asks `names[i % len]`.
fn query_names(total: usize) -> (Vec<String>, Vec<Kind>) {
    let mut names = Vec::with_capacity(total);
    let mut kinds = Vec::with_capacity(total);
    // A fixed pseudo-random sequence (an LCG): the same mix every run.
    let mut x: u64 = 0x5eed;
    for _ in 0..total {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let r = (x >> 33) as usize;
        let (name, kind) = match r % 1000 {
            0..=699 => (format!("www{}.shop{}.test", r % 20_000, r % 20_000 % 1000), Kind::Open),
            700..=899 => (list_name((r % 4000) * LISTED_STEP), Kind::Listed),
            900..=949 => (format!("cdn.{}", list_name((r % 1000) * LISTED_STEP + 1)), Kind::Listed),
            950..=964 => (format!("v{}.video.test", r % 500), Kind::Ruled),
            965..=979 => (format!("k{}.kids.test", r % 500), Kind::Ruled),
            980..=994 => (format!("s{}.bedtime.test", r % 500), Kind::Ruled),
            _ => (list_name(ALLOWED_LISTED[r % 3]), Kind::ListedAllowed),
        };
        names.push(name);
        kinds.push(kind);
    }
    (names, kinds)
}

/// The rules of run 3.
fn rules() -> Vec<Value> {
    let day_ahead =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) + 86_400;
    let mut r = vec![
        json!({"name": "video.test", "action": "block"}),
        json!({"name": "kids.test", "action": "block", "devices": [CLIENT_MAC]}),
        json!({"name": "bedtime.test", "action": "block", "schedule": "Mo-Su 00:00-24:00", "until": day_ahead}),
    ];
    r.extend(ALLOWED_LISTED.iter().map(|&i| json!({"name": list_name(i), "action": "allow"})));
    debug_assert_eq!(r.len(), RULES);
    r
}

/// The topology, the two resolvers, and spind when it runs.
struct Net {
    // Dropped first: spind stops before its namespace goes.
    spind: Option<Spind>,
    resolvers: Vec<Child>,
    topo: Topology,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(mut s) = self.spind.take() {
            s.stop(Duration::from_secs(5));
        }
        for r in &mut self.resolvers {
            let _ = r.kill();
            let _ = r.wait();
        }
    }
}

impl Net {
    fn build(names: &[String], kinds: &[Kind], list: &Path) -> Result<Net, String> {
        let topo = Topology::new();
        let mut net = Net { spind: None, resolvers: Vec::new(), topo };
        let (r, s) = (net.topo.router.clone(), net.topo.server.clone());
        // The server answers every name the load asks (each its own address, TTL 300).
        let hosts = net.topo.work.path().join("server.hosts");
        let mut text = String::new();
        let mut seen = std::collections::HashSet::new();
        for (i, name) in names.iter().filter(|n| seen.insert(n.as_str())).enumerate() {
            let _ = writeln!(text, "198.18.{}.{} {name}", (i >> 8) & 0xff, i & 0xff);
        }
        std::fs::write(&hosts, text).map_err(|e| e.to_string())?;
        // The blocklist: a hosts file, as the common lists are.
        let mut text = String::from("# generated by cargo xtask bench names\n127.0.0.1 localhost\n");
        for i in 0..LIST_NAMES {
            let _ = writeln!(text, "0.0.0.0 {}", list_name(i));
        }
        std::fs::write(list, text).map_err(|e| e.to_string())?;
        debug_assert!(names.len() == kinds.len());

        let sh = shell()?;
        let server = cmd!(
            sh,
            "ip netns exec {s} dnsmasq --keep-in-foreground --no-resolv --no-hosts --pid-file= --user=root
             --group=root --listen-address=198.51.100.10 --bind-interfaces --addn-hosts={hosts} --local-ttl=300
             --cache-size=10000 --dns-forward-max=10000"
        )
        .spawn(Stream::Null, Stream::Null)
        .map_err(|e| format!("dnsmasq on the server: {e}"))?;
        net.resolvers.push(server);
        // The router's resolver forwards every query (no cache: each one goes upstream, in all
        // three runs alike).
        let router = cmd!(
            sh,
            "ip netns exec {r} dnsmasq --keep-in-foreground --no-resolv --no-hosts --pid-file= --user=root
             --group=root --listen-address=192.168.8.1 --bind-interfaces --cache-size=0 --dns-forward-max=10000
             --server=198.51.100.10"
        )
        .spawn(Stream::Null, Stream::Null)
        .map_err(|e| format!("dnsmasq on the router: {e}"))?;
        net.resolvers.push(router);
        let c = net.topo.client.clone();
        let probe = names[0].clone();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let out = read(cmd!(sh, "ip netns exec {c} dig +short +time=1 +tries=1 @192.168.8.1 {probe} A"))
                .unwrap_or_default();
            if out.trim().starts_with("198.18.") {
                break;
            }
            if Instant::now() > until {
                return Err(format!("the router's resolver does not answer {probe}: {out:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(net)
    }

    fn dig(&self, name: &str) -> String {
        let (Ok(sh), c) = (shell(), &self.topo.client) else { return String::new() };
        read(cmd!(sh, "ip netns exec {c} dig +short +time=1 +tries=1 @192.168.8.1 {name} A")).unwrap_or_default()
    }

    /// Starts spind in the router (log level 4, as in production) and waits until
    /// `list_blocklists` reports at least `names`: the time that took, and what it said.
    fn start_spind(&mut self, bin: &Path, list: Option<&Path>, names: usize) -> Result<(Duration, Value), String> {
        let mut b = SpindBuilder::new(bin).netns(&self.topo.router).log_level(4);
        if let Some(l) = list {
            b = b.config_line(&format!("blocklist_files = {}", l.display()));
        }
        let t0 = Instant::now();
        let s = b.spawn();
        let port = s.http_port;
        self.spind = Some(s);
        let router = self.topo.router.clone();
        let reply = in_netns(&router, move || {
            let end = Instant::now() + Duration::from_secs(60);
            while Instant::now() < end {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    let r = rpc_http(port, "list_blocklists", json!({}));
                    if r["result"]["names"].as_u64().is_some_and(|n| n as usize >= names) {
                        return Some(r["result"].clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            None
        });
        let took = t0.elapsed();
        let reply = reply.ok_or_else(|| format!("spind did not report {names} blocklist names within 60 s"))?;
        Ok((took, reply))
    }

    fn spind_pid(&self) -> u32 {
        self.spind.as_ref().map_or(0, |s| s.child.id())
    }

    fn stop_spind(&mut self) -> String {
        match self.spind.take() {
            Some(mut s) => {
                s.stop(Duration::from_secs(5));
                s.log_text()
            }
            None => String::new(),
        }
    }

    /// A JSON-RPC call; the reply whatever the HTTP status (a busy core answers 500).
    fn call(&self, method: &'static str, params: Value) -> Value {
        let port = self.spind.as_ref().map_or(0, |s| s.http_port);
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (_, text) =
            in_netns(&self.topo.router, move || http_request(port, "POST", "/spin_api/jsonrpc", body.as_bytes()));
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"error": {"message": text}}))
    }

    /// Adds a name rule; if the core was too busy to answer in time, waits until the rule is
    /// listed (or adds it again), so that no rule is added twice.
    fn add_rule(&self, rule: &Value) -> Result<(), String> {
        for _ in 0..10 {
            let reply = self.call("add_name_rule", rule.clone());
            if reply.get("error").is_none() {
                return Ok(());
            }
            eprintln!("xtask:   add_name_rule {rule}: {reply}; checking the list");
            for _ in 0..10 {
                std::thread::sleep(Duration::from_secs(1));
                let list = self.call("list_name_rules", json!({}));
                if let Some(rules) = list["result"].as_array() {
                    if rules.iter().any(|r| r["name"] == rule["name"]) {
                        return Ok(());
                    }
                    break;
                }
            }
        }
        Err(format!("add_name_rule {rule}: spind did not take it"))
    }

    /// The kernel's counters of NFQUEUE 53 in the router: (queued so far, dropped because the
    /// queue was full, dropped because spind's socket was full); `None` while nobody reads it.
    fn queue_counters(&self) -> Option<(u64, u64, u64)> {
        let (sh, r) = (shell().ok()?, &self.topo.router);
        let text = read(cmd!(sh, "ip netns exec {r} cat /proc/net/netfilter/nfnetlink_queue")).ok()?;
        let f: Vec<u64> = text
            .lines()
            .map(|l| l.split_whitespace().filter_map(|v| v.parse().ok()).collect::<Vec<u64>>())
            .find(|f| f.first() == Some(&53))?;
        Some((*f.get(7)?, *f.get(5)?, *f.get(6)?))
    }
}

/// One DNS run's figures.
struct Run {
    what: &'static str,
    result: DnsLoadResult,
    spind_cpu: Option<(f64, f64)>,
    dnsmasq_cpu: f64,
    /// Answers `0.0.0.0` where none was expected, and addresses where `0.0.0.0` was.
    wrong: (usize, usize),
    blocked: usize,
    queue: Option<(u64, u64, u64)>,
}

impl Run {
    fn all(&self) -> Latency {
        self.result.latency(|_| true)
    }
}

fn dns_run(
    net: &Net,
    what: &'static str,
    names: &Arc<Vec<String>>,
    expect_zero: impl Fn(usize) -> bool,
) -> Result<Run, String> {
    eprintln!("xtask: names bench: {RATE} queries/s for {SECS} s, {what}");
    let pid = net.spind_pid();
    let dnsmasq = net.resolvers[1].id();
    let (cpu0, dnsq0, dm0) = (cpu_ticks(pid).ok(), thread_ticks(pid, "spind-dnsq"), cpu_ticks(dnsmasq)?);
    let q0 = net.queue_counters();
    let t0 = Instant::now();
    let load = DnsLoad {
        src: CLIENT,
        resolver: SocketAddrV4::new(RESOLVER, 53),
        rate: RATE,
        duration: Duration::from_secs(SECS),
        names: names.clone(),
        grace: Duration::from_secs(2),
    };
    let result = dnsload::run(&net.topo.client, load)?;
    let elapsed = t0.elapsed();
    let spind_cpu = match (cpu0, pid) {
        (Some(c0), p) if p != 0 => Some((
            cpu_percent(cpu_ticks(p)?.saturating_sub(c0), elapsed),
            cpu_percent(thread_ticks(p, "spind-dnsq").saturating_sub(dnsq0), elapsed),
        )),
        _ => None,
    };
    let dnsmasq_cpu = cpu_percent(cpu_ticks(dnsmasq)?.saturating_sub(dm0), elapsed);
    let queue = match (q0, net.queue_counters()) {
        (Some(a), Some(b)) => Some((b.0 - a.0, b.1 - a.1, b.2 - a.2)),
        _ => None,
    };
    let mut wrong = (0, 0);
    let mut blocked = 0;
    for (i, &rtt) in result.rtt_ns.iter().enumerate() {
        if rtt == 0 {
            continue;
        }
        let (got, want) = (result.zero[i], expect_zero(i % names.len()));
        blocked += usize::from(got);
        match (got, want) {
            (true, false) => wrong.0 += 1,
            (false, true) => wrong.1 += 1,
            _ => {}
        }
    }
    let run = Run { what, result, spind_cpu, dnsmasq_cpu, wrong, blocked, queue };
    let a = run.all();
    eprintln!(
        "xtask:   sent {} answered {} lost {} p50 {:.2} p99 {:.2} max {:.2} ms; spind cpu {:?}; wrong {:?}",
        a.sent,
        a.answered,
        a.lost(),
        a.p50,
        a.p99,
        a.max,
        run.spind_cpu,
        run.wrong
    );
    Ok(run)
}

/// What loading the list cost.
struct ListLoad {
    ready_without: Duration,
    ready_with: Duration,
    logged_ms: Option<u64>,
    rss_without_kb: u64,
    rss_with_kb: u64,
    hwm_without_kb: u64,
    hwm_with_kb: u64,
    names: u64,
    skipped: u64,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn run(bin: &Path, dir: &Path) -> Result<String, String> {
    let started = Instant::now();
    let load_before = loadavg();
    let total = (u64::from(RATE) * SECS) as usize;
    let (names, kinds) = query_names(total);
    let list = dir.join("names-blocklist.hosts");
    let mut net = Net::build(&names, &kinds, &list)?;
    let names = Arc::new(names);

    // spind without the list: its start and footprint, and its table (left when it stops).
    eprintln!("xtask: names bench: spind without a blocklist");
    let (ready_without, _) = net.start_spind(bin, None, 0)?;
    std::thread::sleep(SETTLE);
    let without = proc_status(net.spind_pid())?;
    let stand_in = queue_stand_in(&net)?;
    let log_without = net.stop_spind();
    if log_without.contains("panicked") {
        return Err(format!("spind panicked: {log_without}"));
    }

    let stopped = dns_run(&net, "spind stopped", &names, |_| false)?;

    eprintln!("xtask: names bench: spind with {LIST_NAMES} names");
    let (ready_with, counts) = net.start_spind(bin, Some(&list), LIST_NAMES)?;
    std::thread::sleep(SETTLE);
    let with = proc_status(net.spind_pid())?;
    // The queue must be read before the load starts: a listed name answered by spind.
    wait_answer(&net, &list_name(0), "0.0.0.0")?;
    let listed = |i: usize| matches!(kinds[i], Kind::Listed | Kind::ListedAllowed);
    let with_list = dns_run(&net, "spind, 100,000-name list", &names, listed)?;

    // A fresh spind for the rules: after run 2 the core of that one can stay busy for minutes
    // with the addresses it learnt (see the README), and a rule must not wait for that.
    let log2 = net.stop_spind();
    std::fs::write(dir.join("spind-names-list.log"), &log2).map_err(|e| e.to_string())?;
    eprintln!("xtask: names bench: a new spind with {LIST_NAMES} names and {RULES} rules");
    net.start_spind(bin, Some(&list), LIST_NAMES)?;
    for r in rules() {
        net.add_rule(&r)?;
    }
    for probe in ["v0.video.test", "k0.kids.test", "s0.bedtime.test"] {
        wait_answer(&net, probe, "0.0.0.0")?;
    }
    wait_answer(&net, &list_name(ALLOWED_LISTED[0]), "198.18.")?;
    let ruled = |i: usize| matches!(kinds[i], Kind::Listed | Kind::Ruled);
    let with_rules = dns_run(&net, "spind, list and 6 name rules", &names, ruled)?;
    let pid = net.spind_pid();
    let alive = std::fs::metadata(format!("/proc/{pid}")).is_ok();
    let log = net.stop_spind();
    std::fs::write(dir.join("spind-names.log"), &log).map_err(|e| e.to_string())?;
    if !alive {
        return Err(format!("spind died during the benchmark; see {}", dir.join("spind-names.log").display()));
    }
    let logged_ms = log2
        .lines()
        .find_map(|l| l.split("blocklists: ").nth(1)?.split(" names in ").nth(1)?.split(" ms").next()?.parse().ok());
    let load = ListLoad {
        ready_without,
        ready_with,
        logged_ms,
        rss_without_kb: without.rss_kb,
        rss_with_kb: with.rss_kb,
        hwm_without_kb: without.hwm_kb,
        hwm_with_kb: with.hwm_kb,
        names: counts["names"].as_u64().unwrap_or(0),
        skipped: counts["lists"][0]["skipped"].as_u64().unwrap_or(0),
    };
    eprintln!(
        "xtask:   list: ready {:?} (without {:?}), log {:?} ms, RSS {} -> {} kB, HWM {} -> {} kB",
        load.ready_with,
        load.ready_without,
        load.logged_ms,
        load.rss_without_kb,
        load.rss_with_kb,
        load.hwm_without_kb,
        load.hwm_with_kb
    );
    eprintln!("xtask: names bench took {:.0} s", started.elapsed().as_secs_f64());
    let kinds = Arc::new(kinds);
    Ok(report(&[stopped, with_list, with_rules], &kinds, &load, stand_in, (&load_before, &loadavg())))
}

/// Without `nft_queue` in the kernel spind's table has no queue rule: queue with iptables
/// instead, as spind's rule would (true when it had to).
fn queue_stand_in(net: &Net) -> Result<bool, String> {
    let (sh, r) = (shell()?, net.topo.router.clone());
    let end = Instant::now() + Duration::from_secs(20);
    let table = loop {
        let t = read(cmd!(sh, "ip netns exec {r} nft list table inet spin")).unwrap_or_default();
        if t.contains("chain input") || Instant::now() > end {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if table.contains("dns-queue") {
        return Ok(false);
    }
    for proto in ["udp", "tcp"] {
        read(cmd!(
            sh,
            "ip netns exec {r} iptables -t mangle -A PREROUTING ! -i lo -p {proto} --dport 53 ! --sport 53
             -m addrtype --dst-type LOCAL -j NFQUEUE --queue-num 53 --queue-bypass"
        ))?;
    }
    Ok(true)
}

/// Polls until the client's query for `name` gets an answer starting with `want`.
fn wait_answer(net: &Net, name: &str, want: &str) -> Result<(), String> {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let got = net.dig(name);
        if got.trim().starts_with(want) {
            return Ok(());
        }
        if Instant::now() > end {
            return Err(format!("{name}: the router answered {got:?}, expected {want}..."));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

fn report(runs: &[Run], kinds: &[Kind], load: &ListLoad, stand_in: bool, loadavg: (&str, &str)) -> String {
    let mut r = String::new();
    let _ = writeln!(
        r,
        "Name rules on the DNS path (`cargo xtask bench names`: the test bed's namespace router, the client's \
         {RATE} A queries/s for {SECS} s to the router's dnsmasq (no cache, forwarding to dnsmasq on the \
         server), 70% names no rule matches, 25% in or below the {} -name blocklist, 5% under run 3's rules; \
         spind release build, log level 4; queue rule: {}; load average {} at the start, {} at the end):\n",
        super::router::fmt_n(LIST_NAMES as u64),
        if stand_in {
            "iptables' NFQUEUE 53 with --queue-bypass (this kernel has no nft_queue; spind says so)"
        } else {
            "spind's own (`table inet spin`, queue 53 bypass)"
        },
        loadavg.0,
        loadavg.1
    );
    let _ = writeln!(
        r,
        "| run | sent | answered | lost | p50 / p99 / max | p99 vs spind stopped | `0.0.0.0` answers (wrong: unexpected / missing) | spind CPU (verdict thread) | dnsmasq CPU (router) | queued / overflowed (accepted) / socket drops |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    let base = runs[0].all();
    for run in runs {
        let a = run.all();
        let diff = if std::ptr::eq(run, &runs[0]) { "–".to_string() } else { format!("{:+.2} ms", a.p99 - base.p99) };
        let cpu = run.spind_cpu.map_or("stopped".to_string(), |(all, q)| format!("{all:.1}% ({q:.1}%)"));
        let queue = run.queue.map_or("no reader (bypass)".to_string(), |(q, o, d)| format!("{q} / {o} / {d}"));
        let _ = writeln!(
            r,
            "| {} | {} | {} | {} | {:.2} / {:.2} / {:.1} ms | {diff} | {} ({} / {}) | {cpu} | {:.1}% | {queue} |",
            run.what,
            a.sent,
            a.answered,
            a.lost(),
            a.p50,
            a.p99,
            a.max,
            run.blocked,
            run.wrong.0,
            run.wrong.1,
            run.dnsmasq_cpu
        );
    }
    // Blocked names are answered by spind itself, the rest go upstream: apart, in runs 2 and 3.
    for (run, blocked) in
        [(&runs[1], &[Kind::Listed, Kind::ListedAllowed][..]), (&runs[2], &[Kind::Listed, Kind::Ruled])]
    {
        let n = kinds.len();
        let b = run.result.latency(|i| blocked.contains(&kinds[i % n]));
        let o = run.result.latency(|i| !blocked.contains(&kinds[i % n]));
        let _ = writeln!(
            r,
            "\n{}: blocked names (answered by spind) p50 / p99 {:.2} / {:.2} ms, {} lost of {}; the rest \
             (forwarded) {:.2} / {:.2} ms, {} lost of {}.",
            run.what,
            b.p50,
            b.p99,
            b.lost(),
            b.sent,
            o.p50,
            o.p99,
            o.lost(),
            o.sent
        );
    }
    let _ = writeln!(r, "\n| bound | figure | |\n|---|---|---|");
    for run in &runs[1..] {
        let a = run.all();
        let _ = writeln!(
            r,
            "| no added loss ({}) | {} lost vs {} with spind stopped | {} |",
            run.what,
            a.lost(),
            base.lost(),
            met(a.lost() <= base.lost())
        );
        let _ = writeln!(
            r,
            "| client p99 ≤ spind stopped + 1 ms ({}) | {:.2} ms vs {:.2} ms ({:+.2} ms) | {} |",
            run.what,
            a.p99,
            base.p99,
            a.p99 - base.p99,
            met(a.p99 <= base.p99 + 1.0)
        );
    }
    let extra_mb = (load.rss_with_kb as f64 - load.rss_without_kb as f64) / 1024.0;
    let _ = writeln!(
        r,
        "| loading {} names < 2 s (start → counts in `list_blocklists`: {} names, {} lines skipped) | {:.2} s (without the list {:.2} s; spind's log: {}) | {} |",
        super::router::fmt_n(LIST_NAMES as u64),
        load.names,
        load.skipped,
        load.ready_with.as_secs_f64(),
        load.ready_without.as_secs_f64(),
        load.logged_ms.map_or("no figure".to_string(), |ms| format!("read in {ms} ms")),
        met(load.ready_with < Duration::from_secs(2))
    );
    let _ = writeln!(
        r,
        "| extra RSS of the list < 16 MB (VmRSS {} s after start, without → with; VmHWM) | {:.1} → {:.1} MB: {extra_mb:+.1} MB (VmHWM {:.1} → {:.1} MB) | {} |",
        SETTLE.as_secs(),
        load.rss_without_kb as f64 / 1024.0,
        load.rss_with_kb as f64 / 1024.0,
        load.hwm_without_kb as f64 / 1024.0,
        load.hwm_with_kb as f64 / 1024.0,
        met(extra_mb < 16.0)
    );
    let _ = writeln!(
        r,
        "\nThe verdict path allocates nothing per packet: spind's unit test \
         `enforcer::dnsqueue::tests::the_verdict_path_allocates_nothing_per_packet` (a counting allocator; \
         `cargo test -p spind --lib the_verdict_path`)."
    );
    r
}
