//! mDNS (multicast DNS, RFC 6762: UDP 5353, 224.0.0.251 / ff02::fb) responses and
//! announcements: what a device says about itself, parsed with hickory-proto from the answer
//! and additional sections. [`parse`] is pure (`&[u8]` in, no I/O) and used by
//! [`crate::sources::packet::Decoder`] for replayed captures and the kernel's NFLOG copies.
//!
//! A device speaks only for itself: its host name is taken from an A/AAAA record
//! `host.local` whose address is the packet's source address (a sleep proxy or a spoofer
//! announcing others' addresses names nobody), and its services only from SRV records whose
//! target is that host (plus the service types it lists under `_services._dns-sd._udp`).
//! The input is untrusted: a malformed message gives nothing, at most [`RECORDS_MAX`] records
//! are looked at, names are printable UTF-8 of at most [`NAME_MAX`] bytes, and at most
//! [`SERVICES_MAX`] service types come out of one message.

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType, OpCode};
use hickory_proto::rr::{Name, RData};

/// The mDNS port: responses go from it to it (legacy unicast answers to other ports are
/// answers to a query of the router's, not announcements).
pub const MDNS_PORT: u16 = 5353;
/// A DNS label's limit, and the longest name taken.
pub const NAME_MAX: usize = 63;
/// Service types kept from one message (a device has a handful; the core keeps as many).
pub const SERVICES_MAX: usize = crate::model::identity::MDNS_SERVICES_MAX;
/// Records looked at per message (answers, then additionals).
pub const RECORDS_MAX: usize = 64;

/// What one mDNS response says of its sender.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcement {
    /// The host label without `.local` (or, when that is a made-up identifier, the instance
    /// name of one of its services).
    pub name: Option<String>,
    /// The hardware model from `_device-info._tcp`'s TXT `model=` (Apple's, e.g. `MacBookPro18,3`).
    pub model: Option<String>,
    /// Service types it offers, lowercase, e.g. `_googlecast._tcp`; sorted, no duplicates.
    pub services: Vec<String>,
}

/// The announcement in an mDNS message from `src`; `None` when it is not a response, is
/// malformed, or names no host at `src`.
pub fn parse(src: IpAddr, msg: &[u8]) -> Option<Announcement> {
    let msg = Message::from_vec(msg).ok()?;
    if msg.metadata.message_type != MessageType::Response || msg.metadata.op_code != OpCode::Query {
        return None;
    }
    let records: Vec<_> = msg.answers.iter().chain(msg.additionals.iter()).take(RECORDS_MAX).collect();
    // The sender's own host: an address record for the source address.
    let host = records.iter().find_map(|rr| {
        let addr = match &rr.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => return None,
        };
        (addr == src).then_some(&rr.name).filter(|n| host_label(n).is_some())
    })?;
    // Name equality is case-insensitive, as DNS's.
    let own = |target: &Name| target == host;

    let mut services = Vec::new();
    let mut instance_name = None;
    let mut model = None;
    for rr in &records {
        match &rr.data {
            RData::SRV(srv) if own(&srv.target) => {
                if let Some(t) = service_type(&rr.name, 1) {
                    services.push(t);
                    if instance_name.is_none() {
                        instance_name = rr.name.iter().next().and_then(clean_name);
                    }
                }
            }
            RData::PTR(ptr) if is_enumeration(&rr.name) => services.extend(service_type(&ptr.0, 0)),
            RData::TXT(txt) if service_type(&rr.name, 1).as_deref() == Some("_device-info._tcp") => {
                model = model
                    .or_else(|| txt.txt_data.iter().find_map(|kv| kv.strip_prefix(b"model=").and_then(clean_name)));
            }
            _ => {}
        }
    }
    services.sort();
    services.dedup();
    services.truncate(SERVICES_MAX);
    // A host label that is a made-up identifier (Chromecasts use a UUID) names nobody; the
    // instance name of its service is what its owner sees in their apps.
    let name = host_label(host).and_then(clean_name).filter(|n| !made_up(n)).or(instance_name);
    (name.is_some() || model.is_some() || !services.is_empty()).then_some(Announcement { name, model, services })
}

/// `label` of `label.local.`.
fn host_label(name: &Name) -> Option<&[u8]> {
    let mut labels = name.iter();
    let (Some(label), Some(local), None) = (labels.next(), labels.next(), labels.next()) else { return None };
    local.eq_ignore_ascii_case(b"local").then_some(label)
}

/// `_service._proto` of a name `<skip labels>._service._proto.local.`, lowercase, when it is a
/// service type as RFC 6335 spells them (1-15 letters, digits and hyphens; TCP or UDP).
fn service_type(name: &Name, skip: usize) -> Option<String> {
    let labels: Vec<&[u8]> = name.iter().collect();
    let [svc, proto, local] = labels.get(skip..)? else { return None };
    let svc_ok = svc.len() >= 2
        && svc.len() <= 16
        && svc[0] == b'_'
        && svc[1..].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    let proto_ok = proto.eq_ignore_ascii_case(b"_tcp") || proto.eq_ignore_ascii_case(b"_udp");
    if !(svc_ok && proto_ok && local.eq_ignore_ascii_case(b"local")) {
        return None;
    }
    let text = format!("{}.{}", String::from_utf8_lossy(svc), String::from_utf8_lossy(proto));
    Some(text.to_ascii_lowercase())
}

/// `_services._dns-sd._udp.local.`: the device listing its service types.
fn is_enumeration(name: &Name) -> bool {
    let labels: Vec<&[u8]> = name.iter().collect();
    matches!(labels.as_slice(), [a, b, c, d]
        if a.eq_ignore_ascii_case(b"_services") && b.eq_ignore_ascii_case(b"_dns-sd")
            && c.eq_ignore_ascii_case(b"_udp") && d.eq_ignore_ascii_case(b"local"))
}

/// A name as shown to the user: UTF-8, no control characters, trimmed, 1 to [`NAME_MAX`]
/// bytes; anything else is refused, not repaired (it is not what the device is called).
pub fn clean_name(raw: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    (!text.is_empty() && text.len() <= NAME_MAX && !text.chars().any(char::is_control)).then(|| text.to_string())
}

/// A UUID or a long hex string: an identifier, not a name.
fn made_up(name: &str) -> bool {
    name.len() >= 16 && name.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod tests;
