//! Home Assistant's MQTT discovery from the real spind replaying a capture: with
//! `homeassistant_discovery = 1`, a late subscriber of the embedded broker (as Home Assistant
//! is) gets the retained device-tracker config of the capture's device with the fields HA
//! reads, its state, its attributes and the alert sensor; a rename with JSON's special
//! characters arrives intact; without the setting nothing at all is published for HA.

use std::time::Duration;

use serde_json::{json, Value};
use testbed::mqtt::{Msg, Subscriber};

use crate::common::{fixture, spind};

const CLIENT_MAC: &str = "02:00:00:00:00:64";
const CONFIG: &str = "homeassistant/device_tracker/spin_020000000064/config";
const SENSOR: &str = "homeassistant/sensor/spin_alerts/config";

fn replayed(discovery: bool) -> testbed::spind::Spind {
    let s = spind()
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .config_line(&format!("homeassistant_discovery = {}", u8::from(discovery)))
        .start();
    // Subscribed after the replay, as Home Assistant joining later: only then are the messages
    // forwarded with the retain flag (a live forward to an existing subscriber carries none).
    testbed::wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    s
}

fn last<'a>(msgs: &'a [Msg], topic: &str) -> Option<&'a Msg> {
    msgs.iter().rev().find(|m| m.topic == topic)
}

#[test]
fn a_device_of_the_capture_is_discovered_by_home_assistant() {
    let s = replayed(true);
    let sub = Subscriber::connect(s.mqtt_port, false, "#");
    let state = format!("SPIN/ha/device/{CLIENT_MAC}/state");
    let attributes = format!("SPIN/ha/device/{CLIENT_MAC}/attributes");
    let wanted = [CONFIG, SENSOR, state.as_str(), attributes.as_str(), "SPIN/ha/alerts/state"];
    let msgs = sub.collect_until("the discovery configs and states", Duration::from_secs(60), |got| {
        wanted.iter().all(|t| got.iter().any(|m| m.topic == *t))
    });
    for t in wanted {
        assert!(last(&msgs, t).unwrap().retain, "{t} is retained");
    }
    let c = last(&msgs, CONFIG).unwrap().json();
    assert_eq!(c["unique_id"], "spin_020000000064", "{c}");
    assert_eq!(c["name"], Value::Null, "{c}");
    assert_eq!(c["state_topic"], state);
    assert_eq!(c["json_attributes_topic"], attributes);
    assert_eq!((c["payload_home"].as_str(), c["payload_not_home"].as_str()), (Some("home"), Some("not_home")));
    assert_eq!(c["source_type"], "router");
    assert_eq!(c["device"]["connections"], json!([["mac", CLIENT_MAC]]), "{c}");
    assert_eq!(c["device"]["identifiers"], json!(["spin_020000000064"]));
    assert_eq!(c["device"]["via_device"], "spin_router");
    assert!(c["device"]["name"].is_string(), "{c}");
    assert!(c["device"].get("manufacturer").is_none(), "a random MAC has no vendor: {c}");
    let st = String::from_utf8_lossy(&last(&msgs, &state).unwrap().payload).into_owned();
    assert!(st == "home" || st == "not_home", "state {st:?}");
    let a = last(&msgs, &attributes).unwrap().json();
    assert_eq!((a["mac"].as_str(), a["random_mac"].as_bool()), (Some(CLIENT_MAC), Some(true)), "{a}");
    let sensor = last(&msgs, SENSOR).unwrap().json();
    assert_eq!(sensor["state_topic"], "SPIN/ha/alerts/state");
    assert_eq!(sensor["device"]["identifiers"], json!(["spin_router"]));
    let alert = String::from_utf8_lossy(&last(&msgs, "SPIN/ha/alerts/state").unwrap().payload).into_owned();
    assert!(alert.starts_with("new_device "), "{alert}");

    // A name with JSON's and MQTT's special characters: a new config with it, intact.
    let devices = s.call("list_devices", json!({}));
    let client = devices.as_array().unwrap().iter().find(|d| d["mac"] == CLIENT_MAC).unwrap().clone();
    let name = "Kim's \"tablet\" \\ #+/ \u{e9}";
    s.call("set_device_name", json!({"node": client["id"], "name": name}));
    sub.collect_until("the renamed config and attributes", Duration::from_secs(20), |got| {
        got.iter().any(|m| m.topic == CONFIG && m.json()["device"]["name"] == name)
            && got.iter().any(|m| m.topic == attributes && m.json()["name"] == name)
    });
}

#[test]
fn without_the_setting_nothing_is_published_for_home_assistant() {
    let s = replayed(false);
    let sub = Subscriber::connect(s.mqtt_port, false, "#");
    // The retained node message of the capture's device arrives; then a marker of our own
    // (after every retained message of the subscription).
    sub.client.publish("test/marker", rumqttc::QoS::AtLeastOnce, false, "x").unwrap();
    let msgs =
        sub.collect_until("the marker", Duration::from_secs(20), |got| got.iter().any(|m| m.topic == "test/marker"));
    std::thread::sleep(Duration::from_millis(500));
    let later: Vec<Msg> = sub.msgs.try_iter().collect();
    let ha: Vec<&str> = msgs
        .iter()
        .chain(&later)
        .map(|m| m.topic.as_str())
        .filter(|t| t.starts_with("homeassistant/") || t.starts_with("SPIN/ha/"))
        .collect();
    assert!(msgs.iter().any(|m| m.topic.starts_with("SPIN/")), "spind's retained messages did arrive");
    assert!(ha.is_empty(), "{ha:?}");
}
