//! The JSON shapes of SPIN 1.0's MQTT messages and RPC results (reference §1.3-1.5), with the
//! original key order and optional keys: every message payload and every RPC result is built
//! here, from the core's typed values. Structs serialize in field order, which is the order
//! the original app and tools see.

use serde::Serialize;
use serde_json::Value;

use crate::model::addr::IpNet;
use crate::model::core::{DeviceFlowRow, DeviceFlowTraffic};
use crate::model::nodes::{ListKind, Node, NodeId};

/// A node as in `nodeInfo`, `get_device_data`, `list_devices` and the node store.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct NodeJson<'a> {
    pub id: NodeId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_blocked: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub is_excepted: bool,
    pub lastseen: i64,
    pub ips: Vec<String>,
    pub domains: Vec<&'a str>,
}

impl<'a> NodeJson<'a> {
    pub fn of(n: &'a Node) -> Self {
        NodeJson {
            id: n.id,
            name: n.name.as_deref(),
            mac: n.mac.map(|m| m.to_string()),
            is_blocked: n.on_list(ListKind::Block),
            is_excepted: n.on_list(ListKind::Allow),
            lastseen: n.last_seen,
            ips: n.ips.iter().map(|i| i.to_string()).collect(),
            domains: n.sorted_domains(),
        }
    }
}

/// What a device says it is (issue 14), added after SPIN's fields in `list_devices` and
/// `get_device_data` (not in `nodeInfo` or the node store, whose shapes stay SPIN's).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity<'a> {
    /// The vendor of the MAC's OUI; null for an unregistered or a random MAC.
    pub vendor: Option<&'a str>,
    /// A locally administered (randomised) unicast MAC.
    pub random_mac: bool,
    /// The model it says over mDNS (`_device-info._tcp`), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<&'a str>,
    /// The mDNS service types it offers (e.g. `_googlecast._tcp`), when it offers any.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub services: &'a [String],
    /// phone, laptop, tv, speaker, camera, console, printer, iot, router; null when nothing says.
    #[serde(rename = "type")]
    pub kind: Option<&'static str>,
    /// `user` (set with `set_device_type`) or `guess`.
    pub type_source: &'static str,
}

/// A node with what it says it is.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct DeviceJson<'a> {
    #[serde(flatten)]
    pub node: NodeJson<'a>,
    #[serde(flatten)]
    pub identity: DeviceIdentity<'a>,
}

/// One element of `traffic.result.flows`, and the `result` of `blocked`.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FlowJson {
    pub from: NodeId,
    pub to: NodeId,
    pub protocol: u8,
    pub from_port: u16,
    pub to_port: u16,
    pub size: u64,
    pub count: u64,
}

/// One element of the `list_device_flows` result: the counters, or only `blocked: 1` when the
/// pair is flow-blocked (as SPIN).
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(untagged)]
pub enum DeviceFlowJson {
    Blocked { to: NodeId, dst_port: u16, icmp_type: u8, blocked: u8 },
    Counted { to: NodeId, dst_port: u16, icmp_type: u8, packets: u64, bytes: u64, lastseen: i64 },
}

impl DeviceFlowJson {
    pub fn of(row: &DeviceFlowRow) -> Self {
        let (to, dst_port, icmp_type) = (row.to, row.dst_port, row.icmp_type);
        match &row.traffic {
            DeviceFlowTraffic::Blocked => DeviceFlowJson::Blocked { to, dst_port, icmp_type, blocked: 1 },
            DeviceFlowTraffic::Counted(f) => DeviceFlowJson::Counted {
                to,
                dst_port,
                icmp_type,
                packets: f.packets,
                bytes: f.bytes,
                lastseen: f.last_seen,
            },
        }
    }
}

/// One element of the `get_flow_block` result.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct FlowBlockJson {
    pub node1: NodeId,
    pub node2: NodeId,
}

/// One element of the `list_rpc_methods` result.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RpcMethodJson {
    #[serde(rename = "rpc-name")]
    pub name: &'static str,
    #[serde(rename = "rpc-args")]
    pub args: Vec<RpcArgJson>,
    /// `integer` or `complex` (SPIN reports methods without a result as complex).
    #[serde(rename = "rpc-result-type")]
    pub result_type: &'static str,
}

#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct RpcArgJson {
    #[serde(rename = "rpc-arg-name")]
    pub name: &'static str,
    /// `integer`, `string` or `complex`.
    #[serde(rename = "rpc-arg-type")]
    pub kind: &'static str,
}

/// A JSON-RPC result as a JSON value (the reply envelope is built around it).
pub fn result_value(result: impl Serialize) -> Value {
    serde_json::to_value(result).expect("RPC result serializes")
}

/// The result of `get_device_data`: SPIN's node and what it says it is.
pub fn node_result<'a>(n: &'a Node, identity: DeviceIdentity<'a>) -> Value {
    result_value(DeviceJson { node: NodeJson::of(n), identity })
}

/// The result of `list_devices`.
pub fn nodes_result<'a>(nodes: &[&'a Node], identity: impl Fn(&'a Node) -> DeviceIdentity<'a>) -> Value {
    result_value(nodes.iter().map(|n| DeviceJson { node: NodeJson::of(n), identity: identity(n) }).collect::<Vec<_>>())
}

/// The result of `list_device_flows`.
pub fn device_flows_result(rows: &[DeviceFlowRow]) -> Value {
    result_value(rows.iter().map(DeviceFlowJson::of).collect::<Vec<_>>())
}

/// The result of `list_iplist`: the entries as SPIN prints them.
pub fn ip_list_result(entries: &[IpNet]) -> Value {
    result_value(entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
}

/// The result of `get_flow_block`.
pub fn flow_blocks_result(pairs: &[(NodeId, NodeId)]) -> Value {
    result_value(pairs.iter().map(|&(node1, node2)| FlowBlockJson { node1, node2 }).collect::<Vec<_>>())
}

#[derive(Serialize)]
struct TrafficResult<'a> {
    flows: &'a [FlowJson],
    timestamp: i64,
    total_size: u64,
    total_count: u64,
}

/// `{"command":..,"argument":"","result":..}` for traffic, `{"command":..,"result":..}` otherwise.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    argument: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<T>,
}

fn envelope<T: Serialize>(command: &str, result: Option<T>) -> String {
    let argument = (command == "traffic").then_some("");
    serde_json::to_string(&Envelope { command, argument, result }).expect("message serializes")
}

pub fn node_info(n: &Node) -> String {
    envelope("nodeInfo", Some(NodeJson::of(n)))
}

/// A digest of everything a node's `nodeInfo` says except `lastseen`: two equal digests mean
/// the message would tell a subscriber nothing new but the time.
pub fn node_digest(n: &Node) -> u64 {
    use std::hash::{Hash, Hasher};
    let j = NodeJson::of(n);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (j.id, j.name, j.mac, j.is_blocked, j.is_excepted, j.ips, j.domains).hash(&mut h);
    h.finish()
}

pub fn traffic(flows: &[FlowJson], timestamp: i64, total_size: u64, total_count: u64) -> String {
    envelope("traffic", Some(TrafficResult { flows, timestamp, total_size, total_count }))
}

pub fn dns_query(from: NodeId, queried: NodeId, query: &str) -> String {
    #[derive(Serialize)]
    struct R<'a> {
        from: NodeId,
        queriednode: NodeId,
        query: &'a str,
    }
    envelope("dnsquery", Some(R { from, queriednode: queried, query }))
}

/// `blocked` for a packet; without `result` when a side has no node (as SPIN).
pub fn blocked(flow: Option<&FlowJson>) -> String {
    envelope("blocked", flow)
}

/// The list broadcast; `command` is the list name as the client passed it (SPIN quirk).
pub fn list(command: &str, entries: &[String]) -> String {
    envelope(command, Some(entries))
}

/// `nameRules`: every name rule, after each change and at start.
pub fn name_rules(rules: &Value) -> String {
    envelope("nameRules", Some(rules))
}

/// `deviceSchedules`: every device bedtime, after each change and at start.
pub fn device_schedules(schedules: &Value) -> String {
    envelope("deviceSchedules", Some(schedules))
}

/// The services switched off (`set_service`), `[{"service", "device"?}]`, after each change.
pub fn services(blocks: &Value) -> String {
    envelope("services", Some(blocks))
}

pub fn server_restart() -> String {
    envelope::<Value>("serverRestart", None)
}

pub fn node_merged(id: NodeId, merged_to: NodeId) -> String {
    #[derive(Serialize)]
    struct R {
        id: NodeId,
        #[serde(rename = "merged-to")]
        merged_to: NodeId,
    }
    envelope("nodeMerged", Some(R { id, merged_to }))
}

pub fn node_deleted(id: NodeId) -> String {
    #[derive(Serialize)]
    struct R {
        id: NodeId,
    }
    envelope("nodeDeleted", Some(R { id }))
}

/// A statistics counter on `SPIN/stat/<module>/<name>`.
pub fn stat(module: &str, name: &str, kind: u8, value: u64, count: u64) -> String {
    #[derive(Serialize)]
    struct S<'a> {
        module: &'a str,
        name: &'a str,
        #[serde(rename = "type")]
        kind: u8,
        value: u64,
        count: u64,
    }
    serde_json::to_string(&S { module, name, kind, value, count }).expect("stat serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nodes::{Candidate, NodeCache};

    #[test]
    fn shapes_match_the_reference() {
        let mut c = NodeCache::new();
        let id = c.add(
            Candidate {
                ips: vec!["8.8.8.8".parse().unwrap()],
                domains: vec![("www.Example.com.".into(), Some(3000))],
                last_seen: 2000,
                ..Default::default()
            },
            2000,
        );
        assert_eq!(
            node_info(c.get(id).unwrap()),
            r#"{"command":"nodeInfo","result":{"id":1,"lastseen":2000,"ips":["8.8.8.8"],"domains":["www.Example.com."]}}"#
        );
        let f = FlowJson { from: 1, to: 2, protocol: 6, from_port: 51234, to_port: 443, size: 5321, count: 12 };
        assert_eq!(
            traffic(std::slice::from_ref(&f), 1633420001, 5321, 12),
            r#"{"command":"traffic","argument":"","result":{"flows":[{"from":1,"to":2,"protocol":6,"from_port":51234,"to_port":443,"size":5321,"count":12}],"timestamp":1633420001,"total_size":5321,"total_count":12}}"#
        );
        assert_eq!(
            dns_query(1, 3, "other.example."),
            r#"{"command":"dnsquery","result":{"from":1,"queriednode":3,"query":"other.example."}}"#
        );
        assert_eq!(blocked(None), r#"{"command":"blocked"}"#);
        assert_eq!(
            list("block", &["192.0.2.1".into(), "2001:db8::1".into()]),
            r#"{"command":"block","result":["192.0.2.1","2001:db8::1"]}"#
        );
        assert_eq!(server_restart(), r#"{"command":"serverRestart"}"#);
        assert_eq!(node_merged(17, 15), r#"{"command":"nodeMerged","result":{"id":17,"merged-to":15}}"#);
        assert_eq!(node_deleted(17), r#"{"command":"nodeDeleted","result":{"id":17}}"#);
        assert_eq!(
            stat("node_cache", "find-by-ip", 0, 123, 456),
            r#"{"module":"node_cache","name":"find-by-ip","type":0,"value":123,"count":456}"#
        );
    }
}
