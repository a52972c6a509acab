//! The MQTT side: a subscriber process (run inside the LAN namespace) that writes every message
//! as one JSON line to a transcript file, and the analysis of transcripts. The client is the
//! test bed's (`testbed::mqtt::Subscription`), which subscribes again after every reconnection.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testbed::mqtt::{Event, Subscription};

/// `qemu-test mqtt-sub HOST PORT tcp|ws FILE [USER PASSWORD]`: subscribes to `SPIN/#` (as
/// USER, which the router's broker needs once its admin is set up) and writes
/// `{"t":ms,"topic":..,"retain":..,"payload":..}` lines (payload parsed as JSON when it is);
/// `{"t":ms,"event":"subscribed"}` after every SUBACK, `{"event":"error",..}` on connection
/// errors. Reconnects (and subscribes again) after the router reboots.
pub fn subscriber(
    host: &str,
    port: u16,
    transport: &str,
    out: &str,
    login: Option<(String, String)>,
) -> Result<(), String> {
    let mut f = File::create(out).map_err(|e| format!("{out}: {e}"))?;
    let id = format!("qemu-test-{transport}-{}", std::process::id());
    let sub = Subscription {
        host: host.to_string(),
        port,
        websocket: transport == "ws",
        filter: "SPIN/#".into(),
        keep_alive: Duration::from_secs(10),
        retry: Duration::from_millis(500),
        login,
    };
    let t0 = Instant::now();
    let ms = || t0.elapsed().as_millis() as u64;
    let mut failed = None;
    sub.run(&id, |ev| {
        let v = match ev {
            Event::Connected => json!({"t": ms(), "event": "connected"}),
            Event::Subscribed => json!({"t": ms(), "event": "subscribed"}),
            Event::Message(p) => {
                let payload = serde_json::from_slice::<Value>(&p.payload)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&p.payload).into_owned()));
                json!({"t": ms(), "topic": p.topic, "retain": p.retain, "payload": payload})
            }
            Event::Error(e) => json!({"t": ms(), "event": "error", "error": e}),
        };
        match writeln!(f, "{v}").and_then(|_| f.flush()) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(format!("{out}: {e}"));
                false
            }
        }
    });
    failed.map_or(Ok(()), Err)
}

/// One transcript line.
#[derive(Clone, Debug)]
pub struct Msg {
    pub topic: String,
    pub payload: Value,
}

impl Msg {
    pub fn command(&self) -> &str {
        self.payload["command"].as_str().unwrap_or("")
    }
    pub fn result(&self) -> &Value {
        &self.payload["result"]
    }
}

/// The transcript so far: (events, messages) from line `from` on.
pub fn read(path: &std::path::Path, from: usize) -> (Vec<String>, Vec<Msg>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut events = Vec::new();
    let mut msgs = Vec::new();
    for l in text.lines().skip(from) {
        let Ok(v) = serde_json::from_str::<Value>(l) else {
            continue;
        };
        if let Some(e) = v["event"].as_str() {
            events.push(e.to_string());
        } else {
            msgs.push(Msg { topic: v["topic"].as_str().unwrap_or("").to_string(), payload: v["payload"].clone() });
        }
    }
    (events, msgs)
}

pub fn line_count(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map(|t| t.lines().count()).unwrap_or(0)
}

/// The latest node objects by id (from retained/non-retained `nodeInfo`), merges followed.
pub struct Nodes {
    pub by_id: std::collections::BTreeMap<u64, Value>,
    pub merged: std::collections::BTreeMap<u64, u64>,
}

impl Nodes {
    pub fn from(msgs: &[Msg]) -> Nodes {
        let mut by_id = std::collections::BTreeMap::new();
        let mut merged = std::collections::BTreeMap::new();
        for m in msgs {
            match m.command() {
                "nodeInfo" => {
                    if let Some(id) = m.result()["id"].as_u64() {
                        by_id.insert(id, m.result().clone());
                    }
                }
                "nodeMerged" => {
                    if let (Some(a), Some(b)) = (m.result()["id"].as_u64(), m.result()["merged-to"].as_u64()) {
                        merged.insert(a, b);
                    }
                }
                _ => {}
            }
        }
        Nodes { by_id, merged }
    }

    /// The current id of a node (after merges).
    pub fn resolve(&self, mut id: u64) -> u64 {
        for _ in 0..64 {
            match self.merged.get(&id) {
                Some(&to) => id = to,
                None => break,
            }
        }
        id
    }

    pub fn find(&self, pred: impl Fn(&Value) -> bool) -> Option<(u64, &Value)> {
        self.by_id
            .iter()
            .rev()
            .filter(|(id, _)| !self.merged.contains_key(id))
            .find(|(_, v)| pred(v))
            .map(|(id, v)| (*id, v))
    }
}

pub fn has_str(v: &Value, key: &str, want: &str) -> bool {
    v[key].as_array().is_some_and(|a| a.iter().any(|x| x.as_str().is_some_and(|s| s.eq_ignore_ascii_case(want))))
}

/// Bytes and packets of `traffic` flows between nodes `a` and `b` (either direction) to or
/// from `port`.
pub fn flow_bytes(msgs: &[Msg], nodes: &Nodes, a: u64, b: u64, port: u64) -> (u64, u64) {
    let (mut bytes, mut packets) = (0, 0);
    for m in msgs.iter().filter(|m| m.command() == "traffic") {
        for f in m.result()["flows"].as_array().into_iter().flatten() {
            let from = nodes.resolve(f["from"].as_u64().unwrap_or(0));
            let to = nodes.resolve(f["to"].as_u64().unwrap_or(0));
            let ports = [f["from_port"].as_u64(), f["to_port"].as_u64()];
            if ((from == a && to == b) || (from == b && to == a)) && ports.contains(&Some(port)) {
                bytes += f["size"].as_u64().unwrap_or(0);
                packets += f["count"].as_u64().unwrap_or(0);
            }
        }
    }
    (bytes, packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: Value) -> Msg {
        Msg { topic: topic.into(), payload }
    }

    #[test]
    fn flow_bytes_follow_merges_and_both_directions() {
        let msgs = vec![
            msg(
                "SPIN/traffic/node/1",
                json!({"command":"nodeInfo","result":{"id":1,"mac":"02:5a:00:00:02:02","ips":["192.168.8.100"]}}),
            ),
            msg(
                "SPIN/traffic/node/2",
                json!({"command":"nodeInfo","result":{"id":2,"ips":["198.51.100.80"],"domains":["www.example.test."]}}),
            ),
            msg(
                "SPIN/traffic",
                json!({"command":"traffic","argument":"","result":{"flows":[
                {"from":1,"to":2,"protocol":6,"from_port":40000,"to_port":80,"size":1000,"count":3},
                {"from":1,"to":2,"protocol":6,"from_port":40000,"to_port":443,"size":7,"count":1}]}}),
            ),
            msg("SPIN/traffic/admin", json!({"command":"nodeMerged","result":{"id":3,"merged-to":2}})),
            msg(
                "SPIN/traffic",
                json!({"command":"traffic","argument":"","result":{"flows":[
                {"from":3,"to":1,"protocol":6,"from_port":80,"to_port":40001,"size":500,"count":2}]}}),
            ),
        ];
        let nodes = Nodes::from(&msgs);
        assert_eq!(nodes.resolve(3), 2);
        assert_eq!(flow_bytes(&msgs, &nodes, 1, 2, 80), (1500, 5));
        let (id, _) = nodes.find(|v| has_str(v, "domains", "WWW.example.test.")).unwrap();
        assert_eq!(id, 2);
    }

    #[test]
    fn transcript_lines_split_into_events_and_messages() {
        let dir = std::env::temp_dir().join(format!("qemu-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jsonl");
        std::fs::write(
            &p,
            "{\"event\":\"connected\",\"t\":1}\n{\"event\":\"subscribed\",\"t\":2}\n\
             {\"t\":3,\"topic\":\"SPIN/traffic\",\"retain\":false,\"payload\":{\"command\":\"serverRestart\"}}\n",
        )
        .unwrap();
        let (ev, msgs) = read(&p, 0);
        assert_eq!(ev, ["connected", "subscribed"]);
        assert_eq!(msgs[0].command(), "serverRestart");
        assert_eq!(read(&p, 2).1.len(), 1);
        assert_eq!(line_count(&p), 3);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
