//! The end-to-end suite: a router VM between a LAN client namespace and a simulated internet.
//!
//! ```text
//!  netns spinq-lan                 QEMU (the image)                 netns spinq-wan
//!  lan0 (tap) ── DHCP client ──── eth1 ─ br-lan 192.168.8.1     eth0 ──── wan0 (tap) 203.0.113.1/24
//!  curl, dig, MQTT subscribers                  spind, dnsmasq, nft          2001:db8:1::1/64
//!                                                                      dnsmasq: DHCP/RA/DHCPv6 + DNS
//!                                                                      lo: 198.51.100.80, 2001:db8:80::80
//!                                                                          HTTP (www.example.test)
//! ```
//!
//! Then, without network devices: rpi3's SD image under `-M raspi3b` to the ready marker, and
//! x86_64's disk under UEFI (OVMF, `-M q35`) to the ready marker and a root login that checks
//! the kernel came through systemd-boot.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::mqtt::{self, has_str, Nodes};
use runner::{cmd, Stream};

use crate::netns::Netns;
use crate::vm::{self, BootInfo, Machine, Nic, Vm, VmSpec};

pub const NS_WAN: &str = "spinq-wan";
pub const NS_LAN: &str = "spinq-lan";
const WAN_TAP: &str = "wan0";
const LAN_TAP: &str = "lan0";
const VM_WAN_MAC: &str = "52:54:00:5a:00:01";
const VM_LAN_MAC: &str = "52:54:00:5a:00:02";
/// The router's WAN link-local address (networkd: EUI-64 from VM_WAN_MAC).
const VM_WAN_LL: &str = "fe80::5054:ff:fe5a:1";
const WAN_MAC: &str = "02:5a:00:00:01:01";
pub const CLIENT_MAC: &str = "02:5a:00:00:02:02";
pub const CLIENT_NAME: &str = "spin-test-laptop";
const ROUTER: &str = "192.168.8.1";
pub const SERVER_NAME: &str = "www.example.test";
pub const SERVER_V4: &str = "198.51.100.80";
pub const SERVER_V6: &str = "2001:db8:80::80";
const FILE: &str = "file-2m.bin";
/// The web admin account the suite sets up through the first-run page.
const ADMIN_USER: &str = "admin";
const ADMIN_PASSWORD: &str = "qemu-household-7";
/// spind's log (with the services around it) from the journal, over the serial console.
const JOURNAL: &str =
    "journalctl -b --no-pager -o short-monotonic -u spind -u dnsmasq -u systemd-networkd -u nftables -u spin-ready | tail -n 1000";
pub(crate) const FILE_SIZE: u64 = 2 << 20;

pub struct Options {
    pub board: String,
    pub images: PathBuf,
    pub out: PathBuf,
    /// This program (for the helper subcommands run inside the namespaces).
    pub exe: PathBuf,
    /// The end-to-end run (false: only the boots after it, `qemu-test run --uefi-only`).
    pub e2e: bool,
    /// rpi3: also boot the SD image under `-M raspi3b`.
    pub raspi3b: bool,
    /// x86_64: also boot the disk image under UEFI (OVMF) and check systemd-boot started it.
    pub uefi: bool,
}

/// Timings of the steps, in order.
#[derive(Default)]
pub struct Report {
    pub steps: Vec<(String, f64)>,
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn step<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
        let t = Instant::now();
        eprintln!("qemu-test: {name} ...");
        let r = f();
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(v) => {
                eprintln!("qemu-test:   ok ({secs:.1} s)");
                self.steps.push((name.to_string(), secs));
                Ok(v)
            }
            Err(e) => {
                self.steps.push((format!("{name} (FAILED)"), secs));
                Err(format!("step \"{name}\" failed after {secs:.1} s: {e}"))
            }
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        for (n, t) in &self.steps {
            s.push_str(&format!("{t:>7.1} s  {n}\n"));
        }
        for n in &self.notes {
            s.push_str(&format!("note: {n}\n"));
        }
        s
    }
}

/// Runs the suite for one board. Artifacts go to `opts.out` whatever happens.
pub fn run(opts: &Options) -> Result<Report, (Report, String)> {
    let mut report = Report::default();
    let _ = fs::remove_dir_all(&opts.out);
    if let Err(e) = fs::create_dir_all(&opts.out) {
        return Err((report, format!("{}: {e}", opts.out.display())));
    }
    let t0 = Instant::now();
    let r = if opts.e2e { e2e(opts, &mut report) } else { Ok(()) };
    let r = r.and_then(|_| match opts.board.as_str() {
        "rpi3" if opts.raspi3b => raspi3b(opts, &mut report),
        "x86_64" if opts.uefi => uefi(opts, &mut report),
        _ => Ok(()),
    });
    report.steps.push(("total".into(), t0.elapsed().as_secs_f64()));
    let _ = fs::write(opts.out.join("timings.txt"), report.text());
    let _ = fs::remove_file(format!("/etc/netns/{NS_LAN}/resolv.conf"));
    let _ = fs::remove_dir(format!("/etc/netns/{NS_LAN}"));
    match r {
        Ok(()) => {
            // The disk overlays only matter for a post-mortem.
            for f in ["disk-overlay.qcow2", "sd-overlay.qcow2", "uefi-overlay.qcow2", "uefi-vars.fd"] {
                let _ = fs::remove_file(opts.out.join(f));
            }
            Ok(report)
        }
        Err(e) => {
            let _ = fs::write(opts.out.join("FAILED.txt"), format!("{e}\n"));
            Err((report, e))
        }
    }
}

pub(crate) struct Env<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) wan: Netns,
    pub(crate) lan: Netns,
    pub(crate) vm: Option<Vm>,
    pub(crate) password: Option<String>,
}

fn e2e(opts: &Options, report: &mut Report) -> Result<(), String> {
    let out = &opts.out;
    let boot = report.step("read the image's boot description", || BootInfo::load(&opts.images, &opts.board))?;
    let machine = if opts.board == "rpi3" { Machine::ArmVirt } else { Machine::PcBios };
    let accel = vm::probe_accel(machine, &boot, &out.join("accel.txt"));
    report.notes.push(format!("accelerator: {accel}"));
    let www = out.join("www");
    let (wan, lan) = report.step("network namespaces: simulated internet and LAN client", || {
        let mut wan = Netns::create(NS_WAN)?;
        setup_wan(&mut wan, out, &www)?;
        let lan = Netns::create(NS_LAN)?;
        lan.add_tap(LAN_TAP, CLIENT_MAC)?;
        let ns = &lan.name;
        cmd!(lan.sh, "ip netns exec {ns} sysctl -qw net.ipv6.conf.{LAN_TAP}.accept_ra=2").read()?;
        Ok((wan, lan))
    })?;
    let mut env = Env { opts, wan, lan, vm: None, password: None };
    let r = e2e_vm(&mut env, report, &boot, machine, &accel);
    // Artifacts: spind's log through the serial console when a shell can be had.
    if let (Some(vm), Some(pw)) = (env.vm.as_mut(), env.password.clone()) {
        let log = vm
            .login(&pw)
            .and_then(|_| vm.shell(JOURNAL, Duration::from_secs(60)))
            .map(|(_, t)| t)
            .unwrap_or_else(|e| format!("could not fetch the journal: {e}\n"));
        let _ = fs::write(out.join("spind.log"), log);
        if opts.board == "rpi3" {
            crate::wifi::artifacts(vm, out);
        }
    }
    if let Some(mut vm) = env.vm.take() {
        vm.kill();
    }
    r
}

fn setup_wan(wan: &mut Netns, out: &Path, www: &Path) -> Result<(), String> {
    wan.add_tap(WAN_TAP, WAN_MAC)?;
    let ns = wan.name.clone();
    cmd!(wan.sh, "ip -n {ns} addr add 203.0.113.1/24 dev {WAN_TAP}").read()?;
    cmd!(wan.sh, "ip -n {ns} -6 addr add 2001:db8:1::1/64 dev {WAN_TAP} nodad").read()?;
    // "The internet": servers elsewhere, reached through the router's default route.
    cmd!(wan.sh, "ip -n {ns} addr add {SERVER_V4}/32 dev lo").read()?;
    cmd!(wan.sh, "ip -n {ns} -6 addr add {SERVER_V6}/128 dev lo nodad").read()?;
    fs::create_dir_all(www).map_err(|e| e.to_string())?;
    // A file of known size with content that does not compress.
    let mut data = Vec::with_capacity(FILE_SIZE as usize);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while data.len() < FILE_SIZE as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(www.join(FILE), &data).map_err(|e| e.to_string())?;
    fs::write(www.join("index.html"), "<html><body>the simulated internet</body></html>\n")
        .map_err(|e| e.to_string())?;

    let leases = out.join("wan-dnsmasq.leases");
    let log = out.join("wan-dnsmasq.log");
    let interface = format!("--interface={WAN_TAP}");
    let host_record = format!("--host-record={SERVER_NAME},{SERVER_V4},{SERVER_V6}");
    let leasefile = format!("--dhcp-leasefile={}", leases.display());
    let log_facility = format!("--log-facility={}", log.display());
    let dnsmasq = cmd!(wan.sh, "ip netns exec {ns} dnsmasq --keep-in-foreground --user=root --conf-file=/dev/null --no-resolv --no-hosts --bind-interfaces {interface} --dhcp-authoritative --dhcp-range=203.0.113.10,203.0.113.50,255.255.255.0,1h --dhcp-option=option:router,203.0.113.1 --dhcp-option=option:dns-server,203.0.113.1 --enable-ra --dhcp-range=2001:db8:1::100,2001:db8:1::1ff,64,1h --dhcp-option=option6:dns-server,[2001:db8:1::1] {host_record} --log-queries --log-dhcp {leasefile} {log_facility}")
        .spawn(Stream::Inherit, Stream::Inherit);
    wan.keep("dnsmasq (DHCP, RA, DNS of the simulated internet)", dnsmasq)?;
    let http_log = fs::File::create(out.join("wan-http.log")).map_err(|e| e.to_string())?;
    let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
    let http = cmd!(wan.sh, "ip netns exec {ns} {python} -u -m http.server 80 --bind :: --directory {www}")
        .spawn(Stream::File(http_log.try_clone().map_err(|e| e.to_string())?), Stream::File(http_log));
    wan.keep("HTTP server of the simulated internet", http)?;
    std::thread::sleep(Duration::from_millis(500));
    wan.check_children()
}

/// The router's WAN IPv4 address, from the simulated internet's DHCP leases.
fn router_wan_v4(out: &Path) -> Option<String> {
    let text = fs::read_to_string(out.join("wan-dnsmasq.leases")).ok()?;
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() >= 3 && f[1].eq_ignore_ascii_case(VM_WAN_MAC))
        .map(|f| f[2].to_string())
}

pub(crate) fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(format!("timed out after {} s waiting for {what}", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

struct Lease {
    ip: String,
    router: String,
    dns: String,
}

fn lan_dhcp(env: &Env) -> Result<Lease, String> {
    let out = &env.opts.out;
    let script = out.join("udhcpc.script");
    fs::write(
        &script,
        r#"#!/bin/sh
# udhcpc event script (qemu-test): configure the LAN client and record the lease.
case "$1" in
bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/${mask:-24}" dev "$interface"
    set -- $router
    ip -4 route replace default via "$1" dev "$interface"
    printf 'ip=%s\nmask=%s\nrouter=%s\ndns=%s\nserverid=%s\nlease=%s\n' "$ip" "$mask" "$1" "$dns" "$serverid" "$lease" > "$LEASE_OUT"
    ;;
esac
exit 0
"#,
    )
    .map_err(|e| e.to_string())?;
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    }
    let lease_out = out.join("lan-lease.txt");
    let _ = fs::remove_file(&lease_out);
    let (ns, lease_env) = (&env.lan.name, format!("LEASE_OUT={}", lease_out.display()));
    let o = cmd!(env.lan.sh, "ip netns exec {ns} env {lease_env} busybox udhcpc -i {LAN_TAP} -f -q -n -t 10 -T 3 -x hostname:{CLIENT_NAME} -s {script}")
        .output()?;
    let _ = fs::write(out.join("lan-udhcpc.log"), [o.stdout.as_slice(), o.stderr.as_slice()].concat());
    let text = fs::read_to_string(&lease_out).map_err(|_| {
        format!("no DHCP lease from the router (udhcpc: {})", String::from_utf8_lossy(&o.stderr).trim())
    })?;
    let get = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).unwrap_or("").trim().to_string();
    let lease = Lease { ip: get("ip"), router: get("router"), dns: get("dns") };
    let last: u32 = lease.ip.strip_prefix("192.168.8.").and_then(|s| s.parse().ok()).unwrap_or(0);
    if !(100..=250).contains(&last) {
        return Err(format!("lease address {:?} is not in the router's pool 192.168.8.100-250", lease.ip));
    }
    if lease.router != ROUTER {
        return Err(format!("lease gateway {:?}, expected {ROUTER}", lease.router));
    }
    if !lease.dns.split_whitespace().any(|d| d == ROUTER) {
        return Err(format!("lease DNS servers {:?} do not include the router {ROUTER}", lease.dns));
    }
    // Name resolution in the LAN namespace goes to the router (ip netns exec bind-mounts it).
    fs::create_dir_all(format!("/etc/netns/{NS_LAN}")).map_err(|e| e.to_string())?;
    fs::write(format!("/etc/netns/{NS_LAN}/resolv.conf"), format!("nameserver {ROUTER}\n"))
        .map_err(|e| e.to_string())?;
    Ok(lease)
}

/// `curl` from the LAN: (exit code, http code, bytes).
fn download(env: &Env, family: &str, url: &str, max_time: u32) -> Result<(i32, String, u64), String> {
    let (ns, max_time) = (&env.lan.name, max_time.to_string());
    let o = cmd!(env.lan.sh, "ip netns exec {ns} curl {family} -sS -o /dev/null --connect-timeout {max_time} --max-time {max_time} -w '%{http_code} %{size_download}' {url}")
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let mut it = text.split_whitespace();
    let code = it.next().unwrap_or("").to_string();
    let size = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((o.status.code().unwrap_or(-1), code, size))
}

fn download_ok(env: &Env, family: &str, url: &str) -> Result<u64, String> {
    let (rc, code, size) = download(env, family, url, 120)?;
    if rc != 0 || code != "200" || size != FILE_SIZE {
        return Err(format!(
            "curl {family} {url}: exit {rc}, HTTP {code}, {size} bytes (want 200 and {FILE_SIZE} bytes)"
        ));
    }
    Ok(size)
}

pub(crate) fn rpc(env: &Env, method: &str, params: Value) -> Result<Value, String> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (code, text) = web(
        env,
        &[
            "-u",
            &format!("{ADMIN_USER}:{ADMIN_PASSWORD}"),
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
        ],
        "/spin_api/jsonrpc",
    )?;
    if code != "200" {
        return Err(format!("{method}: HTTP {code}: {text}"));
    }
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method}: reply is not JSON ({e}): {text}"))?;
    if v.get("error").is_some() {
        return Err(format!("{method} {params}: error reply {}", v["error"]));
    }
    Ok(v.get("result").cloned().unwrap_or(Value::Null))
}

/// One request from the LAN to the router's web port (`curl ARGS http://192.168.8.1:13026PATH`):
/// the HTTP status and the body.
fn web(env: &Env, args: &[&str], path: &str) -> Result<(String, String), String> {
    let url = format!("http://{ROUTER}:13026{path}");
    let ns = &env.lan.name;
    let out =
        cmd!(env.lan.sh, "ip netns exec {ns} curl -sS --max-time 30 -w '\\n%{http_code}' {args...} {url}").read()?;
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
    Ok((code.trim().to_string(), body.to_string()))
}

/// The first-run set-up form posted from the LAN with `first_run` as the console's password.
fn setup_admin(env: &Env, first_run: &str) -> Result<(String, String), String> {
    let fields = [
        format!("first_run={first_run}"),
        format!("user={ADMIN_USER}"),
        format!("password={ADMIN_PASSWORD}"),
        format!("password2={ADMIN_PASSWORD}"),
    ];
    let mut args = Vec::new();
    for f in &fields {
        args.extend(["--data-urlencode", f.as_str()]);
    }
    web(env, &args, "/setup")
}

/// An anonymous MQTT subscriber from the LAN (mosquitto_sub, TCP 1883) is refused: CONNACK
/// "not authorised".
fn mqtt_refused(env: &Env, when: &str) -> Result<(), String> {
    let ns = &env.lan.name;
    let out = cmd!(env.lan.sh, "ip netns exec {ns} mosquitto_sub -h {ROUTER} -p 1883 -t SPIN/# -C 1 -W 10")
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() || !text.to_lowercase().contains("not authori") {
        return Err(format!("anonymous MQTT from the LAN {when}: not refused as unauthorised: {text:?}"));
    }
    Ok(())
}

fn dig(env: &Env, qtype: &str) -> Result<Vec<String>, String> {
    let ns = &env.lan.name;
    let out =
        cmd!(env.lan.sh, "ip netns exec {ns} dig +short +time=5 +tries=3 @{ROUTER} {SERVER_NAME} {qtype}").read()?;
    Ok(out.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect())
}

struct Transcripts {
    files: Vec<(String, PathBuf)>,
}

impl Transcripts {
    fn marks(&self) -> Vec<usize> {
        self.files.iter().map(|(_, p)| mqtt::line_count(p)).collect()
    }
    fn subscribed(&self) -> Vec<usize> {
        self.files.iter().map(|(_, p)| mqtt::read(p, 0).0.iter().filter(|e| *e == "subscribed").count()).collect()
    }
}

/// Device and server nodes as seen on one transcript.
fn nodes_seen(msgs: &[mqtt::Msg], client_ip: &str) -> Result<(u64, u64), String> {
    let nodes = Nodes::from(msgs);
    let (dev, dv) = nodes
        .find(|v| v["mac"].as_str().is_some_and(|m| m.eq_ignore_ascii_case(CLIENT_MAC)))
        .ok_or(format!("no nodeInfo with the client's MAC {CLIENT_MAC}"))?;
    if !has_str(dv, "ips", client_ip) {
        return Err(format!("device node {dev} lacks the client's address {client_ip}: {dv}"));
    }
    if dv["name"].as_str() != Some(CLIENT_NAME) {
        return Err(format!("device node {dev} is not named by DHCP ({CLIENT_NAME:?}): {dv}"));
    }
    let (srv, _) = nodes
        .find(|v| has_str(v, "domains", &format!("{SERVER_NAME}.")) && has_str(v, "ips", SERVER_V4))
        .ok_or(format!("no nodeInfo carrying {SERVER_NAME}. with {SERVER_V4}"))?;
    let dnsq = msgs.iter().any(|m| {
        m.command() == "dnsquery"
            && nodes.resolve(m.result()["from"].as_u64().unwrap_or(0)) == dev
            && nodes.resolve(m.result()["queriednode"].as_u64().unwrap_or(0)) == srv
            && m.result()["query"].as_str().is_some_and(|q| q.eq_ignore_ascii_case(&format!("{SERVER_NAME}.")))
    });
    if !dnsq {
        return Err(format!("no dnsquery from device node {dev} for {SERVER_NAME}. (queriednode {srv})"));
    }
    Ok((dev, srv))
}

/// Waits until the flows between device and server (port 80) since `marks` add up and stop
/// growing, and checks them against the download.
///
/// spind reports conntrack's byte counters: whole IP packets, both directions, so the flows
/// carry the download plus the IP and TCP headers of every packet (data and ACKs). How many
/// packets that is depends on how much the router's NIC path merged (GRO), which varies with
/// the load under TCG: measured +1.5% to +2.5% over IPv4 and +2.6% to +4.2% over IPv6, and up
/// to ~5.4% / ~7.6% without any merging. So the check is: the flows' bytes are at least the
/// download, and the flows' bytes less the headers of the packets they counted (`count` x
/// 52 bytes for IPv4, 72 for IPv6: TCP with timestamps) match the download within 5%.
fn traffic_matches(
    tr: &Transcripts,
    marks: &[usize],
    dev: u64,
    srv: u64,
    downloaded: u64,
    header: u64,
) -> Result<String, String> {
    let mut summary = Vec::new();
    for (i, (name, path)) in tr.files.iter().enumerate() {
        let mut last = ((0u64, 0u64), Instant::now());
        let (bytes, packets) =
            wait_until(Duration::from_secs(30), &format!("{name}: traffic of the download to stop growing"), || {
                let all = mqtt::read(path, 0).1;
                let nodes = Nodes::from(&all);
                let since = mqtt::read(path, marks[i]).1;
                let b = mqtt::flow_bytes(&since, &nodes, dev, srv, 80);
                if b != last.0 {
                    last = (b, Instant::now());
                    return Ok(None);
                }
                Ok((b.0 >= downloaded * 9 / 10 && last.1.elapsed() >= Duration::from_secs(3)).then_some(b))
            })
            .map_err(|e| format!("{e} (flow bytes seen: {})", last.0 .0))?;
        let payload = bytes.saturating_sub(packets * header);
        let pct = |x: u64| (x as f64 / downloaded as f64 - 1.0) * 100.0;
        summary.push(format!(
            "{name}: {bytes} bytes in {packets} packets for {downloaded} downloaded ({:+.2}%; less headers {:+.2}%)",
            pct(bytes),
            pct(payload)
        ));
        if bytes < downloaded || pct(payload).abs() > 5.0 {
            return Err(format!(
                "{name}: traffic flows between nodes {dev} and {srv} carry {bytes} bytes in {packets} packets \
                 ({:+.2}%, less headers {:+.2}%) for a download of {downloaded} bytes",
                pct(bytes),
                pct(payload)
            ));
        }
    }
    Ok(summary.join("; "))
}

fn e2e_vm(env: &mut Env, report: &mut Report, boot: &BootInfo, machine: Machine, accel: &str) -> Result<(), String> {
    let out = env.opts.out.clone();
    let overlay = out.join("disk-overlay.qcow2");
    // A disk 1 GiB larger than the image, as a card or disk bigger than the image would be:
    // the first boot grows the root file system to its end.
    let raw_size = fs::metadata(&boot.disk).map_err(|e| format!("{}: {e}", boot.disk.display()))?.len();
    report.step("throw-away disk overlay over the image, 1 GiB larger", || {
        vm::overlay(&boot.disk, &overlay, Some(&(raw_size + GROWN_BY).to_string()))
    })?;
    if env.opts.board == "rpi3" {
        report.step("WiFi: spin-admin.txt with the network's settings on the overlay's boot partition", || {
            crate::wifi::prepare_disk(&boot.disk, &overlay, &out)
        })?;
    }
    env.vm = Some(start_router(env, machine, boot, &overlay, accel, "")?);
    let boot_timeout = Duration::from_secs(if accel == "kvm" { 180 } else { 480 });
    let pw = report.step("first boot: the first-boot root password on the serial console", || {
        first_boot_password(env.vm.as_ref().unwrap(), boot_timeout)
    })?;
    env.password = Some(pw.clone());
    let vm_started = env.vm.as_ref().unwrap().started;
    report.step(&format!("first boot: {} on the serial console", boot.ready_marker), || {
        env.vm.as_ref().unwrap().wait_ready(
            &boot.ready_marker,
            boot_timeout,
            "the router to be ready (spind answering JSON-RPC)",
        )
    })?;
    report.notes.push(format!("first boot to ready marker: {:.1} s", vm_started.elapsed().as_secs_f64()));

    let lease = report.step("LAN client: DHCP lease from the router", || lan_dhcp(env))?;
    report.notes.push(format!("LAN client lease {} (gateway {}, DNS {})", lease.ip, lease.router, lease.dns));

    report.step("before the first-run setup: the LAN can change no list, read no MQTT, only set up", || {
        mqtt_refused(env, "before the setup")?;
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "add_iplist_ip", "params": {"list": "block", "ip": "192.0.2.77"}}).to_string();
        let (code, text) = web(env, &["-X", "POST", "-H", "Content-Type: application/json", "--data", &body], "/spin_api/jsonrpc")?;
        if code == "200" {
            return Err(format!("JSON-RPC without an admin answered 200: {text}"));
        }
        let (code, _) = web(env, &["-u", &format!("{ADMIN_USER}:{pw}")], "/spin_api/jsonrpc")?;
        if code == "200" {
            return Err("the first-run password opened JSON-RPC as a login".into());
        }
        Ok(())
    })?;
    report.step("first-run setup from the LAN with the console's first-run password", || {
        let (code, text) = setup_admin(env, "not-the-password")?;
        if code != "401" {
            return Err(format!("setup with a wrong first-run password: HTTP {code} (want 401): {text}"));
        }
        let (code, text) = setup_admin(env, &pw)?;
        if code != "303" {
            return Err(format!("setup with the console's first-run password: HTTP {code} (want 303): {text}"));
        }
        let list = rpc(env, "list_iplist", json!({"list": "block"}))?;
        if list.as_array().is_some_and(|a| a.iter().any(|x| x == "192.0.2.77")) {
            return Err(format!("the refused change before setup was made: {list}"));
        }
        mqtt_refused(env, "after the setup, without credentials")
    })?;

    let tr = Transcripts {
        files: vec![
            ("MQTT/TCP 1883".into(), out.join("mqtt-tcp.jsonl")),
            ("MQTT/WebSocket 1884".into(), out.join("mqtt-ws.jsonl")),
        ],
    };
    report.step("LAN client: MQTT subscribers (as the admin) on TCP 1883 and WebSocket 1884 (/mqtt)", || {
        for (transport, port, path) in [("tcp", "1883", &tr.files[0].1), ("ws", "1884", &tr.files[1].1)] {
            let (ns, exe) = (env.lan.name.clone(), &env.opts.exe);
            let sub = cmd!(
                env.lan.sh,
                "ip netns exec {ns} {exe} mqtt-sub {ROUTER} {port} {transport} {path} {ADMIN_USER} {ADMIN_PASSWORD}"
            )
            .spawn(Stream::Inherit, Stream::Inherit);
            env.lan.keep(&format!("MQTT subscriber ({transport})"), sub)?;
        }
        wait_until(Duration::from_secs(60), "both MQTT subscriptions to be acknowledged", || {
            env.lan.check_children()?;
            Ok(tr.subscribed().iter().all(|&n| n >= 1).then_some(()))
        })
    })?;
    let marks = tr.marks();

    report.step("LAN client: DNS through the router (A and AAAA of www.example.test)", || {
        let a = dig(env, "A")?;
        if a != [SERVER_V4] {
            return Err(format!("A {SERVER_NAME}: {a:?}, expected [{SERVER_V4}]"));
        }
        let aaaa = dig(env, "AAAA")?;
        if aaaa != [SERVER_V6] {
            return Err(format!("AAAA {SERVER_NAME}: {aaaa:?}, expected [{SERVER_V6}]"));
        }
        Ok(())
    })?;

    let url = format!("http://{SERVER_NAME}/{FILE}");
    let mark_v4 = tr.marks();
    let got = report.step("LAN client: HTTP download over IPv4 through the router's NAT", || {
        let got = download_ok(env, "-4", &url)?;
        let wan_ip = router_wan_v4(&out).ok_or("the router has no DHCP lease on the WAN")?;
        let log = fs::read_to_string(out.join("wan-http.log")).unwrap_or_default();
        let line = log.lines().rev().find(|l| l.contains(&format!("GET /{FILE}"))).unwrap_or("");
        let client = line.split_whitespace().next().unwrap_or("").trim_start_matches("::ffff:");
        if client != wan_ip {
            return Err(format!(
                "the server saw the download from {client:?}, not from the router's WAN address {wan_ip} (no NAT?)"
            ));
        }
        Ok(got)
    })?;

    let (dev, srv) = report.step(
        "MQTT (TCP and WebSocket): device node with MAC and DHCP name, server node with the queried name, dnsquery",
        || {
            let mut ids = None;
            for (name, path) in &tr.files {
                let found = wait_until(
                    Duration::from_secs(30),
                    &format!("{name}: the device and server nodes and the dnsquery"),
                    || {
                        let msgs = mqtt::read(path, 0).1;
                        Ok(nodes_seen(&msgs, &lease.ip).ok())
                    },
                )
                .map_err(|e| {
                    let msgs = mqtt::read(path, 0).1;
                    format!("{e}: {}", nodes_seen(&msgs, &lease.ip).err().unwrap_or_default())
                })?;
                ids.get_or_insert(found);
            }
            Ok(ids.unwrap())
        },
    )?;
    report.notes.push(format!("device node {dev}, server node {srv}"));

    let summary = report
        .step("MQTT: traffic flows of the IPv4 download match its size (within 5% less headers)", || {
            traffic_matches(&tr, &mark_v4, dev, srv, got, 52)
        })?;
    report.notes.push(format!("IPv4: {summary}"));

    // IPv6: the LAN has the router's ULA prefix (router advertisements); the simulated
    // internet routes it back to the router, as an ISP routes a delegated prefix.
    let v6 = report.step("LAN client: IPv6 address from the router's advertisements", || {
        wait_until(Duration::from_secs(60), "a ULA address and a default route on the LAN client", || {
            let ns = &env.lan.name;
            let addrs = cmd!(env.lan.sh, "ip -n {ns} -6 -o addr show dev {LAN_TAP} scope global").read()?;
            let route = cmd!(env.lan.sh, "ip -n {ns} -6 route show default").read()?;
            let addr = addrs.split_whitespace().skip_while(|w| *w != "inet6").nth(1).map(|s| s.to_string());
            Ok(addr.filter(|_| !route.trim().is_empty()))
        })
    })?;
    let mark_v6 = tr.marks();
    report.step("LAN client: HTTP download over IPv6 through the router", || {
        let prefix = prefix64(&v6)?;
        let ns = &env.wan.name;
        cmd!(env.wan.sh, "ip -n {ns} -6 route replace {prefix} via {VM_WAN_LL} dev {WAN_TAP}").read()?;
        download_ok(env, "-6", &url)
    })?;
    let summary = report
        .step("MQTT: traffic flows of the IPv6 download match its size (within 5% less headers)", || {
            traffic_matches(&tr, &mark_v6, dev, srv, got, 72)
        })?;
    report.notes.push(format!("IPv6: {summary}"));
    let _ = marks;

    report.step("the web UI answers the admin on the LAN address (http://192.168.8.1:13026/)", || {
        let (code, _) = web(env, &[], "/spin_api/jsonrpc")?;
        if code != "401" {
            return Err(format!("JSON-RPC without credentials after setup: HTTP {code} (want 401)"));
        }
        let body = out.join("ui-index.html");
        let body_arg = body.display().to_string();
        let (code, _) = web(env, &["-u", &format!("{ADMIN_USER}:{ADMIN_PASSWORD}"), "-o", &body_arg], "/")?;
        let html = fs::read_to_string(&body).unwrap_or_default().to_lowercase();
        if code != "200" || !html.contains("<html") {
            return Err(format!("GET / answered HTTP {code} with {} bytes (want 200 and an HTML page)", html.len()));
        }
        Ok(())
    })?;

    report.step("from the WAN no port of the router is open (SSH, DNS, 13026, 1883, 1884)", || {
        let exe = &env.opts.exe;
        let ports = ["22", "53", "80", "13026", "1883", "1884"];
        // The probe itself works: from the LAN these are open.
        let (lan_ns, wan_ns) = (&env.lan.name, &env.wan.name);
        let lan = cmd!(env.lan.sh, "ip netns exec {lan_ns} {exe} probe {ROUTER} 22 13026 1883 1884").read()?;
        if lan.lines().any(|l| !l.ends_with(" open")) {
            return Err(format!("probe from the LAN should find the router's services open:\n{lan}"));
        }
        let wan_ip = router_wan_v4(&out).ok_or("the router has no DHCP lease on the WAN")?;
        let mut all = String::new();
        for addr in [wan_ip.as_str(), &format!("{VM_WAN_LL}%{WAN_TAP}")] {
            let r = cmd!(env.wan.sh, "ip netns exec {wan_ns} {exe} probe {addr} {ports...}").read()?;
            all.push_str(&r);
            if let Some(open) = r.lines().find(|l| l.ends_with(" open")) {
                return Err(format!("from the WAN the router answers on {open}"));
            }
        }
        let _ = fs::write(out.join("wan-probe.txt"), all);
        Ok(())
    })?;

    let mark_block = tr.marks();
    report.step("JSON-RPC from the LAN: block the server's node; the download fails", || {
        rpc(env, "add_iplist_node", json!({"list": "block", "node": srv}))?;
        let list = rpc(env, "list_iplist", json!({"list": "block"}))?;
        if !list.as_array().is_some_and(|a| a.iter().any(|x| x == SERVER_V4)) {
            return Err(format!("block list after add_iplist_node: {list}, lacks {SERVER_V4}"));
        }
        let (rc, code, size) = download(env, "-4", &url, 8)?;
        if rc == 0 && code == "200" {
            return Err(format!("download of a blocked server succeeded ({size} bytes)"));
        }
        Ok(())
    })?;
    report.step("MQTT: `blocked` messages for the server's node", || {
        for (i, (name, path)) in tr.files.iter().enumerate() {
            wait_until(Duration::from_secs(30), &format!("{name}: a blocked message"), || {
                let all = mqtt::read(path, 0).1;
                let nodes = Nodes::from(&all);
                let since = mqtt::read(path, mark_block[i]).1;
                Ok(since
                    .iter()
                    .any(|m| {
                        m.command() == "blocked"
                            && [&m.result()["from"], &m.result()["to"]]
                                .iter()
                                .any(|x| x.as_u64().map(|n| nodes.resolve(n)) == Some(srv))
                    })
                    .then_some(()))
            })?;
        }
        Ok(())
    })?;

    // Node ids are not kept across spind restarts: after the reboot only what was published
    // since count.
    let mark_reboot = tr.marks();
    report.step(
        "root login on the serial console; the first boot grew the root file system to the disk's end",
        || {
            let vm = env.vm.as_mut().unwrap();
            vm.login(&pw)?;
            check_grown(vm, raw_size)
        },
    )?;
    report.step("reboot the router (systemctl reboot on the serial console)", || {
        let vm = env.vm.as_mut().unwrap();
        // The journal is in RAM: keep the first boot's before it is gone.
        let (_, log) = vm.shell(JOURNAL, Duration::from_secs(60))?;
        let _ = fs::write(out.join("spind-boot1.log"), log);
        vm.reboot()
    })?;
    let t_reboot = Instant::now();
    let subs_before = tr.subscribed();
    report.step(&format!("second boot: {} on the serial console", boot.ready_marker), || {
        env.vm.as_ref().unwrap().wait_ready(
            &boot.ready_marker,
            boot_timeout,
            "the router to be ready again after the reboot",
        )
    })?;
    report.notes.push(format!("reboot to ready marker: {:.1} s", t_reboot.elapsed().as_secs_f64()));
    report.step("MQTT subscribers reconnected after the reboot", || {
        wait_until(Duration::from_secs(90), "both MQTT subscribers to subscribe again", || {
            Ok(tr.subscribed().iter().zip(&subs_before).all(|(n, b)| n > b).then_some(()))
        })
    })?;
    // The server's node after the reboot (restored with the block list, or made by a lookup).
    let server_after = |env: &Env, i: usize| -> Result<u64, String> {
        let (name, path) = &tr.files[i];
        wait_until(Duration::from_secs(30), &format!("{name}: a node for {SERVER_V4} after the reboot"), || {
            let nodes = Nodes::from(&mqtt::read(path, mark_reboot[i]).1);
            match nodes.find(|v| has_str(v, "ips", SERVER_V4)) {
                Some((id, _)) => Ok(Some(id)),
                None => {
                    dig(env, "A")?;
                    Ok(None)
                }
            }
        })
    };
    report.step("after the reboot: the block is still listed and enforced, `blocked` messages", || {
        let list = rpc(env, "list_iplist", json!({"list": "block"}))?;
        if !list.as_array().is_some_and(|a| a.iter().any(|x| x == SERVER_V4)) {
            return Err(format!("block list after the reboot: {list}, lacks {SERVER_V4}"));
        }
        let mark = tr.marks();
        let (rc, code, size) = download(env, "-4", &url, 8)?;
        if rc == 0 && code == "200" {
            return Err(format!("download of a blocked server succeeded after the reboot ({size} bytes)"));
        }
        for (i, (name, path)) in tr.files.iter().enumerate() {
            let srv = server_after(env, i)?;
            wait_until(Duration::from_secs(30), &format!("{name}: a blocked message after the reboot"), || {
                let nodes = Nodes::from(&mqtt::read(path, mark_reboot[i]).1);
                Ok(mqtt::read(path, mark[i])
                    .1
                    .iter()
                    .any(|m| {
                        m.command() == "blocked"
                            && nodes.resolve(m.result()["to"].as_u64().unwrap_or(0)) == nodes.resolve(srv)
                    })
                    .then_some(()))
            })?;
        }
        Ok(())
    })?;
    report.step(
        "after the reboot: the admin password holds (web, MQTT), the first-run password opens nothing",
        || {
            rpc(env, "list_iplist", json!({"list": "allow"}))?;
            let (code, _) = web(env, &["-u", &format!("{ADMIN_USER}:{pw}")], "/spin_api/jsonrpc")?;
            if code != "401" {
                return Err(format!("the first-run password as a login after setup: HTTP {code} (want 401)"));
            }
            let (code, _) = setup_admin(env, &pw)?;
            if code != "409" {
                return Err(format!("setup again with the first-run password: HTTP {code} (want 409)"));
            }
            mqtt_refused(env, "after the reboot, without credentials")
        },
    )?;
    report.step("JSON-RPC: unblock the server's node; the download works again", || {
        let node = server_after(env, 0)?;
        rpc(env, "remove_iplist_node", json!({"list": "block", "node": node}))?;
        let list = rpc(env, "list_iplist", json!({"list": "block"}))?;
        if list.as_array().is_some_and(|a| a.iter().any(|x| x == SERVER_V4)) {
            return Err(format!("block list after remove_iplist_node {node}: {list}"));
        }
        wait_until(Duration::from_secs(20), "the download to work again", || {
            let (rc, code, size) = download(env, "-4", &url, 30)?;
            Ok((rc == 0 && code == "200" && size == FILE_SIZE).then_some(()))
        })
    })?;
    report.step(
        "JSON-RPC from the LAN: a name rule blocks example.test; the router answers 0.0.0.0 and cuts the cached address",
        || name_rule_from_the_lan(env, &url),
    )?;
    if env.opts.board == "rpi3" {
        crate::wifi::steps(env, report, &pw)?;
    }

    // A power cut in the middle of list writes: QEMU is killed while the LAN adds entries to
    // the block list one JSON-RPC call after the other; every call that was answered must be
    // there after the next boot, and the block of the server must hold.
    report.step("JSON-RPC: block the server again; the download fails", || {
        rpc(env, "add_iplist_ip", json!({"list": "block", "ip": SERVER_V4}))?;
        wait_until(Duration::from_secs(20), "the download to fail", || {
            let (rc, _, _) = download(env, "-4", &url, 3)?;
            Ok((rc != 0).then_some(()))
        })
    })?;
    let acks_file = out.join("power-cut-acks.txt");
    report.step("power cut (QEMU killed) while the LAN adds block-list entries", || {
        let script = format!(
            "i=0; while :; do i=$((i+1)); \
             r=$(curl -sSf --max-time 10 -u '{ADMIN_USER}:{ADMIN_PASSWORD}' -H 'Content-Type: application/json' \
             --data '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"add_iplist_ip\",\"params\":{{\"list\":\"block\",\"ip\":\"203.0.113.'$i'\"}}}}' \
             http://{ROUTER}:13026/spin_api/jsonrpc) && case \"$r\" in *error*) ;; *jsonrpc*) echo $i >> {acks};; esac; done",
            acks = acks_file.display()
        );
        let ns = env.lan.name.clone();
        let mut writer = cmd!(env.lan.sh, "ip netns exec {ns} sh -c {script}")
            .spawn(Stream::Null, Stream::Null)
            .map_err(|e| format!("cannot start the list writer: {e}"))?;
        let acked = || fs::read_to_string(&acks_file).unwrap_or_default().lines().count();
        let waited = wait_until(Duration::from_secs(120), "five list entries acknowledged", || {
            Ok((acked() >= 5).then_some(()))
        });
        // Power off with writes still going on.
        env.vm.as_mut().unwrap().kill();
        let _ = writer.kill();
        let _ = writer.wait();
        waited?;
        Ok(acked())
    })?;
    report.notes.push(format!(
        "power cut after {acked} acknowledged list writes",
        acked = fs::read_to_string(&acks_file).unwrap_or_default().lines().count()
    ));
    report.step("boot after the power cut", || {
        env.vm = Some(start_router(env, machine, boot, &overlay, accel, "-after-power-cut")?);
        env.vm.as_ref().unwrap().wait_ready(
            &boot.ready_marker,
            boot_timeout,
            "the router to be ready after the power cut",
        )
    })?;
    report.step("after the power cut: every acknowledged entry is listed, the server's block holds", || {
        let list = rpc(env, "list_iplist", json!({"list": "block"}))?;
        let listed: Vec<&str> =
            list.as_array().map(|a| a.iter().filter_map(|v| v.as_str()).collect()).unwrap_or_default();
        let acked = fs::read_to_string(&acks_file).unwrap_or_default();
        let lost: Vec<String> = acked
            .lines()
            .map(|i| format!("203.0.113.{}", i.trim()))
            .filter(|ip| !listed.contains(&ip.as_str()))
            .collect();
        if !lost.is_empty() || !listed.contains(&SERVER_V4) {
            return Err(format!("block list after the power cut: {list}; acknowledged but lost: {lost:?}"));
        }
        let (rc, _, _) = download(env, "-4", &url, 5)?;
        if rc == 0 {
            return Err("the download works after the power cut: the block does not hold".into());
        }
        Ok(())
    })?;
    Ok(())
}

/// The router VM on `disk`, its WAN and LAN taps opened anew (they are persistent), its
/// console in `serial{suffix}.log` and QEMU's errors in `qemu{suffix}.stderr`.
/// A name rule added from the LAN (issue 13) on the image's own kernel and dnsmasq: the
/// router's resolver answers `0.0.0.0` for the name and a name below it (NFQUEUE verdict), a
/// download by the address the LAN resolved just before is cut (the kernel's name sets), and
/// removing the rule lifts both.
fn name_rule_from_the_lan(env: &Env, url: &str) -> Result<(), String> {
    // The router sees the name's answer first, as an app that cached it would have.
    let a = dig(env, "A")?;
    if a != [SERVER_V4] {
        return Err(format!("A {SERVER_NAME} before the rule: {a:?}, expected [{SERVER_V4}]"));
    }
    let by_address = format!("http://{SERVER_V4}/{FILE}");
    download_ok(env, "-4", &by_address)?;
    let added = rpc(env, "add_name_rule", json!({"name": "example.test", "action": "block"}))?;
    let id = added["id"].as_u64().ok_or_else(|| format!("add_name_rule answered {added}, no id"))?;
    let rules = rpc(env, "list_name_rules", json!({}))?;
    if !rules.as_array().is_some_and(|a| a.iter().any(|r| r["id"] == id && r["name"] == "example.test")) {
        return Err(format!("list_name_rules after add_name_rule: {rules}, lacks rule {id}"));
    }
    wait_until(Duration::from_secs(20), "the router to answer 0.0.0.0 for the blocked name", || {
        Ok((dig(env, "A")? == ["0.0.0.0"]).then_some(()))
    })?;
    let (rc, code, _) = download(env, "-4", url, 5)?;
    if rc == 0 && code == "200" {
        return Err(format!("download by the blocked name succeeded ({url})"));
    }
    wait_until(Duration::from_secs(20), "the download by the cached address to fail", || {
        let (rc, code, _) = download(env, "-4", &by_address, 3)?;
        Ok((rc != 0 || code != "200").then_some(()))
    })?;
    rpc(env, "remove_name_rule", json!({"id": id}))?;
    wait_until(Duration::from_secs(20), "the name to resolve again after remove_name_rule", || {
        Ok((dig(env, "A")? == [SERVER_V4]).then_some(()))
    })?;
    wait_until(Duration::from_secs(20), "downloads by name and by address to work again", || {
        let (rc1, c1, s1) = download(env, "-4", url, 30)?;
        let (rc2, c2, s2) = download(env, "-4", &by_address, 30)?;
        Ok((rc1 == 0 && c1 == "200" && s1 == FILE_SIZE && rc2 == 0 && c2 == "200" && s2 == FILE_SIZE).then_some(()))
    })
}

fn start_router(
    env: &Env,
    machine: Machine,
    boot: &BootInfo,
    disk: &Path,
    accel: &str,
    suffix: &str,
) -> Result<Vm, String> {
    let nics = vec![
        Nic { fd: env.wan.open_tap(WAN_TAP)?, mac: VM_WAN_MAC.into() },
        Nic { fd: env.lan.open_tap(LAN_TAP)?, mac: VM_LAN_MAC.into() },
    ];
    let out = &env.opts.out;
    Vm::start(VmSpec {
        machine,
        boot,
        disk: disk.to_path_buf(),
        nics,
        accel,
        efi_vars: None,
        serial_log: out.join(format!("serial{suffix}.log")),
        stderr_log: out.join(format!("qemu{suffix}.stderr")),
    })
}

/// How much larger than the image the test disk is.
const GROWN_BY: u64 = 1 << 30;

/// After the first boot: the root partition ends at the end of the (larger) disk, less GPT's
/// backup and alignment, and the ext4 on it was grown with it (its size beyond the whole
/// image's).
fn check_grown(vm: &mut Vm, raw_size: u64) -> Result<(), String> {
    let (rc, out) = vm.shell(
        "r=$(findmnt -no SOURCE /); p=${r#/dev/}; d=$(lsblk -no PKNAME $r); \
         echo GROWN $(cat /sys/class/block/$d/size /sys/class/block/$p/start \
         /sys/class/block/$p/size) $(stat -f -c '%b %S' /)",
        Duration::from_secs(30),
    )?;
    let nums: Vec<u64> = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("GROWN "))
        .map(|l| l.split_whitespace().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    let [disk, start, size, fs_blocks, fs_block_size] = nums[..] else {
        return Err(format!("root partition sizes: unexpected output (status {rc}): {out:?}"));
    };
    let (disk_bytes, end_bytes, fs_bytes) = (disk * 512, (start + size) * 512, fs_blocks * fs_block_size);
    if disk_bytes != raw_size + GROWN_BY {
        return Err(format!("the disk has {disk_bytes} bytes, not {}", raw_size + GROWN_BY));
    }
    // GPT keeps 33 sectors for its backup; partitions end on 1 MiB boundaries.
    if end_bytes + (2 << 20) < disk_bytes {
        return Err(format!(
            "the root partition ends at byte {end_bytes} of {disk_bytes}: not grown to the disk's end"
        ));
    }
    if fs_bytes <= raw_size {
        return Err(format!(
            "the root file system has {fs_bytes} bytes, no more than the {raw_size}-byte image: not grown"
        ));
    }
    Ok(())
}

/// The root password the first boot prints on the serial console.
fn first_boot_password(vm: &Vm, timeout: Duration) -> Result<String, String> {
    vm.serial.wait_for("SPIN-FIRST-BOOT root password: ", timeout, "the first boot's root password line")?;
    let rest = vm.serial.wait_for("\n", Duration::from_secs(10), "the end of the password line")?;
    let password = rest.trim().to_string();
    if password.len() != 12 || !password.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("the first-boot password {password:?} is not 12 letters and digits"));
    }
    // A clean console up to here: firstboot once printed tr's "write error: Broken pipe",
    // systemd "Failed to find module 'autofs4'".
    let console = vm.serial.since(0);
    let boot = console.split("SPIN-FIRST-BOOT").next().unwrap_or_default();
    if let Some(line) = boot.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        l.contains("error") || l.contains("failed")
    }) {
        return Err(format!("the first boot printed an error on the console: {line}"));
    }
    Ok(password)
}

/// `fd12:3456:789a:1:...` → `fd12:3456:789a:1::/64`.
fn prefix64(addr: &str) -> Result<String, String> {
    let a: std::net::Ipv6Addr = addr.split('/').next().unwrap_or("").parse().map_err(|e| format!("{addr}: {e}"))?;
    let s = a.segments();
    let p = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
    Ok(format!("{p}/64"))
}

/// rpi3: the SD image under `-M raspi3b` to the ready marker (no network devices there).
fn raspi3b(opts: &Options, report: &mut Report) -> Result<(), String> {
    let out = &opts.out;
    let boot = BootInfo::load(&opts.images, &opts.board)?;
    let overlay = out.join("sd-overlay.qcow2");
    report.step("raspi3b: SD card overlay (power-of-two size)", || {
        let size = fs::metadata(&boot.disk).map_err(|e| e.to_string())?.len();
        vm::overlay(&boot.disk, &overlay, Some(&size.next_power_of_two().to_string()))
    })?;
    let spec = VmSpec {
        machine: Machine::Raspi3b,
        boot: &boot,
        disk: overlay,
        nics: Vec::new(),
        accel: "tcg",
        efi_vars: None,
        serial_log: out.join("raspi3b-serial.log"),
        stderr_log: out.join("raspi3b-qemu.stderr"),
    };
    let mut vm = Vm::start(spec)?;
    let r = ready_without_network(report, &vm, &boot, "raspi3b", "the SD image", "the Raspberry Pi 3 (raspi3b) router")
        .and_then(|_| {
            // No settings file on this card: the first boot made a network of its own.
            report.step(
                "raspi3b: without spin-admin.txt the first boot shows a SPIN-XXXX network and its passphrase",
                || {
                    let line = vm.serial.find_line("SPIN-WIFI network: ").unwrap_or_default();
                    crate::wifi::generated_network(&line).map(|(ssid, _)| ssid)
                },
            )
        })
        .map(|ssid| report.notes.push(format!("raspi3b: WiFi network {ssid}")));
    vm.kill();
    r
}

/// Waits for the ready marker of a VM without network devices (the router gets there without a
/// network), and notes how long the boot took from QEMU's start, whatever happens.
fn ready_without_network(
    report: &mut Report,
    vm: &Vm,
    boot: &BootInfo,
    label: &str,
    image: &str,
    router: &str,
) -> Result<(), String> {
    let r = report.step(&format!("{label}: boot {image} to {}", boot.ready_marker), || {
        vm.wait_ready(&boot.ready_marker, Duration::from_secs(600), &format!("{router} to be ready"))
    });
    report.notes.push(format!("{label} boot to ready marker: {:.1} s", vm.started.elapsed().as_secs_f64()));
    r.map(|_| ())
}

/// The vendor GUID of systemd-boot's variables (the Boot Loader Interface: LoaderInfo,
/// LoaderEntrySelected, ...).
const LOADER_GUID: &str = "4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";
/// The boot loader entry of the image (its file name under `loader/entries/` on the boot
/// partition, the `default` of `loader/loader.conf`; see xtask/imagebuild/src/debian/disk.rs).
const LOADER_ENTRY: &str = "spin.conf";

/// x86_64: the disk image under UEFI (OVMF on `-M q35`, no network devices) to the ready
/// marker; then a root login on the serial console checks that the kernel was started by
/// systemd-boot under UEFI.
fn uefi(opts: &Options, report: &mut Report) -> Result<(), String> {
    let out = &opts.out;
    let boot = BootInfo::load(&opts.images, &opts.board)?;
    let overlay = out.join("uefi-overlay.qcow2");
    let vars = out.join("uefi-vars.fd");
    report.step("uefi: disk overlay and a fresh copy of OVMF's variable store", || {
        vm::overlay(&boot.disk, &overlay, None)?;
        vm::efi_vars(&vars)
    })?;
    let spec = VmSpec {
        machine: Machine::PcUefi,
        boot: &boot,
        disk: overlay,
        nics: Vec::new(),
        // TCG, as for raspi3b: this boot checks the firmware's path, not speed.
        accel: "tcg",
        efi_vars: Some(vars),
        serial_log: out.join("uefi-serial.log"),
        stderr_log: out.join("uefi-qemu.stderr"),
    };
    let mut vm = Vm::start(spec)?;
    let r = uefi_checks(report, &mut vm, &boot);
    vm.kill();
    r
}

/// The UEFI boot's steps: first-boot password, ready marker, then what booted the kernel.
fn uefi_checks(report: &mut Report, vm: &mut Vm, boot: &BootInfo) -> Result<(), String> {
    let pw = report.step("uefi: the first-boot root password on the serial console", || {
        first_boot_password(vm, Duration::from_secs(600))
    })?;
    ready_without_network(report, vm, boot, "uefi", "the disk image under OVMF", "the router (UEFI boot)")?;
    let (firmware, loader) = report.step(
        &format!("uefi: root login; /sys/firmware/efi exists, systemd-boot's LoaderEntrySelected is {LOADER_ENTRY:?}"),
        || {
            vm.login(&pw)?;
            let (rc, _) = vm.shell("test -d /sys/firmware/efi", Duration::from_secs(30))?;
            if rc != 0 {
                return Err("no /sys/firmware/efi: the kernel did not boot under UEFI".into());
            }
            let entry = loader_var(vm, "LoaderEntrySelected")?;
            if entry != LOADER_ENTRY {
                return Err(format!("LoaderEntrySelected is {entry:?}, expected the image's entry {LOADER_ENTRY:?}"));
            }
            let loader = loader_var(vm, "LoaderInfo")?;
            if !loader.starts_with("systemd-boot ") {
                return Err(format!("LoaderInfo is {loader:?}, not systemd-boot"));
            }
            Ok((loader_var(vm, "LoaderFirmwareInfo")?, loader))
        },
    )?;
    report.notes.push(format!("uefi: firmware {firmware:?}, boot loader {loader:?}"));
    Ok(())
}

/// One of systemd-boot's EFI variables, read through efivarfs on the serial console.
fn loader_var(vm: &mut Vm, name: &str) -> Result<String, String> {
    let path = format!("/sys/firmware/efi/efivars/{name}-{LOADER_GUID}");
    let (rc, hex) = vm.shell(&format!("od -An -v -tx1 {path}"), Duration::from_secs(30))?;
    if rc != 0 {
        return Err(format!("no EFI variable {name} ({path}): the kernel was not started by systemd-boot"));
    }
    efi_string(&hex).map_err(|e| format!("{path}: {e}"))
}

/// An efivarfs file holding a string (`od -tx1` of it): 4 bytes of attributes, then UTF-16LE
/// ending in one NUL, which is taken off. Anything else is an error.
fn efi_string(od: &str) -> Result<String, String> {
    let bytes = od
        .split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).map_err(|_| format!("not od -tx1 output: {od:?}")))
        .collect::<Result<Vec<u8>, String>>()?;
    let text = bytes.get(4..).unwrap_or_default();
    if text.len() % 2 != 0 {
        return Err(format!("{} bytes after the attributes: not UTF-16", text.len()));
    }
    let units: Vec<u16> = text.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
    match units.split_last() {
        Some((0, s)) if !s.contains(&0) => String::from_utf16(s).map_err(|e| format!("not UTF-16: {e}")),
        _ => Err(format!("not one NUL-terminated UTF-16 string: {units:04x?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ula_prefix_of_an_address() {
        assert_eq!(prefix64("fd94:e9d1:6ea:1:5a:ff:fe00:202/64").unwrap(), "fd94:e9d1:6ea:1::/64");
        assert!(prefix64("192.168.8.1").is_err());
    }

    #[test]
    fn efi_variable_strings() {
        // LoaderEntrySelected as systemd-boot sets it (attributes 6: boot service and runtime
        // access), and as `od -An -v -tx1` shows it.
        let od = " 06 00 00 00 73 00 70 00 69 00 6e 00 2e 00 63 00 6f 00 6e 00\n 66 00 00 00\n";
        assert_eq!(efi_string(od).unwrap(), "spin.conf");
        assert!(efi_string(" 06 00 00 00 73 00 70 00 69 00 6e 00").is_err()); // no NUL
        assert!(efi_string(" 06 00 00 00 73 00 00 00 70 00 00 00").is_err()); // two strings
        assert!(efi_string(" 06 00 00 00 73 00 00").is_err()); // odd length
        assert!(efi_string(" 06 00 00 00").is_err()); // empty: no NUL either
        assert!(efi_string("od: cannot open").is_err());
    }
}
