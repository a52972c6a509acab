//! Network namespaces for tests that need the real kernel: [`Netns`], one namespace deleted on
//! drop, and [`Topology`], a home network in three namespaces:
//!
//! ```text
//!  client (02:00:00:00:00:64)        router                          server ("ISP + internet")
//!  eth0 192.168.8.100/24 ------ lan0 192.168.8.1/24   wan0 203.0.113.1/24 ------ eth0 203.0.113.2/24
//!       fd00:8::100/64               fd00:8::1/64          2001:db8:ffff::1/64        2001:db8:ffff::2/64
//!                                    NAT44 on wan0, IPv6 routed              lo: 198.51.100.10 .20 .30,
//!                                                                                2001:db8:100::10 ::20
//!                                                                            dnsmasq :53, http :80
//! ```
//!
//! The services sit behind the server's gateway address, as the internet sits behind an ISP:
//! the router's only WAN neighbour is the gateway, not every server it talks to.
//!
//! Links use MTU 9000 so protocol headers are ~1% of a download and conntrack's byte counts can
//! be compared with curl's. Everything is removed on drop, also when a test fails.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const CLIENT_MAC: &str = "02:00:00:00:00:64";
pub const CLIENT_V4: &str = "192.168.8.100";
pub const CLIENT_V6: &str = "fd00:8::100";

pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// One network namespace (loopback up), deleted on drop, also when a test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A namespace whose name is unique on this machine (`spindtest-<tag>-<pid>-<n>-<nanos>`):
    /// other worktrees run the same tests at the same time.
    pub fn new(tag: &str) -> Netns {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name =
            format!("spindtest-{tag}-{}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst), nanos % 100000);
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; it must succeed.
    pub fn exec(&self, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Applies an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) {
        let path = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&path, ruleset).unwrap();
        self.exec(&["nft", "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(path);
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it opens belong to it and
    /// can then be used from any thread.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = PathBuf::from("/run/netns").join(&self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                enter_netns(&path);
                f()
            })
            .join()
            .unwrap()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

/// Runs `f` on a thread that has entered the network namespace named `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
    .join()
    .unwrap()
}

/// A command that runs `program` inside the namespace named `ns` (`ip netns exec`).
pub fn ns_cmd(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// The home network of the module documentation; services started by [`Topology::start_services`].
pub struct Topology {
    pub client: String,
    pub router: String,
    pub server: String,
    pub work: tempfile::TempDir,
    daemons: Vec<Child>,
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new()
    }
}

impl Topology {
    /// Builds the three namespaces, their links, addresses, routes and NAT.
    pub fn new() -> Topology {
        let tag = format!("{}{}", std::process::id() % 100_000, crate::free_port() % 1000);
        let t = Topology {
            client: format!("spc{tag}"),
            router: format!("spr{tag}"),
            server: format!("sps{tag}"),
            work: tempfile::tempdir().unwrap(),
            daemons: Vec::new(),
        };
        t.build();
        t
    }

    fn build(&self) {
        let (c, r, s) = (self.client.as_str(), self.router.as_str(), self.server.as_str());
        for ns in [c, r, s] {
            sh(&["ip", "netns", "add", ns]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.default.accept_dad=0",
                "net.ipv6.conf.default.accept_ra=0",
                "net.ipv6.conf.all.accept_dad=0",
            ]);
        }
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            "eth0",
            "netns",
            c,
            "address",
            CLIENT_MAC,
            "mtu",
            "9000",
            "type",
            "veth",
            "peer",
            "name",
            "lan0",
            "netns",
            r,
            "address",
            "02:00:00:00:00:01",
            "mtu",
            "9000",
        ]);
        sh(&[
            "ip",
            "link",
            "add",
            "name",
            "wan0",
            "netns",
            r,
            "mtu",
            "9000",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            s,
            "address",
            "02:00:00:00:0a:0a",
            "mtu",
            "9000",
        ]);
        let ip = |ns: &str, args: &[&str]| {
            let mut v = vec!["ip", "-n", ns];
            v.extend_from_slice(args);
            sh(&v);
        };
        ip(c, &["addr", "add", "192.168.8.100/24", "dev", "eth0"]);
        ip(c, &["-6", "addr", "add", "fd00:8::100/64", "dev", "eth0", "nodad"]);
        ip(c, &["link", "set", "eth0", "up"]);
        ip(c, &["route", "add", "default", "via", "192.168.8.1"]);
        ip(c, &["-6", "route", "add", "default", "via", "fd00:8::1"]);
        ip(r, &["addr", "add", "192.168.8.1/24", "dev", "lan0"]);
        ip(r, &["-6", "addr", "add", "fd00:8::1/64", "dev", "lan0", "nodad"]);
        ip(r, &["addr", "add", "203.0.113.1/24", "dev", "wan0"]);
        ip(r, &["-6", "addr", "add", "2001:db8:ffff::1/64", "dev", "wan0", "nodad"]);
        ip(r, &["link", "set", "lan0", "up"]);
        ip(r, &["link", "set", "wan0", "up"]);
        ip(r, &["route", "add", "default", "via", "203.0.113.2"]);
        ip(r, &["-6", "route", "add", "default", "via", "2001:db8:ffff::2"]);
        sh(&["ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
        self.nft_router(
            "table ip natest {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\toifname \"wan0\" masquerade\n\t}\n}\n",
        );
        ip(s, &["addr", "add", "203.0.113.2/24", "dev", "eth0"]);
        ip(s, &["-6", "addr", "add", "2001:db8:ffff::2/64", "dev", "eth0", "nodad"]);
        for a in ["198.51.100.10/32", "198.51.100.20/32", "198.51.100.30/32"] {
            ip(s, &["addr", "add", a, "dev", "lo"]);
        }
        for a in ["2001:db8:100::10/128", "2001:db8:100::20/128"] {
            ip(s, &["-6", "addr", "add", a, "dev", "lo", "nodad"]);
        }
        ip(s, &["link", "set", "eth0", "up"]);
        ip(s, &["-6", "route", "add", "fd00:8::/64", "via", "2001:db8:ffff::1"]);
    }

    /// Applies an nftables script in the router namespace.
    pub fn nft_router(&self, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "nft script failed: {script}");
    }

    /// dnsmasq for the test zone and an HTTP server with `file100k` and `file1m`, on the server.
    pub fn start_services(&mut self) {
        let www = self.work.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("file100k"), vec![0u8; 102_400]).unwrap();
        std::fs::write(www.join("file1m"), vec![0u8; 1_048_576]).unwrap();
        let dnsmasq = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.server,
                "dnsmasq",
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--pid-file=",
                "--user=root",
                "--group=root",
                "--listen-address=198.51.100.10,2001:db8:100::10",
                "--bind-interfaces",
                "--port=53",
                "--local=/test/",
                "--host-record=www.example.test,198.51.100.10,2001:db8:100::10,300",
                "--host-record=other.example.test,198.51.100.20,2001:db8:100::20,300",
                "--host-record=api.example.test,198.51.100.30,60",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq (apt-get install dnsmasq-base)");
        self.daemons.push(dnsmasq);
        let http = Command::new("ip")
            .args(["netns", "exec", &self.server, "python3", "-m", "http.server", "80", "--bind", "::", "--directory"])
            .arg(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        self.daemons.push(http);
        let server = self.server.clone();
        crate::wait_for("the test HTTP and DNS servers", Duration::from_secs(20), || {
            let http = Command::new("ip")
                .args(["netns", "exec", &server, "curl", "-s", "-o", "/dev/null", "http://198.51.100.10/file100k"])
                .status()
                .ok()?;
            let dns = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &server,
                    "dig",
                    "+short",
                    "+time=1",
                    "+tries=1",
                    "@198.51.100.10",
                    "www.example.test",
                ])
                .output()
                .ok()?;
            (http.success() && !dns.stdout.is_empty()).then_some(())
        });
    }

    /// Runs a command in the client namespace.
    pub fn client_cmd(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.client]).args(args).output().unwrap()
    }

    /// Downloads `url` from the client with a time limit: `Some(bytes)` on success.
    pub fn curl(&self, url: &str, max_secs: &str) -> Option<u64> {
        let out = self.client_cmd(&[
            "curl",
            "-s",
            "-g",
            "-o",
            "/dev/null",
            "--max-time",
            max_secs,
            "-w",
            "%{size_download}",
            url,
        ]);
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    pub fn dig(&self, name: &str, qtype: &str) -> String {
        let out = self.client_cmd(&["dig", "+short", "+time=2", "+tries=1", "@198.51.100.10", name, qtype]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `f` on a thread inside the router namespace: sockets it (and threads it starts)
    /// open live there, so the test can reach spind's loopback ports.
    pub fn in_router<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = PathBuf::from("/run/netns").join(&self.router);
        std::thread::spawn(move || {
            enter_netns(&path);
            f()
        })
        .join()
        .expect("thread in the router namespace")
    }
}

pub fn enter_netns(path: &Path) {
    let f = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // SAFETY: setns on this thread with a valid namespace fd.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns {}: {}", path.display(), std::io::Error::last_os_error());
}

impl Drop for Topology {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
        for ns in [&self.client, &self.router, &self.server] {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
