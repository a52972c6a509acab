//! What devices say they are (issue 14), through the real binary: a vendor file made by the
//! xtask generator from the real IEEE registry (ieee-data's oui.txt) as `oui_file`, devices
//! arriving over extsrc, and `list_devices`/`set_device_type` over HTTP JSON-RPC, across a
//! restart.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::spind;
use crate::extsrc_input::message;

const OUI_TXT: &str = "/usr/share/ieee-data/oui.txt";

fn arp(mac: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 36];
    p[..mac.len()].copy_from_slice(mac.as_bytes());
    p[18] = 4;
    p[19] = 32;
    p[32..36].copy_from_slice(&ip);
    message(4, &p)
}

/// The first registered OUI of the file that is not locally administered, and its vendor as
/// the generator shortens it.
fn first_registered(text: &str) -> ([u8; 3], String) {
    let entries = imagebuild::oui::parse_oui_txt(text);
    let first_line = text.lines().find(|l| l.contains("(hex)")).expect("a (hex) line in oui.txt");
    let hex: Vec<u8> =
        first_line.split_whitespace().next().unwrap().split('-').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    let oui = [hex[0], hex[1], hex[2]];
    let oui = if oui[0] & 0x02 == 0 { oui } else { *entries.keys().find(|o| o[0] & 0x03 == 0).unwrap() };
    (oui, entries[&oui].clone())
}

fn start(state: &Path, oui_file: &Path, sock: &Path) -> testbed::spind::Spind {
    let _ = std::fs::remove_file(sock);
    let s = spind()
        .state_dir(state)
        .config_line(&format!("oui_file = {}", oui_file.display()))
        .arg("-P")
        .arg("-e")
        .arg(sock.to_str().unwrap())
        .start();
    testbed::wait_for("the extsrc socket", Duration::from_secs(10), || sock.exists().then_some(()));
    s
}

/// Sends the devices until both are listed, and returns them by MAC.
fn devices(s: &testbed::spind::Spind, sock: &Path, macs: &[(&str, [u8; 4])]) -> Vec<Value> {
    let out = UnixDatagram::unbound().unwrap();
    testbed::wait_for("the devices in list_devices", Duration::from_secs(20), || {
        for (mac, ip) in macs {
            out.send_to(&arp(mac, *ip), sock).unwrap();
        }
        let list = s.call("list_devices", json!({}));
        let found: Vec<Value> = macs
            .iter()
            .filter_map(|(mac, _)| list.as_array().unwrap().iter().find(|d| d["mac"] == *mac).cloned())
            .collect();
        (found.len() == macs.len()).then_some(found)
    })
}

#[test]
fn a_registered_oui_shows_its_vendor_a_random_mac_is_flagged_and_a_type_sticks() {
    let text = match std::fs::read(OUI_TXT) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) => {
            assert!(std::env::var("CI").is_err(), "{OUI_TXT}: {e} (cargo xtask setup installs ieee-data)");
            eprintln!("skipped: {OUI_TXT}: {e} (apt-get install ieee-data)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let oui_file = dir.path().join("oui.bin");
    std::fs::write(&oui_file, imagebuild::oui::generate(&text).unwrap()).unwrap();
    let (oui, vendor) = first_registered(&text);
    let known = format!("{:02x}:{:02x}:{:02x}:10:20:30", oui[0], oui[1], oui[2]);
    // The same OUI bytes with the locally administered bit: made up, so no vendor.
    let random = format!("{:02x}:{:02x}:{:02x}:10:20:31", oui[0] | 0x02, oui[1], oui[2]);
    let state = dir.path().join("state");
    let sock = dir.path().join("extsrc.sock");
    let macs = [(known.as_str(), [192, 168, 1, 50]), (random.as_str(), [192, 168, 1, 51])];

    let mut s = start(&state, &oui_file, &sock);
    let found = devices(&s, &sock, &macs);
    let (k, r) = (&found[0], &found[1]);
    assert_eq!(k["vendor"], vendor.as_str(), "{k}");
    assert_eq!(k["random_mac"], false);
    assert_eq!(r["vendor"], Value::Null, "{r}");
    assert_eq!(r["random_mac"], true);
    // SPIN's fields are still there, as they were.
    for key in ["id", "mac", "lastseen", "ips", "domains"] {
        assert!(k.get(key).is_some(), "{key} missing from {k}");
    }
    let data = s.call("get_device_data", json!({ "node": k["id"] }));
    assert_eq!(data["vendor"], vendor.as_str());

    let bad = s.rpc("set_device_type", json!({"device": known, "type": "toaster"}));
    assert!(bad["error"]["message"].as_str().unwrap().contains("'type'"), "{bad}");
    assert_eq!(s.rpc("set_device_type", json!({"device": known, "type": "printer"}))["error"], Value::Null);
    let k = &devices(&s, &sock, &macs)[0];
    assert_eq!((&k["type"], &k["type_source"]), (&json!("printer"), &json!("user")));
    s.terminate();

    let s = start(&state, &oui_file, &sock);
    let k = &devices(&s, &sock, &macs)[0];
    assert_eq!((&k["type"], &k["type_source"]), (&json!("printer"), &json!("user")), "after a restart: {k}");
    assert_eq!(k["vendor"], vendor.as_str());
}

/// A corrupt vendor file is logged and ignored: spind runs, devices show no vendor.
#[test]
fn a_corrupt_oui_file_is_logged_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let oui_file = dir.path().join("oui.bin");
    std::fs::write(&oui_file, b"SPINOUI1\xff\xff\xff\xff\x00\x00\x00\x00junk").unwrap();
    let sock = dir.path().join("extsrc.sock");
    let s = start(&dir.path().join("state"), &oui_file, &sock);
    let d = &devices(&s, &sock, &[("00:1f:32:01:02:03", [192, 168, 1, 60])])[0];
    assert_eq!(d["vendor"], Value::Null);
    assert!(s.log_text().contains("oui_file"), "{}", s.log_text());
}
