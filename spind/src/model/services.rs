//! The services catalogue (issue 13): services households switch off (YouTube, TikTok, ...) as
//! sets of DNS names, shipped in `spind/data/services.json` (its source noted there), and the
//! switches the user set: a service blocked for the whole network or for chosen devices, kept in
//! `<state_dir>/services.list` (written by the core's atomic batches). A switch compiles into
//! block entries of the [`NameMatcher`], each name matching itself and every name below it, so
//! a service is enforced exactly as a block name rule is, and an allow name rule beats it.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::model::event::MacAddr;
use crate::model::namerules::normalise_name;
use crate::model::policy::NameMatcher;

/// The shipped catalogue (a few KB, in the binary).
const CATALOGUE: &str = include_str!("../../data/services.json");

/// One service of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// Normalised DNS names; each blocks itself and everything below it.
    pub names: Vec<String>,
}

/// Reads the catalogue's text: an entry without an id, a name or names is an error, and so is
/// a name that is not valid and normalised (the unit test runs this on the shipped file).
fn parse_catalogue(text: &str) -> Result<Vec<Service>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<Service> = Vec::new();
    for s in v["services"].as_array().ok_or("no services")? {
        let id = s["id"].as_str().filter(|i| !i.is_empty()).ok_or_else(|| format!("a service without an id: {s}"))?;
        let name = s["name"].as_str().ok_or_else(|| format!("{id}: no name"))?;
        let mut names = Vec::new();
        for n in s["names"].as_array().ok_or_else(|| format!("{id}: no names"))? {
            let n = n.as_str().ok_or_else(|| format!("{id}: a name that is not a string"))?;
            match normalise_name(n) {
                Ok(norm) if norm == n => names.push(norm),
                Ok(norm) => return Err(format!("{id}: '{n}' is not normalised ('{norm}')")),
                Err(e) => return Err(format!("{id}: '{n}': {e}")),
            }
        }
        if names.is_empty() {
            return Err(format!("{id}: no names"));
        }
        if out.iter().any(|o| o.id == id) {
            return Err(format!("{id}: the id is used twice"));
        }
        out.push(Service { id: id.to_string(), name: name.to_string(), names });
    }
    Ok(out)
}

/// The shipped catalogue, parsed once. A broken file is a build mistake the unit test catches;
/// at run time it would mean no services, said in the log, rather than a daemon that stops.
pub fn catalogue() -> &'static [Service] {
    static PARSED: OnceLock<Vec<Service>> = OnceLock::new();
    PARSED.get_or_init(|| {
        parse_catalogue(CATALOGUE).unwrap_or_else(|e| {
            log::error!("the shipped services catalogue is broken: {e}");
            Vec::new()
        })
    })
}

pub fn service(id: &str) -> Option<&'static Service> {
    catalogue().iter().find(|s| s.id == id)
}

/// The user's switches: (service id, device; `None`: the whole network).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceBlocks {
    blocked: BTreeSet<(String, Option<MacAddr>)>,
}

impl ServiceBlocks {
    /// Sets one switch; whether anything changed.
    pub fn set(&mut self, id: &str, device: Option<MacAddr>, blocked: bool) -> bool {
        let key = (id.to_string(), device);
        if blocked {
            self.blocked.insert(key)
        } else {
            self.blocked.remove(&key)
        }
    }

    pub fn is_blocked(&self, id: &str, device: Option<MacAddr>) -> bool {
        self.blocked.contains(&(id.to_string(), device))
    }

    /// `list_services`: every service of the catalogue, whether it is blocked for `device`
    /// (for it or for the whole network; without a device: for the whole network), and whether
    /// for the whole network.
    pub fn list(&self, device: Option<MacAddr>) -> Value {
        catalogue()
            .iter()
            .map(|s| {
                let everywhere = self.is_blocked(&s.id, None);
                let blocked = everywhere || device.is_some_and(|d| self.is_blocked(&s.id, Some(d)));
                json!({"id": s.id, "name": s.name, "blocked": blocked, "blocked_everywhere": everywhere})
            })
            .collect()
    }

    /// The switches as JSON (`services` on MQTT): `[{"service": ID, "device"?: MAC}]`.
    pub fn to_value(&self) -> Value {
        self.blocked
            .iter()
            .map(|(id, d)| match d {
                None => json!({ "service": id }),
                Some(mac) => json!({"service": id, "device": mac.to_string()}),
            })
            .collect()
    }

    /// Adds the blocked services' names to `m` as blocks (for every device, or for the devices
    /// they are blocked for), and the addresses of those devices from `neighbours`. Added after
    /// the user's name rules: at one name the user's allow beats these blocks, and a more
    /// specific allow wins anyway.
    pub fn compile_into<'a>(
        &self,
        m: &mut NameMatcher,
        neighbours: impl Iterator<Item = (&'a std::net::IpAddr, &'a MacAddr)>,
    ) {
        if self.blocked.is_empty() {
            return;
        }
        let mut per_device: Vec<[u8; 6]> = Vec::new();
        for s in catalogue() {
            let everywhere = self.is_blocked(&s.id, None);
            let devices: Vec<[u8; 6]> = self
                .blocked
                .range((s.id.clone(), Some(MacAddr([0; 6])))..)
                .take_while(|(id, _)| *id == s.id)
                .filter_map(|(_, d)| d.map(|m| m.0))
                .collect();
            for name in &s.names {
                if everywhere {
                    m.add(name, None, false);
                } else if !devices.is_empty() {
                    m.add(name, Some(devices.clone()), false);
                }
            }
            if !everywhere {
                per_device.extend(&devices);
            }
        }
        if !per_device.is_empty() {
            for (ip, mac) in neighbours {
                if per_device.contains(&mac.0) {
                    m.add_device_ip(*ip, mac.0);
                }
            }
        }
    }

    /// `services.list`: one switch a line, `ID` (the whole network) or `ID MAC`.
    pub fn file_text(&self) -> String {
        self.blocked
            .iter()
            .map(|(id, d)| match d {
                None => format!("{id}\n"),
                Some(mac) => format!("{id} {mac}\n"),
            })
            .collect()
    }

    /// Reads `services.list`; a line naming no known service or a bad MAC is reported and left
    /// out (a catalogue of a later version may have dropped a service).
    pub fn from_file_text(text: &str) -> (ServiceBlocks, Vec<String>) {
        let mut out = ServiceBlocks::default();
        let mut warnings = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let mut f = line.split_whitespace();
            let id = f.next().unwrap_or_default();
            if service(id).is_none() {
                warnings.push(format!("no service '{id}' in the catalogue, skipped: {line}"));
                continue;
            }
            let device = match f.next().map(str::parse::<MacAddr>) {
                None => None,
                Some(Ok(m)) if m.is_unicast() => Some(m),
                Some(_) => {
                    warnings.push(format!("not 'SERVICE [MAC]', skipped: {line}"));
                    continue;
                }
            };
            out.set(id, device, true);
        }
        (out, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::policy::NameVerdict;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn the_shipped_catalogue_is_valid_normalised_with_unique_ids_and_the_services_asked_for() {
        let parsed = parse_catalogue(CATALOGUE).expect("the shipped catalogue parses");
        assert_eq!(catalogue(), parsed.as_slice());
        for want in [
            "youtube",
            "tiktok",
            "instagram",
            "facebook",
            "whatsapp",
            "netflix",
            "roblox",
            "fortnite",
            "steam",
            "twitch",
            "snapchat",
            "discord",
        ] {
            assert!(service(want).is_some(), "{want} is in the catalogue");
        }
        let mut ids: Vec<&str> = parsed.iter().map(|s| s.id.as_str()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), parsed.len(), "ids are unique");
        for s in &parsed {
            assert!(!s.name.is_empty() && s.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
            for n in &s.names {
                assert_eq!(normalise_name(n).as_deref(), Ok(n.as_str()), "{}: {n}", s.id);
            }
            let mut names = s.names.clone();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), s.names.len(), "{}: no duplicate names", s.id);
        }
        assert!(CATALOGUE.len() < 8 * 1024, "compact: {} bytes", CATALOGUE.len());
        assert!(CATALOGUE.contains("HostlistsRegistry"), "the source is noted");
    }

    #[test]
    fn a_broken_catalogue_says_what_is_wrong() {
        let bad = |t: &str| parse_catalogue(t).unwrap_err();
        assert!(bad(r#"{"services":[{"id":"a","name":"A","names":["Www.A.example"]}]}"#).contains("normalised"));
        assert!(bad(r#"{"services":[{"id":"a","name":"A","names":["a..b"]}]}"#).contains("a..b"));
        assert!(bad(r#"{"services":[{"id":"a","name":"A","names":[]}]}"#).contains("no names"));
        let twice =
            r#"{"services":[{"id":"a","name":"A","names":["a.example"]},{"id":"a","name":"A","names":["b.example"]}]}"#;
        assert!(bad(twice).contains("twice"));
        assert!(bad("[]").contains("no services"));
    }

    #[test]
    fn switches_compile_into_blocks_per_device_and_for_everyone() {
        let mut s = ServiceBlocks::default();
        assert!(s.set("tiktok", Some(A), true));
        assert!(!s.set("tiktok", Some(A), true), "no change");
        let ip: std::net::IpAddr = "192.168.8.100".parse().unwrap();
        let neighbours = [(ip, A)];
        let mut m = NameMatcher::default();
        s.compile_into(&mut m, neighbours.iter().map(|(i, m)| (i, m)));
        assert_eq!(m.decide(b"www.tiktok.com", Some(A.0)), Some(NameVerdict::Block), "a name below");
        assert_eq!(m.decide(b"tiktokcdn.com", Some(A.0)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"www.tiktok.com", Some(B.0)), None, "another device");
        assert_eq!(m.device_of(None, Some(ip)), Some(A.0), "the device's address is known to the matcher");
        assert_eq!(m.decide(b"youtube.com", Some(A.0)), None);
        s.set("youtube", None, true);
        let mut m = NameMatcher::default();
        s.compile_into(&mut m, std::iter::empty());
        assert_eq!(m.decide(b"m.youtube.com", Some(B.0)), Some(NameVerdict::Block), "the whole network");
        assert_eq!(m.decide(b"m.youtube.com", None), Some(NameVerdict::Block));
        assert!(s.set("tiktok", Some(A), false));
        let mut m = NameMatcher::default();
        s.compile_into(&mut m, std::iter::empty());
        assert_eq!(m.decide(b"tiktok.com", Some(A.0)), None, "switched on again");
    }

    #[test]
    fn an_allow_name_rule_beats_a_service_block() {
        let mut s = ServiceBlocks::default();
        s.set("youtube", None, true);
        s.set("discord", Some(A), true);
        let mut m = NameMatcher::default();
        // The user's rules come first, as the core compiles them.
        m.add("youtube.com", Some(vec![A.0]), true);
        m.add("cdn.discordapp.com", None, true);
        s.compile_into(&mut m, std::iter::empty());
        assert_eq!(m.decide(b"www.youtube.com", Some(A.0)), Some(NameVerdict::Allow), "allowed at the same name");
        assert_eq!(m.decide(b"www.youtube.com", Some(B.0)), Some(NameVerdict::Block));
        assert_eq!(m.decide(b"ytimg.com", Some(A.0)), Some(NameVerdict::Block), "the service's other names");
        assert_eq!(m.decide(b"cdn.discordapp.com", Some(A.0)), Some(NameVerdict::Allow), "a more specific allow");
        assert_eq!(m.decide(b"discordapp.com", Some(A.0)), Some(NameVerdict::Block));
    }

    #[test]
    fn the_file_round_trips_and_bad_lines_are_reported() {
        let mut s = ServiceBlocks::default();
        s.set("tiktok", Some(A), true);
        s.set("tiktok", None, true);
        s.set("roblox", Some(B), true);
        let text = s.file_text();
        assert_eq!(text, "roblox 02:00:00:00:00:02\ntiktok\ntiktok 02:00:00:00:00:01\n");
        let (back, warnings) = ServiceBlocks::from_file_text(&text);
        assert!(warnings.is_empty());
        assert_eq!(back, s);
        let (back, warnings) =
            ServiceBlocks::from_file_text("# c\nnosuch\ntiktok zz\ntiktok ff:ff:ff:ff:ff:ff\nsteam\n");
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(back.is_blocked("steam", None));
        assert_eq!(back.to_value(), json!([{"service": "steam"}]));
    }

    #[test]
    fn list_says_blocked_for_the_device_or_everywhere() {
        let mut s = ServiceBlocks::default();
        s.set("tiktok", Some(A), true);
        s.set("netflix", None, true);
        let get = |v: &Value, id: &str| v.as_array().unwrap().iter().find(|x| x["id"] == id).cloned().unwrap();
        let a = s.list(Some(A));
        assert_eq!(
            get(&a, "tiktok"),
            json!({"id": "tiktok", "name": "TikTok", "blocked": true, "blocked_everywhere": false})
        );
        assert_eq!(get(&a, "netflix")["blocked"], true);
        assert_eq!(get(&a, "netflix")["blocked_everywhere"], true);
        assert_eq!(get(&a, "youtube")["blocked"], false);
        let b = s.list(Some(B));
        assert_eq!(get(&b, "tiktok")["blocked"], false);
        let all = s.list(None);
        assert_eq!(get(&all, "tiktok")["blocked"], false, "the network as a whole");
        assert_eq!(all.as_array().unwrap().len(), catalogue().len());
    }
}
