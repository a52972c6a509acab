//! Network namespaces and tap devices for the VM's NICs.
//!
//! Each side of the router (the LAN client, the simulated internet) is a network namespace
//! holding a persistent tap device. QEMU runs in the host namespace and gets each tap as an
//! open file descriptor (`-netdev tap,fd=N`): the descriptor is opened by a thread that has
//! entered the namespace, because TUNSETIFF looks the device up in the opener's namespace.
//! The taps being persistent, they keep their addresses and the servers bound to them
//! whatever the VM does.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};

use crate::sh;

pub struct Netns {
    pub name: String,
    /// Processes started in the namespace (servers): killed on drop.
    pub children: Vec<(String, Child)>,
}

impl Netns {
    /// Creates the namespace anew (a stale one from an interrupted run is removed first).
    pub fn create(name: &str) -> Result<Netns, String> {
        remove(name);
        sh::ns("", &["ip", "netns", "add", name])?;
        sh::ns(name, &["ip", "link", "set", "lo", "up"])?;
        Ok(Netns {
            name: name.to_string(),
            children: Vec::new(),
        })
    }

    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        sh::ns(&self.name, args)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        sh::cmd(&self.name, args)
    }

    /// A persistent tap device `dev` with a fixed MAC, up.
    pub fn add_tap(&self, dev: &str, mac: &str) -> Result<(), String> {
        self.run(&["ip", "tuntap", "add", "dev", dev, "mode", "tap"])?;
        self.run(&["ip", "link", "set", dev, "address", mac])?;
        self.run(&["ip", "link", "set", dev, "up"])?;
        Ok(())
    }

    /// Opens the tap device `dev` of this namespace for QEMU (`-netdev tap,fd=N`).
    pub fn open_tap(&self, dev: &str) -> Result<OwnedFd, String> {
        let ns_path = format!("/run/netns/{}", self.name);
        let dev = dev.to_string();
        std::thread::spawn(move || -> Result<OwnedFd, String> {
            let ns = File::open(&ns_path).map_err(|e| format!("{ns_path}: {e}"))?;
            // Only this (short-lived) thread enters the namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "setns {ns_path}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let fd =
                unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(format!("/dev/net/tun: {}", std::io::Error::last_os_error()));
            }
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // struct ifreq: 16 bytes of name, then the flags (short) in the union.
            let mut ifr = [0u8; 40];
            ifr[..dev.len()].copy_from_slice(dev.as_bytes());
            let flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
            if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } != 0 {
                return Err(format!(
                    "TUNSETIFF {dev}: {}",
                    std::io::Error::last_os_error()
                ));
            }
            Ok(fd)
        })
        .join()
        .map_err(|_| "tap thread panicked".to_string())?
    }

    /// Starts a long-running process in the namespace (killed on drop).
    pub fn spawn(&mut self, what: &str, mut c: Command) -> Result<(), String> {
        let child = c
            .spawn()
            .map_err(|e| format!("cannot start {what} ({}): {e}", sh::show(&c)))?;
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
        remove(&self.name);
    }
}

/// Kills what still runs in a namespace and deletes it (its taps go with it).
pub fn remove(name: &str) {
    if !std::path::Path::new(&format!("/run/netns/{name}")).exists() {
        return;
    }
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    sh::quiet("", &["ip", "netns", "delete", name]);
}
