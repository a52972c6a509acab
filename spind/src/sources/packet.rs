//! Stateful packet decoder: link-layer frames in, [`Event`]s out.
//!
//! This is what spind sees instead of the kernel when it replays a capture:
//! * **flows**: a small conntrack emulation. Packets are grouped into connections keyed by
//!   protocol, addresses and ports; every capture second produces one [`Event::Flows`] batch
//!   with one sample per connection that had traffic in that second, in the initiator's
//!   direction and with both directions summed (conntrack accounting semantics).
//! * **DNS** over UDP and TCP port 53 ([`Event::DnsQuery`], [`Event::DnsAnswer`]).
//! * **mDNS** responses and announcements (UDP 5353 to 5353): a device's own host name and
//!   services ([`Event::MdnsName`], parsed by [`crate::sources::mdns`]).
//! * **neighbours** ([`Event::Neighbour`]): an address belongs to a device (a MAC) only when the
//!   capture shows the device owning it: ARP, IPv6 neighbour discovery and DHCP acknowledgements
//!   say so directly; the Ethernet source of a frame counts only when its source address is on
//!   the link itself ([`LocalNets`]: the subnets ARP, neighbour discovery, router advertisements
//!   and DHCP show, and link-local addresses). A router's MAC carries all remote traffic, also
//!   from private ranges behind it (double NAT, another home subnet, a VPN): those addresses stay
//!   remote. Emitted only when a mapping is new or changed.
//!
//! Parsing is done with etherparse (frames) and hickory-proto (DNS); only the Linux cooked
//! headers, the NDP option walk and the DNS name rendering are done by hand (see there why).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TransportSlice};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{Name, RData};

use crate::model::event::{DnsData, DnsRecord, Event, FlowSample, MacAddr, Timestamp};
use crate::sources::mdns;

/// Connections idle for longer than this (capture seconds) are forgotten.
const CONN_IDLE_SECS: i64 = 120;
/// How often (capture seconds) idle state is swept.
const GC_INTERVAL_SECS: i64 = 30;
/// Upper bound of one TCP DNS reassembly buffer (a 2-byte length prefix + the largest message).
const TCP_DNS_BUF_MAX: usize = 2 + 65535;
/// Upper bound of concurrently reassembled TCP DNS streams (memory bound).
const TCP_DNS_STREAMS_MAX: usize = 4096;
/// Upper bound of remembered ip -> mac mappings; the map is reset when exceeded.
const NEIGHBOURS_MAX: usize = 1 << 16;
/// Upper bound of learned local subnets per family (a home has a handful; more is bad input).
const LOCAL_NETS_MAX: usize = 64;
/// The prefix an address proven on the link stands for when nothing says better (DHCP's mask,
/// a router advertisement's prefix): the usual home LAN /24 and the IPv6 /64.
const ASSUMED_V4_PREFIX: u8 = 24;
const ASSUMED_V6_PREFIX: u8 = 64;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;

/// The link-layer header types the decoder understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (optionally VLAN/QinQ tagged).
    Ethernet,
    /// Linux "cooked" capture v1 (`tcpdump -i any`).
    LinuxSll,
    /// Linux "cooked" capture v2.
    LinuxSll2,
    /// Raw IPv4 or IPv6, version taken from the packet (DLT_RAW, LINKTYPE_IPV4/IPV6).
    RawIp,
    /// BSD loopback encapsulation (DLT_NULL host order, DLT_LOOP network order).
    Null,
}

impl LinkType {
    /// Maps a pcap link type; `None` for the ones we cannot decode.
    pub fn from_datalink(dl: pcap_file::DataLink) -> Option<LinkType> {
        use pcap_file::DataLink as D;
        Some(match dl {
            D::ETHERNET => LinkType::Ethernet,
            D::LINUX_SLL => LinkType::LinuxSll,
            D::LINUX_SLL2 => LinkType::LinuxSll2,
            D::RAW | D::IPV4 | D::IPV6 => LinkType::RawIp,
            D::NULL | D::LOOP => LinkType::Null,
            _ => return None,
        })
    }
}

/// A small multiplicative hasher (FxHash): the default SipHash costs more than the rest of
/// the per-packet work. Captures are local input, so hash flooding is not a concern.
#[derive(Clone, Copy, Default)]
pub(crate) struct FxBuild;

pub(crate) struct FxHasher(u64);

impl BuildHasher for FxBuild {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64)
    }
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    fn finish(&self) -> u64 {
        // Multiplication only moves entropy upwards, but the table indexes by the low bits:
        // fold the high half down (murmur3's finaliser step).
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    }
}

type FxMap<K, V> = HashMap<K, V, FxBuild>;

/// A connection in canonical order: `(a, pa) <= (b, pb)`, so both directions share a key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct ConnKey {
    proto: u8,
    a: IpAddr,
    b: IpAddr,
    pa: u16,
    pb: u16,
}

impl ConnKey {
    /// Returns the key and whether the sender is the `a` side.
    fn new(proto: u8, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> (ConnKey, bool) {
        if (src, sport) <= (dst, dport) {
            (ConnKey { proto, a: src, b: dst, pa: sport, pb: dport }, true)
        } else {
            (ConnKey { proto, a: dst, b: src, pa: dport, pb: sport }, false)
        }
    }
}

struct Conn {
    /// The initiator (the side reported as `src`) is the `a` side of the key.
    init_is_a: bool,
    icmp_type: u8,
    /// Counters of second `sec` only.
    bytes: u64,
    /// Of `bytes`, those sent by the `b` side (the reply when the `a` side initiated).
    bytes_b: u64,
    packets: u64,
    /// Second the counters belong to (also the last second with traffic, for expiry).
    sec: i64,
}

/// One direction of a TCP stream to or from port 53, for length-prefixed DNS messages.
struct TcpDnsStream {
    next_seq: u32,
    buf: Vec<u8>,
    last_sec: i64,
}

/// What the transport layer of one packet told us, for flow accounting.
struct L4 {
    proto: u8,
    sport: u16,
    dport: u16,
    icmp_type: u8,
    /// TCP: SYN set, ACK clear (marks the sender as initiator).
    syn: bool,
    /// TCP: SYN and ACK set (marks the receiver as initiator).
    syn_ack: bool,
}

/// The subnets a capture shows as its own link: where a frame's source address may be taken
/// as the address of the frame's sender MAC. Learned from what only happens on a link (ARP,
/// neighbour discovery, router advertisements, DHCP); link-local ranges always are.
#[derive(Clone, Debug, Default)]
pub(crate) struct LocalNets {
    v4: Vec<(u32, u8)>,
    v6: Vec<(u128, u8)>,
}

fn mask4(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

impl LocalNets {
    /// `ip/len` is a subnet of this link.
    pub(crate) fn learn(&mut self, ip: IpAddr, len: u8) {
        match ip {
            IpAddr::V4(a) => {
                let len = len.min(32);
                // A /0-/7 "subnet" is nobody's LAN: bad input must not make the internet local.
                if len < 8 || a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                    return;
                }
                let net = u32::from(a) & mask4(len);
                if self.v4.iter().any(|&(n, l)| l <= len && net & mask4(l) == n) || self.v4.len() >= LOCAL_NETS_MAX {
                    return;
                }
                // A wider prefix replaces the narrower ones inside it.
                self.v4.retain(|&(n, l)| !(l > len && n & mask4(len) == net));
                self.v4.push((net, len));
            }
            IpAddr::V6(a) => {
                let len = len.min(128);
                if len < 16 || a.is_unspecified() || a.is_multicast() {
                    return;
                }
                let net = u128::from(a) & mask6(len);
                if self.v6.iter().any(|&(n, l)| l <= len && net & mask6(l) == n) || self.v6.len() >= LOCAL_NETS_MAX {
                    return;
                }
                self.v6.retain(|&(n, l)| !(l > len && n & mask6(len) == net));
                self.v6.push((net, len));
            }
        }
    }

    /// An address proven on the link: its subnet as far as we can tell.
    fn learn_address(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(_) => self.learn(ip, ASSUMED_V4_PREFIX),
            IpAddr::V6(_) => self.learn(ip, ASSUMED_V6_PREFIX),
        }
    }

    /// Whether `ip` is on this link: link-local, or in a learned subnet.
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let x = u32::from(*a);
                a.is_link_local() || self.v4.iter().any(|&(n, l)| x & mask4(l) == n)
            }
            IpAddr::V6(a) => {
                let x = u128::from(*a);
                (a.segments()[0] & 0xffc0) == 0xfe80 || self.v6.iter().any(|&(n, l)| x & mask6(l) == n)
            }
        }
    }
}

/// Turns captured frames into [`Event`]s. See the module documentation.
pub struct Decoder {
    conns: FxMap<ConnKey, Conn>,
    /// Keys of connections with traffic in `cur_sec` (so a flush does not scan all connections).
    active: Vec<ConnKey>,
    /// The second being accumulated; `None` before the first frame.
    cur_sec: Option<i64>,
    last_gc: i64,
    neighbours: FxMap<IpAddr, MacAddr>,
    /// Where a frame's source address belongs to the frame's sender.
    local: LocalNets,
    tcp_dns: FxMap<(IpAddr, u16, IpAddr, u16), TcpDnsStream>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            conns: FxMap::default(),
            active: Vec::new(),
            cur_sec: None,
            last_gc: i64::MIN,
            neighbours: FxMap::default(),
            local: LocalNets::default(),
            tcp_dns: FxMap::default(),
        }
    }

    /// Moves the decoder's clock to second `sec`: if that is later than the second being
    /// accumulated, its flows are emitted first. Earlier seconds are ignored (the clock never
    /// goes back; late packets count towards the current second).
    pub fn advance(&mut self, sec: i64, out: &mut Vec<Event>) {
        match self.cur_sec {
            Some(cur) if sec <= cur => return,
            Some(_) => self.flush(out),
            None => self.last_gc = sec,
        }
        self.cur_sec = Some(sec);
        if sec - self.last_gc >= GC_INTERVAL_SECS {
            self.gc(sec);
        }
    }

    /// Decodes one frame captured at `ts` (unix seconds), appending resulting events to `out`.
    /// Frames that cannot be decoded are ignored.
    pub fn frame(&mut self, ts: f64, link: LinkType, data: &[u8], out: &mut Vec<Event>) {
        let sec = second_of(ts);
        self.advance(sec, out);
        let sec = self.cur_sec.unwrap_or(sec);

        // The sender MAC of the frame, if the link layer has one (for on-link learning).
        let mut src_mac = None;
        let pkt = match link {
            LinkType::Ethernet => match LaxSlicedPacket::from_ethernet(data) {
                Ok(p) => {
                    if let Some(etherparse::LinkSlice::Ethernet2(eth)) = &p.link {
                        src_mac = Some(MacAddr(eth.source()));
                    }
                    p
                }
                Err(_) => return,
            },
            LinkType::LinuxSll | LinkType::LinuxSll2 => {
                let Some(sll) = parse_sll(link == LinkType::LinuxSll2, data) else { return };
                src_mac = sll.src_mac;
                LaxSlicedPacket::from_ether_type(EtherType(sll.protocol), sll.payload)
            }
            LinkType::RawIp => match LaxSlicedPacket::from_ip(data) {
                Ok(p) => p,
                Err(_) => return,
            },
            LinkType::Null => {
                let Some(payload) = data.get(4..) else { return };
                match LaxSlicedPacket::from_ip(payload) {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        self.packet(sec, src_mac, &pkt, out);
    }

    /// Emits the flows of the second being accumulated (call at the end of a capture).
    pub fn finish(&mut self, out: &mut Vec<Event>) {
        self.flush(out);
    }

    fn packet(&mut self, sec: i64, src_mac: Option<MacAddr>, pkt: &LaxSlicedPacket<'_>, out: &mut Vec<Event>) {
        let (src, dst, ip_len, payload) = match &pkt.net {
            Some(LaxNetSlice::Arp(arp)) => {
                self.arp(sec, arp, out);
                return;
            }
            Some(LaxNetSlice::Ipv4(ip)) => {
                let h = ip.header();
                // A zero total length happens with TSO/GRO captures: fall back to what we have.
                let len = match h.total_len() {
                    0 => h.slice().len() + ip.payload().payload.len(),
                    n => n as usize,
                };
                (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), len, ip.payload())
            }
            Some(LaxNetSlice::Ipv6(ip)) => {
                let h = ip.header();
                let len = h.payload_length() as usize + 40;
                (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), len, ip.payload())
            }
            None => return,
        };

        // A frame's sender owns its source address only when that address is on this link;
        // otherwise the sender is a router forwarding somebody else's packet.
        if let Some(mac) = src_mac {
            if self.local.contains(&src) {
                self.neighbour(sec, src, mac, out);
            }
        }

        let mut l4 = L4 { proto: payload.ip_number.0, sport: 0, dport: 0, icmp_type: 0, syn: false, syn_ack: false };
        match &pkt.transport {
            Some(TransportSlice::Udp(udp)) => {
                l4.sport = udp.source_port();
                l4.dport = udp.destination_port();
                if (l4.sport == 53 || l4.dport == 53) && !payload.incomplete {
                    self.dns(sec, src, udp.payload(), out);
                }
                if l4.sport == DHCP_SERVER_PORT && l4.dport == DHCP_CLIENT_PORT {
                    self.dhcp(sec, udp.payload(), out);
                }
                if l4.sport == mdns::MDNS_PORT && l4.dport == mdns::MDNS_PORT && !payload.incomplete {
                    // The frame's sender is the device only on the link (as for neighbours).
                    let mac = src_mac.filter(|m| m.is_unicast() && self.local.contains(&src));
                    self.mdns(sec, src, mac, udp.payload(), out);
                }
            }
            Some(TransportSlice::Tcp(tcp)) => {
                l4.sport = tcp.source_port();
                l4.dport = tcp.destination_port();
                l4.syn = tcp.syn() && !tcp.ack();
                l4.syn_ack = tcp.syn() && tcp.ack();
                if l4.sport == 53 || l4.dport == 53 {
                    self.tcp_dns(sec, src, dst, tcp, out);
                }
            }
            Some(TransportSlice::Icmpv4(icmp)) => {
                l4.icmp_type = icmp.type_u8();
                // Echo request/reply: the identifier separates "connections", as in conntrack.
                if matches!(l4.icmp_type, 0 | 8) {
                    let b = icmp.bytes5to8();
                    l4.sport = u16::from_be_bytes([b[0], b[1]]);
                    l4.dport = l4.sport;
                }
            }
            Some(TransportSlice::Icmpv6(icmp)) => {
                l4.icmp_type = icmp.type_u8();
                match l4.icmp_type {
                    128 | 129 => {
                        let b = icmp.bytes5to8();
                        l4.sport = u16::from_be_bytes([b[0], b[1]]);
                        l4.dport = l4.sport;
                    }
                    134 => self.router_advertisement(sec, src, icmp.payload(), out),
                    135 | 136 => self.ndp(sec, src, l4.icmp_type, icmp.payload(), out),
                    _ => {}
                }
                // Neighbour discovery and MLD are link housekeeping that conntrack does not
                // track either: no flow, no node for a solicited-node multicast address.
                if matches!(l4.icmp_type, 130..=137 | 143) {
                    return;
                }
            }
            _ => {}
        }

        self.count(sec, src, dst, &l4, ip_len as u64);
    }

    /// Adds one packet to its connection's counters for second `sec`.
    fn count(&mut self, sec: i64, src: IpAddr, dst: IpAddr, l4: &L4, bytes: u64) {
        let (key, src_is_a) = ConnKey::new(l4.proto, src, l4.sport, dst, l4.dport);
        let conn = match self.conns.entry(key) {
            Entry::Occupied(e) => {
                let c = e.into_mut();
                if l4.syn {
                    // A new handshake on a known tuple: the SYN sender is the initiator now.
                    c.init_is_a = src_is_a;
                }
                c
            }
            Entry::Vacant(e) => e.insert(Conn {
                // A first-seen SYN-ACK means we missed the SYN: its receiver initiated.
                init_is_a: if l4.syn_ack { !src_is_a } else { src_is_a },
                icmp_type: l4.icmp_type,
                bytes: 0,
                bytes_b: 0,
                packets: 0,
                sec: i64::MIN,
            }),
        };
        if conn.sec != sec {
            conn.sec = sec;
            conn.bytes = 0;
            conn.bytes_b = 0;
            conn.packets = 0;
            self.active.push(key);
        }
        conn.bytes += bytes;
        if !src_is_a {
            conn.bytes_b += bytes;
        }
        conn.packets += 1;
    }

    /// Emits the current second's flows (if any).
    fn flush(&mut self, out: &mut Vec<Event>) {
        let Some(sec) = self.cur_sec else { return };
        if self.active.is_empty() {
            return;
        }
        let mut flows = Vec::with_capacity(self.active.len());
        for key in self.active.drain(..) {
            let Some(c) = self.conns.get(&key) else { continue };
            let (src, dst, src_port, dst_port) =
                if c.init_is_a { (key.a, key.b, key.pa, key.pb) } else { (key.b, key.a, key.pb, key.pa) };
            let icmp = matches!(key.proto, 1 | 58);
            flows.push(FlowSample {
                protocol: key.proto,
                src,
                dst,
                // ICMP "ports" are our echo-id keys, not something to report.
                src_port: if icmp { 0 } else { src_port },
                dst_port: if icmp { 0 } else { dst_port },
                icmp_type: c.icmp_type,
                bytes: c.bytes,
                packets: c.packets,
                reply_bytes: if c.init_is_a { c.bytes_b } else { c.bytes - c.bytes_b },
            });
        }
        if !flows.is_empty() {
            out.push(Event::Flows { time: sec, flows, local: false });
        }
    }

    /// Forgets idle connections and TCP DNS streams (bounded memory on long captures).
    fn gc(&mut self, sec: i64) {
        self.last_gc = sec;
        let limit = sec - CONN_IDLE_SECS;
        self.conns.retain(|_, c| c.sec >= limit);
        self.tcp_dns.retain(|_, s| s.last_sec >= limit);
        if self.conns.capacity() > 4 * self.conns.len().max(1024) {
            self.conns.shrink_to_fit();
        }
    }

    /// A mapping the capture shows; true if it is a usable one (unicast MAC, unicast address),
    /// whether or not it is new.
    fn neighbour(&mut self, sec: i64, ip: IpAddr, mac: MacAddr, out: &mut Vec<Event>) -> bool {
        if !mac.is_unicast() || !is_neighbour_ip(&ip) {
            return false;
        }
        if self.neighbours.get(&ip) == Some(&mac) {
            return true;
        }
        if self.neighbours.len() >= NEIGHBOURS_MAX {
            // Pathological input; re-announcing some mappings later is harmless.
            self.neighbours.clear();
        }
        self.neighbours.insert(ip, mac);
        out.push(Event::Neighbour { time: sec, ip, mac });
        true
    }

    /// ARP requests and replies both tell us the sender's mapping.
    fn arp(&mut self, sec: i64, arp: &etherparse::ArpPacketSlice<'_>, out: &mut Vec<Event>) {
        if arp.hw_addr_type() != etherparse::ArpHardwareId::ETHERNET
            || arp.proto_addr_type() != EtherType::IPV4
            || arp.hw_addr_size() != 6
            || arp.proto_addr_size() != 4
        {
            return;
        }
        let (Ok(mac), Ok(ip)) =
            (<[u8; 6]>::try_from(arp.sender_hw_addr()), <[u8; 4]>::try_from(arp.sender_protocol_addr()))
        else {
            return;
        };
        let ip = IpAddr::V4(Ipv4Addr::from(ip));
        if self.neighbour(sec, ip, MacAddr(mac), out) {
            self.local.learn_address(ip);
        }
    }

    /// A DHCP acknowledgement (server to client): the client's MAC owns the address it was
    /// given, and the subnet mask says how wide the link is. BOOTP layout: op @0, htype @1,
    /// hlen @2, yiaddr @16, chaddr @28, magic cookie @236, options from @240.
    fn dhcp(&mut self, sec: i64, msg: &[u8], out: &mut Vec<Event>) {
        const ACK: u8 = 5;
        if msg.len() < 240 || msg[0] != 2 || msg[1] != 1 || msg[2] != 6 || msg[236..240] != [99, 130, 83, 99] {
            return;
        }
        let (mut kind, mut mask) = (None, None);
        let mut opts = &msg[240..];
        while let [code, rest @ ..] = opts {
            match *code {
                0 => opts = rest,
                255 => break,
                _ => {
                    let Some((&len, rest)) = rest.split_first() else { return };
                    let Some(data) = rest.get(..len as usize) else { return };
                    match (*code, data) {
                        (53, [k]) => kind = Some(*k),
                        (1, [a, b, c, d]) => mask = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                        _ => {}
                    }
                    opts = &rest[len as usize..];
                }
            }
        }
        let yiaddr = Ipv4Addr::new(msg[16], msg[17], msg[18], msg[19]);
        if kind != Some(ACK) || yiaddr.is_unspecified() {
            return;
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&msg[28..34]);
        if self.neighbour(sec, IpAddr::V4(yiaddr), MacAddr(mac), out) || mask.is_some() {
            // A mask is contiguous ones; anything else is not one and says nothing.
            let len = match mask {
                Some(m) if m.leading_ones() + m.trailing_zeros() == 32 => m.leading_ones() as u8,
                _ => ASSUMED_V4_PREFIX,
            };
            self.local.learn(IpAddr::V4(yiaddr), len);
        }
    }

    /// A router advertisement: its sender (the router's link-local address, with the source
    /// link-layer option) and its on-link prefixes (prefix information options with the L flag).
    /// `body` starts after the 8-byte ICMPv6 header: reachable time, retrans timer, options.
    fn router_advertisement(&mut self, sec: i64, src: IpAddr, body: &[u8], out: &mut Vec<Event>) {
        let Some(mut opts) = body.get(8..) else { return };
        while opts.len() >= 2 {
            let len = opts[1] as usize * 8;
            if len == 0 || len > opts.len() {
                return;
            }
            match opts[0] {
                1 if len >= 8 => {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&opts[2..8]);
                    self.neighbour(sec, src, MacAddr(mac), out);
                }
                3 if len == 32 && opts[3] & 0x80 != 0 => {
                    let mut p = [0u8; 16];
                    p.copy_from_slice(&opts[16..32]);
                    self.local.learn(IpAddr::V6(Ipv6Addr::from(p)), opts[2]);
                }
                _ => {}
            }
            opts = &opts[len..];
        }
    }

    /// Neighbour solicitation (type 135): source link-layer address option (1) belongs to the
    /// packet's source. Neighbour advertisement (136): target link-layer address option (2)
    /// belongs to the target address. `body` starts after the 8-byte ICMPv6 header, i.e. at
    /// the target address.
    fn ndp(&mut self, sec: i64, src: IpAddr, icmp_type: u8, body: &[u8], out: &mut Vec<Event>) {
        let Some(target) = body.get(..16).and_then(|t| <[u8; 16]>::try_from(t).ok()) else { return };
        let (want_opt, ip) = if icmp_type == 135 { (1, src) } else { (2, IpAddr::V6(Ipv6Addr::from(target))) };
        // Options: type u8, length u8 in units of 8 bytes (including these two), data.
        let mut opts = &body[16..];
        while opts.len() >= 2 {
            let len = opts[1] as usize * 8;
            if len == 0 || len > opts.len() {
                return;
            }
            if opts[0] == want_opt && len >= 8 {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&opts[2..8]);
                if self.neighbour(sec, ip, MacAddr(mac), out) {
                    self.local.learn_address(ip);
                }
                return;
            }
            opts = &opts[len..];
        }
    }

    /// One mDNS message from `src`: what it says of itself, if anything.
    fn mdns(&mut self, sec: i64, src: IpAddr, mac: Option<MacAddr>, msg: &[u8], out: &mut Vec<Event>) {
        if let Some(a) = mdns::parse(src, msg) {
            out.push(Event::MdnsName { time: sec, ip: src, mac, name: a.name, model: a.model, services: a.services });
        }
    }

    /// One DNS message (UDP payload or one de-framed TCP message) from `client`.
    fn dns(&mut self, sec: i64, client: IpAddr, msg: &[u8], out: &mut Vec<Event>) {
        let msg = match Message::from_vec(msg) {
            Ok(m) => m,
            Err(e) => {
                log::debug!("ignoring malformed DNS message from {client}: {e}");
                return;
            }
        };
        if msg.queries.len() != 1 {
            return;
        }
        let qname = name_to_string(msg.queries[0].name());
        match msg.metadata.message_type {
            MessageType::Query => out.push(Event::DnsQuery { time: sec, client, qname }),
            MessageType::Response => {
                let records: Vec<DnsRecord> = msg
                    .answers
                    .iter()
                    .filter_map(|rr| {
                        let data = match &rr.data {
                            RData::A(a) => DnsData::Addr(IpAddr::V4(a.0)),
                            RData::AAAA(a) => DnsData::Addr(IpAddr::V6(a.0)),
                            RData::CNAME(c) => DnsData::Cname(name_to_string(&c.0)),
                            _ => return None,
                        };
                        Some(DnsRecord { owner: name_to_string(&rr.name), ttl: rr.ttl, data })
                    })
                    .collect();
                if !records.is_empty() {
                    out.push(Event::DnsAnswer { time: sec, qname, records });
                }
            }
        }
    }

    /// DNS over TCP: reassembles in-order segments per direction and parses every complete
    /// length-prefixed message. Out-of-order data resynchronises from the next segment.
    fn tcp_dns(&mut self, sec: i64, src: IpAddr, dst: IpAddr, tcp: &etherparse::TcpSlice<'_>, out: &mut Vec<Event>) {
        let key = (src, tcp.source_port(), dst, tcp.destination_port());
        let data = tcp.payload();
        let seq = tcp.sequence_number();
        let closing = tcp.fin() || tcp.rst();
        if tcp.syn() {
            // The stream starts right after the SYN.
            self.tcp_dns.remove(&key);
            if self.tcp_dns.len() < TCP_DNS_STREAMS_MAX {
                let next_seq = seq.wrapping_add(1);
                self.tcp_dns.insert(key, TcpDnsStream { next_seq, buf: Vec::new(), last_sec: sec });
            }
            return;
        }
        if data.is_empty() {
            if closing {
                self.tcp_dns.remove(&key);
            }
            return;
        }
        let full = self.tcp_dns.len() >= TCP_DNS_STREAMS_MAX;
        let stream = match self.tcp_dns.entry(key) {
            Entry::Occupied(e) => {
                let s = e.into_mut();
                let ahead = seq.wrapping_sub(s.next_seq) as i32;
                if ahead > 0 {
                    // A gap (lost/unordered segment): start over with this segment.
                    s.buf.clear();
                    s.next_seq = seq;
                }
                s
            }
            Entry::Vacant(e) => {
                if full {
                    return;
                }
                // Joined mid-stream: assume this segment starts a message.
                e.insert(TcpDnsStream { next_seq: seq, buf: Vec::new(), last_sec: sec })
            }
        };
        stream.last_sec = sec;
        // Skip what we already have (retransmissions, overlaps).
        let already = stream.next_seq.wrapping_sub(seq) as usize;
        if already < data.len() {
            stream.buf.extend_from_slice(&data[already..]);
            stream.next_seq = seq.wrapping_add(data.len() as u32);
        }
        let mut buf = std::mem::take(&mut stream.buf);
        let mut pos = 0;
        while buf.len() - pos >= 2 {
            let n = u16::from_be_bytes([buf[pos], buf[pos + 1]]) as usize;
            if buf.len() - pos < 2 + n {
                break;
            }
            self.dns(sec, src, &buf[pos + 2..pos + 2 + n], out);
            pos += 2 + n;
        }
        buf.drain(..pos);
        if closing || buf.len() > TCP_DNS_BUF_MAX {
            self.tcp_dns.remove(&key);
        } else if let Some(s) = self.tcp_dns.get_mut(&key) {
            s.buf = buf;
        }
    }
}

struct Sll<'a> {
    protocol: u16,
    src_mac: Option<MacAddr>,
    payload: &'a [u8],
}

/// Linux cooked headers, by hand: etherparse only knows v1 and rejects the loopback, tun and
/// PPP hardware types that `-i any` captures contain.
/// v1 (16 bytes): packet type u16, ARPHRD u16, address length u16, address [8], protocol u16.
/// v2 (20 bytes): protocol u16, reserved u16, ifindex u32, ARPHRD u16, packet type u8,
/// address length u8, address [8].
fn parse_sll(v2: bool, data: &[u8]) -> Option<Sll<'_>> {
    let (hdr_len, protocol, pkt_type, arphrd, addr_len, addr_off) = if v2 {
        let h = data.get(..20)?;
        (20, u16::from_be_bytes([h[0], h[1]]), h[10] as u16, u16::from_be_bytes([h[8], h[9]]), h[11] as u16, 12)
    } else {
        let h = data.get(..16)?;
        let be = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        (16, be(14), be(0), be(2), be(4), 6)
    };
    const ARPHRD_ETHER: u16 = 1;
    const PACKET_OUTGOING: u16 = 4;
    // Outgoing packets carry the capturing host's MAC, which may be a router forwarding
    // somebody else's packet: only incoming ones say who the sender is.
    let src_mac = (arphrd == ARPHRD_ETHER && addr_len == 6 && pkt_type != PACKET_OUTGOING).then(|| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&data[addr_off..addr_off + 6]);
        MacAddr(m)
    });
    Some(Sll { protocol, src_mac, payload: &data[hdr_len..] })
}

/// Addresses that can belong to a neighbour table entry.
fn is_neighbour_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// Presentation format as SPIN (ldns `dname2str`) renders it: original case, labels joined by
/// `.`, trailing dot, root = `.`; `. ; ( ) \` escaped with a backslash and bytes that are not
/// printable ASCII as `\DDD` (decimal). Done by hand because hickory's renderers either
/// decode punycode (Display) or escape differently (`to_ascii`, octal).
pub(crate) fn name_to_string(name: &Name) -> String {
    let mut s = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        for &c in label {
            match c {
                b'.' | b';' | b'(' | b')' | b'\\' => {
                    s.push('\\');
                    s.push(c as char);
                }
                0x21..=0x7e => s.push(c as char),
                _ => {
                    use std::fmt::Write;
                    let _ = write!(s, "\\{c:03}");
                }
            }
        }
        s.push('.');
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

/// Shortcut used by tests and the replay loop: the second a timestamp falls in.
pub fn second_of(ts: f64) -> Timestamp {
    if ts.is_finite() {
        ts.floor() as i64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    const LAN: [u8; 4] = [192, 168, 1, 10];
    const WAN: [u8; 4] = [8, 8, 8, 8];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn udp4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).udp(sp, dp).write(&mut v, payload).unwrap();
        v
    }

    /// A TCP segment; `flags`: "S" SYN, "SA" SYN-ACK, "A" ACK, "F" FIN+ACK.
    fn tcp4(src: [u8; 4], sp: u16, dst: [u8; 4], dp: u16, seq: u32, flags: &str, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let mut b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(src, dst, 64).tcp(sp, dp, seq, 1000);
        if flags.contains('S') {
            b = b.syn();
        }
        if flags.contains('A') || flags.contains('F') {
            b = b.ack(1);
        }
        if flags.contains('F') {
            b = b.fin();
        }
        b.write(&mut v, payload).unwrap();
        v
    }

    fn run(frames: &[(f64, Vec<u8>)]) -> Vec<Event> {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for (ts, f) in frames {
            d.frame(*ts, LinkType::Ethernet, f, &mut out);
        }
        d.finish(&mut out);
        out
    }

    fn flows(evs: &[Event]) -> Vec<(i64, Vec<FlowSample>)> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Flows { time, flows, local } => {
                    assert!(!local);
                    let mut f = flows.clone();
                    f.sort_by_key(|s| (s.src, s.dst, s.src_port));
                    Some((*time, f))
                }
                _ => None,
            })
            .collect()
    }

    fn neighbours(evs: &[Event]) -> Vec<(IpAddr, MacAddr)> {
        evs.iter()
            .filter_map(|e| match e {
                Event::Neighbour { ip, mac, .. } => Some((*ip, *mac)),
                _ => None,
            })
            .collect()
    }

    fn dns_events(evs: &[Event]) -> Vec<&Event> {
        evs.iter().filter(|e| matches!(e, Event::DnsQuery { .. } | Event::DnsAnswer { .. })).collect()
    }

    fn query_msg(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    fn answer_msg(name: &str, answers: Vec<Record>) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        for a in answers {
            m.add_answer(a);
        }
        m.to_vec().unwrap()
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[test]
    fn flows_per_second_in_initiator_direction() {
        let evs = run(&[
            (100.1, udp4(LAN, 5000, WAN, 443, &[0; 10])),  // 20 + 8 + 10 = 38
            (100.5, udp4(WAN, 443, LAN, 5000, &[0; 100])), // 128
            (100.7, udp4(LAN, 5001, WAN, 53, &[0; 2])),    // 30 (not DNS: ignored as such)
            (102.2, udp4(WAN, 443, LAN, 5000, &[0; 2])),   // 30
        ]);
        let f = flows(&evs);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(f[0].0, 100);
        let s = &f[0].1;
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].src, s[0].dst, s[0].src_port, s[0].dst_port), (ip("192.168.1.10"), ip("8.8.8.8"), 5000, 443));
        assert_eq!((s[0].bytes, s[0].packets, s[0].protocol), (38 + 128, 2, 17));
        assert_eq!((s[1].src_port, s[1].dst_port, s[1].bytes, s[1].packets), (5001, 53, 30, 1));
        // Second 101 had no traffic: no batch. The later reply keeps the original direction.
        assert_eq!(f[1].0, 102);
        assert_eq!(f[1].1.len(), 1);
        let s = &f[1].1[0];
        assert_eq!((s.src, s.src_port, s.dst_port, s.bytes, s.packets), (ip("192.168.1.10"), 5000, 443, 30, 1));
    }

    #[test]
    fn tcp_syn_marks_initiator() {
        // First seen packet is the SYN-ACK from the server: the client still initiated.
        let evs = run(&[
            (10.0, tcp4(WAN, 80, LAN, 40000, 1, "SA", &[])),
            (10.1, tcp4(LAN, 40000, WAN, 80, 1, "A", &[1, 2, 3])),
        ]);
        let f = flows(&evs);
        let s = &f[0].1[0];
        assert_eq!(
            (s.src, s.dst, s.src_port, s.dst_port, s.packets),
            (ip("192.168.1.10"), ip("8.8.8.8"), 40000, 80, 2)
        );
        assert_eq!(s.bytes, 40 + 43);

        // A later SYN from the other side turns the connection around.
        let evs =
            run(&[(10.0, tcp4(WAN, 80, LAN, 40000, 1, "A", &[])), (10.1, tcp4(LAN, 40000, WAN, 80, 1, "S", &[]))]);
        let s = &flows(&evs)[0].1[0];
        assert_eq!((s.src, s.src_port), (ip("192.168.1.10"), 40000));
    }

    #[test]
    fn icmp_echo_flows() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(LAN, WAN, 64)
            .icmpv4_echo_request(77, 1)
            .write(&mut v, &[0; 8])
            .unwrap();
        let mut r = Vec::new();
        PacketBuilder::ethernet2(MAC_B, MAC_A)
            .ipv4(WAN, LAN, 64)
            .icmpv4_echo_reply(77, 1)
            .write(&mut r, &[0; 8])
            .unwrap();
        let evs = run(&[(5.0, v), (5.2, r)]);
        let s = &flows(&evs)[0].1;
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].protocol, s[0].icmp_type, s[0].src_port, s[0].dst_port, s[0].packets), (1, 8, 0, 0, 2));
        assert_eq!(s[0].src, ip("192.168.1.10"));
    }

    #[test]
    fn ipv6_length_and_raw_ip_link() {
        let mut v = Vec::new();
        let src = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let dst = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
        PacketBuilder::ipv6(src, dst, 64).udp(1, 2).write(&mut v, &[0; 12]).unwrap();
        let mut d = Decoder::new();
        let mut out = Vec::new();
        d.frame(1.0, LinkType::RawIp, &v, &mut out);
        d.finish(&mut out);
        let s = &flows(&out)[0].1[0];
        assert_eq!(s.bytes, 40 + 8 + 12);
    }

    #[test]
    fn dns_query_and_answer_with_cname() {
        let q = query_msg("www.Example.COM.", RecordType::A);
        let a = answer_msg(
            "www.Example.COM.",
            vec![
                Record::from_rdata(n("www.Example.COM."), 300, RData::CNAME(CNAME(n("edge.CDN.net.")))),
                Record::from_rdata(n("edge.CDN.net."), 60, RData::A(A("93.184.216.34".parse().unwrap()))),
                Record::from_rdata(n("edge.CDN.net."), 60, RData::AAAA(AAAA("2001:db8::5".parse().unwrap()))),
                Record::from_rdata(n("edge.CDN.net."), 60, RData::MX(MX::new(10, n("mx.CDN.net.")))),
            ],
        );
        let evs = run(&[(50.2, udp4(LAN, 3333, WAN, 53, &q)), (50.3, udp4(WAN, 53, LAN, 3333, &a))]);
        let evs = dns_events(&evs);
        assert_eq!(evs[0], &Event::DnsQuery { time: 50, client: ip("192.168.1.10"), qname: "www.Example.COM.".into() });
        let Event::DnsAnswer { time, qname, records } = evs[1] else { panic!("{:?}", evs[1]) };
        assert_eq!((*time, qname.as_str()), (50, "www.Example.COM."));
        assert_eq!(
            records,
            &vec![
                DnsRecord { owner: "www.Example.COM.".into(), ttl: 300, data: DnsData::Cname("edge.CDN.net.".into()) },
                DnsRecord { owner: "edge.CDN.net.".into(), ttl: 60, data: DnsData::Addr(ip("93.184.216.34")) },
                DnsRecord { owner: "edge.CDN.net.".into(), ttl: 60, data: DnsData::Addr(ip("2001:db8::5")) },
            ]
        );
    }

    #[test]
    fn dns_ignored_cases() {
        // Malformed, answer without address records, two questions: no DNS events, no panic.
        let mut two = Message::new(1, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(n("a.example."), RecordType::A));
        two.add_query(Query::query(n("b.example."), RecordType::A));
        let two = two.to_vec().unwrap();
        let empty_answer = answer_msg("nx.example.", vec![]);
        let evs = run(&[
            (1.0, udp4(LAN, 3333, WAN, 53, &[1, 2, 3, 4, 5])),
            (1.0, udp4(LAN, 3333, WAN, 53, &two)),
            (1.0, udp4(WAN, 53, LAN, 3333, &empty_answer)),
        ]);
        assert!(dns_events(&evs).is_empty(), "{evs:?}");
    }

    #[test]
    fn name_rendering() {
        assert_eq!(name_to_string(&Name::root()), ".");
        let name = Name::from_labels(vec![&b"a.b"[..], &b"x y"[..], &b"Caf\xc3"[..], &b"com"[..]]).unwrap();
        assert_eq!(name_to_string(&name), "a\\.b.x\\032y.Caf\\195.com.");
    }

    #[test]
    fn tcp_dns_split_over_segments() {
        let q = query_msg("split.example.", RecordType::A);
        let a = answer_msg(
            "split.example.",
            vec![Record::from_rdata(n("split.example."), 5, RData::A(A("1.2.3.4".parse().unwrap())))],
        );
        let mut qs = (q.len() as u16).to_be_bytes().to_vec();
        qs.extend_from_slice(&q);
        let mut as_ = (a.len() as u16).to_be_bytes().to_vec();
        as_.extend_from_slice(&a);
        // The query arrives in two segments (one of them retransmitted); the answer in one
        // segment together with the start of a second answer that never completes.
        let cut = 5;
        let mut ans_seg = as_.clone();
        ans_seg.extend_from_slice(&[0, 40, 1]);
        let evs = run(&[
            (7.0, tcp4(LAN, 40001, WAN, 53, 100, "S", &[])),
            (7.0, tcp4(WAN, 53, LAN, 40001, 900, "SA", &[])),
            (7.1, tcp4(LAN, 40001, WAN, 53, 101, "A", &qs[..cut])),
            (7.1, tcp4(LAN, 40001, WAN, 53, 101, "A", &qs[..cut])),
            (7.2, tcp4(LAN, 40001, WAN, 53, 101 + cut as u32, "A", &qs[cut..])),
            (7.3, tcp4(WAN, 53, LAN, 40001, 901, "A", &ans_seg)),
            (7.4, tcp4(WAN, 53, LAN, 40001, 901 + ans_seg.len() as u32, "F", &[])),
        ]);
        let dns = dns_events(&evs);
        assert_eq!(dns.len(), 2, "{dns:?}");
        assert_eq!(dns[0], &Event::DnsQuery { time: 7, client: ip("192.168.1.10"), qname: "split.example.".into() });
        assert!(
            matches!(dns[1], Event::DnsAnswer { qname, records, .. } if qname == "split.example." && records.len() == 1)
        );
        let f = flows(&evs);
        assert_eq!(f[0].1[0].packets, 7);
        assert_eq!(f[0].1[0].src_port, 40001);
    }

    fn arp_frame(op: u16, sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&[0xff; 6]);
        v.extend_from_slice(&sender_mac);
        v.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4]);
        v.extend_from_slice(&op.to_be_bytes());
        v.extend_from_slice(&sender_mac);
        v.extend_from_slice(&sender_ip);
        v.extend_from_slice(&[0; 6]);
        v.extend_from_slice(&target_ip);
        v
    }

    fn ndp_frame(
        src_mac: [u8; 6],
        src: &str,
        dst: &str,
        icmp_type: u8,
        target: &str,
        opt: u8,
        mac: [u8; 6],
    ) -> Vec<u8> {
        let mut body = target.parse::<Ipv6Addr>().unwrap().octets().to_vec();
        body.extend_from_slice(&[opt, 1]);
        body.extend_from_slice(&mac);
        let mut v = Vec::new();
        PacketBuilder::ethernet2(src_mac, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6(src.parse::<Ipv6Addr>().unwrap().octets(), dst.parse::<Ipv6Addr>().unwrap().octets(), 255)
            .icmpv6_raw(icmp_type, 0, [0; 4])
            .write(&mut v, &body)
            .unwrap();
        v
    }

    #[test]
    fn arp_and_ndp_neighbours() {
        let m1 = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
        let m2 = MacAddr([0x02, 0x66, 0x77, 0x88, 0x99, 0xaa]);
        let evs = run(&[
            (1.0, arp_frame(1, m1.0, [192, 168, 1, 20], [192, 168, 1, 1])), // request
            (1.0, arp_frame(2, m2.0, [192, 168, 1, 1], [192, 168, 1, 20])), // reply
            (1.0, arp_frame(1, m1.0, [0, 0, 0, 0], [192, 168, 1, 20])),     // probe: no sender IP
            (1.0, arp_frame(1, m1.0, [192, 168, 1, 20], [192, 168, 1, 1])), // repeat: no event
            // NS from a link-local address with source link-layer address option.
            (2.0, ndp_frame(m1.0, "fe80::1", "ff02::1:ff00:2", 135, "fe80::2", 1, m1.0)),
            // NS for DAD (source ::): nothing.
            (2.0, ndp_frame(m1.0, "::", "ff02::1:ff00:3", 135, "fe80::3", 1, m1.0)),
            // NA: target link-layer address option for the target (a global address here).
            (2.0, ndp_frame(m2.0, "fe80::9", "fe80::1", 136, "2001:db8::9", 2, m2.0)),
        ]);
        assert_eq!(
            neighbours(&evs),
            vec![
                (ip("192.168.1.20"), m1),
                (ip("192.168.1.1"), m2),
                (ip("fe80::1"), m1),
                (ip("fe80::9"), m2), // the NA's sender, learned on-link
                (ip("2001:db8::9"), m2),
            ]
        );
    }

    /// A router's MAC carries every remote address, private ones included (double NAT, another
    /// home subnet, a VPN): a frame's source joins its sender only inside a subnet the capture
    /// shows as this link's.
    #[test]
    fn frame_sources_join_their_sender_only_inside_the_links_subnets() {
        let from = |mac: [u8; 6], src: [u8; 4]| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(mac, MAC_B).ipv4(src, WAN, 64).udp(1, 2).write(&mut v, &[]).unwrap();
            v
        };
        let mac_c = [0x02, 0, 0, 0, 0, 0x0c];
        let evs = run(&[
            (1.0, from(MAC_A, LAN)),                           // nothing proves the link yet
            (1.0, arp_frame(1, MAC_A, LAN, [192, 168, 1, 1])), // ARP: 192.168.1.10 is MAC_A's
            (1.0, from(MAC_B, [192, 168, 1, 1])),              // on the link now: learned
            (1.0, from(MAC_B, [192, 168, 1, 1])),              // same again: no event
            (1.0, from(MAC_B, [10, 1, 2, 3])),                 // behind the router
            (1.0, from(MAC_B, [192, 168, 50, 7])),             // another home subnet
            (1.0, from(MAC_B, [100, 64, 3, 4])),               // CGNAT, behind the router
            (1.0, from(MAC_B, WAN)),                           // the internet
            (1.0, from(MAC_B, [169, 254, 9, 9])),              // link-local: always on the link
            (1.0, from(mac_c, LAN)),                           // LAN address moved to another MAC
            (1.0, from([0xff; 6], [192, 168, 1, 99])),         // broadcast MAC: never
        ]);
        assert_eq!(
            neighbours(&evs),
            vec![
                (ip("192.168.1.10"), MacAddr(MAC_A)),
                (ip("192.168.1.1"), MacAddr(MAC_B)),
                (ip("169.254.9.9"), MacAddr(MAC_B)),
                (ip("192.168.1.10"), MacAddr(mac_c)),
            ]
        );
    }

    /// A DHCP acknowledgement gives the client its address and says how wide the link is; a
    /// router advertisement names the router and its on-link prefixes.
    #[test]
    fn dhcp_acknowledgements_and_router_advertisements_show_the_link() {
        let dev = [0x02, 0, 0, 0, 0, 0x0d];
        // BOOTP reply: op 2, htype 1, hlen 6, yiaddr 10.0.5.3, chaddr dev; DHCP ACK, mask /16.
        let mut bootp = vec![0u8; 240];
        bootp[..3].copy_from_slice(&[2, 1, 6]);
        bootp[16..20].copy_from_slice(&[10, 0, 5, 3]);
        bootp[28..34].copy_from_slice(&dev);
        bootp[236..240].copy_from_slice(&[99, 130, 83, 99]);
        bootp.extend_from_slice(&[53, 1, 5, 1, 4, 255, 255, 0, 0, 255]);
        let ack = udp4([10, 0, 0, 1], 67, [10, 0, 5, 3], 68, &bootp);
        let mut offer = bootp.clone();
        offer[16..20].copy_from_slice(&[10, 0, 5, 4]);
        offer[242] = 2; // DHCP OFFER: an address offered is nobody's yet
        let offer = udp4([10, 0, 0, 1], 67, [10, 0, 5, 4], 68, &offer);
        let from = |mac: [u8; 6], src: [u8; 4]| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(mac, MAC_B).ipv4(src, WAN, 64).udp(1, 2).write(&mut v, &[]).unwrap();
            v
        };
        // Router advertisement from fe80::1 (source link-layer option MAC_B) with the on-link
        // prefix fd00:8::/64 (prefix information: length 64, flags L|A).
        let mut ra_body = vec![0u8; 8];
        ra_body.extend_from_slice(&[1, 1]);
        ra_body.extend_from_slice(&MAC_B);
        ra_body.extend_from_slice(&[3, 4, 64, 0xc0, 0, 0, 0x0e, 0x10, 0, 0, 0x0e, 0x10, 0, 0, 0, 0]);
        ra_body.extend_from_slice(&"fd00:8::".parse::<Ipv6Addr>().unwrap().octets());
        let mut ra = Vec::new();
        PacketBuilder::ethernet2(MAC_B, [0x33, 0x33, 0, 0, 0, 1])
            .ipv6("fe80::1".parse::<Ipv6Addr>().unwrap().octets(), "ff02::1".parse::<Ipv6Addr>().unwrap().octets(), 255)
            .icmpv6_raw(134, 0, [64, 0, 0x07, 0x08])
            .write(&mut ra, &ra_body)
            .unwrap();
        let from6 = |mac: [u8; 6], src: &str| {
            let mut v = Vec::new();
            PacketBuilder::ethernet2(mac, MAC_B)
                .ipv6(
                    src.parse::<Ipv6Addr>().unwrap().octets(),
                    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    64,
                )
                .udp(1, 2)
                .write(&mut v, &[])
                .unwrap();
            v
        };
        let evs = run(&[
            (1.0, offer),
            (1.0, ack),
            (1.0, from(MAC_A, [10, 0, 200, 1])), // inside the ACK's /16
            (1.0, from(MAC_A, [10, 1, 0, 1])),   // outside it
            (2.0, ra),
            (2.0, from6(MAC_A, "fd00:8::55")), // inside the advertised prefix
            (2.0, from6(MAC_B, "fd00:9::1")),  // outside it
        ]);
        assert_eq!(
            neighbours(&evs),
            vec![
                (ip("10.0.5.3"), MacAddr(dev)),
                (ip("10.0.200.1"), MacAddr(MAC_A)),
                (ip("fe80::1"), MacAddr(MAC_B)),
                (ip("fd00:8::55"), MacAddr(MAC_A)),
            ]
        );
    }

    #[test]
    fn local_nets_merge_and_refuse_nonsense() {
        let mut l = LocalNets::default();
        l.learn(ip("192.168.1.7"), 24);
        l.learn(ip("192.168.1.200"), 24);
        l.learn(ip("192.168.0.1"), 16); // wider: replaces the /24
        l.learn(ip("8.8.8.8"), 0); // the whole internet is nobody's LAN
        l.learn(ip("0.0.0.0"), 24);
        assert_eq!(l.v4, vec![(u32::from(Ipv4Addr::new(192, 168, 0, 0)), 16)]);
        assert!(l.contains(&ip("192.168.77.1")) && !l.contains(&ip("192.169.0.1")) && !l.contains(&ip("8.8.8.8")));
        l.learn(ip("2001:db8::1"), 64);
        l.learn(ip("::"), 64);
        assert!(l.contains(&ip("2001:db8::ffff")) && !l.contains(&ip("2001:db8:1::1")));
        assert!(l.contains(&ip("fe80::1234")), "link-local is always on the link");
        for i in 0..1000u32 {
            l.learn(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24);
        }
        assert!(l.v4.len() <= LOCAL_NETS_MAX);
    }

    #[test]
    fn vlan_and_linux_sll() {
        let mut v = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(5.try_into().unwrap())
            .ipv4(LAN, WAN, 64)
            .udp(1, 2)
            .write(&mut v, &[])
            .unwrap();
        // SLL v1: incoming (type 0), ARPHRD_ETHER, 6-byte address, IPv4.
        let mut sll = vec![0, 0, 0, 1, 0, 6];
        sll.extend_from_slice(&MAC_A);
        sll.extend_from_slice(&[0, 0, 0x08, 0x00]);
        let mut ipv4 = Vec::new();
        PacketBuilder::ipv4([192, 168, 1, 11], WAN, 64).udp(3, 4).write(&mut ipv4, &[]).unwrap();
        sll.extend_from_slice(&ipv4);
        // SLL v2 from a tun device (ARPHRD_NONE): no MAC.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 3, 0xff, 0xfe, 0, 0];
        sll2.extend_from_slice(&[0; 8]);
        let mut ipv4b = Vec::new();
        PacketBuilder::ipv4([10, 2, 2, 2], WAN, 64).udp(5, 6).write(&mut ipv4b, &[]).unwrap();
        sll2.extend_from_slice(&ipv4b);

        let mut d = Decoder::new();
        let mut out = Vec::new();
        // An ARP reply of the gateway shows the link is 192.168.1.0/24.
        d.frame(1.0, LinkType::Ethernet, &arp_frame(2, MAC_B, [192, 168, 1, 1], LAN), &mut out);
        d.frame(1.0, LinkType::Ethernet, &v, &mut out);
        d.frame(1.0, LinkType::LinuxSll, &sll, &mut out);
        d.frame(1.0, LinkType::LinuxSll2, &sll2, &mut out);
        d.frame(1.0, LinkType::LinuxSll2, &sll2[..10], &mut out); // truncated: ignored
        d.finish(&mut out);
        assert_eq!(
            neighbours(&out),
            vec![
                (ip("192.168.1.1"), MacAddr(MAC_B)),
                (ip("192.168.1.10"), MacAddr(MAC_A)),
                (ip("192.168.1.11"), MacAddr(MAC_A))
            ]
        );
        assert_eq!(flows(&out)[0].1.len(), 3);
    }

    #[test]
    fn garbage_frames_do_not_panic() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        let base = udp4(LAN, 53, WAN, 53, &query_msg("x.example.", RecordType::A));
        let mut seed = 0x1234_5678u32;
        for i in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let mut f = base.clone();
            f.truncate(seed as usize % (base.len() + 1));
            if !f.is_empty() {
                let at = (seed >> 8) as usize % f.len();
                f[at] ^= (seed >> 24) as u8;
            }
            for link in [LinkType::Ethernet, LinkType::RawIp, LinkType::LinuxSll, LinkType::LinuxSll2, LinkType::Null] {
                d.frame(i as f64 / 1000.0, link, &f, &mut out);
            }
        }
        d.finish(&mut out);
    }

    #[test]
    fn idle_connections_are_forgotten() {
        let mut d = Decoder::new();
        let mut out = Vec::new();
        for i in 0..1000u32 {
            let dst = [10, 9, (i >> 8) as u8, i as u8];
            d.frame(0.0, LinkType::Ethernet, &udp4(LAN, 1, dst, 2, &[]), &mut out);
        }
        assert_eq!(d.conns.len(), 1000);
        d.frame(500.0, LinkType::Ethernet, &udp4(LAN, 1, WAN, 2, &[]), &mut out);
        assert_eq!(d.conns.len(), 1);
    }
}
