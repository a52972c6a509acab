//! The router's membership of the mDNS groups (224.0.0.251, ff02::fb) on its LAN interfaces.
//!
//! The kernel passes a multicast packet to the input hook (where the NFLOG rule copies mDNS
//! announcements to spind) only for a group the host has joined on that interface. An mDNS
//! responder (umdns, avahi) joins them, but our images need not run one, so spind joins them
//! itself, on every interface that is up, can multicast and is not WAN, and again every
//! [`REFRESH`] (an interface that came up later, or went down and back). The sockets are never
//! read: they are bound to an ephemeral port, so no announcement is queued on them, and the
//! membership alone makes the kernel take the group's packets in.

use std::collections::BTreeSet;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant};

use nix::net::if_::InterfaceFlags;

const MDNS_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const MDNS_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
/// How often the interfaces are looked at again.
pub const REFRESH: Duration = Duration::from_secs(30);

pub struct MdnsGroups {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    /// Interfaces (index, IPv6 or not) joined so far, for logging each once.
    joined: BTreeSet<(u32, bool)>,
    next: Instant,
}

impl MdnsGroups {
    pub fn new() -> MdnsGroups {
        let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok();
        let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).ok();
        MdnsGroups { v4, v6, joined: BTreeSet::new(), next: Instant::now() }
    }

    /// Joins the groups on the LAN interfaces, if [`REFRESH`] has passed; `wan`: the WAN
    /// interfaces' indexes (not joined there: announcements from the internet are not devices).
    pub fn refresh_if_due(&mut self, wan: &BTreeSet<i32>) {
        if Instant::now() < self.next {
            return;
        }
        self.next = Instant::now() + REFRESH;
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else { return };
        let want = InterfaceFlags::IFF_UP | InterfaceFlags::IFF_MULTICAST;
        for ifa in addrs {
            if !ifa.flags.contains(want) || ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK) {
                continue;
            }
            let Ok(index) = nix::net::if_::if_nametoindex(ifa.interface_name.as_str()) else { continue };
            if wan.contains(&(index as i32)) {
                continue;
            }
            // IPv4 names the interface by its address; IPv6 by its index (getifaddrs lists an
            // interface once per address: a second join is refused as in use).
            let v4_addr = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()).map(|s| s.ip());
            let result = match (v4_addr, &self.v4, &self.v6) {
                (Some(addr), Some(sock), _) => Some((false, sock.join_multicast_v4(&MDNS_V4, &addr))),
                (None, _, Some(sock)) => Some((true, sock.join_multicast_v6(&MDNS_V6, index))),
                _ => None,
            };
            match result {
                Some((v6, Ok(()))) if self.joined.insert((index, v6)) => {
                    log::info!("mDNS: listening for announcements on {}", ifa.interface_name);
                }
                Some((_, Ok(()))) => {}
                // Joined already (this socket, or after the interface came back): fine.
                Some((_, Err(e))) if e.kind() == io::ErrorKind::AddrInUse => {}
                Some((v6, Err(e))) => {
                    log::debug!(
                        "mDNS: cannot join the group on {} ({}): {e}",
                        ifa.interface_name,
                        if v6 { "IPv6" } else { "IPv4" }
                    );
                }
                None => {}
            }
        }
    }
}
