//! DOTS "call home" mitigation scopes (reference §7.1): which remote addresses, ports and ICMP
//! types a signal asks to stop. Parsed strictly, with SPIN's error messages.

use std::net::IpAddr;

use serde_json::Value;

use crate::model::addr::IpNet;

#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    pub targets: Vec<IpNet>,
    /// Inclusive port ranges; empty = any port.
    pub ports: Vec<(u16, u16)>,
    /// Inclusive ICMP type ranges; empty = any type.
    pub icmp_types: Vec<(u8, u8)>,
}

impl Scope {
    /// A device flow to a node with `ips`, on `port`, with `icmp_type`, matches this scope.
    pub fn matches(&self, ips: &std::collections::BTreeSet<IpAddr>, port: u16, icmp_type: u8) -> bool {
        ips.iter().any(|ip| self.targets.iter().any(|t| t.contains(ip)))
            && (self.ports.is_empty() || self.ports.iter().any(|&(lo, hi)| (lo..=hi).contains(&port)))
            && (self.icmp_types.is_empty() || self.icmp_types.iter().any(|&(lo, hi)| (lo..=hi).contains(&icmp_type)))
    }
}

fn field<'a>(v: &'a Value, name: &str, parent: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("Missing field {name} in {parent}"))
}

fn array<'a>(v: &'a Value, name: &str) -> Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("Wrong type of field {name}, should be an array"))
}

fn ranges(scope: &Value, field_name: &str, lower: &str, upper: &str, max: u64) -> Result<Vec<(u64, u64)>, String> {
    let Some(list) = scope.get(field_name) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for r in array(list, field_name)? {
        let lo = r
            .get(lower)
            .ok_or_else(|| format!("Missing '{lower}' in {field_name}"))?
            .as_u64()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("Wrong type of field {lower}"))?;
        let hi = match r.get(upper) {
            None => lo,
            Some(h) => h.as_u64().filter(|v| *v <= max).ok_or_else(|| format!("Wrong type of field {upper}"))?,
        };
        out.push((lo, hi));
    }
    Ok(out)
}

/// The scopes of a `dots_signal` parameter.
pub fn parse(signal: &Value) -> Result<Vec<Scope>, String> {
    let ms = field(signal, "ietf-dots-signal-channel:mitigation-scope", "dots_signal")?;
    let scopes = array(field(ms, "scope", "ietf-dots-signal-channel:mitigation-scope")?, "scope")?;
    let mut out = Vec::new();
    for s in scopes {
        let mut targets = Vec::new();
        for t in array(field(s, "target-prefix", "scope")?, "target-prefix")? {
            let text = t.as_str().ok_or("Wrong type of field target-prefix, should be a string")?;
            targets.push(text.parse::<IpNet>().map_err(|e| e.to_string())?);
        }
        let ports = ranges(s, "target-port-range", "lower-port", "upper-port", 65535)?;
        let icmp = ranges(s, "source-icmp-type-range", "lower-type", "upper-type", 255)?;
        out.push(Scope {
            targets,
            ports: ports.into_iter().map(|(a, b)| (a as u16, b as u16)).collect(),
            icmp_types: icmp.into_iter().map(|(a, b)| (a as u8, b as u8)).collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_reference_signal_parses_and_matches() {
        let sig = json!({"ietf-dots-signal-channel:mitigation-scope":{"scope":[{
            "lifetime":3600,"ietf-dots-call-home:source-prefix":["192.0.1.1/32"],"target-prefix":["192.0.1.2/32"],
            "target-port-range":[{"lower-port":80,"upper-port":89}],"source-icmp-type-range":[{"lower-type":8}]}]}});
        let scopes = parse(&sig).unwrap();
        let ips = ["192.0.1.2".parse().unwrap()].into_iter().collect();
        assert!(scopes[0].matches(&ips, 85, 8));
        assert!(!scopes[0].matches(&ips, 90, 8));
        assert!(!scopes[0].matches(&ips, 85, 0));
        let other = ["192.0.1.3".parse().unwrap()].into_iter().collect();
        assert!(!scopes[0].matches(&other, 85, 8));
    }

    #[test]
    fn errors_name_the_missing_field() {
        assert_eq!(
            parse(&json!({})).unwrap_err(),
            "Missing field ietf-dots-signal-channel:mitigation-scope in dots_signal"
        );
        let e = parse(&json!({"ietf-dots-signal-channel:mitigation-scope":{"scope":[{"target-prefix":["10.0.0.0/8"],
            "target-port-range":[{"upper-port":3}]}]}}))
        .unwrap_err();
        assert_eq!(e, "Missing 'lower-port' in target-port-range");
    }
}
