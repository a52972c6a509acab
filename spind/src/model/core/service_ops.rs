//! The services side of [`Core`] (issue 13): `list_services` and `set_service` on the user's
//! switches ([`crate::model::services`]), saved in one batch like every control operation, and
//! the `blocked` message for a DNS query that the verdict path answered for a blocked name, so
//! that the graph shows the device's blocked edge to the name.

use std::net::IpAddr;

use super::{Core, OpError, OpResult};
use crate::model::event::{MacAddr, Publish, Timestamp};
use crate::model::messages::{self, FlowJson};
use crate::model::nodes::Candidate;
use crate::model::services;

impl Core {
    /// `list_services`: the catalogue with the switches for `device` (`None`: the network).
    pub fn op_list_services(&self, device: Option<MacAddr>) -> serde_json::Value {
        self.services.list(device)
    }

    /// `set_service`: switches a service of the catalogue off (`blocked`) or on again, for one
    /// device or (`None`) the whole network. Saved, enforced and published; setting what is
    /// already set changes nothing and succeeds.
    pub fn op_set_service(
        &mut self,
        id: &str,
        device: Option<MacAddr>,
        blocked: bool,
        out: &mut Vec<Publish>,
    ) -> OpResult<()> {
        if services::service(id).is_none() {
            return Err(OpError::new(-1, format!("Invalid 'service': '{id}' is not in the catalogue (list_services)")));
        }
        let undo = self.undo_point();
        if !self.services.set(id, device, blocked) {
            self.undo(undo);
            return Ok(());
        }
        self.dirty.services = true;
        // Which remembered addresses are blocked changed too (`names.resolved`).
        self.dirty.name_resolved = true;
        self.matcher = std::sync::Arc::new(self.compile_name_rules());
        self.enforce_pending = true;
        let msg = self.services_msg();
        self.commit(undo, out, vec![msg])
    }

    pub(super) fn services_msg(&self) -> Publish {
        self.traffic_msg(messages::services(&self.services.to_value()))
    }

    /// A query for a blocked name, answered by the verdict path: SPIN's `blocked` message from
    /// the device to the node of the name. The name's node (the one a `dnsquery` would name, with
    /// the DNS name and no address of its own unless the name resolved before) rather than a
    /// node of `0.0.0.0`: every blocked name would share that one node, and the graph could not
    /// say which name was blocked.
    pub(super) fn on_dns_blocked(
        &mut self,
        time: Timestamp,
        (client, client_port, protocol): (IpAddr, u16, u8),
        qname: &str,
    ) -> Vec<Publish> {
        self.stats.add("dns", "blocked-queries", 1);
        let from = self.node_for_ip(client, time);
        let domain = format!("{}.", qname.trim_end_matches('.'));
        let to = match self.nodes.by_domain(&domain) {
            Some(id) => {
                self.nodes.touch(id, time);
                id
            }
            None => {
                self.nodes.add(Candidate { domains: vec![(domain, None)], last_seen: time, ..Default::default() }, time)
            }
        };
        let f = FlowJson { from, to, protocol, from_port: client_port, to_port: 53, size: 0, count: 1 };
        vec![self.traffic_msg(messages::blocked(Some(&f)))]
    }
}
