//! The history store and its alerts on a temporary directory: batches written and read back,
//! a torn last batch dropped, a corrupt file moved aside, a full disk pausing the history,
//! queries that include the unwritten interval, compaction into daily totals, and the alerts.

use std::fs;
use std::net::IpAddr;

use super::store::{self, Counters, Parsed, Record};
use super::*;

const T0: Timestamp = 1_700_000_000 - 1_700_000_000 % 86_400; // a UTC midnight

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sample(bytes: u64, reply: u64) -> FlowSample {
    FlowSample {
        protocol: 6,
        src: ip("192.168.1.10"),
        dst: ip("93.184.216.34"),
        src_port: 40000,
        dst_port: 443,
        icmp_type: 0,
        bytes,
        packets: 10,
        reply_bytes: reply,
    }
}

fn key(ip: IpAddr) -> String {
    if ip == "93.184.216.34".parse::<IpAddr>().unwrap() {
        "example.com".into()
    } else {
        ip.to_string()
    }
}

const DEV: &str = "02:00:00:00:00:01";

fn open(dir: &std::path::Path, now: Timestamp) -> History {
    History::open(HistorySettings::default(), &dir.join("history"), now)
}

fn record(hour: u32, remote: &str, bytes_in: u64) -> Record {
    Record { hour, device: mac(DEV), remote: remote.into(), counters: Counters { bytes_in, ..Default::default() } }
}

#[test]
fn batches_are_read_back_as_written() {
    let recs = vec![record(5, "example.com", 1 << 40), record(6, "", 7)];
    let mut data = store::batch(&recs);
    data.extend(store::batch(&recs[..1]));
    let Parsed::Ok { records, good } = store::parse(&data) else { panic!("not ok") };
    assert_eq!(good, data.len());
    assert_eq!(records, [recs.clone(), recs[..1].to_vec()].concat());
}

#[test]
fn a_devices_read_keeps_its_records_and_counts_the_bytes_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = store::Store::open(dir.path()).unwrap();
    let path = st.hour_file(1);
    let other = Record { device: mac("02:00:00:00:00:02"), ..record(24, "b", 5) };
    st.append(&path, &[record(24, "a", 1), other.clone(), record(25, "c", 3)]).unwrap();
    assert_eq!(st.read_device(&path, mac(DEV)), vec![record(24, "a", 1), record(25, "c", 3)]);
    assert_eq!(st.read_device(&path, other.device), vec![other]);
    assert!(st.read_device(&path, mac("02:00:00:00:00:03")).is_empty());
    let appended = fs::metadata(&path).unwrap().len();
    assert_eq!(st.bytes_written(), appended);
    st.replace(&path, &[record(24, "a", 1)]).unwrap();
    assert_eq!(st.bytes_written(), appended + fs::metadata(&path).unwrap().len());
}

#[test]
fn a_torn_last_batch_is_ignored_and_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut st = store::Store::open(dir.path()).unwrap();
    let path = st.hour_file(1);
    st.append(&path, &[record(24, "a", 1)]).unwrap();
    let whole = fs::metadata(&path).unwrap().len();
    // A second batch cut off in the middle (kill -9 or a power cut during its write).
    let second = store::batch(&[record(25, "b", 2)]);
    let mut data = fs::read(&path).unwrap();
    data.extend_from_slice(&second[..second.len() - 3]);
    fs::write(&path, &data).unwrap();
    assert_eq!(st.read(&path), vec![record(24, "a", 1)]);
    assert_eq!(fs::metadata(&path).unwrap().len(), whole, "cut back to the last whole batch");
    st.append(&path, &[record(25, "b", 2)]).unwrap();
    assert_eq!(st.read(&path), vec![record(24, "a", 1), record(25, "b", 2)]);
    assert!(st.take_moved_aside().is_empty());
}

#[test]
fn a_corrupt_file_is_moved_aside_with_an_alert_and_a_fresh_one_started() {
    let dir = tempfile::tempdir().unwrap();
    let hist = dir.path().join("history");
    fs::create_dir_all(&hist).unwrap();
    let day = T0 / 86_400;
    let mut data = store::batch(&[record((day * 24) as u32, "a", 1)]);
    data[14] ^= 0xff; // damage the first of two batches
    data.extend(store::batch(&[record((day * 24) as u32, "b", 2)]));
    fs::write(hist.join(format!("hours-{day}.bin")), &data).unwrap();
    let mut h = open(dir.path(), T0 + 10);
    let alerts = h.take_fresh_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "store_corrupt");
    let aside: Vec<String> = fs::read_dir(&hist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside");
    // The history goes on in a fresh file.
    h.flow(T0 + 20, &sample(1000, 600), (Some(mac(DEV)), None), false);
    h.flush(T0 + 100, &key);
    let q = h.query(mac(DEV), T0, T0 + 3600, Resolution::Hour, None, &key);
    assert_eq!(q.len(), 1);
    assert_eq!((q[0].counters.bytes_out, q[0].counters.bytes_in), (400, 600));
}

#[test]
fn queries_include_the_unwritten_interval_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path(), T0);
    let dev = mac(DEV);
    h.flow(T0 + 5, &sample(1000, 700), (Some(dev), None), false);
    h.flow(T0 + 6, &sample(500, 100), (Some(dev), None), false);
    let q = h.query(dev, T0, T0 + 3600, Resolution::Hour, None, &key);
    assert_eq!(q.len(), 1, "the interval not yet written counts");
    let c = q[0].counters;
    assert_eq!((c.bytes_in, c.bytes_out, c.packets, c.connections), (800, 700, 20, 1));
    h.flush(T0 + 60, &key);
    h.flow(T0 + 3700, &sample(10, 0), (Some(dev), None), true);
    h.flush(T0 + 3720, &key);
    drop(h);
    let mut h = open(dir.path(), T0 + 3800);
    let q = h.query(dev, T0, T0 + 7200, Resolution::Hour, None, &key);
    assert_eq!(q.iter().map(|b| b.time).collect::<Vec<_>>(), vec![T0, T0 + 3600]);
    assert_eq!(q[1].counters.blocked, 10);
    let top = h.top(dev, T0, T0 + 7200, &key);
    assert_eq!(top[0].0, "example.com");
    assert_eq!(top[0].1.bytes(), 1500);
    let only = vec!["other.example".to_string()];
    assert!(h.query(dev, T0, T0 + 7200, Resolution::Hour, Some(&only), &key).is_empty());
}

#[test]
fn finished_days_become_daily_totals_and_old_hours_go() {
    let dir = tempfile::tempdir().unwrap();
    let dev = mac(DEV);
    let mut h = open(dir.path(), T0);
    for d in 0..3 {
        h.flow(T0 + d * 86_400 + 100, &sample(1000, 500), (Some(dev), None), false);
        h.flush(T0 + d * 86_400 + 200, &key);
    }
    let days = h.query(dev, T0, T0 + 3 * 86_400, Resolution::Day, None, &key);
    assert_eq!(
        days.iter().map(|b| (b.time, b.counters.bytes())).collect::<Vec<_>>(),
        vec![(T0, 1000), (T0 + 86_400, 1000), (T0 + 2 * 86_400, 1000)]
    );
    let st = fs::read(dir.path().join("history/days.bin")).unwrap();
    let Parsed::Ok { records, .. } = store::parse(&st) else { panic!() };
    assert_eq!(records.len(), 2, "the two finished days");
    // Past the hourly retention the hourly files go, the daily totals stay.
    let settings = HistorySettings { hourly_days: 1, ..Default::default() };
    let mut h = History::open(settings, &dir.path().join("history"), T0 + 5 * 86_400);
    assert!(h.query(dev, T0, T0 + 3 * 86_400, Resolution::Hour, None, &key).is_empty());
    assert_eq!(h.query(dev, T0, T0 + 3 * 86_400, Resolution::Day, None, &key).len(), 3);
}

#[test]
fn a_full_disk_pauses_the_history_and_it_resumes_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let dev = mac(DEV);
    let mut h = open(dir.path(), T0);
    h.flow(T0 + 1, &sample(1000, 0), (Some(dev), None), false);
    h.flush(T0 + 60, &key);
    // A file system that refuses writes: the history directory made read-only stands in for a
    // full disk (root ignores permissions, so a path in the way of the next day's file instead).
    let next_day = dir.path().join(format!("history/hours-{}.bin", T0 / 86_400 + 1));
    fs::create_dir(&next_day).unwrap();
    h.flow(T0 + 86_400 + 1, &sample(2000, 0), (Some(dev), None), false);
    h.flush(T0 + 86_400 + 60, &key);
    assert!(h.paused().is_some(), "paused");
    let q = h.query(dev, T0 + 86_400, T0 + 2 * 86_400, Resolution::Hour, None, &key);
    assert_eq!(q[0].counters.bytes(), 2000, "kept in memory");
    fs::remove_dir(&next_day).unwrap();
    h.flush(T0 + 86_400 + 120, &key);
    assert!(h.paused().is_none(), "resumed");
    drop(h);
    let mut h = open(dir.path(), T0 + 86_400 + 200);
    let q = h.query(dev, T0, T0 + 2 * 86_400, Resolution::Hour, None, &key);
    assert_eq!(q.iter().map(|b| b.counters.bytes()).sum::<u64>(), 3000);
}

#[test]
fn a_new_device_is_announced_once_and_not_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path(), T0);
    h.device_seen(T0, mac(DEV));
    h.device_seen(T0 + 1, mac(DEV));
    let a = h.take_fresh_alerts();
    assert_eq!(a.iter().map(|a| a.kind.as_str()).collect::<Vec<_>>(), ["new_device"]);
    assert_eq!(a[0].device.as_deref(), Some(DEV));
    drop(h);
    let mut h = open(dir.path(), T0 + 10);
    h.device_seen(T0 + 11, mac(DEV));
    assert!(h.take_fresh_alerts().is_empty());
    assert_eq!(h.alerts_since(0).len(), 1);
    assert_eq!(h.ack(a[0].id), Ok(true));
    assert_eq!(h.ack(999), Ok(false));
    drop(h);
    assert!(open(dir.path(), T0 + 20).alerts_since(0)[0].acked, "the ack is saved");
}

#[test]
fn services_peaks_and_blocked_attempts_raise_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let dev = mac(DEV);
    let settings = HistorySettings { learning_days: 1, ..Default::default() };
    let mut h = History::open(settings, &dir.path().join("history"), T0);
    // Two days of 1 MB an hour: learning, no alerts but new_device.
    for hour in 0..48 {
        let t = T0 + hour * 3600;
        h.flow(t + 1, &sample(1_000_000, 0), (Some(dev), None), false);
        h.flush(t + 60, &key);
    }
    assert_eq!(h.take_fresh_alerts().iter().map(|a| a.kind.clone()).collect::<Vec<_>>(), ["new_device"]);
    let t = T0 + 48 * 3600;
    // A new service after the learning period.
    let mut other = sample(1000, 0);
    other.dst = ip("198.51.100.7");
    h.flow(t + 1, &other, (Some(dev), None), false);
    // 200 MB in one hour: a peak (200x the mean).
    h.flow(t + 2, &sample(200_000_000, 0), (Some(dev), None), false);
    // 150 blocked packets.
    for _ in 0..15 {
        h.flow(t + 3, &sample(100, 0), (Some(dev), None), true);
    }
    h.flush(t + 60, &key);
    h.flush(t + 3600 + 60, &key);
    let mut kinds: Vec<String> = h.take_fresh_alerts().into_iter().map(|a| a.kind).collect();
    kinds.sort();
    assert_eq!(kinds, ["blocked_attempts", "new_service", "traffic_peak"]);
}

#[test]
fn records_keep_their_fields_through_merge_and_day_totals() {
    let a = record(30, "x", 5);
    let merged = store::merge(vec![a.clone(), a.clone(), record(31, "x", 1)]);
    assert_eq!(merged[0].counters.bytes_in, 10);
    let totals = store::day_totals(&merged);
    assert_eq!(totals, vec![Record { hour: 24, remote: String::new(), ..record(24, "", 11) }]);
}

/// Disk figures for the README: 50 devices with 20 remotes each, active every minute of an
/// hour, written once a minute; then merged at the hour.
#[test]
fn the_current_day_is_merged_every_hour_to_one_record_per_device_remote_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = open(dir.path(), T0);
    let names = |ip: IpAddr| format!("service-{}.example-cdn.com", ip.to_string().rsplit('.').next().unwrap());
    let file = dir.path().join(format!("history/hours-{}.bin", T0 / 86_400));
    let mut written = 0;
    for minute in 0..60 {
        let t = T0 + minute * 60;
        for d in 0..50u8 {
            for r in 0..20u8 {
                let mut s = sample(150_000, 140_000);
                s.src = IpAddr::from([192, 168, 1, d]);
                s.dst = IpAddr::from([203, 0, 113, r]);
                h.flow(t + 1, &s, (Some(MacAddr([2, 0, 0, 0, 0, d])), None), false);
            }
        }
        let before = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        h.flush(t + 59, &names);
        written += fs::metadata(&file).unwrap().len() - before;
    }
    let unmerged = fs::metadata(&file).unwrap().len();
    h.flush(T0 + 3600 + 30, &names);
    let merged = fs::metadata(&file).unwrap().len();
    let Parsed::Ok { records, .. } = store::parse(&fs::read(&file).unwrap()) else { panic!() };
    assert_eq!(records.len(), 50 * 20);
    eprintln!(
        "one hour, 1,000 device-remote pairs: {written} bytes appended, file {unmerged} -> {merged} bytes merged"
    );
    assert!(merged * 30 < unmerged, "{merged} vs {unmerged}");
}
