//! Per-device packet capture (SPIN's "old style" `tcpdump_start`): every Ethernet frame whose
//! source or destination is one MAC, as a pcap stream. SPIN ran `tcpdump -s 1600 -w - ether host
//! <mac>` through a shell; here it is an `AF_PACKET`/`SOCK_RAW` socket (socket2) with a classic
//! BPF filter (the MAC is also checked again in user space), no shell and no tcpdump; frames and
//! their link-layer addresses are read with nix's `recvmsg`.
//!
//! The socket listens on all interfaces. Frames seen on a bridge port are skipped because the
//! bridge device sees them too (otherwise everything a LAN device sends to the router would be
//! in the file twice); non-Ethernet interfaces (loopback, tun, ...) are skipped.

use std::collections::HashMap;
use std::io::{self, IoSliceMut, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::socket::{recvmsg, LinkAddr, MsgFlags};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::model::event::MacAddr;

/// Bytes kept of each frame (as SPIN's `tcpdump -s 1600`).
pub const SNAPLEN: u32 = 1600;
/// How often a blocked read wakes up to look at the stop flag.
const POLL: Duration = Duration::from_millis(300);
/// Captures running at once (all devices together).
pub const MAX_RUNNING: usize = 8;

/// The 24-byte pcap file header (microsecond timestamps, Ethernet, snaplen 1600).
pub fn pcap_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
    h
}

/// A pcap record: header plus the first `SNAPLEN` bytes of `frame`, whose real length is `orig`.
pub fn pcap_record(out: &mut Vec<u8>, ts: Duration, frame: &[u8], orig: usize) {
    let incl = frame.len().min(SNAPLEN as usize);
    out.extend_from_slice(&(ts.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&ts.subsec_micros().to_le_bytes());
    out.extend_from_slice(&(incl as u32).to_le_bytes());
    out.extend_from_slice(&(orig.max(incl) as u32).to_le_bytes());
    out.extend_from_slice(&frame[..incl]);
}

/// Whether an Ethernet frame is from or to `mac`.
pub fn frame_matches(frame: &[u8], mac: &MacAddr) -> bool {
    frame.len() >= 14 && (frame[0..6] == mac.0 || frame[6..12] == mac.0)
}

/// Why a capture could not start.
#[derive(Debug)]
pub enum CaptureError {
    /// No `CAP_NET_RAW` (not root).
    NoPermission,
    /// Too many captures already.
    Busy,
    Io(io::Error),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::NoPermission => {
                f.write_str("packet capture needs root (CAP_NET_RAW): spind cannot open a packet socket")
            }
            CaptureError::Busy => write!(f, "too many packet captures running (at most {MAX_RUNNING})"),
            CaptureError::Io(e) => write!(f, "cannot open a packet socket: {e}"),
        }
    }
}

/// An `AF_PACKET` socket that returns the frames of one MAC.
pub struct PacketSocket {
    sock: Socket,
    mac: MacAddr,
    buf: Vec<u8>,
    bridge_ports: HashMap<usize, bool>,
}

/// One received frame.
pub struct Frame<'a> {
    pub data: &'a [u8],
    /// Length on the wire (`data` may be shorter if the frame was larger than the buffer).
    pub orig_len: usize,
}

impl PacketSocket {
    pub fn open(mac: MacAddr) -> Result<PacketSocket, CaptureError> {
        let all = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
        // socket2 opens it close-on-exec.
        let sock = Socket::new(Domain::PACKET, Type::RAW, Some(all)).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => CaptureError::NoPermission,
            _ => CaptureError::Io(e),
        })?;
        let s = PacketSocket { sock, mac, buf: vec![0u8; 65536 + 64], bridge_ports: HashMap::new() };
        s.attach_filter().map_err(CaptureError::Io)?;
        s.sock.set_read_timeout(Some(POLL)).map_err(CaptureError::Io)?;
        Ok(s)
    }

    /// Kernel-side filter `ether dst M or ether src M`, so only this device's frames are copied
    /// to user space. Frames queued before it was attached are caught by the user-space check.
    fn attach_filter(&self) -> io::Result<()> {
        let m = self.mac.0;
        let hi = u16::from_be_bytes([m[0], m[1]]) as u32;
        let lo = u32::from_be_bytes([m[2], m[3], m[4], m[5]]);
        const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
        const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
        const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
        const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
        let ins = SockFilter::new;
        let prog = [
            ins(LD_W_ABS, 0, 0, 2),    // 0: dst bytes 2..6
            ins(JEQ_K, 0, 2, lo),      // 1: -> 2 | 4
            ins(LD_H_ABS, 0, 0, 0),    // 2: dst bytes 0..2
            ins(JEQ_K, 4, 0, hi),      // 3: -> 8 | 4
            ins(LD_W_ABS, 0, 0, 8),    // 4: src bytes 2..6
            ins(JEQ_K, 0, 3, lo),      // 5: -> 6 | 9
            ins(LD_H_ABS, 0, 0, 6),    // 6: src bytes 0..2
            ins(JEQ_K, 0, 1, hi),      // 7: -> 8 | 9
            ins(RET_K, 0, 0, 262_144), // 8: whole frame (truncated in user space, length kept)
            ins(RET_K, 0, 0, 0),       // 9: drop
        ];
        self.sock.attach_filter(&prog)
    }

    /// The next frame of the device, or `None` after about [`POLL`] without one.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame<'_>>> {
        loop {
            // MSG_TRUNC: the length on the wire, also when the frame did not fit the buffer.
            let received = {
                let mut iov = [IoSliceMut::new(&mut self.buf)];
                recvmsg::<LinkAddr>(self.sock.as_raw_fd(), &mut iov, None, MsgFlags::MSG_TRUNC)
                    .map(|m| (m.bytes, m.address))
            };
            let (orig, from) = match received {
                Ok(r) => r,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let e = io::Error::from(e);
                    return match e.kind() {
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                        _ => Err(e),
                    };
                }
            };
            let got = orig.min(self.buf.len());
            let Some(from) = from else { continue };
            if from.hatype() != libc::ARPHRD_ETHER
                || !frame_matches(&self.buf[..got], &self.mac)
                || self.is_bridge_port(from.ifindex())
            {
                continue;
            }
            return Ok(Some(Frame { data: &self.buf[..got], orig_len: orig }));
        }
    }

    fn is_bridge_port(&mut self, ifindex: usize) -> bool {
        *self.bridge_ports.entry(ifindex).or_insert_with(|| {
            let Ok(name) = nix::net::if_::if_indextoname(ifindex as libc::c_uint) else { return false };
            std::path::Path::new("/sys/class/net").join(name.to_string_lossy().as_ref()).join("brport").exists()
        })
    }
}

/// One capture's shared state.
#[derive(Default)]
pub struct CaptureState {
    stop: AtomicBool,
    running: AtomicBool,
    /// pcap bytes written. `AtomicUsize`, not `AtomicU64`: 32-bit MIPS (GL.iNet AR150) has no
    /// 64-bit atomics; there the count wraps after 4 GiB (it is only reported).
    bytes: AtomicUsize,
}

impl CaptureState {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst) as u64
    }
}

/// The captures, by device. One capture per device: starting a new one stops the old one
/// (whose stream then ends normally); this also frees a capture whose client went away while
/// the device was silent (a dead client is only noticed when the next frame is written).
#[derive(Default)]
pub struct Captures {
    map: Mutex<HashMap<MacAddr, Arc<CaptureState>>>,
}

/// Status of a device's capture: whether one runs, and the pcap bytes sent by the current or
/// last one (`None`: there was none).
pub struct Status {
    pub running: bool,
    pub bytes: Option<u64>,
}

impl Captures {
    /// Opens the socket and registers a running capture for `mac`, stopping an earlier one.
    pub fn start(&self, mac: MacAddr) -> Result<(Arc<CaptureState>, PacketSocket), CaptureError> {
        {
            let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            let others = map.iter().filter(|(m, s)| **m != mac && s.running()).count();
            if others >= MAX_RUNNING {
                return Err(CaptureError::Busy);
            }
        }
        let sock = PacketSocket::open(mac)?;
        let state = Arc::new(CaptureState::default());
        state.running.store(true, Ordering::SeqCst);
        let old = self.map.lock().unwrap_or_else(|e| e.into_inner()).insert(mac, state.clone());
        if let Some(old) = old {
            old.stop();
        }
        Ok((state, sock))
    }

    /// Stops the device's capture; false if none was running.
    pub fn stop(&self, mac: &MacAddr) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(mac) {
            Some(s) if s.running() => {
                s.stop();
                true
            }
            _ => false,
        }
    }

    pub fn status(&self, mac: &MacAddr) -> Status {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(mac) {
            Some(s) => Status { running: s.running() && !s.stopped(), bytes: Some(s.bytes()) },
            None => Status { running: false, bytes: None },
        }
    }
}

/// Runs a capture: writes the pcap header and then every frame to `out` (flushing after each),
/// until the capture is stopped or writing fails (the client went away). Marks it finished.
pub fn run(state: &CaptureState, mut sock: PacketSocket, out: &mut dyn Write) -> io::Result<()> {
    let result = (|| {
        let header = pcap_header();
        out.write_all(&header)?;
        out.flush()?;
        state.bytes.fetch_add(header.len(), Ordering::SeqCst);
        let mut rec = Vec::with_capacity(SNAPLEN as usize + 16);
        while !state.stopped() {
            if let Some(f) = sock.next_frame()? {
                let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                rec.clear();
                pcap_record(&mut rec, ts, f.data, f.orig_len);
                out.write_all(&rec)?;
                out.flush()?;
                state.bytes.fetch_add(rec.len(), Ordering::SeqCst);
            }
        }
        Ok(())
    })();
    state.running.store(false, Ordering::SeqCst);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let h = pcap_header();
        assert_eq!(&h[..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let mut out = Vec::new();
        let frame = vec![7u8; 2000];
        pcap_record(&mut out, Duration::new(5, 6000), &frame, 2000);
        assert_eq!(out.len(), 16 + 1600);
        assert_eq!(&out[8..12], &1600u32.to_le_bytes());
        assert_eq!(&out[12..16], &2000u32.to_le_bytes());
        assert_eq!(&out[4..8], &6u32.to_le_bytes());
    }

    #[test]
    fn matching() {
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let mut f = vec![0u8; 60];
        assert!(!frame_matches(&f, &mac));
        f[6..12].copy_from_slice(&mac.0);
        assert!(frame_matches(&f, &mac));
        assert!(!frame_matches(&f[..10], &mac));
    }
}
