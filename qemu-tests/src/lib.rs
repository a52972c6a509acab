//! End-to-end tests that boot the router images in QEMU (`cargo xtask qemu-test`).
//!
//! The suite ([`suite`]) puts the image between two network namespaces: a LAN client and a
//! simulated internet, each on a tap device of one of the VM's NICs, and checks from the LAN
//! what spind sees (MQTT over TCP and WebSocket) and enforces (JSON-RPC blocks across a reboot).
//! On rpi3 the WiFi step ([`wifi`]) adds the image's access point on simulated radios and a
//! station in a namespace inside the guest. The `qemu-test` binary runs it and the small helpers that must run inside a namespace. The
//! namespaces and the MQTT client are the test bed's (`testbed`), commands the runner's.

pub mod mqtt;
pub mod netns;
pub mod suite;
pub mod vm;
pub mod wifi;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// `qemu-test probe ADDR PORT...`: one line per port: `ADDR PORT open|closed|filtered`.
/// ADDR may carry a zone (`fe80::1%wan0`).
pub fn probe(addr: &str, ports: &[u16]) -> Result<String, String> {
    let mut targets = Vec::new();
    for &p in ports {
        let sa: SocketAddr = if addr.contains(':') {
            let (ip, zone) = addr.split_once('%').unwrap_or((addr, ""));
            let ip: std::net::Ipv6Addr = ip.parse().map_err(|e| format!("{addr}: {e}"))?;
            let scope = if zone.is_empty() { 0 } else { if_index(zone)? };
            SocketAddr::V6(std::net::SocketAddrV6::new(ip, p, 0, scope))
        } else {
            (addr, p).to_socket_addrs().map_err(|e| e.to_string())?.next().ok_or("no address")?
        };
        targets.push((p, sa));
    }
    // All ports at once: a filtered port costs the whole timeout.
    let handles: Vec<_> = targets
        .into_iter()
        .map(|(p, sa)| {
            std::thread::spawn(move || {
                let state = match TcpStream::connect_timeout(&sa, Duration::from_secs(3)) {
                    Ok(_) => "open",
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => "closed",
                    Err(_) => "filtered",
                };
                (p, state)
            })
        })
        .collect();
    let mut out = String::new();
    for h in handles {
        let (p, state) = h.join().map_err(|_| "probe thread panicked")?;
        out.push_str(&format!("{addr} {p} {state}\n"));
    }
    Ok(out)
}

fn if_index(name: &str) -> Result<u32, String> {
    let c = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(format!("no interface {name}")),
        i => Ok(i),
    }
}
