//! Floods of malformed input on every listener of the real binary: the extsrc socket (datagrams
//! and TCP), the web port and the MQTT broker (TCP and WebSocket). After each, spind is alive,
//! its log has no panic, and it still does its work for a well-behaved client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use serde_json::json;
use testbed::mqtt::Subscriber;
use testbed::spind::Spind;

use crate::common::spind;
use crate::extsrc_input::pkt_info;

/// Deterministic junk: a xorshift stream, so a failure reproduces.
struct Junk(u64);

impl Junk {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// Writes `data` to a fresh connection on `port`, reads whatever comes back for a moment and
/// closes it (the peer may close first: that is fine).
fn throw_at(port: u16, data: &[u8]) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { panic!("port {port} refused a connection") };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = s.write_all(data);
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
}

fn alive(s: &mut Spind, after: &str) {
    assert!(s.child.try_wait().unwrap().is_none(), "spind exited after {after}:\n{}", s.log_text());
    let log = s.log_text();
    assert!(!log.contains("panicked"), "a panic after {after}:\n{log}");
    // It still answers a real request.
    assert_eq!(s.call("list_iplist", json!({"list": "block"})), json!([]), "after {after}");
}

#[test]
fn junk_on_every_listener_changes_nothing_and_spind_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("extsrc.sock");
    let mut s = spind().arg("-P").arg("-e").arg(sock.to_str().unwrap()).start();
    testbed::wait_for("the extsrc socket", Duration::from_secs(10), || sock.exists().then_some(()));
    let mut junk = Junk(0x5eed_1234_dead_beef);

    // extsrc: datagrams of every size, with and without a plausible header.
    let out = UnixDatagram::unbound().unwrap();
    for i in 0..5000usize {
        let mut d = junk.bytes(i % 1100);
        if i % 3 == 0 && d.len() >= 8 {
            d[..4].copy_from_slice(&((i % 6) as u32).to_ne_bytes());
            let len = (d.len() - 8) as u32;
            d[4..8].copy_from_slice(&len.to_ne_bytes());
        }
        let _ = out.send_to(&d, &sock);
    }
    alive(&mut s, "5,000 junk extsrc datagrams");
    let dropped = s.log_text().lines().filter(|l| l.contains("dropping bad datagram")).count();
    assert!((1..=11).contains(&dropped), "a flood of bad datagrams floods the log: {dropped} lines");

    // HTTP: junk, broken request lines, absurd headers, a huge Content-Length with no body.
    for i in 0..300usize {
        let mut req = match i % 6 {
            0 => junk.bytes(1 + i * 13),
            1 => b"GET /\x00\xff HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            2 => b"POST /spin_api/jsonrpc HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{".to_vec(),
            3 => format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(100_000)).into_bytes(),
            4 => b"POST /spin_api/jsonrpc HTTP/1.1\r\nContent-Length: 5\r\n\r\n{\"a\":".to_vec(),
            _ => b"GET /../../../../etc/passwd HTTP/1.0\r\n\r\n".to_vec(),
        };
        req.truncate(200_000);
        throw_at(s.http_port, &req);
    }
    alive(&mut s, "300 junk HTTP requests");

    // MQTT: junk on the broker's TCP port, CONNECTs with bad lengths, junk on the WebSocket.
    for i in 0..300usize {
        let data = match i % 4 {
            0 => junk.bytes(1 + i * 11),
            1 => [&[0x10u8, 0xff, 0xff, 0xff, 0xff][..], &junk.bytes(64)].concat(),
            2 => [&[0x10u8, 12, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 200][..], &junk.bytes(8)].concat(),
            _ => [&[0x30u8, 5, 0, 1, b'#'][..], &junk.bytes(32)].concat(),
        };
        throw_at(s.mqtt_port, &data);
        throw_at(s.ws_port, &junk.bytes(1 + i * 5));
    }
    alive(&mut s, "300 junk MQTT connections");

    // After all that the stream still works end to end: a valid extsrc flow reaches a subscriber.
    let sub = Subscriber::connect(s.mqtt_port, false, "SPIN/traffic/#");
    let flow = pkt_info([192, 168, 1, 50], [198, 51, 100, 1], 443, 1500, 3);
    let got = sub.collect_until("the valid flow after the junk", Duration::from_secs(15), |got| {
        let _ = out.send_to(&flow, &sock);
        got.iter().any(|m| m.command() == "traffic")
    });
    assert!(got.iter().any(|m| m.command() == "traffic"));
    alive(&mut s, "the junk and a valid flow");
}

#[test]
fn junk_on_the_extsrc_tcp_port_is_dropped_and_a_valid_stream_still_counts() {
    let tcp = testbed::free_port();
    let mut s = spind().arg("-P").arg("-E").arg(format!("127.0.0.1:{tcp}")).start();
    testbed::wait_for("the extsrc TCP port", Duration::from_secs(10), || TcpStream::connect(("127.0.0.1", tcp)).ok());
    let mut junk = Junk(0x0dd_ba11);
    for i in 0..200 {
        throw_at(tcp, &junk.bytes(1 + i * 37));
    }
    alive(&mut s, "200 junk extsrc TCP streams");
    let sub = Subscriber::connect(s.mqtt_port, false, "SPIN/traffic/#");
    let flow = pkt_info([192, 168, 1, 51], [198, 51, 100, 2], 443, 1500, 3);
    let got = sub.collect_until("a valid flow over TCP after the junk", Duration::from_secs(15), |got| {
        throw_at(tcp, &flow);
        got.iter().any(|m| m.command() == "traffic")
    });
    assert!(got.iter().any(|m| m.command() == "traffic"));
    alive(&mut s, "the junk and a valid TCP flow");
}
