//! Per-device history and alerts, owned by the core: the interval being accumulated (every flow
//! sample and blocked packet, per device, remote address and hour), written to the store
//! ([`store`]) in batches at most once a minute and at shutdown; the queries behind
//! `get_history`, `top_services` and the export (which include the unwritten interval); and the
//! alerts (`new_device`, `new_service`, `traffic_peak`, `blocked_attempts`, `store_corrupt`),
//! kept in `history/alerts.json` with the known devices (`history/devices.txt`).

pub mod store;
#[cfg(test)]
mod tests;

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;

use log::{info, warn};
use serde_json::{json, Value};

use crate::model::event::{FlowSample, MacAddr, Timestamp};
use crate::model::persist;
use store::{day_of_hour, hour_of, Counters, Record, Store};

/// How often the accumulated interval is written (flash wear: at most once a minute).
pub const FLUSH_INTERVAL: i64 = 60;
/// Alerts kept (the oldest go first).
const ALERTS_KEEP: usize = 1000;
/// Devices remembered for `new_device` (a bound against a flood of random MACs).
const DEVICES_KEEP: usize = 10_000;
/// Device-service pairs remembered for `new_service`.
const SERVICES_KEEP: usize = 500_000;
/// Distinct connections counted per hour (the set is cleared every hour).
const FLOWS_SEEN_KEEP: usize = 1_000_000;
/// Unwritten (device, remote, hour) entries kept while writes fail; more are dropped and counted.
const PENDING_KEEP: usize = 100_000;
/// `traffic_peak`: an hour is a peak when the device moved at least this many times its mean
/// hourly bytes of the week before, and at least [`PEAK_MIN_BYTES`], with a day of history.
pub const PEAK_FACTOR: u64 = 10;
pub const PEAK_MIN_BYTES: u64 = 50_000_000;
const BASELINE_HOURS: u32 = 168;
/// Hours of bytes and blocked packets kept per device (the baseline and a day).
const RING_HOURS: u32 = BASELINE_HOURS + 24;
/// The alert kinds (the index of the daily count per device).
const KINDS: [&str; 5] = ["new_device", "new_service", "traffic_peak", "blocked_attempts", "store_corrupt"];
/// `blocked_attempts`: this many blocked packets of one device within one hour.
pub const BLOCKED_ATTEMPTS: u64 = 100;
/// Alerts of one kind for one device per UTC day, at most.
const ALERTS_PER_DEVICE_DAY: u32 = 20;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistorySettings {
    pub enabled: bool,
    /// `history_hourly_days`: hourly records are kept this many days.
    pub hourly_days: i64,
    /// `history_daily_days`: daily totals are kept this many days.
    pub daily_days: i64,
    /// `history_max_size`: the oldest hourly files go when the history exceeds this (bytes).
    pub max_bytes: u64,
    /// `history_learning_days`: no `new_service` alerts during a device's first days.
    pub learning_days: i64,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings { enabled: true, hourly_days: 30, daily_days: 400, max_bytes: 64 << 20, learning_days: 7 }
    }
}

/// One alert (`list_alerts`, `SPIN/alerts`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub id: u64,
    pub time: Timestamp,
    pub kind: String,
    pub device: Option<String>,
    pub detail: String,
    pub acked: bool,
}

// By hand, not serde's derive: its deserializer for one struct cost more binary than this.
impl Alert {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "time": self.time, "kind": self.kind, "device": self.device,
            "detail": self.detail, "acked": self.acked})
    }

    fn from_json(v: &Value) -> Option<Alert> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Alert {
            id: v.get("id")?.as_u64()?,
            time: v.get("time")?.as_i64()?,
            kind: text("kind")?,
            device: text("device"),
            detail: text("detail").unwrap_or_default(),
            acked: v.get("acked").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// What the history knows of one device: when it was first seen, its bytes and blocked packets
/// of the last [`RING_HOURS`] hours (slot `hour % RING_HOURS`: the hour, bytes, blocked), and
/// its alerts of each kind on one day (the daily bound).
struct DeviceState {
    mac: MacAddr,
    first_seen: Timestamp,
    hours: Vec<(u32, u64, u64)>,
    alerts: [(i64, u32); KINDS.len()],
}

impl DeviceState {
    fn new(mac: MacAddr, first_seen: Timestamp) -> DeviceState {
        DeviceState { mac, first_seen, hours: Vec::new(), alerts: [(0, 0); KINDS.len()] }
    }

    /// Adds to an hour; returns its blocked packets before and after.
    fn add_hour(&mut self, hour: u32, bytes: u64, blocked: u64) -> (u64, u64) {
        if self.hours.is_empty() {
            self.hours = vec![(u32::MAX, 0, 0); RING_HOURS as usize];
        }
        let slot = &mut self.hours[(hour % RING_HOURS) as usize];
        if slot.0 != hour {
            *slot = (hour, 0, 0);
        }
        let before = slot.2;
        slot.1 += bytes;
        slot.2 += blocked;
        (before, slot.2)
    }

    fn bytes_in_hour(&self, hour: u32) -> u64 {
        match self.hours.get((hour % RING_HOURS) as usize) {
            Some(&(h, bytes, _)) if h == hour => bytes,
            _ => 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PendingKey {
    device: MacAddr,
    remote: IpAddr,
    hour: u32,
}

/// One bucket of a query's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub time: Timestamp,
    pub counters: Counters,
}

/// `get_history`'s resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Hour,
    Day,
}

pub struct History {
    settings: HistorySettings,
    store: Option<Store>,
    pending: HashMap<PendingKey, Counters>,
    /// Records resolved from `pending` whose write failed, tried again at the next flush.
    unwritten: Vec<Record>,
    flows_seen: HashSet<u64>,
    flows_hour: u32,
    next_flush: Timestamp,
    /// Why writing stopped, while it fails (said once).
    paused: Option<String>,
    dropped: u64,
    /// Days whose totals are in `days.bin` (their hourly file is compacted), ascending.
    days_done: Vec<i64>,
    compacted_through: i64,
    /// The hour whose first flush merged the current day's file.
    merged_hour: u32,
    /// The known devices, by MAC (sorted: looked up by binary search).
    devices: Vec<DeviceState>,
    services: HashSet<u64>,
    evaluated_hour: u32,
    alerts: Vec<Alert>,
    next_alert_id: u64,
    /// Alerts raised and not yet handed to the core for publishing.
    fresh: Vec<Alert>,
    /// Devices and alerts not yet on disk.
    meta_dirty: bool,
    cap_warned: bool,
}

fn service_hash(device: &MacAddr, remote: &str) -> u64 {
    let mut h = DefaultHasher::new();
    device.hash(&mut h);
    remote.hash(&mut h);
    h.finish()
}

fn flow_hash(s: &FlowSample) -> u64 {
    let mut h = DefaultHasher::new();
    (s.protocol, s.src, s.dst, s.src_port, s.dst_port).hash(&mut h);
    h.finish()
}

impl History {
    /// The history in `dir` (`<state_dir>/history`; off, with a warning, if it cannot be made).
    pub fn open(settings: HistorySettings, dir: &std::path::Path, now: Timestamp) -> History {
        let store = if settings.enabled {
            match Store::open(dir) {
                Ok(s) => Some(s),
                Err(e) => {
                    warn!("no history: cannot create {}: {e}", dir.display());
                    None
                }
            }
        } else {
            None
        };
        let mut h = History {
            settings,
            store,
            pending: HashMap::new(),
            unwritten: Vec::new(),
            flows_seen: HashSet::new(),
            flows_hour: hour_of(now),
            next_flush: now + FLUSH_INTERVAL,
            paused: None,
            dropped: 0,
            days_done: Vec::new(),
            compacted_through: i64::MIN,
            merged_hour: hour_of(now),
            devices: Vec::new(),
            services: HashSet::new(),
            evaluated_hour: hour_of(now).saturating_sub(1),
            alerts: Vec::new(),
            next_alert_id: 1,
            fresh: Vec::new(),
            meta_dirty: false,
            cap_warned: false,
        };
        h.load(now);
        h
    }

    fn meta_files(&self) -> Option<(PathBuf, PathBuf)> {
        let dir = self.store.as_ref()?.dir();
        Some((dir.join("devices.txt"), dir.join("alerts.json")))
    }

    fn load(&mut self, now: Timestamp) {
        let Some((devices_file, alerts_file)) = self.meta_files() else { return };
        if let Ok(text) = std::fs::read_to_string(&devices_file) {
            for line in text.lines() {
                let mut f = line.split_whitespace();
                if let (Some(Ok(mac)), Some(Ok(t))) = (f.next().map(str::parse), f.next().map(str::parse)) {
                    self.device_mut(mac, t);
                }
            }
        }
        if let Ok(text) = std::fs::read_to_string(&alerts_file) {
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Array(a)) => self.alerts = a.iter().filter_map(Alert::from_json).collect(),
                Ok(_) => warn!("{}: not a list of alerts; the alerts start afresh", alerts_file.display()),
                Err(e) => warn!("{}: {e}; the alerts start afresh", alerts_file.display()),
            }
        }
        self.next_alert_id = self.alerts.iter().map(|a| a.id + 1).max().unwrap_or(1);
        let Some(store) = self.store.as_mut() else { return };
        let days_file = store.days_file();
        let mut done: Vec<i64> = store.read(&days_file).iter().map(|r| day_of_hour(r.hour)).collect();
        done.sort_unstable();
        done.dedup();
        // What the devices used (new_service) and their hourly totals (the peak baselines).
        let base_from = hour_of(now).saturating_sub(RING_HOURS);
        let mut records = Vec::new();
        for day in store.hour_days() {
            let path = store.hour_file(day);
            records.extend(store.read(&path));
        }
        self.days_done = done;
        for r in records {
            self.services.insert(service_hash(&r.device, &r.remote));
            // A device in the history is known, even if devices.txt was lost.
            let d = self.device_mut(r.device, i64::from(r.hour) * 3600);
            if r.hour >= base_from {
                d.add_hour(r.hour, r.counters.bytes(), r.counters.blocked);
            }
        }
        self.compact(now);
        self.note_moved_aside(now);
    }

    /// Files the store found corrupt become alerts.
    fn note_moved_aside(&mut self, now: Timestamp) {
        let Some(store) = self.store.as_mut() else { return };
        for path in store.take_moved_aside() {
            self.raise(now, "store_corrupt", None, format!("{path} was damaged: moved aside, a fresh one started"));
        }
    }

    // ---- accumulating (the core's hot path) -------------------------------------------------

    fn entry(&mut self, device: MacAddr, remote: IpAddr, time: Timestamp) -> Option<&mut Counters> {
        self.store.as_ref()?;
        let key = PendingKey { device, remote, hour: hour_of(time) };
        if self.pending.len() >= PENDING_KEEP && !self.pending.contains_key(&key) {
            self.dropped += 1;
            return None;
        }
        Some(self.pending.entry(key).or_default())
    }

    /// A flow sample between two nodes with these MACs (`None`: not a device). `reply` is the part
    /// of the bytes that went from `dst` to `src`; `blocked`: the flow was stopped.
    pub fn flow(&mut self, time: Timestamp, s: &FlowSample, macs: (Option<MacAddr>, Option<MacAddr>), blocked: bool) {
        if self.store.is_none() || (macs.0.is_none() && macs.1.is_none()) {
            return;
        }
        let hour = hour_of(time);
        if hour != self.flows_hour {
            self.flows_hour = hour;
            self.flows_seen.clear();
        }
        let new_conn = self.flows_seen.len() < FLOWS_SEEN_KEEP && self.flows_seen.insert(flow_hash(s));
        let reply = s.reply_bytes.min(s.bytes);
        let forward = s.bytes - reply;
        for (mac, remote, out, inn) in [(macs.0, s.dst, forward, reply), (macs.1, s.src, reply, forward)] {
            let Some(mac) = mac else { continue };
            let Some(c) = self.entry(mac, remote, time) else { continue };
            if blocked {
                c.blocked += s.packets;
            } else {
                c.bytes_out += out;
                c.bytes_in += inn;
                c.packets += s.packets;
                c.connections += u64::from(new_conn);
            }
        }
    }

    /// The state of a device, added (first seen at `time`) if new.
    fn device_mut(&mut self, mac: MacAddr, time: Timestamp) -> &mut DeviceState {
        let i = match self.devices.binary_search_by(|d| d.mac.cmp(&mac)) {
            Ok(i) => i,
            Err(i) => {
                self.devices.insert(i, DeviceState::new(mac, time));
                i
            }
        };
        &mut self.devices[i]
    }

    fn device(&self, mac: &MacAddr) -> Option<&DeviceState> {
        self.devices.binary_search_by(|d| d.mac.cmp(mac)).ok().map(|i| &self.devices[i])
    }

    /// A device was seen (a neighbour entry, a flow): a MAC never seen before raises `new_device`.
    pub fn device_seen(&mut self, time: Timestamp, mac: MacAddr) {
        if self.store.is_none() || self.device(&mac).is_some() || self.devices.len() >= DEVICES_KEEP {
            return;
        }
        self.device_mut(mac, time);
        self.meta_dirty = true;
        self.raise(time, "new_device", Some(mac), format!("{mac} joined the network for the first time"));
        // Written at once: a restart must not announce it again.
        self.save_meta();
    }

    fn raise(&mut self, time: Timestamp, kind: &'static str, device: Option<MacAddr>, detail: String) {
        if let Some(mac) = device {
            let day = time.div_euclid(86_400);
            let k = KINDS.iter().position(|x| *x == kind).unwrap_or(0);
            let c = &mut self.device_mut(mac, time).alerts[k];
            if c.0 != day {
                *c = (day, 0);
            }
            if c.1 >= ALERTS_PER_DEVICE_DAY {
                return;
            }
            c.1 += 1;
        }
        let alert = Alert {
            id: self.next_alert_id,
            time,
            kind: kind.into(),
            device: device.map(|m| m.to_string()),
            detail,
            acked: false,
        };
        self.next_alert_id += 1;
        self.alerts.push(alert.clone());
        if self.alerts.len() > ALERTS_KEEP {
            let extra = self.alerts.len() - ALERTS_KEEP;
            self.alerts.drain(..extra);
        }
        self.fresh.push(alert);
        self.meta_dirty = true;
    }

    /// Alerts raised since the last call (the core publishes them on `SPIN/alerts`).
    pub fn take_fresh_alerts(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.fresh)
    }

    fn save_meta(&mut self) -> bool {
        let Some((devices_file, alerts_file)) = self.meta_files() else { return true };
        if !self.meta_dirty {
            return true;
        }
        let devices: String = self.devices.iter().map(|d| format!("{} {}\n", d.mac, d.first_seen)).collect();
        let alerts = Value::Array(self.alerts.iter().map(Alert::to_json).collect()).to_string().into_bytes();
        match persist::write_files(&[(devices_file, devices.into_bytes()), (alerts_file, alerts)]) {
            Ok(()) => {
                self.meta_dirty = false;
                true
            }
            Err(e) => {
                self.pause(format!("{e}"));
                false
            }
        }
    }

    fn pause(&mut self, why: String) {
        if self.paused.is_none() {
            warn!("history paused: {why}; the rest of spind goes on, the history is kept in memory and written when it can be");
        }
        self.paused = Some(why);
    }

    // ---- writing ----------------------------------------------------------------------------

    /// Whether a flush is due (once a minute).
    pub fn flush_due(&self, now: Timestamp) -> bool {
        self.store.is_some() && now >= self.next_flush
    }

    /// Writes the accumulated interval as one batch per day file. `remote_key` names a remote
    /// address (its DNS name, else the address). Also compacts at a day's end, checks the
    /// alerts that need a completed interval, and writes the devices and alerts.
    pub fn flush(&mut self, now: Timestamp, remote_key: &dyn Fn(IpAddr) -> String) {
        if self.store.is_none() {
            return;
        }
        self.next_flush = now + FLUSH_INTERVAL;
        let records = self.resolve_pending(remote_key);
        self.learn(now, &records);
        self.unwritten.extend(records);
        // Merged, so in hour order: each day's records are one run.
        let all = store::merge(std::mem::take(&mut self.unwritten));
        let store = self.store.as_ref().expect("checked above");
        let mut failed: Option<String> = None;
        let mut i = 0;
        while i < all.len() {
            let day = day_of_hour(all[i].hour);
            let n = all[i..].iter().take_while(|r| day_of_hour(r.hour) == day).count();
            let recs = &all[i..i + n];
            i += n;
            if failed.is_none() {
                match store.append(&store.hour_file(day), recs) {
                    Ok(()) => continue,
                    Err(e) => failed = Some(e.to_string()),
                }
            }
            self.unwritten.extend_from_slice(recs);
        }
        // While writes fail, memory is bounded too: the oldest hours go first.
        if self.unwritten.len() > PENDING_KEEP {
            let extra = self.unwritten.len() - PENDING_KEEP;
            self.unwritten.drain(..extra);
            self.dropped += extra as u64;
        }
        let meta_ok = self.save_meta();
        match failed {
            Some(why) => self.pause(why),
            None if meta_ok => {
                if let Some(why) = self.paused.take() {
                    info!("history written again (it was paused: {why})");
                }
            }
            None => {}
        }
        self.merge_today(now);
        if self.dropped > 0 {
            warn!("history: {} samples dropped while the history could not be written", self.dropped);
            self.dropped = 0;
        }
        self.compact(now);
        self.note_moved_aside(now);
    }

    fn resolve_pending(&mut self, remote_key: &dyn Fn(IpAddr) -> String) -> Vec<Record> {
        let records: Vec<Record> = self
            .pending
            .drain()
            .map(|(k, counters)| Record { hour: k.hour, device: k.device, remote: remote_key(k.remote), counters })
            .collect();
        store::merge(records)
    }

    /// The alerts that follow from a flushed interval: new services, peaks, blocked attempts.
    fn learn(&mut self, now: Timestamp, records: &[Record]) {
        let learning = self.settings.learning_days * 86_400;
        for r in records {
            self.device_seen(now, r.device);
            let (before, n) = self.device_mut(r.device, now).add_hour(r.hour, r.counters.bytes(), r.counters.blocked);
            if before < BLOCKED_ATTEMPTS && n >= BLOCKED_ATTEMPTS {
                self.raise(
                    now,
                    "blocked_attempts",
                    Some(r.device),
                    format!("{} kept trying blocked connections: {n} packets blocked this hour", r.device),
                );
            }
            if r.counters.bytes() == 0 || self.services.len() >= SERVICES_KEEP {
                continue;
            }
            if self.services.insert(service_hash(&r.device, &r.remote)) {
                let learned = self.device(&r.device).is_some_and(|d| now - d.first_seen >= learning);
                if learned {
                    self.raise(
                        now,
                        "new_service",
                        Some(r.device),
                        format!("{} contacted {} for the first time", r.device, r.remote),
                    );
                }
            }
        }
        self.check_peaks(now);
    }

    /// `traffic_peak`: every hour completed since the last check, against the device's mean
    /// hourly bytes over the week before it (hours without traffic count as zero; only hours
    /// since the device was first seen), needing a day of history.
    fn check_peaks(&mut self, now: Timestamp) {
        let current = hour_of(now);
        let from = self.evaluated_hour + 1;
        if current <= from {
            return;
        }
        self.evaluated_hour = current - 1;
        let mut peaks = Vec::new();
        for d in &self.devices {
            let first = hour_of(d.first_seen);
            // Only the hours the ring still holds.
            for h in from.max(current.saturating_sub(24))..current {
                let bytes = d.bytes_in_hour(h);
                let start = h.saturating_sub(BASELINE_HOURS).max(first);
                if bytes < PEAK_MIN_BYTES || h < start + 24 {
                    continue;
                }
                let total: u64 = (start..h).map(|x| d.bytes_in_hour(x)).sum();
                let mean = total / u64::from(h - start);
                if bytes >= mean.saturating_mul(PEAK_FACTOR) {
                    peaks.push((d.mac, h, bytes, mean));
                }
            }
        }
        for (mac, h, bytes, mean) in peaks {
            self.raise(
                now,
                "traffic_peak",
                Some(mac),
                format!(
                    "{mac} moved {bytes} bytes in the hour from {}, {}x its hourly mean of {mean} over the week before",
                    i64::from(h) * 3600,
                    bytes / mean.max(1)
                ),
            );
        }
    }

    /// Once an hour, the current day's file is merged (one record per device, remote and hour
    /// instead of one per minute): the file stays about the size of the day's records.
    fn merge_today(&mut self, now: Timestamp) {
        let hour = hour_of(now);
        if hour == self.merged_hour || self.paused.is_some() {
            return;
        }
        self.merged_hour = hour;
        let Some(store) = self.store.as_mut() else { return };
        let path = store.hour_file(day_of_hour(hour));
        let merged = store::merge(store.read(&path));
        if let Err(e) = store.replace(&path, &merged) {
            warn!("history: cannot merge today's file: {e}");
        }
    }

    /// At a day's end (and at start): the finished days' totals go to `days.bin` and their
    /// hourly files are compacted; retention and the size cap are applied.
    fn compact(&mut self, now: Timestamp) {
        let today = now.div_euclid(86_400);
        if self.compacted_through == today || self.paused.is_some() {
            return;
        }
        let Some(store) = self.store.as_mut() else { return };
        let days_file = store.days_file();
        let mut new_totals = Vec::new();
        for day in store.hour_days() {
            let path = store.hour_file(day);
            let expired = day < today - self.settings.hourly_days;
            if day < today && self.days_done.binary_search(&day).is_err() {
                let merged = store::merge(store.read(&path));
                new_totals.extend(store::day_totals(&merged));
                if !expired {
                    if let Err(e) = store.replace(&path, &merged) {
                        warn!("history: cannot compact: {e}");
                        return;
                    }
                }
                if let Err(i) = self.days_done.binary_search(&day) {
                    self.days_done.insert(i, day);
                }
            }
            if expired {
                store.remove(&path);
            }
        }
        let oldest_day = today - self.settings.daily_days;
        if self.days_done.first().is_some_and(|d| *d < oldest_day) {
            let kept: Vec<Record> =
                store.read(&days_file).into_iter().filter(|r| day_of_hour(r.hour) >= oldest_day).collect();
            let kept = store::merge(kept.into_iter().chain(new_totals.drain(..)).collect());
            if let Err(e) = store.replace(&days_file, &kept) {
                warn!("history: cannot apply the daily retention: {e}");
            }
            self.days_done.retain(|d| *d >= oldest_day);
        } else if let Err(e) = store.append(&days_file, &new_totals) {
            warn!("history: cannot write the daily totals: {e}");
        }
        // The size cap: the oldest hourly files go first (the daily totals stay).
        let mut days = store.hour_days();
        while store.size() > self.settings.max_bytes && days.len() > 1 {
            let day = days.remove(0);
            if !self.cap_warned {
                warn!(
                    "history is over its size cap ({} bytes, history_max_size): removing the oldest hourly files",
                    self.settings.max_bytes
                );
                self.cap_warned = true;
            }
            store.remove(&store.hour_file(day));
        }
        self.compacted_through = today;
    }

    // ---- queries ----------------------------------------------------------------------------

    /// Hourly records of one device in `[from, to)` from the files and the unwritten interval.
    fn hour_records(
        &mut self,
        device: MacAddr,
        from: Timestamp,
        to: Timestamp,
        remote_key: &dyn Fn(IpAddr) -> String,
        skip_days: &[i64],
    ) -> Vec<Record> {
        let (h0, h1) = (hour_of(from), hour_of(to.saturating_add(3599)));
        let mut out = Vec::new();
        let Some(store) = self.store.as_mut() else { return out };
        for day in store.hour_days() {
            if day < day_of_hour(h0) || day > day_of_hour(h1) || skip_days.contains(&day) {
                continue;
            }
            let path = store.hour_file(day);
            out.extend(store.read_device(&path, device));
        }
        out.extend(self.unwritten.iter().filter(|r| r.device == device).cloned());
        for (k, c) in &self.pending {
            if k.device == device && !skip_days.contains(&day_of_hour(k.hour)) {
                out.push(Record { hour: k.hour, device, remote: remote_key(k.remote), counters: *c });
            }
        }
        out.retain(|r| {
            let t = i64::from(r.hour) * 3600;
            t + 3600 > from && t < to
        });
        out
    }

    /// `get_history`: a device's traffic per hour or day in `[from, to)`, ascending, buckets
    /// with traffic only; `remotes`: only these remote keys.
    pub fn query(
        &mut self,
        device: MacAddr,
        from: Timestamp,
        to: Timestamp,
        resolution: Resolution,
        remotes: Option<&[String]>,
        remote_key: &dyn Fn(IpAddr) -> String,
    ) -> Vec<Bucket> {
        // Buckets are records of one remote (""), summed by `merge`.
        let mut buckets: Vec<Record> = Vec::new();
        let hours_per_bucket = match resolution {
            Resolution::Hour => 1,
            Resolution::Day => 24,
        };
        let mut skip = Vec::new();
        if resolution == Resolution::Day && remotes.is_none() {
            if let Some(store) = self.store.as_mut() {
                let days_file = store.days_file();
                for r in store.read_device(&days_file, device) {
                    let t = i64::from(r.hour) * 3600;
                    if t + 86_400 > from && t < to {
                        skip.push(day_of_hour(r.hour));
                        buckets.push(r);
                    }
                }
            }
        }
        for mut r in self.hour_records(device, from, to, remote_key, &skip) {
            if remotes.is_some_and(|keys| !keys.contains(&r.remote)) {
                continue;
            }
            r.hour -= r.hour % hours_per_bucket;
            r.remote.clear();
            buckets.push(r);
        }
        store::merge(buckets)
            .into_iter()
            .map(|r| Bucket { time: i64::from(r.hour) * 3600, counters: r.counters })
            .collect()
    }

    /// `top_services`: a device's remotes in `[from, to)` with their totals, most bytes first.
    pub fn top(
        &mut self,
        device: MacAddr,
        from: Timestamp,
        to: Timestamp,
        remote_key: &dyn Fn(IpAddr) -> String,
    ) -> Vec<(String, Counters)> {
        let mut records = self.hour_records(device, from, to, remote_key, &[]);
        for r in &mut records {
            r.hour = 0;
        }
        let mut out = store::merge(records);
        store::sort_records(&mut out, |a, b| {
            b.counters.bytes().cmp(&a.counters.bytes()).then_with(|| a.remote.cmp(&b.remote))
        });
        out.into_iter().map(|r| (r.remote, r.counters)).collect()
    }

    /// `list_alerts`: the alerts since `since`, oldest first.
    pub fn alerts_since(&self, since: Timestamp) -> Vec<Alert> {
        self.alerts.iter().filter(|a| a.time >= since).cloned().collect()
    }

    /// `ack_alert`: marks an alert read and saves that. `Ok(false)`: no such alert.
    pub fn ack(&mut self, id: u64) -> Result<bool, String> {
        let Some(a) = self.alerts.iter_mut().find(|a| a.id == id) else { return Ok(false) };
        if !a.acked {
            a.acked = true;
            self.meta_dirty = true;
            if !self.save_meta() {
                if let Some(a) = self.alerts.iter_mut().find(|a| a.id == id) {
                    a.acked = false;
                }
                return Err(self.paused.clone().unwrap_or_default());
            }
        }
        Ok(true)
    }

    /// Whether writing is paused (the reason).
    #[cfg(test)]
    pub fn paused(&self) -> Option<&str> {
        self.paused.as_deref()
    }

    pub fn enabled(&self) -> bool {
        self.store.is_some()
    }

    /// Bytes written to the history files since start (appends, merges and compactions).
    pub fn bytes_written(&self) -> u64 {
        self.store.as_ref().map_or(0, Store::bytes_written)
    }
}
