//! The model room: the core, the one owner of all state, and everything it owns. The node cache,
//! names, the block/allow/ignore lists, statistics, the per-device history and alerts (and their Home Assistant discovery), the values that flow between the rooms
//! ([`event`]: `Input`, `Event`, `Publish`), the policy handed to an enforcer, SPIN's message
//! shapes, the JSON-RPC dispatch and the state files.
//!
//! Data flows in as [`event::Input`]s (from `sources` and `transports`) and out as
//! [`event::Publish`]es (to the broker) and a [`policy::Policy`] (to the enforcer). This room
//! must not import `sources`, `transports`, `enforcer` or `daemon`, and does no I/O but its
//! state files (`persist`, the name files `names` reads, the blocklists' copies `listsources`
//! reads and the vendor file `identity` reads at start): so it is tested without a kernel,
//! a socket or a broker.

pub mod addr;
pub(crate) mod bedtimes;
pub(crate) mod blocklist;
pub(crate) mod core;
pub(crate) mod dots;
pub(crate) mod event;
pub(crate) mod flowblocks;
pub(crate) mod history;
pub(crate) mod homeassistant;
pub(crate) mod identity;
pub(crate) mod lists;
pub(crate) mod listsources;
pub(crate) mod messages;
pub(crate) mod namerules;
pub(crate) mod names;
pub(crate) mod nodes;
pub(crate) mod persist;
pub mod policy;
pub(crate) mod rpc;
pub(crate) mod services;
pub(crate) mod stats;
pub(crate) mod wifi;
