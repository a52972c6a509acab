//! SPIN's extsrc binary protocol (reference §7.2) into the real binary over its unix datagram
//! socket: devices, DNS and flows become the SPIN stream, including a merge.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use testbed::mqtt::{Msg, Subscriber};

use crate::common::spind;

pub(crate) fn message(kind: u32, payload: &[u8]) -> Vec<u8> {
    let mut m = kind.to_ne_bytes().to_vec();
    m.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    m.extend_from_slice(payload);
    m
}

fn v4(a: [u8; 4]) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[12..].copy_from_slice(&a);
    b
}

fn dname(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// `dns_pkt_info_t`: family @0, ip[16] @1, ttl @20, dname[256] @24.
fn dns_pkt_info(ip: [u8; 16], ttl: u32, name: &str) -> Vec<u8> {
    let mut p = vec![0u8; 280];
    p[0] = 4;
    p[1..17].copy_from_slice(&ip);
    p[20..24].copy_from_slice(&ttl.to_ne_bytes());
    let n = dname(name);
    p[24..24 + n.len()].copy_from_slice(&n);
    p
}

/// A neighbour (`{char mac[18]; ip_t ip}`): `mac` owns `ip`.
pub(crate) fn arp(mac: &str, ip: [u8; 4]) -> Vec<u8> {
    let mut p = vec![0u8; 36];
    p[..mac.len()].copy_from_slice(mac.as_bytes());
    p[18] = 4;
    p[19] = 32;
    p[20..36].copy_from_slice(&v4(ip));
    message(4, &p)
}

fn dns_query(client: [u8; 4], name: &str) -> Vec<u8> {
    let mut p = 2i32.to_ne_bytes().to_vec();
    p.extend_from_slice(&v4(client));
    p.extend_from_slice(&dns_pkt_info([0; 16], 0, name));
    message(2, &p)
}

fn dns_answer(ip: [u8; 4], name: &str, ttl: u32) -> Vec<u8> {
    message(3, &dns_pkt_info(v4(ip), ttl, name))
}

/// An extsrc flow (`pkt_info_t`, TCP from port 51000), as SPIN's pcap reader sends it.
pub(crate) fn pkt_info(src: [u8; 4], dst: [u8; 4], dport: u16, bytes: u64, packets: u64) -> Vec<u8> {
    let mut p = vec![0u8; 64];
    p[0] = 4;
    p[1] = 6;
    p[2..18].copy_from_slice(&v4(src));
    p[18..34].copy_from_slice(&v4(dst));
    p[34..36].copy_from_slice(&51000u16.to_ne_bytes());
    p[36..38].copy_from_slice(&dport.to_ne_bytes());
    p[40..48].copy_from_slice(&bytes.to_ne_bytes());
    p[48..56].copy_from_slice(&packets.to_ne_bytes());
    message(1, &p)
}

#[test]
fn extsrc_messages_become_nodes_flows_queries_and_a_merge() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("extsrc.sock");
    let s = spind().arg("-P").arg("-e").arg(sock.to_str().unwrap()).start();
    testbed::wait_for("the extsrc socket", Duration::from_secs(10), || sock.exists().then_some(()));
    let sub = Subscriber::connect(s.mqtt_port, false, "SPIN/traffic/#");
    let out = UnixDatagram::unbound().unwrap();
    // A garbage datagram is dropped; the socket keeps working.
    out.send_to(b"\x09\x00\x00\x00garbage", &sock).unwrap();
    for m in [
        arp("02:00:00:00:00:aa", [192, 168, 1, 50]),
        dns_query([192, 168, 1, 50], "alias.test"),
        pkt_info([192, 168, 1, 50], [203, 0, 113, 5], 443, 4000, 7),
        dns_answer([203, 0, 113, 5], "alias.test", 300),
        // A later flow makes the merge visible after the answer.
        pkt_info([192, 168, 1, 50], [203, 0, 113, 5], 443, 100, 1),
    ] {
        out.send_to(&m, &sock).unwrap();
    }
    let msgs = sub.collect_until("the merge and the second flow", Duration::from_secs(20), |got| {
        got.iter().filter(|m| m.command() == "traffic").count() >= 2
    });
    let lines: Vec<String> = msgs
        .iter()
        .map(|m: &Msg| format!("{} {}", m.topic, String::from_utf8_lossy(&m.payload)))
        .filter(|l| !l.contains("\"timestamp\"") || l.contains("flows"))
        .collect();
    let find = |needle: &str| {
        lines.iter().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle} in {lines:#?}"))
    };
    let device = find(r#"SPIN/traffic/node/1 {"command":"nodeInfo","result":{"id":1,"mac":"02:00:00:00:00:aa""#);
    let query_node = find(r#"SPIN/traffic/node/2 {"command":"nodeInfo","result":{"id":2,"#);
    let query = find(r#"{"command":"dnsquery","result":{"from":1,"queriednode":2,"query":"alias.test."}}"#);
    let remote = find(r#"SPIN/traffic/node/3 {"command":"nodeInfo","result":{"id":3,"#);
    let first_flow =
        find(r#""flows":[{"from":1,"to":3,"protocol":6,"from_port":51000,"to_port":443,"size":4000,"count":7}]"#);
    let merged = find(r#"SPIN/traffic/admin {"command":"nodeMerged","result":{"id":3,"merged-to":2}}"#);
    let cleared = lines.iter().position(|l| l == "SPIN/traffic/node/3 ").expect("retained node 3 cleared");
    let second_flow = find(r#""flows":[{"from":1,"to":2,"#);
    assert!(device < query && query_node < query, "announced before use");
    assert!(remote < first_flow && first_flow < merged && merged < cleared && cleared < second_flow, "{lines:#?}");
    let merged_info = lines[..merged].iter().rev().find(|l| l.starts_with("SPIN/traffic/node/2 ")).unwrap();
    assert!(merged_info.contains(r#""ips":["203.0.113.5"],"domains":["alias.test."]"#), "{merged_info}");
}
