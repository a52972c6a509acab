//! `cargo xtask bench history`: what the per-device history costs on disk, in writes and in query
//! time (issue 14's bounds), measured with the release spind replaying generated captures.
//!
//! - **month**: 50 devices for 30 days, each with 30 services of its own (from a pool of 400
//!   names, so devices share some) of which 12 are active in every hour, with a DNS lookup and
//!   traffic both ways in each such hour: the history's size on disk afterwards (hourly files
//!   for 30 days and the daily totals), and the median and slowest of 21 calls each of a
//!   30-day `get_history` by hour and by day and a 30-day `top_services` for one device, over
//!   HTTP on loopback as the UI makes them;
//! - **busy day**: the same 50 devices with every active service moving traffic in every
//!   minute of a whole day (600 device-service pairs always active): the bytes spind's history
//!   writes that day (appends once a minute, the hourly merges and the daily compaction), from
//!   the counter it logs at shutdown (also `SPIN/stat/history/bytes-written`).
//!
//! Both captures end at the present hour, so the replayed history is not aged out by the
//! daemon's clock after the replay. Packets are captured as headers only, with the IP total
//! length saying what they carried (as a snap length does), to keep the files small.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::spind::{Spind, SpindBuilder};

use super::replay::{arp_announcement, frame, tcp, udp, PcapWriter};

const DEVICES: u32 = 50;
const POOL: u32 = 400;
const SERVICES_PER_DEVICE: u32 = 30;
const ACTIVE_PER_HOUR: u32 = 12;
const DAYS: u32 = 30;
const QUERY_RUNS: usize = 21;
const ROUTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const ROUTER_IP: [u8; 4] = [192, 168, 1, 1];

/// Runs both scenarios and returns their markdown table.
pub fn run(bin: &Path, dir: &Path) -> Result<String, String> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_secs();
    let this_hour = now - now % 3600;

    let month = dir.join("history-month.pcap");
    let month_packets = write_capture(&month, this_hour - u64::from(DAYS) * 86_400, DAYS * 24, false)
        .map_err(|e| format!("writing {}: {e}", month.display()))?;
    let m = month_run(bin, &month, this_hour)?;

    let day = dir.join("history-busy-day.pcap");
    let day_packets =
        write_capture(&day, this_hour - 86_400, 24, true).map_err(|e| format!("writing {}: {e}", day.display()))?;
    let (day_written, day_size) = written_by_replay(bin, &day)?;

    let mb = |b: u64| b as f64 / 1_000_000.0;
    let met = |ok: bool| if ok { "met" } else { "**not met**" };
    Ok(format!(
        "| history (`bench history`) | value | target |\n|---|---|---|\n\
         | month: {DEVICES} devices × {DAYS} days, {ACTIVE_PER_HOUR} of 30 services each active every hour ({month_packets} packets replayed) | history on disk {:.2} MB ({} files) | < 20 MB: {} |\n\
         | month: written over the 30 days | {:.1} MB ({:.2} MB a day) | |\n\
         | 30-day `get_history` by hour, one device ({} buckets) | median {:.1} ms, slowest {:.1} ms | < 50 ms: {} |\n\
         | 30-day `get_history` by day, one device ({} buckets) | median {:.1} ms, slowest {:.1} ms | < 50 ms: {} |\n\
         | 30-day `top_services`, one device ({} services) | median {:.1} ms, slowest {:.1} ms | < 50 ms: {} |\n\
         | busy day: {DEVICES} devices, {} device-service pairs moving traffic every minute for 24 h ({day_packets} packets) | **{:.1} MB written that day**; history on disk afterwards {:.2} MB | stated (issue 14's N) |\n",
        mb(m.size),
        m.files,
        met(m.size < 20_000_000),
        mb(m.written),
        mb(m.written) / f64::from(DAYS),
        m.hourly.count,
        m.hourly.median,
        m.hourly.max,
        met(m.hourly.median < 50.0),
        m.daily.count,
        m.daily.median,
        m.daily.max,
        met(m.daily.median < 50.0),
        m.top.count,
        m.top.median,
        m.top.max,
        met(m.top.median < 50.0),
        DEVICES * ACTIVE_PER_HOUR,
        mb(day_written),
        mb(day_size),
    ))
}

struct Timing {
    count: usize,
    median: f64,
    max: f64,
}

struct Month {
    size: u64,
    files: usize,
    written: u64,
    hourly: Timing,
    daily: Timing,
    top: Timing,
}

fn spind(bin: &Path, capture: &Path, exit_after: bool) -> Spind {
    let mut b = SpindBuilder::new(bin)
        .log_level(6)
        .arg("--replay")
        .arg(capture.to_string_lossy())
        .arg("--replay-speed")
        .arg("0");
    if exit_after {
        b = b.arg("--exit-after-replay");
    }
    b.spawn()
}

/// The month replayed, then queried while spind serves it, then stopped for the disk figures.
fn month_run(bin: &Path, capture: &Path, end: u64) -> Result<Month, String> {
    let mut s = spind(bin, capture, false);
    let deadline = Instant::now() + Duration::from_secs(900);
    while !s.log_text().contains("replay finished") {
        if Instant::now() > deadline {
            return Err(format!("the month's replay did not finish in 15 min; spind's log:\n{}", s.log_text()));
        }
        if let Ok(Some(st)) = s.child.try_wait() {
            return Err(format!("spind exited during the replay ({st}); its log:\n{}", s.log_text()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let device = device_mac(0);
    let (from, to) = (end - u64::from(DAYS) * 86_400, end + 3600);
    // Not timed: it waits until the core has worked off the replay's last events.
    s.call("list_devices", json!({}));
    let hourly =
        time_calls(&s, "get_history", json!({"device": device, "from": from, "to": to, "resolution": "hour"}))?;
    let daily = time_calls(&s, "get_history", json!({"device": device, "from": from, "to": to, "resolution": "day"}))?;
    let top = time_calls(&s, "top_services", json!({"device": device, "from": from, "to": to}))?;
    if hourly.count < (DAYS * 24 - 2) as usize || top.count < SERVICES_PER_DEVICE as usize {
        return Err(format!(
            "the month's history is incomplete: {} hourly buckets, {} services for {device}",
            hourly.count, top.count
        ));
    }
    s.terminate();
    let written = logged_bytes_written(&s)?;
    let history = s.state().join("history");
    let files = std::fs::read_dir(&history).map_err(|e| format!("{}: {e}", history.display()))?.count();
    Ok(Month { size: dir_size(&history), files, written, hourly, daily, top })
}

/// Bytes the history wrote while replaying `capture` (spind exits after it), and its size then.
fn written_by_replay(bin: &Path, capture: &Path) -> Result<(u64, u64), String> {
    let mut s = spind(bin, capture, true);
    let (status, _) = s.wait_rusage().map_err(|e| format!("wait4: {e}"))?;
    if status != 0 {
        return Err(format!("spind --replay exited with status {status}; its log:\n{}", s.log_text()));
    }
    Ok((logged_bytes_written(&s)?, dir_size(&s.state().join("history"))))
}

fn logged_bytes_written(s: &Spind) -> Result<u64, String> {
    let log = s.log_text();
    log.lines()
        .rev()
        .find_map(|l| l.split("history: ").nth(1)?.strip_suffix(" bytes written since start")?.parse().ok())
        .ok_or_else(|| format!("spind logged no 'history: N bytes written since start' at shutdown; its log:\n{log}"))
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).into_iter().flatten().flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// [`QUERY_RUNS`] calls timed on the client (ms): the result's length and the median and maximum.
fn time_calls(s: &Spind, method: &str, params: Value) -> Result<Timing, String> {
    let mut times = Vec::with_capacity(QUERY_RUNS);
    let mut count = 0;
    for _ in 0..QUERY_RUNS {
        let start = Instant::now();
        let r = s.rpc(method, params.clone());
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        count = r["result"].as_array().ok_or_else(|| format!("{method} {params}: {r}"))?.len();
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing { count, median: times[QUERY_RUNS / 2], max: times[QUERY_RUNS - 1] })
}

// ---- the generated captures -----------------------------------------------------------------

fn device_mac(d: u32) -> String {
    let m = device_mac_bytes(d);
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn device_mac_bytes(d: u32) -> [u8; 6] {
    [0x02, 0xbe, 0, 0, 0, d as u8]
}

fn device_ip(d: u32) -> [u8; 4] {
    [192, 168, 1, 10 + d as u8]
}

/// The `k`-th of device `d`'s own services (an index into the pool).
fn service(d: u32, k: u32) -> u32 {
    (d * 13 + k * 7) % POOL
}

fn service_ip(s: u32) -> [u8; 4] {
    [101, 1, (s >> 8) as u8, s as u8]
}

/// A pseudo-random size in `1..=max` from a few numbers (the captures are reproducible).
fn size(seed: u64, max: u64) -> u16 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    (1 + x % max) as u16
}

/// Writes a capture of `hours` hours from `start` (unix seconds, an hour's start): ARP for the
/// devices and the router, then per hour and active device-service pair a DNS lookup and TCP
/// traffic both ways: once in the hour, or (`every_minute`) in each of its minutes.
fn write_capture(path: &Path, start: u64, hours: u32, every_minute: bool) -> std::io::Result<u64> {
    let mut w = PcapWriter::new(BufWriter::new(std::fs::File::create(path)?))?;
    let mut buf = Vec::with_capacity(256);
    let t0 = start * 1_000_000;
    for d in 0..=DEVICES {
        let (mac, ip) = if d == DEVICES { (ROUTER_MAC, ROUTER_IP) } else { (device_mac_bytes(d), device_ip(d)) };
        arp_announcement(&mut buf, mac, ip);
        w.packet(t0 + u64::from(d), &buf, buf.len())?;
    }
    let pairs = DEVICES * ACTIVE_PER_HOUR;
    for h in 0..hours {
        let hour_us = t0 + u64::from(h) * 3_600_000_000;
        let active = |i: u32| -> (u32, u32) {
            let (d, j) = (i / ACTIVE_PER_HOUR, i % ACTIVE_PER_HOUR);
            (d, service(d, (h + j * 2) % SERVICES_PER_DEVICE))
        };
        // The lookups open the hour (TTL one hour).
        for i in 0..pairs {
            let (d, s) = active(i);
            let ts = hour_us + 1_000_000 + u64::from(i) * 1000;
            let sport = 20_000 + (i as u16);
            let q = super::dns_message(i as u16, &format!("svc{s}"), None);
            frame(&mut buf, device_mac_bytes(d), ROUTER_MAC, device_ip(d), ROUTER_IP, 17, &udp(sport, 53, &q));
            w.packet(ts, &buf, buf.len())?;
            let a = super::dns_message(i as u16, &format!("svc{s}"), Some((service_ip(s), 3600)));
            frame(&mut buf, ROUTER_MAC, device_mac_bytes(d), ROUTER_IP, device_ip(d), 17, &udp(53, sport, &a));
            w.packet(ts + 500, &buf, buf.len())?;
        }
        let minutes: u32 = if every_minute { 60 } else { 1 };
        for m in 0..minutes {
            let minute_us = hour_us + 5_000_000 + u64::from(m) * 60_000_000;
            for i in 0..pairs {
                let (d, s) = active(i);
                let ts = minute_us + u64::from(i) * 40_000;
                let sport = 30_000 + (i as u16);
                let seed = u64::from(h) << 32 | u64::from(m) << 16 | u64::from(i);
                let (up, down) = (size(seed, 2_000), size(seed ^ 0x5555, 60_000));
                let (dm, di, si) = (device_mac_bytes(d), device_ip(d), service_ip(s));
                frame(&mut buf, dm, ROUTER_MAC, di, si, 6, &tcp(sport, 443, 0x18, 0));
                w.packet_claiming(ts, &mut buf, up)?;
                frame(&mut buf, ROUTER_MAC, dm, si, di, 6, &tcp(443, sport, 0x18, 0));
                w.packet_claiming(ts + 2000, &mut buf, down)?;
            }
        }
    }
    w.finish()
}

impl<W: Write> PcapWriter<W> {
    /// A frame whose TCP payload of `payload` bytes was not captured: the IP header says it
    /// (total length, checksum), the record's original length too.
    fn packet_claiming(&mut self, ts_us: u64, buf: &mut [u8], payload: u16) -> std::io::Result<()> {
        let ip = &mut buf[14..34];
        let total = u16::from_be_bytes([ip[2], ip[3]]) + payload;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[10..12].copy_from_slice(&[0, 0]);
        let c = super::replay::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        self.packet(ts_us, buf, buf.len() + usize::from(payload))
    }
}
