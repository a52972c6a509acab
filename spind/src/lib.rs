//! spind: the SPIN daemon. See README.md for the architecture in a paragraph.
//!
//! Data flows one way through one owner of the state: sources (capture replay, extsrc, later the
//! kernel) and control transports (JSON-RPC over unix socket, HTTP, MQTT) send [`event::Input`]s
//! to the core, which owns the node model and emits [`event::Publish`]es for the broker.

pub mod event;
pub mod extsrc;
pub mod packet;
pub mod replay;
