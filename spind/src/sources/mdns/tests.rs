//! The mDNS parser against messages built with hickory-proto as responders send them.

use super::*;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, PTR, SRV, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

const DEVICE: &str = "192.168.1.23";

/// A name from its labels as they are (instance names have spaces, which `from_ascii` refuses).
fn n(s: &str) -> Name {
    let mut name = Name::from_labels(s.trim_end_matches('.').split('.').map(str::as_bytes)).unwrap();
    name.set_fqdn(true);
    name
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A record as responders send them: class IN with the cache-flush bit (0x8001).
fn rr(name: &str, data: RData) -> Record {
    let mut r = Record::from_rdata(n(name), 120, data);
    r.dns_class = DNSClass::Unknown(0x8001);
    r
}

/// An announcement as avahi or mDNSResponder sends it: the PTR in the answers, SRV, TXT and
/// the host's addresses in the additional section.
fn announcement(host: &str, addr: &str, instance: &str, service: &str) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.authoritative = true;
    let full = format!("{instance}.{service}.local.");
    let target = format!("{host}.local.");
    m.add_answer(Record::from_rdata(n(&format!("{service}.local.")), 4500, RData::PTR(PTR(n(&full)))));
    m.add_additional(rr(&full, RData::SRV(SRV::new(0, 0, 8009, n(&target)))));
    m.add_additional(rr(&full, RData::TXT(TXT::new(vec!["fn=Living Room".into()]))));
    m.add_additional(rr(&target, RData::A(A(addr.parse().unwrap()))));
    m.add_additional(rr(&target, RData::AAAA(AAAA("fe80::1c2d:3e4f:5a6b:7c8d".parse().unwrap()))));
    m.to_vec().unwrap()
}

#[test]
fn an_announcement_names_its_sender_with_its_services() {
    let msg = announcement("Kitchen-Speaker", DEVICE, "Kitchen", "_sonos._tcp");
    let a = parse(ip(DEVICE), &msg).expect("an announcement");
    assert_eq!(
        a,
        Announcement { name: Some("Kitchen-Speaker".into()), model: None, services: vec!["_sonos._tcp".into()] }
    );
    // The same from its IPv6 link-local address (the AAAA record is its own).
    let a6 = parse(ip("fe80::1c2d:3e4f:5a6b:7c8d"), &msg).unwrap();
    assert_eq!(a6.name.as_deref(), Some("Kitchen-Speaker"));
}

#[test]
fn a_mac_says_its_model_and_lists_its_service_types() {
    let host = "Bobs-Computer.local.";
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_answer(rr(host, RData::A(A(DEVICE.parse().unwrap()))));
    let info = "Bobs-Computer._device-info._tcp.local.";
    m.add_additional(Record::from_rdata(
        n(info),
        4500,
        RData::TXT(TXT::new(vec!["model=MacBookPro18,3".into(), "osxvers=23".into()])),
    ));
    let enumeration = "_services._dns-sd._udp.local.";
    m.add_additional(Record::from_rdata(n(enumeration), 4500, RData::PTR(PTR(n("_rfb._tcp.local.")))));
    m.add_additional(Record::from_rdata(n(enumeration), 4500, RData::PTR(PTR(n("_Companion-Link._TCP.local.")))));
    m.add_additional(Record::from_rdata(n(enumeration), 4500, RData::PTR(PTR(n("not a service.local.")))));
    let a = parse(ip(DEVICE), &m.to_vec().unwrap()).unwrap();
    assert_eq!(a.name.as_deref(), Some("Bobs-Computer"));
    assert_eq!(a.model.as_deref(), Some("MacBookPro18,3"));
    assert_eq!(a.services, ["_companion-link._tcp", "_rfb._tcp"]);
}

#[test]
fn a_made_up_host_label_gives_way_to_the_instance_name() {
    let msg = announcement("6a5c2ed0-c5c3-1f0f-8e8a-6c6a26a3dc0f", DEVICE, "Living Room TV", "_googlecast._tcp");
    let a = parse(ip(DEVICE), &msg).unwrap();
    assert_eq!(a.name.as_deref(), Some("Living Room TV"));
    assert_eq!(a.services, ["_googlecast._tcp"]);
}

#[test]
fn a_response_about_another_address_is_not_taken() {
    // A sleep proxy (or a liar) answering for 192.168.1.99 names nobody, and its services
    // are not the sender's.
    let msg = announcement("Kitchen-Speaker", "192.168.1.99", "Kitchen", "_sonos._tcp");
    assert_eq!(parse(ip(DEVICE), &msg), None);
    // Its own host, but a service whose SRV points at another host: the service is not taken.
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_answer(rr("me.local.", RData::A(A(DEVICE.parse().unwrap()))));
    m.add_answer(rr("Other._ipp._tcp.local.", RData::SRV(SRV::new(0, 0, 631, n("other.local.")))));
    let a = parse(ip(DEVICE), &m.to_vec().unwrap()).unwrap();
    assert_eq!((a.name.as_deref(), a.services.len()), (Some("me"), 0));
}

#[test]
fn queries_and_malformed_messages_give_nothing() {
    let mut q = Message::new(0, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(n("_googlecast._tcp.local."), RecordType::PTR));
    q.add_answer(rr("me.local.", RData::A(A(DEVICE.parse().unwrap())))); // known-answer list
    assert_eq!(parse(ip(DEVICE), &q.to_vec().unwrap()), None);
    let good = announcement("Kitchen-Speaker", DEVICE, "Kitchen", "_sonos._tcp");
    for len in 0..good.len() {
        // Every truncation: nothing or the same, never a panic.
        let got = parse(ip(DEVICE), &good[..len]);
        assert!(got.is_none() || got == parse(ip(DEVICE), &good), "{len}: {got:?}");
    }
    assert_eq!(parse(ip(DEVICE), &[0xff; 12]), None);
    assert_eq!(parse(ip(DEVICE), &[0x84, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None);
}

#[test]
fn too_long_control_and_non_utf8_names_are_refused() {
    let long = "a".repeat(64);
    let ok = "b".repeat(63);
    assert_eq!(clean_name(long.as_bytes()), None);
    assert_eq!(clean_name(ok.as_bytes()).as_deref(), Some(ok.as_str()));
    assert_eq!(clean_name(b"bad\nname"), None);
    assert_eq!(clean_name(b"bell\x07"), None);
    assert_eq!(clean_name(b"caf\xc3"), None);
    assert_eq!(clean_name(b"   "), None);
    assert_eq!(clean_name("Café Ünïcode".as_bytes()).as_deref(), Some("Café Ünïcode"));
    // Through a whole message: a control character in the host label names nobody.
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    let host = Name::from_labels(vec![&b"evil\x1b[2J"[..], &b"local"[..]]).unwrap();
    let mut r = Record::from_rdata(host, 120, RData::A(A(DEVICE.parse().unwrap())));
    r.dns_class = DNSClass::IN;
    m.add_answer(r);
    assert_eq!(parse(ip(DEVICE), &m.to_vec().unwrap()), None);
}

#[test]
fn the_number_of_service_types_is_bounded() {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_answer(rr("me.local.", RData::A(A(DEVICE.parse().unwrap()))));
    for i in 0..100 {
        let t = n(&format!("_svc{i}._tcp.local."));
        m.add_answer(Record::from_rdata(n("_services._dns-sd._udp.local."), 10, RData::PTR(PTR(t))));
    }
    let a = parse(ip(DEVICE), &m.to_vec().unwrap()).unwrap();
    assert_eq!(a.services.len(), SERVICES_MAX);
}

#[test]
fn the_committed_fuzz_seeds_are_announcements() {
    // spind/fuzz/corpus/mdns: the first byte picks the sender (even: DEVICE).
    let v4 = include_bytes!("../../../fuzz/corpus/mdns/googlecast_v4");
    let a = parse(ip(DEVICE), &v4[1..]).unwrap();
    assert_eq!(
        (a.name.as_deref(), a.services.as_slice()),
        (Some("Living-Room"), &["_googlecast._tcp".to_string()][..])
    );
    let v6 = include_bytes!("../../../fuzz/corpus/mdns/device_info_v6");
    let a = parse(ip("fe80::1c2d:3e4f:5a6b:7c8d"), &v6[1..]).unwrap();
    assert_eq!((a.name.as_deref(), a.model.as_deref()), (Some("Bobs-Computer"), Some("MacBookPro18,3")));
    assert_eq!(a.services, ["_companion-link._tcp"]);
}
