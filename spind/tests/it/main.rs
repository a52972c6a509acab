//! spind's integration tests, in one binary (one link instead of ten): each module is one area,
//! driving the real `spind` binary (or, for nftables, the library's enforcer) through its wire
//! protocols. What the areas share lives in the `testbed` crate (`xtask/testbed`: namespaces,
//! root and browser gates, launching spind, MQTT and HTTP clients, the browser driver) and in
//! [`common`] (this binary's spind and its fixtures).
//!
//! Tests that need root (namespaces) or chromium fail without them unless the runner opts out
//! (`SPIND_SKIP_ROOT_TESTS=1`, `SPIND_SKIP_BROWSER_TESTS=1`); under `CI=true` a skip is a failure.
//! No test asserts a timing bound: those are in `cargo xtask bench`.

mod blocklists_netns;
mod common;
mod crash_restart;
mod device_identity;
mod dns_guard_netns;
mod extsrc_input;
mod history_alerts;
mod history_netns;
mod homeassistant_discovery;
mod http_admin;
mod http_auth_tls;
mod http_capture;
mod http_routes;
mod malformed_floods;
mod mdns_netns;
mod mqtt_admin;
mod mqtt_clients;
mod names_netns;
mod nft_netns;
mod replay_stream;
mod router_netns;
mod rpc_transports;
mod schedules_netns;
mod services_netns;
mod startup_errors;
mod state_disk;
mod tidy;
mod ui_browser;
mod wifi_rpc;
