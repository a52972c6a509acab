//! The neighbour table (ARP/NDP) over rtnetlink: one dump (`RTM_GETNEIGH`), then the
//! `RTNLGRP_NEIGH` notifications. Every usable entry becomes an [`Event::Neighbour`]; the core
//! ignores mappings it already has, so repeated notifications (state changes) are cheap.
//!
//! Entries on a WAN interface (the ISP's gateway, other modems on the segment) are not devices
//! and produce nothing: see [`super::route`]. The same socket also receives the route
//! notifications that tell when the WAN interfaces may have changed, in order with the
//! neighbour notifications. Entries are neli's `Ndmsg`; [`neighbour`] is the pure parser of one.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Nda, Ntf, Nud, RtAddrFamily, Rtn};
use neli::consts::socket::NlFamily;
use neli::rtnl::{Ndmsg, NdmsgBuilder};
use neli::types::Buffer;

use super::mdns_groups::MdnsGroups;
use super::netlink::{self, messages, reply, NlSocket, Reply};
use super::route::{self, WanInterfaces, WanSet, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE};
use super::{now, KernelError, SourceCounters, FIX_RTNL};
use crate::model::event::{Event, Input, MacAddr};

const RTNLGRP_NEIGH: u32 = 3;
const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;

const RCVBUF: usize = 1 << 20;
const READ_BUF: usize = 64 << 10;

/// A subscribed rtnetlink socket with a dump request sent, and the WAN interfaces.
pub struct Neigh {
    sock: NlSocket,
    buf: Vec<u8>,
    wan: WanSet,
    follow_routes: bool,
}

fn open_and_dump(follow_routes: bool) -> io::Result<NlSocket> {
    // Subscribe before dumping: nothing that changes during the dump is missed.
    let groups: &[u32] =
        if follow_routes { &[RTNLGRP_NEIGH, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_ROUTE] } else { &[RTNLGRP_NEIGH] };
    let mut sock = NlSocket::open(NlFamily::Route, groups)?;
    sock.set_rcvbuf(RCVBUF);
    sock.set_recv_timeout(Duration::from_millis(500))?;
    let all = NdmsgBuilder::default()
        .ndm_family(RtAddrFamily::Unspecified)
        .ndm_index(0)
        .ndm_state(Nud::empty())
        .ndm_type(Rtn::Unspec)
        .build()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    sock.send(RTM_GETNEIGH, NlmF::DUMP, all)?;
    Ok(sock)
}

impl Neigh {
    /// Opens the socket, subscribes to neighbour (and route) notifications, reads the WAN
    /// interfaces (`wan_interfaces`) and requests the table.
    pub fn open(wan: &WanInterfaces) -> Result<Neigh, KernelError> {
        let follow_routes = *wan != WanInterfaces::Disabled;
        let err = |e| KernelError::from_io("read the neighbour table (rtnetlink)", FIX_RTNL, e);
        let sock = open_and_dump(follow_routes).map_err(err)?;
        // After subscribing: a route change from here on is notified and read again.
        let wan = WanSet::open(wan.clone()).map_err(err)?;
        Ok(Neigh { sock, buf: vec![0; READ_BUF], wan, follow_routes })
    }

    /// The interface indexes currently considered WAN.
    #[cfg(test)]
    pub fn wan_interfaces(&self) -> &std::collections::BTreeSet<i32> {
        self.wan.current()
    }

    /// Receives one datagram (dump part or notification) or times out after 0.5 s; appends a
    /// [`Event::Neighbour`] per usable entry. Returns the number of overruns (after one the
    /// socket is reopened and the table dumped again).
    pub fn recv(&mut self, out: &mut Vec<Event>) -> io::Result<u32> {
        let n = match self.sock.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => return Ok(0),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                self.sock = open_and_dump(self.follow_routes)?;
                // A route notification may have been lost too.
                self.wan.invalidate();
                return Ok(1);
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::debug!("neighbour table: {e}");
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        let time = now();
        for m in messages::<Buffer>(&self.buf[..n]).flatten() {
            match reply(&m) {
                Reply::Data(RTM_NEWNEIGH, payload) => {
                    if let Some(Neighbour { ifindex, ip, mac }) = neighbour(payload.as_ref()) {
                        if self.wan.is_wan(ifindex) {
                            log::trace!("neighbour {ip} ({mac}) is on WAN interface #{ifindex}: not a device");
                        } else {
                            out.push(Event::Neighbour { time, ip, mac });
                        }
                    }
                }
                Reply::Data(k, payload) if route::is_route_msg(k) => self.wan.route_changed(payload.as_ref()),
                Reply::Failed(e) => {
                    log::warn!("neighbour table dump failed: {}", io::Error::from_raw_os_error(e));
                }
                // RTM_DELNEIGH: SPIN never forgets a mapping (and a stale one is still true).
                _ => {}
            }
        }
        Ok(0)
    }

    pub(crate) fn run_until(mut self, tx: Sender<Input>, counters: &SourceCounters, stop: &AtomicBool) {
        let mut events = Vec::new();
        let mut failures = 0u32;
        let mut wan_sent: Option<Vec<String>> = None;
        let mut mdns = MdnsGroups::new();
        while !stop.load(Ordering::Relaxed) {
            // The WAN interfaces go to the core too: the enforcer's DNS redirect and DoT and
            // pause refusals apply to what faces the internet.
            self.wan.refresh_if_stale();
            mdns.refresh_if_due(self.wan.current());
            if wan_sent.as_deref() != Some(self.wan.names()) {
                let names = self.wan.names().to_vec();
                wan_sent = Some(names.clone());
                if tx.send(Input::Event(Event::WanInterfaces { names })).is_err() {
                    return;
                }
            }
            match self.recv(&mut events) {
                Ok(overruns) => {
                    failures = 0;
                    if overruns > 0 {
                        counters.neigh_enobufs.fetch_add(overruns as usize, Ordering::Relaxed);
                        log::warn!("neighbour notifications overran the receive buffer; table read again");
                    }
                }
                Err(e) => {
                    failures += 1;
                    log::warn!("neighbour table: {e}");
                    if failures > 10 {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            }
            for ev in events.drain(..) {
                if tx.send(Input::Event(ev)).is_err() {
                    return;
                }
            }
        }
    }
}

/// A neighbour entry that identifies a device: its interface, address and MAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub ifindex: i32,
    pub ip: IpAddr,
    pub mac: MacAddr,
}

/// Parses one `RTM_NEWNEIGH` payload (`ndmsg` and attributes). `None` unless it identifies a
/// device: a complete entry (not failed, not a proxy) with a unicast MAC and a usable address;
/// and for malformed input.
pub fn neighbour(payload: &[u8]) -> Option<Neighbour> {
    let nd: Ndmsg = netlink::payload(payload).ok()?;
    if nd.ndm_state().intersects(Nud::INCOMPLETE | Nud::FAILED) || nd.ndm_flags().contains(Ntf::PROXY) {
        return None;
    }
    let (mut ip, mut mac) = (None, None);
    for a in nd.rtattrs().iter() {
        let data = a.rta_payload().as_ref();
        match *a.rta_type() {
            Nda::Dst => {
                ip = match (*nd.ndm_family(), data.len()) {
                    (RtAddrFamily::Inet, 4) => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
                    (RtAddrFamily::Inet6, 16) => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
                    _ => None,
                }
            }
            Nda::Lladdr if data.len() == 6 => mac = Some(MacAddr(data.try_into().ok()?)),
            _ => {}
        }
    }
    let (ip, mac) = (ip?, mac?);
    let usable_ip = match ip {
        IpAddr::V4(a) => !(a.is_loopback() || a.is_multicast() || a.is_broadcast() || a.is_unspecified()),
        IpAddr::V6(a) => !(a.is_loopback() || a.is_multicast() || a.is_unspecified()),
    };
    (usable_ip && mac.is_unicast()).then_some(Neighbour { ifindex: *nd.ndm_index(), ip, mac })
}

pub(crate) fn check() -> Result<(), KernelError> {
    // Disabled: the check needs no WAN set (reading it would only log it twice at start-up).
    Neigh::open(&WanInterfaces::Disabled).map(|_| ())
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    // The wire numbers, written out: the messages below are built by hand, not by neli.
    const NDA_DST: u16 = 1;
    const NDA_LLADDR: u16 = 2;

    fn msg(family: u8, state: u16, dst: &[u8], mac: &[u8]) -> Vec<u8> {
        let mut p = vec![family, 0, 0, 0, 2, 0, 0, 0];
        p.extend_from_slice(&state.to_ne_bytes());
        p.extend_from_slice(&[0, 1]);
        for (k, d) in [(NDA_DST, dst), (NDA_LLADDR, mac)] {
            p.extend_from_slice(&((4 + d.len()) as u16).to_ne_bytes());
            p.extend_from_slice(&k.to_ne_bytes());
            p.extend_from_slice(d);
            while !p.len().is_multiple_of(4) {
                p.push(0);
            }
        }
        p
    }

    #[test]
    fn neighbour_entries() {
        let mac = [2, 0, 0, 0, 0, 1];
        let n = neighbour(&msg(2, 0x02, &[10, 0, 0, 5], &mac)).unwrap();
        assert_eq!(n.ip, "10.0.0.5".parse::<IpAddr>().unwrap());
        assert_eq!(n.mac, MacAddr(mac));
        assert_eq!(n.ifindex, 2);
        assert!(neighbour(&msg(2, 0x20, &[10, 0, 0, 5], &mac)).is_none()); // FAILED
        assert!(neighbour(&msg(2, 0x02, &[10, 0, 0, 5], &[1, 0, 0x5e, 0, 0, 1])).is_none()); // multicast MAC
        assert!(neighbour(&msg(2, 0x02, &[127, 0, 0, 1], &mac)).is_none());
        assert!(neighbour(&msg(7, 0x02, &[10, 0, 0, 5], &mac)).is_none()); // bridge fdb
        let v6 = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
        assert!(neighbour(&msg(10, 0x04, &v6, &mac)).is_some());
        let full = msg(10, 0x04, &v6, &mac);
        for cut in 0..full.len() {
            let _ = neighbour(&full[..cut]);
            let mut q = full.clone();
            q[cut] ^= 0xff;
            let _ = neighbour(&q);
        }
    }
}
