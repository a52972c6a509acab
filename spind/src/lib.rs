//! spind: the SPIN daemon. The code map, the invariants and the threads are in
//! `docs/architecture.md`; README.md has the architecture in a paragraph.
//!
//! Data flows one way through one owner of the state, and the rooms are laid out that way:
//! [`sources`] (kernel, capture replay, extsrc) and [`transports`] (JSON-RPC over the unix
//! socket, HTTP and MQTT) send [`Input`](model::event::Input)s to the core in [`model`], which owns
//! the node model, emits [`Publish`](model::event::Publish)es for the broker and hands a
//! [`Policy`](model::policy::Policy) to the [`enforcer`]; [`daemon`] wires them together.
//!
//! The library's public face is what the binary and the integration tests need: the daemon's
//! entry point, and the enforcer with the policy it enforces (the nftables namespace tests drive
//! it directly); the pure parsers of kernel messages ([`kernel_parsers`]); and the entry points of
//! the fuzz targets (`fuzzing`, hidden).
//! Everything else is `pub(crate)`.

mod daemon;
pub mod enforcer;
pub mod model;
pub(crate) mod sources;
pub(crate) mod transports;

#[doc(hidden)]
pub mod fuzzing;

pub use daemon::main_with_args;
pub use sources::kernel::parsers as kernel_parsers;
