//! The sources room: everything that observes the network and turns it into
//! [`Event`](crate::model::event::Event)s for the core. On a router the kernel ([`kernel`]:
//! conntrack, NFLOG, neighbours over netlink); without root a replayed capture ([`replay`], with
//! the frame parsing in [`packet`]) or SPIN's external-source socket ([`extsrc`]).
//!
//! A source only ever sends `Input::Event`s into the core's channel: it owns no model state,
//! never names the core, and decides nothing (a blocked packet is reported, not judged). Only
//! [`kernel`] opens kernel sockets; [`fetch`] keeps the household's blocklists fresh with the
//! router's download command (the one command a source runs).

pub(crate) mod extsrc;
pub(crate) mod fetch;
pub(crate) mod kernel;
pub(crate) mod mdns;
pub(crate) mod packet;
pub(crate) mod replay;
