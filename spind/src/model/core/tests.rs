//! The core fed with events and control operations on a temporary state directory: what it
//! publishes, in which order, and what it keeps (announce before use, merges, names, lists,
//! flow blocks, device flows, persistence across a restart).

use super::testutil::{core_in, on_topic};
use super::*;
use crate::model::event::{DnsData, DnsRecord};
use serde_json::{json, Value};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn flow(src: &str, dst: &str, dport: u16, bytes: u64, packets: u64) -> FlowSample {
    FlowSample {
        protocol: 6,
        src: ip(src),
        dst: ip(dst),
        src_port: 40000,
        dst_port: dport,
        icmp_type: 0,
        bytes,
        packets,
        reply_bytes: 0,
    }
}

fn run(core: &mut Core, ev: Event) -> Vec<Publish> {
    let mut out = Vec::new();
    core.handle(ev, &mut out);
    out
}

fn json_of(p: &Publish) -> Value {
    serde_json::from_slice(&p.payload).unwrap()
}

const DEV: &str = "192.168.8.100";
const DEV_MAC: &str = "02:00:00:00:00:64";

fn core_with_device(dir: &std::path::Path, settings: CoreSettings) -> Core {
    let mut core = core_in(dir, settings);
    run(&mut core, Event::Neighbour { time: 1000, ip: ip(DEV), mac: mac(DEV_MAC) });
    core
}

#[test]
fn every_node_is_announced_before_the_traffic_that_uses_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let out = run(&mut core, Event::Neighbour { time: 1000, ip: ip(DEV), mac: mac(DEV_MAC) });
    assert_eq!(out.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&out[0].payload),
        r#"{"command":"nodeInfo","result":{"id":1,"mac":"02:00:00:00:00:64","lastseen":1000,"ips":["192.168.8.100"],"domains":[]}}"#
    );
    let out = run(
        &mut core,
        Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 1500, 10)], local: false },
    );
    let topics: Vec<&str> = out.iter().map(|p| p.topic.as_str()).collect();
    assert_eq!(topics, ["SPIN/traffic/node/2", "SPIN/traffic"]);
    assert!(out[0].retain && !out[1].retain);
    assert_eq!(
        String::from_utf8_lossy(&out[0].payload),
        r#"{"command":"nodeInfo","result":{"id":2,"lastseen":1001,"ips":["198.51.100.10"],"domains":[]}}"#
    );
    assert_eq!(
        String::from_utf8_lossy(&out[1].payload),
        r#"{"command":"traffic","argument":"","result":{"flows":[{"from":1,"to":2,"protocol":6,"from_port":40000,"to_port":80,"size":1500,"count":10}],"timestamp":1001,"total_size":1500,"total_count":10}}"#
    );
    // Seen again: no new nodeInfo (a plain lastseen refresh is not republished).
    let out =
        run(&mut core, Event::Flows { time: 1002, flows: vec![flow(DEV, "198.51.100.10", 80, 100, 1)], local: false });
    assert_eq!(out.len(), 1);
}

#[test]
fn flows_without_a_device_need_local_mode_and_ignored_addresses_are_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let f = || vec![flow("10.0.0.5", "198.51.100.10", 443, 60, 1)];
    let out = run(&mut core, Event::Flows { time: 1001, flows: f(), local: false });
    assert!(on_topic(&out, "SPIN/traffic").is_empty(), "neither side is a device");
    let out = run(&mut core, Event::Flows { time: 1002, flows: f(), local: true });
    assert_eq!(on_topic(&out, "SPIN/traffic").len(), 1, "extsrc batches are local");

    let mut local =
        core_in(tempfile::tempdir().unwrap().path(), CoreSettings { local_mode: true, ..Default::default() });
    let out = run(&mut local, Event::Flows { time: 1001, flows: f(), local: false });
    assert_eq!(on_topic(&out, "SPIN/traffic").len(), 1, "-l publishes them");

    // The ignore list hides flows and DNS queries of ignored addresses.
    core.op_iplist_ip("ignore", ListKind::Ignore, DEV, true, &mut Vec::new()).unwrap();
    let out =
        run(&mut core, Event::Flows { time: 1003, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    assert!(on_topic(&out, "SPIN/traffic").is_empty());
    let out = run(&mut core, Event::DnsQuery { time: 1003, client: ip(DEV), qname: "www.example.test.".into() });
    assert!(on_topic(&out, "SPIN/traffic").is_empty());
    assert!(core.nodes().by_domain("www.example.test.").is_some(), "the cache still learns the name");
}

#[test]
fn dns_answers_follow_cname_chains_to_the_queried_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let out = run(&mut core, Event::DnsQuery { time: 1001, client: ip(DEV), qname: "cdn.example.test.".into() });
    let q = json_of(out.last().unwrap());
    assert_eq!(q["command"], "dnsquery");
    let queried = q["result"]["queriednode"].as_u64().unwrap();
    assert_eq!(q["result"]["query"], "cdn.example.test.");
    // The node is announced (retained) before the query refers to it.
    assert!(on_topic(&out, &format!("SPIN/traffic/node/{queried}"))[0]
        .contains(r#""ips":[],"domains":["cdn.example.test."]"#));

    let rec = |owner: &str, ttl, data| DnsRecord { owner: owner.into(), ttl, data };
    let records = vec![
        rec("cdn.example.test.", 300, DnsData::Cname("edge.example.test.".into())),
        rec("edge.example.test.", 300, DnsData::Cname("node1.cdnprovider.test.".into())),
        rec("node1.cdnprovider.test.", 60, DnsData::Addr(ip("198.51.100.20"))),
        rec("unrelated.test.", 60, DnsData::Addr(ip("203.0.113.9"))),
    ];
    let out = run(&mut core, Event::DnsAnswer { time: 1002, qname: "cdn.example.test.".into(), records });
    let info = on_topic(&out, &format!("SPIN/traffic/node/{queried}"));
    assert_eq!(info.len(), 1);
    assert!(info[0].contains(r#""ips":["198.51.100.20"],"domains":["cdn.example.test."]"#), "{}", info[0]);
    assert!(core.nodes().by_ip(&ip("203.0.113.9")).is_none(), "records outside the chain are ignored");
    // The CNAME targets' TTL (60) bounds how long the name glues: at 1100 it does not.
    let out = run(
        &mut core,
        Event::DnsAnswer {
            time: 1100,
            qname: "cdn.example.test.".into(),
            records: vec![rec("cdn.example.test.", 60, DnsData::Addr(ip("198.51.100.21")))],
        },
    );
    assert!(on_topic(&out, "SPIN/traffic/admin").is_empty());
    assert_ne!(core.nodes().by_ip(&ip("198.51.100.21")), Some(queried));
}

#[test]
fn merges_are_announced_and_clear_the_retained_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let answer = |name: &str, a: &str| Event::DnsAnswer {
        time: 1001,
        qname: name.into(),
        records: vec![DnsRecord { owner: name.into(), ttl: 300, data: DnsData::Addr(ip(a)) }],
    };
    run(&mut core, answer("a.test.", "192.0.2.1"));
    run(&mut core, answer("b.test.", "192.0.2.2"));
    let out = run(&mut core, answer("b.test.", "192.0.2.1"));
    let topics: Vec<(&str, String)> =
        out.iter().map(|p| (p.topic.as_str(), String::from_utf8_lossy(&p.payload).into_owned())).collect();
    assert_eq!(topics[0].0, "SPIN/traffic/node/2");
    assert!(
        topics[0].1.contains(r#""ips":["192.0.2.1","192.0.2.2"],"domains":["a.test.","b.test."]"#),
        "{}",
        topics[0].1
    );
    assert_eq!(topics[1], ("SPIN/traffic/admin", r#"{"command":"nodeMerged","result":{"id":3,"merged-to":2}}"#.into()));
    assert_eq!(topics[2], ("SPIN/traffic/node/3", String::new()));
    assert!(out[2].retain);
}

#[test]
fn idle_nodes_expire_but_devices_and_device_flow_peers_stay() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings { retain_time: 100, ..Default::default() });
    run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    run(&mut core, Event::DnsQuery { time: 1001, client: ip(DEV), qname: "old.test.".into() });
    let mut deleted = Vec::new();
    for t in 1002..1300 {
        deleted.extend(on_topic(&run(&mut core, Event::Tick { time: t }), "SPIN/traffic/admin"));
    }
    assert_eq!(deleted, [r#"{"command":"nodeDeleted","result":{"id":3}}"#]);
    assert!(core.nodes().get(1).is_some() && core.nodes().get(2).is_some());
}

#[test]
fn device_flows_count_traffic_and_show_flow_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 1000, 5)], local: false });
    run(&mut core, Event::Flows { time: 1002, flows: vec![flow(DEV, "198.51.100.10", 80, 500, 2)], local: false });
    assert_eq!(
        messages::device_flows_result(&core.op_list_device_flows(DEV_MAC).unwrap()).to_string(),
        r#"[{"to":2,"dst_port":80,"icmp_type":0,"packets":7,"bytes":1500,"lastseen":1002}]"#
    );
    core.op_set_flow_block(1, 2, true, &mut Vec::new()).unwrap();
    assert_eq!(messages::flow_blocks_result(&core.op_get_flow_block()).to_string(), r#"[{"node1":1,"node2":2}]"#);
    assert_eq!(
        messages::device_flows_result(&core.op_list_device_flows(DEV_MAC).unwrap()).to_string(),
        r#"[{"to":2,"dst_port":80,"icmp_type":0,"blocked":1}]"#
    );
    assert_eq!(core.op_set_flow_block(1, 1, true, &mut Vec::new()).unwrap_err().code, -1);
    assert_eq!(core.op_set_flow_block(1, 99, true, &mut Vec::new()).unwrap_err().message, "Unknown node id");
    assert_eq!(core.op_list_device_flows("02:00:00:00:00:65").unwrap_err().message, "Device not found");
}

#[test]
fn without_a_kernel_blocked_flows_are_reported_as_blocked() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings { simulate_blocking: true, ..Default::default() });
    run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    core.op_iplist_node("block", ListKind::Block, 2, true, &mut Vec::new()).unwrap();
    let out =
        run(&mut core, Event::Flows { time: 1002, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    assert_eq!(
        on_topic(&out, "SPIN/traffic"),
        [
            r#"{"command":"blocked","result":{"from":1,"to":2,"protocol":6,"from_port":40000,"to_port":80,"size":60,"count":1}}"#
        ]
    );
    // An allowed device overrides the block.
    core.op_iplist_node("allow", ListKind::Allow, 1, true, &mut Vec::new()).unwrap();
    let out =
        run(&mut core, Event::Flows { time: 1003, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    assert!(on_topic(&out, "SPIN/traffic")[0].starts_with(r#"{"command":"traffic""#));
}

#[test]
fn a_blocked_node_takes_its_later_addresses_onto_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let answer = |a: &str| Event::DnsAnswer {
        time: 1001,
        qname: "tracker.test.".into(),
        records: vec![DnsRecord { owner: "tracker.test.".into(), ttl: 300, data: DnsData::Addr(ip(a)) }],
    };
    run(&mut core, answer("203.0.113.1"));
    let id = core.nodes().by_ip(&ip("203.0.113.1")).unwrap();
    core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut Vec::new()).unwrap();
    let out = run(&mut core, answer("2001:db8::66"));
    assert_eq!(
        messages::ip_list_result(&core.op_list_iplist(ListKind::Block)).to_string(),
        r#"["203.0.113.1","2001:db8::66"]"#
    );
    assert!(on_topic(&out, "SPIN/traffic")
        .contains(&r#"{"command":"block","result":["203.0.113.1","2001:db8::66"]}"#.to_string()));
    assert!(on_topic(&out, &format!("SPIN/traffic/node/{id}"))[0].contains(r#""is_blocked":true"#));
}

#[test]
fn lists_flags_names_and_flow_blocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut core = core_with_device(dir.path(), CoreSettings::default());
        run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
        run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.30", 80, 60, 1)], local: false });
        let out = &mut Vec::new();
        core.op_iplist_node("block", ListKind::Block, 2, true, out).unwrap();
        core.op_set_flow_block(1, 3, true, out).unwrap();
        core.op_set_device_name(1, "laptop", out).unwrap();
    }
    let mut core = core_in(dir.path(), CoreSettings::default());
    let mut out = Vec::new();
    core.startup(&mut out);
    let traffic = on_topic(&out, "SPIN/traffic");
    assert_eq!(traffic[0], r#"{"command":"serverRestart"}"#);
    assert_eq!(traffic[1], r#"{"command":"block","result":["198.51.100.10"]}"#);
    assert_eq!(traffic[2], r#"{"command":"ignore","result":[]}"#);
    assert_eq!(traffic[3], r#"{"command":"allow","result":[]}"#);
    // The persisted nodes come back (new ids), with their flags and their flow block.
    let blocked = core.nodes().by_ip(&ip("198.51.100.10")).unwrap();
    assert!(core.nodes().get(blocked).unwrap().on_list(ListKind::Block));
    let dev = core.nodes().by_mac(&mac(DEV_MAC)).unwrap();
    let peer = core.nodes().by_ip(&ip("198.51.100.30")).unwrap();
    assert_eq!(
        messages::flow_blocks_result(&core.op_get_flow_block()),
        json!([{"node1": dev.min(peer), "node2": dev.max(peer)}])
    );
    assert_eq!(core.nodes().get(dev).unwrap().name.as_deref(), Some("laptop"));
    assert!(std::fs::read_to_string(dir.path().join("names.conf")).unwrap().contains("name: 02:00:00:00:00:64 laptop"));
}

#[test]
fn node_add_ip_returns_the_id_and_rejects_taken_or_bad_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let out = &mut Vec::new();
    assert_eq!(core.op_node_add_ip(0, "192.0.2.1", out).unwrap(), 1);
    assert_eq!(core.op_node_add_ip(1, "2001:db8::1", out).unwrap(), 1);
    assert_eq!(core.nodes().get(1).unwrap().ips.len(), 2);
    assert_eq!(core.op_node_add_ip(0, "192.0.2.1", out).unwrap_err().message, "IP address already assigned to a node");
    assert_eq!(core.op_node_add_ip(0, "x", out).unwrap_err().message, "Not a valid IP address");
    assert_eq!(core.op_node_add_ip(7, "192.0.2.2", out).unwrap_err().message, "Unknown node id");
}

#[test]
fn a_busy_interval_is_split_into_bounded_traffic_messages() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let flows: Vec<FlowSample> =
        (0..2500u32).map(|i| flow(DEV, &format!("203.0.{}.{}", i / 250, i % 250 + 1), 443, 100, 1)).collect();
    let out = run(&mut core, Event::Flows { time: 1001, flows, local: false });
    let traffic: Vec<Value> = on_topic(&out, "SPIN/traffic").iter().map(|t| serde_json::from_str(t).unwrap()).collect();
    let sizes: Vec<usize> = traffic.iter().map(|t| t["result"]["flows"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [1000, 1000, 500]);
    for t in &traffic {
        let n = t["result"]["flows"].as_array().unwrap().len() as u64;
        assert_eq!((t["result"]["total_size"].as_u64(), t["result"]["total_count"].as_u64()), (Some(n * 100), Some(n)));
    }
}

// ---- a decision the household took is never reversed by the daemon ---------------------------

fn answer(time: Timestamp, name: &str, addrs: &[&str]) -> Event {
    Event::DnsAnswer {
        time,
        qname: name.into(),
        records: addrs.iter().map(|a| DnsRecord { owner: name.into(), ttl: 300, data: DnsData::Addr(ip(a)) }).collect(),
    }
}

fn block_list(core: &Core) -> String {
    messages::ip_list_result(&core.op_list_iplist(ListKind::Block)).to_string()
}

fn node_of(core: &Core, addr: &str) -> NodeId {
    core.nodes().by_ip(&ip(addr)).unwrap_or_else(|| panic!("no node has {addr}"))
}

fn blocked(core: &Core, addr: &str) -> bool {
    core.nodes().get(node_of(core, addr)).unwrap().on_list(ListKind::Block)
}

/// The reported defect: block a node, remove each of its addresses by hand until the block list
/// is empty, and the next DNS answer for its name put the removed address (and the answer's new
/// one) back on the list, because the node's flag survived. A node whose addresses were all
/// removed is no longer blocked, and that is saved.
#[test]
fn removing_every_address_of_a_blocked_node_unblocks_it_for_good() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut core = core_with_device(dir.path(), CoreSettings::default());
        run(&mut core, answer(1001, "tracker.test.", &["203.0.113.1"]));
        let id = node_of(&core, "203.0.113.1");
        core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut Vec::new()).unwrap();
        assert_eq!(block_list(&core), r#"["203.0.113.1"]"#);
        core.op_iplist_ip("block", ListKind::Block, "203.0.113.1", false, &mut Vec::new()).unwrap();
        assert_eq!(block_list(&core), "[]");
        assert!(!blocked(&core, "203.0.113.1"), "a node with no address left on the list is not blocked");

        let out = run(&mut core, answer(1002, "tracker.test.", &["203.0.113.1", "2001:db8::66"]));
        assert_eq!(block_list(&core), "[]", "the DNS answer put addresses back on the block list");
        assert!(on_topic(&out, "SPIN/traffic").iter().all(|m| !m.starts_with(r#"{"command":"block""#)), "{out:?}");
        let info = on_topic(&out, &format!("SPIN/traffic/node/{id}"));
        assert!(info.iter().all(|i| !i.contains("is_blocked")), "{info:?}");
    }
    // And after a restart (the node store) nothing comes back either.
    let mut core = core_in(dir.path(), CoreSettings::default());
    run(&mut core, answer(1003, "tracker.test.", &["203.0.113.1"]));
    assert_eq!(block_list(&core), "[]");
    assert!(!blocked(&core, "203.0.113.1"));
}

/// What "a blocked node's later addresses are blocked too" means once the user removed some of
/// its addresses by hand: the node stays blocked and its new addresses join the list, but the
/// removed ones stay off it, whatever later observation touches the node: a DNS answer, a flow,
/// a merge, a lease change, expiry ticks, a restart.
#[test]
fn a_hand_removed_address_stays_off_the_list_while_the_node_keeps_its_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let leases = dir.path().join("leases");
    {
        let mut core = core_with_device(dir.path(), CoreSettings { retain_time: 100, ..Default::default() });
        run(&mut core, answer(1001, "tracker.test.", &["203.0.113.1", "203.0.113.2"]));
        let id = node_of(&core, "203.0.113.1");
        core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut Vec::new()).unwrap();
        core.op_iplist_ip("block", ListKind::Block, "203.0.113.1", false, &mut Vec::new()).unwrap();
        assert_eq!(block_list(&core), r#"["203.0.113.2"]"#);
        assert!(blocked(&core, "203.0.113.2"), "one address left: the node is still blocked");

        // DNS: the answer's new address joins, the removed one does not.
        run(&mut core, answer(1002, "tracker.test.", &["203.0.113.1", "203.0.113.3"]));
        assert_eq!(block_list(&core), r#"["203.0.113.2","203.0.113.3"]"#);
        // A flow to the removed address.
        run(&mut core, Event::Flows { time: 1003, flows: vec![flow(DEV, "203.0.113.1", 443, 60, 1)], local: false });
        // A merge: another name's node (id above) glues into it through a shared address.
        run(&mut core, answer(1004, "other.test.", &["198.51.100.77"]));
        let out = run(&mut core, answer(1004, "other.test.", &["203.0.113.3"]));
        assert!(!on_topic(&out, "SPIN/traffic/admin").is_empty(), "the nodes merged: {out:?}");
        assert_eq!(block_list(&core), r#"["198.51.100.77","203.0.113.2","203.0.113.3"]"#);
        // A lease change renames a node, and the clock runs past expiry.
        std::fs::write(&leases, format!("4000000000 {DEV_MAC} {DEV} tv *\n")).unwrap();
        for t in 1005..1300 {
            run(&mut core, Event::Tick { time: t });
        }
        assert_eq!(block_list(&core), r#"["198.51.100.77","203.0.113.2","203.0.113.3"]"#);
        assert!(blocked(&core, "203.0.113.1"), "the blocked node is kept");
    }
    // A restart recreates the blocked node with all its addresses: the removed one stays off.
    let mut core = core_in(dir.path(), CoreSettings::default());
    run(&mut core, Event::Tick { time: 1001 });
    assert_eq!(block_list(&core), r#"["198.51.100.77","203.0.113.2","203.0.113.3"]"#);
    assert!(blocked(&core, "203.0.113.1"));
    // Only an explicit add puts it back.
    core.op_iplist_ip("block", ListKind::Block, "203.0.113.1", true, &mut Vec::new()).unwrap();
    core.op_iplist_ip("block", ListKind::Block, "203.0.113.1", false, &mut Vec::new()).unwrap();
    core.op_iplist_node("block", ListKind::Block, node_of(&core, "203.0.113.1") as i64, true, &mut Vec::new()).unwrap();
    assert_eq!(block_list(&core), r#"["198.51.100.77","203.0.113.1","203.0.113.2","203.0.113.3"]"#);
}

/// A device's new address from the neighbour table joins its list, the one the user removed
/// does not come back with it.
#[test]
fn a_neighbour_of_a_blocked_device_brings_back_no_removed_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, Event::Neighbour { time: 1001, ip: ip("fd00:8::100"), mac: mac(DEV_MAC) });
    let dev = node_of(&core, DEV);
    core.op_iplist_node("block", ListKind::Block, dev as i64, true, &mut Vec::new()).unwrap();
    core.op_iplist_ip("block", ListKind::Block, DEV, false, &mut Vec::new()).unwrap();
    run(&mut core, Event::Neighbour { time: 1002, ip: ip(DEV), mac: mac(DEV_MAC) });
    run(&mut core, Event::Neighbour { time: 1003, ip: ip("fd00:8::101"), mac: mac(DEV_MAC) });
    assert_eq!(block_list(&core), r#"["fd00:8::100","fd00:8::101"]"#);
}

/// `remove_iplist_node` takes the node's addresses off the list; a merge with a node that is
/// still blocked (the other node's decision) does not put them back.
#[test]
fn an_unblocked_node_merged_into_a_blocked_one_keeps_its_addresses_unblocked() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, answer(1001, "a.test.", &["192.0.2.1"]));
    run(&mut core, answer(1001, "b.test.", &["192.0.2.2"]));
    let (a, b) = (node_of(&core, "192.0.2.1"), node_of(&core, "192.0.2.2"));
    let out = &mut Vec::new();
    core.op_iplist_node("block", ListKind::Block, a as i64, true, out).unwrap();
    core.op_iplist_node("block", ListKind::Block, b as i64, true, out).unwrap();
    core.op_iplist_node("block", ListKind::Block, b as i64, false, out).unwrap();
    assert_eq!(block_list(&core), r#"["192.0.2.1"]"#);
    // b.test now also answers with a's address: the two nodes become one, blocked (a's flag).
    run(&mut core, answer(1002, "b.test.", &["192.0.2.1", "192.0.2.3"]));
    assert_eq!(node_of(&core, "192.0.2.2"), node_of(&core, "192.0.2.1"));
    assert_eq!(block_list(&core), r#"["192.0.2.1","192.0.2.3"]"#, "192.0.2.2 came back");
}

/// A device renamed by the user keeps the new name: an old name of one of its addresses in
/// names.conf does not name it again (it did after a restart, when a flow of the address came
/// before the neighbour entry), nor does a DHCP lease, nor a merge.
#[test]
fn a_renamed_device_keeps_its_new_name_whatever_comes_later() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("names.conf"), format!("name: {DEV} old name\n")).unwrap();
    {
        let mut core = core_with_device(dir.path(), CoreSettings::default());
        let dev = node_of(&core, DEV);
        assert_eq!(core.nodes().get(dev).unwrap().name.as_deref(), Some("old name"));
        core.op_set_device_name(dev as i64, "new name", &mut Vec::new()).unwrap();
        let names = std::fs::read_to_string(dir.path().join("names.conf")).unwrap();
        assert_eq!(names, format!("name: {DEV_MAC} new name\n"));
    }
    std::fs::write(dir.path().join("leases"), format!("4000000000 {DEV_MAC} {DEV} dhcp-name *\n")).unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    // After a restart the device's address is seen before its MAC.
    let out =
        run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    assert!(out.iter().all(|p| !String::from_utf8_lossy(&p.payload).contains("old name")), "{out:?}");
    let out = run(&mut core, Event::Neighbour { time: 1002, ip: ip(DEV), mac: mac(DEV_MAC) });
    let dev = core.nodes().by_mac(&mac(DEV_MAC)).unwrap();
    assert_eq!(core.nodes().get(dev).unwrap().name.as_deref(), Some("new name"), "{out:?}");
    for t in 1003..1010 {
        run(&mut core, Event::Tick { time: t });
    }
    assert_eq!(core.nodes().get(dev).unwrap().name.as_deref(), Some("new name"));

    // A node without a MAC is named by its addresses; merged into another node, it keeps the name.
    run(&mut core, answer(1010, "printer.test.", &["192.0.2.50"]));
    run(&mut core, answer(1011, "cloud.test.", &["192.0.2.51"]));
    let p = node_of(&core, "192.0.2.51");
    core.op_set_device_name(p as i64, "my cloud", &mut Vec::new()).unwrap();
    run(&mut core, answer(1012, "cloud.test.", &["192.0.2.50"]));
    assert_eq!(core.nodes().get(node_of(&core, "192.0.2.51")).unwrap().name.as_deref(), Some("my cloud"));
}

/// `reset_iplist_ignore` is a fresh start: no node is ignored as a whole any more, so no later
/// address of one joins the list, neither now nor after a restart.
#[test]
fn a_reset_ignore_list_stays_reset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut core = core_with_device(dir.path(), CoreSettings::default());
        run(&mut core, answer(1001, "chatty.test.", &["192.0.2.9"]));
        let id = node_of(&core, "192.0.2.9");
        core.op_iplist_node("ignore", ListKind::Ignore, id as i64, true, &mut Vec::new()).unwrap();
        core.op_reset_iplist_ignore(&[ip("127.0.0.1")], &mut Vec::new()).unwrap();
        run(&mut core, answer(1002, "chatty.test.", &["192.0.2.10"]));
        assert_eq!(messages::ip_list_result(&core.op_list_iplist(ListKind::Ignore)).to_string(), r#"["127.0.0.1"]"#);
    }
    let mut core = core_in(dir.path(), CoreSettings::default());
    run(&mut core, answer(1003, "chatty.test.", &["192.0.2.9", "192.0.2.11"]));
    assert_eq!(messages::ip_list_result(&core.op_list_iplist(ListKind::Ignore)).to_string(), r#"["127.0.0.1"]"#);
    assert!(!core.nodes().get(node_of(&core, "192.0.2.9")).unwrap().on_list(ListKind::Ignore));
}

/// A flow block the user lifted does not come back: not when its node merges with a node whose
/// (older) block would carry over, and not after a restart. A block set after an unblock wins
/// the other way round.
#[test]
fn a_lifted_flow_block_is_not_brought_back_by_a_merge_or_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut core = core_with_device(dir.path(), CoreSettings::default());
        run(&mut core, answer(1001, "s1.test.", &["192.0.2.1"]));
        run(&mut core, answer(1001, "s2.test.", &["192.0.2.2"]));
        let (s1, s2) = (node_of(&core, "192.0.2.1") as i64, node_of(&core, "192.0.2.2") as i64);
        let out = &mut Vec::new();
        core.op_set_flow_block(1, s2, true, out).unwrap();
        core.op_set_flow_block(1, s1, true, out).unwrap();
        core.op_set_flow_block(1, s1, false, out).unwrap();
        assert_eq!(core.op_get_flow_block(), [(1, s2 as u64)]);
        // s2.test now answers with s1's address: s2 merges into s1, and the later decision about
        // the device and s1 (unblocked) wins over the older block of s2.
        run(&mut core, answer(1002, "s2.test.", &["192.0.2.1"]));
        assert_eq!(node_of(&core, "192.0.2.2"), s1 as u64);
        assert_eq!(core.op_get_flow_block(), [], "the merge brought back a block the user lifted");
    }
    let core = core_in(dir.path(), CoreSettings::default());
    assert_eq!(core.op_get_flow_block(), []);

    // Blocked after the unblock: the block is the later decision and survives the merge.
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, answer(1001, "s1.test.", &["192.0.2.1"]));
    run(&mut core, answer(1001, "s2.test.", &["192.0.2.2"]));
    let (s1, s2) = (node_of(&core, "192.0.2.1") as i64, node_of(&core, "192.0.2.2") as i64);
    let out = &mut Vec::new();
    core.op_set_flow_block(1, s1, true, out).unwrap();
    core.op_set_flow_block(1, s1, false, out).unwrap();
    core.op_set_flow_block(1, s2, true, out).unwrap();
    run(&mut core, answer(1002, "s2.test.", &["192.0.2.1"]));
    assert_eq!(core.op_get_flow_block(), [(1, s1 as u64)]);
}

// ---- a failed write is an error, and memory stays what is on disk -----------------------------

/// Makes writing `files` (names relative to the state directory) impossible, as a full or broken
/// disk would: a directory where each one's temp file must go (this works for root too, whom
/// file modes do not stop). Returns the obstacles, to remove them again.
fn unwritable(dir: &std::path::Path, files: &[&str]) -> Vec<std::path::PathBuf> {
    files
        .iter()
        .map(|f| {
            let p = dir.join(format!("{f}.tmp-{}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap();
            p
        })
        .collect()
}

#[test]
fn a_list_change_that_cannot_be_saved_is_refused_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, answer(1001, "tracker.test.", &["203.0.113.1"]));
    let id = node_of(&core, "203.0.113.1");
    let obstacles = unwritable(dir.path(), &["block.list"]);
    let mut out = Vec::new();
    let e = core.op_iplist_ip("block", ListKind::Block, "192.0.2.1", true, &mut out).unwrap_err();
    assert_eq!(e.code, -3);
    assert!(e.message.contains("block.list") && e.message.contains("nothing was changed"), "{}", e.message);
    assert_eq!(block_list(&core), "[]", "memory must match the disk");
    assert!(out.is_empty(), "nothing published for a change that did not happen: {out:?}");
    let e = core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut out).unwrap_err();
    assert_eq!(e.code, -3);
    assert_eq!(block_list(&core), "[]");
    assert!(!blocked(&core, "203.0.113.1"), "the node's flag was kept");
    assert!(out.is_empty());

    // The node store too: the flag cannot be saved, so the list entry is not made either.
    for o in &obstacles {
        std::fs::remove_dir(o).unwrap();
    }
    let obstacles = unwritable(dir.path(), &[&format!("nodestore/{id}")]);
    assert_eq!(core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut out).unwrap_err().code, -3);
    assert_eq!(block_list(&core), "[]");
    assert!(!std::fs::read_to_string(dir.path().join("block.list")).unwrap_or_default().contains("203.0.113.1"));
    for o in &obstacles {
        std::fs::remove_dir(o).unwrap();
    }
    core.op_iplist_node("block", ListKind::Block, id as i64, true, &mut out).unwrap();
    assert_eq!(std::fs::read_to_string(dir.path().join("block.list")).unwrap(), "203.0.113.1\n");
    let on_disk = core_in(dir.path(), CoreSettings::default());
    assert_eq!(block_list(&on_disk), r#"["203.0.113.1"]"#);
}

#[test]
fn a_name_or_flow_block_that_cannot_be_saved_is_refused_and_undone() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    let obstacles = unwritable(dir.path(), &["names.conf", "nodepair.list"]);
    let mut out = Vec::new();
    assert_eq!(core.op_set_device_name(1, "laptop", &mut out).unwrap_err().code, -3);
    assert_eq!(core.nodes().get(1).unwrap().name, None);
    assert!(!dir.path().join("names.conf").exists());
    assert_eq!(core.op_set_flow_block(1, 2, true, &mut out).unwrap_err().code, -3);
    assert_eq!(core.op_get_flow_block(), []);
    assert!(out.is_empty(), "{out:?}");
    for o in &obstacles {
        std::fs::remove_dir(o).unwrap();
    }
    core.op_set_device_name(1, "laptop", &mut out).unwrap();
    core.op_set_flow_block(1, 2, true, &mut out).unwrap();
    let on_disk = core_in(dir.path(), CoreSettings::default());
    assert_eq!(on_disk.op_get_flow_block().len(), 1);
}

/// A write caused by an observation (a blocked node's new address) has nobody to answer: memory
/// keeps the block (it is the household's decision) and the write is tried again every second
/// until the disk takes it.
#[test]
fn a_write_caused_by_an_observation_is_retried_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    run(&mut core, answer(1001, "tracker.test.", &["203.0.113.1"]));
    core.op_iplist_node("block", ListKind::Block, node_of(&core, "203.0.113.1") as i64, true, &mut Vec::new()).unwrap();
    let obstacles = unwritable(dir.path(), &["block.list"]);
    run(&mut core, answer(1002, "tracker.test.", &["203.0.113.2"]));
    assert_eq!(block_list(&core), r#"["203.0.113.1","203.0.113.2"]"#);
    assert_eq!(std::fs::read_to_string(dir.path().join("block.list")).unwrap(), "203.0.113.1\n");
    // A control operation on the same file while it waits still needs its own write: refused.
    let e = core.op_iplist_ip("block", ListKind::Block, "192.0.2.5", true, &mut Vec::new()).unwrap_err();
    assert_eq!(e.code, -3);
    assert_eq!(block_list(&core), r#"["203.0.113.1","203.0.113.2"]"#);
    run(&mut core, Event::Tick { time: 1003 });
    for o in &obstacles {
        std::fs::remove_dir(o).unwrap();
    }
    run(&mut core, Event::Tick { time: 1004 });
    run(&mut core, Event::Tick { time: 1005 });
    assert_eq!(std::fs::read_to_string(dir.path().join("block.list")).unwrap(), "203.0.113.1\n203.0.113.2\n");
}

/// The same through a directory whose mode forbids writing (for a user other than root; root
/// is not stopped by modes, and the obstacles above cover it).
#[test]
fn a_read_only_state_directory_refuses_changes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o500)).unwrap();
    let probe = std::fs::File::create(dir.path().join("probe")).is_ok();
    if probe {
        // Running as root: the mode does not apply; make the writes fail the other way.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let _ = std::fs::remove_file(dir.path().join("probe"));
        unwritable(dir.path(), &["allow.list"]);
    }
    let e = core.op_iplist_ip("allow", ListKind::Allow, "192.0.2.7", true, &mut Vec::new()).unwrap_err();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(e.code, -3);
    assert_eq!(core.op_list_iplist(ListKind::Allow), []);
}

// ---- node updates go out at once, and only when they say something new -----------------------

/// A DNS answer's node change is published by the event itself: the `nodeInfo` carrying the
/// name and the answered address is in the answer's own output, no `Tick` needed.
#[test]
fn a_dns_answer_publishes_its_node_at_once_without_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let has = |out: &[Publish], name: &str, addr: &str| {
        out.iter().any(|p| {
            let t = String::from_utf8_lossy(&p.payload);
            p.topic.starts_with(NODE_TOPIC_PREFIX) && p.retain && t.contains(name) && t.contains(&format!("\"{addr}\""))
        })
    };
    // A never-seen name, answered without its query having been seen.
    let out = run(&mut core, answer(1001, "fresh.test.", &["198.51.100.44"]));
    assert!(has(&out, "fresh.test.", "198.51.100.44"), "{out:?}");
    // A queried name: the query announces the name, the answer at once the address with it.
    run(&mut core, Event::DnsQuery { time: 1001, client: ip(DEV), qname: "asked.test.".into() });
    let out = run(&mut core, answer(1001, "asked.test.", &["2001:db8::44"]));
    assert!(has(&out, "asked.test.", "2001:db8::44"), "{out:?}");
    // An address already known from a flow gets the name at once too.
    run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "203.0.113.44", 443, 60, 1)], local: false });
    let out = run(&mut core, answer(1001, "late.test.", &["203.0.113.44"]));
    assert!(has(&out, "late.test.", "203.0.113.44"), "{out:?}");
}

/// A node is published when what its `nodeInfo` says changes, not again on the following ticks
/// while only its `lastseen` moves (traffic every second), and not for a change that does not
/// show (the ignore flag); `lastseen` alone is refreshed after `LASTSEEN_REFRESH` seconds.
#[test]
fn an_unchanged_node_is_not_published_again_on_the_next_ticks() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let node_infos = |out: &[Publish]| out.iter().filter(|p| p.topic.starts_with(NODE_TOPIC_PREFIX)).count();
    let out =
        run(&mut core, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
    assert_eq!(node_infos(&out), 1, "the new remote node");
    let mut later = Vec::new();
    for t in 1002..1002 + LASTSEEN_REFRESH - 5 {
        later.extend(run(
            &mut core,
            Event::Flows { time: t, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false },
        ));
        later.extend(run(&mut core, Event::Neighbour { time: t, ip: ip(DEV), mac: mac(DEV_MAC) }));
        later.extend(run(&mut core, Event::Tick { time: t }));
    }
    assert_eq!(node_infos(&later), 0, "unchanged nodes republished: {:?}", &later[..later.len().min(3)]);

    // Ignoring a node changes nothing its nodeInfo says: only the list goes out.
    let mut out = Vec::new();
    core.op_iplist_node("ignore", ListKind::Ignore, 2, true, &mut out).unwrap();
    assert_eq!(node_infos(&out), 0, "{out:?}");

    // Activity for LASTSEEN_REFRESH seconds: one refresh of each active node, with its lastseen.
    let mut refresh = Vec::new();
    let start = 1002 + LASTSEEN_REFRESH - 5;
    for t in start..start + 30 {
        run(&mut core, Event::Flows { time: t, flows: vec![flow(DEV, "198.51.100.10", 80, 60, 1)], local: false });
        refresh.extend(run(&mut core, Event::Tick { time: t }));
    }
    let infos: Vec<String> = on_topic(&refresh, "SPIN/traffic/node/2");
    assert_eq!(infos.len(), 1, "{infos:?}");
    let lastseen = serde_json::from_str::<Value>(&infos[0]).unwrap()["result"]["lastseen"].as_i64().unwrap();
    assert!(lastseen >= 1001 + LASTSEEN_REFRESH, "{}", infos[0]);
}

fn dns_answer_ev(time: Timestamp, qname: &str, records: &[(&str, DnsData)]) -> Event {
    Event::DnsAnswer {
        time,
        qname: qname.into(),
        records: records.iter().map(|(o, d)| DnsRecord { owner: (*o).into(), ttl: 60, data: d.clone() }).collect(),
    }
}

fn blocked_count(out: &[Publish]) -> usize {
    on_topic(out, "SPIN/traffic").iter().filter(|m| m.contains(r#""command":"blocked""#)).count()
}

/// Replay mode (no kernel): name rules are decided here, on the addresses their names resolved
/// to, CNAME chains included, per device, within schedules and until their end.
#[test]
fn name_rules_block_resolved_addresses_without_a_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CoreSettings { simulate_blocking: true, ..Default::default() };
    let mut core = core_with_device(dir.path(), settings);
    run(&mut core, Event::Neighbour { time: 1000, ip: ip("192.168.8.101"), mac: mac("02:00:00:00:00:65") });
    let addr = |s: &str| DnsData::Addr(ip(s));
    run(&mut core, dns_answer_ev(1000, "www.video.example.", &[("www.video.example.", addr("198.51.100.10"))]));
    // An innocent name whose chain passes through a tracker's.
    run(
        &mut core,
        dns_answer_ev(
            1000,
            "metrics.shop.example.",
            &[
                ("metrics.shop.example.", DnsData::Cname("t.tracker.example.".into())),
                ("t.tracker.example.", addr("198.51.100.30")),
            ],
        ),
    );
    let flows = |core: &mut Core, t, src: &str, dst: &str| {
        blocked_count(&run(core, Event::Flows { time: t, flows: vec![flow(src, dst, 443, 100, 1)], local: false }))
    };
    assert_eq!(flows(&mut core, 1001, DEV, "198.51.100.10"), 0, "no rule yet");
    let mut out = Vec::new();
    let rule = |name: &str, devices: &[&str], schedule: Option<&str>, until| {
        crate::model::namerules::parse_rule(name, "block", devices, schedule, until).unwrap()
    };
    core.op_add_name_rule(rule("video.example", &[DEV_MAC], None, None), &mut out).unwrap();
    core.op_add_name_rule(rule("tracker.example", &[], None, Some(1100)), &mut out).unwrap();
    assert_eq!(flows(&mut core, 1002, DEV, "198.51.100.10"), 1, "the device's flow to a blocked name's address");
    assert_eq!(flows(&mut core, 1002, "192.168.8.101", "198.51.100.10"), 0, "another device");
    assert_eq!(flows(&mut core, 1002, "192.168.8.101", "198.51.100.30"), 1, "CNAME cloaking, for everyone");
    // `until` passes: the tracker rule ends by itself.
    run(&mut core, Event::Tick { time: 1100 });
    assert_eq!(flows(&mut core, 1101, "192.168.8.101", "198.51.100.30"), 0, "the rule has ended");
    // A schedule: 1970-01-01 was a Thursday; the clock is UTC in tests.
    core.op_add_name_rule(rule("other.example", &[], Some("Th 00:30-01:00"), None), &mut out).unwrap();
    run(&mut core, dns_answer_ev(1750, "other.example.", &[("other.example.", addr("198.51.100.20"))]));
    assert_eq!(flows(&mut core, 1751, DEV, "198.51.100.20"), 0, "00:29 on Thursday: outside the window");
    run(&mut core, Event::Tick { time: 1800 });
    assert_eq!(flows(&mut core, 1801, DEV, "198.51.100.20"), 1, "00:30: inside");
    // The address's block outlives a short TTL by NAME_BLOCK_MIN_TTL, then expires.
    run(&mut core, Event::Tick { time: 1750 + NAME_BLOCK_MIN_TTL - 1 });
    assert_eq!(flows(&mut core, 1750 + NAME_BLOCK_MIN_TTL - 1, DEV, "198.51.100.20"), 1, "a TTL of 60 s held 300 s");
    run(&mut core, Event::Tick { time: 1750 + NAME_BLOCK_MIN_TTL });
    assert_eq!(flows(&mut core, 1750 + NAME_BLOCK_MIN_TTL, DEV, "198.51.100.20"), 0, "then it expires");
    // A scheduled allow under an unscheduled block: blocked outside its window, let through inside.
    core.op_add_name_rule(rule("games.example", &[], None, None), &mut out).unwrap();
    let allow =
        crate::model::namerules::parse_rule("homework.games.example", "allow", &[], Some("Th 01:00-01:02"), None);
    core.op_add_name_rule(allow.unwrap(), &mut out).unwrap();
    run(
        &mut core,
        dns_answer_ev(3550, "homework.games.example.", &[("homework.games.example.", addr("198.51.100.40"))]),
    );
    run(&mut core, Event::Tick { time: 3560 });
    assert_eq!(flows(&mut core, 3561, DEV, "198.51.100.40"), 1, "00:59: the allow's window has not opened");
    run(&mut core, Event::Tick { time: 3600 });
    assert_eq!(flows(&mut core, 3601, DEV, "198.51.100.40"), 0, "01:00: inside, the exception holds");
    run(&mut core, Event::Tick { time: 3720 });
    assert_eq!(flows(&mut core, 3721, DEV, "198.51.100.40"), 1, "01:02: blocked again");
}

/// The addresses of blocked names are saved, so a restart rebuilds their kernel blocks before
/// any new answer (an app's cached address stays cut).
#[test]
fn name_blocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CoreSettings { simulate_blocking: true, ..Default::default() };
    let mut core = core_with_device(dir.path(), settings.clone());
    let mut out = Vec::new();
    let rule = crate::model::namerules::parse_rule("video.example", "block", &[], None, None).unwrap();
    core.op_add_name_rule(rule, &mut out).unwrap();
    run(
        &mut core,
        dns_answer_ev(1000, "www.video.example.", &[("www.video.example.", DnsData::Addr(ip("198.51.100.10")))]),
    );
    run(&mut core, dns_answer_ev(1000, "other.example.", &[("other.example.", DnsData::Addr(ip("198.51.100.20")))]));
    let text = std::fs::read_to_string(dir.path().join("names.resolved")).unwrap();
    assert_eq!(text, "198.51.100.10 1300 www.video.example\n", "only what a rule blocks");
    drop(core);
    let mut again = core_with_device(dir.path(), settings);
    let out =
        run(&mut again, Event::Flows { time: 1001, flows: vec![flow(DEV, "198.51.100.10", 443, 1, 1)], local: false });
    assert_eq!(blocked_count(&out), 1);
}

/// Under a busy home's DNS the learnt addresses of blocked names are enforced and saved at
/// most once a second: the first answer of a second at once, later ones on the next tick.
#[test]
fn addresses_of_blocked_names_go_to_the_enforcer_at_most_once_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CoreSettings { simulate_blocking: true, ..Default::default() };
    let mut core = core_with_device(dir.path(), settings);
    let mut out = Vec::new();
    let rule = crate::model::namerules::parse_rule("video.example", "block", &[], None, None).unwrap();
    core.op_add_name_rule(rule, &mut out).unwrap();
    let answer = |t, host: &str, addr: &str| {
        let q = format!("{host}.video.example.");
        dns_answer_ev(t, &q.clone(), &[(&q, DnsData::Addr(ip(addr)))])
    };
    let cut = |core: &mut Core, t, dst: &str| {
        blocked_count(&run(core, Event::Flows { time: t, flows: vec![flow(DEV, dst, 443, 1, 1)], local: false }))
    };
    let saved = || std::fs::read_to_string(dir.path().join("names.resolved")).unwrap_or_default();
    run(&mut core, answer(1000, "a", "198.51.100.11"));
    assert_eq!(cut(&mut core, 1000, "198.51.100.11"), 1, "the first answer of a second is enforced at once");
    for i in 0..50 {
        run(&mut core, answer(1000, &format!("b{i}"), &format!("198.51.100.{}", 100 + i)));
    }
    assert_eq!(cut(&mut core, 1000, "198.51.100.120"), 0, "later ones of the same second wait");
    assert!(!saved().contains("198.51.100.120"), "and are not written yet");
    run(&mut core, Event::Tick { time: 1001 });
    assert_eq!(cut(&mut core, 1001, "198.51.100.120"), 1, "the next tick enforces them");
    assert!(saved().contains("198.51.100.149 "), "and writes them");
}

/// A service switched off for one device (replay mode: decided here) cuts that device's flows
/// to the addresses the service's names resolved to, a name below them included, and nobody
/// else's; switched off for the network it cuts everyone's; an allow name rule beats it; the
/// switches survive a restart, and switching on again restores the flows.
#[test]
fn services_switched_off_block_like_name_rules_and_an_allow_beats_them() {
    let dir = tempfile::tempdir().unwrap();
    let settings = CoreSettings { simulate_blocking: true, ..Default::default() };
    let mut core = core_with_device(dir.path(), settings.clone());
    let other = "192.168.8.101";
    run(&mut core, Event::Neighbour { time: 1000, ip: ip(other), mac: mac("02:00:00:00:00:65") });
    let addr = |s: &str| DnsData::Addr(ip(s));
    run(&mut core, dns_answer_ev(1000, "www.tiktok.com.", &[("www.tiktok.com.", addr("198.51.100.40"))]));
    run(&mut core, dns_answer_ev(1000, "api.discord.com.", &[("api.discord.com.", addr("198.51.100.41"))]));
    let flows = |core: &mut Core, t, src: &str, dst: &str| {
        blocked_count(&run(core, Event::Flows { time: t, flows: vec![flow(src, dst, 443, 100, 1)], local: false }))
    };
    assert_eq!(flows(&mut core, 1001, DEV, "198.51.100.40"), 0, "nothing switched off yet");
    let mut out = Vec::new();
    core.op_set_service("tiktok", Some(mac(DEV_MAC)), true, &mut out).unwrap();
    let published = on_topic(&out, "SPIN/traffic");
    assert!(
        published
            .contains(&r#"{"command":"services","result":[{"service":"tiktok","device":"02:00:00:00:00:64"}]}"#.into()),
        "{published:?}"
    );
    assert_eq!(flows(&mut core, 1002, DEV, "198.51.100.40"), 1, "www.tiktok.com is below tiktok.com");
    assert_eq!(flows(&mut core, 1002, other, "198.51.100.40"), 0, "another device");
    core.op_set_service("discord", None, true, &mut out).unwrap();
    assert_eq!(flows(&mut core, 1003, other, "198.51.100.41"), 1, "the whole network");
    // An allow name rule beats the service's block at its name.
    let allow = crate::model::namerules::parse_rule("api.discord.com", "allow", &[], None, None).unwrap();
    core.op_add_name_rule(allow, &mut out).unwrap();
    assert_eq!(flows(&mut core, 1004, other, "198.51.100.41"), 0, "allowed");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("services.list")).unwrap(),
        "discord\ntiktok 02:00:00:00:00:64\n"
    );
    // A restart keeps the switches (and the blocked addresses, without a new answer).
    drop(core);
    let mut core = core_with_device(dir.path(), settings);
    assert_eq!(flows(&mut core, 1005, DEV, "198.51.100.40"), 1, "after a restart");
    let listed = core.op_list_services(Some(mac(DEV_MAC)));
    let tiktok = listed.as_array().unwrap().iter().find(|s| s["id"] == "tiktok").unwrap();
    assert_eq!(tiktok, &json!({"id": "tiktok", "name": "TikTok", "blocked": true, "blocked_everywhere": false}));
    core.op_set_service("tiktok", Some(mac(DEV_MAC)), false, &mut out).unwrap();
    assert_eq!(flows(&mut core, 1006, DEV, "198.51.100.40"), 0, "switched on again");
    assert_eq!(std::fs::read_to_string(dir.path().join("services.list")).unwrap(), "discord\n");
    let e = core.op_set_service("nosuch", None, true, &mut out).unwrap_err();
    assert!(e.message.contains("'service'"), "{}", e.message);
}

/// A query the verdict path answered for a blocked name becomes SPIN's `blocked` message from
/// the device to the node of that name (announced first, with the name and no address).
#[test]
fn a_blocked_dns_query_is_published_as_blocked_from_the_device_to_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_with_device(dir.path(), CoreSettings::default());
    let out = run(
        &mut core,
        Event::DnsBlocked {
            time: 1001,
            client: ip(DEV),
            client_port: 40000,
            protocol: 17,
            qname: "www.tiktok.com".into(),
        },
    );
    let traffic = on_topic(&out, "SPIN/traffic");
    assert_eq!(
        traffic,
        [
            r#"{"command":"blocked","result":{"from":1,"to":2,"protocol":17,"from_port":40000,"to_port":53,"size":0,"count":1}}"#
        ]
    );
    let info: Value = serde_json::from_str(&on_topic(&out, "SPIN/traffic/node/2")[0]).unwrap();
    assert_eq!(info["result"]["domains"], json!(["www.tiktok.com."]));
    assert_eq!(info["result"]["ips"], json!([]));
    let topics: Vec<&str> = out.iter().map(|p| p.topic.as_str()).collect();
    assert!(
        topics.iter().position(|t| *t == "SPIN/traffic/node/2") < topics.iter().position(|t| *t == "SPIN/traffic"),
        "announced before use: {topics:?}"
    );
    // The same name again: the same node.
    let out = run(
        &mut core,
        Event::DnsBlocked {
            time: 1002,
            client: ip(DEV),
            client_port: 40001,
            protocol: 17,
            qname: "www.tiktok.com".into(),
        },
    );
    assert!(on_topic(&out, "SPIN/traffic")[0].contains(r#""to":2"#), "{out:?}");
}
