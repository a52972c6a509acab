//! The core's side of what devices say they are (issue 14): a device's vendor, random-MAC flag,
//! mDNS model and services, and type for `list_devices`/`get_device_data`; `set_device_type`,
//! the user's correction of the guess, which the guess never overrides; and the names devices
//! announce over mDNS.
//!
//! A device's name, in this order: the user's (`names.conf`), its DHCP host name (the lease,
//! then the static DHCP config), then the name it announces over mDNS. The user decided; a
//! DHCP name is what the router's own DHCP server handed out and is stable, while any device on
//! the link may announce any name (the parser only takes a sender's records about its own
//! address, which still leaves it free to choose). An mDNS name fills a gap and changes only
//! when the device announces a new one; it never replaces a name from another source.

use std::net::IpAddr;

use super::{Core, OpError, OpResult};
use crate::model::event::{MacAddr, Publish, Timestamp};
use crate::model::identity::{guess_with_mdns, is_random_mac, DeviceType, MdnsInfo};
use crate::model::messages::DeviceIdentity;
use crate::model::nodes::Node;

/// Devices whose mDNS announcements are kept (a home has tens).
pub const MDNS_DEVICES_MAX: usize = 1024;
/// Announcements from addresses of unknown MAC kept, and for how long (seconds).
pub const MDNS_PENDING_MAX: usize = 64;
pub const MDNS_PENDING_SECS: Timestamp = 60;

fn bad(field: &str, why: &str) -> OpError {
    OpError::new(-1, format!("Invalid '{field}': {why}"))
}

impl Core {
    /// What a node says it is: the vendor of its MAC, whether that MAC is made up, its mDNS
    /// model and services, and its type (the user's, else the guess from its mDNS model, name,
    /// mDNS services, vendor and looked-up names).
    pub fn op_identity<'a>(&'a self, n: &'a Node) -> DeviceIdentity<'a> {
        let vendor = n.mac.as_ref().and_then(|m| self.settings.vendors.vendor(m));
        let user = n.mac.as_ref().and_then(|m| self.device_types.get(m)).copied();
        let mdns = n.mac.as_ref().and_then(|m| self.mdns.get(m));
        let (kind, user_set) = match user {
            Some(t) => (Some(t), true),
            None => {
                let domains = n.domains.values().map(String::as_str);
                (guess_with_mdns(n.name.as_deref(), mdns, vendor, domains), false)
            }
        };
        DeviceIdentity {
            vendor,
            random_mac: n.mac.as_ref().is_some_and(is_random_mac),
            model: mdns.and_then(|m| m.model.as_deref()),
            services: mdns.map(|m| m.services.as_slice()).unwrap_or_default(),
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

    /// A device's name: the user's, else its DHCP name, else the one it announced over mDNS.
    pub(super) fn device_name(&self, mac: Option<&MacAddr>, ips: &[IpAddr]) -> Option<&str> {
        self.names.lookup(mac, ips).or_else(|| self.mdns.get(mac?)?.name.as_deref())
    }

    /// An mDNS announcement from `ip`: the device is the frame's sender if the capture showed
    /// it, else the address's neighbour; one not known yet is kept a while for the neighbour
    /// table to name it. Publishes nothing itself; a node that gains a name is announced.
    pub(super) fn on_mdns(
        &mut self,
        time: Timestamp,
        ip: IpAddr,
        mac: Option<MacAddr>,
        info: MdnsInfo,
    ) -> Vec<Publish> {
        self.stats.add("mdns", "announcements", 1);
        match mac.or_else(|| self.neighbours.get(&ip).copied()) {
            Some(mac) => self.learn_mdns(mac, info),
            None => {
                if self.mdns_pending.len() >= MDNS_PENDING_MAX {
                    self.mdns_pending.retain(|_, (t, _)| *t > time - MDNS_PENDING_SECS);
                }
                if self.mdns_pending.len() < MDNS_PENDING_MAX || self.mdns_pending.contains_key(&ip) {
                    self.mdns_pending.entry(ip).or_insert_with(|| (time, MdnsInfo::default())).1.merge(info);
                }
            }
        }
        Vec::new()
    }

    /// Keeps what device `mac` announced; when that changed its name (and no user or DHCP name
    /// wins), its node is renamed.
    pub(super) fn learn_mdns(&mut self, mac: MacAddr, info: MdnsInfo) {
        if !mac.is_unicast() {
            return;
        }
        if !self.mdns.contains_key(&mac) && self.mdns.len() >= MDNS_DEVICES_MAX {
            // Devices that are gone make room; if none are, the newcomer is not kept.
            let nodes = &self.nodes;
            self.mdns.retain(|m, _| nodes.by_mac(m).is_some());
            if self.mdns.len() >= MDNS_DEVICES_MAX {
                return;
            }
        }
        if !self.mdns.entry(mac).or_default().merge(info) {
            return;
        }
        let Some(id) = self.nodes.by_mac(&mac) else { return };
        let Some(node) = self.nodes.get(id) else { return };
        let ips: Vec<IpAddr> = node.ips.iter().copied().collect();
        let name = self.device_name(Some(&mac), &ips).map(str::to_string);
        if name.is_some() {
            self.nodes.set_name(id, name);
        }
    }
}
