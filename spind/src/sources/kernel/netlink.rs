//! The raw netlink plumbing every kernel source shares: a blocking socket, a message builder
//! and zero-copy iterators over the messages and attributes of one received datagram. Requests
//! are built by hand and replies parsed in place from one reused buffer; nothing here panics on
//! kernel input.

use std::io;
use std::time::Duration;

pub(crate) const NLMSG_HDRLEN: usize = 16;
pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;
pub(crate) const NLMSG_OVERRUN: u16 = 4;
pub(crate) const NLM_F_REQUEST: u16 = 1;
pub(crate) const NLM_F_ACK: u16 = 4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
pub(crate) const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A raw netlink socket (blocking, close-on-exec).
pub(crate) struct NlSocket {
    fd: libc::c_int,
    seq: u32,
}

impl Drop for NlSocket {
    fn drop(&mut self) {
        // SAFETY: we own the descriptor.
        unsafe { libc::close(self.fd) };
    }
}

impl NlSocket {
    pub fn open(protocol: libc::c_int) -> io::Result<NlSocket> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let sock = NlSocket { fd, seq: 1 };
        // SAFETY: zeroed sockaddr_nl is valid (pid 0 = kernel assigns one).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: addr is a valid sockaddr_nl of the given size.
        let r = unsafe {
            libc::bind(
                fd,
                &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sock)
    }

    fn setsockopt_int(&self, level: libc::c_int, name: libc::c_int, val: libc::c_int) -> io::Result<()> {
        // SAFETY: val is a valid c_int for the duration of the call.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                level,
                name,
                &val as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Sets the receive buffer: `SO_RCVBUFFORCE` (root may exceed `rmem_max`), else `SO_RCVBUF`.
    pub fn set_rcvbuf(&self, bytes: usize) {
        let b = bytes.min(i32::MAX as usize) as libc::c_int;
        if self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, b).is_err() {
            if let Err(e) = self.setsockopt_int(libc::SOL_SOCKET, libc::SO_RCVBUF, b) {
                log::warn!("cannot set netlink receive buffer to {bytes} bytes: {e}");
            }
        }
    }

    pub fn add_membership(&self, group: u32) -> io::Result<()> {
        self.setsockopt_int(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as libc::c_int)
    }

    /// Makes `recv` return `WouldBlock`/`TimedOut` after `timeout` without data.
    pub fn set_recv_timeout(&self, timeout: Duration) -> io::Result<()> {
        // `as _`: libc's time_t and suseconds_t aliases are deprecated on musl.
        let tv = libc::timeval { tv_sec: timeout.as_secs() as _, tv_usec: timeout.subsec_micros() as _ };
        // SAFETY: tv is valid for the call.
        let r = unsafe {
            libc::setsockopt(
                self.fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one complete message (header included) to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: zeroed sockaddr_nl = the kernel (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        loop {
            // SAFETY: msg and addr are valid for the call.
            let r = unsafe {
                libc::sendto(
                    self.fd,
                    msg.as_ptr() as *const libc::c_void,
                    msg.len(),
                    0,
                    &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                )
            };
            if r >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receives one datagram into `buf`; returns its length. A datagram larger than `buf` is
    /// reported as an `InvalidData` error (and dropped by the kernel).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: buf is valid for writes of buf.len() bytes.
            let r = unsafe { libc::recv(self.fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_TRUNC) };
            if r >= 0 {
                let n = r as usize;
                if n > buf.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink message of {n} bytes truncated to {}", buf.len()),
                    ));
                }
                return Ok(n);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Sends a request with `NLM_F_ACK` and waits for its acknowledgement (error 0).
    pub fn request_ack(&mut self, msg: &mut [u8], buf: &mut [u8]) -> io::Result<()> {
        let seq = self.next_seq();
        msg[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.send(msg)?;
        loop {
            let n = self.recv(buf)?;
            for m in NlMsgs::new(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                if m.kind == NLMSG_ERROR {
                    return match m.error_code() {
                        Some(0) => Ok(()),
                        Some(e) => Err(io::Error::from_raw_os_error(e)),
                        None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error message")),
                    };
                }
            }
        }
    }
}

/// Builds a netlink message in a reusable buffer: header, fixed family header, attributes.
pub(crate) struct MsgBuilder {
    buf: Vec<u8>,
}

impl MsgBuilder {
    pub fn new(kind: u16, flags: u16) -> MsgBuilder {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&kind.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq
        buf.extend_from_slice(&0u32.to_ne_bytes()); // pid
        MsgBuilder { buf }
    }

    /// Appends the nfgenmsg header (family, version 0, res_id big-endian).
    pub fn nfgen(mut self, family: u8, res_id: u16) -> MsgBuilder {
        self.buf.push(family);
        self.buf.push(0);
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        self
    }

    pub fn raw(mut self, bytes: &[u8]) -> MsgBuilder {
        self.buf.extend_from_slice(bytes);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    pub fn attr(mut self, kind: u16, data: &[u8]) -> MsgBuilder {
        let len = 4 + data.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf
    }
}

/// One netlink message (header fields and payload after the 16-byte header).
#[derive(Clone, Copy)]
pub(crate) struct NlMsg<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

impl<'a> NlMsg<'a> {
    /// For `NLMSG_ERROR`: the (positive) errno, 0 for an acknowledgement.
    pub fn error_code(&self) -> Option<i32> {
        let b = self.payload.get(..4)?;
        Some(-i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Iterates over the messages of one datagram; stops at the first malformed header.
pub(crate) struct NlMsgs<'a> {
    data: &'a [u8],
}

impl<'a> NlMsgs<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        NlMsgs { data }
    }
}

impl<'a> Iterator for NlMsgs<'a> {
    type Item = NlMsg<'a>;
    fn next(&mut self) -> Option<NlMsg<'a>> {
        let d = self.data;
        if d.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        if len < NLMSG_HDRLEN || len > d.len() {
            if !d.is_empty() {
                log::debug!("malformed netlink message header (length {len} of {} bytes)", d.len());
            }
            self.data = &[];
            return None;
        }
        let msg = NlMsg {
            kind: u16::from_ne_bytes([d[4], d[5]]),
            seq: u32::from_ne_bytes([d[8], d[9], d[10], d[11]]),
            payload: &d[NLMSG_HDRLEN..len],
        };
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some(msg)
    }
}

/// Iterates over netlink attributes `(type without flags, data)`; stops at the first malformed one.
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
        let d = self.data;
        if d.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([d[0], d[1]]) as usize;
        if len < 4 || len > d.len() {
            self.data = &[];
            return None;
        }
        let kind = u16::from_ne_bytes([d[2], d[3]]) & NLA_TYPE_MASK;
        self.data = d.get(align4(len)..).unwrap_or(&[]);
        Some((kind, &d[4..len]))
    }
}

pub(crate) fn be_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(..2)?.try_into().ok()?))
}

pub(crate) fn be_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}
