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
//! - [`bench`]: measurements with their bounds, for `cargo xtask bench` (never asserted in tests).
//!
//! Nothing here knows spind's internals: tests drive it through its wire protocols only.

pub mod bench;
pub mod browser;
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

/// A TCP port that was free a moment ago on 127.0.0.1 (it may be handed out twice: callers that
/// bind it retry on "address in use").
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different TCP ports that were free a moment ago on 127.0.0.1: every listener is held
/// until all are picked, so the kernel cannot hand the same one out twice (three separate
/// [`free_port`] calls once gave spind the same port for its web server and its MQTT WebSocket).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
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
    fn free_ports_are_distinct() {
        for _ in 0..200 {
            let ports = super::free_ports::<3>();
            assert!(ports[0] != ports[1] && ports[1] != ports[2] && ports[0] != ports[2], "{ports:?}");
        }
    }
}
