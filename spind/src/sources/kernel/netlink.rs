//! The netlink plumbing every kernel source shares, on neli: the socket (neli's `NlSocket`:
//! socket, bind, multicast groups, send and receive), requests built as neli `Nlmsghdr`s, the
//! messages of one received datagram parsed into typed neli messages ([`messages`]), what a
//! reply says ([`Reply`]: data, done, acknowledged, an errno) and the nfnetlink header neli
//! has no type for ([`Nfgenmsg`]).
//!
//! One exception, measured: the conntrack dump reads its entries in place ([`raw_messages`],
//! [`Attrs`]) instead of as neli messages, which copy every attribute into its own buffer; at
//! 10,000 flows neli's parsing took spind from 3.5% to 6.1% CPU (`cargo xtask bench router`,
//! docs/architecture.md). Nothing here panics on kernel input: a malformed message ends the
//! datagram's messages and is logged.

use std::fmt::Debug;
use std::io::{self, Cursor};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

use neli::consts::nl::{NlType, NlmF, Nlmsg};
use neli::consts::socket::{Msg, NlFamily};
use neli::err::DeError;
use neli::nl::{NlPayload, Nlmsghdr, NlmsghdrBuilder};
use neli::types::{Buffer, GenlBuffer};
use neli::utils::Groups;
use neli::{FromBytes, FromBytesWithInput, Header, Size, ToBytes};
use nix::sys::socket::{setsockopt, sockopt};
use nix::sys::time::{TimeVal, TimeValLike};

/// The 16-byte netlink message header.
pub(crate) const NLMSG_HDRLEN: usize = 16;

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The nfnetlink header (`struct nfgenmsg`: family, version, resource id in network byte order)
/// and the attributes after it: conntrack and NFLOG messages. neli has no type for it.
#[derive(Debug, Size, ToBytes, FromBytesWithInput, Header)]
pub struct Nfgenmsg {
    pub family: u8,
    pub version: u8,
    /// Big-endian on the wire (NFLOG: the group): read it with [`Nfgenmsg::res_id`].
    res_id_be: u16,
    #[neli(input = "input.checked_sub(Self::header_size()).ok_or(DeError::InvalidInput(input))?")]
    pub attrs: GenlBuffer<u16, Buffer>,
}

impl Nfgenmsg {
    pub fn new(family: u8, res_id: u16, attrs: GenlBuffer<u16, Buffer>) -> Nfgenmsg {
        Nfgenmsg { family, version: 0, res_id_be: res_id.to_be(), attrs }
    }

    pub fn res_id(&self) -> u16 {
        u16::from_be(self.res_id_be)
    }
}

/// What a received message is, for the request it answers or as a notification.
pub(crate) enum Reply<'a, P> {
    /// A data message (dump part, reply or notification) with its type.
    Data(u16, &'a P),
    /// The end of a dump, or the acknowledgement of a request.
    Done,
    /// The kernel refused the request: the (positive) errno.
    Failed(i32),
    /// Messages lost: the socket's receive buffer overran.
    Overrun,
    /// A message of no interest (`NLMSG_NOOP`).
    Other,
}

/// Classifies one parsed message.
pub(crate) fn reply<P>(m: &Nlmsghdr<u16, P>) -> Reply<'_, P> {
    let kind = *m.nl_type();
    match m.nl_payload() {
        NlPayload::Err(e) => Reply::Failed(-*e.error()),
        NlPayload::Ack(_) => Reply::Done,
        NlPayload::DumpExtAck(e) if *e.error() != 0 => Reply::Failed(-*e.error()),
        NlPayload::DumpExtAck(_) => Reply::Done,
        _ if kind == u16::from(Nlmsg::Done) => Reply::Done,
        _ if kind == u16::from(Nlmsg::Overrun) => Reply::Overrun,
        NlPayload::Payload(p) if kind >= 0x10 => Reply::Data(kind, p),
        _ => Reply::Other,
    }
}

/// The messages of one datagram as typed neli messages. A message neli cannot parse is yielded
/// as its error and ends the iteration, as does (silently but for a debug log) a header whose
/// length does not fit: neli would be handed a length it cannot take.
pub(crate) fn messages<P>(data: &[u8]) -> impl Iterator<Item = Result<Nlmsghdr<u16, P>, DeError>> + '_
where
    P: Size + FromBytesWithInput<Input = usize> + Debug,
{
    let mut cursor = Cursor::new(data);
    let mut done = false;
    std::iter::from_fn(move || {
        let at = cursor.position() as usize;
        let rest = &data[at.min(data.len())..];
        if done || rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            log::debug!("malformed netlink message header (length {len} of {} bytes)", rest.len());
            return None;
        }
        let parsed = Nlmsghdr::<u16, P>::from_bytes(&mut cursor);
        if let Err(e) = &parsed {
            log::debug!("malformed netlink message (type {}): {e}", u16::from_ne_bytes([rest[4], rest[5]]));
            done = true;
        }
        Some(parsed)
    })
}

/// One netlink message seen in place: header fields and the payload after the 16-byte header.
/// The zero-copy view of the conntrack hot path (see [`raw_messages`]).
#[derive(Clone, Copy)]
pub(crate) struct RawMsg<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

impl RawMsg<'_> {
    /// For `NLMSG_ERROR` (and a dump's `NLMSG_DONE`): the (positive) errno, 0 for success.
    pub fn error_code(&self) -> Option<i32> {
        let b = self.payload.get(..4)?;
        Some(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// The messages of one datagram in place, without copying; stops at the first malformed header.
pub(crate) fn raw_messages(data: &[u8]) -> impl Iterator<Item = RawMsg<'_>> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let d = rest;
        if d.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            log::debug!("malformed netlink message header (length {len} of {} bytes)", d.len());
            rest = &[];
            return None;
        }
        rest = d.get(align4(len)..).unwrap_or(&[]);
        Some(RawMsg {
            kind: u16::from_ne_bytes([d[4], d[5]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            payload: &d[NLMSG_HDRLEN..len],
        })
    })
}

/// Netlink attributes in place, `(type without flags, data)`; stops at the first malformed one.
#[derive(Clone, Copy)]
pub(crate) struct Attrs<'a> {
    data: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Attrs { data }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = (u16, &'a [u8]);
    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        // NLA_F_NESTED and NLA_F_NET_BYTEORDER are flags, not part of the type.
        const NLA_TYPE_MASK: u16 = !(3 << 14);
        let d = self.data;
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        if len < 4 || len > d.len() {
            self.data = &[];
            return None;
        }
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some((u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK, &d[4..len]))
    }
}

/// Parses `data` as one `P` (a payload without its netlink header), for the pure parsers.
pub(crate) fn payload<P>(data: &[u8]) -> Result<P, DeError>
where
    P: FromBytesWithInput<Input = usize>,
{
    P::from_bytes_with_input(&mut Cursor::new(data), data.len())
}

/// An attribute for a request.
pub(crate) fn attr(kind: u16, data: &[u8]) -> io::Result<neli::genl::Nlattr<u16, Buffer>> {
    neli::genl::NlattrBuilder::default()
        .nla_type(neli::genl::AttrTypeBuilder::default().nla_type(kind).build().map_err(invalid)?)
        .nla_payload(Buffer::from(data))
        .build()
        .map_err(invalid)
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// A netlink socket (blocking, close-on-exec), bound and subscribed by neli.
pub(crate) struct NlSocket {
    sock: neli::socket::NlSocket,
    seq: u32,
    out: Vec<u8>,
}

impl NlSocket {
    /// Opens a socket of `family` subscribed to the multicast `groups` (group numbers).
    pub fn open(family: NlFamily, groups: &[u32]) -> io::Result<NlSocket> {
        let sock = neli::socket::NlSocket::connect(family, None, Groups::new_groups(groups))?;
        Ok(NlSocket { sock, seq: 1, out: Vec::with_capacity(64) })
    }

    /// The descriptor, for the socket options neli has no call for.
    fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is `self.sock`'s, open from `connect` until its Drop; the
        // borrow lives no longer than `&self`, so it cannot outlive the socket.
        unsafe { BorrowedFd::borrow_raw(self.sock.as_raw_fd()) }
    }

    /// Sets the receive buffer: `SO_RCVBUFFORCE` (root may exceed `rmem_max`), else `SO_RCVBUF`.
    pub fn set_rcvbuf(&self, bytes: usize) {
        if setsockopt(&self.fd(), sockopt::RcvBufForce, &bytes).is_err() {
            if let Err(e) = self.sock.set_recv_buffer_size(bytes) {
                log::warn!("cannot set netlink receive buffer to {bytes} bytes: {e}");
            }
        }
    }

    /// Makes `recv` return `WouldBlock` after `timeout` without data.
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        let tv = TimeVal::microseconds(timeout.as_micros().min(i64::MAX as u128) as i64);
        setsockopt(&self.fd(), sockopt::ReceiveTimeout, &tv).map_err(io::Error::from)
    }

    /// Sends one request (`NLM_F_REQUEST` is added to `flags`); returns its sequence number.
    pub fn send<T, P>(&mut self, kind: T, flags: NlmF, payload: P) -> io::Result<u32>
    where
        T: NlType + Debug,
        P: Size + ToBytes + Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        let msg = NlmsghdrBuilder::default()
            .nl_type(kind)
            .nl_flags(flags | NlmF::REQUEST)
            .nl_seq(self.seq)
            .nl_payload(NlPayload::Payload(payload))
            .build()
            .map_err(invalid)?;
        self.out.clear();
        let mut cursor = Cursor::new(std::mem::take(&mut self.out));
        let written = msg.to_bytes(&mut cursor).map_err(invalid);
        self.out = cursor.into_inner();
        written?;
        loop {
            match self.sock.send(&self.out, Msg::empty()) {
                Ok(_) => return Ok(self.seq),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Receives one datagram into `buf`; returns its length. A datagram larger than `buf` is
    /// reported as an `InvalidData` error (and dropped by the kernel).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.sock.recv(&mut *buf, Msg::TRUNC) {
                Ok((n, _)) if n > buf.len() => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink message of {n} bytes truncated to {}", buf.len()),
                    ))
                }
                Ok((n, _)) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends a request with `NLM_F_ACK` and waits for its acknowledgement.
    pub fn request_ack<T, P>(&mut self, kind: T, payload: P, buf: &mut [u8]) -> io::Result<()>
    where
        T: NlType + Debug,
        P: Size + ToBytes + FromBytesWithInput<Input = usize> + Debug,
    {
        let seq = self.send(kind, NlmF::ACK, payload)?;
        loop {
            let n = self.recv(buf)?;
            for m in messages::<P>(&buf[..n]).flatten() {
                if *m.nl_seq() != seq {
                    continue;
                }
                match reply(&m) {
                    Reply::Done => return Ok(()),
                    Reply::Failed(e) => return Err(io::Error::from_raw_os_error(e)),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of `kind` with `payload`, padded to 4 bytes (the length field is not).
    fn msg(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut m = ((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    #[test]
    fn a_message_neli_cannot_parse_is_reported_and_ends_the_datagram() {
        let good = msg(0x0400, &[2, 0, 0, 41]); // an NFLOG packet message for group 41
        let short = msg(0x0400, &[2, 0]); // its nfgenmsg cut short
        let data = [good.clone(), short, good].concat();
        let got: Vec<Result<Option<u16>, DeError>> =
            messages::<Nfgenmsg>(&data).map(|m| m.map(|m| m.get_payload().map(Nfgenmsg::res_id))).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].as_ref().ok(), Some(&Some(41)));
        assert!(got[1].is_err());
        // The in-place view stops only at a header that does not fit.
        assert_eq!(raw_messages(&data).count(), 3);
        assert_eq!(raw_messages(&data[..data.len() - 1]).count(), 2);
    }
}
