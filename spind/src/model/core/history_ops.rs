//! The core's history and alert operations (`get_history`, `top_services`, `list_alerts`,
//! `ack_alert`): arguments checked with the field named in the error, answers as JSON values.

use serde_json::{json, Value};

use super::{remote_key, Core, OpError, OpResult};
use crate::model::event::{MacAddr, Timestamp};
use crate::model::history::store::Counters;
use crate::model::history::Resolution;

fn bad(field: &str, why: &str) -> OpError {
    OpError::new(-1, format!("Invalid '{field}': {why}"))
}

fn counters_json(time: Option<Timestamp>, c: &Counters) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if let Some(t) = time {
        m.insert("time".into(), json!(t));
    }
    m.insert("bytes_in".into(), json!(c.bytes_in));
    m.insert("bytes_out".into(), json!(c.bytes_out));
    m.insert("packets".into(), json!(c.packets));
    m.insert("connections".into(), json!(c.connections));
    m.insert("blocked".into(), json!(c.blocked));
    m
}

/// A device's MAC and a time range `[from, to)` from the arguments.
pub(crate) fn range_args(device: &str, from: i64, to: i64) -> OpResult<(MacAddr, Timestamp, Timestamp)> {
    let mac: MacAddr = device.parse().map_err(|_| bad("device", "expected a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    if from < 0 {
        return Err(bad("from", "expected a unix time in seconds"));
    }
    if to <= from {
        return Err(bad("to", "expected a unix time after 'from'"));
    }
    Ok((mac, from, to))
}

impl Core {
    fn history_unavailable(&self) -> OpResult<()> {
        if self.history.enabled() {
            Ok(())
        } else {
            Err(OpError::new(-3, "history is off (history = 0, or its directory cannot be created)"))
        }
    }

    /// `get_history`: the device's traffic per hour or day, ascending; `node` narrows it to one
    /// remote node (by its DNS names and addresses).
    pub fn op_get_history(
        &mut self,
        device: &str,
        from: i64,
        to: i64,
        resolution: &str,
        node: Option<i64>,
    ) -> OpResult<Value> {
        let (mac, from, to) = range_args(device, from, to)?;
        let resolution = match resolution {
            "hour" => Resolution::Hour,
            "day" => Resolution::Day,
            _ => return Err(bad("resolution", "expected \"hour\" or \"day\"")),
        };
        self.history_unavailable()?;
        let remotes: Option<Vec<String>> = match node {
            None => None,
            Some(id) => {
                let n = u64::try_from(id)
                    .ok()
                    .and_then(|id| self.nodes.get(id))
                    .ok_or_else(|| bad("node", "unknown node id"))?;
                let mut keys: Vec<String> =
                    n.domains.values().map(|d| d.trim_end_matches('.').to_ascii_lowercase()).collect();
                keys.extend(n.ips.iter().map(|ip| ip.to_string()));
                Some(keys)
            }
        };
        let nodes = &self.nodes;
        let buckets = self.history.query(mac, from, to, resolution, remotes.as_deref(), &|ip| remote_key(nodes, ip));
        Ok(Value::Array(buckets.iter().map(|b| Value::Object(counters_json(Some(b.time), &b.counters))).collect()))
    }

    /// `top_services`: the remotes the device talked to, with their totals, most bytes first.
    pub fn op_top_services(&mut self, device: &str, from: i64, to: i64) -> OpResult<Value> {
        let (mac, from, to) = range_args(device, from, to)?;
        self.history_unavailable()?;
        let nodes = &self.nodes;
        let top = self.history.top(mac, from, to, &|ip| remote_key(nodes, ip));
        let rows = top
            .iter()
            .map(|(name, c)| {
                let mut m = counters_json(None, c);
                let id = match name.parse::<std::net::IpAddr>() {
                    Ok(ip) => nodes.by_ip(&ip),
                    Err(_) => nodes.by_domain(&format!("{name}.")).or_else(|| nodes.by_domain(name)),
                };
                m.insert("name".into(), json!(name));
                m.insert("node".into(), json!(id));
                Value::Object(m)
            })
            .collect();
        Ok(Value::Array(rows))
    }

    /// `list_alerts`: alerts since a time, oldest first.
    pub fn op_list_alerts(&self, since: i64) -> OpResult<Value> {
        self.history_unavailable()?;
        Ok(Value::Array(self.history.alerts_since(since).iter().map(|a| a.to_json()).collect()))
    }

    /// `ack_alert`: marks an alert as read (saved; a failed save answers -3 and changes nothing).
    pub fn op_ack_alert(&mut self, id: i64) -> OpResult<()> {
        self.history_unavailable()?;
        let id = u64::try_from(id).map_err(|_| bad("id", "expected an alert id"))?;
        match self.history.ack(id) {
            Ok(true) => Ok(()),
            Ok(false) => Err(bad("id", "no such alert")),
            Err(why) => Err(OpError::new(-3, format!("cannot save the alert: {why}"))),
        }
    }
}
