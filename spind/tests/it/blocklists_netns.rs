//! The household's blocklists on a live router (root, issue 13): the home of `names_netns`
//! (two devices, a real dnsmasq on the router, spind judging DNS through NFQUEUE) with the list
//! served by the server namespace's real HTTP server and downloaded by spind's fetch command
//! (curl). What the devices see is asserted: dig's answers.

use std::time::Duration;

use serde_json::{json, Value};
use testbed::netns::CLIENT_MAC;
use testbed::{root_or_skip, wait_for};

use crate::names_netns::Home;

/// Where the server's HTTP server serves the list from, and its URL.
const LIST_FILE: &str = "kids-list.txt";
const LIST_URL: &str = "http://198.51.100.10/kids-list.txt";

fn list_entry(h: &Home) -> Value {
    h.call("list_blocklists", json!({}))["lists"][0].clone()
}

#[test]
fn a_url_list_for_one_device_blocks_its_names_refreshes_keeps_its_copy_and_holds_after_a_restart() {
    if !root_or_skip("a_url_list_for_one_device_blocks_its_names_refreshes_keeps_its_copy_and_holds_after_a_restart") {
        return;
    }
    let mut h = Home::new();
    h.ensure_dns_queue();
    let served = h.topo.work.path().join("www").join(LIST_FILE);
    std::fs::write(&served, "# the kids' list\n0.0.0.0 www.example.test\nnot a name here\n").unwrap();

    // Bad input names the field and changes nothing.
    let e = h.rpc("add_blocklist", json!({"url": "ftp://198.51.100.10/x", "devices": [CLIENT_MAC]}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'url'"), "{e}");
    let e = h.rpc("add_blocklist", json!({"url": LIST_URL, "devices": ["not-a-mac"]}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'devices'"), "{e}");
    assert_eq!(h.call("list_blocklists", json!({}))["lists"], json!([]));

    let r = h.call("add_blocklist", json!({"url": LIST_URL, "devices": [CLIENT_MAC], "name": "kids"}));
    assert_eq!(r, json!({"id": 1}));
    let entry = wait_for("the list's first download", Duration::from_secs(60), || {
        let e = list_entry(&h);
        e["updated"].is_i64().then_some(e)
    });
    assert_eq!((entry["names"].as_u64(), entry["skipped"].as_u64()), (Some(1), Some(1)), "{entry}");
    assert_eq!(entry["devices"], json!([CLIENT_MAC]));
    let mut seen_blocked = 0;
    let mut dig1 = |h: &Home, name: &str| {
        let a = h.dig(1, name, "A");
        if a == "0.0.0.0" {
            seen_blocked += 1;
        }
        a
    };
    assert_eq!(dig1(&h, "www.example.test"), "0.0.0.0", "the listed name, for the list's device");
    assert_eq!(h.dig(2, "www.example.test", "A"), "198.51.100.10", "the other device still resolves it");
    assert_eq!(dig1(&h, "other.example.test"), "198.51.100.20", "a name the list does not have");

    // The served list changes: after a refresh the new name is blocked, the dropped one not.
    std::fs::write(&served, "||other.example.test^\n").unwrap();
    assert_eq!(h.call("refresh_blocklists", json!({})), Value::Null);
    wait_for("the refreshed list to block the new name", Duration::from_secs(60), || {
        (dig1(&h, "other.example.test") == "0.0.0.0").then_some(())
    });
    assert_eq!(dig1(&h, "www.example.test"), "198.51.100.10", "dropped from the list");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20");

    // The server fails (the list is gone: 404): the old copy stays in force, the error shows.
    std::fs::remove_file(&served).unwrap();
    h.call("refresh_blocklists", json!({}));
    let entry = wait_for("the failed refresh's error", Duration::from_secs(60), || {
        let e = list_entry(&h);
        e["error"].is_string().then_some(e)
    });
    assert!(entry["error"].as_str().unwrap().contains("curl"), "{entry}");
    assert_eq!(entry["names"].as_u64(), Some(1));
    assert_eq!(dig1(&h, "other.example.test"), "0.0.0.0", "the previous copy is still in force");

    // Today's blocks: only the list blocked, so its count is the whole count, and every blocked
    // answer a device saw is in it.
    let all = h.call("list_blocklists", json!({}));
    let (total, of_list) = (all["blocked_today"].as_u64().unwrap(), all["lists"][0]["blocked_today"].as_u64().unwrap());
    assert_eq!(total, of_list, "{all}");
    assert!(of_list >= seen_blocked, "{of_list} counted, {seen_blocked} seen: {all}");

    // Restarted with the server out of reach: the cached copy holds, the fetch failure shows.
    h.kill9_spind();
    h.topo.nft_router(
        "table inet lists_test {\n\tchain out {\n\t\ttype filter hook output priority 0; policy accept;\n\t\t\
         ip daddr 198.51.100.10 tcp dport 80 reject with tcp reset\n\t}\n}\n",
    );
    h.start_spind();
    h.ensure_dns_queue();
    assert_eq!(h.dig(1, "other.example.test", "A"), "0.0.0.0", "the list holds without network");
    assert_eq!(h.dig(2, "other.example.test", "A"), "198.51.100.20");
    let before = list_entry(&h)["error"].clone();
    h.call("refresh_blocklists", json!({}));
    let entry = wait_for("the unreachable server's error", Duration::from_secs(60), || {
        let e = list_entry(&h);
        (e["error"].is_string() && e["error"] != before).then_some(e)
    });
    assert_eq!(entry["names"].as_u64(), Some(1), "{entry}");
    assert_eq!(h.dig(1, "other.example.test", "A"), "0.0.0.0");
    assert!(h.call("list_blocklists", json!({}))["lists"][0]["blocked_today"].as_u64().unwrap() >= 2);
}
