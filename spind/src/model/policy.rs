//! What the firewall must enforce, and the interface of whatever enforces it.
//!
//! The core computes the whole desired [`Policy`] after every change and hands it to the
//! [`Enforcer`], which makes the kernel match it in one atomic step (nftables on a router).
//! Without a kernel (replay, passive mode) there is no enforcer and the core decides blocks
//! itself, so the UI and tools still see `blocked` traffic.

use std::net::IpAddr;

use crate::model::addr::IpNet;
use crate::model::nodes::NodeId;

/// All traffic between the addresses of two nodes is blocked (a flow block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairBlock {
    pub node1: NodeId,
    pub node2: NodeId,
    pub ips1: Vec<IpAddr>,
    pub ips2: Vec<IpAddr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub block: Vec<IpNet>,
    /// Never blocked, even when the peer is.
    pub allow: Vec<IpNet>,
    pub pairs: Vec<PairBlock>,
}

pub trait Enforcer: Send {
    /// Make the enforced rules equal `policy`, atomically.
    fn apply(&mut self, policy: &Policy) -> anyhow::Result<()>;

    /// Checks that the kernel still enforces what was applied last and restores it if not
    /// (someone flushed the ruleset); what was wrong, if anything. Called every second.
    fn heal(&mut self) -> anyhow::Result<Option<&'static str>> {
        Ok(None)
    }
}
