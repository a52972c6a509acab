//! The core's side of what devices say they are (issue 14): a device's vendor, random-MAC flag
//! and type for `list_devices`/`get_device_data`, and `set_device_type`, the user's correction
//! of the guess, which the guess never overrides.

use super::{Core, OpError, OpResult};
use crate::model::event::{MacAddr, Publish};
use crate::model::identity::{guess_type, is_random_mac, DeviceType};
use crate::model::messages::DeviceIdentity;
use crate::model::nodes::Node;

fn bad(field: &str, why: &str) -> OpError {
    OpError::new(-1, format!("Invalid '{field}': {why}"))
}

impl Core {
    /// What a node says it is: the vendor of its MAC, whether that MAC is made up, and its type
    /// (the user's, else the guess from its name, vendor and looked-up names).
    pub fn op_identity<'a>(&'a self, n: &'a Node) -> DeviceIdentity<'a> {
        let vendor = n.mac.as_ref().and_then(|m| self.settings.vendors.vendor(m));
        let user = n.mac.as_ref().and_then(|m| self.device_types.get(m)).copied();
        let (kind, user_set) = match user {
            Some(t) => (Some(t), true),
            None => (guess_type(n.name.as_deref(), vendor, n.domains.values().map(String::as_str)), false),
        };
        DeviceIdentity {
            vendor,
            random_mac: n.mac.as_ref().is_some_and(is_random_mac),
            kind: kind.map(DeviceType::name),
            type_source: if user_set { "user" } else { "guess" },
        }
    }

    /// `set_device_type` `{"device": MAC, "type": T}`: the user's type for the device (it need
    /// not have been seen yet); `None` goes back to the guess.
    pub fn op_set_device_type(&mut self, device: &str, kind: Option<&str>, out: &mut Vec<Publish>) -> OpResult<()> {
        let mac: MacAddr = device.parse().map_err(|_| bad("device", "expected a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        if !mac.is_unicast() {
            return Err(bad("device", "not a device's (unicast) address"));
        }
        let kind = match kind {
            None => None,
            Some(k) => Some(DeviceType::parse(k).ok_or_else(|| {
                let all: Vec<&str> = DeviceType::ALL.iter().map(|t| t.name()).collect();
                bad("type", &format!("'{k}' is not one of {} (or null)", all.join(", ")))
            })?),
        };
        let undo = self.undo_point();
        let changed = match kind {
            Some(t) => self.device_types.insert(mac, t) != Some(t),
            None => self.device_types.remove(&mac).is_some(),
        };
        self.dirty.device_types = changed;
        self.commit(undo, out, Vec::new())
    }
}
