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
//! in the daemon; not in tests that move sockets between namespaces).

use std::collections::BTreeSet;
use std::io;
use std::time::{Duration, Instant};

use super::{Attrs, MsgBuilder, NlMsgs, NlSocket, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};

pub(crate) const RTNLGRP_IPV4_ROUTE: u32 = 7;
pub(crate) const RTNLGRP_IPV6_ROUTE: u32 = 11;
pub(crate) const RTM_NEWROUTE: u16 = 24;
pub(crate) const RTM_DELROUTE: u16 = 25;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_GETROUTE: u16 = 26;
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
const RTA_OIF: u16 = 4;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const IFLA_IFNAME: u16 = 3;
/// sizeof(struct rtmsg): family, dst_len, src_len, tos, table, protocol, scope, type, flags u32.
const RTMSG_LEN: usize = 12;
/// sizeof(struct ifinfomsg): family, pad, type u16, index i32, flags u32, change u32.
const IFINFOMSG_LEN: usize = 16;
/// sizeof(struct rtnexthop): len u16, flags u8, hops u8, ifindex i32.
const RTNH_LEN: usize = 8;

/// Longest time a WAN set is trusted before the next neighbour triggers a new dump.
pub const MAX_AGE: Duration = Duration::from_secs(10);

const NETLINK_ROUTE: libc::c_int = 0;
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
    refreshed: Option<Instant>,
    dirty: bool,
}

impl WanSet {
    /// Opens the query socket (in the calling thread's network namespace) and reads the set.
    pub fn open(mode: WanInterfaces) -> io::Result<WanSet> {
        let sock = NlSocket::open(NETLINK_ROUTE)?;
        sock.set_recv_timeout(Duration::from_secs(2))?;
        let mut w = WanSet {
            mode,
            sock,
            buf: vec![0; READ_BUF],
            wan: BTreeSet::new(),
            last_logged: None,
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

    /// The current set (for tests).
    #[cfg(test)]
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
        for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
            let mut hdr = [0u8; RTMSG_LEN];
            hdr[0] = family;
            let mut req = MsgBuilder::new(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP).raw(&hdr).finish();
            let seq = self.sock.next_seq();
            req[8..12].copy_from_slice(&seq.to_ne_bytes());
            self.sock.send(&req)?;
            'dump: loop {
                let n = self.sock.recv(&mut self.buf)?;
                for m in NlMsgs::new(&self.buf[..n]) {
                    if m.seq != seq {
                        continue;
                    }
                    match m.kind {
                        NLMSG_DONE => break 'dump,
                        NLMSG_ERROR => match m.error_code() {
                            Some(0) => break 'dump,
                            Some(e) => return Err(io::Error::from_raw_os_error(e)),
                            None => return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                        },
                        RTM_NEWROUTE => default_route_oifs(m.payload, &mut set),
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
        let mut ifi = [0u8; IFINFOMSG_LEN];
        ifi[4..8].copy_from_slice(&index.to_ne_bytes());
        let mut b = MsgBuilder::new(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK).raw(&ifi);
        if let Some(name) = name {
            let mut z = name.as_bytes().to_vec();
            z.push(0);
            b = b.attr(IFLA_IFNAME, &z);
        }
        let mut req = b.finish();
        let seq = self.sock.next_seq();
        req[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.sock.send(&req)?;
        let mut found = None;
        loop {
            let n = self.sock.recv(&mut self.buf)?;
            for m in NlMsgs::new(&self.buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    // The acknowledgement follows the reply.
                    RTM_NEWLINK => found = parse_link(m.payload),
                    NLMSG_ERROR => {
                        return match m.error_code() {
                            Some(0) => Ok(found),
                            Some(libc::ENODEV) => Ok(None),
                            Some(e) => Err(io::Error::from_raw_os_error(e)),
                            None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                        };
                    }
                    _ => {}
                }
            }
        }
    }
}

/// `(index, name)` of an `RTM_NEWLINK` payload.
fn parse_link(payload: &[u8]) -> Option<(i32, String)> {
    let b = payload.get(4..8)?;
    let index = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
    let name = Attrs::new(payload.get(IFINFOMSG_LEN..)?)
        .find(|(k, _)| *k == IFLA_IFNAME)
        .map(|(_, d)| String::from_utf8_lossy(d.split(|&c| c == 0).next().unwrap_or(d)).into_owned())
        .unwrap_or_default();
    Some((index, name))
}

/// Adds the output interfaces of an `RTM_NEWROUTE` payload to `set` when it is a unicast
/// default route of the main table (a source-specific one counts: OpenWrt's IPv6 default
/// routes are `default from <prefix>`).
pub(crate) fn default_route_oifs(payload: &[u8], set: &mut BTreeSet<i32>) {
    let Some(hdr) = payload.get(..RTMSG_LEN) else { return };
    let family = hdr[0] as libc::c_int;
    if (family != libc::AF_INET && family != libc::AF_INET6) || hdr[1] != 0 || hdr[7] != RTN_UNICAST {
        return;
    }
    let mut table = hdr[4] as u32;
    let mut oifs = Vec::new();
    for (kind, data) in Attrs::new(&payload[RTMSG_LEN..]) {
        match kind {
            RTA_TABLE if data.len() == 4 => table = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]),
            RTA_OIF if data.len() == 4 => oifs.push(i32::from_ne_bytes([data[0], data[1], data[2], data[3]])),
            RTA_MULTIPATH => {
                let mut rest = data;
                while rest.len() >= RTNH_LEN {
                    let len = u16::from_ne_bytes([rest[0], rest[1]]) as usize;
                    if len < RTNH_LEN || len > rest.len() {
                        break;
                    }
                    oifs.push(i32::from_ne_bytes([rest[4], rest[5], rest[6], rest[7]]));
                    rest = rest.get(super::align4(len)..).unwrap_or(&[]);
                }
            }
            _ => {}
        }
    }
    if table == RT_TABLE_MAIN {
        set.extend(oifs.into_iter().filter(|&i| i > 0));
    }
}

/// Whether a route notification type is one [`WanSet::route_changed`] wants.
pub(crate) fn is_route_msg(kind: u16) -> bool {
    kind == RTM_NEWROUTE || kind == RTM_DELROUTE
}

#[cfg(test)]
mod unit_tests {
    use super::*;

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
        let mut s = BTreeSet::new();
        default_route_oifs(payload, &mut s);
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
