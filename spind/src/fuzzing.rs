//! Entry points for the fuzz targets (`spind/fuzz`, `cargo xtask fuzz`): one function per parser
//! of untrusted input, each taking the fuzzer's bytes. None may panic, whatever the bytes; a
//! crash the fuzzer finds becomes a unit test beside the parser it hit. Not an API: hidden
//! from the docs, used by nothing else.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use crate::daemon::config::Config;
use crate::model::blocklist;
use crate::model::core::{Core, CoreSettings};
use crate::model::names::Names;
use crate::model::persist::StateDir;
use crate::model::rpc::{self, Host};
use crate::model::wifi;
use crate::sources::packet::{Decoder, LinkType};
use crate::sources::{extsrc, kernel::parsers};

/// The netlink payload parsers: conntrack entries, neighbours, NFLOG packets (DNS copies and
/// blocked samples), routes, links and the nftables generation.
pub fn netlink(data: &[u8]) {
    let _ = parsers::conntrack_entry(data);
    let _ = parsers::neighbour(data);
    let _ = parsers::nflog_packet(data);
    let _ = parsers::blocked_sample(data);
    let _ = parsers::default_route_oifs(data);
    let _ = parsers::link(data);
    let _ = parsers::nftables_generation(data);
}

/// One captured frame (the first byte picks the link type) through the packet decoder: Ethernet,
/// Linux cooked v1/v2, BSD loopback, raw IP, then IPv4/IPv6, TCP/UDP and the DNS messages in them.
pub fn frame(data: &[u8]) {
    let Some((&kind, frame)) = data.split_first() else { return };
    let link = match kind % 5 {
        0 => LinkType::Ethernet,
        1 => LinkType::LinuxSll,
        2 => LinkType::LinuxSll2,
        3 => LinkType::Null,
        _ => LinkType::RawIp,
    };
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    decoder.frame(1.0, link, frame, &mut out);
    decoder.frame(2.0, link, frame, &mut out);
    decoder.finish(&mut out);
}

/// One mDNS message (the first byte picks the sender: 192.168.1.23 or fe80::1c2d:3e4f:5a6b:7c8d,
/// the addresses of the committed seeds) through the mDNS parser.
pub fn mdns(data: &[u8]) {
    let Some((&kind, msg)) = data.split_first() else { return };
    let src: std::net::IpAddr =
        if kind % 2 == 0 { [192, 168, 1, 23].into() } else { "fe80::1c2d:3e4f:5a6b:7c8d".parse().unwrap() };
    let _ = crate::sources::mdns::parse(src, msg);
}

/// A pcap or pcapng file, every record read as replay reads it.
pub fn capture(data: &[u8]) {
    let _ = crate::sources::replay::validate_reader(Path::new("fuzz.pcap"), data);
}

/// A stream of extsrc messages, as a client of the extsrc socket sends them.
pub fn extsrc(mut data: &[u8]) {
    while let Ok((_, used)) = extsrc::parse_message(data) {
        if used == 0 || used > data.len() {
            return;
        }
        data = &data[used..];
    }
}

/// A spind.conf, a UCI file and the WiFi settings file (and the same text as hostapd's replies).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = Config::parse(&text, "fuzz.conf");
    let _ = Config::parse_uci(&text, "fuzz.uci");
    if let Some(s) = wifi::parse_settings(&text) {
        let _ = (wifi::check_ssid(&s.ssid), wifi::check_passphrase(&s.passphrase), wifi::check_country(&s.country));
    }
    let _ = wifi::parse_status(&text);
    let _ = wifi::parse_station(&text);
}

/// A blocklist file (hosts, adblock `||name^` or a name a line) as `blocklist_files` loads it.
pub fn blocklist(data: &[u8]) {
    let mut set = blocklist::NameSet::new();
    let counts = blocklist::load(data, "fuzz.list", &mut set);
    assert_eq!(counts.names, set.len(), "every name counted once");
}

thread_local! {
    static CORE: RefCell<Option<(PathBuf, Core)>> = const { RefCell::new(None) };
}

fn fuzz_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spind-fuzz-{name}-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

fn core_in(dir: &Path) -> Option<Core> {
    let state = StateDir::open(dir).ok()?;
    let names = Names::load(&state.names_file(), &dir.join("dhcp"), &dir.join("leases"));
    Core::new(CoreSettings::default(), state, names, None, 1_700_000_000).ok()
}

/// A JSON-RPC request, answered by one core that lives across the run (its state directory
/// under the temporary directory), as the HTTP, MQTT and unix-socket transports hand it over.
pub fn jsonrpc(data: &[u8]) {
    let Ok(request) = std::str::from_utf8(data) else { return };
    CORE.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            let dir = fuzz_dir("rpc");
            *cell = core_in(&dir).map(|c| (dir, c));
        }
        let Some((_, core)) = cell.as_mut() else { return };
        let host = Host { own_addresses: Vec::new, wifi: None };
        let mut out = Vec::new();
        let _ = rpc::handle(core, request, &host, &mut out);
    });
}

/// The state files as a restart reads them: the bytes (split at NUL bytes) become the block
/// list, the names file, a node-store entry, the pairs file and the DHCP leases, then a core
/// loads them all.
pub fn state_files(data: &[u8]) {
    let dir = fuzz_dir("state");
    let Ok(state) = StateDir::open(&dir) else { return };
    let mut parts = data.split(|b| *b == 0);
    let files = [
        state.list_file("block"),
        state.names_file(),
        state.nodestore_dir().join("1"),
        state.nodepair_file(),
        dir.join("leases"),
    ];
    let _ = std::fs::create_dir_all(state.nodestore_dir());
    for f in &files {
        let _ = std::fs::write(f, parts.next().unwrap_or_default());
    }
    let _ = core_in(&dir);
}

/// An HTTP request head as the web server's front and access checks read it (tiny_http parses
/// the rest): the `/mqtt` upgrade test, the one-request rewrite with `X-Spind-Peer`, the `Host`,
/// `Origin` and `Referer` checks, `Authorization: Basic`, the session cookie, the path and an
/// `If-None-Match`.
pub fn http_head(data: &[u8]) {
    use crate::transports::auth;
    use crate::transports::http::{access, front, statics};
    let _ = front::is_mqtt_upgrade(data);
    let _ = front::one_request_only(data, Some([10, 0, 0, 7].into()), false);
    let text = String::from_utf8_lossy(data);
    let h = |n| front::head_header(&text, n);
    thread_local! {
        static HOSTS: access::Hosts =
            access::Hosts::new(&["192.168.8.1:13026".parse().unwrap()], &["spin.example.org".to_string()]);
    }
    HOSTS.with(|hosts| {
        let _ = access::browser_checks(hosts, h("Host"), h("Origin"), h("Referer"), true);
    });
    if let Some(v) = h("Authorization") {
        let _ = auth::decode_basic(v);
    }
    if let Some(c) = h("Cookie") {
        let _ = auth::session_token(c);
    }
    if let Some(target) = text.split_whitespace().nth(1) {
        let _ = statics::sanitize(target);
    }
    if let Some(v) = h("If-None-Match") {
        let _ = statics::etag_matches(v, "\"0123abcd\"");
    }
}
