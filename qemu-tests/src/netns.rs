//! The two sides of the router VM (the LAN client, the simulated internet): each a network
//! namespace of the test bed (`testbed::netns::Netns`) holding a persistent tap device, and the
//! servers started in it.
//!
//! QEMU runs in the host namespace and gets each tap as an open file descriptor (`-netdev
//! tap,fd=N`): the descriptor is opened by a thread that has entered the namespace, because
//! TUNSETIFF looks the device up in the opener's namespace. The taps being persistent, they
//! keep their addresses and the servers bound to them whatever the VM does.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Child;

use runner::{cmd, Shell};

pub struct Netns {
    pub name: String,
    /// The shell commands run from: `cmd!(ns.sh, "ip netns exec {name} ...")`.
    pub sh: Shell,
    /// Processes started in the namespace (servers): killed on drop.
    pub children: Vec<(String, Child)>,
    /// The namespace itself, removed (with whatever still runs in it) after the servers.
    ns: testbed::netns::Netns,
}

impl Netns {
    /// Creates the namespace anew (a stale one from an interrupted run is removed first).
    pub fn create(name: &str) -> Result<Netns, String> {
        let ns = testbed::netns::Netns::create(name)?;
        Ok(Netns { name: ns.name.clone(), sh: runner::shell()?, children: Vec::new(), ns })
    }

    /// A persistent tap device `dev` with a fixed MAC, up.
    pub fn add_tap(&self, dev: &str, mac: &str) -> Result<(), String> {
        let (sh, ns) = (&self.sh, &self.ns.name);
        cmd!(sh, "ip -n {ns} tuntap add dev {dev} mode tap").read()?;
        cmd!(sh, "ip -n {ns} link set {dev} address {mac}").read()?;
        cmd!(sh, "ip -n {ns} link set {dev} up").read()?;
        Ok(())
    }

    /// Opens the tap device `dev` of this namespace for QEMU (`-netdev tap,fd=N`).
    pub fn open_tap(&self, dev: &str) -> Result<OwnedFd, String> {
        let dev = dev.to_string();
        // Only this (short-lived) thread enters the namespace.
        testbed::netns::in_netns(&self.ns.name, move || -> Result<OwnedFd, String> {
            // SAFETY: open(2) with a valid NUL-terminated path.
            let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(format!("/dev/net/tun: {}", std::io::Error::last_os_error()));
            }
            // SAFETY: a descriptor we just opened and nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // struct ifreq: 16 bytes of name, then the flags (short) in the union.
            let mut ifr = [0u8; 40];
            ifr[..dev.len()].copy_from_slice(dev.as_bytes());
            let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
            // SAFETY: TUNSETIFF reads and writes one struct ifreq, which `ifr` is large enough for.
            if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } != 0 {
                return Err(format!("TUNSETIFF {dev}: {}", std::io::Error::last_os_error()));
            }
            Ok(fd)
        })
    }

    /// Keeps a long-running process of the namespace (a server): killed on drop.
    pub fn keep(&mut self, what: &str, child: Result<Child, runner::Error>) -> Result<(), String> {
        let child = child.map_err(|e| format!("cannot start {what}: {e}"))?;
        self.children.push((what.to_string(), child));
        Ok(())
    }

    /// Fails if one of the servers has exited.
    pub fn check_children(&mut self) -> Result<(), String> {
        for (what, c) in &mut self.children {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(format!("{what} in namespace {} exited ({st})", self.name));
            }
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
