//! The transports room: the control plane and the outputs to clients. JSON-RPC over the unix
//! socket ([`rpc_socket`]), HTTP ([`http`]: `POST /spin_api/jsonrpc`, the web UI, captures) and
//! MQTT ([`mqtt`]: the embedded broker or an external one, `SPIN/jsonrpc/q`), the web server's
//! Basic auth ([`auth`]), per-device packet capture ([`capture`]) and the alert webhook
//! ([`webhook`]). The network listeners (the web port's front, the unix socket, extsrc) run as
//! tasks on one tokio runtime ([`net`]).
//!
//! Transports never name the core: a JSON-RPC request is handed over as an `Input::Rpc` through
//! [`rpc_link`], and the core's answers and messages come back as strings and `Publish`es.
//! Network input is untrusted: sizes are bounded and bad input gets a clear error. Only
//! [`capture`] opens a kernel (packet) socket.

pub(crate) mod auth;
pub(crate) mod capture;
pub(crate) mod http;
pub(crate) mod mqtt;
pub(crate) mod net;
pub(crate) mod rpc_link;
pub(crate) mod rpc_socket;
pub(crate) mod webhook;
