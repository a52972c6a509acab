//! NFLOG: copies of packets logged by the firewall (`log group N` in nftables).
//!
//! Two kinds of groups:
//! - [`NflogKind::Dns`]: DNS queries and answers (UDP, and TCP where segments are logged) and
//!   mDNS announcements from the LAN, decoded by [`crate::sources::packet::Decoder`] from the raw
//!   IP packet; only its DNS and mDNS events are kept.
//! - [`NflogKind::Blocked`]: packets dropped by the block rules, each one [`Event::Blocked`].
//!
//! Each group is bound with copy mode "whole packet" and a queue threshold of 1, so the kernel
//! sends every packet at once (its default batches them for up to a second). Messages are typed
//! neli messages ([`Nfgenmsg`], neli's NFLOG constants); [`nflog_packet`] is the pure parser of
//! one packet message.

use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

use neli::consts::netfilter::{LogCmd, LogCopyMode, NetfilterMsg, NfLogAttr, NfLogCfg};
use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::types::GenlBuffer;

use super::netlink::{self, attr, messages, reply, Nfgenmsg, NlSocket, Reply};
use super::{KernelError, SourceCounters, FIX_NFLOG};
use crate::model::event::{Event, FlowSample, Input, Timestamp};
use crate::sources::packet::{Decoder, LinkType};

/// Receive buffer of the socket: bursts of DNS packets while the thread is descheduled.
const RCVBUF: usize = 4 << 20;
/// One datagram: a whole 64 KiB packet plus NFLOG metadata.
const READ_BUF: usize = 128 << 10;

/// What a group carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NflogKind {
    /// Copies of DNS packets (`iptable_queue_dns`).
    Dns,
    /// Packets dropped by the block rules (`iptable_queue_block`).
    Blocked,
}

/// Counts of one [`Nflog::recv`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvStats {
    pub packets: u32,
    pub malformed: u32,
    /// The socket's receive buffer overran: packets were lost.
    pub enobufs: u32,
}

/// A socket bound to one or more NFLOG groups.
pub struct Nflog {
    sock: NlSocket,
    groups: Vec<(u16, NflogKind)>,
    buf: Vec<u8>,
    decoder: Decoder,
    scratch: Vec<Event>,
}

/// The configuration request for `group`: a command (bind, unbind) and, with `packet_mode`,
/// whole packets with a queue threshold of 1.
fn config_msg(group: u16, cmd: Option<LogCmd>, packet_mode: bool) -> io::Result<Nfgenmsg> {
    let mut attrs = GenlBuffer::new();
    if let Some(c) = cmd {
        attrs.push(attr(NfLogCfg::Cmd.into(), &[c.into()])?);
    }
    if packet_mode {
        // struct nfulnl_msg_config_mode { __be32 copy_range; __u8 copy_mode; __u8 _pad; } (packed)
        let mut mode = [0u8; 6];
        mode[..4].copy_from_slice(&0xffffu32.to_be_bytes());
        mode[4] = LogCopyMode::Packet.into();
        attrs.push(attr(NfLogCfg::Mode.into(), &mode)?);
        attrs.push(attr(NfLogCfg::QThresh.into(), &1u32.to_be_bytes())?);
        attrs.push(attr(NfLogCfg::Timeout.into(), &1u32.to_be_bytes())?); // 1/100 s
    }
    Ok(Nfgenmsg::new(libc::AF_UNSPEC as u8, group, attrs))
}

fn bind_error(group: u16, err: io::Error) -> KernelError {
    // The kernel answers EPERM (not EBUSY) when another socket owns the group; without
    // CAP_NET_ADMIN it also says EPERM: tell the two apart by our capabilities.
    let eperm = err.raw_os_error() == Some(libc::EPERM);
    if err.raw_os_error() == Some(libc::EBUSY) || (eperm && super::has_cap_net_admin()) {
        KernelError::GroupBusy { group }
    } else {
        KernelError::from_io("bind an NFLOG group", FIX_NFLOG, err)
    }
}

impl Nflog {
    /// Opens a socket and binds each group (copy whole packets, queue threshold 1).
    pub fn open(groups: &[(u16, NflogKind)]) -> Result<Nflog, KernelError> {
        let mut sock = NlSocket::open(NlFamily::Netfilter, &[])
            .map_err(|e| KernelError::from_io("open NFLOG netlink", FIX_NFLOG, e))?;
        sock.set_rcvbuf(RCVBUF);
        let mut buf = vec![0u8; READ_BUF];
        for &(group, _) in groups {
            let msg = config_msg(group, Some(LogCmd::Bind), true).map_err(|e| bind_error(group, e))?;
            sock.request_ack(NetfilterMsg::LogConfig, msg, &mut buf).map_err(|e| bind_error(group, e))?;
        }
        Ok(Nflog { sock, groups: groups.to_vec(), buf, decoder: Decoder::new(), scratch: Vec::new() })
    }

    /// Makes [`Nflog::recv`] return after `timeout` without packets.
    pub fn set_timeout(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_recv_timeout(timeout)
    }

    /// Waits for one datagram (or the timeout) and appends the events of its packets to `out`.
    /// Kernel errors other than buffer overruns and timeouts are returned.
    pub fn recv(&mut self, out: &mut Vec<Event>) -> io::Result<RecvStats> {
        let mut st = RecvStats::default();
        let n = match self.sock.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                st.enobufs += 1;
                return Ok(st);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => return Ok(st),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                log::debug!("NFLOG: {e}");
                st.malformed += 1;
                return Ok(st);
            }
            Err(e) => return Err(e),
        };
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
        for m in messages::<Nfgenmsg>(&self.buf[..n]) {
            let Ok(m) = m else {
                st.malformed += 1;
                continue;
            };
            let msg = match reply(&m) {
                Reply::Data(k, msg) if k == u16::from(NetfilterMsg::LogPacket) => msg,
                Reply::Overrun => {
                    st.enobufs += 1;
                    continue;
                }
                Reply::Failed(e) => {
                    log::debug!("NFLOG: netlink error {}", io::Error::from_raw_os_error(e));
                    continue;
                }
                _ => continue,
            };
            let Some(kind) = self.groups.iter().find(|g| g.0 == msg.res_id()).map(|g| g.1) else { continue };
            let Some(payload) = logged_packet(msg) else {
                st.malformed += 1;
                continue;
            };
            st.packets += 1;
            match kind {
                NflogKind::Dns => {
                    self.scratch.clear();
                    self.decoder.frame(ts, LinkType::RawIp, payload, &mut self.scratch);
                    out.extend(self.scratch.drain(..).filter(|e| {
                        matches!(e, Event::DnsQuery { .. } | Event::DnsAnswer { .. } | Event::MdnsName { .. })
                    }));
                }
                NflogKind::Blocked => match blocked_sample(payload) {
                    Some(packet) => out.push(Event::Blocked { time: ts.floor() as Timestamp, packet }),
                    None => st.malformed += 1,
                },
            }
        }
        Ok(st)
    }

    pub(crate) fn run_until(mut self, tx: Sender<Input>, counters: &SourceCounters, stop: &AtomicBool) {
        if let Err(e) = self.set_timeout(Duration::from_millis(500)) {
            log::warn!("NFLOG: cannot set a receive timeout: {e}");
        }
        let mut events = Vec::new();
        let mut failures = 0u32;
        while !stop.load(Ordering::Relaxed) {
            match self.recv(&mut events) {
                Ok(st) => {
                    failures = 0;
                    counters.nflog_packets.fetch_add(st.packets as usize, Ordering::Relaxed);
                    counters.nflog_malformed.fetch_add(st.malformed as usize, Ordering::Relaxed);
                    if st.enobufs > 0 {
                        counters.nflog_enobufs.fetch_add(st.enobufs as usize, Ordering::Relaxed);
                        log::warn!("NFLOG receive buffer overrun: packets were lost");
                    }
                }
                Err(e) => {
                    failures += 1;
                    log::warn!("NFLOG receive failed: {e}");
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

impl Drop for Nflog {
    fn drop(&mut self) {
        // The kernel unbinds when the socket closes; saying so explicitly is tidier.
        for &(group, _) in &self.groups {
            if let Ok(msg) = config_msg(group, Some(LogCmd::Unbind), false) {
                let _ = self.sock.send(NetfilterMsg::LogConfig, NlmF::empty(), msg);
            }
        }
    }
}

/// The packet (`NFULA_PAYLOAD`) of a parsed NFLOG packet message.
fn logged_packet(msg: &Nfgenmsg) -> Option<&[u8]> {
    let payload = u16::from(NfLogAttr::Payload);
    msg.attrs.iter().find(|a| *a.nla_type().nla_type() == payload).map(|a| a.nla_payload().as_ref())
}

/// Parses one NFLOG packet message (the payload of its netlink message: nfgenmsg and
/// attributes): its group and the logged IP packet. `None` when malformed or without a packet.
pub fn nflog_packet(payload: &[u8]) -> Option<(u16, Vec<u8>)> {
    let msg = netlink::payload::<Nfgenmsg>(payload).ok()?;
    Some((msg.res_id(), logged_packet(&msg)?.to_vec()))
}

/// One blocked packet as a sample: addresses and ports of the packet itself, `bytes` = its L4
/// payload length, 1 packet.
pub fn blocked_sample(ip_packet: &[u8]) -> Option<FlowSample> {
    let pkt = LaxSlicedPacket::from_ip(ip_packet).ok()?;
    let (src, dst, ip_payload) = match &pkt.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (IpAddr::V4(h.source_addr()), IpAddr::V4(h.destination_addr()), ip.payload())
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (IpAddr::V6(h.source_addr()), IpAddr::V6(h.destination_addr()), ip.payload())
        }
        _ => return None,
    };
    let mut s = FlowSample {
        protocol: ip_payload.ip_number.0,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        icmp_type: 0,
        bytes: ip_payload.payload.len() as u64,
        packets: 1,
        reply_bytes: 0,
    };
    match &pkt.transport {
        Some(TransportSlice::Udp(u)) => {
            s.src_port = u.source_port();
            s.dst_port = u.destination_port();
            s.bytes = u.payload().len() as u64;
        }
        Some(TransportSlice::Tcp(t)) => {
            s.src_port = t.source_port();
            s.dst_port = t.destination_port();
            s.bytes = t.payload().len() as u64;
        }
        Some(TransportSlice::Icmpv4(i)) => {
            s.icmp_type = i.type_u8();
            s.bytes = i.payload().len() as u64;
        }
        Some(TransportSlice::Icmpv6(i)) => {
            s.icmp_type = i.type_u8();
            s.bytes = i.payload().len() as u64;
        }
        _ => {}
    }
    Some(s)
}

/// Start-up check: binds and releases a spare group (65534).
pub(crate) fn check() -> Result<(), KernelError> {
    let nflog = Nflog::open(&[(65534, NflogKind::Blocked)]);
    match nflog {
        Ok(_) | Err(KernelError::GroupBusy { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;
    use etherparse::PacketBuilder;

    #[test]
    fn packet_mode_config_asks_for_every_packet_at_once() {
        // Without NFULA_CFG_QTHRESH=1 the kernel batches NFLOG messages (~1 s late).
        let mut bytes = std::io::Cursor::new(Vec::new());
        neli::ToBytes::to_bytes(&config_msg(41, None, true).unwrap(), &mut bytes).unwrap();
        let msg = netlink::payload::<Nfgenmsg>(bytes.get_ref()).unwrap();
        let attrs: Vec<(u16, Vec<u8>)> =
            msg.attrs.iter().map(|a| (*a.nla_type().nla_type(), a.nla_payload().as_ref().to_vec())).collect();
        assert!(attrs.contains(&(NfLogCfg::QThresh.into(), 1u32.to_be_bytes().to_vec())), "{attrs:?}");
        assert!(attrs.contains(&(NfLogCfg::Timeout.into(), 1u32.to_be_bytes().to_vec())), "{attrs:?}");
        assert_eq!(u16::from_be_bytes([bytes.get_ref()[2], bytes.get_ref()[3]]), 41, "group in the nfgenmsg header");
        assert_eq!(msg.res_id(), 41);
    }

    #[test]
    fn packet_messages_give_group_and_packet() {
        let mut attrs = GenlBuffer::new();
        attrs.push(attr(NfLogAttr::Payload.into(), &[0x45, 0, 0, 20]).unwrap());
        let mut bytes = std::io::Cursor::new(Vec::new());
        neli::ToBytes::to_bytes(&Nfgenmsg::new(libc::AF_INET as u8, 42, attrs), &mut bytes).unwrap();
        let full = bytes.into_inner();
        assert_eq!(nflog_packet(&full), Some((42, vec![0x45, 0, 0, 20])));
        for cut in 0..full.len() {
            let _ = nflog_packet(&full[..cut]);
            let mut q = full.clone();
            q[cut] ^= 0xff;
            let _ = nflog_packet(&q);
        }
    }

    #[test]
    fn blocked_udp_and_tcp_samples() {
        let mut v = Vec::new();
        PacketBuilder::ipv4([192, 168, 1, 10], [203, 0, 113, 5], 64).udp(40000, 443).write(&mut v, &[0u8; 37]).unwrap();
        let s = blocked_sample(&v).unwrap();
        assert_eq!((s.protocol, s.src_port, s.dst_port, s.bytes, s.packets), (17, 40000, 443, 37, 1));
        assert_eq!(s.dst, "203.0.113.5".parse::<IpAddr>().unwrap());

        let mut v = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0x20; 16], 64).tcp(1234, 80, 1, 1000).write(&mut v, &[1u8; 10]).unwrap();
        let s = blocked_sample(&v).unwrap();
        assert_eq!((s.protocol, s.src_port, s.dst_port, s.bytes), (6, 1234, 80, 10));

        for cut in 0..v.len() {
            let _ = blocked_sample(&v[..cut]);
        }
        assert!(blocked_sample(&[]).is_none());
    }
}
