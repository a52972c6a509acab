//! Stateful packet decoder: link-layer frames in, [`Event`]s out.
//!
//! This is what spind sees instead of the kernel when it replays a capture:
//! * **flows**: a small conntrack emulation. Packets are grouped into connections keyed by
//!   protocol, addresses and ports; every capture second produces one [`Event::Flows`] batch
//!   with one sample per connection that had traffic in that second, in the initiator's
//!   direction and with both directions summed (conntrack accounting semantics).
//! * **DNS** over UDP and TCP port 53 ([`Event::DnsQuery`], [`Event::DnsAnswer`]).
//! * **neighbours** ([`Event::Neighbour`]) from ARP, IPv6 neighbour discovery and the Ethernet
//!   source address of on-link (private/link-local) senders, emitted only when a mapping is
//!   new or changed.
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

use crate::event::{DnsData, DnsRecord, Event, FlowSample, MacAddr, Timestamp};

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
        self.0
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

/// Turns captured frames into [`Event`]s. See the module documentation.
pub struct Decoder {
    conns: FxMap<ConnKey, Conn>,
    /// Keys of connections with traffic in `cur_sec` (so a flush does not scan all connections).
    active: Vec<ConnKey>,
    /// The second being accumulated; `None` before the first frame.
    cur_sec: Option<i64>,
    last_gc: i64,
    neighbours: FxMap<IpAddr, MacAddr>,
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

        if let Some(mac) = src_mac {
            if is_on_link(&src) {
                self.neighbour(sec, src, mac, out);
            }
        }

        let mut l4 = L4 {
            proto: payload.ip_number.0,
            sport: 0,
            dport: 0,
            icmp_type: 0,
            syn: false,
            syn_ack: false,
        };
        match &pkt.transport {
            Some(TransportSlice::Udp(udp)) => {
                l4.sport = udp.source_port();
                l4.dport = udp.destination_port();
                if (l4.sport == 53 || l4.dport == 53) && !payload.incomplete {
                    self.dns(sec, src, udp.payload(), out);
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
                    135 | 136 => self.ndp(sec, src, l4.icmp_type, icmp.payload(), out),
                    _ => {}
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
                packets: 0,
                sec: i64::MIN,
            }),
        };
        if conn.sec != sec {
            conn.sec = sec;
            conn.bytes = 0;
            conn.packets = 0;
            self.active.push(key);
        }
        conn.bytes += bytes;
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

    fn neighbour(&mut self, sec: i64, ip: IpAddr, mac: MacAddr, out: &mut Vec<Event>) {
        if !mac.is_unicast() || !is_neighbour_ip(&ip) {
            return;
        }
        if self.neighbours.get(&ip) == Some(&mac) {
            return;
        }
        if self.neighbours.len() >= NEIGHBOURS_MAX {
            // Pathological input; re-announcing some mappings later is harmless.
            self.neighbours.clear();
        }
        self.neighbours.insert(ip, mac);
        out.push(Event::Neighbour { time: sec, ip, mac });
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
        self.neighbour(sec, IpAddr::V4(Ipv4Addr::from(ip)), MacAddr(mac), out);
    }

    /// Neighbour solicitation (type 135): source link-layer address option (1) belongs to the
    /// packet's source. Neighbour advertisement (136): target link-layer address option (2)
    /// belongs to the target address. `body` starts after the 8-byte ICMPv6 header, i.e. at
    /// the target address.
    fn ndp(&mut self, sec: i64, src: IpAddr, icmp_type: u8, body: &[u8], out: &mut Vec<Event>) {
        let Some(target) = body.get(..16).and_then(|t| <[u8; 16]>::try_from(t).ok()) else { return };
        let (want_opt, ip) = if icmp_type == 135 {
            (1, src)
        } else {
            (2, IpAddr::V6(Ipv6Addr::from(target)))
        };
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
                self.neighbour(sec, ip, MacAddr(mac), out);
                return;
            }
            opts = &opts[len..];
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

/// Addresses whose sender must be on the local link: RFC1918, link-local, CGNAT (IPv4);
/// link-local and ULA (IPv6).
fn is_on_link(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xffc0) == 0xfe80 || (s & 0xfe00) == 0xfc00
        }
    }
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
