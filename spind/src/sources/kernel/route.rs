//! Which interfaces face the internet (WAN), so that neighbours learned there (the ISP's
//! gateway, other modems on a cable segment) do not become devices.
//!
//! Automatic: a WAN interface is one that carries a unicast default route (`0.0.0.0/0` or
//! `::/0`, also a source-specific IPv6 default route as OpenWrt installs them) in the main
//! table, found with an `RTM_GETROUTE` dump. The neighbour thread also listens to the route
//! notification groups and dumps again when a default route changes; because IPv4 drops
//! routes of a downed interface without notifying, it also dumps again when a neighbour
//! arrives and the last dump is older than [`MAX_AGE`].
//!
//! Explicit (`wan_interfaces = eth1,pppoe-wan`): exactly the named interfaces; `none`: no
//! interface is WAN (for a machine whose default route points into the LAN). Names are
//! resolved to indexes over rtnetlink (`RTM_GETLINK`) on the same refreshes, so an interface
//! created later (PPPoE) or re-created is found. Resolving over the socket rather than with
//! `if_nametoindex` asks the socket's network namespace, not the calling thread's (the same
//! in the daemon; not in tests that move sockets between namespaces). Routes and links are
//! neli's `Rtmsg` and `Ifinfomsg`; [`default_route_oifs`] and [`link`] are their pure parsers.

use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

use neli::consts::nl::NlmF;
use neli::consts::rtnl::{Ifla, RtAddrFamily, RtScope, RtTable, Rta, Rtn, Rtprot};
use neli::consts::socket::NlFamily;
use neli::rtnl::{Ifinfomsg, IfinfomsgBuilder, RtattrBuilder, Rtmsg, RtmsgBuilder};
use neli::types::{Buffer, RtBuffer};

use super::netlink::{self, messages, reply, NlSocket, Reply};

pub(crate) const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub(crate) const RTNLGRP_IPV6_ROUTE: u32 = 11;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_GETROUTE: u16 = 26;
const RT_TABLE_MAIN: u32 = 254;
/// sizeof(struct rtnexthop): len u16, flags u8, hops u8, ifindex i32.
const RTNH_LEN: usize = 8;

/// Longest time a WAN set is trusted before the next neighbour triggers a new dump.
pub const MAX_AGE: Duration = Duration::from_secs(10);

const READ_BUF: usize = 64 << 10;

/// The `wan_interfaces` setting.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum WanInterfaces {
    /// Interfaces with a default route (the setting is empty).
    #[default]
    Auto,
    /// Exactly these interface names.
    Named(Vec<String>),
    /// No interface is WAN: every neighbour is a device (`none`).
    Disabled,
}

impl WanInterfaces {
    /// Reads the config value: "" = automatic, "none" = disabled, else comma-separated names.
    pub fn parse(text: &str) -> WanInterfaces {
        let names: Vec<String> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
        if names.is_empty() {
            WanInterfaces::Auto
        } else if names.len() == 1 && names[0].eq_ignore_ascii_case("none") {
            WanInterfaces::Disabled
        } else {
            WanInterfaces::Named(names)
        }
    }
}

/// The current set of WAN interface indexes and when to refresh it.
pub struct WanSet {
    mode: WanInterfaces,
    sock: NlSocket,
    buf: Vec<u8>,
    /// Interface indexes considered WAN.
    wan: BTreeSet<i32>,
    /// The set last written to the log (changes are logged).
    last_logged: Option<BTreeSet<i32>>,
    /// The names of the interfaces in `wan`, read when the set changed.
    names: Vec<String>,
    refreshed: Option<Instant>,
    dirty: bool,
}

impl WanSet {
    /// Opens the query socket (in the calling thread's network namespace) and reads the set.
    pub fn open(mode: WanInterfaces) -> io::Result<WanSet> {
        let sock = NlSocket::open(NlFamily::Route, &[])?;
        sock.set_recv_timeout(Duration::from_secs(2))?;
        let mut w = WanSet {
            mode,
            sock,
            buf: vec![0; READ_BUF],
            wan: BTreeSet::new(),
            last_logged: None,
            names: Vec::new(),
            refreshed: None,
            dirty: true,
        };
        w.refresh();
        Ok(w)
    }

    /// Notes a route notification (`RTM_NEWROUTE`/`RTM_DELROUTE` payload): a change of a
    /// default route makes the next [`is_wan`](Self::is_wan) dump again.
    pub fn route_changed(&mut self, payload: &[u8]) {
        if payload.get(1) == Some(&0) {
            self.dirty = true;
        }
    }

    /// Marks the set as outdated (after a lost notification).
    pub fn invalidate(&mut self) {
        self.dirty = true;
    }

    /// Whether interface `ifindex` is a WAN interface; refreshes the set first when a default
    /// route changed or it is older than [`MAX_AGE`].
    pub fn is_wan(&mut self, ifindex: i32) -> bool {
        if self.mode == WanInterfaces::Disabled {
            return false;
        }
        if self.dirty || self.refreshed.is_none_or(|t| t.elapsed() >= MAX_AGE) {
            self.refresh();
        }
        self.wan.contains(&ifindex)
    }

    /// Reads the set again when a default route changed or it is older than [`MAX_AGE`].
    pub fn refresh_if_stale(&mut self) {
        if self.mode != WanInterfaces::Disabled && (self.dirty || self.refreshed.is_none_or(|t| t.elapsed() >= MAX_AGE))
        {
            self.refresh();
        }
    }

    /// The names of the WAN interfaces (an interface whose name cannot be read is left out).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The current set of WAN interface indexes.
    pub fn current(&self) -> &BTreeSet<i32> {
        &self.wan
    }

    /// Reads the set again; on failure keeps the old one (and tries again after [`MAX_AGE`]).
    pub fn refresh(&mut self) {
        self.dirty = false;
        self.refreshed = Some(Instant::now());
        let result = match self.mode.clone() {
            WanInterfaces::Disabled => Ok(BTreeSet::new()),
            WanInterfaces::Auto => self.default_route_interfaces(),
            WanInterfaces::Named(names) => {
                let mut set = BTreeSet::new();
                let mut err = None;
                for name in &names {
                    match self.link_index(name) {
                        Ok(Some(i)) => {
                            set.insert(i);
                        }
                        Ok(None) => {} // not (yet) there
                        Err(e) => err = Some(e),
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(set),
                }
            }
        };
        match result {
            Ok(set) => {
                self.wan = set;
                if self.last_logged.as_ref() != Some(&self.wan) {
                    let wan: Vec<i32> = self.wan.iter().copied().collect();
                    self.names = wan
                        .into_iter()
                        .filter_map(|i| match self.link(i, None) {
                            Ok(Some((_, name))) if !name.is_empty() => Some(name),
                            _ => None,
                        })
                        .collect();
                    log::info!("neighbours on WAN interfaces are not devices; WAN interfaces now: {}", self.describe());
                    self.last_logged = Some(self.wan.clone());
                }
            }
            Err(e) => log::warn!("cannot determine the WAN interfaces (rtnetlink): {e}; keeping {}", self.describe()),
        }
    }

    fn describe(&mut self) -> String {
        if self.wan.is_empty() {
            return "none".to_string();
        }
        let mode = match self.mode {
            WanInterfaces::Auto => "default route",
            _ => "wan_interfaces",
        };
        let wan: Vec<i32> = self.wan.iter().copied().collect();
        let names: Vec<String> = wan
            .into_iter()
            .map(|i| match self.link(i, None) {
                Ok(Some((_, name))) if !name.is_empty() => name,
                _ => format!("#{i}"),
            })
            .collect();
        format!("{} (by {mode})", names.join(", "))
    }

    /// Interfaces of unicast default routes in the main table, IPv4 and IPv6.
    fn default_route_interfaces(&mut self) -> io::Result<BTreeSet<i32>> {
        let mut set = BTreeSet::new();
        for family in [RtAddrFamily::Inet, RtAddrFamily::Inet6] {
            let all = RtmsgBuilder::default()
                .rtm_family(family)
                .rtm_dst_len(0)
                .rtm_src_len(0)
                .rtm_tos(0)
                .rtm_table(RtTable::Unspec)
                .rtm_protocol(Rtprot::Unspec)
                .rtm_scope(RtScope::Universe)
                .rtm_type(Rtn::Unspec)
                .build()
                .map_err(invalid)?;
            let seq = self.sock.send(RTM_GETROUTE, NlmF::DUMP, all)?;
            'dump: loop {
                let n = self.sock.recv(&mut self.buf)?;
                for m in messages::<Buffer>(&self.buf[..n]).flatten() {
                    if *m.nl_seq() != seq {
                        continue;
                    }
                    match reply(&m) {
                        Reply::Done => break 'dump,
                        Reply::Failed(e) => return Err(io::Error::from_raw_os_error(e)),
                        Reply::Data(RTM_NEWROUTE, payload) => set.extend(default_route_oifs(payload.as_ref())),
                        _ => {}
                    }
                }
            }
        }
        Ok(set)
    }

    /// The index of interface `name` in the socket's namespace; `None` when there is none.
    fn link_index(&mut self, name: &str) -> io::Result<Option<i32>> {
        Ok(self.link(0, Some(name))?.map(|(i, _)| i))
    }

    /// Asks for one link by index or name: `(index, name)`, `None` when there is no such link.
    fn link(&mut self, index: i32, name: Option<&str>) -> io::Result<Option<(i32, String)>> {
        let mut attrs = RtBuffer::new();
        if let Some(name) = name {
            let mut z = name.as_bytes().to_vec();
            z.push(0);
            attrs.push(
                RtattrBuilder::default()
                    .rta_type(Ifla::Ifname)
                    .rta_payload(Buffer::from(z))
                    .build()
                    .map_err(invalid)?,
            );
        }
        let one = IfinfomsgBuilder::default()
            .ifi_family(RtAddrFamily::Unspecified)
            .ifi_index(index)
            .rtattrs(attrs)
            .build()
            .map_err(invalid)?;
        let seq = self.sock.send(RTM_GETLINK, NlmF::ACK, one)?;
        let mut found = None;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for m in messages::<Buffer>(&self.buf[..n]).flatten() {
                if *m.nl_seq() != seq {
                    continue;
                }
                match reply(&m) {
                    // The acknowledgement follows the reply.
                    Reply::Data(RTM_NEWLINK, payload) => found = link(payload.as_ref()),
                    Reply::Done => return Ok(found),
                    Reply::Failed(libc::ENODEV) => return Ok(None),
                    Reply::Failed(e) => return Err(io::Error::from_raw_os_error(e)),
                    _ => {}
                }
            }
        }
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// Parses one `RTM_NEWLINK` payload (`ifinfomsg` and attributes): `(index, name)`; the name is
/// empty when the message has none. `None` for malformed input.
pub fn link(payload: &[u8]) -> Option<(i32, String)> {
    let l: Ifinfomsg = netlink::payload(payload).ok()?;
    let name = l
        .rtattrs()
        .iter()
        .find(|a| *a.rta_type() == Ifla::Ifname)
        .map(|a| {
            let d = a.rta_payload().as_ref();
            String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(d)).into_owned()
        })
        .unwrap_or_default();
    Some((*l.ifi_index(), name))
}

/// Parses one `RTM_NEWROUTE` payload (`rtmsg` and attributes): the output interfaces when it
/// is a unicast default route of the main table (a source-specific one counts: OpenWrt's IPv6
/// default routes are `default from <prefix>`), else none. Malformed input: none.
pub fn default_route_oifs(payload: &[u8]) -> Vec<i32> {
    let Ok(r) = netlink::payload::<Rtmsg>(payload) else { return Vec::new() };
    let family = *r.rtm_family();
    if (family != RtAddrFamily::Inet && family != RtAddrFamily::Inet6)
        || *r.rtm_dst_len() != 0
        || *r.rtm_type() != Rtn::Unicast
    {
        return Vec::new();
    }
    let mut table = u32::from(u8::from(*r.rtm_table()));
    let mut oifs = Vec::new();
    for a in r.rtattrs().iter() {
        let data = a.rta_payload().as_ref();
        match *a.rta_type() {
            Rta::Table if data.len() == 4 => table = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]),
            Rta::Oif if data.len() == 4 => oifs.push(i32::from_ne_bytes([data[0], data[1], data[2], data[3]])),
            Rta::Multipath => next_hop_oifs(data, &mut oifs),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return Vec::new();
    }
    oifs.retain(|&i| i > 0);
    oifs
}

/// The interfaces of an `RTA_MULTIPATH` attribute: a list of `struct rtnexthop` (neli has no
/// type for it), each followed by its own attributes.
fn next_hop_oifs(mut rest: &[u8], oifs: &mut Vec<i32>) {
    while rest.len() >= RTNH_LEN {
        let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
        if len < RTNH_LEN || len > rest.len() {
            break;
        }
        oifs.push(i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]));
        rest = rest.get(netlink::align4(len)..).unwrap_or(&[]);
    }
}

/// Whether a route notification type is one [`WanSet::route_changed`] wants.
pub(crate) fn is_route_msg(kind: u16) -> bool {
    kind == RTM_NEWROUTE || kind == RTM_DELROUTE
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    // The wire numbers, written out: the messages below are built by hand, not by neli.
    const RTA_OIF: u16 = 4;
    const RTA_MULTIPATH: u16 = 9;
    const RTA_TABLE: u16 = 15;

    fn route(family: u8, dst_len: u8, table: u8, kind: u8, attrs: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![family, dst_len, 0, 0, table, 4, 0, kind, 0, 0, 0, 0];
        for (k, d) in attrs {
            p.extend_from_slice(&((4 + d.len()) as u16).to_ne_bytes());
            p.extend_from_slice(&k.to_ne_bytes());
            p.extend_from_slice(d);
            while !p.len().is_multiple_of(4) {
                p.push(0);
            }
        }
        p
    }

    fn oifs(payload: &[u8]) -> Vec<i32> {
        let s: BTreeSet<i32> = default_route_oifs(payload).into_iter().collect();
        s.into_iter().collect()
    }

    #[test]
    fn default_routes() {
        let oif = |i: i32| (RTA_OIF, i.to_ne_bytes().to_vec());
        assert_eq!(oifs(&route(2, 0, 254, 1, &[oif(3)])), vec![3]);
        assert_eq!(oifs(&route(10, 0, 254, 1, &[oif(4)])), vec![4]);
        assert!(oifs(&route(2, 24, 254, 1, &[oif(3)])).is_empty(), "not a default route");
        assert!(oifs(&route(2, 0, 255, 1, &[oif(3)])).is_empty(), "local table");
        assert!(oifs(&route(10, 0, 254, 7, &[oif(1)])).is_empty(), "unreachable default");
        // Table ids above 255 come as RTA_TABLE (rtm_table = RT_TABLE_COMPAT 252).
        assert!(oifs(&route(2, 0, 252, 1, &[(RTA_TABLE, 1000u32.to_ne_bytes().to_vec()), oif(3)])).is_empty());
        assert_eq!(oifs(&route(2, 0, 252, 1, &[(RTA_TABLE, 254u32.to_ne_bytes().to_vec()), oif(3)])), vec![3]);
        // Multipath: two next hops.
        let mut mp = Vec::new();
        for i in [5i32, 6] {
            mp.extend_from_slice(&8u16.to_ne_bytes());
            mp.extend_from_slice(&[0, 0]);
            mp.extend_from_slice(&i.to_ne_bytes());
        }
        assert_eq!(oifs(&route(2, 0, 254, 1, &[(RTA_MULTIPATH, mp.clone())])), vec![5, 6]);
        let full = route(10, 0, 254, 1, &[(RTA_MULTIPATH, mp), oif(2)]);
        for cut in 0..full.len() {
            let _ = oifs(&full[..cut]);
            let mut q = full.clone();
            q[cut] ^= 0xff;
            let _ = oifs(&q);
        }
    }

    #[test]
    fn links() {
        let mut p = vec![0u8; 16];
        p[4..8].copy_from_slice(&7i32.to_ne_bytes());
        p.extend_from_slice(&9u16.to_ne_bytes());
        p.extend_from_slice(&3u16.to_ne_bytes()); // IFLA_IFNAME
        p.extend_from_slice(b"wan0\0\0\0\0");
        assert_eq!(link(&p), Some((7, "wan0".to_string())));
        assert_eq!(link(&p[..16]), Some((7, String::new())));
        for cut in 0..p.len() {
            let _ = link(&p[..cut]);
        }
    }

    #[test]
    fn setting() {
        assert_eq!(WanInterfaces::parse(""), WanInterfaces::Auto);
        assert_eq!(WanInterfaces::parse(" , "), WanInterfaces::Auto);
        assert_eq!(WanInterfaces::parse("none"), WanInterfaces::Disabled);
        assert_eq!(
            WanInterfaces::parse("eth1, pppoe-wan,"),
            WanInterfaces::Named(vec!["eth1".into(), "pppoe-wan".into()])
        );
    }
}
