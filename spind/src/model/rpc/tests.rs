//! The JSON-RPC dispatch against a real core on a temporary state directory: the verbatim
//! request/response pairs of the reference, the method table, and each method's errors.

use super::*;
use crate::model::core::testutil::{core_in, on_topic};
use crate::model::core::CoreSettings;
use crate::model::event::Event;

/// The host as the tests see it: one loopback address per family.
const HOST: Host = Host { own_addresses: || vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()], wifi: None };

fn rpc(core: &mut Core, req: &str) -> Option<String> {
    let mut out = Vec::new();
    handle(core, req, &HOST, &mut out)
}

/// The verbatim request/response pairs of reference §2.2, in order, on a cache where node 3
/// has the address 192.0.2.1.
#[test]
fn verbatim_pairs_of_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    for (i, ip) in ["192.0.2.11", "192.0.2.12", "192.0.2.1"].iter().enumerate() {
        let r = rpc(
            &mut core,
            &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"node_add_ip","params":{{"node":0,"ipaddr":"{ip}"}}}}"#),
        );
        assert_eq!(r.unwrap(), format!(r#"{{"jsonrpc":"2.0","id":1,"result":{}}}"#, i + 1));
    }
    let pairs = [
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"add_iplist_node","params":{"list":"block","node":3}}"#,
            Some(r#"{"jsonrpc":"2.0","id":5}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"x","method":"add_iplist_node","params":{"list":"block","node":99}}"#,
            Some(r#"{"jsonrpc":"2.0","id":"x","error":{"code":-2,"message":"Unknown node id"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":"list_iplist","params":{"list":"block"}}"#,
            Some(r#"{"jsonrpc":"2.0","id":6,"result":["192.0.2.1"]}"#),
        ),
        (r#"{"jsonrpc":"2.0","method":"list_iplist","params":{"list":"block"}}"#, Some(r#"["192.0.2.1"]"#)),
        (
            r#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#,
            Some(r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"No such function registered"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":8,"method":"list_iplist"}"#,
            Some(r#"{"jsonrpc":"2.0","id":8,"error":{"code":-1,"message":"Wrong number of arguments"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"add_iplist_node","params":{"node":"3","list":"block"}}"#,
            Some(r#"{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"Wrong type of argument"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":10,"method":"add_iplist_node","params":{"list":3,"node":3}}"#,
            Some(r#"{"jsonrpc":"2.0","id":10,"error":{"code":-1,"message":"No such argument registered"}}"#),
        ),
        (
            r#"{"jsonrpc":"1.0","id":12,"method":"list_iplist"}"#,
            Some(r#"{"jsonrpc":"2.0","id":12,"error":{"code":1,"message":"Wrong JSON-RPC version, expected 2.0"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":13,"method":5}"#,
            Some(r#"{"jsonrpc":"2.0","id":13,"error":{"code":2,"message":"'method' object must be a string"}}"#),
        ),
        (
            r#"{"jsonrpc":"2.0","id":14,"method":"list_iplist","params":["block"]}"#,
            Some(r#"{"jsonrpc":"2.0","id":14,"error":{"code":3,"message":"'params' object must be a dict"}}"#),
        ),
        ("not json", Some(r#"{"jsonrpc":"2.0","error":{"code":1,"message":"Wrong JSON-RPC version, expected 2.0"}}"#)),
        (
            r#"{"jsonrpc":"2.0","id":16,"method":"list_iplist","params":{"list":"block","extra":1}}"#,
            Some(r#"{"jsonrpc":"2.0","id":16,"error":{"code":-1,"message":"Wrong number of arguments"}}"#),
        ),
        // A notification of a method without result gets no reply at all.
        (r#"{"jsonrpc":"2.0","method":"remove_iplist_ip","params":{"list":"allow","ip":"192.0.2.99"}}"#, None),
    ];
    for (req, want) in pairs {
        assert_eq!(rpc(&mut core, req).as_deref(), want, "request {req}");
    }
}

#[test]
fn list_rpc_methods_names_every_method_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let r: Value =
        serde_json::from_str(&rpc(&mut core, r#"{"jsonrpc":"2.0","id":1,"method":"list_rpc_methods"}"#).unwrap())
            .unwrap();
    let names: Vec<&str> = r["result"].as_array().unwrap().iter().map(|m| m["rpc-name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ack_alert",
            "add_blocklist",
            "add_iplist_ip",
            "add_iplist_node",
            "add_name_rule",
            "dots_signal",
            "get_device_data",
            "get_flow_block",
            "get_history",
            "get_wifi",
            "list_alerts",
            "list_blocklists",
            "list_device_flows",
            "list_device_schedules",
            "list_devices",
            "list_iplist",
            "list_name_rules",
            "list_paused_devices",
            "list_rpc_methods",
            "list_services",
            "node_add_ip",
            "pause_device",
            "refresh_blocklists",
            "remove_blocklist",
            "remove_device_schedule",
            "remove_iplist_ip",
            "remove_iplist_node",
            "remove_name_rule",
            "reset_iplist_ignore",
            "set_device_flow_block",
            "set_device_name",
            "set_device_schedule",
            "set_device_type",
            "set_flow_block",
            "set_service",
            "set_wifi",
            "top_services",
            "unpause_device"
        ]
    );
    // By name: the indices move whenever a method is added.
    let method = |name: &str| r["result"].as_array().unwrap().iter().find(|m| m["rpc-name"] == name).unwrap().clone();
    let set_flow = &method("set_flow_block");
    assert_eq!(
        set_flow.to_string(),
        r#"{"rpc-name":"set_flow_block","rpc-args":[{"rpc-arg-name":"node1","rpc-arg-type":"integer"},{"rpc-arg-name":"node2","rpc-arg-type":"integer"},{"rpc-arg-name":"block","rpc-arg-type":"integer"}],"rpc-result-type":"complex"}"#
    );
    assert_eq!(method("node_add_ip")["rpc-result-type"], "integer", "node_add_ip returns the id");
    assert_eq!(
        method("set_device_type").to_string(),
        r#"{"rpc-name":"set_device_type","rpc-args":[{"rpc-arg-name":"device","rpc-arg-type":"string"},{"rpc-arg-name":"type","rpc-arg-type":"string"}],"rpc-result-type":"complex"}"#
    );
    assert_eq!(
        method("add_name_rule").to_string(),
        r#"{"rpc-name":"add_name_rule","rpc-args":[{"rpc-arg-name":"name","rpc-arg-type":"string"},{"rpc-arg-name":"action","rpc-arg-type":"string"},{"rpc-arg-name":"devices","rpc-arg-type":"complex"},{"rpc-arg-name":"schedule","rpc-arg-type":"string"},{"rpc-arg-name":"until","rpc-arg-type":"integer"}],"rpc-result-type":"complex"}"#
    );
    assert_eq!(
        method("add_blocklist").to_string(),
        r#"{"rpc-name":"add_blocklist","rpc-args":[{"rpc-arg-name":"url","rpc-arg-type":"string"},{"rpc-arg-name":"file","rpc-arg-type":"string"},{"rpc-arg-name":"devices","rpc-arg-type":"complex"},{"rpc-arg-name":"name","rpc-arg-type":"string"}],"rpc-result-type":"complex"}"#
    );
}

#[test]
fn dots_disabled_and_list_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":3,"method":"dots_signal","params":{"dots_signal":{}}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":"DOTS support is not enabled in spind.conf"}}"#
    );
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":4,"method":"list_iplist","params":{"list":"blocks"}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":4,"error":{"code":-1,"message":"Unknown ip list name, should be 'ignore', 'block', or 'allow'"}}"#
    );
    assert_eq!(
        rpc(
            &mut core,
            r#"{"jsonrpc":"2.0","id":5,"method":"add_iplist_ip","params":{"list":"block","ip":"nonsense"}}"#
        )
        .unwrap(),
        r#"{"jsonrpc":"2.0","id":5,"error":{"code":-1,"message":"Invalid IP address"}}"#
    );
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":6,"method":"list_device_flows","params":{"device":"aa:bb"}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":6,"error":{"code":-1,"message":"Device not found"}}"#
    );
    // `true` is not an integer, even where a number would do.
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":7,"method":"get_device_data","params":{"node":true}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-1,"message":"Wrong type of argument"}}"#
    );
}

/// Reference §8.3 "IP lists / persistence".
#[test]
fn ip_list_cases_of_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let mut out = Vec::new();
    let r = handle(
        &mut core,
        r#"{"jsonrpc":"2.0","id":1,"method":"add_iplist_ip","params":{"list":"block","ip":"2001:DB8::1:2"}}"#,
        &HOST,
        &mut out,
    );
    assert_eq!(r.unwrap(), r#"{"jsonrpc":"2.0","id":1}"#);
    assert_eq!(on_topic(&out, "SPIN/traffic"), [r#"{"command":"block","result":["2001:db8::1:2"]}"#]);
    assert_eq!(std::fs::read_to_string(dir.path().join("block.list")).unwrap(), "2001:db8::1:2\n");
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":2,"method":"list_iplist","params":{"list":"block"}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":2,"result":["2001:db8::1:2"]}"#
    );
    for ip in ["2001:db8::1", "192.0.2.3", "::1", "192.0.2.1"] {
        rpc(
            &mut core,
            &format!(r#"{{"jsonrpc":"2.0","id":3,"method":"add_iplist_ip","params":{{"list":"ignore","ip":"{ip}"}}}}"#),
        );
    }
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","method":"list_iplist","params":{"list":"i"}}"#).unwrap(),
        r#"["192.0.2.1","192.0.2.3","::1","2001:db8::1"]"#
    );
    // A prefix is kept as a prefix (SPIN printed 192.0.2.0 and then matched nothing).
    let mut out = Vec::new();
    handle(
        &mut core,
        r#"{"jsonrpc":"2.0","id":4,"method":"add_iplist_ip","params":{"list":"allow","ip":"192.0.2.0/24"}}"#,
        &HOST,
        &mut out,
    );
    assert_eq!(on_topic(&out, "SPIN/traffic"), [r#"{"command":"allow","result":["192.0.2.0/24"]}"#]);
    handle(
        &mut core,
        r#"{"jsonrpc":"2.0","id":5,"method":"remove_iplist_ip","params":{"list":"allow","ip":"192.0.2.0/24"}}"#,
        &HOST,
        &mut out,
    );
    assert_eq!(rpc(&mut core, r#"{"jsonrpc":"2.0","method":"list_iplist","params":{"list":"allow"}}"#).unwrap(), "[]");
}

#[test]
fn reset_iplist_ignore_puts_the_hosts_own_addresses_on_an_empty_ignore_list() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    rpc(&mut core, r#"{"jsonrpc":"2.0","id":1,"method":"add_iplist_ip","params":{"list":"ignore","ip":"192.0.2.7"}}"#);
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":2,"method":"reset_iplist_ignore"}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":2}"#
    );
    assert_eq!(
        rpc(&mut core, r#"{"jsonrpc":"2.0","id":3,"method":"list_iplist","params":{"list":"ignore"}}"#).unwrap(),
        r#"{"jsonrpc":"2.0","id":3,"result":["127.0.0.1","::1"]}"#
    );
}

fn call(core: &mut Core, method: &str, params: &str) -> (Value, Vec<Publish>) {
    let mut out = Vec::new();
    let req = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}"#);
    let r = handle(core, &req, &HOST, &mut out).unwrap();
    (serde_json::from_str(&r).unwrap(), out)
}

#[test]
fn name_rules_are_added_listed_published_saved_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let (r, out) = call(&mut core, "add_name_rule", r#"{"name":"Video.Example.","action":"block"}"#);
    assert_eq!(r["result"], serde_json::json!({"id": 1}));
    let published = on_topic(&out, "SPIN/traffic");
    assert_eq!(published, [r#"{"command":"nameRules","result":[{"id":1,"name":"video.example","action":"block"}]}"#]);
    let (r, _) = call(
        &mut core,
        "add_name_rule",
        r#"{"name":"ok.video.example","action":"allow","devices":["02:00:5E:00:00:01"],"schedule":"Mo-Fr 21:00-07:00","until":1795300000}"#,
    );
    assert_eq!(r["result"]["id"], 2);
    let (r, _) = call(&mut core, "list_name_rules", "{}");
    assert_eq!(
        r["result"].to_string(),
        r#"[{"id":1,"name":"video.example","action":"block"},{"id":2,"name":"ok.video.example","action":"allow","devices":["02:00:5e:00:00:01"],"schedule":"Mo-Fr 21:00-07:00","until":1795300000}]"#
    );
    // Saved: a new core on the same directory has them.
    let mut again = core_in(dir.path(), CoreSettings::default());
    let (r2, _) = call(&mut again, "list_name_rules", "{}");
    assert_eq!(r2["result"], r["result"]);
    let (r, out) = call(&mut core, "remove_name_rule", r#"{"id":1}"#);
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    assert_eq!(on_topic(&out, "SPIN/traffic").len(), 1);
    let (r, _) = call(&mut core, "remove_name_rule", r#"{"id":1}"#);
    assert_eq!(r["error"]["message"], "Unknown name rule id");
    let (r, _) = call(&mut core, "add_name_rule", r#"{"name":"x.example","action":"block"}"#);
    assert_eq!(r["result"]["id"], 3, "ids are never reused");
}

#[test]
fn bad_name_rules_name_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    for (params, field) in [
        (r#"{"name":"a..b","action":"block"}"#, "'name'"),
        (r#"{"name":"a.b","action":"deny"}"#, "'action'"),
        (r#"{"name":"a.b","action":"block","devices":["nope"]}"#, "'devices'"),
        (r#"{"name":"a.b","action":"block","devices":"02:00:00:00:00:01"}"#, "'devices'"),
        (r#"{"name":"a.b","action":"block","devices":[1]}"#, "'devices'"),
        (r#"{"name":"a.b","action":"block","schedule":"Mo 25:00-26:00"}"#, "'schedule'"),
        (r#"{"name":"a.b","action":"block","until":-5}"#, "'until'"),
        (r#"{"name":"a.b"}"#, "Missing argument 'action'"),
        (r#"{"name":"a.b","action":"block","colour":"red"}"#, "No such argument"),
    ] {
        let (r, out) = call(&mut core, "add_name_rule", params);
        let msg = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{params}: {r}"));
        assert!(msg.contains(field), "{params}: {msg}");
        assert!(out.is_empty());
    }
    let (r, _) = call(&mut core, "list_name_rules", "{}");
    assert_eq!(r["result"], serde_json::json!([]));
    assert!(!dir.path().join("namerules.json").exists());
}

#[test]
fn a_pause_is_listed_saved_ended_by_its_time_or_by_unpause() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let (r, _) = call(&mut core, "pause_device", r#"{"device":"02:00:00:00:00:64","until":1600}"#);
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    call(&mut core, "pause_device", r#"{"device":"02:00:00:00:00:65","until":5000}"#);
    let (r, _) = call(&mut core, "list_paused_devices", "{}");
    let want = serde_json::json!([{"device": "02:00:00:00:00:64", "until": 1600}, {"device": "02:00:00:00:00:65", "until": 5000}]);
    assert_eq!(r["result"], want);
    // Saved: a restart keeps both.
    let mut again = core_in(dir.path(), CoreSettings::default());
    assert_eq!(call(&mut again, "list_paused_devices", "{}").0["result"], want);
    // `until` passes: the pause ends by itself, on disk too.
    let mut out = Vec::new();
    core.handle(crate::model::event::Event::Tick { time: 1600 }, &mut out);
    let (r, _) = call(&mut core, "list_paused_devices", "{}");
    assert_eq!(r["result"], serde_json::json!([{"device": "02:00:00:00:00:65", "until": 5000}]));
    assert_eq!(std::fs::read_to_string(dir.path().join("paused.list")).unwrap(), "02:00:00:00:00:65 5000\n");
    let (r, _) = call(&mut core, "unpause_device", r#"{"device":"02:00:00:00:00:65"}"#);
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(call(&mut core, "list_paused_devices", "{}").0["result"], serde_json::json!([]));
    let (r, _) = call(&mut core, "unpause_device", r#"{"device":"02:00:00:00:00:65"}"#);
    assert_eq!(r["error"]["message"], "That device is not paused");
}

#[test]
fn bad_pauses_name_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    for (method, params, field) in [
        ("pause_device", r#"{"device":"nope","until":2000}"#, "Invalid 'device'"),
        ("pause_device", r#"{"device":"ff:ff:ff:ff:ff:ff","until":2000}"#, "Invalid 'device'"),
        ("pause_device", r#"{"device":"02:00:00:00:00:64","until":999}"#, "Invalid 'until'"),
        ("pause_device", r#"{"device":"02:00:00:00:00:64","until":99999999999}"#, "Invalid 'until'"),
        ("pause_device", r#"{"device":"02:00:00:00:00:64","until":"soon"}"#, "Invalid 'until'"),
        ("pause_device", r#"{"device":"02:00:00:00:00:64"}"#, "Missing argument 'until'"),
        ("unpause_device", r#"{"device":7}"#, "Invalid 'device'"),
        ("unpause_device", r#"{"mac":"02:00:00:00:00:64"}"#, "Missing argument 'device'"),
    ] {
        let (r, out) = call(&mut core, method, params);
        let msg = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{params}: {r}"));
        assert!(msg.contains(field), "{params}: {msg}");
        assert!(out.is_empty());
    }
    assert_eq!(call(&mut core, "list_paused_devices", "{}").0["result"], serde_json::json!([]));
    assert!(!dir.path().join("paused.list").exists());
}

fn history_core(dir: &std::path::Path) -> Core {
    use crate::model::history::HistorySettings;
    core_in(dir, CoreSettings { history: HistorySettings::default(), ..CoreSettings::default() })
}

#[test]
fn history_of_a_device_is_answered_with_the_unwritten_interval_and_alerts_are_listed_and_acked() {
    use crate::model::event::FlowSample;
    let dir = tempfile::tempdir().unwrap();
    let mut core = history_core(dir.path());
    let mut out = Vec::new();
    let dev = "02:00:00:00:00:07";
    core.handle(
        Event::Neighbour { time: 1000, ip: "192.168.8.7".parse().unwrap(), mac: dev.parse().unwrap() },
        &mut out,
    );
    let alerts = on_topic(&out, "SPIN/alerts");
    assert_eq!(alerts.len(), 1, "{out:?}");
    assert!(alerts[0].contains(r#""kind":"new_device""#) && alerts[0].contains(dev), "{}", alerts[0]);
    let sample = FlowSample {
        protocol: 6,
        src: "192.168.8.7".parse().unwrap(),
        dst: "198.51.100.10".parse().unwrap(),
        src_port: 40000,
        dst_port: 80,
        icmp_type: 0,
        bytes: 10_000,
        packets: 12,
        reply_bytes: 9_000,
    };
    core.handle(Event::Flows { time: 1001, flows: vec![sample], local: false }, &mut out);
    let (r, _) =
        call(&mut core, "get_history", &format!(r#"{{"device":"{dev}","from":0,"to":7200,"resolution":"hour"}}"#));
    assert_eq!(
        r["result"],
        json!([{"time": 0, "bytes_in": 9000, "bytes_out": 1000, "packets": 12, "connections": 1, "blocked": 0}])
    );
    let (r, _) = call(&mut core, "top_services", &format!(r#"{{"device":"{dev}","from":0,"to":7200}}"#));
    assert_eq!(r["result"][0]["name"], "198.51.100.10");
    assert_eq!(r["result"][0]["bytes_in"], 9000);
    let (r, _) = call(&mut core, "list_alerts", r#"{"since":0}"#);
    let id = r["result"][0]["id"].as_u64().unwrap();
    assert_eq!(r["result"][0]["kind"], "new_device");
    let (r, _) = call(&mut core, "ack_alert", &format!(r#"{{"id":{id}}}"#));
    assert!(r.get("error").is_none(), "{r}");
    let (r, _) = call(&mut core, "list_alerts", r#"{"since":0}"#);
    assert_eq!(r["result"][0]["acked"], true);
}

#[test]
fn bad_history_arguments_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = history_core(dir.path());
    let cases = [
        ("get_history", r#"{"device":"nope","from":0,"to":10,"resolution":"hour"}"#, "Invalid 'device'"),
        ("get_history", r#"{"device":"02:00:00:00:00:07","from":10,"to":5,"resolution":"hour"}"#, "Invalid 'to'"),
        (
            "get_history",
            r#"{"device":"02:00:00:00:00:07","from":0,"to":5,"resolution":"week"}"#,
            "Invalid 'resolution'",
        ),
        (
            "get_history",
            r#"{"device":"02:00:00:00:00:07","from":0,"to":5,"resolution":"day","node":999}"#,
            "Invalid 'node'",
        ),
        ("get_history", r#"{"device":"02:00:00:00:00:07","from":"x","to":5,"resolution":"day"}"#, "Invalid 'from'"),
        ("get_history", r#"{"device":"02:00:00:00:00:07","to":5,"resolution":"day"}"#, "Missing argument 'from'"),
        ("top_services", r#"{"device":"02:00:00:00:00:07","from":-1,"to":5}"#, "Invalid 'from'"),
        ("ack_alert", r#"{"id":42}"#, "Invalid 'id'"),
        ("list_alerts", r#"{"since":"yesterday"}"#, "Invalid 'since'"),
    ];
    for (method, params, want) in cases {
        let (r, _) = call(&mut core, method, params);
        let msg = r["error"]["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.starts_with(want), "{method} {params}: {r}");
    }
}

/// The access point as `get_wifi`/`set_wifi` see it: settings in memory, hostapd's status given.
struct FakeAccessPoint {
    settings: std::cell::RefCell<Option<crate::model::wifi::WifiSettings>>,
    status: Option<crate::model::wifi::ApStatus>,
}

impl crate::model::wifi::AccessPoint for FakeAccessPoint {
    fn settings(&self) -> Result<Option<crate::model::wifi::WifiSettings>, String> {
        Ok(self.settings.borrow().clone())
    }
    fn status(&self) -> Option<crate::model::wifi::ApStatus> {
        self.status.clone()
    }
    fn store(&self, s: &crate::model::wifi::WifiSettings) -> Result<(), String> {
        *self.settings.borrow_mut() = Some(s.clone());
        Ok(())
    }
}

fn home_network() -> crate::model::wifi::WifiSettings {
    crate::model::wifi::WifiSettings { ssid: "Home".into(), passphrase: "old passphrase".into(), country: "NL".into() }
}

fn wifi_rpc(core: &mut Core, ap: &FakeAccessPoint, req: &str) -> Value {
    let host = Host { own_addresses: Vec::new, wifi: Some(ap) };
    let mut out = Vec::new();
    serde_json::from_str(&handle(core, req, &host, &mut out).unwrap()).unwrap()
}

#[test]
fn get_wifi_shows_the_network_and_its_clients_as_device_nodes() {
    use crate::model::wifi::{ApStatus, Station};
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let req = r#"{"jsonrpc":"2.0","id":1,"method":"get_wifi"}"#;
    assert_eq!(rpc(&mut core, req).unwrap(), r#"{"jsonrpc":"2.0","id":1,"result":{"available":false}}"#);
    let no_file = FakeAccessPoint { settings: None.into(), status: None };
    assert_eq!(wifi_rpc(&mut core, &no_file, req)["result"], json!({"available": false}));

    let known: MacAddr = "02:00:00:00:01:00".parse().unwrap();
    let mut out = Vec::new();
    core.handle(Event::Neighbour { time: 1000, ip: "192.168.8.7".parse().unwrap(), mac: known }, &mut out);
    let node = core.op_device_of_mac(&known).expect("the neighbour is a device").id;
    let ap = FakeAccessPoint {
        settings: Some(home_network()).into(),
        status: Some(ApStatus {
            state: "ENABLED".into(),
            ssid: "Home".into(),
            channel: Some(6),
            stations: vec![
                Station { mac: known, connected_time: Some(5), signal: Some(-30) },
                Station { mac: "02:00:00:00:02:00".parse().unwrap(), connected_time: None, signal: None },
            ],
        }),
    };
    let r = wifi_rpc(&mut core, &ap, req)["result"].clone();
    assert_eq!(
        r,
        json!({"available": true, "ssid": "Home", "country": "NL", "running": true, "state": "ENABLED",
               "broadcast_ssid": "Home", "channel": 6, "clients": [
                   {"mac": "02:00:00:00:01:00", "node": node, "name": null, "connected_time": 5, "signal": -30},
                   {"mac": "02:00:00:00:02:00", "node": null, "name": null, "connected_time": null, "signal": null}]})
    );
    assert!(!r.to_string().contains("old passphrase"), "the passphrase is never sent");
    let stopped = FakeAccessPoint { settings: Some(home_network()).into(), status: None };
    let r = wifi_rpc(&mut core, &stopped, req)["result"].clone();
    assert_eq!((r["running"].clone(), r["clients"].clone()), (json!(false), json!([])));
}

#[test]
fn set_wifi_checks_then_stores_and_says_that_clients_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let ap = FakeAccessPoint { settings: Some(home_network()).into(), status: None };
    let call = |core: &mut Core, params: &str| {
        wifi_rpc(core, &ap, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"set_wifi","params":{params}}}"#))
    };
    for (params, message) in [
        (
            r#"{"ssid":"Home","passphrase":"1234567"}"#,
            "Invalid 'passphrase': the passphrase must have 8 to 63 printable ASCII characters (it has 7)",
        ),
        (r#"{"ssid":""}"#, "Invalid 'ssid': the network name must have 1 to 32 printable ASCII characters (it has 0)"),
        (
            r#"{"ssid":"Home","country":"Holland"}"#,
            "Invalid 'country': 'Holland' is not a two-letter country code such as NL",
        ),
        (r#"{"ssid":"Home","passphrase":8}"#, "Invalid 'passphrase': expected string"),
        (r#"{"passphrase":"12345678"}"#, "Missing argument 'ssid'"),
    ] {
        assert_eq!(call(&mut core, params)["error"]["message"], message, "{params}");
        assert_eq!(*ap.settings.borrow(), Some(home_network()), "nothing stored after {params}");
    }
    let r = call(&mut core, r#"{"ssid":"Home"}"#);
    assert_eq!(r["result"]["applied"], false, "{r}");
    let r = call(&mut core, r#"{"ssid":"Garden","passphrase":"new passphrase","country":"de"}"#);
    assert_eq!(r["result"]["applied"], true, "{r}");
    assert!(r["result"]["message"].as_str().unwrap().contains("must reconnect with the new passphrase"), "{r}");
    let stored = ap.settings.borrow().clone().unwrap();
    assert_eq!(
        (stored.ssid.as_str(), stored.passphrase.as_str(), stored.country.as_str()),
        ("Garden", "new passphrase", "DE")
    );
    // Only the name: the passphrase and country stay.
    call(&mut core, r#"{"ssid":"Attic"}"#);
    assert_eq!(ap.settings.borrow().as_ref().unwrap().passphrase, "new passphrase");

    let none = Host { own_addresses: Vec::new, wifi: None };
    let mut out = Vec::new();
    let r = handle(&mut core, r#"{"jsonrpc":"2.0","id":1,"method":"set_wifi","params":{"ssid":"x"}}"#, &none, &mut out);
    assert!(r.unwrap().contains("This router has no WiFi access point"));
}

/// `list_devices`/`get_device_data` carry what a device says it is; `set_device_type` corrects
/// the guess, is kept across a restart and refuses bad input naming the field.
#[test]
fn devices_show_vendor_random_mac_and_type_which_the_user_sets() {
    // A one-entry vendor file: 00:1f:32 is Nintendo.
    let mut file = b"SPINOUI1".to_vec();
    file.extend(1u32.to_le_bytes());
    file.extend(1u32.to_le_bytes());
    file.extend([0x00, 0x1f, 0x32, 0, 0, 8]);
    file.extend(b"Nintendo");
    let vendors = std::sync::Arc::new(crate::model::identity::OuiTable::parse(file).unwrap());
    let settings = || CoreSettings { vendors: vendors.clone(), ..CoreSettings::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), settings());
    let (console, random): (MacAddr, MacAddr) =
        ("00:1f:32:01:02:03".parse().unwrap(), "da:a1:19:00:00:01".parse().unwrap());
    let mut out = Vec::new();
    core.handle(Event::Neighbour { time: 1000, ip: "192.168.8.7".parse().unwrap(), mac: console }, &mut out);
    core.handle(Event::Neighbour { time: 1000, ip: "192.168.8.8".parse().unwrap(), mac: random }, &mut out);
    let call = |core: &mut Core, req: &str| -> Value { serde_json::from_str(&rpc(core, req).unwrap()).unwrap() };
    let device = |core: &mut Core, mac: &MacAddr| -> Value {
        let list = call(core, r#"{"jsonrpc":"2.0","id":1,"method":"list_devices"}"#);
        list["result"].as_array().unwrap().iter().find(|d| d["mac"] == mac.to_string()).unwrap().clone()
    };
    let d = device(&mut core, &console);
    assert_eq!(
        (&d["vendor"], &d["random_mac"], &d["type"], &d["type_source"]),
        (&json!("Nintendo"), &json!(false), &json!("console"), &json!("guess"))
    );
    // SPIN's fields come first, as they were.
    let keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "mac", "lastseen", "ips", "domains", "vendor", "random_mac", "type", "type_source"]);
    let r = device(&mut core, &random);
    assert_eq!((&r["vendor"], &r["random_mac"], &r["type"]), (&Value::Null, &json!(true), &Value::Null));
    let id = d["id"].as_i64().unwrap();
    let data =
        call(&mut core, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"get_device_data","params":{{"node":{id}}}}}"#));
    assert_eq!(data["result"]["vendor"], "Nintendo");

    for (params, field) in [
        (r#"{"device":"00:1f:32:01:02:03","type":"toaster"}"#, "'type'"),
        (r#"{"device":"00:1f:32:01:02:03","type":3}"#, "'type'"),
        (r#"{"device":"nope","type":"tv"}"#, "'device'"),
        (r#"{"device":"01:00:5e:00:00:01","type":"tv"}"#, "'device'"),
        (r#"{"type":"tv"}"#, "'device'"),
    ] {
        let e = call(&mut core, &format!(r#"{{"jsonrpc":"2.0","id":1,"method":"set_device_type","params":{params}}}"#));
        assert!(e["error"]["message"].as_str().unwrap().contains(field), "{params}: {e}");
    }
    assert_eq!(device(&mut core, &console)["type_source"], "guess", "a refused call changed nothing");
    let set =
        r#"{"jsonrpc":"2.0","id":1,"method":"set_device_type","params":{"device":"00:1f:32:01:02:03","type":"tv"}}"#;
    assert_eq!(rpc(&mut core, set).unwrap(), r#"{"jsonrpc":"2.0","id":1}"#);
    let d = device(&mut core, &console);
    assert_eq!((&d["type"], &d["type_source"]), (&json!("tv"), &json!("user")));
    drop(core);

    let mut core = core_in(dir.path(), settings());
    core.handle(Event::Neighbour { time: 1000, ip: "192.168.8.7".parse().unwrap(), mac: console }, &mut out);
    let d = device(&mut core, &console);
    assert_eq!((&d["type"], &d["type_source"]), (&json!("tv"), &json!("user")), "kept across a restart");
    let back =
        r#"{"jsonrpc":"2.0","id":1,"method":"set_device_type","params":{"device":"00:1f:32:01:02:03","type":null}}"#;
    assert_eq!(rpc(&mut core, back).unwrap(), r#"{"jsonrpc":"2.0","id":1}"#);
    let d = device(&mut core, &console);
    assert_eq!((&d["type"], &d["type_source"]), (&json!("console"), &json!("guess")));
}

#[test]
fn services_are_listed_switched_per_device_and_for_the_network_saved_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    let find = |r: &Value, id: &str| r["result"].as_array().unwrap().iter().find(|s| s["id"] == id).cloned().unwrap();
    let (r, _) = call(&mut core, "list_services", "{}");
    assert!(r["result"].as_array().unwrap().len() >= 12, "{r}");
    assert_eq!(
        find(&r, "youtube"),
        serde_json::json!({"id": "youtube", "name": "YouTube", "blocked": false, "blocked_everywhere": false})
    );
    let (r, out) =
        call(&mut core, "set_service", r#"{"service":"youtube","device":"02:00:00:00:00:64","blocked":true}"#);
    assert!(r.get("error").is_none() && r.get("result").is_none(), "{r}");
    assert!(on_topic(&out, "SPIN/traffic").iter().any(|m| m.starts_with(r#"{"command":"services""#)), "{out:?}");
    call(&mut core, "set_service", r#"{"service":"roblox","blocked":true}"#);
    let (r, _) = call(&mut core, "list_services", r#"{"device":"02:00:00:00:00:64"}"#);
    assert_eq!(find(&r, "youtube")["blocked"], true);
    assert_eq!(
        find(&r, "roblox"),
        serde_json::json!({"id": "roblox", "name": "Roblox", "blocked": true, "blocked_everywhere": true})
    );
    let (r, _) = call(&mut core, "list_services", r#"{"device":"02:00:00:00:00:65"}"#);
    assert_eq!(find(&r, "youtube")["blocked"], false, "another device");
    let (r, _) = call(&mut core, "list_services", "{}");
    assert_eq!(find(&r, "youtube")["blocked"], false, "not for the whole network");
    // Saved: a restart keeps both.
    let mut again = core_in(dir.path(), CoreSettings::default());
    let (r, _) = call(&mut again, "list_services", r#"{"device":"02:00:00:00:00:64"}"#);
    assert_eq!(
        (find(&r, "youtube")["blocked"].clone(), find(&r, "roblox")["blocked"].clone()),
        (Value::Bool(true), Value::Bool(true))
    );
    let (r, _) =
        call(&mut core, "set_service", r#"{"service":"youtube","device":"02:00:00:00:00:64","blocked":false}"#);
    assert!(r.get("error").is_none(), "{r}");
    assert_eq!(std::fs::read_to_string(dir.path().join("services.list")).unwrap(), "roblox\n");
}

#[test]
fn bad_service_switches_name_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut core = core_in(dir.path(), CoreSettings::default());
    for (method, params, field) in [
        ("set_service", r#"{"service":"nosuch","blocked":true}"#, "Invalid 'service'"),
        ("set_service", r#"{"service":"youtube","device":"nope","blocked":true}"#, "Invalid 'device'"),
        ("set_service", r#"{"service":"youtube","device":"ff:ff:ff:ff:ff:ff","blocked":true}"#, "Invalid 'device'"),
        ("set_service", r#"{"service":"youtube","blocked":"yes"}"#, "Invalid 'blocked'"),
        ("set_service", r#"{"service":"youtube","blocked":null}"#, "Invalid 'blocked'"),
        ("set_service", r#"{"service":"youtube"}"#, "Missing argument 'blocked'"),
        ("set_service", r#"{"service":"youtube","blocked":true,"colour":1}"#, "No such argument"),
        ("list_services", r#"{"device":"02:00:00:00:00"}"#, "Invalid 'device'"),
    ] {
        let (r, out) = call(&mut core, method, params);
        let msg = r["error"]["message"].as_str().unwrap_or_else(|| panic!("{params}: {r}"));
        assert!(msg.contains(field), "{params}: {msg}");
        assert!(out.is_empty());
    }
    let (r, _) = call(&mut core, "list_services", "{}");
    assert!(r["result"].as_array().unwrap().iter().all(|s| s["blocked"] == false), "{r}");
    assert!(!dir.path().join("services.list").exists());
}
