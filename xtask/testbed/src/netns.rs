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
use std::process::{Child, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use runner::{cmd, Cmd, Shell, Stdin, Stream};

pub const CLIENT_MAC: &str = "02:00:00:00:00:64";
pub const CLIENT_V4: &str = "192.168.8.100";
pub const CLIENT_V6: &str = "fd00:8::100";

/// A shell for the test bed's commands (xshell, through the runner crate).
pub fn shell() -> Shell {
    runner::shell().unwrap_or_else(|e| panic!("cannot make a shell: {e}"))
}

/// Runs `program args...`; it must succeed. Returns what it printed.
pub fn sh(args: &[&str]) -> Output {
    let shell = shell();
    let (program, rest) = (args[0], &args[1..]);
    let out = cmd!(shell, "{program} {rest...}").output().unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `program args...` whatever its exit status (clean-up: a namespace may be gone already).
pub fn sh_lenient(args: &[&str]) -> Option<Output> {
    let shell = shell();
    let (program, rest) = (args[0], &args[1..]);
    cmd!(shell, "{program} {rest...}").output().ok()
}

/// One network namespace (loopback up), deleted on drop (with whatever still runs in it), also
/// when a test fails.
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
        Netns::create(&name).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The namespace `name` (loopback up), made anew: a stale one of that name (from an
    /// interrupted run) is removed first, with whatever still runs in it. For fixed names (the
    /// QEMU tests' `spinq-lan`, `spinq-wan`).
    pub fn create(name: &str) -> Result<Netns, String> {
        remove(name);
        let shell = shell();
        cmd!(shell, "ip netns add {name}").read()?;
        let ns = Netns { name: name.to_string() };
        cmd!(shell, "ip -n {name} link set lo up").read()?;
        Ok(ns)
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
        remove(&self.name);
    }
}

/// Runs `f` on a thread that has entered the network namespace named `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f).join().unwrap()
}

/// Starts `f` on a new thread inside the network namespace named `ns` and returns at once:
/// sockets it opens, and threads it starts, live there.
pub fn spawn_in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = PathBuf::from("/run/netns").join(ns);
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
}

/// A command that runs `program` inside the namespace named `ns` (`ip netns exec`).
pub fn ns_cmd<'a>(sh: &'a Shell, ns: &str, program: &str) -> Cmd<'a> {
    cmd!(sh, "ip netns exec {ns} {program}")
}

/// Kills whatever still runs in the namespace `ns` and deletes it; nothing if it is gone.
pub fn remove(ns: &str) {
    if !Path::new("/run/netns").join(ns).exists() {
        return;
    }
    if let Some(out) = sh_lenient(&["ip", "netns", "pids", ns]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) has no memory preconditions; these are the namespace's processes.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = sh_lenient(&["ip", "netns", "del", ns]);
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
        nft_in(&self.router, script);
    }

    /// dnsmasq for the test zone and an HTTP server with `file100k` and `file1m`, on the server.
    pub fn start_services(&mut self) {
        let www = self.work.path().join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("file100k"), vec![0u8; 102_400]).unwrap();
        std::fs::write(www.join("file1m"), vec![0u8; 1_048_576]).unwrap();
        let shell = shell();
        let server = &self.server;
        let dnsmasq = cmd!(
            shell,
            "ip netns exec {server} dnsmasq --keep-in-foreground --no-resolv --no-hosts --pid-file= --user=root
             --group=root --listen-address=198.51.100.10,2001:db8:100::10 --bind-interfaces --port=53 --local=/test/
             --host-record=www.example.test,198.51.100.10,2001:db8:100::10,300
             --host-record=other.example.test,198.51.100.20,2001:db8:100::20,300
             --host-record=api.example.test,198.51.100.30,60"
        )
        .spawn(Stream::Null, Stream::Null)
        .unwrap_or_else(|e| panic!("dnsmasq: {e}"));
        self.daemons.push(dnsmasq);
        let http = cmd!(shell, "ip netns exec {server} python3 -m http.server 80 --bind :: --directory {www}")
            .spawn(Stream::Null, Stream::Null)
            .unwrap_or_else(|e| panic!("python3: {e}"));
        self.daemons.push(http);
        crate::wait_for("the test HTTP and DNS servers", Duration::from_secs(20), || {
            let http = cmd!(shell, "ip netns exec {server} curl -s -o /dev/null http://198.51.100.10/file100k")
                .succeeds()
                .ok()?;
            let dns = cmd!(shell, "ip netns exec {server} dig +short +time=1 +tries=1 @198.51.100.10 www.example.test")
                .output()
                .ok()?;
            (http && !dns.stdout.is_empty()).then_some(())
        });
    }

    /// Runs a command in the client namespace.
    pub fn client_cmd(&self, args: &[&str]) -> Output {
        let shell = shell();
        let client = &self.client;
        cmd!(shell, "ip netns exec {client} {args...}").output().unwrap()
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
        spawn_in_netns(&self.router, f).join().expect("thread in the router namespace")
    }
}

/// Applies an nftables script in the namespace `ns`; it must succeed.
pub fn nft_in(ns: &str, script: &str) {
    let shell = shell();
    let out = cmd!(shell, "ip netns exec {ns} nft -f -")
        .stdin(Stdin::Bytes(script.as_bytes().to_vec()))
        .output()
        .unwrap_or_else(|e| panic!("nft: {e}"));
    assert!(out.status.success(), "nft script failed: {script}: {}", String::from_utf8_lossy(&out.stderr));
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
            remove(ns);
        }
    }
}
