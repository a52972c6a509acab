//! Schedules in the kernel on a live router (root, issue 13): the [`Home`] of the name-rule
//! tests (two devices — router with dnsmasq — server), spind running in a time zone that is not
//! the host's (`TZ=Asia/Kolkata`, UTC+5:30, so a window written in local time must be converted
//! right for the kernel's UTC `meta hour`). Windows are chosen around the local time the test
//! reads when it starts: "now" lies an hour inside the one (now-1h..now+1h) and three hours
//! outside the other (now+3h..now+4h), so neither can flip while the test runs, at midnight or
//! not. What the devices see is asserted: curl's downloads and dig's answers.

use std::time::Duration;

use serde_json::json;
use testbed::netns::CLIENT_MAC;
use testbed::runner::{cmd, Shell};
use testbed::{root_or_skip, wait_for};

use crate::names_netns::{Home, DEVICE2_MAC};

/// spind's time zone in these tests.
const ZONE: &str = "Asia/Kolkata";

const DAYS: [&str; 7] = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];

/// The local time in [`ZONE`] as minutes since Monday 00:00.
fn local_week_minute() -> i64 {
    let sh = Shell::new().unwrap();
    let out = cmd!(sh, "date +%u:%H:%M").env("TZ", ZONE).read().unwrap();
    let f: Vec<i64> = out.trim().split(':').map(|x| x.parse().unwrap()).collect();
    (f[0] - 1) * 1440 + f[1] * 60 + f[2]
}

/// A one-window schedule from `from` for `len` minutes (week minutes, local time): the day it
/// starts on and its times; a window may cross midnight.
fn window(from: i64, len: i64) -> String {
    let from = from.rem_euclid(7 * 1440);
    let to = (from + len) % 1440;
    let day = DAYS[(from / 1440) as usize];
    format!("{day} {:02}:{:02}-{:02}:{:02}", from % 1440 / 60, from % 60, to / 60, to % 60)
}

#[test]
fn scheduled_blocks_and_bedtimes_hold_in_the_kernel_inside_their_windows_only() {
    if !root_or_skip("scheduled_blocks_and_bedtimes_hold_in_the_kernel_inside_their_windows_only") {
        return;
    }
    let mut h = Home::with_env(vec![("TZ".into(), ZONE.into())]);
    h.ensure_dns_queue();
    let now = local_week_minute();
    let (inside, outside) = (window(now - 60, 120), window(now + 180, 60));

    // Device 2 resolves both names and downloads from both; spind sees the answers.
    assert_eq!(h.dig(2, "www.example.test", "A"), "198.51.100.10");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20");
    assert!(h.dev2_downloads("http://198.51.100.10/file100k"));
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"));

    // A block whose window holds now cuts the address device 2 holds; one whose window does
    // not hold now does not, but its address is in the kernel already.
    h.call("add_name_rule", json!({"name": "www.example.test", "action": "block", "schedule": inside}));
    h.call("add_name_rule", json!({"name": "other.example.test", "action": "block", "schedule": outside}));
    wait_for("the cached address of the scheduled block to be cut", Duration::from_secs(20), || {
        (!h.dev2_downloads("http://198.51.100.10/file100k")).then_some(())
    });
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"), "outside its window: not cut");
    let table = h.nft_list();
    assert!(table.contains("meta day") && table.contains("jump sched"), "{table}");
    let sets = |ip: &str| table.lines().filter(|l| l.contains(ip) && l.contains("timeout")).count();
    assert_eq!((sets("198.51.100.10"), sets("198.51.100.20")), (1, 1), "both kept, once each: {table}");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20", "the DNS path outside the window");
    assert_eq!(h.dig(2, "www.example.test", "A"), "0.0.0.0", "the DNS path inside the window");

    // A bedtime for device 1 whose window holds now: its internet is cut, the LAN (the
    // router's resolver) stays, and device 2 still reaches the internet.
    assert!(h.dev1_downloads("http://198.51.100.20/file100k"));
    let r = h.rpc("set_device_schedule", json!({"device": CLIENT_MAC, "schedule": inside}));
    assert!(r.get("error").is_none(), "{r}");
    wait_for("device 1's bedtime to cut its internet", Duration::from_secs(20), || {
        (!h.dev1_downloads("http://198.51.100.20/file100k")).then_some(())
    });
    assert_eq!(h.dig(1, "other.example.test", "A"), "198.51.100.20", "the LAN stays reachable");
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"), "the other device still works");

    // A bad schedule is refused, naming the field, and changes nothing.
    let e = h.rpc("set_device_schedule", json!({"device": DEVICE2_MAC, "schedule": "Mo 25:00-26:00"}));
    assert!(e["error"]["message"].as_str().unwrap_or_default().contains("'schedule'"), "{e}");
    let listed = h.call("list_device_schedules", json!({}));
    assert_eq!(listed, json!([{"device": CLIENT_MAC, "schedule": inside}]));
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"));

    // kill -9 of spind: the kernel keeps both schedules.
    h.kill9_spind();
    assert!(!h.dev1_downloads("http://198.51.100.20/file100k"), "the bedtime holds without spind");
    assert!(!h.dev2_downloads("http://198.51.100.10/file100k"), "the scheduled block holds without spind");
    assert!(h.dev2_downloads("http://198.51.100.20/file100k"), "outside its window, still not cut");
}

/// A scheduled allow under a block is an exception the kernel keeps: its window opens (and the
/// device gets through) while spind is stopped. The window starts one to two minutes after the
/// test reads the time, so the test waits for it.
#[test]
fn a_scheduled_allows_window_opens_in_the_kernel_with_spind_stopped() {
    if !root_or_skip("a_scheduled_allows_window_opens_in_the_kernel_with_spind_stopped") {
        return;
    }
    let mut h = Home::with_env(vec![("TZ".into(), ZONE.into())]);
    h.ensure_dns_queue();
    let soon = window(local_week_minute() + 2, 60);

    assert_eq!(h.dig(2, "www.example.test", "A"), "198.51.100.10");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20");
    h.call("add_name_rule", json!({"name": "example.test", "action": "block"}));
    h.call("add_name_rule", json!({"name": "other.example.test", "action": "allow", "schedule": soon}));
    wait_for("both cached addresses to be cut before the allow's window", Duration::from_secs(20), || {
        (!h.dev2_downloads("http://198.51.100.10/file100k") && !h.dev2_downloads("http://198.51.100.20/file100k"))
            .then_some(())
    });
    let table = h.nft_list();
    assert!(table.contains("@asched0_names4 return"), "the exception is the kernel's: {table}");

    h.kill9_spind();
    wait_for("the allow's window to open in the kernel, spind stopped", Duration::from_secs(180), || {
        h.dev2_downloads("http://198.51.100.20/file100k").then_some(())
    });
    assert!(!h.dev2_downloads("http://198.51.100.10/file100k"), "the block of the other name still holds");
}
