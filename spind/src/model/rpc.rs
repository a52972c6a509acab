//! SPIN's JSON-RPC (reference §2.2-2.3): request validation with the original error codes and
//! messages, the method table, and dispatch to the core's operations. Every transport (unix
//! socket, HTTP, MQTT) hands the raw request text to the core loop, which calls [`handle`].

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use crate::model::core::{Core, OpError, OpResult};
use crate::model::event::{MacAddr, Publish};
use crate::model::lists::list_by_prefix;
use crate::model::listsources::{parse_def, ListDef};
use crate::model::messages::{
    device_flows_result, flow_blocks_result, ip_list_result, node_result, nodes_result, result_value, RpcArgJson,
    RpcMethodJson,
};
use crate::model::namerules::{parse_rule, NameRule};
use crate::model::nodes::ListKind;
use crate::model::wifi::{check_country, check_passphrase, check_ssid, AccessPoint, WifiSettings};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ArgType {
    Integer,
    String,
    /// Anything but a number or a string (object, array, bool, null).
    Complex,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ResultType {
    Integer,
    Complex,
    /// Success is a reply without `result`.
    None,
}

struct Method {
    name: &'static str,
    args: &'static [(&'static str, ArgType)],
    result: ResultType,
}

use ArgType::{Complex as C, Integer as I, String as S};

/// Sorted by name (the order `list_rpc_methods` reports).
const METHODS: &[Method] = &[
    Method { name: "ack_alert", args: &[("id", I)], result: ResultType::None },
    Method { name: "add_blocklist", args: &[], result: ResultType::Complex },
    Method { name: "add_iplist_ip", args: &[("list", S), ("ip", S)], result: ResultType::None },
    Method { name: "add_iplist_node", args: &[("list", S), ("node", I)], result: ResultType::None },
    Method { name: "add_name_rule", args: &[("name", S), ("action", S)], result: ResultType::Complex },
    Method { name: "dots_signal", args: &[("dots_signal", C)], result: ResultType::None },
    Method { name: "get_device_data", args: &[("node", I)], result: ResultType::Complex },
    Method { name: "get_flow_block", args: &[], result: ResultType::Complex },
    Method {
        name: "get_history",
        args: &[("device", S), ("from", I), ("to", I), ("resolution", S)],
        result: ResultType::Complex,
    },
    Method { name: "get_wifi", args: &[], result: ResultType::Complex },
    Method { name: "list_alerts", args: &[("since", I)], result: ResultType::Complex },
    Method { name: "list_blocklists", args: &[], result: ResultType::Complex },
    Method { name: "list_device_flows", args: &[("device", S)], result: ResultType::Complex },
    Method { name: "list_device_schedules", args: &[], result: ResultType::Complex },
    Method { name: "list_devices", args: &[], result: ResultType::Complex },
    Method { name: "list_iplist", args: &[("list", S)], result: ResultType::Complex },
    Method { name: "list_name_rules", args: &[], result: ResultType::Complex },
    Method { name: "list_paused_devices", args: &[], result: ResultType::Complex },
    Method { name: "list_rpc_methods", args: &[], result: ResultType::Complex },
    Method { name: "list_services", args: &[], result: ResultType::Complex },
    Method { name: "node_add_ip", args: &[("node", I), ("ipaddr", S)], result: ResultType::Integer },
    Method { name: "pause_device", args: &[("device", S), ("until", I)], result: ResultType::None },
    Method { name: "refresh_blocklists", args: &[], result: ResultType::None },
    Method { name: "remove_blocklist", args: &[("id", I)], result: ResultType::None },
    Method { name: "remove_device_schedule", args: &[("device", S)], result: ResultType::None },
    Method { name: "remove_iplist_ip", args: &[("list", S), ("ip", S)], result: ResultType::None },
    Method { name: "remove_iplist_node", args: &[("list", S), ("node", I)], result: ResultType::None },
    Method { name: "remove_name_rule", args: &[("id", I)], result: ResultType::None },
    Method { name: "reset_iplist_ignore", args: &[], result: ResultType::None },
    Method {
        name: "set_device_flow_block",
        args: &[("device", S), ("node", I), ("block", I)],
        result: ResultType::None,
    },
    Method { name: "set_device_name", args: &[("node", I), ("name", S)], result: ResultType::None },
    Method { name: "set_device_schedule", args: &[("device", S), ("schedule", S)], result: ResultType::None },
    Method { name: "set_device_type", args: &[("device", S)], result: ResultType::None },
    Method { name: "set_flow_block", args: &[("node1", I), ("node2", I), ("block", I)], result: ResultType::None },
    Method { name: "set_service", args: &[("service", S), ("blocked", C)], result: ResultType::None },
    Method { name: "set_wifi", args: &[("ssid", S)], result: ResultType::Complex },
    Method { name: "top_services", args: &[("device", S), ("from", I), ("to", I)], result: ResultType::Complex },
    Method { name: "unpause_device", args: &[("device", S)], result: ResultType::None },
];

/// The furthest ahead a pause may end (seconds from now).
const PAUSE_MAX: i64 = 366 * 86_400;

/// The methods of spin-rs, not SPIN's (their errors name the wrong argument), with the
/// arguments they may be given besides their own: listed after the required ones by
/// `list_rpc_methods`.
const OPTIONAL: &[(&str, &[(&str, ArgType)])] = &[
    ("add_name_rule", &[("devices", C), ("schedule", S), ("until", I)]),
    ("ack_alert", &[]),
    ("add_blocklist", &[("url", S), ("file", S), ("devices", C), ("name", S)]),
    ("refresh_blocklists", &[]),
    ("remove_blocklist", &[]),
    ("get_history", &[("node", I)]),
    ("get_wifi", &[]),
    ("list_alerts", &[]),
    ("list_blocklists", &[]),
    ("list_device_schedules", &[]),
    ("remove_device_schedule", &[]),
    ("set_device_schedule", &[]),
    ("list_paused_devices", &[]),
    ("list_services", &[("device", S)]),
    ("set_service", &[("device", S)]),
    ("pause_device", &[]),
    // `type` is a string, or null to go back to the guess.
    ("set_device_type", &[("type", S)]),
    ("set_wifi", &[("passphrase", S), ("country", S)]),
    ("top_services", &[]),
    ("unpause_device", &[]),
];

fn optional_args(method: &str) -> &'static [(&'static str, ArgType)] {
    OPTIONAL.iter().find(|(m, _)| *m == method).map(|(_, a)| *a).unwrap_or(&[])
}

/// A method of spin-rs's own (not SPIN's).
fn own_method(method: &str) -> bool {
    OPTIONAL.iter().any(|(m, _)| *m == method)
}

fn type_name(t: ArgType) -> &'static str {
    match t {
        ArgType::Integer => "integer",
        ArgType::String => "string",
        ArgType::Complex => "complex",
    }
}

fn matches_type(v: &Value, t: ArgType) -> bool {
    match t {
        ArgType::Integer => v.is_number(),
        ArgType::String => v.is_string(),
        ArgType::Complex => !v.is_number() && !v.is_string(),
    }
}

fn err(code: i64, message: &str) -> OpError {
    OpError::new(code, message)
}

/// Checks the named parameters against the declaration, with SPIN's messages. SPIN compares each
/// request parameter with every declared argument in turn and reports the outcome of the *last*
/// comparison (so a wrongly typed first argument says "No such argument registered", §2.2).
fn check_args(m: &Method, params: &Map<String, Value>) -> OpResult<()> {
    let optional = optional_args(m.name);
    let own = own_method(m.name);
    if let Some((missing, _)) = m.args.iter().find(|(a, _)| !params.contains_key(*a)) {
        if own {
            return Err(err(-1, &format!("Missing argument '{missing}'")));
        }
    }
    if params.len() < m.args.len() || params.len() > m.args.len() + optional.len() {
        return Err(err(-1, "Wrong number of arguments"));
    }
    for (name, value) in params {
        // spin-rs's own methods name the argument that is wrong.
        if own {
            match m.args.iter().chain(optional).find(|(a, _)| a == name) {
                None => return Err(err(-1, &format!("No such argument registered: '{name}'"))),
                // An optional argument given as null is as if absent.
                Some(_) if value.is_null() && optional.iter().any(|(a, _)| a == name) => continue,
                Some((_, t)) if !matches_type(value, *t) => {
                    return Err(err(-1, &format!("Invalid '{name}': expected {}", type_name(*t))))
                }
                Some(_) => continue,
            }
        }
        let mut outcome = Err(err(-1, "No such argument registered"));
        for (arg, t) in m.args.iter().chain(optional) {
            if arg == name && matches_type(value, *t) {
                outcome = Ok(());
                break;
            }
            outcome = Err(if arg == name {
                err(-1, "Wrong type of argument")
            } else {
                err(-1, "No such argument registered")
            });
        }
        outcome?;
    }
    Ok(())
}

/// An integer argument as C's `valueint`: fractions truncated, clamped to the int range.
fn int(params: &Map<String, Value>, name: &str) -> i64 {
    let v = params[name].as_f64().unwrap_or(0.0).trunc();
    v.clamp(i32::MIN as f64, i32::MAX as f64) as i64
}

/// An integer argument of spin-rs's own methods (times need more than 32 bits).
fn int64(params: &Map<String, Value>, name: &str) -> i64 {
    params[name].as_i64().unwrap_or_else(|| params[name].as_f64().unwrap_or(0.0) as i64)
}

fn string<'a>(params: &'a Map<String, Value>, name: &str) -> &'a str {
    params[name].as_str().unwrap_or("")
}

fn list_arg(params: &Map<String, Value>) -> OpResult<(&str, ListKind)> {
    let name = string(params, "list");
    let kind =
        list_by_prefix(name).ok_or_else(|| err(-1, "Unknown ip list name, should be 'ignore', 'block', or 'allow'"))?;
    Ok((name, kind))
}

/// The rule `add_name_rule` describes; a bad field is named in the error.
fn name_rule_arg(p: &Map<String, Value>) -> OpResult<NameRule> {
    let bad = |field: &str, why: &str| err(-1, &format!("Invalid '{field}': {why}"));
    let devices = devices_arg(p)?;
    let until = match p.get("until") {
        None => None,
        Some(v) => Some(v.as_i64().filter(|t| *t > 0).ok_or_else(|| bad("until", "expected a unix time in seconds"))?),
    };
    let schedule = p.get("schedule").and_then(Value::as_str);
    parse_rule(string(p, "name"), string(p, "action"), &devices, schedule, until)
        .map_err(|(field, why)| bad(field, &why))
}

/// The optional `devices` of `add_name_rule` and `add_blocklist`: at most 256 strings (checked
/// as MACs by the caller).
fn devices_arg(p: &Map<String, Value>) -> OpResult<Vec<&str>> {
    let bad = |why: &str| err(-1, &format!("Invalid 'devices': {why}"));
    match p.get("devices") {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() <= 256 => {
            a.iter().map(|v| v.as_str().ok_or_else(|| bad("every device is a MAC string"))).collect()
        }
        Some(_) => Err(bad("expected an array of at most 256 MAC addresses")),
    }
}

/// The list `add_blocklist` describes (`url` or `file`, `devices`, `name`); a bad field is
/// named in the error.
fn blocklist_arg(p: &Map<String, Value>) -> OpResult<ListDef> {
    let bad = |field: &str, why: &str| err(-1, &format!("Invalid '{field}': {why}"));
    let devices = devices_arg(p)?;
    let s = |k: &str| p.get(k).and_then(Value::as_str);
    parse_def(s("url"), s("file"), &devices, s("name")).map_err(|(field, why)| bad(field, &why))
}

/// The device of `pause_device`/`unpause_device`/`*_device_schedule`: a unicast MAC.
fn device_arg(p: &Map<String, Value>) -> OpResult<MacAddr> {
    let text = string(p, "device");
    let mac: MacAddr = text.parse().map_err(|e| err(-1, &format!("Invalid 'device': '{text}': {e}")))?;
    if !mac.is_unicast() {
        return Err(err(-1, &format!("Invalid 'device': '{text}' is not a device's (unicast) address")));
    }
    Ok(mac)
}

/// The optional `device` of `list_services`/`set_service` (absent: the whole network).
fn optional_device_arg(p: &Map<String, Value>) -> OpResult<Option<MacAddr>> {
    p.contains_key("device").then(|| device_arg(p)).transpose()
}

fn list_rpc_methods() -> Vec<RpcMethodJson> {
    METHODS
        .iter()
        .map(|m| RpcMethodJson {
            name: m.name,
            args: m
                .args
                .iter()
                .chain(optional_args(m.name))
                .map(|(n, t)| RpcArgJson { name: n, kind: type_name(*t) })
                .collect(),
            result_type: match m.result {
                ResultType::Integer => "integer",
                // SPIN reports "none" results as complex.
                ResultType::Complex | ResultType::None => "complex",
            },
        })
        .collect()
}

/// Runs a validated call. `Ok(None)` is success without a result.
fn call(
    core: &mut Core,
    m: &Method,
    p: &Map<String, Value>,
    host: &Host,
    out: &mut Vec<Publish>,
) -> OpResult<Option<Value>> {
    let none = |r: OpResult<()>| r.map(|()| None);
    match m.name {
        "list_rpc_methods" => Ok(Some(result_value(list_rpc_methods()))),
        "list_devices" => Ok(Some(nodes_result(&core.op_list_devices(), |n| core.op_identity(n)))),
        "get_device_data" => core.op_get_device_data(int(p, "node")).map(|n| Some(node_result(n, core.op_identity(n)))),
        "set_device_type" => {
            none(core.op_set_device_type(string(p, "device"), p.get("type").and_then(Value::as_str), out))
        }
        "list_device_flows" => {
            core.op_list_device_flows(string(p, "device")).map(|rows| Some(device_flows_result(&rows)))
        }
        "set_device_name" => none(core.op_set_device_name(int(p, "node"), string(p, "name"), out)),
        "add_iplist_node" | "remove_iplist_node" => {
            let (name, kind) = list_arg(p)?;
            none(core.op_iplist_node(name, kind, int(p, "node"), m.name.starts_with("add"), out))
        }
        "add_iplist_ip" | "remove_iplist_ip" => {
            let (name, kind) = list_arg(p)?;
            none(core.op_iplist_ip(name, kind, string(p, "ip"), m.name.starts_with("add"), out))
        }
        "list_iplist" => Ok(Some(ip_list_result(&core.op_list_iplist(list_arg(p)?.1)))),
        "reset_iplist_ignore" => none(core.op_reset_iplist_ignore(&(host.own_addresses)(), out)),
        "set_flow_block" => none(core.op_set_flow_block(int(p, "node1"), int(p, "node2"), int(p, "block") != 0, out)),
        "set_device_flow_block" => {
            none(core.op_set_device_flow_block(string(p, "device"), int(p, "node"), int(p, "block") != 0, out))
        }
        "get_flow_block" => Ok(Some(flow_blocks_result(&core.op_get_flow_block()))),
        "node_add_ip" => core.op_node_add_ip(int(p, "node"), string(p, "ipaddr"), out).map(|id| Some(json!(id))),
        "dots_signal" => none(core.op_dots_signal(&p["dots_signal"], out)),
        "add_name_rule" => {
            let rule = name_rule_arg(p)?;
            core.op_add_name_rule(rule, out).map(|id| Some(json!({ "id": id })))
        }
        "list_name_rules" => Ok(Some(core.op_list_name_rules())),
        "remove_name_rule" => none(core.op_remove_name_rule(int(p, "id"), out)),
        "pause_device" => {
            let device = device_arg(p)?;
            let now = core.now();
            let until =
                p["until"].as_i64().ok_or_else(|| err(-1, "Invalid 'until': expected a unix time in seconds"))?;
            if until <= now {
                return Err(err(-1, &format!("Invalid 'until': {until} has passed (now {now})")));
            }
            if until > now + PAUSE_MAX {
                return Err(err(-1, &format!("Invalid 'until': {until} is more than a year ahead")));
            }
            none(core.op_pause_device(device, until, out))
        }
        "unpause_device" => none(core.op_unpause_device(device_arg(p)?, out)),
        "list_paused_devices" => Ok(Some(core.op_list_paused())),
        "list_blocklists" => Ok(Some(core.op_list_blocklists())),
        "set_device_schedule" => {
            let device = device_arg(p)?;
            let schedule =
                string(p, "schedule").parse().map_err(|e: String| err(-1, &format!("Invalid 'schedule': {e}")))?;
            none(core.op_set_device_schedule(device, schedule, out))
        }
        "remove_device_schedule" => none(core.op_remove_device_schedule(device_arg(p)?, out)),
        "list_device_schedules" => Ok(Some(core.op_list_device_schedules())),
        "list_services" => Ok(Some(core.op_list_services(optional_device_arg(p)?))),
        "set_service" => {
            let device = optional_device_arg(p)?;
            let blocked = p["blocked"].as_bool().ok_or_else(|| err(-1, "Invalid 'blocked': expected true or false"))?;
            none(core.op_set_service(string(p, "service"), device, blocked, out))
        }
        "add_blocklist" => {
            let def = blocklist_arg(p)?;
            core.op_add_blocklist(def, out).map(|id| Some(json!({ "id": id })))
        }
        "remove_blocklist" => none(core.op_remove_blocklist(int64(p, "id"), out)),
        "refresh_blocklists" => {
            core.op_refresh_blocklists();
            Ok(None)
        }
        "get_history" => core
            .op_get_history(
                string(p, "device"),
                int64(p, "from"),
                int64(p, "to"),
                string(p, "resolution"),
                p.get("node").map(|_| int64(p, "node")),
            )
            .map(Some),
        "top_services" => core.op_top_services(string(p, "device"), int64(p, "from"), int64(p, "to")).map(Some),
        "list_alerts" => core.op_list_alerts(int64(p, "since")).map(Some),
        "ack_alert" => none(core.op_ack_alert(int64(p, "id"))),
        "get_wifi" => Ok(Some(get_wifi(core, host.wifi)?)),
        "set_wifi" => set_wifi(p, host.wifi).map(Some),
        other => unreachable!("method {other} is in the table but not dispatched"),
    }
}

fn error_reply(id: Option<&Value>, e: &OpError) -> String {
    let mut reply = Map::new();
    reply.insert("jsonrpc".into(), json!("2.0"));
    if let Some(id) = id {
        reply.insert("id".into(), id.clone());
    }
    reply.insert("error".into(), json!({"code": e.code, "message": e.message}));
    Value::Object(reply).to_string()
}

/// What the methods need to know about the host besides the core's state, asked for only when a
/// method needs it (the model does no I/O of its own).
pub struct Host<'a> {
    /// This host's own addresses (`reset_iplist_ignore` puts them on the ignore list, as SPIN's
    /// `spin_list_ips` did).
    pub own_addresses: fn() -> Vec<IpAddr>,
    /// The router's WiFi access point, on boards that have one (`wifi_settings_file`).
    pub wifi: Option<&'a dyn AccessPoint>,
}

/// `get_wifi`: the network (never its passphrase: replies travel over MQTT too), whether hostapd
/// runs and what it broadcasts, and its clients with their device nodes (`node` is null for a
/// client not seen on the LAN yet). `{"available": false}` on a router without WiFi.
fn get_wifi(core: &Core, wifi: Option<&dyn AccessPoint>) -> OpResult<Value> {
    let Some(ap) = wifi else { return Ok(json!({ "available": false })) };
    let Some(s) = ap.settings().map_err(|e| err(-1, &format!("Cannot read the WiFi settings: {e}")))? else {
        return Ok(json!({ "available": false }));
    };
    let status = ap.status();
    let st = status.as_ref();
    let clients: Vec<Value> = st
        .into_iter()
        .flat_map(|st| &st.stations)
        .map(|sta| {
            let node = core.op_device_of_mac(&sta.mac);
            json!({
                "mac": sta.mac.to_string(),
                "node": node.map(|n| n.id),
                "name": node.and_then(|n| n.name.clone()),
                "connected_time": sta.connected_time,
                "signal": sta.signal,
            })
        })
        .collect();
    Ok(json!({
        "available": true,
        "ssid": s.ssid,
        "country": s.country,
        "running": st.is_some_and(|st| st.state == "ENABLED"),
        "state": st.map(|st| &st.state),
        "broadcast_ssid": st.map(|st| &st.ssid),
        "channel": st.and_then(|st| st.channel),
        "clients": clients,
    }))
}

/// `set_wifi` `{"ssid", "passphrase"?, "country"?}` (absent: unchanged): checked, stored; the
/// image restarts the access point when the file changes, and every client must reconnect.
fn set_wifi(p: &Map<String, Value>, wifi: Option<&dyn AccessPoint>) -> OpResult<Value> {
    let bad = |field: &str, why: String| err(-1, &format!("Invalid '{field}': {why}"));
    let ap = wifi.ok_or_else(|| err(-1, "This router has no WiFi access point"))?;
    let old = ap
        .settings()
        .map_err(|e| err(-1, &format!("Cannot read the WiFi settings: {e}")))?
        .ok_or_else(|| err(-1, "This router has no WiFi access point"))?;
    let ssid = string(p, "ssid").to_string();
    check_ssid(&ssid).map_err(|e| bad("ssid", e))?;
    let passphrase = match p.get("passphrase").and_then(Value::as_str) {
        Some(pass) => {
            check_passphrase(pass).map_err(|e| bad("passphrase", e))?;
            pass.to_string()
        }
        None => old.passphrase.clone(),
    };
    let country = match p.get("country").and_then(Value::as_str) {
        Some(c) => check_country(c).map_err(|e| bad("country", e))?,
        None => old.country.clone(),
    };
    let new = WifiSettings { ssid, passphrase, country };
    if new == old {
        return Ok(json!({ "applied": false, "message": "The WiFi settings are unchanged." }));
    }
    ap.store(&new).map_err(|e| err(-1, &format!("The WiFi settings were not saved: {e}")))?;
    Ok(json!({
        "applied": true,
        "message": format!(
            "Saved. The access point restarts with the network '{}'; every WiFi device must reconnect{}.",
            new.ssid,
            if new.passphrase != old.passphrase { " with the new passphrase" } else { "" }
        ),
    }))
}

/// Answers one request. `None` means nothing is sent back (a successful notification whose
/// method has no result).
pub fn handle(core: &mut Core, request: &str, host: &Host, out: &mut Vec<Publish>) -> Option<String> {
    let parsed: Option<Map<String, Value>> = match serde_json::from_str::<Value>(request) {
        Ok(Value::Object(o)) => Some(o),
        _ => None,
    };
    let Some(req) = parsed else {
        return Some(error_reply(None, &err(1, "Wrong JSON-RPC version, expected 2.0")));
    };
    let id = req.get("id");
    if req.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Some(error_reply(id, &err(1, "Wrong JSON-RPC version, expected 2.0")));
    }
    let Some(method_name) = req.get("method").and_then(Value::as_str) else {
        return Some(error_reply(id, &err(2, "'method' object must be a string")));
    };
    let empty = Map::new();
    let params = match req.get("params") {
        None => &empty,
        Some(Value::Object(p)) => p,
        Some(_) => return Some(error_reply(id, &err(3, "'params' object must be a dict"))),
    };
    let result = match METHODS.iter().find(|m| m.name == method_name) {
        None => Err(err(-1, "No such function registered")),
        Some(m) => check_args(m, params).and_then(|()| call(core, m, params, host, out)),
    };
    match (result, id) {
        (Err(e), id) => Some(error_reply(id, &e)),
        (Ok(Some(v)), Some(id)) => Some(json!({"jsonrpc": "2.0", "id": id, "result": v}).to_string()),
        (Ok(None), Some(id)) => Some(json!({"jsonrpc": "2.0", "id": id}).to_string()),
        // Notifications get the bare result, or nothing (SPIN's behaviour).
        (Ok(Some(v)), None) => Some(v.to_string()),
        (Ok(None), None) => None,
    }
}

#[cfg(test)]
mod tests;
