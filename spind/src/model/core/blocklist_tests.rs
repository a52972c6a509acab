//! The household's blocklists through JSON-RPC against a real core on a temporary state
//! directory: checks that name the field and change nothing, what the fetcher is told, lists
//! per device on the verdict and flow paths, today's counts, a failed refresh keeping the
//! previous copy, and a restart with the cached copies.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::blocklist::{ListCounts, NameSet};
use crate::model::core::testutil::core_in;
use crate::model::core::{Core, CoreSettings};
use crate::model::event::{DnsData, DnsRecord, Event};
use crate::model::listsources::{cache_file, FetchQueue, Fetched};
use crate::model::policy::NameVerdict;
use crate::model::rpc::{handle, Host};

const HOST: Host = Host { own_addresses: Vec::new, wifi: None };
const KID: [u8; 6] = [2, 0, 0, 0, 0, 0x64];
const KID_MAC: &str = "02:00:00:00:00:64";
const OTHER: [u8; 6] = [2, 0, 0, 0, 0, 0xc2];

fn call(core: &mut Core, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut out = Vec::new();
    serde_json::from_str(&handle(core, &req, &HOST, &mut out).unwrap()).unwrap()
}

fn fetched(names: &[&str]) -> Result<Fetched, String> {
    let set: NameSet = names.iter().map(|n| n.as_bytes().into()).collect();
    Ok(Fetched { names: Arc::new(set), counts: ListCounts { names: names.len(), ..Default::default() } })
}

fn feed(core: &mut Core, ev: Event) {
    let mut out = Vec::new();
    core.handle(ev, &mut out);
}

#[test]
fn a_per_device_url_list_blocks_for_its_device_is_counted_survives_a_failed_refresh_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let queue = Arc::new(FetchQueue::default());
    core.set_fetcher(queue.clone());
    let next = || queue.wait(Duration::ZERO);
    assert_eq!(next().unwrap().jobs, [], "told the (empty) lists at once");

    // Bad input names the field and changes nothing.
    for (params, field) in [
        (json!({"url": "ftp://lists.test/l"}), "'url'"),
        (json!({}), "'url'"),
        (json!({"url": "http://lists.test/l", "file": "/l"}), "'url'"),
        (json!({"file": "l.txt"}), "'file'"),
        (json!({"url": "http://lists.test/l", "devices": ["02:00:00:00:00"]}), "'devices'"),
        (json!({"url": "http://lists.test/l", "devices": "02:00:00:00:00:64"}), "'devices'"),
        (json!({"url": "http://lists.test/l", "name": 5}), "'name'"),
        (json!({"url": "http://lists.test/l", "colour": "red"}), "'colour'"),
    ] {
        let e = call(&mut core, "add_blocklist", params.clone());
        assert!(e["error"]["message"].as_str().unwrap().contains(field), "{params}: {e}");
    }
    assert_eq!(call(&mut core, "list_blocklists", json!({}))["result"]["lists"], json!([]));
    assert!(!dir.path().join("blocklists.json").exists());
    assert!(next().is_none(), "nothing to fetch");

    let r = call(
        &mut core,
        "add_blocklist",
        json!({"url": "http://lists.test/kids.txt", "devices": [KID_MAC], "name": "kids"}),
    );
    assert_eq!(r["result"], json!({"id": 1}));
    let req = next().unwrap();
    assert_eq!((req.jobs.len(), req.now.as_slice()), (1, &[1][..]), "fetched at once");
    let e = call(&mut core, "add_blocklist", json!({"url": "http://lists.test/kids.txt", "devices": [KID_MAC]}));
    assert!(e["error"]["message"].as_str().unwrap().contains("already blocklist 1"), "{e}");

    // The download arrives: the list blocks for its device only.
    feed(&mut core, Event::BlocklistFetched { id: 1, outcome: fetched(&["games.test"]) });
    assert_eq!(core.matcher.decide_counted(b"www.games.test", Some(KID)), Some(NameVerdict::Block));
    assert_eq!(core.matcher.decide_counted(b"www.games.test", Some(OTHER)), None);
    assert_eq!(core.matcher.decide_counted(b"games.test", Some(KID)), Some(NameVerdict::Block));
    let l = call(&mut core, "list_blocklists", json!({}))["result"].clone();
    assert_eq!((l["names"].as_u64(), l["blocked_today"].as_u64()), (Some(1), Some(2)));
    let entry = &l["lists"][0];
    assert_eq!(entry["id"], 1);
    assert_eq!(entry["url"], "http://lists.test/kids.txt");
    assert_eq!(entry["devices"], json!([KID_MAC]));
    assert_eq!(entry["name"], "kids");
    assert_eq!((entry["blocked_today"].as_u64(), entry["updated"].as_i64()), (Some(2), Some(core.now)));

    // The flow path too: an address the listed name resolved to is cut for that device.
    let answer = Event::DnsAnswer {
        time: 1001,
        qname: "www.games.test.".into(),
        records: vec![DnsRecord {
            owner: "www.games.test.".into(),
            ttl: 60,
            data: DnsData::Addr("198.51.100.7".parse().unwrap()),
        }],
    };
    feed(&mut core, answer);
    let blocks = core.name_blocks(&core.matcher);
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!((blocks[0].device, blocks[0].ip.to_string()), (Some(KID), "198.51.100.7".to_string()));

    // A user's allow still beats the list.
    call(&mut core, "add_name_rule", json!({"name": "ok.games.test", "action": "allow"}));
    assert_eq!(core.matcher.decide(b"ok.games.test", Some(KID)), Some(NameVerdict::Allow));

    // A failed refresh: the previous copy stays in force and the error is shown.
    assert_eq!(call(&mut core, "refresh_blocklists", json!({}))["result"], Value::Null);
    assert_eq!(next().unwrap().now, [1]);
    feed(&mut core, Event::BlocklistFetched { id: 1, outcome: Err("curl failed (exit 22): curl: (22) 404".into()) });
    assert_eq!(core.matcher.decide(b"games.test", Some(KID)), Some(NameVerdict::Block));
    let entry = call(&mut core, "list_blocklists", json!({}))["result"]["lists"][0].clone();
    assert_eq!(entry["error"], "curl failed (exit 22): curl: (22) 404");
    assert_eq!(entry["updated"].as_i64(), Some(1000), "the last good download's time");

    // Restarted with the fetcher's cached copy: the list holds without network.
    std::fs::create_dir_all(dir.path().join("blocklists")).unwrap();
    std::fs::write(cache_file(&dir.path().join("blocklists"), 1), "0.0.0.0 games.test\n").unwrap();
    drop(core);
    let mut core = core_in(dir.path(), CoreSettings::default());
    assert_eq!(core.matcher.decide(b"games.test", Some(KID)), Some(NameVerdict::Block));
    assert_eq!(core.matcher.decide(b"games.test", Some(OTHER)), None);
    let entry = call(&mut core, "list_blocklists", json!({}))["result"]["lists"][0].clone();
    assert_eq!(
        (entry["names"].as_u64(), entry["error"].as_str()),
        (Some(1), Some("curl failed (exit 22): curl: (22) 404"))
    );

    // Removed: gone from the matcher, the listing, the file and the cache; an unknown id fails.
    assert!(call(&mut core, "remove_blocklist", json!({"id": 1}))["error"].is_null());
    assert_eq!(core.matcher.decide(b"games.test", Some(KID)), None);
    assert!(!cache_file(&dir.path().join("blocklists"), 1).exists());
    let e = call(&mut core, "remove_blocklist", json!({"id": 1}));
    assert!(e["error"]["message"].as_str().unwrap().contains("'id'"), "{e}");
    let core = core_in(dir.path(), CoreSettings::default());
    assert_eq!(core.op_list_blocklists()["lists"], json!([]));
}

#[test]
fn a_network_wide_file_list_beside_the_config_files_and_midnight_resets_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: NameSet = ["cfg.test".as_bytes().into()].into_iter().collect();
    let settings = CoreSettings {
        blocklists: vec![(
            Arc::new(cfg),
            ListCounts { file: "/etc/spin/ads.txt".into(), names: 1, ..Default::default() },
        )],
        ..CoreSettings::default()
    };
    let mut core = core_in(dir.path(), settings);
    let r = call(&mut core, "add_blocklist", json!({"file": "/srv/lists/home.txt"}));
    assert_eq!(r["result"], json!({"id": 1}));
    feed(&mut core, Event::BlocklistFetched { id: 1, outcome: fetched(&["home.test"]) });
    for (q, dev) in [("cfg.test", Some(KID)), ("a.home.test", Some(OTHER)), ("home.test", None)] {
        assert_eq!(core.matcher.decide_counted(q.as_bytes(), dev), Some(NameVerdict::Block), "{q}");
    }
    let l = core.op_list_blocklists();
    assert_eq!((l["names"].as_u64(), l["blocked_today"].as_u64()), (Some(2), Some(3)));
    assert_eq!(
        (l["lists"][0]["file"].as_str(), l["lists"][0]["blocked_today"].as_u64()),
        (Some("/etc/spin/ads.txt"), Some(1))
    );
    assert_eq!(
        (l["lists"][1]["file"].as_str(), l["lists"][1]["blocked_today"].as_u64()),
        (Some("/srv/lists/home.txt"), Some(2))
    );
    assert!(l["lists"][1].get("devices").is_none());
    // The day changes (UTC in tests): the counts start again.
    feed(&mut core, Event::Tick { time: 1001 });
    feed(&mut core, Event::Tick { time: 86_400 + 10 });
    let l = core.op_list_blocklists();
    assert_eq!((l["blocked_today"].as_u64(), l["lists"][1]["blocked_today"].as_u64()), (Some(0), Some(0)));
    assert_eq!(core.matcher.decide_counted(b"home.test", None), Some(NameVerdict::Block));
    assert_eq!(core.op_list_blocklists()["blocked_today"].as_u64(), Some(1));
}

#[test]
fn replay_counts_the_queries_its_lists_would_have_blocked_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings { simulate_blocking: true, ..CoreSettings::default() });
    call(&mut core, "add_blocklist", json!({"url": "https://lists.test/kids.txt", "devices": [KID_MAC]}));
    feed(&mut core, Event::BlocklistFetched { id: 1, outcome: fetched(&["games.test"]) });
    let kid: std::net::IpAddr = "192.168.8.100".parse().unwrap();
    let other: std::net::IpAddr = "192.168.8.101".parse().unwrap();
    feed(&mut core, Event::Neighbour { time: 1001, ip: kid, mac: crate::model::event::MacAddr(KID) });
    feed(&mut core, Event::Neighbour { time: 1001, ip: other, mac: crate::model::event::MacAddr(OTHER) });
    for client in [kid, other, kid] {
        feed(&mut core, Event::DnsQuery { time: 1002, client, qname: "WWW.Games.test.".into() });
    }
    feed(&mut core, Event::DnsQuery { time: 1002, client: kid, qname: "school.test.".into() });
    let l = core.op_list_blocklists();
    assert_eq!((l["blocked_today"].as_u64(), l["lists"][0]["blocked_today"].as_u64()), (Some(2), Some(2)));
}
