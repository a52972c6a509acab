//! Device names from three sources, as SPIN has them (§3.5 of the reference):
//! user-set names (`<state_dir>/names.conf`, written back when the user names a device),
//! dnsmasq leases (`/var/dhcp.leases`, re-read when new nodes appear) and OpenWrt's static DHCP
//! hosts (`/etc/config/dhcp`). Each source maps MAC → name and IP → name.
//!
//! Lookup precedence: user by MAC, user by IP, leases by MAC, leases by IP, DHCP config by MAC,
//! DHCP config by IP. A name the user chose always wins; a current lease beats a static entry.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::model::event::MacAddr;
#[cfg(test)]
use crate::model::persist::atomic_write;
use crate::model::persist::{uci_line, UciLine};

/// One source's names.
#[derive(Clone, Debug, Default, PartialEq)]
struct NameMap {
    by_mac: BTreeMap<MacAddr, String>,
    by_ip: BTreeMap<IpAddr, String>,
}

impl NameMap {
    fn find(&self, mac: Option<&MacAddr>, ips: &[IpAddr]) -> Option<&str> {
        None.or_else(|| self.by_mac.get(mac?))
            .or_else(|| ips.iter().find_map(|ip| self.by_ip.get(ip)))
            .map(String::as_str)
    }
}

/// All known device names.
#[derive(Clone, Debug)]
pub struct Names {
    user_path: PathBuf,
    leases_path: PathBuf,
    /// Modification time and size of the leases file when last read: it is checked every
    /// second, and only read again when it changed.
    leases_stamp: Option<(std::time::SystemTime, u64)>,
    user: NameMap,
    leases: NameMap,
    dhcp_config: NameMap,
}

impl Names {
    /// Reads all three sources. Missing files are empty sources; bad lines are skipped with a
    /// warning, because a typo in one name must not cost the user all the others.
    pub fn load(user: &Path, dhcp_config: &Path, leases: &Path) -> Names {
        Names {
            user: read_source(user, parse_user),
            leases: read_source(leases, parse_leases),
            dhcp_config: read_source(dhcp_config, parse_dhcp_config),
            user_path: user.to_path_buf(),
            leases_path: leases.to_path_buf(),
            leases_stamp: None,
        }
    }

    /// Re-reads `names.conf` (e.g. after someone edited it by hand).
    pub fn reload_user(&mut self) {
        self.user = read_source(&self.user_path, parse_user);
    }

    /// Re-reads the lease file; true when any lease name changed (nodes may need renaming).
    pub fn reload_leases(&mut self) -> bool {
        let stamp = std::fs::metadata(&self.leases_path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some() && stamp == self.leases_stamp {
            return false;
        }
        self.leases_stamp = stamp;
        let new = read_source(&self.leases_path, parse_leases);
        let changed = new != self.leases;
        self.leases = new;
        changed
    }

    /// The name for a node with this MAC (if any) and these addresses.
    pub fn lookup(&self, mac: Option<&MacAddr>, ips: &[IpAddr]) -> Option<&str> {
        self.user.find(mac, ips).or_else(|| self.leases.find(mac, ips)).or_else(|| self.dhcp_config.find(mac, ips))
    }

    /// Sets (or, with an empty name, removes) the user's name for a MAC. Call [`write_user`]
    /// to persist it.
    ///
    /// [`write_user`]: Names::write_user
    pub fn set_user_mac(&mut self, mac: MacAddr, name: &str) {
        set_or_remove(&mut self.user.by_mac, mac, name);
    }

    /// Sets (or, with an empty name, removes) the user's name for an IP address.
    pub fn set_user_ip(&mut self, ip: IpAddr, name: &str) {
        set_or_remove(&mut self.user.by_ip, ip, name);
    }

    /// Forgets the user's names for these addresses (a device named by its MAC: its address
    /// entries from before are superseded and must not name it again later).
    pub fn remove_user_ips(&mut self, ips: &[IpAddr]) {
        for ip in ips {
            self.user.by_ip.remove(ip);
        }
    }

    /// Where the user names are written (`names.conf`).
    pub fn user_path(&self) -> &Path {
        &self.user_path
    }

    /// The text of `names.conf`: all IP entries sorted (IPv4 before IPv6, then by bytes, which is
    /// `IpAddr`'s order), then all MAC entries sorted.
    pub fn user_text(&self) -> String {
        format_user(&self.user)
    }

    /// Writes the user names to `names.conf` (atomically), as [`Names::user_text`]. The core
    /// writes them with its other state in one batch instead.
    #[cfg(test)]
    pub fn write_user(&self) -> io::Result<()> {
        atomic_write(&self.user_path, self.user_text().as_bytes())
    }
}

fn set_or_remove<K: Ord>(map: &mut BTreeMap<K, String>, key: K, name: &str) {
    let name = sanitize(name);
    if name.is_empty() {
        // An empty name means "forget my name", so the DHCP name shows again.
        map.remove(&key);
    } else {
        map.insert(key, name);
    }
}

/// Makes a name safe to write as the rest of a `names.conf` line and read back unchanged:
/// control characters (a newline would start a new entry) become spaces, and surrounding
/// blanks, which the reader drops anyway, are trimmed.
fn sanitize(name: &str) -> String {
    let clean: String = name.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    clean.trim().to_string()
}

fn read_source(path: &Path, parse: fn(&str, &str) -> NameMap) -> NameMap {
    match std::fs::read(path) {
        Ok(bytes) => parse(&String::from_utf8_lossy(&bytes), &path.display().to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => NameMap::default(),
        Err(e) => {
            log::warn!("cannot read names from {}: {}", path.display(), e);
            NameMap::default()
        }
    }
}

/// `names.conf`: `name: <ip-or-mac> <name…>`; other lines (comments, legacy `filter:`/`block:`)
/// are ignored.
fn parse_user(text: &str, origin: &str) -> NameMap {
    let mut map = NameMap::default();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("name:") else {
            continue;
        };
        let rest = rest.trim_start();
        let (token, name) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let name = name.trim();
        if name.is_empty() {
            log::warn!("{origin}:{}: name entry without a name ignored: {line}", i + 1);
            continue;
        }
        // SPIN tries IP first, then accepts a token of exactly MAC length as a MAC.
        if let Ok(ip) = token.parse::<IpAddr>() {
            map.by_ip.insert(ip, name.to_string());
        } else if let (17, Ok(mac)) = (token.len(), token.parse::<MacAddr>()) {
            map.by_mac.insert(mac, name.to_string());
        } else {
            log::warn!("{origin}:{}: '{token}' is neither an IP nor a MAC address, ignored", i + 1);
        }
    }
    map
}

fn format_user(map: &NameMap) -> String {
    let mut out = String::new();
    for (ip, name) in &map.by_ip {
        let _ = writeln!(out, "name: {ip} {name}");
    }
    for (mac, name) in &map.by_mac {
        let _ = writeln!(out, "name: {mac} {name}");
    }
    out
}

/// dnsmasq leases: `<expiry> <mac> <ip> <name> <client-id>`. Name `*` means "no name". IPv6
/// lease lines have an IAID instead of a MAC: they still name the address.
fn parse_leases(text: &str, origin: &str) -> NameMap {
    let mut map = NameMap::default();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() || f[0] == "duid" {
            continue;
        }
        if f.len() < 4 {
            log::warn!("{origin}:{}: short lease line ignored: {line}", i + 1);
            continue;
        }
        let (mac, ip, name) = (f[1].parse::<MacAddr>().ok(), f[2].parse::<IpAddr>().ok(), f[3]);
        if name == "*" {
            continue;
        }
        if mac.is_none() && ip.is_none() {
            log::warn!("{origin}:{}: lease line without MAC or IP ignored: {line}", i + 1);
        }
        if let Some(mac) = mac {
            map.by_mac.insert(mac, name.to_string());
        }
        if let Some(ip) = ip {
            map.by_ip.insert(ip, name.to_string());
        }
    }
    map
}

/// OpenWrt `/etc/config/dhcp`: `config host` sections with `option name|mac|ip`. Other section
/// types (`dhcp`, `dnsmasq`, …) have `name`/`ip`-like options too and must be ignored.
fn parse_dhcp_config(text: &str, origin: &str) -> NameMap {
    #[derive(Default)]
    struct Host {
        name: Option<String>,
        macs: Vec<MacAddr>,
        ips: Vec<IpAddr>,
    }
    fn finish(host: Option<Host>, map: &mut NameMap) {
        let Some(Host { name: Some(name), macs, ips }) = host else {
            return;
        };
        for mac in macs {
            map.by_mac.insert(mac, name.clone());
        }
        for ip in ips {
            map.by_ip.insert(ip, name.clone());
        }
    }

    let mut map = NameMap::default();
    let mut host: Option<Host> = None;
    for (i, line) in text.lines().enumerate() {
        let Some(stmt) = uci_line(line) else {
            log::warn!("{origin}:{}: not a UCI line, ignored: {line}", i + 1);
            continue;
        };
        match stmt {
            UciLine::Config { kind, .. } => {
                finish(host.take(), &mut map);
                host = (kind == "host").then(Host::default);
            }
            UciLine::Option { key, value } | UciLine::List { key, value } => {
                let Some(h) = host.as_mut() else { continue };
                match key.as_str() {
                    "name" => h.name = Some(value),
                    // OpenWrt allows several MACs (space-separated, or as a list) for one host.
                    "mac" => {
                        for m in value.split_whitespace() {
                            match m.parse() {
                                Ok(mac) => h.macs.push(mac),
                                Err(_) => log::warn!("{origin}:{}: bad MAC '{m}' ignored", i + 1),
                            }
                        }
                    }
                    "ip" => match value.parse() {
                        Ok(ip) => h.ips.push(ip),
                        Err(_) => log::warn!("{origin}:{}: bad IP '{value}' ignored", i + 1),
                    },
                    _ => {}
                }
            }
            UciLine::Blank | UciLine::Package => {}
        }
    }
    finish(host, &mut map);
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
    }
    const USER: &str = "node_names_spin_userdata.conf";
    const DHCP: &str = "node_names_dhcp.conf";

    fn names(user: &str, dhcp: &str, leases: &str) -> Names {
        Names::load(&data(user), &data(dhcp), &data(leases))
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }
    fn by_ip<'a>(n: &'a Names, s: &str) -> Option<&'a str> {
        n.lookup(None, &[ip(s)])
    }
    fn by_mac<'a>(n: &'a Names, s: &str) -> Option<&'a str> {
        n.lookup(Some(&mac(s)), &[])
    }

    #[test]
    fn user_file() {
        let n = names(USER, "missing", "missing");
        assert_eq!((n.user.by_ip.len(), n.user.by_mac.len()), (6, 2));
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("some_other_host"));
        assert_eq!(by_ip(&n, "192.0.2.2"), Some("number two"));
        for s in ["2001:DB8:beef:1::80", "2001:db8:beef:1::80", "2001:0db8:BEEF:0001:0:0:0:0080"] {
            assert_eq!(by_ip(&n, s), Some("server"), "{s}");
        }
        assert_eq!(by_ip(&n, "213.152.224.1"), Some("open"));
        assert_eq!(by_ip(&n, "2001:DB8:beef:1::123:aaaa"), Some("barserver"));
        assert_eq!(by_ip(&n, "192.0.2.123"), Some("one two three"));
        assert_eq!(by_ip(&n, "192.0.2.222"), None);
        assert_eq!(by_ip(&n, "2001:DB8:ff:ff:ff::"), None);
        // filter:/block: lines did not leak in.
        assert_eq!(by_ip(&n, "198.51.100.7"), None);
        assert_eq!(by_mac(&n, "00:02:aa:c1:23:92"), Some("replaces bar"));
        assert_eq!(by_mac(&n, "aa:bb:cc:dd:ee:ff"), Some("asdfasdf"));
        assert_eq!(by_mac(&n, "AA:BB:CC:DD:EE:FF"), Some("asdfasdf"));
        assert_eq!(by_mac(&n, "ff:ee:dd:cc:bb:aa"), None);
    }

    #[test]
    fn dhcp_file() {
        let n = names("missing", DHCP, "missing");
        assert_eq!((n.dhcp_config.by_ip.len(), n.dhcp_config.by_mac.len()), (5, 5));
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("some host"));
        assert_eq!(by_ip(&n, "192.0.2.155"), Some("Foo"));
        assert_eq!(by_ip(&n, "192.0.2.156"), Some("Foo \\' dus"));
        assert_eq!(by_ip(&n, "192.0.2.50"), Some("bar stuff"));
        assert_eq!(by_ip(&n, "192.0.2.51"), Some("bar\\\" enzo"));
        // The `config dhcp` section's options are not a host.
        assert_eq!(by_ip(&n, "192.0.2.100"), None);
        assert_eq!(by_mac(&n, "de:ad:be:ef:00:01"), None);
        assert_eq!(by_mac(&n, "18:aa:6a:23:55:dc"), Some("some host"));
        assert_eq!(by_mac(&n, "00:11:55:0a:ed:bf"), Some("Foo"));
        assert_eq!(by_mac(&n, "00:11:55:0a:ed:bb"), Some("Foo \\' dus"));
        assert_eq!(by_mac(&n, "00:02:aa:c1:23:92"), Some("bar stuff"));
        assert_eq!(by_mac(&n, "00:02:aa:c1:23:93"), Some("bar\\\" enzo"));
        assert_eq!(by_mac(&n, "aa:bb:cc:dd:ee:ff"), None);
    }

    #[test]
    fn user_beats_dhcp() {
        let n = names(USER, DHCP, "missing");
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("some_other_host"));
        assert_eq!(by_mac(&n, "00:02:aa:c1:23:92"), Some("replaces bar"));
        assert_eq!(by_ip(&n, "192.0.2.50"), Some("bar stuff"));
        // A device whose MAC has no user name but whose IP has one: the user's IP name wins
        // over the DHCP MAC name.
        assert_eq!(n.lookup(Some(&mac("18:aa:6a:23:55:dc")), &[ip("192.0.2.2")]), Some("number two"));
        // Any of the node's IPs can match.
        assert_eq!(n.lookup(None, &[ip("192.0.2.222"), ip("213.152.224.1")]), Some("open"));
        assert_eq!(n.lookup(None, &[]), None);
    }

    #[test]
    fn leases_precedence_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let leases = dir.path().join("dhcp.leases");
        std::fs::write(
            &leases,
            "1700000000 18:aa:6a:23:55:dc 192.0.2.1 laptop 01:18:aa:6a:23:55:dc\n\
             1700000000 00:11:22:33:44:55 192.0.2.77 * 01:00:11:22:33:44:55\n\
             duid 00:01:00:01:aa:bb:cc:dd:ee:ff:00:11\n\
             1700000000 12345678 2001:db8::77 phone 00:01:00:01\n\
             garbage\n",
        )
        .unwrap();
        let mut n = Names::load(&data(USER), &data(DHCP), &leases);
        // Lease beats static config for the same MAC...
        assert_eq!(by_mac(&n, "18:aa:6a:23:55:dc"), Some("laptop"));
        // ...but not the user's name for the IP.
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("some_other_host"));
        assert_eq!(by_mac(&n, "00:11:22:33:44:55"), None);
        assert_eq!(by_ip(&n, "192.0.2.77"), None);
        assert_eq!(by_ip(&n, "2001:db8::77"), Some("phone"));
        // Leases by IP beat DHCP config by MAC.
        assert_eq!(n.lookup(Some(&mac("00:11:55:0a:ed:bf")), &[ip("2001:db8::77")]), Some("phone"));

        assert!(!n.reload_leases());
        std::fs::write(&leases, "1700000000 00:11:22:33:44:55 192.0.2.77 tv *\n").unwrap();
        assert!(n.reload_leases());
        assert_eq!(by_ip(&n, "192.0.2.77"), Some("tv"));
        assert_eq!(by_mac(&n, "18:aa:6a:23:55:dc"), Some("some host"));
        std::fs::remove_file(&leases).unwrap();
        assert!(n.reload_leases());
        assert_eq!(by_ip(&n, "192.0.2.77"), None);
    }

    #[test]
    fn set_write_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("names.conf");
        let mut n = Names::load(&user, &data(DHCP), Path::new("/nonexistent/leases"));
        // Only user names are written: with none, the file is empty.
        n.write_user().unwrap();
        assert_eq!(std::fs::read_to_string(&user).unwrap(), "");

        n.set_user_mac(mac("BB:bb:bb:bb:bb:bb"), "bar");
        n.set_user_mac(mac("aa:aa:aa:aa:aa:aa"), "foo");
        n.set_user_ip(ip("2001:DB8::1"), "six");
        n.set_user_ip(ip("192.0.2.2"), "bar");
        n.set_user_ip(ip("192.0.2.1"), "x");
        n.set_user_ip(ip("192.0.2.1"), "  foo\nname: 1.2.3.4 evil\t");
        n.set_user_ip(ip("::1"), "loop back");
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("foo name: 1.2.3.4 evil"));
        n.write_user().unwrap();
        let text = std::fs::read_to_string(&user).unwrap();
        assert_eq!(
            text,
            "name: 192.0.2.1 foo name: 1.2.3.4 evil\n\
             name: 192.0.2.2 bar\n\
             name: ::1 loop back\n\
             name: 2001:db8::1 six\n\
             name: aa:aa:aa:aa:aa:aa foo\n\
             name: bb:bb:bb:bb:bb:bb bar\n"
        );
        let mut again = Names::load(&user, Path::new("/nonexistent"), Path::new("/nonexistent"));
        assert_eq!(again.user, n.user);

        // Removing a name by setting it empty; reload_user picks up the file.
        n.set_user_ip(ip("192.0.2.2"), "");
        n.write_user().unwrap();
        again.reload_user();
        assert_eq!(by_ip(&again, "192.0.2.2"), None);
        assert_eq!((again.user.by_ip.len(), again.user.by_mac.len()), (3, 2));
        // DHCP name shows again once the user name is gone.
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("foo name: 1.2.3.4 evil"));
        n.set_user_ip(ip("192.0.2.1"), "\n");
        assert_eq!(by_ip(&n, "192.0.2.1"), Some("some host"));
    }

    #[test]
    fn round_trip_of_the_test_file() {
        let dir = tempfile::tempdir().unwrap();
        let user = dir.path().join("names.conf");
        std::fs::copy(data(USER), &user).unwrap();
        let n = Names::load(&user, Path::new("/x"), Path::new("/x"));
        let before = n.user.clone();
        n.write_user().unwrap();
        let text = std::fs::read_to_string(&user).unwrap();
        assert!(text.starts_with("name: 192.0.2.1 some_other_host\n"), "{text}");
        assert!(text.contains("name: 2001:db8:beef:1::80 server\n"), "{text}");
        assert!(!text.contains("filter:"));
        let n2 = Names::load(&user, Path::new("/x"), Path::new("/x"));
        assert_eq!(n2.user, before);
    }

    #[test]
    fn user_parse_edge_cases() {
        let m = parse_user(
            "name: 192.0.2.0/24 net\n\
             name: 10.0.0.1\n\
             name: zz:zz:zz:zz:zz:zz bad mac\n\
             name: aa:bb:cc:dd:ee bad len\n\
             name: 10.0.0.2\ttabbed  name  \r\n\
             #name: 10.0.0.3 commented\n",
            "t",
        );
        assert!(m.by_mac.is_empty());
        assert_eq!(m.by_ip.len(), 1);
        assert_eq!(m.by_ip[&ip("10.0.0.2")], "tabbed  name");
    }
}
