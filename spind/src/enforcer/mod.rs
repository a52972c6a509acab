//! The enforcer room: makes the kernel enforce the core's [`Policy`](crate::model::policy::Policy)
//! in nftables (`table inet spin`), in one atomic batch per change, and checks the result.
//!
//! It implements [`Enforcer`](crate::model::policy::Enforcer) and never decides policy: what is
//! blocked, allowed or paired comes from the core; this room only turns it into rules. It runs
//! `nft` (and nothing else does, outside `sources/kernel` and `transports/capture`'s sockets) and
//! never touches a table other than its own.

pub mod dnsqueue;
mod nft;

pub use nft::{classify, remove_table, script, script_at, Nft, NftEnforcer, NftError};
