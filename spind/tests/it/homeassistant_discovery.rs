//! Home Assistant's MQTT discovery from the real spind replaying a capture: with
//! `homeassistant_discovery = 1`, a late subscriber of the embedded broker (as Home Assistant
//! is) gets the retained device-tracker config of the capture's device, with its MAC.

use std::time::Duration;

use serde_json::json;
use testbed::mqtt::Subscriber;

use crate::common::{fixture, spind};

const CLIENT_MAC: &str = "02:00:00:00:00:64";

#[test]
fn a_device_of_the_capture_is_discovered_by_home_assistant() {
    let s = spind()
        .arg("--replay")
        .arg(fixture("basic.pcap").to_str().unwrap())
        .arg("--replay-speed")
        .arg("0")
        .config_line("homeassistant_discovery = 1")
        .start();
    // Subscribed after the replay, as Home Assistant joining later: only then are the messages
    // forwarded with the retain flag (a live forward to an existing subscriber carries none).
    testbed::wait_for("the replay to finish", Duration::from_secs(60), || {
        s.log_text().contains("replay finished").then_some(())
    });
    let sub = Subscriber::connect(s.mqtt_port, false, "homeassistant/#");
    let topic = "homeassistant/device_tracker/spin_020000000064/config";
    let msgs = sub.collect_until("the device's discovery config", Duration::from_secs(60), |got| {
        got.iter().any(|m| m.topic == topic)
    });
    let config = msgs.iter().find(|m| m.topic == topic).unwrap();
    assert!(config.retain, "discovery configs are retained");
    let v = config.json();
    assert_eq!(v["device"]["connections"], json!([["mac", CLIENT_MAC]]), "{v}");
    assert_eq!(v["unique_id"], "spin_020000000064");
    assert_eq!(v["state_topic"], format!("SPIN/ha/device/{CLIENT_MAC}/state"));
    assert_eq!(v["source_type"], "router");
    // The alert sensor of the router's own device is there too.
    let sensor = "homeassistant/sensor/spin_alerts/config";
    if !msgs.iter().any(|m| m.topic == sensor) {
        sub.collect_until("the alert sensor", Duration::from_secs(20), |got| got.iter().any(|m| m.topic == sensor));
    }
}
