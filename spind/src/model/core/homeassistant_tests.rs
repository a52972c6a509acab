//! Home Assistant's discovery from the core: the retained configs of a new device and of the
//! alert sensor, the alert as the sensor's state, `home` → `not_home` once after ten minutes
//! without traffic, a rename republishing the config, and nothing at all when the setting is off.

use super::testutil::{core_in, on_topic};
use super::*;
use serde_json::{json, Value};

const DEV: &str = "192.168.8.100";
const DEV_MAC: &str = "02:00:00:00:00:64";
const CONFIG: &str = "homeassistant/device_tracker/spin_020000000064/config";
const STATE: &str = "SPIN/ha/device/02:00:00:00:00:64/state";

fn settings(on: bool) -> CoreSettings {
    CoreSettings {
        history: HistorySettings::default(),
        homeassistant: on.then(|| "homeassistant".to_string()),
        ..CoreSettings::default()
    }
}

fn run(core: &mut Core, ev: Event) -> Vec<Publish> {
    let mut out = Vec::new();
    core.handle(ev, &mut out);
    out
}

fn neighbour(time: Timestamp) -> Event {
    Event::Neighbour { time, ip: DEV.parse().unwrap(), mac: DEV_MAC.parse().unwrap() }
}

fn flow(time: Timestamp) -> Event {
    let s = FlowSample {
        protocol: 6,
        src: DEV.parse().unwrap(),
        dst: "198.51.100.10".parse().unwrap(),
        src_port: 40000,
        dst_port: 443,
        icmp_type: 0,
        bytes: 1500,
        packets: 3,
        reply_bytes: 500,
    };
    Event::Flows { time, flows: vec![s], local: false }
}

fn retained_json(out: &[Publish], topic: &str) -> Vec<Value> {
    out.iter()
        .filter(|p| p.topic == topic)
        .map(|p| {
            assert!(p.retain, "{topic} is retained");
            serde_json::from_slice(&p.payload).unwrap_or_else(|e| panic!("{topic}: {e}"))
        })
        .collect()
}

fn ha_topics(out: &[Publish]) -> Vec<&str> {
    out.iter()
        .map(|p| p.topic.as_str())
        .filter(|t| t.starts_with("homeassistant/") || t.starts_with("SPIN/ha/"))
        .collect()
}

#[test]
fn a_new_device_and_the_alert_sensor_are_discovered_and_the_device_goes_away_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), settings(true));
    let mut out = Vec::new();
    core.startup(&mut out);
    let sensor = retained_json(&out, "homeassistant/sensor/spin_alerts/config");
    assert_eq!(sensor.len(), 1);
    assert_eq!(sensor[0]["unique_id"], "spin_alerts");
    assert_eq!(sensor[0]["state_topic"], "SPIN/ha/alerts/state");
    assert_eq!(sensor[0]["json_attributes_topic"], "SPIN/ha/alerts/attributes");
    assert_eq!(sensor[0]["device"]["identifiers"], json!(["spin_router"]));

    let out = run(&mut core, neighbour(1000));
    let config = retained_json(&out, CONFIG);
    assert_eq!(config.len(), 1, "{:?}", ha_topics(&out));
    let c = &config[0];
    assert_eq!(c["unique_id"], "spin_020000000064");
    assert_eq!(c["state_topic"], STATE);
    assert_eq!((c["payload_home"].as_str(), c["payload_not_home"].as_str()), (Some("home"), Some("not_home")));
    assert_eq!(c["source_type"], "router");
    assert_eq!(c["json_attributes_topic"], "SPIN/ha/device/02:00:00:00:00:64/attributes");
    assert_eq!(c["device"]["connections"], json!([["mac", DEV_MAC]]));
    assert_eq!(c["device"]["identifiers"], json!(["spin_020000000064"]));
    assert_eq!(c["device"]["via_device"], "spin_router");
    assert_eq!(c["device"]["name"], DEV_MAC, "no name, no vendor (a random MAC): the MAC");
    assert!(c["device"].get("manufacturer").is_none(), "no vendor: no manufacturer (HA refuses a null)");
    assert_eq!(c["name"], Value::Null, "the entity takes the device's name");
    assert_eq!(c["origin"]["name"], "spind");
    let attrs = retained_json(&out, "SPIN/ha/device/02:00:00:00:00:64/attributes");
    assert_eq!(attrs[0]["ips"], json!([DEV]));
    assert_eq!(attrs[0]["random_mac"], true);
    let state: Vec<&Publish> = out.iter().filter(|p| p.topic == STATE).collect();
    assert_eq!(state.len(), 1);
    assert!(state[0].retain);
    assert_eq!(state[0].payload, b"home");
    // The new device's alert is the sensor's state, its JSON the attributes.
    assert_eq!(on_topic(&out, "SPIN/ha/alerts/state"), [format!("new_device {DEV_MAC}")]);
    let alert = retained_json(&out, "SPIN/ha/alerts/attributes");
    assert_eq!((alert[0]["kind"].as_str(), alert[0]["device"].as_str()), (Some("new_device"), Some(DEV_MAC)));

    // Traffic changes nothing HA sees (no config, attributes or state again).
    let out = run(&mut core, flow(1001));
    assert!(ha_topics(&out).is_empty(), "{:?}", ha_topics(&out));
    // Ten minutes without traffic: not_home, once.
    let mut states = Vec::new();
    for t in 1002..1700 {
        states.extend(on_topic(&run(&mut core, Event::Tick { time: t }), STATE));
    }
    assert_eq!(states, ["not_home"]);
    // Seen again: home, once, at the next check (within 10 s); a name makes a new config.
    let mut out = run(&mut core, flow(1700));
    for t in 1701..1720 {
        out.extend(run(&mut core, Event::Tick { time: t }));
    }
    assert_eq!(on_topic(&out, STATE), ["home"]);
    assert!(retained_json(&out, CONFIG).is_empty());
    let id = core.nodes().by_mac(&DEV_MAC.parse().unwrap()).unwrap();
    let mut out = Vec::new();
    // A name with JSON's and MQTT's special characters arrives as it was given.
    let name = "Kitchen \"tablet\" \\ #+/\u{e9}";
    core.op_set_device_name(id as i64, name, &mut out).unwrap();
    let config = retained_json(&out, CONFIG);
    assert_eq!(config.len(), 1, "{:?}", ha_topics(&out));
    assert_eq!(config[0]["device"]["name"], name);
    assert_eq!(retained_json(&out, "SPIN/ha/device/02:00:00:00:00:64/attributes")[0]["name"], name);
    assert!(on_topic(&out, STATE).is_empty(), "the state did not change");

    // After a restart (the embedded broker starts empty) a device is announced again as soon
    // as it is seen, with the name it was given.
    drop(core);
    let mut core = core_in(dir.path(), settings(true));
    let mut out = Vec::new();
    core.startup(&mut out);
    out.extend(run(&mut core, neighbour(2000)));
    let config = retained_json(&out, CONFIG);
    assert_eq!(config.len(), 1, "{:?}", ha_topics(&out));
    assert_eq!(config[0]["device"]["name"], name);
    assert_eq!(on_topic(&out, STATE).len(), 1);
}

#[test]
fn a_known_vendor_is_the_manufacturer() {
    let dir = tempfile::tempdir().unwrap();
    // A one-entry vendor file: 00:1f:32 is Nintendo.
    let mut file = b"SPINOUI1".to_vec();
    file.extend(1u32.to_le_bytes());
    file.extend(1u32.to_le_bytes());
    file.extend([0x00, 0x1f, 0x32, 0, 0, 8]);
    file.extend(b"Nintendo");
    let vendors = identity::OuiTable::parse(file).unwrap();
    let mut core = core_in(dir.path(), CoreSettings { vendors: Arc::new(vendors), ..settings(true) });
    let ev = Event::Neighbour { time: 1000, ip: DEV.parse().unwrap(), mac: "00:1f:32:00:00:01".parse().unwrap() };
    let out = run(&mut core, ev);
    let c = retained_json(&out, "homeassistant/device_tracker/spin_001f32000001/config");
    assert_eq!(c.len(), 1, "{:?}", ha_topics(&out));
    assert_eq!(c[0]["device"]["manufacturer"], "Nintendo");
    assert_eq!(c[0]["device"]["name"], "Nintendo 00:00:01");
}

#[test]
fn nothing_goes_to_home_assistant_when_the_setting_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), settings(false));
    let mut out = Vec::new();
    core.startup(&mut out);
    out.extend(run(&mut core, neighbour(1000)));
    out.extend(run(&mut core, flow(1001)));
    for t in 1002..1700 {
        out.extend(run(&mut core, Event::Tick { time: t }));
    }
    assert_eq!(on_topic(&out, ALERTS_TOPIC).len(), 1, "the alert itself is published");
    assert!(ha_topics(&out).is_empty(), "{:?}", ha_topics(&out));
}
