//! The test bed: the one harness of spind's integration tests, the benchmarks (`cargo xtask
//! bench`) and the QEMU tests (`qemu-tests`). Every command it runs goes through the runner
//! crate (re-exported as [`runner`]).
//!
//! - [`gate`]: whether a test that needs root or a browser may run here, and what a skip means
//!   (under `CI=true` a skip is always a failure);
//! - [`netns`]: network namespaces, from one namespace to a client — router — server home network
//!   with real DNS and HTTP services;
//! - [`spind`]: the real `spind` binary on its own ports and state directory;
//! - [`mqtt`]: a real MQTT subscriber (TCP or WebSocket) and Debian's mosquitto as external broker;
//! - [`http`]: raw HTTP/1.1 requests, JSON-RPC over HTTP and the unix socket, WebSocket handshakes;
//! - [`browser`]: Debian's chromium through chromedriver, and a stand-in broker for the UI's login;
//! - [`load`]: tens of thousands of UDP flows at once from a namespace (raw socket);
//! - [`dnsload`]: DNS queries at a fixed rate from a namespace, each reply matched and timed;
//! - [`bench`]: measurements with their bounds, for `cargo xtask bench` (never asserted in tests).
//!
//! Nothing here knows spind's internals: tests drive it through its wire protocols only.

pub mod bench;
pub mod browser;
pub mod dnsload;
pub mod gate;
pub mod http;
pub mod load;
pub mod mqtt;
pub mod netns;
pub mod spind;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

pub use gate::{is_root, root_or_skip};
/// The runner every command of the test bed goes through (`runner::cmd!`, spawned children).
pub use runner;

/// A TCP port that was free a moment ago on 127.0.0.1 and that no other caller in this process
/// gets (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different TCP ports, free a moment ago on every address, that no other caller in this
/// process gets. They come from a counter below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`): a port the kernel picks for `bind(0)` or for an outgoing
/// connection's source is in that range and may be handed out again as soon as it is released,
/// which once gave a spind started by one test an MQTT port that a parallel test's client had
/// just taken as its source port ("Address already in use").
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| next_free_port())
}

fn next_free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static NEXT: OnceLock<AtomicU32> = OnceLock::new();
    let (low, high) = test_port_range();
    let span = u32::from(high - low);
    // Start where another test process (a second test binary run at the same time) is unlikely to.
    let next = NEXT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(7919) % span));
    for _ in 0..span {
        let port = low + (next.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("0.0.0.0", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in {low}..{high}");
}

/// The ports the test bed hands out: from 10,000 up to the start of the ephemeral range (at most
/// 32,768, Linux's default start).
fn test_port_range() -> (u16, u16) {
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (10_000, ephemeral_start.clamp(12_000, 32_768))
}

/// Polls `f` until it returns `Some`, or panics naming what it waited for.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let (low, high) = super::test_port_range();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            for port in super::free_ports::<3>() {
                assert!((low..high).contains(&port), "{port} outside {low}..{high}");
                assert!(seen.insert(port), "{port} handed out twice");
            }
        }
    }
}
