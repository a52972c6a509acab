//! `cargo xtask bench replay`: the replay, idle and size figures the README quotes.
//!
//! - replay: a generated capture of 1,000,000 packets between 100 LAN devices and 9,900 internet
//!   hosts (an ARP announcement per device and the router first, as a LAN shows its devices,
//!   then one DNS query and answer per host and TCP traffic) is replayed by the release
//!   spind as fast as possible (`--replay-speed 0 --exit-after-replay`): wall time and peak RSS
//!   (from wait4's rusage, so the broker and every thread count);
//! - idle: a spind with its broker, web server and extsrc socket, idle for 5 s: VmRSS;
//! - size: the stripped release binary.
//!
//! spind is the test bed's launcher (`testbed::spind`, log level 4), the UI is loaded with the
//! test bed's HTTP client (`testbed::http`).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use testbed::spind::{Spind, SpindBuilder};

const DEVICES: u32 = 100;
const REMOTES: u32 = 9_900;
const PACKETS_PER_REMOTE: u32 = 99; // plus one DNS query and one answer = 101 per remote

/// Runs the replay, idle and size measurements and returns their markdown table.
pub fn run(bin: &Path, dir: &Path) -> Result<String, String> {
    let capture = dir.join("bench-1m.pcap");
    let packets = write_capture(&capture).map_err(|e| format!("writing {}: {e}", capture.display()))?;

    let (secs, peak_kb) = replay(bin, &capture)?;
    let (idle_kb, ui_ms) = idle_rss(bin, dir)?;
    let size = std::fs::metadata(bin).map_err(|e| e.to_string())?.len();

    let report = format!(
        "| measure | value | target |\n|---|---|---|\n\
         | replay of {packets} packets, {} hosts, as fast as possible | {secs:.2} s ({:.0} packets/s) | < 5 s |\n\
         | peak RSS during that replay | {:.1} MB | < 64 MB |\n\
         | idle RSS (broker, web server, extsrc socket) | {:.1} MB | < 8 MB |\n\
         | first load of the UI: index.html and every file it references, one fresh connection each, from spind on loopback | {ui_ms:.1} ms | < 1 s |\n\
         | release binary, x86_64, stripped (default features) | {size} bytes ({:.2} MiB) | < 4 MB |\n",
        DEVICES + REMOTES,
        packets as f64 / secs,
        peak_kb as f64 / 1024.0,
        idle_kb as f64 / 1024.0,
        size as f64 / 1_048_576.0,
    );
    Ok(report)
}

/// The test bed's spind (free ports, its own state directory) at log level 4, as in
/// production; `extra`: what this run adds (a replay, an extsrc socket).
fn spind(bin: &Path, extra: &[&std::ffi::OsStr]) -> Spind {
    let mut b = SpindBuilder::new(bin).log_level(4);
    for a in extra {
        b = b.arg(a.to_string_lossy());
    }
    b.spawn()
}

fn replay(bin: &Path, capture: &Path) -> Result<(f64, i64), String> {
    let start = Instant::now();
    let replay = [
        "--replay".as_ref(),
        capture.as_os_str(),
        "--replay-speed".as_ref(),
        "0".as_ref(),
        "--exit-after-replay".as_ref(),
    ];
    let mut s = spind(bin, &replay);
    let (status, maxrss_kb) = s.wait_rusage().map_err(|e| format!("wait4: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if status != 0 {
        return Err(format!("spind --replay exited with status {status}; its log:\n{}", s.log_text()));
    }
    Ok((secs, maxrss_kb))
}

/// An idle spind's VmRSS (KiB) after 5 s, then the time (ms) to load the UI from it.
fn idle_rss(bin: &Path, dir: &Path) -> Result<(u64, f64), String> {
    let socket = dir.join("extsrc.sock");
    let s = spind(bin, &["-P".as_ref(), "-e".as_ref(), socket.as_os_str()]);
    std::thread::sleep(Duration::from_secs(5));
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap_or_default();
    let ui = ui_first_load(s.http_port);
    drop(s);
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| "idle spind exited early (no VmRSS)".to_string())?;
    Ok((rss, ui?))
}

/// A cold first load as a browser without cache does it: `/`, then every `src`/`href` it
/// names, each over a new connection (the test bed's HTTP client) with gzip accepted. Returns
/// milliseconds.
fn ui_first_load(port: u16) -> Result<f64, String> {
    let get = |path: &str| -> Result<Vec<u8>, String> {
        let r = testbed::http::req(port, "GET", path, &["Accept-Encoding: gzip"]);
        if r.status != 200 {
            return Err(format!("UI load: GET {path}: HTTP {}", r.status));
        }
        Ok(r.body)
    };
    let start = std::time::Instant::now();
    let index = String::from_utf8_lossy(&get("/")?).into_owned();
    for attr in ["src=\"", "href=\""] {
        for part in index.split(attr).skip(1) {
            let target = part.split('"').next().unwrap_or("");
            if !target.is_empty() && !target.contains("://") && !target.starts_with('#') {
                get(&format!("/{}", target.trim_start_matches("./")))?;
            }
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

// ---- the synthetic capture ----------------------------------------------------------------

pub(super) fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 frame around an L4 header and payload.
pub(super) fn frame(
    buf: &mut Vec<u8>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    l4: &[u8],
) {
    buf.clear();
    buf.extend_from_slice(&dst_mac);
    buf.extend_from_slice(&src_mac);
    buf.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64;
    ip[9] = proto;
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    buf.extend_from_slice(&ip);
    buf.extend_from_slice(l4);
}

pub(super) fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

pub(super) fn tcp(sport: u16, dport: u16, flags: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 20 + payload_len];
    h[0..2].copy_from_slice(&sport.to_be_bytes());
    h[2..4].copy_from_slice(&dport.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h[14..16].copy_from_slice(&65535u16.to_be_bytes());
    h
}

/// A DNS query (or its answer with one A record) for `host<i>.bench.test`.
fn dns(i: u32, answer: Option<[u8; 4]>) -> Vec<u8> {
    super::dns_message(i as u16, &format!("host{i}"), answer.map(|a| (a, 3600)))
}

/// A gratuitous ARP reply broadcast by `mac` (sender = target = `ip`): how a capture shows a
/// device owning its address.
pub(super) fn arp_announcement(buf: &mut Vec<u8>, mac: [u8; 6], ip: [u8; 4]) {
    buf.clear();
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2]);
    buf.extend_from_slice(&mac);
    buf.extend_from_slice(&ip);
    buf.extend_from_slice(&[0xff; 6]);
    buf.extend_from_slice(&ip);
}

/// A classic pcap file (microseconds, Ethernet) being written: the bench captures.
pub(super) struct PcapWriter<W: Write> {
    w: W,
    packets: u64,
}

impl<W: Write> PcapWriter<W> {
    pub(super) fn new(mut w: W) -> std::io::Result<Self> {
        w.write_all(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0, 0, 0])?;
        Ok(PcapWriter { w, packets: 0 })
    }

    /// One record at `ts_us` (unix microseconds): `frame` as captured, `orig_len` on the wire.
    pub(super) fn packet(&mut self, ts_us: u64, frame: &[u8], orig_len: usize) -> std::io::Result<()> {
        self.w.write_all(&((ts_us / 1_000_000) as u32).to_le_bytes())?;
        self.w.write_all(&((ts_us % 1_000_000) as u32).to_le_bytes())?;
        self.w.write_all(&(frame.len() as u32).to_le_bytes())?;
        self.w.write_all(&(orig_len as u32).to_le_bytes())?;
        self.w.write_all(frame)?;
        self.packets += 1;
        Ok(())
    }

    /// Flushes the file; the packets written.
    pub(super) fn finish(mut self) -> std::io::Result<u64> {
        self.w.flush()?;
        Ok(self.packets)
    }
}

/// Writes the capture (classic pcap, microseconds, Ethernet) and returns its packet count.
fn write_capture(path: &Path) -> std::io::Result<u64> {
    let mut w = PcapWriter::new(BufWriter::new(std::fs::File::create(path)?))?;
    let router_mac = [0x02, 0, 0, 0, 0, 1];
    let router_ip = [192, 168, 1, 1];
    let start: u64 = 1_700_000_000 * 1_000_000;
    let total = u64::from(DEVICES) + 1 + u64::from(REMOTES) * u64::from(PACKETS_PER_REMOTE + 2);
    // 10,000 packets per second of capture time.
    let step_us = 100;
    let mut buf = Vec::with_capacity(1600);
    let put = |w: &mut PcapWriter<_>, buf: &Vec<u8>| w.packet(start + w.packets * step_us, buf, buf.len());
    // spind takes a frame's source address as its sender's only on the LAN's own subnet, which
    // the capture shows through ARP (a router's MAC also carries remote hosts).
    for d in 0..=DEVICES {
        let (mac, ip) = if d == DEVICES {
            (router_mac, router_ip)
        } else {
            ([0x02, 0xbe, 0, 0, (d >> 8) as u8, d as u8], [192, 168, 1, 10 + d as u8])
        };
        arp_announcement(&mut buf, mac, ip);
        put(&mut w, &buf)?;
    }
    for r in 0..REMOTES {
        let d = r % DEVICES;
        let dev_mac = [0x02, 0xbe, 0, 0, (d >> 8) as u8, d as u8];
        let dev_ip = [192, 168, 1, 10 + d as u8];
        // Public addresses (101.0.0.0/8): internet hosts, not on-link ones.
        let remote_ip = [101, (r >> 16) as u8, (r >> 8) as u8, r as u8];
        let sport = 10_000 + (r % 50_000) as u16;
        frame(&mut buf, dev_mac, router_mac, dev_ip, router_ip, 17, &udp(sport, 53, &dns(r, None)));
        put(&mut w, &buf)?;
        frame(&mut buf, router_mac, dev_mac, router_ip, dev_ip, 17, &udp(53, sport, &dns(r, Some(remote_ip))));
        put(&mut w, &buf)?;
        for p in 0..PACKETS_PER_REMOTE {
            let flags = if p == 0 { 0x02 } else { 0x10 };
            if p % 2 == 0 {
                frame(&mut buf, dev_mac, router_mac, dev_ip, remote_ip, 6, &tcp(sport, 443, flags, 200));
            } else {
                frame(
                    &mut buf,
                    router_mac,
                    dev_mac,
                    remote_ip,
                    dev_ip,
                    6,
                    &tcp(443, sport, 0x10 | (0x02 * u8::from(p == 1)), 1200),
                );
            }
            put(&mut w, &buf)?;
        }
    }
    let n = w.finish()?;
    debug_assert_eq!(n, total);
    Ok(n)
}
