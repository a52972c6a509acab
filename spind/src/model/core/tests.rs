//! The core fed with events and control operations on a temporary state directory: what it
//! publishes, in which order, and what it keeps (announce before use, merges, names, lists,
//! flow blocks, device flows, persistence across a restart).

use super::testutil::{core_in, on_topic};
use super::*;
use crate::model::event::{DnsData, DnsRecord};
use serde_json::json;

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
