//! spind: the SPIN daemon. See README.md for the architecture in a paragraph.
//!
//! Data flows one way through one owner of the state: sources (capture replay, extsrc, later the
//! kernel) and control transports (JSON-RPC over unix socket, HTTP, MQTT) send [`event::Input`]s
//! to the core, which owns the node model and emits [`event::Publish`]es for the broker.

pub mod addr;
pub mod auth;
pub mod capture;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod dots;
pub mod enforce;
pub mod event;
pub mod extsrc;
pub mod http;
pub mod kernel;
pub mod lists;
pub mod logging;
pub mod messages;
pub mod mqtt;
pub mod names;
pub mod nft;
pub mod nodes;
pub mod packet;
pub mod persist;
pub mod replay;
pub mod rpc;
pub mod rpc_unix;
pub mod stats;
