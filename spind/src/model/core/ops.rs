//! The core's control operations, the JSON-RPC methods' side of [`Core`]: each `op_*` checks
//! its arguments, changes memory, and saves the change in one batch through [`Core::commit`],
//! which undoes it when the write fails (a full disk) and reports the failure, so the
//! household is never told "done" for a decision a restart would forget.

use std::collections::BTreeSet;
use std::net::IpAddr;

use log::{info, warn};
use serde_json::Value;

use super::{Core, DeviceFlowRow, DeviceFlowTraffic, OpError, OpResult, Undo};
use crate::model::addr::IpNet;
use crate::model::event::{MacAddr, Publish, Timestamp};
use crate::model::flowblocks::pair;
use crate::model::namerules::NameRule;
use crate::model::nodes::{Candidate, ListKind, Node, NodeId};

impl Core {
    /// What [`Core::commit`] goes back to if the change cannot be saved. Merges and deletions
    /// not yet applied are applied first: they are observations, not part of the operation.
    pub(super) fn undo_point(&mut self) -> Undo {
        self.settle_changes();
        Undo {
            lists: self.lists.clone(),
            withdrawn: self.withdrawn.clone(),
            flows: self.flows.clone(),
            names: self.names.clone(),
            name_rules: self.name_rules.clone(),
            paused: self.paused.clone(),
            device_types: self.device_types.clone(),
            device_schedules: self.device_schedules.clone(),
            services: self.services.clone(),
            list_sources: self.blocklists.sources.clone(),
            marks: self.nodes.marks(),
            modified: self.nodes.modified(),
            // The operation marks what it changes on a clean slate, so that `commit` knows
            // whether it changed anything that must be saved.
            dirty: std::mem::take(&mut self.dirty),
            enforce_pending: self.enforce_pending,
            added_ip: None,
        }
    }

    pub(super) fn undo(&mut self, u: Undo) {
        self.lists = u.lists;
        self.withdrawn = u.withdrawn;
        self.flows = u.flows;
        self.names = u.names;
        if self.name_rules != u.name_rules {
            self.name_rules = u.name_rules;
            self.matcher = std::sync::Arc::new(self.compile_name_rules());
        }
        self.paused = u.paused;
        self.device_types = u.device_types;
        self.device_schedules = u.device_schedules;
        if self.services != u.services {
            self.services = u.services;
            self.matcher = std::sync::Arc::new(self.compile_name_rules());
        }
        // A length or id compare, not `==` of every list: the code of a deep comparison costs
        // binary size, and an undo is rare.
        if self.blocklists.sources.ids() != u.list_sources.ids() {
            self.blocklists.sources = u.list_sources;
            self.blocklists.rebuild();
            self.matcher = std::sync::Arc::new(self.compile_name_rules());
        }
        if let Some((id, ip)) = u.added_ip {
            self.nodes.remove_ip(id, &ip);
        }
        self.nodes.restore_marks(&u.marks);
        self.nodes.restore_modified(u.modified);
        self.dirty = u.dirty;
        self.enforce_pending = u.enforce_pending;
    }

    /// Saves what an operation changed (and whatever else was waiting), then enforces and
    /// publishes. If the save fails, the operation is undone and reported as failed, unless it
    /// changed nothing that needs saving (then only the earlier changes wait, as before).
    pub(super) fn commit(&mut self, undo: Undo, out: &mut Vec<Publish>, msgs: Vec<Publish>) -> OpResult<()> {
        let list_msgs = self.settle();
        let needs_saving = self.dirty.any();
        self.dirty = self.dirty.or(undo.dirty);
        if self.dirty.any() {
            if let Err(e) = self.save() {
                if needs_saving {
                    self.undo(undo);
                    return Err(OpError::new(
                        -3,
                        format!("{e} (is the disk of the state directory full?); nothing was changed"),
                    ));
                }
                warn!("{e}; kept in memory, trying again every second");
                self.retry_save_at = Some(self.now + 1);
            }
        }
        let enforced = if self.enforce_pending { self.enforce() } else { Ok(()) };
        let mut all = list_msgs;
        all.extend(msgs);
        self.emit(out, all);
        enforced
    }

    fn node(&self, id: NodeId) -> OpResult<&Node> {
        self.nodes.get(id).ok_or_else(|| OpError::new(-1, "Unknown node id"))
    }

    /// `list_devices`: every node with a MAC.
    pub fn op_list_devices(&self) -> Vec<&Node> {
        self.nodes.devices()
    }

    /// The device node of a MAC (a WiFi client, for `get_wifi`), if it was seen.
    pub fn op_device_of_mac(&self, mac: &MacAddr) -> Option<&Node> {
        self.nodes.by_mac(mac).and_then(|id| self.nodes.get(id))
    }

    pub fn op_get_device_data(&self, node: i64) -> OpResult<&Node> {
        self.node(u64::try_from(node).unwrap_or(0))
    }

    fn device_by_mac(&self, mac: &str) -> OpResult<NodeId> {
        mac.parse::<MacAddr>()
            .ok()
            .and_then(|m| self.nodes.by_mac(&m))
            .ok_or_else(|| OpError::new(-1, "Device not found"))
    }

    /// `list_device_flows`: the device's traffic per remote node, port and ICMP type, in that
    /// order; a flow-blocked pair reports no counters.
    pub fn op_list_device_flows(&self, device: &str) -> OpResult<Vec<DeviceFlowRow>> {
        let id = self.device_by_mac(device)?;
        let mut out = Vec::new();
        if let Some(records) = self.device_flows.get(&id) {
            for (&(to, dst_port, icmp_type), r) in records {
                let traffic = if self.flows.is_blocked(&pair(id, to)) {
                    DeviceFlowTraffic::Blocked
                } else {
                    DeviceFlowTraffic::Counted(r.clone())
                };
                out.push(DeviceFlowRow { to, dst_port, icmp_type, traffic });
            }
        }
        Ok(out)
    }

    /// The name is the user's from now on: a device is named by its MAC (its address entries
    /// from before are dropped, so an old name cannot come back through an address), another
    /// node by each of its addresses; an empty name removes the user's name (the DHCP name, if
    /// any, shows again).
    pub fn op_set_device_name(&mut self, node: i64, name: &str, out: &mut Vec<Publish>) -> OpResult<()> {
        let id = u64::try_from(node).unwrap_or(0);
        let n = self.nodes.get(id).ok_or_else(|| OpError::new(-1, "Unknown node id"))?;
        let (mac, ips): (Option<MacAddr>, Vec<IpAddr>) = (n.mac, n.ips.iter().copied().collect());
        // Re-read first so a hand edit of names.conf since start is not overwritten.
        self.names.reload_user();
        let undo = self.undo_point();
        match mac {
            Some(m) => {
                self.names.set_user_mac(m, name);
                self.names.remove_user_ips(&ips);
            }
            None => ips.iter().for_each(|ip| self.names.set_user_ip(*ip, name)),
        }
        self.dirty.names = true;
        let named = self.device_name(mac.as_ref(), &ips).map(str::to_string);
        self.nodes.set_name(id, named);
        self.commit(undo, out, Vec::new())
    }

    /// Puts a node's addresses on a list (or takes them off) and sets (clears) its flag,
    /// without saving.
    fn set_node_listed(&mut self, kind: ListKind, id: NodeId, add: bool) {
        let ips: Vec<IpAddr> = self.nodes.get(id).map(|n| n.ips.iter().copied().collect()).unwrap_or_default();
        for ip in ips {
            self.set_listed(kind, IpNet::host(ip), add);
        }
        if self.nodes.get(id).is_some_and(|n| n.on_list(kind) != add) {
            self.nodes.set_on_list(id, kind, add);
            self.dirty.node_store = true;
        }
    }

    /// One list entry added or removed by the user, without saving. A removed address is
    /// withdrawn: no node flag puts it back. An added one is no longer withdrawn.
    fn set_listed(&mut self, kind: ListKind, net: IpNet, add: bool) {
        let i = kind as usize;
        if add {
            self.dirty.lists[i] |= self.lists.get_mut(kind).add(net);
            self.dirty.withdrawn[i] |= self.withdrawn.get_mut(kind).remove(&net);
        } else {
            self.dirty.lists[i] |= self.lists.get_mut(kind).remove(&net);
            if net.is_host() {
                self.dirty.withdrawn[i] |= self.withdrawn.get_mut(kind).add(net);
            }
        }
        self.enforce_pending |= kind != ListKind::Ignore;
    }

    /// `add_iplist_node`/`remove_iplist_node`: every address of the node, and its flag.
    pub fn op_iplist_node(
        &mut self,
        list: &str,
        kind: ListKind,
        node: i64,
        add: bool,
        out: &mut Vec<Publish>,
    ) -> OpResult<()> {
        let id = u64::try_from(node).unwrap_or(0);
        if self.nodes.get(id).is_none() {
            return Err(OpError::new(-2, "Unknown node id"));
        }
        let undo = self.undo_point();
        self.set_node_listed(kind, id, add);
        let msg = self.list_msg(kind, list);
        self.commit(undo, out, vec![msg])
    }

    /// `add_iplist_ip`/`remove_iplist_ip`: one entry. The explicit removal of an address wins
    /// over a node's flag for that address; a flagged node none of whose addresses is left on
    /// the list is no longer on it (its flag is cleared).
    pub fn op_iplist_ip(
        &mut self,
        list: &str,
        kind: ListKind,
        ip: &str,
        add: bool,
        out: &mut Vec<Publish>,
    ) -> OpResult<()> {
        let net: IpNet = ip.parse().map_err(|_| OpError::new(-1, "Invalid IP address"))?;
        let undo = self.undo_point();
        self.set_listed(kind, net, add);
        if !add {
            let unlisted: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| n.on_list(kind) && n.ips.iter().any(|ip| net.contains(ip)))
                .filter(|n| !n.ips.iter().any(|ip| self.lists.get(kind).contains(ip)))
                .map(|n| n.id)
                .collect();
            for id in unlisted {
                self.nodes.set_on_list(id, kind, false);
                self.dirty.node_store = true;
            }
        }
        let msg = self.list_msg(kind, list);
        self.commit(undo, out, vec![msg])
    }

    /// `list_iplist`: the list's entries in SPIN's order (IPv4 first, then by bytes).
    pub fn op_list_iplist(&self, kind: ListKind) -> Vec<IpNet> {
        self.lists.get(kind).entries().copied().collect()
    }

    /// Empties the ignore list, then ignores this host's own addresses (as SPIN does). A fresh
    /// start: no node is ignored as a whole any more, and nothing is withdrawn from the list.
    pub fn op_reset_iplist_ignore(&mut self, own_addresses: &[IpAddr], out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        let i = ListKind::Ignore as usize;
        self.lists.get_mut(ListKind::Ignore).clear();
        self.withdrawn.get_mut(ListKind::Ignore).clear();
        self.dirty.lists[i] = true;
        self.dirty.withdrawn[i] = true;
        if self.nodes.iter().any(|n| n.on_list(ListKind::Ignore)) {
            self.nodes.clear_list_flags(ListKind::Ignore);
            self.dirty.node_store = true;
        }
        for ip in own_addresses {
            self.lists.get_mut(ListKind::Ignore).add(IpNet::host(*ip));
        }
        let msg = self.list_msg(ListKind::Ignore, "ignore");
        self.commit(undo, out, vec![msg])
    }

    pub fn op_set_flow_block(&mut self, node1: i64, node2: i64, block: bool, out: &mut Vec<Publish>) -> OpResult<()> {
        let (a, b) = (u64::try_from(node1).unwrap_or(0), u64::try_from(node2).unwrap_or(0));
        if self.nodes.get(a).is_none() || self.nodes.get(b).is_none() {
            return Err(OpError::new(-1, "Unknown node id"));
        }
        if a == b {
            return Err(OpError::new(-1, "Cannot block traffic of a node with itself"));
        }
        let undo = self.undo_point();
        if !self.flows.decide(pair(a, b), block) {
            self.undo(undo);
            return Ok(());
        }
        self.dirty.node_store = true;
        self.enforce_pending = true;
        self.commit(undo, out, Vec::new())
    }

    pub fn op_set_device_flow_block(
        &mut self,
        device: &str,
        node: i64,
        block: bool,
        out: &mut Vec<Publish>,
    ) -> OpResult<()> {
        let dev = self.device_by_mac(device)?;
        self.op_set_flow_block(dev as i64, node, block, out)
    }

    /// `get_flow_block`: every blocked node pair, smaller id first, in id order.
    pub fn op_get_flow_block(&self) -> Vec<(NodeId, NodeId)> {
        self.flows.blocked().collect()
    }

    /// `node 0` creates a node with the address; otherwise the address joins that node.
    /// Returns the node's id (SPIN computed it but did not return it).
    pub fn op_node_add_ip(&mut self, node: i64, ipaddr: &str, out: &mut Vec<Publish>) -> OpResult<NodeId> {
        let ip: IpAddr = ipaddr.trim().parse().map_err(|_| OpError::new(-1, "Not a valid IP address"))?;
        if self.nodes.by_ip(&ip).is_some() {
            return Err(OpError::new(-1, "IP address already assigned to a node"));
        }
        let now = self.now;
        let mut undo = self.undo_point();
        let id = if node == 0 {
            // A new node is nobody's decision yet: nothing of it needs saving.
            self.nodes.add(Candidate { ips: vec![ip], last_seen: now, ..Default::default() }, now)
        } else {
            let id = u64::try_from(node).unwrap_or(0);
            if !self.nodes.add_ip(id, ip) {
                self.undo(undo);
                return Err(OpError::new(-1, "Unknown node id"));
            }
            undo.added_ip = Some((id, ip));
            id
        };
        self.commit(undo, out, Vec::new())?;
        Ok(id)
    }

    /// DOTS "call home" signal (reference §7.1): block every device that had a flow matching a
    /// mitigation scope. All matched devices are blocked in one saved change, or none.
    pub fn op_dots_signal(&mut self, signal: &Value, out: &mut Vec<Publish>) -> OpResult<()> {
        if !self.settings.dots_enabled {
            return Err(OpError::new(1, "DOTS support is not enabled in spind.conf"));
        }
        let scopes = crate::model::dots::parse(signal).map_err(|m| OpError::new(1, m))?;
        let mut matched = BTreeSet::new();
        for (&device, records) in &self.device_flows {
            for &(remote, port, icmp) in records.keys() {
                let Some(node) = self.nodes.get(remote) else { continue };
                if scopes.iter().any(|s| s.matches(&node.ips, port, icmp)) {
                    matched.insert(device);
                }
            }
        }
        let undo = self.undo_point();
        for &device in &matched {
            info!(
                "DOTS signal matches device node {device}{}",
                if self.settings.dots_log_only { " (log only)" } else { "" }
            );
            if !self.settings.dots_log_only {
                self.set_node_listed(ListKind::Block, device, true);
            }
        }
        let msgs = if matched.is_empty() || self.settings.dots_log_only {
            Vec::new()
        } else {
            vec![self.list_msg(ListKind::Block, "block")]
        };
        self.commit(undo, out, msgs)
    }
}

impl Core {
    /// `add_name_rule`: a checked rule ([`crate::model::namerules::parse_rule`]) gets the next
    /// id, is saved, and holds from now (within its schedule and until its end).
    pub fn op_add_name_rule(&mut self, rule: NameRule, out: &mut Vec<Publish>) -> OpResult<u64> {
        let undo = self.undo_point();
        let id = self.name_rules.add(rule);
        self.name_rules_changed();
        let msg = self.name_rules_msg();
        self.commit(undo, out, vec![msg])?;
        Ok(id)
    }

    pub fn op_remove_name_rule(&mut self, id: i64, out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        if !self.name_rules.remove(u64::try_from(id).unwrap_or(0)) {
            self.undo(undo);
            return Err(OpError::new(-1, "Unknown name rule id"));
        }
        self.name_rules_changed();
        let msg = self.name_rules_msg();
        self.commit(undo, out, vec![msg])
    }

    pub fn op_list_name_rules(&self) -> serde_json::Value {
        self.name_rules.to_value()
    }

    /// The core's clock (unix time).
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// `pause_device`: cuts the device's internet until `until` (a later call replaces the time).
    pub fn op_pause_device(&mut self, device: MacAddr, until: Timestamp, out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        self.paused.insert(device, until);
        self.dirty.paused = true;
        self.enforce_pending = true;
        self.commit(undo, out, Vec::new())
    }

    /// `unpause_device`; error -1 when the device is not paused.
    pub fn op_unpause_device(&mut self, device: MacAddr, out: &mut Vec<Publish>) -> OpResult<()> {
        let undo = self.undo_point();
        if self.paused.remove(&device).is_none() {
            self.undo(undo);
            return Err(OpError::new(-1, "That device is not paused"));
        }
        self.dirty.paused = true;
        self.enforce_pending = true;
        self.commit(undo, out, Vec::new())
    }

    /// `list_paused_devices`: `[{"device": MAC, "until": T}, ...]`.
    pub fn op_list_paused(&self) -> serde_json::Value {
        self.paused
            .iter()
            .filter(|(_, until)| **until > self.now)
            .map(|(mac, until)| serde_json::json!({"device": mac.to_string(), "until": until}))
            .collect()
    }

    fn name_rules_changed(&mut self) {
        self.dirty.name_rules = true;
        self.matcher = std::sync::Arc::new(self.compile_name_rules());
        self.enforce_pending = true;
    }
}
