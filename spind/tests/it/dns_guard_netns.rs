//! No way around the router's DNS, and pausing a device (root, issue 13), in the namespaces of
//! `names_netns` (two devices, a real dnsmasq on the router forwarding to the server's): a
//! device that asks an outside resolver by address gets the router's answers (and its name
//! rules), DoT to the internet is refused, the shipped DoH names are blocked, each switchable;
//! a paused device reaches nothing outside until its time passes or it is unpaused, also with
//! spind killed and after a restart.

use std::time::Duration;

use serde_json::json;
use testbed::netns::CLIENT_MAC;
use testbed::runner::{cmd, Shell, Stream};
use testbed::{root_or_skip, wait_for};

use crate::names_netns::{Home, DEVICE2_MAC};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// curl's exit status from device 1 (`0` downloaded, `7` connection refused, `28` timed out).
fn curl_status(h: &Home, url: &str) -> i32 {
    let out = h.topo.client_cmd(&["curl", "-s", "-o", "/dev/null", "--max-time", "3", url]);
    out.status.code().unwrap_or(-1)
}

fn table_has(h: &Home, what: &str) -> String {
    wait_for(&format!("'{what}' in table inet spin"), Duration::from_secs(30), || {
        let t = h.nft_list();
        t.contains(what).then_some(t)
    })
}

/// The rule commented `rule` has matched (counters start again with each new table).
fn counted(h: &Home, rule: &str) {
    let table = h.nft_list();
    let line = table.lines().find(|l| l.contains(rule)).unwrap_or_else(|| panic!("no {rule}: {table}"));
    assert!(!line.contains("packets 0 "), "{line}");
}

#[test]
fn a_hard_coded_resolver_gets_the_routers_answers_dot_is_refused_and_doh_names_are_blocked() {
    if !root_or_skip("a_hard_coded_resolver_gets_the_routers_answers_dot_is_refused_and_doh_names_are_blocked") {
        return;
    }
    let mut h = Home::new();
    // The queue before the redirect, where spind's own rule sits (this kernel may lack nft_queue).
    h.ensure_dns_queue_at("mangle", "PREROUTING");
    let table = table_has(&h, "dns-redirect");
    assert!(table.contains("elements = { \"wan0\" }"), "the WAN from the default route: {table}");
    // A DoT server on the internet (a plain TCP listener on 853), reachable from the router.
    let (shell, server) = (Shell::new().unwrap(), h.topo.server.clone());
    let mut dot = cmd!(shell, "ip netns exec {server} python3 -m http.server 853 --bind 198.51.100.20")
        .spawn(Stream::Null, Stream::Null)
        .unwrap();
    let router = h.topo.router.clone();
    wait_for("the DoT stand-in on the server", Duration::from_secs(20), || {
        cmd!(shell, "ip netns exec {router} curl -s -o /dev/null --max-time 2 http://198.51.100.20:853/")
            .succeeds()
            .ok()?
            .then_some(())
    });

    // tracker.test exists only in the router's resolver: the server's says NXDOMAIN. Asked of the
    // server's address, the answer is the router's.
    assert_eq!(h.dig_at(1, "@198.51.100.10", "tracker.test", "A"), "198.51.100.30", "redirected");
    assert_eq!(h.dig_at(2, "@198.51.100.10", "tracker.test", "A"), "198.51.100.30", "from the other LAN too");
    counted(&h, "dns-redirect");
    // So a blocked name stays blocked, answered from the address the device asked.
    h.call("add_name_rule", json!({"name": "example.test", "action": "block", "devices": [CLIENT_MAC]}));
    assert_eq!(h.dig_at(1, "@198.51.100.10", "www.example.test", "A"), "0.0.0.0");
    assert_eq!(h.dig_at(2, "@198.51.100.10", "www.example.test", "A"), "198.51.100.10");
    // Over TCP too (the redirect is for both).
    let (shell, client) = (Shell::new().unwrap(), h.topo.client.clone());
    let tcp = cmd!(shell, "ip netns exec {client} dig +short +tcp +time=2 +tries=1 @198.51.100.10 tracker.test A")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&tcp.stdout).trim(), "198.51.100.30");

    // DoT from the LAN is refused at once (a reset, not a timeout); the web is not.
    assert_eq!(curl_status(&h, "http://198.51.100.20:853/"), 7, "connection refused");
    counted(&h, "dot-refuse");
    assert_eq!(curl_status(&h, "http://198.51.100.20/file100k"), 0);

    // The shipped DoH names (and everything below them) are blocked for every device.
    assert_eq!(h.dig(1, "dns.google", "A"), "0.0.0.0");
    assert_eq!(h.dig(2, "mozilla.cloudflare-dns.com", "AAAA"), "::");
    assert_eq!(h.dig_at(2, "@198.51.100.10", "dns.quad9.net", "A"), "0.0.0.0", "also through the redirect");
    // An allow rule beats the shipped block.
    h.call("add_name_rule", json!({"name": "dns.google", "action": "allow", "devices": [DEVICE2_MAC]}));
    assert_ne!(h.dig(2, "dns.google", "A"), "0.0.0.0");
    assert_eq!(h.dig(1, "dns.google", "A"), "0.0.0.0");

    // Each can be switched off. (And a blocklist file, in hosts and adblock lines, blocks its
    // names for every device; its counts are in list_blocklists.)
    h.kill9_spind();
    let list = h.state.path().join("ads.hosts");
    std::fs::write(&list, "# ads\n0.0.0.0 ads.test\n||track.test^\nnot a name\n0.0.0.0 ads.test\n").unwrap();
    h.config = vec![
        "dns_redirect = 0".into(),
        "dot_refuse = 0".into(),
        "doh_block = 0".into(),
        format!("blocklist_files = {}", list.display()),
    ];
    h.start_spind();
    let counts = h.call("list_blocklists", json!({}));
    assert_eq!(counts["names"], 2, "{counts}");
    assert_eq!((counts["lists"][0]["skipped"].as_u64(), counts["lists"][0]["duplicates"].as_u64()), (Some(1), Some(1)));
    assert_eq!(h.dig(2, "www.ads.test", "A"), "0.0.0.0");
    assert_eq!(h.dig(1, "track.test", "AAAA"), "::");
    let table = table_has(&h, "chain forward");
    assert!(!table.contains("dns-redirect") && !table.contains("dot-refuse"), "{table}");
    assert_eq!(h.dig_at(2, "@198.51.100.10", "tracker.test", "A"), "", "the server's own answer (NXDOMAIN)");
    assert_eq!(curl_status(&h, "http://198.51.100.20:853/"), 0);
    assert_ne!(h.dig(1, "dns.google", "A"), "0.0.0.0");
    let _ = dot.kill();
    let _ = dot.wait();
}

#[test]
fn a_paused_device_reaches_nothing_outside_until_its_time_or_unpause_also_without_spind() {
    if !root_or_skip("a_paused_device_reaches_nothing_outside_until_its_time_or_unpause_also_without_spind") {
        return;
    }
    let mut h = Home::new();
    assert!(h.dev1_downloads("http://198.51.100.10/file100k"));

    // A short pause: device 1 is cut from the internet, not from the router; device 2 is not cut.
    let until = now() + 12;
    let r = h.rpc("pause_device", json!({"device": CLIENT_MAC, "until": until}));
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(h.call("list_paused_devices", json!({})), json!([{"device": CLIENT_MAC, "until": until}]));
    assert!(!h.dev1_downloads("http://198.51.100.10/file100k"), "paused");
    assert_eq!(h.dig(1, "www.example.test", "A"), "198.51.100.10", "the router still answers");
    assert!(h.dev2_downloads("http://198.51.100.10/file100k"), "the other device is not paused");
    assert!(h.nft_list().contains(&format!("{CLIENT_MAC} timeout")));
    // It ends by itself.
    wait_for("the pause to end", Duration::from_secs(60), || {
        (now() > until && h.dev1_downloads("http://198.51.100.10/file100k")).then_some(())
    });
    wait_for("the ended pause to leave the list", Duration::from_secs(10), || {
        (h.call("list_paused_devices", json!({})) == json!([])).then_some(())
    });

    // A long pause holds with spind killed (the kernel's set) and after a restart (the file).
    let until = now() + 3600;
    h.call("pause_device", json!({"device": CLIENT_MAC, "until": until}));
    assert!(!h.dev1_downloads("http://198.51.100.10/file100k"));
    h.kill9_spind();
    assert!(!h.dev1_downloads("http://198.51.100.10/file100k"), "the kernel holds the pause");
    assert!(std::fs::read_to_string(h.state.path().join("paused.list")).unwrap().contains(CLIENT_MAC));
    h.start_spind();
    assert_eq!(h.call("list_paused_devices", json!({})), json!([{"device": CLIENT_MAC, "until": until}]));
    assert!(!h.dev1_downloads("http://198.51.100.10/file100k"), "still paused after the restart");
    // Bad input names the field.
    let e = h.rpc("pause_device", json!({"device": "nope", "until": until}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'device'"), "{e}");
    // Unpaused: the internet is back.
    let r = h.rpc("unpause_device", json!({"device": CLIENT_MAC}));
    assert!(r.get("error").is_none(), "{r}");
    wait_for("the internet after unpause", Duration::from_secs(20), || {
        h.dev1_downloads("http://198.51.100.10/file100k").then_some(())
    });
}
