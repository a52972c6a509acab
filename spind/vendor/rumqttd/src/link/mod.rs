pub mod alerts;
pub mod bridge;
// spin-rs patch: the operator console and Prometheus exporter are a feature (`console`)
#[cfg(feature = "console")]
pub mod console;
pub mod local;
pub mod meters;
pub mod network;
pub mod remote;
pub mod timer;
