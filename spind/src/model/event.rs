//! What flows between the rooms of spind: observations from the sources (the kernel, capture
//! replay, extsrc), control requests (JSON-RPC from any transport) and messages to publish.
//!
//! Sources and transports only ever *send* [`Input`]s into the core's channel; the core is the
//! single owner of all state and answers with [`Publish`]es for the MQTT side.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::mpsc::SyncSender;

/// Unix time in seconds. In replay mode this is the capture's clock, otherwise the wall clock.
pub type Timestamp = i64;

/// A 48-bit Ethernet address. Printed lowercase with colons (`aa:bb:cc:dd:ee:ff`) as `ip neigh` does.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Broadcast, multicast (group bit) and all-zero addresses never identify a device.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Error for a string that is not `xx:xx:xx:xx:xx:xx` (hex digits, either case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMac;

impl fmt::Display for BadMac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a MAC address (expected six hex pairs separated by ':')")
    }
}

impl std::error::Error for BadMac {}

impl FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<Self, BadMac> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or(BadMac)?;
            if p.len() != 2 {
                return Err(BadMac);
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| BadMac)?;
        }
        if parts.next().is_some() {
            return Err(BadMac);
        }
        Ok(MacAddr(out))
    }
}

/// One connection's traffic during one interval, in the direction of the connection's initiator.
/// `bytes`/`packets` count both directions (whole IP packets), as conntrack accounting does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowSample {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    /// ICMP/ICMPv6 type for ICMP flows, 0 otherwise.
    pub icmp_type: u8,
    pub bytes: u64,
    pub packets: u64,
    /// The part of `bytes` that went from `dst` back to `src` (conntrack's reply counter; 0 where
    /// each sample is one packet from `src`, as in a replay). For the history's bytes each way.
    pub reply_bytes: u64,
}

/// A resource record of a DNS answer that matters to the node model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsRecord {
    /// Owner name in presentation format with trailing dot.
    pub owner: String,
    pub ttl: u32,
    pub data: DnsData,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DnsData {
    /// An A or AAAA record.
    Addr(IpAddr),
    /// A CNAME record: the owner is an alias of this name (presentation format, trailing dot).
    Cname(String),
}

/// An observation from a source.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Every connection with traffic during one interval (one conntrack dump, one second of a
    /// replayed capture, one extsrc aggregate). `local` forces local mode for this batch (extsrc
    /// input behaves like `-l`, as in SPIN).
    Flows { time: Timestamp, flows: Vec<FlowSample>, local: bool },
    /// A DNS query seen from `client` for `qname` (presentation format, trailing dot).
    DnsQuery { time: Timestamp, client: IpAddr, qname: String },
    /// A DNS answer for the question `qname`, with its A/AAAA/CNAME answer records.
    DnsAnswer { time: Timestamp, qname: String, records: Vec<DnsRecord> },
    /// A DNS query for a blocked name that spind answered itself (`0.0.0.0`/`::`) and dropped,
    /// from `client`'s port `client_port` over `protocol` (17 UDP, 6 TCP); `qname` lowercase,
    /// without the trailing dot.
    DnsBlocked { time: Timestamp, client: IpAddr, client_port: u16, protocol: u8, qname: String },
    /// An mDNS response or announcement from `ip` about itself (its A/AAAA record is `ip`):
    /// its host name (without `.local`, printable, at most 63 bytes), the model it says
    /// (`_device-info._tcp`) and the service types it offers (e.g. `_googlecast._tcp`, at most
    /// 16). `mac` is the frame's sender when the capture shows it on the link.
    MdnsName {
        time: Timestamp,
        ip: IpAddr,
        mac: Option<MacAddr>,
        name: Option<String>,
        model: Option<String>,
        services: Vec<String>,
    },
    /// The neighbour table (ARP/NDP, or a packet's Ethernet source) maps `ip` to `mac`.
    Neighbour { time: Timestamp, ip: IpAddr, mac: MacAddr },
    /// One packet dropped by the block rules; `packet.bytes` is its L4 payload, `packets` 1.
    Blocked { time: Timestamp, packet: FlowSample },
    /// The interfaces that face the internet now (by name; empty: none), from the neighbour
    /// source: where the enforcer's redirect and refusals apply.
    WanInterfaces { names: Vec<String> },
    /// The clock advanced (drives expiry, statistics, device-flow ageing). Sent about once a second.
    Tick { time: Timestamp },
    /// A replayed capture has been fully delivered.
    ReplayFinished { time: Timestamp, packets: u64 },
    /// The fetcher downloaded (or read) the household's blocklist `id`: what it loaded, or why
    /// not (the previous copy stays in force).
    /// Not an observation of the clock: the core stamps it with its own time (a replay's clock
    /// is the capture's).
    BlocklistFetched { id: u64, outcome: Result<crate::model::listsources::Fetched, String> },
}

impl Event {
    pub fn time(&self) -> Timestamp {
        match self {
            // Not an observation of the clock.
            Event::WanInterfaces { .. } | Event::BlocklistFetched { .. } => Timestamp::MIN,
            Event::Flows { time, .. }
            | Event::DnsQuery { time, .. }
            | Event::DnsAnswer { time, .. }
            | Event::DnsBlocked { time, .. }
            | Event::Neighbour { time, .. }
            | Event::MdnsName { time, .. }
            | Event::Blocked { time, .. }
            | Event::Tick { time }
            | Event::ReplayFinished { time, .. } => *time,
        }
    }
}

/// Where the answer to a JSON-RPC request goes.
#[derive(Debug)]
pub enum RpcReply {
    /// Back to a waiting transport (unix socket, HTTP). `None` = nothing to send (a notification
    /// whose method has no result).
    Channel(SyncSender<Option<String>>),
    /// Published on `SPIN/jsonrpc/a` (request came from `SPIN/jsonrpc/q`).
    Mqtt,
}

/// Everything the core receives, on one channel.
#[derive(Debug)]
pub enum Input {
    Event(Event),
    Rpc { request: String, reply: RpcReply },
}

/// One MQTT message for the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

impl Publish {
    pub fn new(topic: impl Into<String>, payload: impl Into<Vec<u8>>, retain: bool) -> Self {
        Publish { topic: topic.into(), payload: payload.into(), retain }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_and_print_round_trip() {
        let m: MacAddr = "AA:bb:0c:dd:ee:FF".parse().unwrap();
        assert_eq!(m.to_string(), "aa:bb:0c:dd:ee:ff");
        assert!(m.is_unicast());
        assert!("aa:bb:cc:dd:ee".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:ff:00".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:f".parse::<MacAddr>().is_err());
        assert!("aa:bb:cc:dd:ee:fg".parse::<MacAddr>().is_err());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<MacAddr>().unwrap().is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
    }
}
