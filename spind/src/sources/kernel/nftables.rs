//! The nftables ruleset generation (`NFT_MSG_GETGEN`): a counter the kernel bumps on every
//! committed ruleset change, by anyone. The enforcer reads it every second to learn cheaply
//! (one netlink round trip, no `nft` process) whether something may have touched its table.

use std::io;
use std::time::Duration;

use neli::consts::nl::NlmF;
use neli::consts::socket::NlFamily;
use neli::types::GenlBuffer;

use super::netlink::{raw_messages, Attrs, Nfgenmsg, NlSocket};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFT_MSG_GETGEN: u16 = 16;
const NFTA_GEN_ID: u16 = 1;

/// The current ruleset generation of the calling thread's network namespace.
pub fn ruleset_generation() -> io::Result<u32> {
    let mut sock = NlSocket::open(NlFamily::Netfilter, &[])?;
    sock.set_recv_timeout(Duration::from_secs(2))?;
    let seq =
        sock.send((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NlmF::empty(), Nfgenmsg::new(0, 0, GenlBuffer::new()))?;
    let mut buf = vec![0u8; 512];
    loop {
        let n = sock.recv(&mut buf)?;
        for m in raw_messages(&buf[..n]) {
            if m.seq != seq {
                continue;
            }
            if m.kind == libc::NLMSG_ERROR as u16 {
                return Err(match m.error_code() {
                    Some(e) if e != 0 => io::Error::from_raw_os_error(e),
                    _ => io::Error::new(io::ErrorKind::InvalidData, "no generation in the reply"),
                });
            }
            if m.kind == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
                return generation(m.payload)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed NFT_MSG_NEWGEN"));
            }
        }
    }
}

/// Parses an `NFT_MSG_NEWGEN` payload (nfgenmsg and attributes): `NFTA_GEN_ID`, big-endian.
pub fn generation(payload: &[u8]) -> Option<u32> {
    Attrs::new(payload.get(4..)?)
        .find(|(kind, _)| *kind == NFTA_GEN_ID)
        .and_then(|(_, data)| Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_is_read_from_its_attribute_and_garbage_is_none() {
        // nfgenmsg, then NFTA_GEN_ID = 0x01020304 and NFTA_GEN_PROC_PID.
        let mut p = vec![0, 0, 0, 0];
        p.extend_from_slice(&[8, 0, 1, 0, 1, 2, 3, 4, 8, 0, 2, 0, 0, 0, 0, 9]);
        assert_eq!(generation(&p), Some(0x0102_0304));
        assert_eq!(generation(&p[..6]), None);
        assert_eq!(generation(&[0, 0, 0, 0, 5, 0, 1, 0, 1]), None, "attribute too short");
        assert_eq!(generation(&[]), None);
    }
}
