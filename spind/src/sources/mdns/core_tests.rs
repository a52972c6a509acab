//! mDNS names and what they say of a device, from the packet decoder through a real core: a name fills a gap (never
//! the user's or a DHCP name), services and the model feed the type guess (never the user's
//! type), an announcement about another address names nobody, repeats publish nothing.

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::rdata::{A, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use serde_json::{json, Value};

use crate::model::core::testutil::core_in;
use crate::model::core::{Core, CoreSettings, NODE_TOPIC_PREFIX};
use crate::model::event::{Event, MacAddr, Publish};
use crate::model::rpc::{handle, Host};
use crate::sources::packet::{Decoder, LinkType};

const HOST: Host = Host { own_addresses: Vec::new, wifi: None };
const DEV: &str = "192.168.8.20";
const MAC: &str = "02:00:00:00:00:20";

fn call(core: &mut Core, method: &str, params: Value) -> Value {
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let mut out = Vec::new();
    serde_json::from_str(&handle(core, &req, &HOST, &mut out).unwrap()).unwrap()
}

fn device(core: &mut Core) -> Value {
    let list = call(core, "list_devices", json!({}));
    list["result"].as_array().unwrap().iter().find(|d| d["mac"] == MAC).cloned().expect("the device")
}

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

/// An announcement of `host` at `addr` offering `service` (and a model, if given).
fn announcement(host: &str, addr: &str, service: &str, model: Option<&str>) -> Vec<u8> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    let target = format!("{host}.local.");
    let full = format!("{host}.{service}.local.");
    m.add_answer(Record::from_rdata(n(&format!("{service}.local.")), 4500, RData::PTR(PTR(n(&full)))));
    m.add_additional(Record::from_rdata(n(&full), 120, RData::SRV(SRV::new(0, 0, 7000, n(&target)))));
    m.add_additional(Record::from_rdata(n(&target), 120, RData::A(A(addr.parse().unwrap()))));
    if let Some(model) = model {
        let info = format!("{host}._device-info._tcp.local.");
        m.add_additional(Record::from_rdata(n(&info), 4500, RData::TXT(TXT::new(vec![format!("model={model}")]))));
    }
    m.to_vec().unwrap()
}

/// The events a raw IPv4 mDNS packet from `src` to 224.0.0.251 decodes to.
fn decoded(src: &str, payload: &[u8]) -> Vec<Event> {
    let src: std::net::Ipv4Addr = src.parse().unwrap();
    let mut frame = Vec::new();
    etherparse::PacketBuilder::ipv4(src.octets(), [224, 0, 0, 251], 255)
        .udp(5353, 5353)
        .write(&mut frame, payload)
        .unwrap();
    let (mut d, mut out) = (Decoder::new(), Vec::new());
    d.frame(1000.0, LinkType::RawIp, &frame, &mut out);
    out.retain(|e| matches!(e, Event::MdnsName { .. }));
    out
}

fn feed(core: &mut Core, events: Vec<Event>) -> Vec<Publish> {
    let mut out = Vec::new();
    for e in events {
        core.handle(e, &mut out);
    }
    out
}

fn node_infos(out: &[Publish]) -> usize {
    out.iter().filter(|p| p.topic.starts_with(NODE_TOPIC_PREFIX)).count()
}

fn new_core(dir: &std::path::Path) -> Core {
    let mut core = core_in(dir, CoreSettings::default());
    let mac: MacAddr = MAC.parse().unwrap();
    feed(&mut core, vec![Event::Neighbour { time: 1000, ip: DEV.parse().unwrap(), mac }]);
    core
}

#[test]
fn an_announced_name_and_its_services_name_and_type_a_device_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = new_core(dir.path());
    assert_eq!(device(&mut core)["type"], Value::Null);
    let events = decoded(DEV, &announcement("Living-Room", DEV, "_googlecast._tcp", None));
    assert_eq!(events.len(), 1, "the kernel path's packet decodes to one announcement");
    let out = feed(&mut core, events.clone());
    assert_eq!(node_infos(&out), 1, "the new name is published");
    let d = device(&mut core);
    assert_eq!((&d["name"], &d["type"], &d["type_source"]), (&json!("Living-Room"), &json!("tv"), &json!("guess")));
    assert_eq!(d["services"], json!(["_googlecast._tcp"]));
    // The same announcement again (devices repeat them): nothing new to publish.
    assert_eq!(node_infos(&feed(&mut core, events.clone())), 0);
    assert_eq!(node_infos(&feed(&mut core, events)), 0);
    // A model says more than a service: a MacBook offering AirPlay is a laptop.
    feed(&mut core, decoded(DEV, &announcement("Living-Room", DEV, "_airplay._tcp", Some("MacBookPro18,3"))));
    let d = device(&mut core);
    assert_eq!((&d["type"], &d["model"]), (&json!("laptop"), &json!("MacBookPro18,3")));
    assert_eq!(d["services"], json!(["_airplay._tcp", "_googlecast._tcp"]));
}

#[test]
fn the_users_type_and_name_are_never_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = new_core(dir.path());
    assert!(call(&mut core, "set_device_type", json!({"device": MAC, "type": "console"}))["error"].is_null());
    let id = device(&mut core)["id"].clone();
    assert!(call(&mut core, "set_device_name", json!({"node": id, "name": "Kids' box"}))["error"].is_null());
    let out = feed(&mut core, decoded(DEV, &announcement("Printer", DEV, "_ipp._tcp", None)));
    assert_eq!(node_infos(&out), 0);
    let d = device(&mut core);
    assert_eq!((&d["name"], &d["type"], &d["type_source"]), (&json!("Kids' box"), &json!("console"), &json!("user")));
    // Without the user's name, the announced one shows; without the user's type, the guess.
    call(&mut core, "set_device_name", json!({"node": id, "name": ""}));
    call(&mut core, "set_device_type", json!({"device": MAC, "type": null}));
    let d = device(&mut core);
    assert_eq!((&d["name"], &d["type"]), (&json!("Printer"), &json!("printer")));
}

#[test]
fn an_announcement_about_another_address_names_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = new_core(dir.path());
    // From 192.168.8.66, claiming to be the device's address.
    assert!(decoded("192.168.8.66", &announcement("Evil", DEV, "_hap._tcp", None)).is_empty());
    // An announcement of its own from an address nobody owns names no device either.
    let out = feed(&mut core, decoded("192.168.8.66", &announcement("Evil", "192.168.8.66", "_hap._tcp", None)));
    assert_eq!(node_infos(&out), 0);
    let d = device(&mut core);
    assert_eq!((&d["name"], &d["type"], &d["services"]), (&Value::Null, &Value::Null, &Value::Null));
}

#[test]
fn an_announcement_before_the_neighbour_names_the_device_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    feed(&mut core, decoded(DEV, &announcement("Kitchen", DEV, "_raop._tcp", None)));
    let mac: MacAddr = MAC.parse().unwrap();
    feed(&mut core, vec![Event::Neighbour { time: 1001, ip: DEV.parse().unwrap(), mac }]);
    let d = device(&mut core);
    assert_eq!((&d["name"], &d["type"]), (&json!("Kitchen"), &json!("speaker")));
}
