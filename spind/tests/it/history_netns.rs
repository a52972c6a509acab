//! The per-device history on a live router (root): a namespace device downloads through the
//! router, and `get_history` reports its bytes (within 5%, conntrack counts whole IP packets),
//! also after a restart (the shutdown writes the last interval) and after kill -9 once a batch
//! is on disk; `top_services` names the server, the export serves CSV, and `new_device` is
//! raised once for the device and not again after the restarts.

use std::time::Duration;

use serde_json::{json, Value};
use testbed::netns::CLIENT_MAC;
use testbed::{root_or_skip, wait_for};

use crate::router_netns::Router;

const FILE: u64 = 1_048_576;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The device's bytes received over the last and next day, by hour.
fn bytes_in(r: &Router) -> u64 {
    let t = now();
    let rows = r
        .call("get_history", json!({"device": CLIENT_MAC, "from": t - 86_400, "to": t + 86_400, "resolution": "hour"}));
    rows.as_array().unwrap().iter().map(|b| b["bytes_in"].as_u64().unwrap()).sum()
}

/// Waits until the history has at least `want` bytes in, and returns what it has.
fn wait_bytes_in(r: &Router, want: u64) -> u64 {
    wait_for(&format!("{want} bytes in the device's history"), Duration::from_secs(30), || {
        let b = bytes_in(r);
        (b >= want).then_some(b)
    })
}

fn within_5_percent(got: u64, want: u64, what: &str) {
    let (lo, hi) = (want, want + want / 20);
    eprintln!("{what}: {got} bytes in the history for {want} bytes downloaded");
    assert!((lo..=hi).contains(&got), "{what}: {got} bytes in the history, the downloads were {want}");
}

/// The total size of the hourly history files.
fn hour_files_size(r: &Router) -> u64 {
    std::fs::read_dir(r.state.path().join("history"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("hours-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn new_device_alerts(r: &Router) -> Vec<Value> {
    let alerts = r.call("list_alerts", json!({"since": 0}));
    alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "new_device" && a["device"] == CLIENT_MAC)
        .cloned()
        .collect()
}

#[test]
fn history_of_a_download_survives_a_restart_and_a_kill() {
    if !root_or_skip("history_of_a_download_survives_a_restart_and_a_kill") {
        return;
    }
    let mut r = Router::new();
    assert_eq!(r.topo.dig("www.example.test", "A"), "198.51.100.10");
    assert_eq!(r.topo.curl("http://198.51.100.10/file1m", "10"), Some(FILE));
    // Counted while still in memory (not yet written).
    within_5_percent(wait_bytes_in(&r, FILE), FILE, "before any write");
    let top = r.call("top_services", json!({"device": CLIENT_MAC, "from": now() - 86_400, "to": now() + 86_400}));
    assert_eq!(top[0]["name"], "www.example.test", "{top}");
    assert!(top[0]["node"].is_u64(), "{top}");

    // A clean restart: the shutdown writes the interval.
    r.spind.as_mut().unwrap().terminate();
    r.spind = None;
    r.start_spind();
    within_5_percent(bytes_in(&r), FILE, "after a restart");

    // A second download, written by the minute's batch, then kill -9.
    assert_eq!(r.topo.curl("http://198.51.100.10/file1m", "10"), Some(FILE));
    wait_bytes_in(&r, 2 * FILE);
    // Any batch written after this point holds the download (it is in memory now); a DNS query
    // makes sure there is one to write.
    let before = hour_files_size(&r);
    r.topo.dig("www.example.test", "A");
    wait_for("the next batch on disk", Duration::from_secs(150), || (hour_files_size(&r) > before).then_some(()));
    r.kill_spind();
    r.start_spind();
    within_5_percent(bytes_in(&r), 2 * FILE, "after kill -9");

    // The export has the same hours.
    let port = r.port();
    let path = format!("/spin_api/export?device={CLIENT_MAC}&from={}&to={}&format=csv", now() - 86_400, now() + 86_400);
    let (status, csv) = r.topo.in_router(move || testbed::http::http_request(port, "GET", &path, b""));
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("time,bytes_in,bytes_out,packets,connections,blocked\n"), "{csv}");
    let exported: u64 = csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse::<u64>().unwrap()).sum();
    within_5_percent(exported, 2 * FILE, "exported");

    // The device was new once, and is not new again after a restart or a kill.
    assert_eq!(new_device_alerts(&r).len(), 1, "{:?}", new_device_alerts(&r));
}
