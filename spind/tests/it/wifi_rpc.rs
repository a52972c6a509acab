//! The WiFi methods over HTTP against the real spind (`get_wifi`, `set_wifi`): a router without
//! `wifi_settings_file` has no WiFi; with it, the network is shown without its passphrase (and
//! without hostapd, as here, as not running), bad input is refused naming the field and leaves
//! the file as it was, and a change is stored whole, owner-only. (Only the admin reaches any
//! RPC on a LAN address: `http_admin`. hostapd restarting on the change: the rpi3 QEMU test.)

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use testbed::http::rpc_http;

use crate::common::spind;

#[test]
fn wifi_is_shown_and_changed_only_with_valid_settings() {
    let plain = spind().start();
    assert_eq!(plain.call("get_wifi", json!({})), json!({"available": false}));
    let r = rpc_http(plain.http_port, "set_wifi", json!({"ssid": "Home"}));
    assert_eq!(r["error"]["message"], "This router has no WiFi access point", "{r}");
    drop(plain);

    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("wifi.conf");
    let s = spind()
        .config_line(&format!("wifi_settings_file = {}", settings.display()))
        .config_line(&format!("wifi_control_dir = {}", dir.path().join("hostapd").display()))
        .start();
    // Before the first boot wrote the file: no WiFi yet.
    assert_eq!(s.call("get_wifi", json!({})), json!({"available": false}));
    let before = "# first boot\nssid=SPIN-AB12\npassphrase=first passphrase\ncountry=NL\n";
    std::fs::write(&settings, before).unwrap();
    let w = s.call("get_wifi", json!({}));
    assert_eq!(
        w,
        json!({"available": true, "ssid": "SPIN-AB12", "country": "NL", "running": false, "state": null,
               "broadcast_ssid": null, "channel": null, "clients": []})
    );
    for (params, field) in [
        (json!({"ssid": "Home", "passphrase": "short"}), "passphrase"),
        (json!({"ssid": "x".repeat(33)}), "ssid"),
        (json!({"ssid": "Home\nssid=Evil"}), "ssid"),
        (json!({"ssid": "Home", "country": "XYZ"}), "country"),
    ] {
        let r = rpc_http(s.http_port, "set_wifi", params.clone());
        let message = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{params} refused: {r}"));
        assert!(message.starts_with(&format!("Invalid '{field}'")), "{params}: {message}");
        assert_eq!(std::fs::read_to_string(&settings).unwrap(), before, "unchanged after {params}");
    }
    let r = s.call("set_wifi", json!({"ssid": "Our Home", "passphrase": "correct horse 42", "country": "de"}));
    assert_eq!(r["applied"], true, "{r}");
    assert!(r["message"].as_str().unwrap().contains("must reconnect with the new passphrase"), "{r}");
    let saved = std::fs::read_to_string(&settings).unwrap();
    assert!(saved.ends_with("\nssid=Our Home\npassphrase=correct horse 42\ncountry=DE\n"), "{saved}");
    assert_eq!(std::fs::metadata(&settings).unwrap().permissions().mode() & 0o777, 0o600);
    let temps: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(temps.len(), 1, "no temporary file left: {temps:?}");
    assert_eq!(s.call("get_wifi", json!({}))["ssid"], "Our Home");
}
