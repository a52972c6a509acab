//! Home Assistant's MQTT discovery (issue 14, `homeassistant_discovery`): the retained
//! discovery configs and states that make every device a `device_tracker` (home while seen in
//! the last [`HOME_TIMEOUT`] seconds) and the latest alert a `sensor` of the router's own HA
//! device (`spin_router`). Home Assistant reads them from spind's broker as one more client
//! with the admin's login; nothing is sent anywhere else.
//!
//! Bounded: at most [`DEVICES_MAX`] devices are announced; a config or attributes message goes
//! out only when what it says changed, a state only when it flips. The core never forgets a
//! device (a node with a MAC never expires and is never merged away), so no config is ever
//! withdrawn; the embedded broker keeps retained messages in memory only, so turning the setting
//! off (a restart) leaves nothing behind (an external broker, `pubsub_run_mosquitto = 0`, keeps
//! them: clear them there). Every payload is built with `serde_json` (names from DHCP or
//! the household are escaped); topics carry only MACs and the configured prefix.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use log::warn;
use serde_json::{json, Value};

use crate::model::event::{MacAddr, Publish, Timestamp};
use crate::model::history::Alert;

/// A device is `home` while it was seen within this many seconds (then `not_home`).
pub const HOME_TIMEOUT: i64 = 600;
/// Devices announced at most (a flood of random MACs must not flood Home Assistant).
pub const DEVICES_MAX: usize = 1024;
/// Where spind publishes the states and attributes the configs point at (spind's own topics:
/// nobody else may publish under `SPIN/`).
const STATE_ROOT: &str = "SPIN/ha";
/// The router's HA device: the alert sensor belongs to it, every device tracker is `via` it.
pub const ROUTER_ID: &str = "spin_router";
/// HA shows at most 255 characters of a state.
const STATE_MAX: usize = 255;

/// What Home Assistant is told about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub mac: MacAddr,
    /// The user's or the DHCP name.
    pub name: Option<String>,
    pub vendor: Option<String>,
    pub kind: Option<&'static str>,
    pub random_mac: bool,
    pub ips: Vec<String>,
    pub last_seen: Timestamp,
}

impl DeviceInfo {
    /// The name HA shows: the device's, else its vendor with the MAC's last half, else the MAC.
    fn display_name(&self) -> String {
        match (&self.name, &self.vendor) {
            (Some(n), _) => n.clone(),
            (None, Some(v)) => format!("{v} {}", &self.mac.to_string()[9..]),
            (None, None) => self.mac.to_string(),
        }
    }
}

struct Tracked {
    /// Digests of the config and the attributes last published.
    config: u64,
    attributes: u64,
    home: bool,
    last_seen: Timestamp,
}

fn digest(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// `spin_` and the MAC's hex digits: HA's unique id and the discovery topic's object id (which
/// allows no colons).
pub fn object_id(mac: &MacAddr) -> String {
    let m = mac.0;
    format!("spin_{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

pub fn device_state_topic(mac: &MacAddr) -> String {
    format!("{STATE_ROOT}/device/{mac}/state")
}

fn device_attributes_topic(mac: &MacAddr) -> String {
    format!("{STATE_ROOT}/device/{mac}/attributes")
}

pub const ALERT_STATE_TOPIC: &str = "SPIN/ha/alerts/state";
const ALERT_ATTRIBUTES_TOPIC: &str = "SPIN/ha/alerts/attributes";

/// Who made the configs (HA shows it in the entity's MQTT info).
fn origin() -> Value {
    json!({"name": "spind", "sw_version": env!("CARGO_PKG_VERSION"), "support_url": "https://github.com/SIDN/spin"})
}

pub struct HomeAssistant {
    /// `homeassistant_prefix`: HA's discovery prefix.
    prefix: String,
    devices: BTreeMap<MacAddr, Tracked>,
    full_warned: bool,
}

impl HomeAssistant {
    pub fn new(prefix: &str) -> HomeAssistant {
        HomeAssistant { prefix: prefix.to_string(), devices: BTreeMap::new(), full_warned: false }
    }

    pub fn device_config_topic(&self, mac: &MacAddr) -> String {
        format!("{}/device_tracker/{}/config", self.prefix, object_id(mac))
    }

    pub fn alerts_config_topic(&self) -> String {
        format!("{}/sensor/spin_alerts/config", self.prefix)
    }

    /// At start: the router's device with its alert sensor (every retained message of an
    /// embedded broker is gone after a restart, so everything is published again).
    pub fn startup(&self, out: &mut Vec<Publish>) {
        let config = json!({
            "name": "Latest alert",
            "unique_id": "spin_alerts",
            "icon": "mdi:alert",
            "state_topic": ALERT_STATE_TOPIC,
            "json_attributes_topic": ALERT_ATTRIBUTES_TOPIC,
            "device": {
                "identifiers": [ROUTER_ID],
                "name": "SPIN router",
                "manufacturer": "SPIN (spin-rs)",
                "model": "spind",
                "sw_version": env!("CARGO_PKG_VERSION"),
            },
            "origin": origin(),
        });
        out.push(Publish::new(self.alerts_config_topic(), config.to_string(), true));
    }

    /// A device the core announced (new or changed): its config when new or when its name or
    /// vendor changed, its attributes when they changed, its state when it flipped. `now` decides
    /// home or not.
    pub fn device(&mut self, d: &DeviceInfo, now: Timestamp, out: &mut Vec<Publish>) {
        if !self.devices.contains_key(&d.mac) && self.devices.len() >= DEVICES_MAX {
            if !self.full_warned {
                warn!("Home Assistant: {DEVICES_MAX} devices announced; later devices are left out");
                self.full_warned = true;
            }
            return;
        }
        let name = d.display_name();
        let config = digest((&name, &d.vendor));
        let attributes = digest((&d.name, &d.vendor, d.kind, d.random_mac, &d.ips));
        let home = now - d.last_seen < HOME_TIMEOUT;
        let t = self.devices.get(&d.mac);
        let (new_config, new_attributes, new_state) = match t {
            None => (true, true, true),
            Some(t) => (t.config != config, t.attributes != attributes, t.home != home),
        };
        if new_config {
            out.push(Publish::new(self.device_config_topic(&d.mac), self.device_config(d, &name).to_string(), true));
        }
        if new_attributes {
            let a = json!({"mac": d.mac.to_string(), "name": d.name, "vendor": d.vendor, "type": d.kind,
                "random_mac": d.random_mac, "ips": d.ips});
            out.push(Publish::new(device_attributes_topic(&d.mac), a.to_string(), true));
        }
        if new_state {
            out.push(state_msg(&d.mac, home));
        }
        let last_seen = d.last_seen.max(t.map_or(d.last_seen, |t| t.last_seen));
        self.devices.insert(d.mac, Tracked { config, attributes, home, last_seen });
    }

    fn device_config(&self, d: &DeviceInfo, name: &str) -> Value {
        let mac = d.mac.to_string();
        let mut config = json!({
            // null: the entity takes the device's name (HA's rule for a device's main entity).
            "name": null,
            "unique_id": object_id(&d.mac),
            "state_topic": device_state_topic(&d.mac),
            "payload_home": "home",
            "payload_not_home": "not_home",
            "source_type": "router",
            "json_attributes_topic": device_attributes_topic(&d.mac),
            "device": {
                "identifiers": [object_id(&d.mac)],
                "connections": [["mac", mac]],
                "name": name,
                "via_device": ROUTER_ID,
            },
            "origin": origin(),
        });
        // Absent rather than null: HA's device schema takes a string or nothing, and a null
        // would make it reject the whole config.
        if let Some(v) = &d.vendor {
            config["device"]["manufacturer"] = json!(v);
        }
        config
    }

    /// Every few seconds: devices not seen for [`HOME_TIMEOUT`] go `not_home` (once), seen ones
    /// `home`. `last_seen` is the core's for a MAC (`None`: the node is gone; its last time holds).
    pub fn refresh(
        &mut self,
        now: Timestamp,
        last_seen: impl Fn(&MacAddr) -> Option<Timestamp>,
        out: &mut Vec<Publish>,
    ) {
        for (mac, t) in &mut self.devices {
            if let Some(seen) = last_seen(mac) {
                t.last_seen = t.last_seen.max(seen);
            }
            let home = now - t.last_seen < HOME_TIMEOUT;
            if home != t.home {
                t.home = home;
                out.push(state_msg(mac, home));
            }
        }
    }

    /// An alert: its JSON as the sensor's attributes, then its kind and device as the state.
    pub fn alert(&self, a: &Alert, out: &mut Vec<Publish>) {
        out.push(Publish::new(ALERT_ATTRIBUTES_TOPIC, a.to_json().to_string(), true));
        let mut state = match &a.device {
            Some(d) => format!("{} {d}", a.kind),
            None => a.kind.clone(),
        };
        state.truncate(STATE_MAX);
        out.push(Publish::new(ALERT_STATE_TOPIC, state, true));
    }
}

fn state_msg(mac: &MacAddr, home: bool) -> Publish {
    Publish::new(device_state_topic(mac), if home { "home" } else { "not_home" }, true)
}
