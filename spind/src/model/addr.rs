//! IP list entries: a single address or a prefix; and the check of a Linux interface name
//! (the `wan_interfaces` setting), which needs no kernel.
//!
//! SPIN 1.0 parsed `addr/len` but then ignored the length when matching and printing (its
//! §9.2 bug). Here a prefix entry really covers its range and prints with its length; a plain
//! address prints as SPIN does. `std::net::IpAddr`'s ordering (IPv4 before IPv6, then by bytes)
//! is already SPIN's list and JSON order.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    addr: IpAddr,
    len: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadIpNet(pub String);

impl fmt::Display for BadIpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not an IP address or prefix: {:?}", self.0)
    }
}

impl std::error::Error for BadIpNet {}

fn max_len(addr: &IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// `addr` with every bit after the first `len` cleared.
fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl IpNet {
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, len: max_len(&addr) }
    }

    /// The prefix `addr/len`, with host bits cleared. `None` if `len` is too long for the family.
    pub fn new(addr: IpAddr, len: u8) -> Option<IpNet> {
        (len <= max_len(&addr)).then(|| IpNet { addr: mask(addr, len), len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    pub fn is_host(&self) -> bool {
        self.len == max_len(&self.addr)
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(*ip, self.len) == self.addr
    }
}

impl FromStr for IpNet {
    type Err = BadIpNet;
    fn from_str(s: &str) -> Result<IpNet, BadIpNet> {
        let bad = || BadIpNet(s.to_string());
        let s_trim = s.trim();
        match s_trim.split_once('/') {
            None => s_trim.parse::<IpAddr>().map(IpNet::host).map_err(|_| bad()),
            Some((a, l)) => {
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let len: u8 = l.parse().map_err(|_| bad())?;
                IpNet::new(addr, len).ok_or_else(bad)
            }
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

/// Whether `name` is a valid Linux interface name (as the kernel's `dev_valid_name`).
pub(crate) fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name.bytes().any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_print_like_spin_and_prefixes_keep_their_length() {
        assert_eq!("2001:DB8::1:2".parse::<IpNet>().unwrap().to_string(), "2001:db8::1:2");
        assert_eq!("192.0.2.7/24".parse::<IpNet>().unwrap().to_string(), "192.0.2.0/24");
        assert_eq!("192.0.2.7/32".parse::<IpNet>().unwrap().to_string(), "192.0.2.7");
        assert!("192.0.2.7/33".parse::<IpNet>().is_err());
        assert!("hello".parse::<IpNet>().is_err());
        assert!("192.0.2.1/".parse::<IpNet>().is_err());
    }

    #[test]
    fn containment() {
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        assert!(net.contains(&"192.0.2.200".parse().unwrap()));
        assert!(!net.contains(&"192.0.3.1".parse().unwrap()));
        assert!(!net.contains(&"::1".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(&"2001:db8:ffff::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&"8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn order_is_ipv4_first_then_bytes() {
        let mut v: Vec<IpNet> =
            ["2001:db8::1", "192.0.2.3", "::1", "192.0.2.1"].iter().map(|s| s.parse().unwrap()).collect();
        v.sort();
        let s: Vec<String> = v.iter().map(|n| n.to_string()).collect();
        assert_eq!(s, ["192.0.2.1", "192.0.2.3", "::1", "2001:db8::1"]);
    }

    #[test]
    fn interface_names_are_checked_as_the_kernel_does() {
        assert!(valid_ifname("pppoe-wan") && valid_ifname("eth0.2"));
        assert!(!valid_ifname("") && !valid_ifname("a b") && !valid_ifname("a/b") && !valid_ifname("a:1"));
        assert!(!valid_ifname("sixteen-chars-xx"));
    }
}
