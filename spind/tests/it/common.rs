//! What the areas share that is this crate's own: the `spind` binary under test, the recorded
//! fixtures (`spind/tests/fixtures`, which xtask and the docs refer to) and a passive spind for
//! the HTTP tests. Everything else comes from the `testbed` crate.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::spind::{Spind, SpindBuilder};

/// The binary under test, built by cargo for this test run.
pub const SPIND: &str = env!("CARGO_BIN_EXE_spind");

/// A launcher for the binary under test.
pub fn spind() -> SpindBuilder {
    SpindBuilder::new(SPIND)
}

/// A recorded capture in `spind/tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A passive spind (no kernel access needed) with extra config lines. `testbed::free_port` can
/// hand out the same port twice (it is free again once probed), so a start that fails with a
/// busy address is tried again with new ports.
pub fn passive(lines: &[&str]) -> Spind {
    for _ in 0..5 {
        let mut b = spind().arg("-P").arg("-e").arg(format!(
            "/tmp/spind-web-{}-{}.sock",
            std::process::id(),
            testbed::free_port()
        ));
        for l in lines {
            b = b.config_line(l);
        }
        let mut s = b.spawn();
        let port = s.http_port;
        let up = testbed::wait_for("spind's web port or its exit", Duration::from_secs(20), || {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(true);
            }
            s.child.try_wait().unwrap().map(|_| false)
        });
        if up {
            return s;
        }
        if !s.log_text().contains("Address already in use") {
            panic!("spind did not start:\n{}", s.log_text());
        }
    }
    panic!("spind did not start: ports kept colliding");
}

/// A namespace `tag` with the LAN address `addr`/24 on a veth pair (so spind's listeners there
/// are not on loopback: the admin account applies).
pub fn lan_namespace(tag: &str, addr: &str) -> testbed::netns::Netns {
    let ns = testbed::netns::Netns::new(tag);
    ns.exec(&["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan1"]);
    ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "lan0"]);
    ns.exec(&["ip", "link", "set", "lan0", "up"]);
    ns.exec(&["ip", "link", "set", "lan1", "up"]);
    ns
}

/// A spind in `ns` with its web server and MQTT broker on `addr` and the admin account in
/// `password_file`.
pub fn lan_spind(ns: &testbed::netns::Netns, addr: &str, password_file: &Path) -> SpindBuilder {
    spind()
        .netns(&ns.name)
        .config_line(&format!("spinweb_interfaces = {addr}"))
        .config_line(&format!("pubsub_host = {addr}"))
        .config_line(&format!("spinweb_password_file = {}", password_file.display()))
}

/// `spind --set-password admin` with `password` on standard input, writing `password_file`.
pub fn set_admin_password(password_file: &Path, password: &str) {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("spind.conf");
    std::fs::write(&conf, format!("spinweb_password_file = {}\nlog_usesyslog = 0\n", password_file.display())).unwrap();
    let sh = testbed::netns::shell();
    let out = testbed::runner::cmd!(sh, "{SPIND} -c {conf} --set-password admin")
        .stdin(testbed::runner::Stdin::Bytes(format!("{password}\n").into_bytes()))
        .output()
        .unwrap();
    assert!(out.status.success(), "--set-password: {}", String::from_utf8_lossy(&out.stderr));
}

/// One HTTP/1.1 request to `addr` (from the calling thread's namespace), `Connection: close`;
/// `headers` are whole lines; a `Host` of `addr` unless one is given.
pub fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[&str],
    body: &str,
) -> testbed::http::Resp {
    use std::io::{Read, Write};
    let mut r = format!("{method} {target} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|h| h.to_ascii_lowercase().starts_with("host:")) {
        r.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(r.as_bytes());
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    testbed::http::parse(&resp)
}
